"""`curate eval RECIPE`: the recipe's [[evals]] on a run that is already trained."""

from __future__ import annotations

from pathlib import Path

import click

from curate import hookimpl
from curate.errors import CurateError


@hookimpl
def register_commands(register):
    register(evaluate)


@click.command("eval")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: the recipe's [run] dir, else runs/<recipe stem>).")
@click.option("--force", is_flag=True, help="Rerun every evaluation, ignoring cached results.")
def evaluate(recipe: Path, run_dir: Path | None, force: bool):
    """Evaluate a trained run: the recipe's [[evals]], base model against base + adapter.

    `curate run` does the same after training; this reruns them on the adapter already in the
    run folder, e.g. after adding an evaluation to the recipe. Evaluations whose options, code,
    adapter and data did not change are reused. Results go to RUN_DIR/eval/results.json, the
    generated answers to RUN_DIR/eval/samples.jsonl, and the run's report is rewritten.

    \b
    Examples:
      curate eval recipes/train/quickstart.toml
      curate eval recipe.toml --run-dir runs/try --force
    """
    from curate.console import Console
    from curate.finishing import evaluate as run_evaluations
    from curate.pluginmanager import get_host
    from curate.recipe import load_recipe
    from curate.runstore import RunFolder

    host = get_host()
    loaded = load_recipe(recipe, host)
    if not loaded.evals:
        raise CurateError(f"{recipe}: the recipe has no [[evals]]: add one, e.g. [[evals]]"
                          f" use = \"loss\" (see docs/evals.md)")
    folder = RunFolder(run_dir or loaded.default_run_dir())
    if not (folder.path / "adapter").is_dir():
        raise CurateError(f"{folder.path}: no trained adapter ({folder.path / 'adapter'} is"
                          f" missing): train first with `curate run {recipe}"
                          f"{f' --run-dir {run_dir}' if run_dir else ''}`")
    folder.check_compatible()
    with folder.lock():
        folder.check_training_finished(f"curate run {recipe}"
                                       f"{f' --run-dir {run_dir}' if run_dir else ''}")
        results = run_evaluations(loaded, folder, Console(), force)
        manifest = _with_results(folder, results)
    if manifest.get("status") == "complete":
        host.after_run(folder.path, manifest)
    click.echo(f"results: {folder.path / 'eval' / 'results.json'}")


def _with_results(folder, results: dict) -> dict:
    """The run's manifest with these evaluation results under `train.evals`, written back."""
    from curate.runstore import write_json_atomic
    from curate.why import read_manifest

    manifest = read_manifest(folder.path)
    if isinstance(manifest.get("train"), dict):
        manifest["train"]["evals"] = results
        write_json_atomic(folder.manifest_file, manifest)
    return manifest
