"""`curate run` and `curate validate`."""

from __future__ import annotations

from pathlib import Path

import click

from curate import hookimpl


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

    Steps whose inputs and options did not change are reused from the run folder.

    \b
    Examples:
      curate run recipes/quickstart.toml
      curate run recipes/quickstart.toml --until length
      curate run recipes/quickstart.toml --force --run-dir /tmp/try
    """
    from curate.console import Console
    from curate.pluginmanager import get_host
    from curate.recipe import load_recipe
    from curate.runner import Runner, RunSettings

    host = get_host()
    loaded = load_recipe(recipe, host)
    console = Console(quiet=quiet, verbose=verbose)
    settings = RunSettings(run_dir or loaded.default_run_dir(), force=force, until=until)
    console.info(f"run {loaded.name} -> {settings.run_dir}")
    manifest = Runner(loaded, host, settings, console).run()
    if manifest["status"] == "complete":
        final = manifest["final"]
        console.info(f"done: {final['input']:,} input rows -> {final['train']:,} train +"
                     f" {final['eval']:,} eval, {final['rejected']:,} rejected"
                     f" (curate why {settings.run_dir} ID explains any record)")
        report = settings.run_dir / "report.html"
        if report.exists():
            console.info(f"report: {report}")


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
def validate(recipe: Path):
    """Check a recipe and every plugin's options without reading any data.

    \b
    Example:
      curate validate recipes/quickstart.toml
    """
    from curate.pluginmanager import get_host
    from curate.recipe import load_recipe

    loaded = load_recipe(recipe, get_host())
    click.echo(f"{recipe}: ok")
    for spec in loaded.sources:
        click.echo(f"  source {spec.name}: {spec.use}, format {spec.source_options.format}")
    for index, spec in enumerate(loaded.stages, start=1):
        click.echo(f"  stage {index:02d}-{spec.name}: {spec.use}")
    if loaded.train:
        click.echo(f"  train: {loaded.train.use}")
    for spec in loaded.evals:
        click.echo(f"  eval {spec.name}: {spec.use}")
    click.echo(f"  run folder: {loaded.default_run_dir()}")
