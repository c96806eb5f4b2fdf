"""Turning source rows into records: column mapping, format detection, locations, ids, and the
checks that stop a run on a whole source gone wrong while single bad rows are only rejected."""

import re

from curate.testing import alpaca_row, assert_clear_error, assert_complete, jsonl, source_table


def alpaca_lines(count: int, start: int = 0) -> str:
    return jsonl(*map(alpaca_row, range(start, start + count)))


def recipe(*sources: str) -> str:
    """Every record goes to train, in input order, so tests can compare lists."""
    return "".join(sources) + "\n[split]\neval_fraction = 0.0\n"


# Column mapping


def test_columns_map_data_columns_onto_format_fields(run_recipe):
    data = '{"question": "What is 2+2?", "answer": "Four, of course.", "id": 7}\n'
    columns = {"instruction": "question", "output": "answer"}
    result = run_recipe(recipe(source_table("qa", "qa.jsonl", format="alpaca", columns=columns)),
                        files={"qa.jsonl": data})
    assert_complete(result)
    assert result.dataset()[0]["messages"] == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "Four, of course."}]


def test_columns_also_guide_format_detection(run_recipe):
    data = '{"q": "Name a colour.", "a": "Blue is a colour."}\n'
    result = run_recipe(recipe(source_table("qa", "qa.jsonl",
                                            columns={"prompt": "q", "completion": "a"})),
                        files={"qa.jsonl": data})
    assert_complete(result)
    assert result.dataset()[0]["messages"][1] == {"role": "assistant",
                                                   "content": "Blue is a colour."}


def test_a_mapped_column_replaces_a_data_column_of_the_field_name(run_recipe):
    data = '{"instruction": "old", "better": "New question?", "output": "The answer here."}\n'
    result = run_recipe(recipe(source_table("qa", "qa.jsonl", columns={"instruction": "better"})),
                        files={"qa.jsonl": data})
    assert_complete(result)
    assert result.dataset()[0]["messages"][0]["content"] == "New question?"


def test_a_mapped_column_no_row_has_is_named_with_the_closest_one(run_recipe):
    data = '{"question": "What is 2+2?", "answer": "Four, of course."}\n' * 12
    columns = {"instruction": "questoin", "output": "answer"}
    result = run_recipe(recipe(source_table("qa", "qa.jsonl", format="alpaca", columns=columns)),
                        files={"qa.jsonl": data}, args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0].columns.instruction: no row of source"
                       " 'qa' has a column 'questoin' (its columns: answer, question): did you"
                       " mean 'question'?")


def test_a_mapped_column_no_row_has_stops_the_run_even_when_rows_fit_without_it(run_recipe):
    # Silently reading the data's own `output` instead would train on the wrong column.
    result = run_recipe(recipe(source_table("qa", "qa.jsonl", columns={"output": "answer"})),
                        files={"qa.jsonl": alpaca_lines(3)}, args=["-q"])
    assert_clear_error(result, "sources[0].columns.output: no row of source 'qa' has a column"
                       " 'answer' (its columns: instruction, output)")


def test_a_mapped_column_some_rows_lack_is_fine(run_recipe):
    data = (alpaca_lines(11) + '{"instruction": "Hi?", "output": "Hello there.",'
            ' "sys": "Be brief."}\n')
    result = run_recipe(recipe(source_table("qa", "qa.jsonl", columns={"system": "sys"})),
                        files={"qa.jsonl": data})
    assert_complete(result)


def test_columns_naming_no_field_of_the_format_is_a_recipe_error(run_recipe):
    result = run_recipe(recipe(source_table("qa", "qa.jsonl", format="alpaca",
                                            columns={"question": "instruction"})),
                        files={"qa.jsonl": alpaca_lines(2)}, args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0].columns.question",
                       "'question' is not a field of format 'alpaca'",
                       'write instruction = "question"')


def test_columns_for_auto_format_may_name_any_format_field(run_recipe):
    result = run_recipe(recipe(source_table("qa", "qa.jsonl", columns={"reply": "output"})),
                        files={"qa.jsonl": alpaca_lines(2)}, args=["-q"])
    assert_clear_error(result, "sources[0].columns.reply", "'reply' is not a field of any format")


# Format detection


def test_each_source_detects_its_own_format(run_recipe):
    files = {
        "alpaca.jsonl": '{"instruction": "Say hi.", "output": "Hi there, friend."}\n',
        "sharegpt.jsonl": '{"conversations": [{"from": "human", "value": "Say hi."},'
                          ' {"from": "gpt", "value": "Hello there."}]}\n',
        "messages.jsonl": '{"messages": [{"role": "user", "content": "Say hi."},'
                          ' {"role": "assistant", "content": "Hey there."}]}\n',
        "pc.jsonl": '{"prompt": "Say hi.", "completion": "Greetings to you."}\n',
    }
    result = run_recipe(recipe(*(source_table(name.split(".")[0], name) for name in files)),
                        files=files)
    manifest = assert_complete(result)
    assert [s["records"] for s in manifest["sources"]] == [1, 1, 1, 1]
    assert [r["messages"][1]["content"] for r in result.dataset()] == [
        "Hi there, friend.", "Hello there.", "Hey there.", "Greetings to you."]


def test_detection_skips_leading_rows_that_fit_no_format(run_recipe):
    data = '{"note": "header row"}\n{"note": "another"}\n' + alpaca_lines(3)
    result = run_recipe(recipe(source_table("qa", "qa.jsonl")), files={"qa.jsonl": data})
    manifest = assert_complete(result)
    assert manifest["final"]["train"] == 3
    assert result.rejections("read") == [
        ("unknown-format", "qa.jsonl:1: fits no format (keys: note)"),
        ("unknown-format", "qa.jsonl:2: fits no format (keys: note)")]


def test_once_detected_the_format_holds_and_other_shapes_are_rejected(run_recipe):
    data = alpaca_lines(2) + '{"prompt": "Hi?", "completion": "Hello to you."}\n'
    result = run_recipe(recipe(source_table("qa", "qa.jsonl")), files={"qa.jsonl": data})
    assert_complete(result)
    assert result.rejections("read") == [("missing-field",
                                          "qa.jsonl:3: missing field 'instruction'")]


def test_data_that_fits_no_format_stops_the_run(run_recipe):
    data = '{"q": "What?", "a": "That."}\n' * 3
    result = run_recipe(recipe(source_table("qa", "qa.jsonl")), files={"qa.jsonl": data},
                        args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0]: cannot tell the format of source 'qa'",
                       "qa.jsonl:1: keys a, q", "`columns`")


def test_format_detection_gives_up_after_the_first_rows(run_recipe):
    data = '{"q": "What?", "a": "That."}\n' * 12 + alpaca_lines(3)
    result = run_recipe(recipe(source_table("qa", "qa.jsonl")), files={"qa.jsonl": data},
                        args=["-q"])
    assert_clear_error(result, "cannot tell the format", "qa.jsonl:1: keys a, q")


def test_declared_format_that_does_not_fit_suggests_the_one_that_does(run_recipe):
    data = ('{"conversations": [{"from": "human", "value": "Hi?"},'
            ' {"from": "gpt", "value": "Hello there."}]}\n') * 3
    result = run_recipe(recipe(source_table("chats", "chats.jsonl", format="alpaca")),
                        files={"chats.jsonl": data}, args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0].format: format 'alpaca' fits none of",
                       "chats.jsonl:1: keys conversations", "the data looks like 'sharegpt'")


def test_declared_messages_format_on_alpaca_rows_suggests_alpaca(run_recipe):
    result = run_recipe(recipe(source_table("qa", "qa.jsonl", format="messages")),
                        files={"qa.jsonl": alpaca_lines(20)}, args=["-q"])
    assert_clear_error(result, "format 'messages' fits none of the first rows",
                       "qa.jsonl:1:", "looks like 'alpaca'")


def test_declared_format_rejects_odd_rows_once_rows_fit(run_recipe):
    data = alpaca_lines(3) + '{"instruction": "No answer here"}\n'
    result = run_recipe(recipe(source_table("qa", "qa.jsonl", format="alpaca")),
                        files={"qa.jsonl": data})
    assert_complete(result)
    assert result.rejections("read") == [("missing-field", "qa.jsonl:4: missing field 'output'")]


# Locations and ids


def test_records_remember_file_and_line(run_recipe):
    data = alpaca_lines(1) + "\n   \n" + alpaca_lines(1, start=1)
    result = run_recipe(recipe(source_table("qa", "data/qa.jsonl")), files={"data/qa.jsonl": data})
    assert_complete(result)
    assert result.origins("read") == ["data/qa.jsonl:1", "data/qa.jsonl:4"]
    assert {row["source"] for row in result.kept("read")} == {"qa"}


def test_ids_depend_on_normalised_content_only(run_recipe, tmp_path):
    alpaca = '{"instruction": "Say  hi.", "output": "Hello\\nthere."}\n'
    sharegpt = ('{"conversations": [{"from": "human", "value": "Say hi."},'
                ' {"from": "gpt", "value": "Hello there. "}]}\n')
    result = run_recipe(recipe(source_table("a", "a.jsonl"), source_table("b", "b.jsonl")),
                        files={"a.jsonl": alpaca, "b.jsonl": sharegpt})
    assert_complete(result)
    first, second = (row["id"] for row in result.dataset())
    assert first == second and re.fullmatch(r"[0-9a-f]{16}", first)
    again = run_recipe(recipe(source_table("qa", "moved/qa.jsonl")),
                       files={"moved/qa.jsonl": alpaca}, name="other")
    assert again.dataset()[0]["id"] == first


def test_origin_is_stored_on_every_record(run_recipe):
    result = run_recipe(recipe(source_table("general", "qa.jsonl", origin="rehearsal")),
                        files={"qa.jsonl": alpaca_lines(2)})
    assert_complete(result)
    assert {r["origin"] for r in result.dataset()} == {"rehearsal"}


def test_a_source_of_generated_records_needs_a_review_stage(run_recipe):
    result = run_recipe(recipe(source_table("gen", "qa.jsonl", origin="generated")),
                        files={"qa.jsonl": alpaca_lines(2)}, args=["-q"])
    assert_clear_error(result, "sources[0].origin: source 'gen' holds generated records",
                       'add a review stage ([[stages]] use = "review")')


def test_a_review_stage_that_leaves_generated_records_out_is_named(run_recipe):
    stages = '[[stages]]\nuse = "review"\nname = "people"\norigins = []\n'
    result = run_recipe(recipe(source_table("gen", "qa.jsonl", origin="generated"), stages),
                        files={"qa.jsonl": alpaca_lines(2)}, args=["-q"])
    assert_clear_error(result, "review stage 'people' does not hold them: add \"generated\" to"
                               " its origins")


# Unreadable rows and max_bad_fraction


def test_malformed_lines_are_rejected_with_line_and_reason(run_recipe):
    data = alpaca_lines(10) + '{"instruction": "cut off\n' + alpaca_lines(9, start=10)
    result = run_recipe(recipe(source_table("qa", "qa.jsonl")), files={"qa.jsonl": data})
    manifest = assert_complete(result)
    assert result.rejections("read") == [("malformed-json", "qa.jsonl:11: Unterminated"
                                                            " string starting at column 17")]
    assert manifest["sources"][0] == {"name": "qa", "use": "jsonl", "rows": 20, "records": 19,
                                      "rejected": 1, "unreadable": 1}
    assert manifest["final"]["input"] == 20


def test_bad_rows_up_to_max_bad_fraction_are_allowed(run_recipe):
    data = alpaca_lines(8) + "not json\n[1, 2]\n"
    result = run_recipe(recipe(source_table("qa", "qa.jsonl", max_bad_fraction=0.2)),
                        files={"qa.jsonl": data})
    assert_complete(result)
    assert [reason for reason, _ in result.rejections("read")] == ["malformed-json",
                                                                    "not-an-object"]


def test_more_bad_rows_than_max_bad_fraction_stop_the_run(run_recipe):
    data = alpaca_lines(8) + "not json\n[1, 2]\n"
    result = run_recipe(recipe(source_table("qa", "qa.jsonl")), files={"qa.jsonl": data},
                        args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0]: 2 of 10 rows of source 'qa' are"
                       " unreadable (20%, more than max_bad_fraction = 0.1)",
                       "the first at qa.jsonl:9: Expecting value at column 1 (malformed-json)")
    assert result.manifest["status"] == "failed"


def test_rows_rejected_for_their_content_do_not_count_as_unreadable(run_recipe):
    data = alpaca_lines(2) + '{"instruction": "Q?", "output": null}\n' * 3
    result = run_recipe(recipe(source_table("qa", "qa.jsonl")), files={"qa.jsonl": data})
    manifest = assert_complete(result)
    assert manifest["sources"][0]["unreadable"] == 0
    assert result.rejections("read")[0] == ("missing-field", "qa.jsonl:3: missing field 'output'")


def test_text_that_is_not_valid_unicode_is_rejected(run_recipe):
    data = alpaca_lines(2) + '{"instruction": "Broken \\ud800 text", "output": "Answer."}\n'
    result = run_recipe(recipe(source_table("qa", "qa.jsonl")), files={"qa.jsonl": data})
    assert_complete(result)
    assert result.rejections("read") == [("invalid-unicode", "qa.jsonl:3: message 0 contains"
                                          " '\\ud800' at character 7, which is not valid Unicode"
                                          " text")]


def test_blank_turns_are_rejected_but_a_blank_final_answer_waits_to_be_answered(run_recipe):
    def chat(*texts):
        return {"messages": [{"role": ("user", "assistant")[i % 2], "content": text}
                             for i, text in enumerate(texts)]}

    data = jsonl(chat("Hi?", "Hello."), chat("  ", "Hello."), chat("Hi?", "\n", "And?", "Yes."),
                 chat("Hi?", ""))
    result = run_recipe(recipe(source_table("c", "c.jsonl")), files={"c.jsonl": data})
    assert_complete(result)
    assert result.rejections("read") == [
        ("empty-turn", "c.jsonl:2: message 0 (user) is empty or only whitespace"),
        ("empty-turn", "c.jsonl:3: message 1 (assistant) is empty or only whitespace")]
    assert result.answers() == ["Hello.", ""]  # prompt-only: an `answer` strategy fills it
    assert result.manifest["split"]["unanswered"] == 1
    assert ("warning: 1 record in the dataset has an empty final answer (prompt-only): add"
            " [model]") in result.output


def test_keys_that_are_not_valid_unicode_still_give_a_readable_rejection(run_recipe):
    data = alpaca_lines(2) + '{"\\udcff": 1}\n'
    result = run_recipe(recipe(source_table("qa", "qa.jsonl")), files={"qa.jsonl": data})
    assert_complete(result)
    assert result.rejections("read") == [("missing-field",
                                          "qa.jsonl:3: missing field 'instruction'")]
    assert "\\udcff" in result.rejected("read")[0]["raw"]


# Whole sources gone wrong


def test_an_empty_source_stops_the_run(run_recipe):
    result = run_recipe(recipe(source_table("qa", "qa.jsonl")), files={"qa.jsonl": "\n\n"},
                        args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0]: source 'qa' contains no rows")


def test_a_source_where_no_row_becomes_a_record_stops_the_run(run_recipe):
    data = ('{"messages": [{"role": "user", "content": "Hi?"},'
            ' {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]}\n')
    result = run_recipe(recipe(source_table("chats", "chats.jsonl")),
                        files={"chats.jsonl": data * 2}, args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0]: none of the 2 rows of source 'chats'"
                       " became a record", "the first rejected at chats.jsonl:1:",
                       "(no-final-answer)")


def test_one_failing_source_fails_the_run_that_reads_others(run_recipe):
    result = run_recipe(recipe(source_table("good", "good.jsonl"),
                               source_table("bad", "bad.jsonl")),
                        files={"good.jsonl": alpaca_lines(3), "bad.jsonl": "oops\n"},
                        args=["-q"])
    assert_clear_error(result, "sources[1]: 1 of 1 rows of source 'bad' are unreadable")


def test_every_row_is_accounted_for_across_sources_and_stages(run_recipe):
    files = {
        "a.jsonl": alpaca_lines(6) + "garbage\n" + '{"instruction": "Short?", "output": "no"}\n',
        "b.jsonl": ('{"conversations": [{"from": "human", "value": "Hi?"},'
                    ' {"from": "gpt", "value": "Hello, how can I help?"}]}\n'
                    '{"conversations": [{"from": "human", "value": "Only a question"}]}\n'),
    }
    text = recipe(source_table("a", "a.jsonl", max_bad_fraction=0.2), source_table("b", "b.jsonl"))
    result = run_recipe(text + '\n[[stages]]\nuse = "length"\nmin_chars = 5\n', files=files)
    manifest = assert_complete(result)
    assert manifest["final"] == {"input": 10, "added": 0, "rejected": 3, "train": 7, "eval": 0,
                                 "accounted": 10}
    assert [s["rows"] for s in manifest["sources"]] == [8, 2]


def test_kept_data_columns_are_values_json_can_hold():
    import datetime
    import decimal

    from curate.ingest import json_value

    assert [json_value(v) for v in (0.9, "0.9", None, float("nan"), float("inf"), True)] == [
        0.9, "0.9", None, None, None, True]
    assert json_value(decimal.Decimal("0.5")) == "0.5"
    assert json_value([datetime.date(2026, 1, 2), 1]) == ["2026-01-02", 1]


def test_a_plugin_format_s_messages_are_checked_like_the_built_ins(run_recipe, curate_plugin):
    import types

    from curate import hookimpl
    from curate.formats import Format

    class Speakers(Format):
        name = "speakers"
        required = ("q", "a")

        def to_messages(self, row):
            return [{"role": "user", "content": row["q"]}, {"role": row["who"], "content": row["a"]}]

    curate_plugin(types.SimpleNamespace(register_formats=hookimpl(
        lambda register: register(Speakers))), name="speakers")
    rows = [{"q": f"Question {i}?", "a": f"Answer number {i}.", "who": "assistant"}
            for i in range(9)] + [{"q": "Who?", "a": "Me.", "who": "bot"}]
    result = run_recipe(source_table("s", "s.jsonl", format="speakers"),
                        files={"s.jsonl": jsonl(*rows)})
    assert_complete(result)
    assert result.rejections("read") == [
        ("unsupported-role", "s.jsonl:10: message 1 has role 'bot'; expected one of system,"
                             " user, assistant")]
