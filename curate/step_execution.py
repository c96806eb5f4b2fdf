"""Runs one planned curation step, or reuses it from the run folder when its fingerprint
matches, and checks its accounting: every input record comes out of a stage exactly once (by
id: kept, revised, rejected or pending), and every record the stage added comes wrapped in
`Added`. A stage that breaks this, or yields something else, stops the run with one line
naming it and its plugin.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from curate.console import Console
from curate.errors import CurateError
from curate.ingest import SourceCounts, read_source
from curate.pluginmanager import PluginHost
from curate.recipe import PluginSpec, Recipe
from curate.records import Added, Pending, Record, Rejection, message_problem, plugin_code
from curate.runstore import RunFolder, StepWriter, count_rows, read_records, write_json_atomic
from curate.sources import file_errors
from curate.stages import Stage, StageContext, default_workers, reject_problem
from curate.step_plan import PlannedStep, source_context
from curate.tokenizer import load_token_counter


@dataclass
class RunState:
    steps: list[dict] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)
    stage_stats: dict = field(default_factory=dict)
    """What the stage that ran last reported in `Stage.summary()`."""


class StepExecutor:
    def __init__(self, recipe: Recipe, host: PluginHost, folder: RunFolder, console: Console,
                 state: RunState, force: bool = False):
        self.recipe, self.host, self.folder, self.console = recipe, host, folder, console
        self.state, self.force = state, force

    def run_step(self, step: PlannedStep) -> dict:
        """The step's summary, with "cached" saying whether it was reused."""
        label = f"{step.index:02d}-{step.name}"
        cached = None if self.force else self.folder.cached_step(step.folder, step.fingerprint)
        self.console.detail(f"{label}: fingerprint {step.fingerprint[:16]}, folder {step.folder}")
        if cached is not None:
            self.console.info(f"{label:<24} cached   {_counts(cached)}")
            self.state.sources = cached.get("sources", self.state.sources)
            return {**cached, "cached": True}
        started = time.monotonic()
        with self.folder.new_step(step.folder) as temporary:
            summary = self._execute(step, temporary)
            summary.update(index=step.index, name=step.name, use=step.use,
                           fingerprint=step.fingerprint,
                           seconds=round(time.monotonic() - started, 3))
            write_json_atomic(temporary / "step.json", summary)
        self.console.info(f"{label:<24} ran      {_counts(summary)}  {summary['seconds']:.1f}s")
        for reason, count in summary["reasons"].items():
            self.console.detail(f"{'':<24}   {count:>7,} {reason}")
        return {**summary, "cached": False}

    def tokenizer_loader(self):
        """A function loading the [model]'s token counter once, or None without a tokenizer."""
        model = self.recipe.model
        if not (model.path or model.tokenizer):
            return None
        loaded = []

        def load():
            if not loaded:
                loaded.append(load_token_counter(model, self.recipe.file.parent))
            return loaded[0]

        return load

    def _execute(self, step: PlannedStep, temporary: Path) -> dict:
        writer = StepWriter(temporary, step.name)
        try:
            if step.spec is None:
                total_in = self._read_sources(writer)
            else:
                total_in = self._run_stage(step, writer)
        finally:
            writer.close()
        summary = {"in": total_in, "kept": writer.kept, "rejected": writer.rejected,
                   "pending": writer.pending, "added": writer.added,
                   "reasons": dict(sorted(writer.reasons.items()))}
        if step.spec is None:
            summary["sources"] = self.state.sources
        elif self.state.stage_stats:
            summary["stats"] = self.state.stage_stats
        accounted = writer.kept + writer.rejected + writer.pending
        if accounted != total_in + writer.added:
            raise RuntimeError(f"step {step.name} accounted for {accounted} of {total_in}"
                               f" records and {writer.added} added: a stage must yield every"
                               f" input record kept, rejected or pending")
        return summary

    def _read_sources(self, writer: StepWriter) -> int:
        self.state.sources = []
        total = 0
        for spec in self.recipe.sources:
            counts = SourceCounts()
            context = source_context(self.recipe, spec)
            outcomes = read_source(spec, context, self.host.registry("format"), counts)
            with file_errors(context):
                estimate = spec.plugin().estimate_rows(spec.options, context)
            for outcome in self.console.progress(outcomes, f"read {spec.name}", estimate):
                writer.add(outcome)
            total += counts.rows
            self.state.sources.append({"name": spec.name, "use": spec.use, "rows": counts.rows,
                                       "records": counts.records, "rejected": counts.rejected,
                                       "unreadable": counts.unreadable})
        return total

    def _run_stage(self, step: PlannedStep, writer: StepWriter) -> int:
        previous = self.folder.step_dir(step.index - 1, self.state.steps[-1]["name"])
        source_file = previous / "kept.parquet"
        total = count_rows(source_file)
        work_dir = self.folder.path / "work" / step.name
        work_dir.mkdir(parents=True, exist_ok=True)
        context = StageContext(step.name, self.recipe.run.seed, self.recipe.file.parent,
                               work_dir, self.console.info, self._workers(),
                               reread=lambda: read_records(source_file),
                               tokenizer=self.tokenizer_loader(), run_dir=self.folder.path,
                               split=self.recipe.split, read_source=self._source_reader(step.spec),
                               plugin=step.spec.identity[0] if step.spec.identity else "")
        with plugin_code(context.label):
            stage = step.spec.plugin(step.spec.options, context)
        ledger = InputLedger(read_records(source_file), context.label,
                             lambda: (record.id for record in read_records(source_file)))
        for outcome in self.console.progress(ledger.outcomes(stage), step.name, total):
            writer.add(outcome)
        with plugin_code(context.label):
            self.state.stage_stats = stage.summary()
        ledger.check_complete(total)
        return total

    def _source_reader(self, spec: PluginSpec):
        def read(key: str) -> Iterator:
            source = spec.sources[key]
            return read_source(source, source_context(self.recipe, source),
                               self.host.registry("format"), SourceCounts())

        return read

    def _workers(self) -> int:
        return self.recipe.run.workers or default_workers()


class InputLedger:
    """Checks a stage's outcomes against its input: every input record comes out exactly once,
    kept (as itself), revised (`Record.revised`), rejected or pending, and every other record
    comes wrapped in `Added`. Ids are counted, not just seen: records with the same content
    share an id, and each copy must come out."""

    def __init__(self, records: Iterator[Record], label: str,
                 input_ids: Callable[[], Iterable[str]]):
        self.records, self.label, self.input_ids = records, label, input_ids
        self.waiting: deque[str] = deque()
        """Ids read and not yet yielded, in input order. Most stages yield in input order, so
        an outcome is the oldest waiting record: no lookup in a dict of every id, which costs
        several times more at a million records."""
        self.remaining: Counter[str] | None = None
        """Id -> copies read and not yet yielded, once the stage yielded out of order."""
        self.read = 0

    def __iter__(self) -> Iterator[Record]:
        wait = self.waiting.append
        for record in self.records:
            if self.remaining is None:
                wait(record.id)
            else:
                self.remaining[record.id] += 1
            self.read += 1
            yield record

    def outcomes(self, stage: Stage) -> Iterator[Record | Rejection | Pending | Added]:
        """The stage's outcomes, each checked as it comes."""
        with plugin_code(self.label):
            outcomes = stage.process(self)
            if not isinstance(outcomes, Iterable):
                raise self._error(f"process() returned {type(outcomes).__name__}: a stage"
                                  f" {YIELDS_EACH}")
            waiting = self.waiting
            for outcome in outcomes:
                # The common case first, cheaply: the oldest waiting record, kept.
                if (type(outcome) is Record and self.remaining is None and waiting
                        and outcome.id == waiting[0]):
                    waiting.popleft()
                else:
                    self._check(outcome)
                yield outcome

    def _check(self, outcome: object) -> None:
        if isinstance(outcome, Added):
            outcome_record(outcome.outcome, self.label, "an Added holding ")
        else:
            self._settle(outcome_record(outcome, self.label, ""), outcome.id)

    def check_complete(self, total: int) -> None:
        if self.read != total:
            raise self._error(f"read only {self.read} of its {total} input records: a stage"
                              f" reads its whole input and {YIELDS_EACH}")
        lost = [*self.waiting, *(self.remaining or Counter()).elements()]
        if lost:
            more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
            raise self._error(f"record {lost[0]}{more} was never yielded: a stage {YIELDS_EACH}")

    def _settle(self, record: Record | None, key: str) -> None:
        waiting = self.waiting
        if self.remaining is None and waiting and key == waiting[0]:
            waiting.popleft()
            return
        # Anything else is settled by count, the record's own id before its revised_from: a
        # record kept by this step may carry the revised_from of an earlier one.
        if self.remaining is None:
            self.remaining = Counter(waiting)
            waiting.clear()
        self._settle_unordered(record, key)

    def _settle_unordered(self, record: Record | None, key: str) -> None:
        remaining = self.remaining
        revised = record.meta.get("revised_from") if record is not None else None
        if remaining[key] > 0:
            remaining[key] -= 1
        elif revised is not None and remaining[revised] > 0:
            remaining[revised] -= 1
        else:
            raise self._error(self._unaccounted(key, revised))

    def _unaccounted(self, key: str, revised: str | None) -> str:
        read = set(self.input_ids())
        if key in read:
            return f"record {key} was yielded twice: a stage {YIELDS_EACH}"
        if revised in read:
            return (f"record {key} revises record {revised}, which was already yielded: a"
                    f" revision replaces its record, so yield one or the other")
        return (f"record {key} is not one of its input records: yield a record the stage adds"
                f" as curate.records.Added(record), and a changed input record as"
                f" record.revised(messages)")

    def _error(self, message: str) -> CurateError:
        return CurateError(f"{self.label}: {message}")


YIELDS_EACH = ("yields each input record exactly once, kept (the record itself), rejected"
               " (Rejection) or pending (Pending)")


def outcome_record(outcome: object, label: str, holding: str) -> Record | None:
    """The record of a stage's outcome (None for a Rejection of a raw row), once the outcome
    is one the host can write."""
    if isinstance(outcome, Record):
        problem = message_problem(outcome.messages)
        if problem:
            raise CurateError(f"{label}: process() yielded {holding}record {outcome.id} whose"
                              f" {problem[1]}")
        return outcome
    if isinstance(outcome, Rejection):
        problem = reject_problem(outcome.reason, outcome.detail, outcome.evidence)
        if problem:
            raise CurateError(f"{label}: process() yielded {holding}a Rejection whose {problem}")
        if outcome.record is None or isinstance(outcome.record, Record):
            return outcome.record
    elif isinstance(outcome, Pending) and isinstance(outcome.record, Record):
        return outcome.record
    raise CurateError(f"{label}: process() yielded {holding}{_described(outcome)}: a stage"
                      f" {YIELDS_EACH}, and each record it adds as Added(record)")


def _described(outcome: object) -> str:
    if isinstance(outcome, (Rejection, Pending)):
        return f"a {type(outcome).__name__} of {type(outcome.record).__name__}"
    return type(outcome).__name__


def _counts(summary: dict) -> str:
    pending, added = summary.get("pending", 0), summary.get("added", 0)
    return (f"{summary['in']:>8,} in  {summary['kept']:>8,} kept  "
            f"{summary['rejected']:>7,} rejected" + (f"  {pending:>7,} pending" if pending else "")
            + (f"  {added:>7,} added" if added else ""))
