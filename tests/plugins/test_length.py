"""The length stage: characters and tokens, for prompt, response and the whole conversation."""

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from curate.testing import jsonl
from curate.tokenizer import _from_tokenizers_library

WORDS = "the a cat dog sat on mat and ran far away good bad great".split()
# With a [model], a run renders every record with its chat template: the tiny model has one.
CHAT_TEMPLATE = ("{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}"
                 "{{ m.content }} <eot>{% endgeneration %}{% else %}{{ m.content }} {% endif %}"
                 "{% endfor %}")


@pytest.fixture
def tokenizer_dir(tmp_path):
    """A word-level tokenizer trained here, saved the way a model folder holds one."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator([" ".join(WORDS)] * 10,
                                  trainers.WordLevelTrainer(special_tokens=["[UNK]", "<eot>"]))
    folder = tmp_path / "tiny-model"
    folder.mkdir()
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        tokenizer.save(str(folder / "tokenizer.json"))
    else:
        PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]",
                                chat_template=CHAT_TEMPLATE).save_pretrained(folder)
    return folder


def rows(*pairs):
    return jsonl(*({"prompt": p, "completion": c} for p, c in pairs))


def recipe(stage_options: str, model: str = "") -> str:
    return (f"{model}\n[[sources]]\nname = \"d\"\nuse = \"jsonl\"\npath = \"d.jsonl\"\n"
            f"[[stages]]\nuse = \"length\"\n{stage_options}\n[split]\neval_fraction = 0\n")


def test_character_limits_for_each_part(run_recipe):
    data = rows(("Hi", "A fine answer."), ("Hi", "Too short"), ("Hi", "x" * 2001),
                ("", "An answer without a prompt."), ("Long prompt " * 10, "Fine answer here."))
    result = run_recipe(recipe("min_chars = 10\nmax_prompt_chars = 100"), files={"d.jsonl": data})
    assert result.exit_code == 0, result.output
    rejected = {r["location"]: (r["reason"], r["detail"]) for r in result.rejected("length")}
    assert rejected == {
        "d.jsonl:2": ("response-too-short", "response has 9 characters, minimum is 10"),
        "d.jsonl:3": ("response-too-long", "response has 2001 characters, maximum is 2000"),
        "d.jsonl:5": ("prompt-too-long", "prompt has 119 characters, maximum is 100"),
    }
    [blank_prompt] = result.rejected("read")  # a blank prompt never reaches a stage
    assert (blank_prompt["location"], blank_prompt["reason"]) == ("d.jsonl:4", "empty-turn")
    evidence = json.loads(result.rejected("length")[0]["evidence"])
    assert evidence == {"part": "response", "unit": "chars", "size": 9, "limit": 10}


def test_zero_turns_a_limit_off(run_recipe):
    data = rows(("Hi", "ok"), ("Hi", "y" * 5000))
    result = run_recipe(recipe("min_chars = 0\nmax_chars = 0"), files={"d.jsonl": data})
    assert result.manifest["final"]["rejected"] == 0


def test_conversation_limit_counts_the_system_prompt(run_recipe):
    data = json.dumps({"messages": [{"role": "system", "content": "s" * 50},
                                    {"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": "A fine answer."}]}) + "\n"
    result = run_recipe(recipe("max_conversation_chars = 60"), files={"d.jsonl": data})
    [rejected] = result.rejected("length")
    assert rejected["reason"] == "conversation-too-long"
    assert rejected["detail"] == "conversation has 68 characters, maximum is 60"


def test_token_limits_use_the_recipe_tokenizer(run_recipe, tokenizer_dir):
    data = rows(("the cat", "the cat sat on the mat"), ("the dog", "good"),
                ("the cat", "the dog ran far far far far away and away"))
    result = run_recipe(recipe("min_chars = 0\nmin_tokens = 2\nmax_tokens = 8",
                               f'[model]\npath = "{tokenizer_dir.name}"'),
                        files={"d.jsonl": data})
    assert result.exit_code == 0, result.output
    rejected = {r["location"]: r["detail"] for r in result.rejected("length")}
    assert rejected == {"d.jsonl:2": "response has 1 tokens, minimum is 2",
                        "d.jsonl:3": "response has 10 tokens, maximum is 8"}


def test_token_limits_without_a_model_fail_validation(run_recipe):
    result = run_recipe(recipe("max_tokens = 100"), files={"d.jsonl": rows(("a", "b" * 20))})
    assert result.exit_code == 2
    assert "stages[0]: stage 'length' counts tokens, which needs a tokenizer: add [model]" \
        in result.output


def test_changing_the_model_reruns_a_token_counting_stage(run_recipe, tokenizer_dir):
    data = rows(("the cat", "the cat sat on the mat"))
    options = "max_tokens = 50"
    run_recipe(recipe(options, f'[model]\npath = "{tokenizer_dir.name}"'), files={"d.jsonl": data})
    again = run_recipe(recipe(options, f'[model]\npath = "{tokenizer_dir.name}"\nrevision = "x"'))
    assert {s["name"]: s["cached"] for s in again.manifest["steps"]} == {
        "read": True, "length": False, "chat-template": False}


def test_inverted_limits_fail_validation(run_recipe):
    result = run_recipe(recipe("min_chars = 50\nmax_chars = 20"), files={"d.jsonl": rows(("a", "b"))})
    assert result.exit_code == 2
    assert "stages[0].min_chars: 50 is above max_chars = 20" in result.output


def test_bad_input_never_crashes(run_recipe):
    texts = ["", "\u200b\u200b\u200b", "\x00\x07 control", "مرحبا بالعالم", "🎉" * 20,
             "x" * 1_000_000]
    data = rows(*[("prompt " + t, t) for t in texts])
    result = run_recipe(recipe(""), files={"d.jsonl": data})
    assert result.exit_code == 0, result.output
    final = result.manifest["final"]
    assert final["accounted"] == final["input"] == len(texts)


def test_the_tokenizers_library_loads_a_bare_tokenizer_json(tokenizer_dir):
    counter = _from_tokenizers_library(tokenizer_dir, "tiny-model")
    assert counter.count("the cat sat") == 3


def chat(*turns: str) -> dict:
    roles = ["user", "assistant"] * len(turns)
    return {"messages": [{"role": role, "content": text} for role, text in zip(roles, turns)]}


def test_response_limits_apply_to_each_assistant_turn(run_recipe):
    long_chat = chat(*[f"Question {i}?" if i % 2 == 0 else "A detailed answer. " * 16
                       for i in range(16)])  # 8 answers of 304 characters: 2,432 joined
    pasted = chat("Hi", "Hello, how can I help?", "Summarise this.", "y" * 2001)
    curt = chat("Can you help me plan a trip?", "Of course! Where would you like to go?",
                "Italy, for ten days.", "Ok.")
    data = jsonl(long_chat, pasted, curt)
    result = run_recipe(recipe("min_chars = 10"), files={"d.jsonl": data})
    assert result.exit_code == 0, result.output
    rejected = {r["location"]: r["detail"] for r in result.rejected("length")}
    assert rejected == {"d.jsonl:2": "response turn 2 of 2 has 2001 characters, maximum is 2000",
                        "d.jsonl:3": "response turn 2 of 2 has 3 characters, minimum is 10"}
    evidence = json.loads(result.rejected("length")[0]["evidence"])
    assert evidence == {"part": "response", "unit": "chars", "size": 2001, "turn": 2,
                        "turns": 2, "limit": 2000}


def test_the_default_keeps_short_answers_but_not_empty_ones(run_recipe):
    answers = ["Yes.", "42", "positive", "中国的首都是北京。", "👨\u200d👩\u200d👧\u200d👦",
               "\u200b" * 12, " \n\t "]
    data = rows(*[("Answer briefly.", answer) for answer in answers])
    result = run_recipe(recipe(""), files={"d.jsonl": data})
    rejected = {r["location"]: r["detail"] for r in result.rejected("length")}
    assert rejected == {"d.jsonl:6": "response has 0 characters, minimum is 1",
                        "d.jsonl:7": "response has 0 characters, minimum is 1"}


def test_invisible_characters_are_not_counted(run_recipe):
    family = "👨\u200d👩\u200d👧\u200d👦"  # 7 code points, 4 emoji
    data = rows(("Family?", family), ("Heart?", "\u2764\ufe0f"), ("Wide?", "\u200bab\u200b"))
    result = run_recipe(recipe("min_chars = 3"), files={"d.jsonl": data})
    rejected = {r["location"]: r["detail"] for r in result.rejected("length")}
    assert rejected == {"d.jsonl:2": "response has 1 characters, minimum is 3",
                        "d.jsonl:3": "response has 2 characters, minimum is 3"}


def test_token_limits_apply_to_each_turn_too(run_recipe, tokenizer_dir):
    data = jsonl(chat("the cat", "the cat sat on the mat", "the dog", "the dog ran far away"),
                 chat("the cat", "the cat sat", "the dog", "the dog ran far far far far far away"))
    result = run_recipe(recipe("min_chars = 0\nmax_tokens = 8",
                               f'[model]\npath = "{tokenizer_dir.name}"'), files={"d.jsonl": data})
    assert result.exit_code == 0, result.output
    rejected = {r["location"]: r["detail"] for r in result.rejected("length")}
    assert rejected == {"d.jsonl:2": "response turn 2 of 2 has 9 tokens, maximum is 8"}


def test_visible_length_of_ascii_agrees_with_the_general_rule():
    from curate.plugins.length import visible, visible_length

    for code in range(128):
        text = f" a{chr(code)}b \t\n"
        assert visible_length(text) == len(visible(text)), repr(chr(code))
    assert visible_length("\u200b\u200b") == 0 and visible_length("caf\u00e9\u200b") == 4
