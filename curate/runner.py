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
from curate.mixing import achieved_mix, rehearsal_plan, token_counting
from curate.options import options_to_dict
from curate.pluginmanager import PluginHost
from curate.recipe import PluginSpec, Recipe
from curate.records import RECORD_ID_SCHEME, Record
from curate.runstore import (RUN_FORMAT, RunFolder, StepWriter, count_rows, fingerprint,
                             read_records, write_json_atomic)
from curate.sources import SourceContext
from curate.split import write_split
from curate.stages import StageContext, default_workers
from curate.template_step import template_steps
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
    stage_stats: dict = field(default_factory=dict)
    """What the stage that ran last reported in `Stage.summary()`."""


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
        for index, spec in enumerate(self._stages(), start=1):
            previous = steps[-1].fingerprint
            model = (options_to_dict(self.recipe.model) if spec.plugin.needs_model(spec.options)
                     else None)
            step_print = fingerprint(previous, spec.identity, options_to_dict(spec.options),
                                     self.recipe.run.seed, model,
                                     spec.plugin.fingerprint_extra(spec.options),
                                     *self._run_folder_fingerprint(spec),
                                     *self._recipe_fingerprint(spec))
            steps.append(PlannedStep(index, spec.name, spec.use,
                                     self.folder.step_dir(index, spec.name), step_print, spec))
        return steps

    def _run_folder_fingerprint(self, spec: PluginSpec) -> list:
        # Only stages that read the run folder add a part, so other fingerprints stay as they were.
        extra = spec.plugin.run_folder_fingerprint(spec.options, self.folder.path)
        return [extra] if extra else []

    def _recipe_fingerprint(self, spec: PluginSpec) -> list:
        """The data of the source tables a stage's options hold, and [split] when it reads it;
        only stages that have them add a part, so other fingerprints stay as they were."""
        parts = [[key, *self._source_fingerprint(source)]
                 for key, source in sorted(spec.sources.items())]
        if spec.plugin.needs_split(spec.options):
            parts.append(options_to_dict(self.recipe.split))
        return [parts] if parts else []

    def _source_fingerprint(self, spec: PluginSpec) -> list:
        return [spec.name, spec.identity, options_to_dict(spec.options),
                options_to_dict(spec.source_options),
                spec.plugin().fingerprint(spec.options, self._source_context(spec))]

    def _stages(self) -> list[PluginSpec]:
        """The recipe's stages, then the chat-template step when the recipe has a [model]."""
        return [*self.recipe.stages, *template_steps(self.recipe, self.host)]

    def _read_fingerprint(self) -> str:
        parts = [self._source_fingerprint(spec) for spec in self.recipe.sources]
        formats = [self.host.identity("format", name)
                   for name in self.host.registry("format").names()]
        return fingerprint(curate.__version__, RUN_FORMAT, RECORD_ID_SCHEME, parts, formats)

    def _check_until(self) -> None:
        """Refuse an unknown --until before the run folder is touched."""
        names = [READ_STEP, *(spec.name for spec in self._stages())]
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
        pending = sum(step.get("pending", 0) for step in self.state.steps)
        if pending:
            # Nothing that could pass for approved data is written while a record waits.
            return self._write_manifest("review", review=self._review_counts(final, pending))
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
                               tokenizer=self._tokenizer_loader(), run_dir=self.folder.path,
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
            return read_source(source, self._source_context(source),
                               self.host.registry("format"), SourceCounts())

        return read

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
        plan = rehearsal_plan(self.state.steps)
        split = write_split(final, self.folder.dataset, self.recipe.split, self.recipe.run.seed,
                            token_counting(plan, self._tokenizer_loader()))
        general = f", {split['general_eval']:,} general eval" if "general_eval" in split else ""
        self.console.info(f"{'dataset':<24} {split['train']:,} train, {split['eval']:,} eval"
                          f"{general} -> {self.folder.dataset}")
        if plan:
            split["rehearsal"] = achieved_mix(plan, split)
            if "warning" in split["rehearsal"]:
                self.console.warn(split["rehearsal"]["warning"])
        return split

    def _remove_dataset(self) -> None:
        for name in ("train.jsonl", "eval.jsonl", "general_eval.jsonl"):
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
        split = manifest["split"]
        general = split.get("general_eval", 0)
        rows, rejected, accounted = self._accounted(split["train"] + split["eval"] + general,
                                                    pending=0)
        final = {"input": rows, "added": self._added(), "rejected": rejected,
                 "train": split["train"], "eval": split["eval"], "accounted": accounted}
        if "general_eval" in split:
            final["general_eval"] = general
        return final

    def _review_counts(self, final: Path, pending: int) -> dict:
        kept = count_rows(final)
        rows, rejected, accounted = self._accounted(kept, pending)
        waiting = {step["name"]: step["pending"] for step in self.state.steps
                   if step.get("pending")}
        return {"input": rows, "added": self._added(), "rejected": rejected, "pending": pending,
                "kept": kept, "accounted": accounted, "steps": waiting}

    def _accounted(self, kept: int, pending: int) -> tuple[int, int, int]:
        """(input rows, rejected, accounted): every row, and every record a stage added, must
        be rejected, pending or kept."""
        rows = self.state.steps[0]["in"] if self.state.steps else 0
        rejected = sum(step["rejected"] for step in self.state.steps)
        accounted = rejected + pending + kept
        if accounted != rows + self._added():
            raise RuntimeError(f"{rows} input rows and {self._added()} added records but"
                               f" {accounted} accounted for: records were lost or duplicated"
                               f" between steps")
        return rows, rejected, accounted

    def _added(self) -> int:
        return sum(step.get("added", 0) for step in self.state.steps)

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
    pending, added = summary.get("pending", 0), summary.get("added", 0)
    return (f"{summary['in']:>8,} in  {summary['kept']:>8,} kept  "
            f"{summary['rejected']:>7,} rejected" + (f"  {pending:>7,} pending" if pending else "")
            + (f"  {added:>7,} added" if added else ""))

