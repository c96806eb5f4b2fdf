"""`curate run` and `curate validate`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from curate import hookimpl

EXIT_REVIEW_PENDING = 3
"""`curate run`'s exit status when records wait for review: the run stopped before the dataset."""


@hookimpl
def register_commands(register):
    register(run)
    register(validate)


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: the recipe's [run] dir, else runs/<recipe stem>).")
@click.option("--force", is_flag=True, help="Rerun every step, ignoring cached results.")
@click.option("--until", metavar="STEP", help="Stop after this step (e.g. read, or a stage name).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", is_flag=True, help="Also print fingerprints and file paths.")
def run(recipe: Path, run_dir: Path | None, force: bool, until: str | None, quiet: bool,
        verbose: bool):
    """Run a recipe: read sources, run the stages, split, then train and evaluate.

    Steps whose inputs and options did not change are reused from the run folder. When records
    wait for review (a `review` stage), the run stops before the dataset and training, says
    how to review them and exits with status 3; after the review, run it again.

    \b
    Examples:
      curate run recipes/quickstart.toml
      curate run recipes/quickstart.toml --until length
      curate run recipes/quickstart.toml --force --run-dir /tmp/try
    """
    from curate.console import Console
    from curate.pluginmanager import get_host
    from curate.recipe import load_recipe
    from curate.run_manifest import check_default_folder_is_free
    from curate.runner import Runner, RunSettings
    from curate.runstore import RunFolder
    from curate.template_report import check_template_before_run

    host = get_host()
    loaded = load_recipe(recipe, host)
    check_template_before_run(loaded, host)
    console = Console(quiet=quiet, verbose=verbose)
    if not quiet:
        for warning in loaded.warnings:
            console.warn(f"{recipe}: {warning}")
    settings = RunSettings(run_dir or loaded.default_run_dir(), force=force, until=until)
    if not run_dir and not loaded.run.dir:
        check_default_folder_is_free(RunFolder(settings.run_dir), loaded)
    console.info(f"run {loaded.name} -> {settings.run_dir}")
    signal.signal(signal.SIGTERM, _terminate)  # `kill`, like Ctrl-C, marks the run interrupted
    try:
        manifest = Runner(loaded, host, settings, console).run()
    except KeyboardInterrupt as stop:
        click.echo(f"interrupted: run it again and it goes on from the last finished step"
                   f" ({settings.run_dir})", err=True)
        sys.exit(143 if isinstance(stop, Terminated) else 130)
    if manifest["status"] == "review":
        review_command = f"curate review {recipe}" + (f" --run-dir {run_dir}" if run_dir else "")
        pending = manifest["review"]["pending"]
        waiting = "1 record waits" if pending == 1 else f"{pending:,} records wait"
        click.echo(f"{waiting} for review: {review_command} (then run this again; no dataset"
                   f" was written)", err=True)
        sys.exit(EXIT_REVIEW_PENDING)
    if manifest["status"] == "complete":
        final = manifest["final"]
        added = "".join(f" + {step['added']:,} {_added_by(step)}"
                        for step in manifest["steps"] if step.get("added"))
        general = (f" + {final['general_eval']:,} general eval" if "general_eval" in final
                   else "")
        console.info(f"done: {final['input']:,} input rows{added} -> {final['train']:,} train +"
                     f" {final['eval']:,} eval{general}, {final['rejected']:,} rejected"
                     f" (curate why {settings.run_dir} ID explains any record)")
        report = settings.run_dir / "report.html"
        if report.exists():
            console.info(f"report: {report}")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated


def _added_by(step: dict) -> str:
    return {"generate": "generated", "rehearsal": "general"}.get(step["use"],
                                                                 f"added by {step['name']}")


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
def validate(recipe: Path):
    """Check a recipe and every plugin's options without running it.

    No data is read, except with a [model] whose tokenizer is a local folder: then the chat
    template is checked on the first records of the sources (every end-of-turn token trained,
    rendering like the tokenizer's own template, something left to train on at max_length).

    \b
    Example:
      curate validate recipes/quickstart.toml
    """
    from curate.pluginmanager import get_host
    from curate.recipe import load_recipe
    from curate.template_report import validate_lines

    loaded = load_recipe(recipe, get_host())
    template_lines = validate_lines(loaded, get_host())
    # The trainer's advice may find an error too: before "ok", so the error is the only line.
    advice = loaded.train.plugin.advice(loaded.train.options, loaded) if loaded.train else []
    click.echo(f"{recipe}: ok")
    for spec in loaded.sources:
        click.echo(f"  source {spec.name}: {spec.use}, format {spec.source_options.format}")
    for index, spec in enumerate(loaded.stages, start=1):
        click.echo(f"  stage {index:02d}-{spec.name}: {spec.use}")
    for line in template_lines:
        click.echo(line)
    if loaded.train:
        click.echo(f"  train: {loaded.train.use}")
        for warning in advice:
            click.echo(f"  advice: {warning}")
    for spec in loaded.evals:
        click.echo(f"  eval {spec.name}: {spec.use}")
    click.echo(f"  run folder: {loaded.default_run_dir()}")
    for warning in loaded.warnings:
        click.echo(f"  warning: {warning}")
