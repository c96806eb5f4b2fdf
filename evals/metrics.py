"""Task metrics of generated answers against the held-out reference answers: each metric judges
one answer (True or False), and `summarise` turns the verdicts of base and tuned into shares.

    exact     the answer equals the reference (spacing, and with ignore_case letter case, aside)
    contains  the reference appears in the answer
    regex     the answer matches `pattern` (searched anywhere; anchor it for a whole match)
    labels    the answer's label (the label it is, or begins with) is the reference's label
    json      the answer is JSON (a Markdown code fence around it is allowed) that fits
              `json_schema` when one is given
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from curate.generation import schema_error

METRICS = ("exact", "contains", "regex", "labels", "json")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


@dataclass
class Scoring:
    metrics: list[str]
    ignore_case: bool = True
    pattern: re.Pattern | None = None
    labels: list[str] = field(default_factory=list)
    json_schema: dict | None = None

    def normalise(self, text: str) -> str:
        text = " ".join(text.split())
        return text.casefold() if self.ignore_case else text

    def label_of(self, text: str) -> str | None:
        """The label `text` is, or begins with (followed by a non-alphanumeric character);
        the longest such label, or None."""
        text = self.normalise(text)
        for label in sorted(self.labels, key=len, reverse=True):
            wanted = self.normalise(label)
            if text == wanted or (text.startswith(wanted) and not text[len(wanted)].isalnum()):
                return label
        return None

    def judge(self, answer: str, reference: str) -> dict[str, bool]:
        """Each metric's verdict on one answer."""
        judges = {
            "exact": lambda: self.normalise(answer) == self.normalise(reference),
            "contains": lambda: self.normalise(reference) in self.normalise(answer),
            "regex": lambda: self.pattern is not None and self.pattern.search(answer) is not None,
            "labels": lambda: self.label_of(answer) == self.label_of(reference),
            "json": lambda: json_problem(answer, self.json_schema) is None,
        }
        return {metric: judges[metric]() for metric in self.metrics}


def json_problem(answer: str, schema: dict | None) -> str | None:
    """Why `answer` is not JSON fitting `schema`, or None."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return f"not JSON ({error})"
    return schema_error(value, schema) if schema else None


def summarise(scoring: Scoring, verdicts: list[dict[str, dict[str, bool]]],
              answers: dict[str, list[str]], references: list[str]) -> dict[str, Any]:
    """{"metrics": {metric: {"base": share, "tuned": share}}, and with labels "labels":
    per-label counts}. `verdicts` holds, per example, {metric: {side: verdict}}."""
    count = max(len(verdicts), 1)
    shares = {metric: {side: sum(v[metric][side] for v in verdicts) / count
                       for side in answers} for metric in scoring.metrics}
    result: dict[str, Any] = {"metrics": shares}
    if "labels" in scoring.metrics:
        result["labels"] = label_counts(scoring, answers, references)
    return result


def label_counts(scoring: Scoring, answers: dict[str, list[str]],
                 references: list[str]) -> dict[str, Any]:
    """Per label: how many references carry it, and for each side how often it was answered
    and how often rightly; plus answers that are no label at all."""
    expected = [scoring.label_of(reference) for reference in references]
    per_label: dict[str, Any] = {}
    for label in scoring.labels:
        per_label[label] = {"references": expected.count(label)}
        for side, texts in answers.items():
            said = [scoring.label_of(text) for text in texts]
            per_label[label][side] = {
                "answered": said.count(label),
                "correct": sum(s == e == label for s, e in zip(said, expected))}
    unlabelled = {side: sum(scoring.label_of(text) is None for text in texts)
                  for side, texts in answers.items()}
    return {"per_label": per_label, "no_label": unlabelled}
