"""The `consistency` stage: the same prompt answered differently, and style drift within a source
(response-length outliers, a broken declared format, empty or refusal responses, a system prompt
that differs from the source's usual one).

Judging needs the whole input (majorities, z-scores, the most common system prompt), so the stage
reads it twice: the first pass keeps a few numbers and short snippets per record, the second
(`context.reread()`) yields every record kept or rejected, in input order.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from curate import hookimpl
from curate.options import OptionError, option
from curate.records import Record, Rejection
from curate.stages import Stage

from curate.plugins.consistency_rules import (Finding, RecordRules, SimilarPrompts,
                                              check_json_schema, comparison_key, compile_pattern,
                                              key_hash, length_findings, snippet, system_findings)


@hookimpl
def register_stages(register):
    register(ConsistencyStage)


@dataclass
class ConsistencyOptions:
    on_conflict: Literal["flag", "majority", "first", "reject-all"] = option(
        "flag", help="same prompt, different answers: flag all, keep the most common answer, keep"
                     " the first answer seen, or reject the whole group")
    prompt_similarity: float = option(1.0, min=0.5, max=1.0, help="1.0 groups exactly equal"
                                      " normalised prompts; lower also groups prompts whose word"
                                      " 3-shingle Jaccard similarity reaches it")
    prompt_includes_system: bool = option(True, help="prompts under different system prompts are"
                                                     " different questions")
    answer_pattern: str | None = option(None, help="regex whose first group is the answer's"
                                                   " label; answers are compared by label")
    max_zscore: float | None = option(4.0, min=0.0, help="reject responses whose log-length"
                                                         " z-score within their source exceeds"
                                                         " this; 0 or unset disables")
    min_source_records: int = option(20, min=2, help="sources with fewer records are not judged"
                                                     " for length outliers")
    response_format: Literal["json", "regex", "labels"] | None = option(
        None, help="the format every response must have")
    json_schema: dict[str, Any] | None = option(None, help="for json: type, required keys and"
                                                           " property types")
    response_regex: str | None = option(None, help="for regex: what the whole response must match")
    labels: list[str] | None = option(None, help="for labels: the allowed responses (or labels)")
    reject_empty: bool = option(True, help="reject empty or invisible-only responses")
    reject_refusals: bool = option(True, help="reject boilerplate refusals")
    builtin_refusals: bool = option(True, help="use the built-in refusal patterns")
    refusal_patterns: list[str] = option([], help="more refusal regexes (case-insensitive)")
    check_system_prompt: bool = option(True, help="find system prompts that differ from the"
                                                  " source's most common one")
    on_drift: Literal["flag", "reject"] = option("flag", help="what to do with such records")


class Ledger:
    """What the first pass keeps of each record, by input position: hashes of its comparison
    keys, its length, its source and a short snippet (~500 bytes a record in all)."""

    def __init__(self, similar: SimilarPrompts | None):
        self.ids: list[str] = []
        self.locally_rejected = array("b")
        self.prompts, self.answers, self.systems = array("Q"), array("Q"), array("Q")
        self.lengths, self.sources = array("q"), array("q")
        self.answer_snippets: list[str] = []
        self.labels: list[str | None] = []
        self.source_names: dict[str, int] = {}
        self.system_snippets: dict[int, str] = {}
        self.system_counts: dict[tuple[int, int], list[int]] = {}  # -> [count, first index]
        self.similar = similar
        self.prompt_numbers: dict[int, int] = {}  # prompt hash -> its number in `similar`

    def __len__(self) -> int:
        return len(self.ids)

    def add_record(self, record: Record, length: int, system: int, rejected: bool) -> None:
        source = self.source_names.setdefault(record.source, len(self.source_names))
        self.ids.append(record.id)
        self.locally_rejected.append(rejected)
        self.sources.append(source)
        self.lengths.append(length)
        self.systems.append(system)
        if system not in self.system_snippets:
            self.system_snippets[system] = snippet(record.system, 120)
        if not rejected:
            self.system_counts.setdefault((source, system), [0, len(self) - 1])[0] += 1

    def add_answer(self, prompt: int, answer: int, shown: str, label: str | None) -> None:
        self.prompts.append(prompt)
        self.answers.append(answer)
        self.answer_snippets.append(shown)
        self.labels.append(label)


class ConsistencyStage(Stage):
    name = "consistency"
    Options = ConsistencyOptions
    version = "1"

    @classmethod
    def check_options(cls, options: ConsistencyOptions) -> None:
        _check_format_keys(options)
        if options.response_regex is not None:
            compile_pattern(options.response_regex, "response_regex")
        if options.answer_pattern is not None:
            if compile_pattern(options.answer_pattern, "answer_pattern").groups < 1:
                raise OptionError("answer_pattern", "needs a group around the label, e.g."
                                  " '^(positive|negative)\\b'")
        for index, pattern in enumerate(options.refusal_patterns):
            compile_pattern(pattern, f"refusal_patterns[{index}]", re.IGNORECASE)

    def __init__(self, options: ConsistencyOptions, context):
        super().__init__(options, context)
        self.rules = RecordRules(options)

    def process(self, records: Iterable[Record]) -> Iterator[Record | Rejection]:
        similar = (SimilarPrompts(self.options.prompt_similarity)
                   if self.options.prompt_similarity < 1.0 else None)
        ledger, kept_input = Ledger(similar), []
        for record in records:
            self._note(ledger, record)
            if self.context.reread is None:
                kept_input.append(record)
        findings = judge(ledger, self.options)
        second = self.context.reread() if self.context.reread else iter(kept_input)
        yield from self._second_pass(ledger, findings, second)

    def _note(self, ledger: Ledger, record: Record) -> None:
        response = record.response
        rejected = self.rules.check(response) is not None
        system_key = comparison_key(record.system)
        ledger.add_record(record, len(response.strip()), key_hash(system_key), rejected)
        if rejected:  # judged alone already: kept out of groups and statistics
            ledger.add_answer(0, 0, "", None)
            return
        prompt = self._note_prompt(ledger, record.prompt, system_key)
        label = self.rules.label(response) if self.rules.answer_pattern else None
        answer = key_hash(comparison_key(response if label is None else label))
        ledger.add_answer(prompt, answer, snippet(response, 120), label)

    def _note_prompt(self, ledger: Ledger, prompt: str, system_key: bytes) -> int:
        """The prompt's hash (0 for no prompt), after adding it to the near-identical finder."""
        prompt_key = comparison_key(prompt)
        if not prompt_key:
            return 0
        context = system_key if self.options.prompt_includes_system else b""
        prompt_hash = key_hash(context, prompt_key)
        if ledger.similar and prompt_hash not in ledger.prompt_numbers:
            ledger.prompt_numbers[prompt_hash] = len(ledger.prompt_numbers)
            ledger.similar.add(prompt_key, key_hash(context))
        return prompt_hash

    def _second_pass(self, ledger: Ledger, findings: dict[int, list[Finding]],
                     records: Iterator[Record]) -> Iterator[Record | Rejection]:
        count = 0
        for index, record in enumerate(records):
            if index >= len(ledger) or record.id != ledger.ids[index]:
                raise RuntimeError(f"stage '{self.context.name}': the input changed between its"
                                   f" two passes (record {index})")
            yield self._outcome(record, ledger.locally_rejected[index], findings.get(index, ()))
            count = index + 1
        if count != len(ledger):
            raise RuntimeError(f"stage '{self.context.name}': the second pass read {count} of"
                               f" {len(ledger)} records")

    def _outcome(self, record: Record, locally_rejected: int,
                 found: Iterable[Finding]) -> Record | Rejection:
        if locally_rejected:
            verdict = self.rules.check(record.response)
            return Rejection(record, verdict.reason, verdict.detail, evidence=verdict.evidence)
        found = list(found)
        rejecting = next((finding for finding in found if finding.rejects), None)
        if rejecting:
            return Rejection(record, rejecting.rule, rejecting.detail, evidence=rejecting.evidence)
        if not found:
            return record
        earlier = record.meta.get("consistency")
        notes = [*(earlier if isinstance(earlier, list) else []), *(f.note() for f in found)]
        return Record(record.messages, record.source, record.origin,
                      {**record.meta, "consistency": notes}, record.id)


def _check_format_keys(options: ConsistencyOptions) -> None:
    """Each format's own key is needed with it (json_schema is optional) and only with it."""
    for kind, key in (("regex", "response_regex"), ("labels", "labels"),
                      ("json", "json_schema")):
        given = getattr(options, key) is not None
        if options.response_format == kind and not given and kind != "json":
            raise OptionError(key, f'response_format = "{kind}" needs {key}')
        if given and options.response_format != kind:
            raise OptionError(key, f'{key} is only used with response_format = "{kind}"')
    if options.labels == []:
        raise OptionError("labels", "needs at least one label")
    if options.json_schema is not None:
        check_json_schema(options.json_schema)


def judge(ledger: Ledger, options: ConsistencyOptions) -> dict[int, list[Finding]]:
    """Every record's findings, in priority order (the first rejecting one decides)."""
    findings: dict[int, list[Finding]] = {}
    rules = [conflict_findings, length_findings]
    if options.check_system_prompt:
        rules.append(system_findings)
    for rule in rules:
        for index, finding in rule(ledger, options):
            findings.setdefault(index, []).append(finding)
    return findings


@dataclass
class Answer:
    """One distinct answer within a group of records asking the same prompt."""

    indices: list[int]

    @property
    def first(self) -> int:
        return self.indices[0]


@dataclass
class Group:
    answers: list[Answer]
    size: int


def conflict_findings(ledger: Ledger, options: ConsistencyOptions) -> Iterator[tuple[int, Finding]]:
    """The policy keeps the first of the ranked answers: by count then first seen, or for
    on_conflict = "first" by first seen alone; the runner-up is the "other" answer it shows."""
    for answers in conflicting_groups(ledger):
        if options.on_conflict == "first":
            answers.sort(key=lambda answer: answer.first)
        else:
            answers.sort(key=lambda answer: (-len(answer.indices), answer.first))
        group = Group(answers, sum(len(answer.indices) for answer in answers))
        for answer in answers:
            other = answers[1] if answer is answers[0] else answers[0]
            rejects = options.on_conflict == "reject-all" or (
                options.on_conflict != "flag" and answer is not answers[0])
            if rejects or options.on_conflict == "flag":
                for index in answer.indices:
                    yield index, conflict(ledger, index, (answer, other, group), options, rejects)


def conflicting_groups(ledger: Ledger) -> Iterator[list[Answer]]:
    """The groups of records with one prompt and more than one answer, each as its answers."""
    import numpy as np

    prompts = np.frombuffer(ledger.prompts, dtype=np.uint64) if len(ledger) else np.zeros(0)
    indices = np.flatnonzero(prompts != 0)
    if not len(indices):
        return
    groups = prompt_groups(ledger, prompts)[indices]
    answers = np.frombuffer(ledger.answers, dtype=np.uint64)[indices]
    order = np.lexsort((indices, answers, groups))
    groups, answers, indices = groups[order], answers[order], indices[order]
    new_group = np.r_[True, groups[1:] != groups[:-1]]
    new_answer = new_group | np.r_[True, answers[1:] != answers[:-1]]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], len(groups)]
    distinct = np.add.reduceat(new_answer.astype(np.int64), starts)
    for start, end in zip(starts[distinct > 1].tolist(), ends[distinct > 1].tolist()):
        cuts = [*np.flatnonzero(new_answer[start:end]).tolist(), end - start]
        members = indices[start:end].tolist()
        yield [Answer(members[a:b]) for a, b in zip(cuts, cuts[1:])]


def prompt_groups(ledger: Ledger, prompts):
    """Each record's prompt group: its prompt hash, or with near-identical prompts on, its
    cluster's number (plus one, since 0 means "no prompt")."""
    import numpy as np

    if ledger.similar is None:
        return prompts
    cluster = ledger.similar.cluster
    numbers = ledger.prompt_numbers
    return np.array([cluster(numbers[p]) + 1 if p else 0 for p in ledger.prompts], dtype=np.uint64)


def conflict(ledger: Ledger, index: int, answers: tuple[Answer, Answer, Group],
             options: ConsistencyOptions, rejects: bool) -> Finding:
    mine, other, group = answers
    other_index = other.first
    similarity = prompt_similarity(ledger, index, other_index)
    same = "same prompt" if similarity == 1.0 else f"similar prompt, Jaccard {similarity:.2f}"
    detail = (f"answers {shown_answer(ledger, index)} but {ledger.ids[other_index]} ({same})"
              f" answers {shown_answer(ledger, other_index)}; {len(other.indices)} of {group.size}"
              f" records agree with the other answer{CONSEQUENCES[options.on_conflict]}")
    evidence = {"rule": "conflicting-answer", "other_id": ledger.ids[other_index],
                "other_answer": ledger.answer_snippets[other_index],
                "answer": ledger.answer_snippets[index], "group_size": group.size,
                "agreeing": len(mine.indices), "other_count": len(other.indices),
                "answers": len(group.answers), "policy": options.on_conflict,
                "prompt_similarity": round(similarity, 3)}
    if options.answer_pattern:
        evidence.update(label=ledger.labels[index], other_label=ledger.labels[other_index])
    return Finding("conflicting-answer", detail, evidence, rejects)


CONSEQUENCES = {"flag": "", "majority": "; on_conflict = 'majority' keeps the other answer",
                "first": "; on_conflict = 'first' keeps the answer seen first",
                "reject-all": "; on_conflict = 'reject-all' rejects the whole group"}


def shown_answer(ledger: Ledger, index: int) -> str:
    label, text = ledger.labels[index], snippet(ledger.answer_snippets[index])
    return f"{label!r} ({text!r})" if label is not None else repr(text)


def prompt_similarity(ledger: Ledger, first: int, second: int) -> float:
    if ledger.prompts[first] == ledger.prompts[second]:
        return 1.0
    numbers = ledger.prompt_numbers
    return ledger.similar.similarity(numbers[ledger.prompts[first]],
                                     numbers[ledger.prompts[second]])
