"""The `consistency` stage: the same prompt answered differently, and style drift within a source
(response-length outliers, a broken declared format, empty or refusal responses, a system prompt
that differs from the source's usual one).

Judging needs the whole input (majorities, z-scores, the most common system prompt), so the stage
reads it twice: the first pass keeps a few numbers and short snippets per record (the ledger),
the second (`context.reread()`) yields every record kept or rejected, in input order. The rules
live beside it: consistency_record_rules (one record alone), consistency_conflicts (one prompt,
several answers), consistency_near_prompts (near-identical prompts), consistency_drift (a record
against its source).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from curate import hookimpl
from curate.options import OptionError, option
from curate.records import NEEDS_REVIEW, Record, Rejection
from curate.stages import Stage

from curate.plugins.consistency_conflicts import (CONFLICT_RULE, UNLABELLED_RULE,
                                                  conflict_findings)
from curate.plugins.consistency_drift import length_findings, system_findings
from curate.plugins.consistency_formats import check_json_schema, compile_pattern
from curate.plugins.consistency_ledger import Finding, Ledger
from curate.plugins.consistency_record_rules import RecordRules
from curate.plugins.consistency_text import comparison_key, key_hash, snippet

if TYPE_CHECKING:
    from curate.plugins.consistency_near_prompts import NearPrompts


@hookimpl
def register_stages(register):
    register(ConsistencyStage)


@dataclass
class ConsistencyOptions:
    on_conflict: Literal["flag", "majority", "first", "reject-all", "review"] = option(
        "flag", help="same prompt, different answers: flag all, keep the most common answer, keep"
                     " the first answer seen, reject the whole group, or send the whole group to"
                     " the review queue (a later `review` stage)")
    prompt_similarity: float = option(1.0, min=0.5, max=1.0, help="1.0 groups exactly equal"
                                      " normalised prompts; lower also groups prompts whose word"
                                      " 3-shingle Jaccard similarity reaches it, with the same"
                                      " numbers and few changed words")
    max_prompt_word_changes: int = option(2, min=0, help="with prompt_similarity below 1.0:"
                                          " at most this many words may differ between two"
                                          " grouped prompts (one word replaced is 2)")
    prompt_includes_system: bool = option(True, help="prompts under different system prompts are"
                                                     " different questions")
    answer_pattern: str | None = option(None, help="regex whose first group is the answer's"
                                                   " label; answers are compared by label")
    max_zscore: float | None = option(4.0, min=0.0, help="find responses whose log-length"
                                                         " z-score within their source exceeds"
                                                         " this; 0 or unset disables")
    on_outlier: Literal["flag", "reject"] = option("flag", help="what to do with such records:"
                                                   " keep them with a note, or reject them")
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


class ConsistencyStage(Stage):
    name = "consistency"
    Options = ConsistencyOptions
    version = "4"

    @classmethod
    def asks_for_review(cls, options: ConsistencyOptions) -> bool:
        return options.on_conflict == "review"

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
        ledger = Ledger()
        held: list[Record] | None = None if self.context.reread else []
        prompts = self._first_pass(records, ledger, held)
        near = self._near_prompts()
        try:
            if near is None:
                deque(prompts, maxlen=0)
            else:
                near.index(prompts)
            findings = judge(ledger, self.options, near)
        finally:
            if near is not None:
                near.close()
        second = self.context.reread() if held is None else iter(held)
        yield from self._second_pass(ledger, findings, second)

    def _near_prompts(self) -> NearPrompts | None:
        if self.options.prompt_similarity >= 1.0:
            return None
        from curate.plugins.consistency_near_prompts import NearPrompts

        return NearPrompts(self.options.prompt_similarity, self.context.work_dir,
                           self.context.workers, self.options.max_prompt_word_changes)

    def _first_pass(self, records: Iterable[Record], ledger: Ledger,
                    held: list[Record] | None) -> Iterator[bytes]:
        """Notes every record in the ledger, yielding its prompt's comparison key (empty for
        a record in no prompt group)."""
        for record in records:
            if held is not None:
                held.append(record)
            yield self._note(ledger, record)

    def _note(self, ledger: Ledger, record: Record) -> bytes:
        response = record.response
        rejected = self.rules.check(response) is not None
        system_key = comparison_key(record.system)
        ledger.add_record(record, len(response.strip()), key_hash(system_key), rejected)
        if rejected:  # judged alone already: kept out of groups and statistics
            ledger.add_answer(0, 0, "", None)
            return b""
        prompt_key = comparison_key(record.prompt)
        context = system_key if self.options.prompt_includes_system else b""
        prompt = key_hash(context, prompt_key) if prompt_key else 0
        label = self.rules.label(response) if self.rules.answer_pattern else None
        answer = key_hash(comparison_key(response if label is None else label))
        ledger.add_answer(prompt, answer, snippet(response, 120), label)
        return prompt_key

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
        meta = {**record.meta, "consistency": notes}
        if self.options.on_conflict == "review":
            asks = [f"consistency {f.rule}: {f.detail}" for f in found
                    if f.rule in (CONFLICT_RULE, UNLABELLED_RULE)]
            if asks:
                earlier = record.meta.get(NEEDS_REVIEW)
                meta[NEEDS_REVIEW] = [*(earlier if isinstance(earlier, list) else []), *asks]
        return Record(record.messages, record.source, record.origin, meta, record.id)


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


def judge(ledger: Ledger, options: ConsistencyOptions,
          near: NearPrompts | None = None) -> dict[int, list[Finding]]:
    """Every record's findings, in priority order (the first rejecting one decides); `near`
    groups near-identical prompts."""
    findings: dict[int, list[Finding]] = {}
    rules = [conflict_findings(ledger, options, near), length_findings(ledger, options)]
    if options.check_system_prompt:
        rules.append(system_findings(ledger, options))
    for found in rules:
        for index, finding in found:
            findings.setdefault(index, []).append(finding)
    return findings
