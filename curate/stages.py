"""Curation stages: small steps over records that keep some and reject the rest with a reason.

Judge one record at a time with a `Filter`:

    class ShortResponses(Filter):
        name = "short-responses"
        Options = ShortOptions          # a dataclass, see curate.options

        def check(self, record):
            if len(record.response) < self.options.min_chars:
                return Reject("too-short", f"response has {len(record.response)} characters")

Stages that compare records (deduplication, consistency) subclass `Stage` and implement
`process`, yielding every input record either as itself (kept) or as a `Rejection`. The host
streams records in, writes what comes out, counts it, and caches it by fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from curate.records import Record, Rejection
from curate.options import NoOptions


@dataclass(frozen=True)
class Reject:
    """A filter's verdict: `reason` is a short slug, `detail` the evidence a person can act on."""

    reason: str
    detail: str


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


class Stage:
    """Base class of every stage: `process` yields each input record kept or rejected."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    version: ClassVar[str] = "1"

    @classmethod
    def check_options(cls, options: Any) -> None:
        """Checks beyond types and ranges, run when the recipe is validated: raise
        `curate.options.OptionError(key, message)`."""

    def __init__(self, options: Any, context: StageContext):
        self.options = options
        self.context = context

    def process(self, records: Iterable[Record]) -> Iterator[Record | Rejection]:
        raise NotImplementedError


class Filter(Stage):
    """A stage that judges records one at a time: implement `check`."""

    def check(self, record: Record) -> Reject | None:
        raise NotImplementedError

    def process(self, records: Iterable[Record]) -> Iterator[Record | Rejection]:
        for record in records:
            verdict = self.check(record)
            yield record if verdict is None else Rejection(record, verdict.reason, verdict.detail)
