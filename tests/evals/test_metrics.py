"""Task metrics on hand-made answers: each metric's verdict, label counts and the shares."""

import re

import pytest

from curate.evals.metrics import Scoring, json_problem, label_counts, summarise

LABELS = ["positive", "negative", "neutral"]


def test_exact_and_contains_ignore_spacing_and_by_default_case():
    scoring = Scoring(["exact", "contains"])
    assert scoring.judge("  The answer\n is  42 ", "the answer is 42") == {
        "exact": True, "contains": True}
    assert scoring.judge("I think the answer is 42.", "the answer is 42") == {
        "exact": False, "contains": True}
    assert scoring.judge("forty-two", "42") == {"exact": False, "contains": False}
    strict = Scoring(["exact"], ignore_case=False)
    assert strict.judge("The answer", "the answer") == {"exact": False}


def test_regex_searches_the_answer():
    scoring = Scoring(["regex"], pattern=re.compile(r"^order \d+ ships"))
    assert scoring.judge("order 12 ships Monday", "")["regex"] is True
    assert scoring.judge("Your order 12 ships Monday", "")["regex"] is False


@pytest.mark.parametrize("answer, label", [
    ("negative", "negative"), ("Negative: the kettle leaked.", "negative"),
    ("neutral - mixed feelings", "neutral"), ("negatively", None), ("I am not sure", None),
    ("", None)])
def test_an_answer_is_a_label_when_it_is_or_begins_with_one(answer, label):
    assert Scoring(["labels"], labels=LABELS).label_of(answer) == label


def test_the_longest_matching_label_wins():
    scoring = Scoring(["labels"], labels=["not", "not sure"])
    assert scoring.label_of("not sure: unclear") == "not sure"
    assert scoring.label_of("not really") == "not"


def test_label_accuracy_and_per_label_counts():
    scoring = Scoring(["labels"], labels=LABELS)
    references = ["positive: great", "negative: broke", "negative: late", "neutral: fine"]
    answers = {"base": ["positive", "positive", "hmm", "positive"],
               "tuned": ["positive: yes", "negative", "negative", "negative"]}
    verdicts = [{"labels": {side: scoring.judge(answers[side][i], ref)["labels"]
                            for side in answers}} for i, ref in enumerate(references)]
    result = summarise(scoring, verdicts, answers, references)
    assert result["metrics"]["labels"] == {"base": 0.25, "tuned": 0.75}
    per_label = result["labels"]["per_label"]
    assert per_label["negative"] == {"references": 2, "base": {"answered": 0, "correct": 0},
                                     "tuned": {"answered": 3, "correct": 2}}
    assert per_label["positive"]["base"] == {"answered": 3, "correct": 1}
    assert result["labels"]["no_label"] == {"base": 1, "tuned": 0}


def test_json_validity_with_and_without_a_schema():
    schema = {"type": "object", "properties": {"name": {"type": "string"}},
              "required": ["name"]}
    assert json_problem('{"name": "Ada"}', schema) is None
    assert json_problem('```json\n{"name": "Ada"}\n```', schema) is None
    assert json_problem('{"name": 3}', schema) == "$.name: expected string, found number"
    assert json_problem('{"age": 3}', schema) == "$: missing key 'name'"
    assert json_problem("[1, 2]", None) is None
    assert json_problem("Sure! {name: Ada}", None).startswith("not JSON")
    scoring = Scoring(["json"], json_schema=schema)
    assert scoring.judge('{"name": "Ada"}', "")["json"] is True
    assert scoring.judge('{"name": 1}', "")["json"] is False


def test_shares_per_side():
    scoring = Scoring(["exact"])
    verdicts = [{"exact": {"base": False, "tuned": True}},
                {"exact": {"base": False, "tuned": True}},
                {"exact": {"base": True, "tuned": False}}]
    result = summarise(scoring, verdicts, {"base": ["", "", ""], "tuned": ["", "", ""]},
                       ["", "", ""])
    assert result["metrics"]["exact"] == pytest.approx({"base": 1 / 3, "tuned": 2 / 3})
    assert "labels" not in result


def test_label_counts_of_no_examples_are_zero():
    counts = label_counts(Scoring(["labels"], labels=["a"]), {"base": [], "tuned": []}, [])
    assert counts["per_label"]["a"]["references"] == 0
