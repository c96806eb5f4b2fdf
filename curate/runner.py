"""Runs a recipe: read the sources, run each stage, split, then train and evaluate.

Each curation step is cached in the run folder by a fingerprint of what it depends on (its
options, its plugin's version, the fingerprint of its input), so a rerun with nothing changed
runs nothing, and changing one stage reruns it and what follows. Planning lives in
`curate.step_plan`, running a step and its accounting in `curate.step_execution`, and the
manifest with the final counts in `curate.run_manifest`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from curate.console import Console, SilentConsole
from curate.errors import CurateError
from curate.finishing import train_and_evaluate
from curate.mixing import achieved_mix, rehearsal_plan, token_counting
from curate.pluginmanager import PluginHost
from curate.recipe import Recipe
from curate.run_manifest import RunManifest
from curate.runstore import RunFolder
from curate.split import write_split
from curate.step_execution import RunState, StepExecutor
from curate.step_plan import PlannedStep, StepPlanner


@dataclass
class RunSettings:
    run_dir: Path
    force: bool = False
    until: str | None = None
    after_run: bool = True
    """False for a pass the run goes on after (`curate train`'s curation pass): plugins hear
    of a run once, when it ends."""
    reported: bool = False
    """The curation steps and the training were reported by an earlier pass (`curate train`'s
    last pass): only the evaluations speak."""


class Runner:
    def __init__(self, recipe: Recipe, host: PluginHost, settings: RunSettings, console: Console):
        self.recipe, self.host, self.settings = recipe, host, settings
        self.evals_console = console
        self.console = SilentConsole() if settings.reported else console
        self.folder = RunFolder(settings.run_dir, log=self.console.warn)
        self.state = RunState()
        self.planner = StepPlanner(recipe, host, self.folder)
        self.executor = StepExecutor(recipe, host, self.folder, self.console, self.state,
                                     settings.force)
        self.manifest = RunManifest(recipe, host, self.folder, self.console, self.state)

    def run(self) -> dict:
        self.planner.check_until(self.settings.until)
        self.folder.check_compatible()
        with self.folder.lock():
            self.manifest.write("running")
            self._remove_dataset()
            try:
                plan = self.planner.plan()
                self.folder.remove_stale_steps(step.folder for step in plan)
                manifest = self._run_plan(plan)
            except Exception as error:
                message = str(error) if isinstance(error, CurateError) else repr(error)
                self.manifest.write("failed", error=message)
                raise
            except (KeyboardInterrupt, SystemExit):
                self.manifest.write("interrupted")
                raise
            # Outside the try: a failing after_run plugin must not mark a finished run failed.
            if manifest["status"] == "complete" and self.settings.after_run:
                self.host.after_run(self.folder.path, manifest)
            return manifest

    def _run_plan(self, plan: list[PlannedStep]) -> dict:
        for step in plan:
            self.state.steps.append(self.executor.run_step(step))
            if step.name == self.settings.until:
                self.console.info(f"stopped after step '{step.name}' (--until)")
                return self.manifest.write("partial", until=step.name)
        if all(step["cached"] for step in self.state.steps):
            self.console.info(f"nothing changed: all {len(plan)} curation steps reused from the"
                              f" run folder (--force reruns them)")
        final = plan[-1].folder / "kept.parquet"
        pending = sum(step.get("pending", 0) for step in self.state.steps)
        if pending:
            # Nothing that could pass for approved data is written while a record waits.
            return self.manifest.write("review",
                                       review=self.manifest.review_counts(final, pending))
        split = self._write_dataset(final)
        extra: dict = {"split": split}
        if self.recipe.train:
            extra["train"] = train_and_evaluate(self.recipe, self.folder, split, self.console,
                                                self.settings.force, self.evals_console)
        return self.manifest.write("complete", **extra)

    def _write_dataset(self, final: Path) -> dict:
        plan = rehearsal_plan(self.state.steps)
        split = write_split(final, self.folder.dataset, self.recipe.split, self.recipe.run.seed,
                            token_counting(plan, self.executor.tokenizer_loader()))
        general = f", {split['general_eval']:,} general eval" if "general_eval" in split else ""
        self.console.info(f"{'dataset':<24} {split['train']:,} train, {split['eval']:,} eval"
                          f"{general} -> {self.folder.dataset}")
        if split.get("unanswered"):
            self.console.warn(unanswered_warning(split["unanswered"]))
        if not split["train"]:
            self.console.warn(empty_dataset_warning(self.state.steps, split["eval"]))
        if plan:
            split["rehearsal"] = achieved_mix(plan, split)
            if "warning" in split["rehearsal"]:
                self.console.warn(split["rehearsal"]["warning"])
        return split

    def _remove_dataset(self) -> None:
        for name in ("train.jsonl", "eval.jsonl", "general_eval.jsonl"):
            (self.folder.dataset / name).unlink(missing_ok=True)
        self.folder.remove_temporary_files()


def unanswered_warning(count: int) -> str:
    some = "1 record in the dataset has" if count == 1 else \
        f"{count:,} records in the dataset have"
    return (f"{some} an empty final answer (prompt-only): add [model] (its chat-template step"
            f" rejects them), a length stage, or a generate stage with the `answer` strategy")


def empty_dataset_warning(steps: list[dict], held_out: int) -> str:
    """The training split is empty: the split took every kept record, or which reasons took
    the records, most first."""
    if held_out:
        return (f"the train split is empty: all {held_out:,} kept records went to the eval"
                f" split; lower [split] eval_size or eval_fraction")
    reasons = Counter()
    for step in steps:
        reasons.update({f"{step['name']}: {reason}": count
                        for reason, count in step.get("reasons", {}).items()})
    top = ", ".join(f"{what} ({count:,})" for what, count in reasons.most_common(3))
    return (f"the train split is empty: no record was kept for training"
            f"{'; most rejected by ' + top if top else ''} (curate why, or the report, shows"
            f" each record's reason)")
