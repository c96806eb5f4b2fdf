"""`curate train`: the same run as `curate run`, shaped for `accelerate launch` / torchrun.

One run folder takes one curate process at a time, so under DDP the main process curates and
writes the dataset (the recipe without its [train]), every process then trains together on it,
the main one records the training where `curate run` caches it (`train.json`), and finally runs
the whole recipe once more, which finds everything cached, runs the evaluations and writes the
manifest. Launched as a single process it is simply `curate run`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from curate.cli.run import EXIT_REVIEW_PENDING
from curate.errors import CurateError

TRAIN_RECORD = "train.json"


class ReviewPending(CurateError):
    """Records wait for review: no dataset yet, so nothing to train on."""

    exit_code = EXIT_REVIEW_PENDING  # as `curate run` exits


def train_on_every_process(recipe_path: Path, run_dir: Path | None,
                           force: bool) -> tuple[dict | None, Path]:
    """(the final manifest on the main process, None on the others; the run folder)."""
    import torch
    from accelerate import PartialState

    from curate.console import Console
    from curate.pluginmanager import get_host
    from curate.recipe import load_recipe
    from curate.run_manifest import check_default_folder_is_free
    from curate.runner import Runner, RunSettings
    from curate.runstore import RunFolder

    state = PartialState(cpu=not torch.cuda.is_available())  # CPU processes: gloo
    recipe = load_recipe(recipe_path, get_host())
    if recipe.train is None:
        raise CurateError(f"{recipe_path}: no [train] section: nothing for `curate train` to do")
    console = Console(quiet=not state.is_main_process)
    settings = RunSettings(run_dir or recipe.default_run_dir(), force=force)
    if state.is_main_process and not run_dir and not recipe.run.dir:
        check_default_folder_is_free(RunFolder(settings.run_dir), recipe)
    if state.is_main_process:
        curation_only = dataclasses.replace(recipe, train=None, evals=[])
        curation = dataclasses.replace(settings, after_run=False)
        Runner(curation_only, get_host(), curation, console).run()
    state.wait_for_everyone()
    _train_together(recipe, settings.run_dir, force, console, state)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None, settings.run_dir
    finish = RunSettings(settings.run_dir, reported=True)
    return Runner(recipe, get_host(), finish, console).run(), settings.run_dir


def _train_together(recipe, run_dir: Path, force: bool, console, state) -> None:
    from curate.finishing import run_trainer, train_context, train_fingerprint
    from curate.runstore import RunFolder, read_json, write_json_atomic

    folder = RunFolder(run_dir)
    manifest = read_json(folder.manifest_file)
    if manifest.get("status") == "review":
        raise ReviewPending(_waiting_line(recipe, run_dir, manifest["review"]["pending"]))
    if manifest.get("status") != "complete":
        raise CurateError(f"{run_dir}: curation did not complete (status"
                          f" {manifest.get('status')!r}): see `curate run {recipe.file}`")
    train_print = train_fingerprint(recipe, manifest["split"], run_dir)
    record = run_dir / TRAIN_RECORD
    if not force and record.exists() and read_json(record).get("fingerprint") == train_print:
        console.info("train                    cached")
        return
    started = time.monotonic()
    metrics = run_trainer(recipe.train, train_context(recipe, folder, console))
    seconds = round(time.monotonic() - started, 3)
    if state.is_main_process:
        write_json_atomic(record, {"fingerprint": train_print,
                                   "result": {"use": recipe.train.use, "metrics": metrics},
                                   "seconds": seconds})
    console.info(f"{'train':<24} ran      {seconds:.1f}s")


def _waiting_line(recipe, run_dir: Path, pending: int) -> str:
    folder = "" if Path(run_dir) == Path(recipe.default_run_dir()) else f" --run-dir {run_dir}"
    waiting = "1 record waits" if pending == 1 else f"{pending:,} records wait"
    return (f"{run_dir}: {waiting} for review: curate review {recipe.file}{folder} (then"
            f" run this again; nothing was trained)")
