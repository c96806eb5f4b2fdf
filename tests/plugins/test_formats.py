"""The built-in formats (alpaca, sharegpt, messages, prompt-completion), each row read from a real
jsonl file by a real run: what it becomes, or why and where it is rejected."""

import json

import pytest

from curate.testing import jsonl

SYSTEM = {"role": "system", "content": "Be brief."}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def recipe(fmt: str) -> str:
    return f"""
        [[sources]]
        name = "data"
        use = "jsonl"
        path = "data.jsonl"
        format = "{fmt}"
        max_bad_fraction = 0.0

        [split]
        eval_fraction = 0.0
        """


def outcomes(result) -> dict[int, object]:
    """Line number -> the record's messages, or (reason, message) for a rejected row."""
    assert result.exit_code == 0, result.output
    manifest = result.manifest
    assert manifest["final"]["accounted"] == manifest["final"]["input"]
    found: dict[int, object] = {}
    for row in result.kept("read"):
        found[line_of(json.loads(row["meta"])["from"])] = row["messages"]
    for row in result.rejected("read"):
        location, message = row["detail"].split(": ", 1)
        found[line_of(location)] = (row["reason"], message)
    return found


def line_of(location: str) -> int:
    name, line = location.rsplit(":", 1)
    assert name == "data.jsonl"
    return int(line)


def read_rows(run_recipe, fmt: str, *rows: dict) -> dict[int, object]:
    return outcomes(run_recipe(recipe(fmt), files={"data.jsonl": jsonl(*rows)}))


def test_alpaca(run_recipe):
    found = read_rows(
        run_recipe, "alpaca",
        {"instruction": "Translate.", "input": "Hallo", "output": "Hello"},
        {"instruction": "Name a fruit.", "output": "Apple"},
        {"instruction": "Name a fruit.", "input": "", "output": "Pear"},
        {"instruction": "Name a fruit.", "input": "  ", "output": "Plum", "system": "Be brief."},
        {"instruction": "", "input": "Only the input", "output": "Fine"},
        {"instruction": "Name a fruit.", "input": None, "output": "Fig", "system": None},
        {"instruction": "Count.", "output": 3},
        {"instruction": "No answer."},
        {"instruction": "Null answer.", "output": None},
    )
    assert found == {
        1: [user("Translate.\n\nHallo"), assistant("Hello")],
        2: [user("Name a fruit."), assistant("Apple")],
        3: [user("Name a fruit."), assistant("Pear")],
        4: [SYSTEM, user("Name a fruit."), assistant("Plum")],
        5: [user("Only the input"), assistant("Fine")],
        6: [user("Name a fruit."), assistant("Fig")],
        7: ("bad-field", "field 'output' should be text, found int"),
        8: ("missing-field", "missing field 'output'"),
        9: ("missing-field", "missing field 'output'"),
    }


SHAREGPT_ROLES = [("human", "gpt"), ("user", "assistant"), ("Human", "GPT"), ("user", "chatgpt"),
                  ("user", "bard"), ("user", "model"), ("user", "bing")]


def test_sharegpt_role_names(run_recipe):
    rows = [{"conversations": [{"from": asker, "value": "Hi?"},
                               {"from": answerer, "value": f"Hello from {answerer}."}]}
            for asker, answerer in SHAREGPT_ROLES]
    found = read_rows(run_recipe, "sharegpt", *rows)
    assert found == {line: [user("Hi?"), assistant(f"Hello from {answerer}.")]
                     for line, (_, answerer) in enumerate(SHAREGPT_ROLES, start=1)}


def test_sharegpt_conversations(run_recipe):
    found = read_rows(
        run_recipe, "sharegpt",
        {"conversations": [{"from": "system", "value": "Be brief."},
                           {"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hey."},
                           {"from": "human", "value": "Bye?"}, {"from": "gpt", "value": "Bye."}],
         "id": "extra keys are ignored"},
        {"conversations": [{"role": "user", "content": "Hi?"},
                           {"role": "assistant", "content": "Hello."}]},
        {"conversations": [{"from": "human", "value": "Hi?"},
                           {"from": "tool", "value": "{}"}, {"from": "gpt", "value": "Hi."}]},
        {"conversations": [{"from": "human", "value": "Hi?"}]},
        {"conversations": [{"from": "system", "value": "S"}, {"from": "gpt", "value": "Hi."}]},
        {"conversations": []},
        {"conversations": [{"speaker": "human", "text": "Hi?"}]},
        {"conversations": "Hi?"},
        {"conversations": [{"from": "human", "value": ["Hi?"]}, {"from": "gpt", "value": "x"}]},
    )
    assert found == {
        1: [SYSTEM, user("Hi?"), assistant("Hey."), user("Bye?"), assistant("Bye.")],
        2: [user("Hi?"), assistant("Hello.")],
        3: ("unsupported-role", "message 1 has role 'tool'; expected one of system, user,"
                                " assistant"),
        4: ("no-final-answer", "the last message is not from the assistant, so there is nothing"
                               " to train on at the end"),
        5: ("no-user-turn", "the conversation has no user message"),
        6: ("empty-conversation", "the conversation has no messages"),
        7: ("bad-field", "turn 0 needs 'from' and 'value' (or 'role' and 'content'), found keys"
                         " speaker, text"),
        8: ("bad-field", "field 'conversations' should be a list of messages"),
        9: ("bad-field", "message 0 content should be text, found list"),
    }


def test_messages(run_recipe):
    found = read_rows(
        run_recipe, "messages",
        {"messages": [SYSTEM, user("Hi?"), assistant("Hello."), user("More?"),
                      assistant("Sure.")]},
        {"messages": [{"role": "user", "content": "Hi?", "name": "ann"}, assistant("Hey.")]},
        {"messages": [{"role": "human", "content": "Hi?"}, assistant("Hey.")]},
        {"messages": [user("Hi?"), assistant("Hey."), user("Thanks!")]},
        {"messages": [user("Hi?"), {"role": "assistant", "content": None}]},
        {"messages": [user("Hi?"), {"role": "assistant"}]},
        {"messages": [user("Hi?"), "Hello."]},
        {"messages": None},
    )
    assert found == {
        1: [SYSTEM, user("Hi?"), assistant("Hello."), user("More?"), assistant("Sure.")],
        2: [user("Hi?"), assistant("Hey.")],
        3: ("unsupported-role", "message 0 has role 'human'; expected one of system, user,"
                                " assistant"),
        4: ("no-final-answer", "the last message is not from the assistant, so there is nothing"
                               " to train on at the end"),
        5: ("bad-field", "message 1 content should be text, found NoneType"),
        6: ("bad-field", "message 1 needs 'role' and 'content'"),
        7: ("bad-field", "field 'messages' should be a list of messages"),
        8: ("missing-field", "missing field 'messages'"),
    }


def test_prompt_completion_strings_and_conversations(run_recipe):
    found = read_rows(
        run_recipe, "prompt-completion",
        {"prompt": "2+2?", "completion": "4"},
        {"prompt": "2+2?", "completion": "4", "system": "Be brief."},
        {"prompt": [SYSTEM, user("2+2?")], "completion": [assistant("4")]},
        {"prompt": [user("2+2?"), assistant("4"), user("And 3+3?")],
         "completion": [assistant("6")]},
        {"prompt": [user("2+2?")], "completion": "4"},
        {"prompt": [user("2+2?")], "completion": [user("4")]},
        {"prompt": "2+2?", "completion": None},
    )
    assert found == {
        1: [user("2+2?"), assistant("4")],
        2: [SYSTEM, user("2+2?"), assistant("4")],
        3: [SYSTEM, user("2+2?"), assistant("4")],
        4: [user("2+2?"), assistant("4"), user("And 3+3?"), assistant("6")],
        5: ("bad-field", "field 'prompt' should be text, found list"),
        6: ("no-final-answer", "the last message is not from the assistant, so there is nothing"
                               " to train on at the end"),
        7: ("missing-field", "missing field 'completion'"),
    }


@pytest.mark.parametrize("row, expected", [
    ({"instruction": "Hi?", "output": "Hello."}, "alpaca"),
    ({"instruction": "Hi?", "input": "", "output": "Hello."}, "alpaca"),
    ({"conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]},
     "sharegpt"),
    ({"messages": [user("Hi?"), assistant("Hello.")]}, "messages"),
    ({"prompt": "Hi?", "completion": "Hello."}, "prompt-completion"),
    ({"prompt": [user("Hi?")], "completion": [assistant("Hello.")]}, "prompt-completion"),
])
def test_auto_detection_gives_the_same_record_as_the_declared_format(run_recipe, tmp_path, row,
                                                                     expected):
    auto = run_recipe(recipe("auto"), files={"data.jsonl": jsonl(row)})
    declared = run_recipe(recipe(expected), name="declared")
    assert auto.exit_code == declared.exit_code == 0, auto.output + declared.output
    assert auto.dataset() == declared.dataset()
    assert auto.dataset()[0]["messages"][-1] == assistant("Hello.")


def test_the_same_conversation_has_the_same_id_in_every_format(run_recipe):
    rows = {
        "alpaca": {"instruction": "Hi?", "output": "Hello."},
        "sharegpt": {"conversations": [{"from": "human", "value": "Hi?"},
                                       {"from": "gpt", "value": "Hello."}]},
        "messages": {"messages": [user("Hi?"), assistant("Hello.")]},
        "prompt-completion": {"prompt": "Hi?", "completion": "Hello."},
    }
    ids = set()
    for fmt, row in rows.items():
        result = run_recipe(recipe(fmt), files={"data.jsonl": jsonl(row)}, name=fmt)
        assert result.exit_code == 0, result.output
        ids.add(result.dataset()[0]["id"])
    assert len(ids) == 1
