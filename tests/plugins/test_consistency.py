"""The consistency stage: one prompt answered differently (each policy), style drift per source
(length outliers, declared formats, empty and refusal responses, system prompt drift), the
evidence each finding carries, option checks, determinism and bad input. Runs are real
`curate run`s over jsonl files."""

import hashlib
import json
import math

import pytest

from curate.options import OptionError, parse_options
from curate.records import Record, Rejection
from curate.stages import StageContext
from curate.plugins.consistency import ConsistencyOptions, ConsistencyStage
from curate.plugins.consistency_text import comparison_key
from curate.testing import jsonl
from curate.testing import messages_row as row
from support.consistency_runs import PLAIN, by_line, ids, line, recipe, run, similar


REVIEWS = [row("Is this kettle good?", "positive: loves it"),
           row("is this kettle GOOD", "negative: it broke"),
           row("Is this kettle good ?!", "positive: great value")]


# ---- conflicting answers -------------------------------------------------------------------

def test_flag_keeps_every_answer_and_notes_the_conflict(run_recipe):
    result = run(run_recipe, PLAIN, *REVIEWS)
    found, known = by_line(result), ids(result)
    assert [outcome[0] for outcome in found.values()] == ["kept"] * 3
    [note] = found["a.jsonl:2"][1]
    assert note == {"rule": "conflicting-answer", "other_id": known["a.jsonl:1"], "detail": (
        f"answers 'negative: it broke' but {known['a.jsonl:1']} (same prompt) answers"
        f" 'positive: loves it'; 1 of 3 records agree with the other answer"),
        "other_answer": "positive: loves it"}
    assert found["a.jsonl:1"][1][0]["other_id"] == known["a.jsonl:2"]


def test_majority_keeps_the_most_common_answer_and_shows_the_evidence(run_recipe):
    result = run(run_recipe, PLAIN + '\non_conflict = "majority"',
                 row("Capital of France?", "Paris"), row("capital of france", "Lyon"),
                 row("Capital of  France", "paris."), row("Something else?", "Fine."))
    found, known = by_line(result), ids(result)
    assert found["a.jsonl:1"] == found["a.jsonl:3"] == found["a.jsonl:4"] == ("kept", None)
    reason, detail, evidence = found["a.jsonl:2"]
    assert reason == "conflicting-answer"
    assert detail == (f"answers 'Lyon' but {known['a.jsonl:1']} (same prompt) answers 'Paris';"
                      f" 2 of 3 records agree with the other answer; on_conflict = 'majority'"
                      f" keeps the other answer")
    assert evidence == {"rule": "conflicting-answer", "other_id": known["a.jsonl:1"],
                        "other_answer": "Paris", "answer": "Lyon", "group_size": 3,
                        "agreeing": 1, "other_count": 2, "answers": 2, "policy": "majority",
                        "prompt_similarity": 1.0}


def test_a_majority_tie_keeps_and_flags_the_whole_group(run_recipe):
    result = run(run_recipe, PLAIN + '\non_conflict = "majority"',
                 row("Is the refund window 30 days?", "Yes, 30 days."),
                 row("Is the refund window 30 days?", "No, 14 days."),
                 row("Q?", "B"), row("Q?", "A"), row("Q?", "A"), row("Q?", "B"), row("Q?", "C"))
    found, known = by_line(result), ids(result)
    assert all(outcome[0] == "kept" and outcome[1] for outcome in found.values())
    assert found["a.jsonl:2"][1][0]["detail"] == (
        f"answers 'No, 14 days.' but {known['a.jsonl:1']} (same prompt) answers 'Yes, 30 days.';"
        f" 1 of 2 records agree with the other answer; a tie: no answer has a majority, so"
        f" on_conflict = 'majority' keeps the whole group (flagged)")
    assert found["a.jsonl:7"][1][0]["detail"].startswith(
        f"answers 'C' but {known['a.jsonl:3']} (same prompt) answers 'B'; 2 of 5 records agree"
        f" with the other answer; a tie")


def test_majority_without_a_tie_rejects_the_minority(run_recipe):
    result = run(run_recipe, PLAIN + '\non_conflict = "majority"',
                 row("Q?", "B"), row("Q?", "A"), row("Q?", "A"), row("Q?", "C"))
    assert {k: v[0] for k, v in by_line(result).items()} == {
        "a.jsonl:1": "conflicting-answer", "a.jsonl:2": "kept", "a.jsonl:3": "kept",
        "a.jsonl:4": "conflicting-answer"}
    assert by_line(result)["a.jsonl:1"][1].endswith("; on_conflict = 'majority' keeps the other"
                                                    " answer")


def test_first_keeps_the_first_answer_even_in_the_minority(run_recipe):
    result = run(run_recipe, PLAIN + '\non_conflict = "first"', *REVIEWS)
    found = by_line(result)
    assert [outcome[0] for outcome in found.values()] == ["kept", "conflicting-answer",
                                                          "conflicting-answer"]
    assert found["a.jsonl:3"][1].endswith("on_conflict = 'first' keeps the answer seen first")


def test_reject_all_drops_the_whole_group_and_nothing_else(run_recipe):
    result = run(run_recipe, PLAIN + '\non_conflict = "reject-all"', *REVIEWS,
                 row("Unrelated?", "Yes."), row("Agreed?", "Yes."), row("agreed", "yes"))
    reasons = {k: v[0] for k, v in by_line(result).items()}
    assert reasons == {"a.jsonl:1": "conflicting-answer", "a.jsonl:2": "conflicting-answer",
                       "a.jsonl:3": "conflicting-answer", "a.jsonl:4": "kept",
                       "a.jsonl:5": "kept", "a.jsonl:6": "kept"}


def test_answer_pattern_compares_labels_only(run_recipe):
    pattern = PLAIN + '\non_conflict = "majority"\nanswer_pattern = "^(positive|negative)\\\\b"'
    agreeing = run(run_recipe, pattern, REVIEWS[0], REVIEWS[2])
    assert [v[0] for v in by_line(agreeing).values()] == ["kept", "kept"]
    result = run(run_recipe, pattern, *REVIEWS)
    reason, detail, evidence = by_line(result)["a.jsonl:2"]
    assert detail.startswith("answers 'negative' ('negative: it broke') but ")
    assert (evidence["label"], evidence["other_label"], evidence["other_count"]) == (
        "negative", "positive", 2)


LABELS = '\non_conflict = "majority"\nanswer_pattern = "^(positive|negative|neutral)\\\\b"'
TENT = "Classify the sentiment of this review: The tent kept us dry all weekend."


def test_answer_pattern_ignores_case(run_recipe):
    result = run(run_recipe, PLAIN + LABELS, row(TENT, "positive: the tent kept them dry."),
                 row(TENT, "Positive: the tent kept the reviewer dry."),
                 row(TENT, "POSITIVE - kept them dry all weekend"))
    assert set(by_line(result).values()) == {("kept", None)}


def test_an_answer_without_a_label_is_noted_not_outvoted(run_recipe):
    result = run(run_recipe, PLAIN + LABELS, row(TENT, "positive: dry."), row(TENT, "Positive!"),
                 row(TENT, "It kept them dry, so I would say it is a good one."))
    found, known = by_line(result), ids(result)
    assert found["a.jsonl:1"] == found["a.jsonl:2"] == ("kept", None)
    [note] = found["a.jsonl:3"][1]
    assert note == {"rule": "unlabelled-answer", "other_id": known["a.jsonl:1"],
                    "other_answer": "positive: dry.", "detail": (
        "answer_pattern finds no label in 'It kept them dry, so I would say it is a good one.',"
        f" so it is not compared with the 2 labelled answers to its prompt (e.g."
        f" {known['a.jsonl:1']} (same prompt) answers 'positive' ('positive: dry.'))")}


def test_unlabelled_answers_alone_are_compared_whole(run_recipe):
    result = run(run_recipe, PLAIN + LABELS, row("Where is my order?", "It ships today."),
                 row("where is my order", "It shipped last week."), row(TENT, "positive: dry"),
                 row(TENT, "negative: wet"), row(TENT, "positive: dry!"))
    found = {k: v[0] for k, v in by_line(result).items()}
    assert found == {"a.jsonl:1": "kept", "a.jsonl:2": "kept", "a.jsonl:3": "kept",
                     "a.jsonl:4": "conflicting-answer", "a.jsonl:5": "kept"}
    [note] = by_line(result)["a.jsonl:1"][1]
    assert "a tie" in note["detail"]


def test_review_policy_asks_about_unlabelled_answers_too(run_recipe):
    options = PLAIN + LABELS.replace("majority", "review")
    text = recipe(options).replace("[split]", '[[stages]]\nuse = "review"\n[split]')
    result = run_recipe(text, files={"a.jsonl": jsonl(row(TENT, "positive: dry."),
                                                      row(TENT, "No idea."))})
    assert result.exit_code == 3, result.output  # waits for a person
    [kept] = [json.loads(r["meta"]) for r in result.kept("consistency")
              if json.loads(r["meta"])["from"] == "a.jsonl:2"]
    [ask] = kept["needs_review"]
    assert ask.startswith("consistency unlabelled-answer: answer_pattern finds no label")


def test_prompts_under_other_system_prompts_are_other_questions(run_recipe):
    rows = [row("Greet me.", "Hello!", "Be formal."), row("Greet me.", "Yo!", "Be casual.")]
    assert by_line(run(run_recipe, PLAIN, *rows))["a.jsonl:1"] == ("kept", None)
    merged = run(run_recipe, PLAIN + "\nprompt_includes_system = false", *rows)
    assert by_line(merged)["a.jsonl:1"][1][0]["rule"] == "conflicting-answer"


def test_conflicts_are_found_across_sources(run_recipe):
    result = run(run_recipe, PLAIN + '\non_conflict = "first"',
                 a=[row("Is 7 prime?", "Yes.")], b=[row("is 7 prime", "No.")])
    assert by_line(result)["b.jsonl:1"][2]["other_id"] == ids(result)["a.jsonl:1"]


NEAR = ("how do i reset the password on my home wifi router without losing the other"
        " settings")


def test_near_identical_prompts_are_grouped_by_verified_jaccard(run_recipe):
    near = NEAR.replace("home", "new")
    far = NEAR.replace("password on my home", "name of the guest")
    similarity = similar(NEAR, near)
    assert 0.6 < similarity < 1
    assert similar(NEAR, far) < 0.6
    rows = [row(NEAR, "Hold the reset button."), row(near, "Call support."),
            row(far, "Open the admin page.")]
    exact = run(run_recipe, PLAIN, *rows)
    assert all(v == ("kept", None) for v in by_line(exact).values())
    found = by_line(run(run_recipe, PLAIN + "\nprompt_similarity = 0.6", *rows))
    [note] = found["a.jsonl:2"][1]
    assert (f"(similar prompt, Jaccard {similarity:.2f}; only here: 'new', only there: 'home')"
            in note["detail"])
    assert found["a.jsonl:3"] == ("kept", None)


def test_near_identical_evidence_carries_the_measured_similarity(run_recipe):
    rows = [row(NEAR, "A."), row(NEAR.replace("home", "new"), "B."), row(NEAR, "A!")]
    result = run(run_recipe, PLAIN + '\nprompt_similarity = 0.6\non_conflict = "majority"', *rows)
    evidence = by_line(result)["a.jsonl:2"][2]
    assert 0.6 < evidence["prompt_similarity"] < 1 and evidence["group_size"] == 3
    assert (evidence["prompt_words"], evidence["other_prompt_words"]) == ("new", "home")


# ---- style drift per source ----------------------------------------------------------------

def sized(count, length, source_tag="x"):
    return [row(f"Question {source_tag} {i}?", ("w" * (length + i % 7))) for i in range(count)]


def test_length_outliers_are_judged_within_their_own_source(run_recipe):
    short_source = sized(40, 60) + [row("Odd one?", "z" * 20000)]
    long_source = sized(40, 20000, "y")
    result = run(run_recipe, 'check_system_prompt = false\non_outlier = "reject"',
                 a=short_source, b=long_source)
    rejected = result.rejected("consistency")
    assert [line(r["meta"]) for r in rejected] == ["a.jsonl:41"]
    evidence = json.loads(rejected[0]["evidence"])
    assert evidence["rule"] == "length-outlier" and evidence["source"] == "a"
    assert evidence["chars"] == 20000 and evidence["zscore"] > 4 and evidence["max_zscore"] == 4
    assert evidence["source_records"] == 41 and 60 <= evidence["typical_chars"] <= 80
    assert rejected[0]["detail"].startswith("response is unusually long: 20,000 characters,"
                                            " log-length z-score ")


def test_length_z_score_is_over_log_lengths(run_recipe):
    data = sized(30, 400) + [row("Terse?", "Ok, fine.")]
    [rejected] = run(run_recipe, 'check_system_prompt = false\non_outlier = "reject"',
                     *data).rejected("consistency")
    logs = [math.log1p(400 + i % 7) for i in range(30)] + [math.log1p(9)]
    mean = sum(logs) / len(logs)
    std = math.sqrt(sum((x - mean) ** 2 for x in logs) / len(logs))
    evidence = json.loads(rejected["evidence"])
    assert evidence["zscore"] == pytest.approx(abs(logs[-1] - mean) / std, abs=1e-3)
    assert rejected["detail"].startswith("response is unusually short: 9 characters")


def test_length_outliers_are_flagged_by_default(run_recipe):
    data = sized(40, 60) + [row("Setup guide?", "z" * 1400), row("Free shipping?", "Yes.")]
    found = by_line(run(run_recipe, "check_system_prompt = false", *data))
    assert {k for k, v in found.items() if v != ("kept", None)} == {"a.jsonl:41", "a.jsonl:42"}
    [long], [short] = found["a.jsonl:41"][1], found["a.jsonl:42"][1]
    assert long["rule"] == short["rule"] == "length-outlier"
    assert long["detail"].startswith("response is unusually long: 1,400 characters, log-length"
                                     " z-score ")
    assert short["detail"].startswith("response is unusually short: 4 characters")


@pytest.mark.parametrize("options", ["max_zscore = 0", "min_source_records = 50"])
def test_length_rule_can_be_turned_off_or_needs_enough_records(run_recipe, options):
    data = sized(40, 60) + [row("Odd one?", "z" * 20000)]
    found = by_line(run(run_recipe, options + '\non_outlier = "reject"', *data))
    assert set(found.values()) == {("kept", None)}


JSON_ROWS = [row("q1", '{"label": "a", "score": 1}'), row("q2", "not json"),
             row("q3", '```json\n{"label": "a"}\n```'), row("q4", '{"score": 2}'),
             row("q5", '{"label": 3}'), row("q6", "[1, 2]"), row("q7", '{"label": NaN}')]


def test_json_format_and_minimal_schema(run_recipe):
    options = ('response_format = "json"\njson_schema = {type = "object", required = ["label"],'
               ' properties = {label = {type = "string"}}}')
    found = by_line(run(run_recipe, options, *JSON_ROWS))
    assert found["a.jsonl:1"] == ("kept", None)
    assert {k: v[0] for k, v in found.items() if k != "a.jsonl:1"} == {
        f"a.jsonl:{n}": "format-violation" for n in range(2, 8)}
    assert found["a.jsonl:2"][1].startswith("response is not valid JSON (Expecting value")
    assert found["a.jsonl:4"][1] == "response JSON breaks json_schema: missing required key(s) label"
    assert found["a.jsonl:5"][1] == ("response JSON breaks json_schema: key 'label' should be a"
                                     " JSON string, found number")
    assert found["a.jsonl:6"][2] == {"rule": "format-violation", "format": "json",
                                     "response": "[1, 2]"}
    assert found["a.jsonl:7"][1].startswith("response is not valid JSON (NaN is not JSON)")


def test_regex_format_must_match_the_whole_response(run_recipe):
    options = 'response_format = "regex"\nresponse_regex = "[A-D]\\\\. .+"'
    found = by_line(run(run_recipe, options, row("q1", "B. Because."), row("q2", "The answer: B. x"),
                        row("q3", "  C. trimmed  ")))
    assert [v[0] for v in found.values()] == ["kept", "format-violation", "kept"]
    assert found["a.jsonl:2"][1] == ("response does not fully match response_regex"
                                     " '[A-D]\\\\. .+': 'The answer: B. x'")


@pytest.mark.parametrize("pattern", ["", '\nanswer_pattern = "^(\\\\w+):"'])
def test_labels_format_checks_the_response_or_its_label(run_recipe, pattern):
    options = 'response_format = "labels"\nlabels = ["positive", "negative"]' + pattern
    answers = (["positive", "Positive", "neutral"] if not pattern
               else ["positive: loves it", "Positive: yes", "neutral: meh"])
    found = by_line(run(run_recipe, options, *[row(f"q{i}", a) for i, a in enumerate(answers)]))
    assert [v[0] for v in found.values()] == ["kept", "format-violation", "format-violation"]
    assert found["a.jsonl:3"][1] == ("label 'neutral' is not one of the allowed labels"
                                     " (positive, negative)")


def test_a_missing_label_is_a_format_violation(run_recipe):
    options = ('response_format = "labels"\nlabels = ["positive"]\n'
               'answer_pattern = "^(positive|negative):"')
    [rejected] = run(run_recipe, options, row("q", "I think it is fine")).rejected("consistency")
    assert rejected["detail"] == ("answer_pattern finds no label in the response:"
                                  " 'I think it is fine'")


def test_empty_and_refusal_responses(run_recipe):
    found = by_line(run(run_recipe, 'refusal_patterns = ["^nope\\\\b"]',
                        row("q1", " \u200b\u2060 "), row("q2", "As an AI language model, I won't."),
                        row("q3", "I\u2019m sorry, but I can\u2019t do that."), row("q4", "Nope."),
                        row("q5", "?"), row("q6", "Sure, I can help with that.")))
    assert {k: v[0] for k, v in found.items()} == {
        "a.jsonl:1": "empty-response", "a.jsonl:2": "refusal", "a.jsonl:3": "refusal",
        "a.jsonl:4": "refusal", "a.jsonl:5": "kept", "a.jsonl:6": "kept"}
    assert found["a.jsonl:1"][1:] == ("response has 4 characters but only whitespace or"
                                      " invisible ones", {"rule": "empty-response", "chars": 4})
    assert found["a.jsonl:4"][2] == {"rule": "refusal", "pattern": "^nope\\b", "match": "Nope"}
    assert found["a.jsonl:4"][1] == "response reads as a refusal: 'Nope' in 'Nope.'"
    assert found["a.jsonl:3"][2] == {"rule": "refusal", "pattern": "built-in",
                                     "match": "I'm sorry, but I can't do that", "words": 7,
                                     "max_words": 50}
    assert found["a.jsonl:3"][1] == ("response reads as a refusal: it opens with \"I'm sorry, but"
                                     " I can't do that\" and has 7 words with no turn to help"
                                     " (built-in refusals: at most 50 words)")


def test_refusal_rules_can_be_narrowed_or_turned_off(run_recipe):
    rows = [row("q1", "As an AI language model, no."), row("q2", "Nope."), row("q3", "")]
    only_mine = by_line(run(run_recipe, 'builtin_refusals = false\nrefusal_patterns = ["^nope"]',
                            *rows))
    assert [v[0] for v in only_mine.values()] == ["kept", "refusal", "empty-response"]
    off = by_line(run(run_recipe, "reject_refusals = false\nreject_empty = false", *rows))
    assert [v[0] for v in off.values()] == ["kept", "kept", "kept"]


PERSONA = "You are a patient support agent."


def test_system_prompt_drift_is_flagged_against_the_most_common_one(run_recipe):
    rows = [row(f"q{i}", f"a{i}", PERSONA) for i in range(3)]
    rows += [row("q3", "a3", "You are a pirate."), row("q4", "a4")]
    result = run(run_recipe, "max_zscore = 0", *rows)
    found, known = by_line(result), ids(result)
    assert found["a.jsonl:1"] == ("kept", None)
    [pirate], [missing] = found["a.jsonl:4"][1], found["a.jsonl:5"][1]
    assert pirate == {"rule": "system-prompt-drift", "other_id": known["a.jsonl:1"], "detail": (
        f"system prompt 'You are a pirate.' differs from '{PERSONA}', which 3 of 5 records of"
        f" source 'a' use (e.g. {known['a.jsonl:1']})")}
    assert missing["detail"].startswith("system prompt (none) differs from")


def test_system_prompt_drift_can_reject_and_is_judged_per_source(run_recipe):
    result = run(run_recipe, 'max_zscore = 0\non_drift = "reject"',
                 a=[row("q1", "a1", PERSONA), row("q2", "a2", PERSONA), row("q3", "a3")],
                 b=[row("q4", "a4"), row("q5", "a5")])
    [rejected] = result.rejected("consistency")
    assert (line(rejected["meta"]), rejected["reason"]) == ("a.jsonl:3", "system-prompt-drift")
    assert json.loads(rejected["evidence"]) == {
        "rule": "system-prompt-drift", "other_id": ids(result)["a.jsonl:1"], "system": None,
        "other_system": PERSONA, "common_count": 2, "source_records": 3, "source": "a"}


def test_a_record_rejected_for_one_rule_is_not_counted_by_the_others(run_recipe):
    result = run(run_recipe, PLAIN + '\non_conflict = "reject-all"',
                 row("Q?", "Yes."), row("Q?", "I'm sorry, but I cannot answer."))
    assert [v[0] for v in by_line(result).values()] == ["kept", "refusal"]


# ---- options, determinism, bad input -------------------------------------------------------

def options(**values):
    parsed = parse_options(ConsistencyOptions, values, "recipe.toml", "stages[0]")
    ConsistencyStage.check_options(parsed)
    return parsed


@pytest.mark.parametrize("values, key, message", [
    ({"response_format": "regex"}, "response_regex", 'response_format = "regex" needs'),
    ({"response_format": "labels"}, "labels", 'response_format = "labels" needs'),
    ({"response_format": "labels", "labels": []}, "labels", "at least one label"),
    ({"labels": ["a"]}, "labels", 'only used with response_format = "labels"'),
    ({"json_schema": {"required": ["a"]}}, "json_schema", "only used with"),
    ({"response_format": "json", "json_schema": {"pattern": "x"}}, "json_schema", "pattern"),
    ({"response_format": "json", "json_schema": {"type": "dict"}}, "json_schema", "'dict'"),
    ({"response_format": "regex", "response_regex": "(["}, "response_regex", "not a valid"),
    ({"answer_pattern": "positive|negative"}, "answer_pattern", "needs a group"),
    ({"refusal_patterns": ["ok", "(unclosed"]}, "refusal_patterns[1]", "not a valid"),
])
def test_option_mistakes_are_caught_at_validation(values, key, message):
    with pytest.raises(OptionError) as caught:
        options(**values)
    assert caught.value.key == key and message in str(caught.value)


def test_an_option_mistake_stops_the_run_naming_the_key(run_recipe):
    result = run_recipe(recipe('response_format = "regex"'), files={"a.jsonl": jsonl(*REVIEWS)})
    assert result.exit_code == 2
    assert "stages[0].response_regex" in result.output and "needs response_regex" in result.output


@pytest.mark.parametrize("values, message", [
    ({"prompt_similarity": 0.2}, "between 0.5 and 1.0"),
    ({"max_prompt_word_changes": -1}, "max_prompt_word_changes"),
    ({"on_outlier": "drop"}, "on_outlier"),
])
def test_ranges_and_choices_are_checked(values, message):
    with pytest.raises(Exception, match=message):
        options(**values)


MIXED = ([row(f"Q{i % 9}?", f"Answer {i % 4}.", PERSONA if i % 5 else None) for i in range(60)]
         + [row("Long?", "x" * 30000), row("Refuse?", "As an AI language model I can't.")])


@pytest.mark.parametrize("policy", ["flag", "majority"])
def test_same_input_gives_identical_output_whatever_the_workers(run_recipe, policy):
    digests = []
    for workers in (1, 2):
        result = run_recipe(recipe(f'on_conflict = "{policy}"\nprompt_similarity = 0.8',
                                   workers=workers),
                            files={"a.jsonl": jsonl(*MIXED)}, name=f"w{workers}")
        assert result.exit_code == 0, result.output
        folder = result.step_dir("consistency")
        digests.append([hashlib.sha256((folder / name).read_bytes()).hexdigest()
                        for name in ("kept.parquet", "rejected.parquet")])
    assert digests[0] == digests[1]
    assert result.manifest["steps"][-1]["rejected"] > 0


BAD = ["", "   ", "\x00\x07\x1b[31mred\x1b[0m", "😀" * 50, "\u200b\u200c\u200d\ufeff",
       "مرحبا بالعالم، كيف حالك؟", "\u202eevil\u202c text", "a" * 1_000_000, "\ud800 lone",
       "e\u0301 vs \u00e9"]


@pytest.mark.parametrize("policy", ["flag", "reject-all"])
def test_bad_input_is_kept_or_rejected_with_a_reason(run_recipe, policy):
    rows = [row(p, a) for p in BAD[:5] for a in BAD] + [row(BAD[5], a) for a in BAD]
    rows += [row(p, "fine answer", s) for p, s in zip(BAD, reversed(BAD))]
    data = jsonl(*rows)  # ASCII-escaped: a lone surrogate survives
    result = run_recipe(recipe(f'on_conflict = "{policy}"\nresponse_format = "json"'),
                        files={"a.jsonl": data})
    assert result.exit_code == 0, result.output
    step = result.manifest["steps"][-1]
    assert step["in"] == step["kept"] + step["rejected"] > 0
    assert set(step["reasons"]) <= {"empty-response", "format-violation", "conflicting-answer",
                                    "length-outlier", "refusal", "system-prompt-drift"}


def test_normalisation_treats_equivalent_text_alike():
    variants = ["Ｃａｆé,  déjà-vu!", "café déjà vu", "CAFE\u0301 DE\u0301JA\u0300 VU.",
                "ca\u200bfé\tdéjà vu"]
    assert len({comparison_key(v) for v in variants}) == 1
    assert comparison_key("What's 2+2?") == b"what s 2+2"
    assert comparison_key("What's 2+2?") == comparison_key("What\u2019s 2\uff0b2\uff1f")


def test_a_minus_sign_makes_another_answer():
    assert comparison_key("It is -5.") != comparison_key("It is 5.")
    assert comparison_key("It is -5.") == comparison_key("it is \u22125")
    assert comparison_key("2 - 7") == comparison_key("2 7")  # a hyphen between words is not one
    assert comparison_key("e-mail") == comparison_key("e mail")


def test_the_ascii_fast_path_agrees_with_the_unicode_path():
    for code in range(128):
        text = f"Ab{chr(code)}c  d"
        assert comparison_key(text) == comparison_key(text + "\u200b"), repr(chr(code))


def records_of(*rows):
    return [Record(r["messages"], "a") for r in rows]


def direct_outcomes(records, reread, tmp_path, **values):
    context = StageContext("consistency", 0, tmp_path, tmp_path, reread=reread)
    stage = ConsistencyStage(options(**values), context)
    return [(o.reason if isinstance(o, Rejection) else "kept", o.id)
            for o in stage.process(iter(records))]


def test_without_a_reread_the_stage_holds_its_input_and_agrees(tmp_path):
    records = records_of(*REVIEWS, row("Q?", ""))
    held = direct_outcomes(records, None, tmp_path, on_conflict="first")
    reread = direct_outcomes(records, lambda: iter(records), tmp_path, on_conflict="first")
    assert direct_outcomes([], lambda: iter([]), tmp_path, prompt_similarity=0.8) == []
    assert held == reread == [("kept", records[0].id), ("conflicting-answer", records[1].id),
                              ("conflicting-answer", records[2].id),
                              ("empty-response", records[3].id)]


def test_input_that_changes_between_the_passes_fails_loudly(tmp_path):
    records = records_of(*REVIEWS)
    with pytest.raises(RuntimeError, match="changed between its two passes"):
        direct_outcomes(records, lambda: iter(records[::-1]), tmp_path)
    with pytest.raises(RuntimeError, match="second pass read 2 of 3"):
        direct_outcomes(records, lambda: iter(records[:2]), tmp_path)
