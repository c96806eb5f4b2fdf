"""The `review` stage: records that need a person (generated ones by default, and flagged ones
when asked) wait in the review queue, `<run dir>/review.sqlite`, until someone decides.

Approved records pass on; edited ones pass on with the reviewer's messages (a new id whose
`meta.revised_from` names the old one), so the stages after this one check them again; rejected
ones are rejected with the reviewer's note; undecided ones stay pending, and the run stops before
the dataset. A decision holds only for the text it was made on: a record whose text changed since
waits again. The step's cache fingerprint holds a digest of the decisions read when the run was
planned, and the step decides with exactly those (not with one made while it runs), so a decision
reruns this step and the ones after it, and nothing before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from curate import hookimpl
from curate.options import OptionError, option
from curate.records import NEEDS_REVIEW, ORIGINS, REVIEW, Pending, Record, Rejection
from curate.stages import Stage

if TYPE_CHECKING:
    from curate.review.queue import Decision, Snapshot

BATCH = 512
_PLANNED: dict[Path, Snapshot] = {}
"""Run folder -> the decisions its latest plan fingerprinted, which its review steps use."""
CONSISTENCY_KEY = "consistency"
"""meta key where the consistency stage notes its findings on records it keeps (policy "flag")."""


@hookimpl
def register_stages(register):
    register(ReviewStage)


@dataclass
class ReviewOptions:
    origins: list[str] = option(["generated"], help="records of these origins wait for review")
    flagged: bool = option(False, help="also queue records kept with consistency findings"
                                       " (its \"flag\" policies); records a stage asks a"
                                       " person about (meta needs_review, e.g. consistency's"
                                       " on_conflict = \"review\") are always queued")


class ReviewStage(Stage):
    name = "review"
    Options = ReviewOptions
    version = "2"

    @classmethod
    def sends_to_review(cls, options: ReviewOptions) -> tuple[str, ...]:
        return tuple(options.origins)

    @classmethod
    def check_options(cls, options: ReviewOptions) -> None:
        for index, origin in enumerate(options.origins):
            if origin not in ORIGINS:
                raise OptionError(f"origins[{index}]", f"unknown origin {origin!r} (one of"
                                  f" {', '.join(ORIGINS)})")

    @classmethod
    def run_folder_fingerprint(cls, options: ReviewOptions, run_dir: Path) -> list:
        from curate.review.queue import decisions_snapshot

        snapshot = decisions_snapshot(run_dir)
        _PLANNED[run_dir.resolve()] = snapshot
        return ["review decisions", snapshot.digest]

    def process(self, records: Iterable[Record]) -> Iterator[Record | Rejection | Pending]:
        from curate.review.queue import ReviewQueue, queue_path

        with ReviewQueue(queue_path(self.context.run_dir)) as queue:
            decided = _PLANNED.get(self.context.run_dir.resolve()) or queue.snapshot()
            queue.deactivate(self.context.name)
            iterator = iter(records)
            while batch := list(islice(iterator, BATCH)):
                reasons = [self.queue_reason(record) for record in batch]
                queued = [(record, reason) for record, reason in zip(batch, reasons) if reason]
                candidates = queue.enqueue(self.context.name, queued) if queued else {}
                for record, reason in zip(batch, reasons):
                    # Ids are content hashes: a human record may share one with a generated
                    # copy, and must not take on that copy's decision.
                    yield outcome(record, decided.decision(record),
                                  candidates[record.id].reason) if reason else record

    def queue_reason(self, record: Record) -> str:
        """Why the record waits for review, or "" when it does not."""
        reasons = []
        if record.origin in self.options.origins:
            reasons.append(f"origin {record.origin}")
        reasons += flags(record.meta) if self.options.flagged else _as_list(
            record.meta.get(NEEDS_REVIEW))
        return "; ".join(reasons)


def flags(meta: dict) -> list[str]:
    """Why stages flagged a record for a person: consistency findings, and needs_review."""
    found = []
    for note in _as_list(meta.get(CONSISTENCY_KEY)):
        rule = note.get("rule", "finding") if isinstance(note, dict) else note
        found.append(f"consistency {rule}")
    found += [str(flag) for flag in _as_list(meta.get(NEEDS_REVIEW))]
    return found


def _as_list(value: object) -> list:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def outcome(record: Record, decision: Decision | None,
            reason: str) -> Record | Rejection | Pending:
    """What a decision made on the record's text (None: none was) makes of the record."""
    if decision is None or decision.status == "pending":
        return Pending(record, f"waits in the review queue ({reason})")
    said = {"reviewer": decision.reviewer, "at": decision.decided_at}
    if decision.status == "rejected":
        detail = f"rejected by {decision.reviewer} at {decision.decided_at}"
        return Rejection(record, "rejected-in-review",
                         f"{detail}: {decision.note}" if decision.note else detail,
                         evidence={**said, "note": decision.note})
    review = {"status": decision.status, **said, **({"note": decision.note} if decision.note
                                                       else {})}
    if decision.status == "edited":
        edited = record.revised(decision.edited)
        edited.meta[REVIEW] = review
        return edited
    return Record(record.messages, record.source, record.origin, {**record.meta,
                                                                   REVIEW: review}, record.id)
