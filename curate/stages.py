"""Curation stages: small steps over records that keep some and reject the rest with a reason.

Judge one record at a time with a `Filter`:

    class ShortResponses(Filter):
        name = "short-responses"
        Options = ShortOptions          # a dataclass, see curate.options

        def check(self, record):
            if len(record.response) < self.options.min_chars:
                return Reject("too-short", f"response has {len(record.response)} characters")

Stages that compare records (deduplication, consistency) subclass `Stage` and implement
`process`, yielding every input record either as itself (kept) or as a `Rejection`, or as
`Pending` when it waits for a person's review (the `review` stage). The host streams records in,
checks that each comes out exactly once (by id), writes what comes out, and caches it by
fingerprint.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

from curate.errors import CurateError
from curate.options import Configurable
from curate.records import Pending, Record, Rejection, plugin_label
from curate.workers import ordered_map


@dataclass(frozen=True)
class Reject:
    """A filter's verdict: `reason` is a short slug, `detail` the evidence a person can act on,
    and `evidence` the same as data for reports (e.g. {"duplicate_of": id, "similarity": 0.93})."""

    reason: str
    detail: str
    evidence: dict = field(default_factory=dict)


@dataclass
class StageContext:
    """What a stage may use besides its options."""

    name: str
    seed: int
    recipe_dir: Path
    work_dir: Path
    """`<run dir>/work/<stage name>/`: the stage's own folder, kept between runs (for indexes).
    Write to it atomically: a run can be killed at any moment."""
    log: Callable[[str], None] = print
    workers: int = 1
    """How many processes a parallel stage may use (the recipe's `[run] workers`)."""
    reread: Callable[[], Iterator[Record]] | None = None
    """The stage's input again, from the start, for stages that need two passes (e.g. to pick
    the survivor of a duplicate cluster after seeing the whole cluster)."""
    tokenizer: Callable[[], Any] | None = None
    """Loads the recipe's `[model]` tokenizer on first call; None when the recipe names none."""
    run_dir: Path | None = None
    """The run folder, for stages that keep state beside it (the review queue)."""
    split: Any = None
    """The recipe's [split] options (`curate.recipe.SplitOptions`), for stages that plan around
    the eval split (`needs_split`)."""
    read_source: Callable[[str], Iterator[Any]] | None = None
    """`read_source(key)`: the records (or `Rejection`s of unreadable rows) of the source table
    that option `key` holds (see `Stage.source_keys`), read as a [[sources]] entry is."""
    plugin: str = ""
    """The plugin that registered the stage, named by the host's messages about it."""

    @property
    def label(self) -> str:
        """How messages name the stage: "stage 'judge' (plugin acme)"."""
        return plugin_label("stage", self.name, [self.plugin] if self.plugin else [])


class Stage(Configurable):
    """Base class of every stage: `process` yields each input record kept or rejected."""

    adds_origin: ClassVar[str | None] = None
    """The origin of the records the stage adds (`curate.records.Added`), if it adds any. A
    stage adding "generated" records must be followed by a stage that sends them to people
    (`sends_to_review`): generated data reaches the dataset only once a person approved it."""

    source_keys: ClassVar[tuple[str, ...]] = ()
    """Options that hold a source table (`use = "jsonl"`, `path`, `format`, ...), checked when
    the recipe is validated like a [[sources]] entry; the data they name joins the step's
    fingerprint, and `context.read_source(key)` reads it."""

    @classmethod
    def fingerprint_extra(cls, options: Any) -> list:
        """Anything else the stage's output depends on, for its cache fingerprint: e.g. the
        identity of a helper plugin it uses (`get_host().identity(kind, name)`)."""
        return []

    @classmethod
    def run_folder_fingerprint(cls, options: Any, run_dir: Path) -> list:
        """What the stage's output depends on in the run folder besides its input, read when
        the run is planned: the review stage returns a digest of the reviewers' decisions, so
        a decision reruns it and the steps after it. `process` must use exactly what this read
        (the review stage keeps the snapshot), not what the folder holds by then."""
        return []

    @classmethod
    def sends_to_review(cls, options: Any) -> tuple[str, ...]:
        """The origins of the records that, with these options, the stage holds until a person
        approves them (the `review` stage's `origins`)."""
        return ()

    @classmethod
    def asks_for_review(cls, options: Any) -> bool:
        """True when, with these options, the stage may ask a person about records it keeps
        (`meta["needs_review"]`): the recipe must then have a `review` stage after it."""
        return False

    @classmethod
    def needs_model(cls, options: Any) -> bool:
        """True when, with these options, the stage reads `context.tokenizer`: the recipe must
        then have a [model], which joins the stage's cache fingerprint."""
        return False

    @classmethod
    def needs_split(cls, options: Any) -> bool:
        """True when, with these options, the stage reads `context.split` (the rehearsal stage
        sizes its draw by the training split): the [split] options then join its fingerprint."""
        return False

    def __init__(self, options: Any, context: StageContext):
        self.options = options
        self.context = context

    def process(self, records: Iterable[Record]) -> Iterator[Record | Rejection | Pending]:
        raise NotImplementedError

    def summary(self) -> dict:
        """Figures for the step's entry in manifest.json (under `stats`), asked once `process`
        has run, e.g. how many examples were truncated."""
        return {}


class Filter(Stage):
    """A stage that judges records one at a time: implement `check` (or `check_batch`, when
    judging a batch at once is cheaper).

    `check` may add to `record.meta` (a detected language, say) but must not change the
    messages. Set `parallel = True` for a slow check: records are then judged in
    `context.workers` processes, in batches, and come out in input order, so the result does
    not depend on the number of workers.
    """

    parallel: ClassVar[bool] = False
    batch_size: ClassVar[int] = 256

    def check(self, record: Record) -> Reject | None:
        raise NotImplementedError

    def check_batch(self, records: list[Record]) -> list[Reject | None]:
        """`check` for each record of a batch, in order. Override it when judging many records
        at once is cheaper; a record's verdict must not depend on the rest of its batch."""
        return [self.check(record) for record in records]

    def judge_batch(self, records: list[Record]) -> list[Record | Rejection]:
        judged = [_messages_as_judged(record) for record in records]
        verdicts = self.check_batch(records)
        if not isinstance(verdicts, (list, tuple)) or len(verdicts) != len(records):
            raise self._contract_error(f"returned {_count_of(verdicts)} for a batch of"
                                       f" {len(records)} records; return a list of one verdict"
                                       f" per record, in order")
        for record, messages in zip(records, judged):
            if not _unchanged(record, messages):
                raise self._contract_error(
                    f"changed the messages of record {record.id}"
                    f"{_where(record)}: a filter only judges (it may add to record.meta); a"
                    f" stage that rewrites records subclasses Stage and yields"
                    f" record.revised(messages)")
        return [record if verdict is None else self._rejection(record, verdict)
                for record, verdict in zip(records, verdicts)]

    def _rejection(self, record: Record, verdict: Reject) -> Rejection:
        if not isinstance(verdict, Reject):
            raise self._contract_error(f"returned {type(verdict).__name__}; return None to keep"
                                       f" or Reject(reason, detail)")
        problem = reject_problem(verdict.reason, verdict.detail, verdict.evidence)
        if problem:
            raise self._contract_error(f"returned a Reject whose {problem}")
        return Rejection(record, verdict.reason, verdict.detail, evidence=verdict.evidence)

    def _contract_error(self, message: str) -> CurateError:
        method = "check()" if type(self).check_batch is Filter.check_batch else "check_batch()"
        return CurateError(f"{self.context.label}: {method} {message}")

    def process(self, records: Iterable[Record]) -> Iterator[Record | Rejection]:
        batches = _batches(records, self.batch_size)
        if not self.parallel or self.context.workers <= 1:
            for batch in batches:
                yield from self.judge_batch(batch)
            return
        judging: deque[list[Record]] = deque()
        for batch_verdicts in ordered_map(self._verdicts, _kept_in(judging, batches),
                                          self.context.workers):
            yield from map(_judged, judging.popleft(), batch_verdicts)

    def _verdicts(self, records: list[Record]) -> list[tuple[dict, tuple | None]]:
        """judge_batch, run in a worker: its answer holds only what the parent lacks, each
        record's meta and its rejection (reason, detail, evidence) or None. Sending the
        records back would cost the parent as much as judging a short text."""
        return [(outcome.record.meta, (outcome.reason, outcome.detail, outcome.evidence))
                if isinstance(outcome, Rejection) else (outcome.meta, None)
                for outcome in self.judge_batch(records)]


def _messages_as_judged(record: Record) -> tuple[list, list[tuple]]:
    return record.messages, [(m.get("role"), m.get("content")) for m in record.messages]


def _unchanged(record: Record, judged: tuple[list, list[tuple]]) -> bool:
    """Whether the messages still say what the check was handed. An edit made in place would
    reach the dataset under the record's old id, which `curate why` and a reviewer's decision
    follow. Unchanged texts are the same objects, so comparing them costs next to nothing."""
    messages, turns = judged
    return (record.messages is messages and len(messages) == len(turns)
            and all(isinstance(m, dict) and (m.get("role"), m.get("content")) == turn
                    for m, turn in zip(messages, turns)))


def _where(record: Record) -> str:
    location = record.meta.get("from") if isinstance(record.meta, dict) else None
    return f" ({location})" if location else ""


def reject_problem(reason: Any, detail: Any, evidence: Any) -> str:
    """What is wrong with a rejection's reason, detail and evidence, or "" when nothing is."""
    if not isinstance(reason, str) or not reason:
        return (f"reason is {reason!r}: give a short slug naming why (e.g. \"too-short\") and"
                f" a detail a person can act on, both text")
    if not isinstance(detail, str):
        return f"detail is {type(detail).__name__}: give the evidence a person can act on as text"
    if evidence is not None and not isinstance(evidence, dict):
        return f"evidence is {type(evidence).__name__}: give a dict (or leave it out)"
    return ""


def _count_of(verdicts: Any) -> str:
    if isinstance(verdicts, (list, tuple)):
        return f"{len(verdicts)} verdicts"
    return type(verdicts).__name__


def _kept_in(judging: deque, batches: Iterator[list[Record]]) -> Iterator[list[Record]]:
    """The batches, each kept in `judging` until its verdicts come back."""
    for batch in batches:
        judging.append(batch)
        yield batch


def _judged(record: Record, verdict: tuple[dict, tuple | None]) -> Record | Rejection:
    meta, rejected = verdict
    record.meta = meta
    if rejected is None:
        return record
    reason, detail, evidence = rejected
    return Rejection(record, reason, detail, evidence=evidence)


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
