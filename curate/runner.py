"""Runs a recipe: read the sources, run each stage, split, then train and evaluate.

Each curation step is cached in the run folder by a fingerprint of what it depends on (its
options, its plugin's version, the fingerprint of its input), so a rerun with nothing changed
runs nothing, and changing one stage reruns it and what follows.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import curate
from curate.console import Console
from curate.errors import CurateError
from curate.finishing import train_and_evaluate
from curate.ingest import READ_STEP, SourceCounts, read_source
from curate.options import options_to_dict
from curate.pluginmanager import PluginHost
from curate.recipe import PluginSpec, Recipe
from curate.records import RECORD_ID_SCHEME, Record
from curate.runstore import (RUN_FORMAT, RunFolder, StepWriter, count_rows, fingerprint,
                             read_records, write_json_atomic)
from curate.sources import SourceContext
from curate.split import write_split
from curate.stages import StageContext, default_workers
from curate.tokenizer import load_token_counter


@dataclass
class RunSettings:
    run_dir: Path
    force: bool = False
    until: str | None = None


@dataclass
class PlannedStep:
    index: int
    name: str
    use: str
    folder: Path
    fingerprint: str
    spec: PluginSpec | None = None


@dataclass
class RunState:
    steps: list[dict] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)


class Runner:
    def __init__(self, recipe: Recipe, host: PluginHost, settings: RunSettings, console: Console):
        self.recipe, self.host, self.settings, self.console = recipe, host, settings, console
        self.folder = RunFolder(settings.run_dir)
        self.state = RunState()

    def run(self) -> dict:
        self._check_until()
        self.folder.check_compatible()
        with self.folder.lock():
            self._write_manifest("running")
            self._remove_dataset()
            try:
                plan = self.plan()
                self.folder.remove_stale_steps(step.folder for step in plan)
                manifest = self._run_plan(plan)
            except Exception as error:
                message = str(error) if isinstance(error, CurateError) else repr(error)
                self._write_manifest("failed", error=message)
                raise
            # Outside the try: a failing after_run plugin must not mark a finished run failed.
            if manifest["status"] == "complete":
                self.host.after_run(self.folder.path, manifest)
            return manifest

    def plan(self) -> list[PlannedStep]:
        """Every curation step with its folder and fingerprint, computed before anything runs."""
        read = PlannedStep(0, READ_STEP, READ_STEP, self.folder.step_dir(0, READ_STEP),
                           self._read_fingerprint())
        steps = [read]
        for index, spec in enumerate(self.recipe.stages, start=1):
            previous = steps[-1].fingerprint
            model = (options_to_dict(self.recipe.model) if spec.plugin.needs_model(spec.options)
                     else None)
            step_print = fingerprint(previous, spec.identity, options_to_dict(spec.options),
                                     self.recipe.run.seed, model,
                                     spec.plugin.fingerprint_extra(spec.options))
            steps.append(PlannedStep(index, spec.name, spec.use,
                                     self.folder.step_dir(index, spec.name), step_print, spec))
        return steps

    def _read_fingerprint(self) -> str:
        parts = []
        for spec in self.recipe.sources:
            context = self._source_context(spec)
            parts.append([spec.name, spec.identity, options_to_dict(spec.options),
                          options_to_dict(spec.source_options),
                          spec.plugin().fingerprint(spec.options, context)])
        formats = [self.host.identity("format", name)
                   for name in self.host.registry("format").names()]
        return fingerprint(curate.__version__, RUN_FORMAT, RECORD_ID_SCHEME, parts, formats)

    def _check_until(self) -> None:
        """Refuse an unknown --until before the run folder is touched."""
        names = [READ_STEP, *(spec.name for spec in self.recipe.stages)]
        until = self.settings.until
        if until is not None and until not in names:
            raise CurateError(f"--until {until}: no such step in {self.recipe.file.name}"
                              f" (steps: {', '.join(names)})")

    def _run_plan(self, plan: list[PlannedStep]) -> dict:
        for step in plan:
            self.state.steps.append(self._run_step(step))
            if step.name == self.settings.until:
                self.console.info(f"stopped after step '{step.name}' (--until)")
                return self._write_manifest("partial", until=step.name)
        if all(step["cached"] for step in self.state.steps):
            self.console.info(f"nothing changed: all {len(plan)} curation steps reused from the"
                              f" run folder (--force reruns them)")
        final = plan[-1].folder / "kept.parquet"
        split = self._write_dataset(final)
        extra: dict = {"split": split}
        if self.recipe.train:
            extra["train"] = train_and_evaluate(self.recipe, self.folder, split, self.console,
                                                self.settings.force)
        return self._write_manifest("complete", **extra)

    def _run_step(self, step: PlannedStep) -> dict:
        label = f"{step.index:02d}-{step.name}"
        cached = None if self.settings.force else self.folder.cached_step(step.folder,
                                                                          step.fingerprint)
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
                   "reasons": dict(sorted(writer.reasons.items()))}
        if step.spec is None:
            summary["sources"] = self.state.sources
        if writer.kept + writer.rejected != total_in:
            raise RuntimeError(f"step {step.name} accounted for {writer.kept + writer.rejected}"
                               f" of {total_in} records: a stage must yield every input record"
                               f" kept or rejected")
        return summary

    def _read_sources(self, writer: StepWriter) -> int:
        self.state.sources = []
        total = 0
        for spec in self.recipe.sources:
            counts = SourceCounts()
            context = self._source_context(spec)
            outcomes = read_source(spec, context, self.host.registry("format"), counts)
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
                               tokenizer=self._tokenizer_loader())
        stage = step.spec.plugin(step.spec.options, context)
        counted = _Counter(read_records(source_file))
        for outcome in self.console.progress(stage.process(counted), step.name, total):
            writer.add(outcome)
        if counted.count != total:
            raise RuntimeError(f"stage '{step.use}' (plugin {step.spec.identity[0]}) read only"
                               f" {counted.count} of its {total} input records: a stage must"
                               f" consume its whole input and yield every record kept or"
                               f" rejected")
        return total

    def _workers(self) -> int:
        return self.recipe.run.workers or default_workers()

    def _tokenizer_loader(self):
        model = self.recipe.model
        if not (model.path or model.tokenizer):
            return None
        loaded = []

        def load():
            if not loaded:
                loaded.append(load_token_counter(model, self.recipe.file.parent))
            return loaded[0]

        return load

    def _source_context(self, spec: PluginSpec) -> SourceContext:
        return SourceContext(self.recipe.file, spec.key_path, self.recipe.run.seed)

    def _write_dataset(self, final: Path) -> dict:
        split = write_split(final, self.folder.dataset, self.recipe.split, self.recipe.run.seed)
        self.console.info(f"{'dataset':<24} {split['train']:,} train, {split['eval']:,} eval"
                          f" -> {self.folder.dataset}")
        return split

    def _remove_dataset(self) -> None:
        for name in ("train.jsonl", "eval.jsonl"):
            (self.folder.dataset / name).unlink(missing_ok=True)

    def _write_manifest(self, status: str, **extra: object) -> dict:
        manifest = {
            "run_format": RUN_FORMAT,
            "status": status,
            "recipe": {"file": str(self.recipe.file), "name": self.recipe.name,
                       "sha256": self.recipe.digest},
            "seed": self.recipe.run.seed,
            "versions": self._versions(),
            "sources": self.state.sources,
            "steps": self.state.steps,
            **extra,
        }
        if status == "complete":
            manifest["final"] = self._final_counts(manifest)
        write_json_atomic(self.folder.manifest_file, manifest)
        if status != "running":
            self.console.detail(f"manifest: {self.folder.manifest_file} ({status})")
        return manifest

    def _final_counts(self, manifest: dict) -> dict:
        rows = self.state.steps[0]["in"] if self.state.steps else 0
        rejected = sum(step["rejected"] for step in self.state.steps)
        split = manifest["split"]
        accounted = rejected + split["train"] + split["eval"]
        if accounted != rows:
            raise RuntimeError(f"{rows} input rows but {accounted} accounted for: records were"
                               f" lost or duplicated between steps")
        return {"input": rows, "rejected": rejected, "train": split["train"],
                "eval": split["eval"], "accounted": accounted}

    def _versions(self) -> dict:
        import pyarrow

        plugins = {name: info.version or curate.__version__
                   for name, info in sorted(self.host.plugins.items())}
        return {"curate": curate.__version__, "python": platform.python_version(),
                "pyarrow": pyarrow.__version__, "plugins": plugins}


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
    return (f"{summary['in']:>8,} in  {summary['kept']:>8,} kept  "
            f"{summary['rejected']:>7,} rejected")

