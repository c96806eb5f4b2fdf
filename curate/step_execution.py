"""Runs one planned curation step, or reuses it from the run folder when its fingerprint
matches, and checks its accounting: every input record, and every record the step added, ends
kept, rejected or pending.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from curate.console import Console
from curate.ingest import SourceCounts, read_source
from curate.pluginmanager import PluginHost
from curate.recipe import PluginSpec, Recipe
from curate.records import Record
from curate.runstore import RunFolder, StepWriter, count_rows, read_records, write_json_atomic
from curate.sources import file_errors
from curate.stages import StageContext, default_workers
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
                               split=self.recipe.split, read_source=self._source_reader(step.spec))
        stage = step.spec.plugin(step.spec.options, context)
        counted = _Counter(read_records(source_file))
        for outcome in self.console.progress(stage.process(counted), step.name, total):
            writer.add(outcome)
        self.state.stage_stats = stage.summary()
        if counted.count != total:
            raise RuntimeError(f"stage '{step.use}' (plugin {step.spec.identity[0]}) read only"
                               f" {counted.count} of its {total} input records: a stage must"
                               f" consume its whole input and yield every record kept,"
                               f" rejected or pending")
        return total

    def _source_reader(self, spec: PluginSpec):
        def read(key: str) -> Iterator:
            source = spec.sources[key]
            return read_source(source, source_context(self.recipe, source),
                               self.host.registry("format"), SourceCounts())

        return read

    def _workers(self) -> int:
        return self.recipe.run.workers or default_workers()


class _Counter:
    """Counts the records a stage pulls from its input."""

    def __init__(self, records: Iterator[Record]):
        self.records = records
        self.count = 0

    def __iter__(self) -> Iterator[Record]:
        for record in self.records:
            self.count += 1
            yield record


def _counts(summary: dict) -> str:
    pending, added = summary.get("pending", 0), summary.get("added", 0)
    return (f"{summary['in']:>8,} in  {summary['kept']:>8,} kept  "
            f"{summary['rejected']:>7,} rejected" + (f"  {pending:>7,} pending" if pending else "")
            + (f"  {added:>7,} added" if added else ""))
