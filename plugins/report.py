"""The built-in quality report: what each step of a run kept and rejected, and why.

`curate report RUN_DIR` writes RUN_DIR/report.html (one self-contained page with charts) and
RUN_DIR/report.md (a Markdown summary for terminals and pull requests) and prints the summary.
The same files are written at the end of every complete `curate run`, through the `after_run`
hook. Both depend only on the run folder's contents, so the same run gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import click

from curate import hookimpl
from curate.errors import CurateError

HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"


@hookimpl
def after_run(run_dir: Path, manifest: dict) -> None:
    write_report(run_dir, manifest)


@hookimpl
def register_commands(register):
    register(report)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="Print only the paths of the files written.")
def report(run_dir: Path, quiet: bool):
    """Write a run's quality report: what each step kept and rejected, and why.

    Writes RUN_DIR/report.html (one page with charts) and RUN_DIR/report.md: the funnel of
    steps, each rejection reason with examples, length distributions, languages, duplicate
    clusters and consistency findings, and for a run evaluated by [[evals]] base against tuned
    with the loss curves; then prints the Markdown. `curate run` writes the same report when a
    run completes.

    \b
    Examples:
      curate report runs/quickstart
      curate report runs/quickstart --quiet
    """
    html_path, markdown_path, markdown = write_report(run_dir, complete_manifest(run_dir))
    if quiet:
        click.echo(f"{html_path}\n{markdown_path}")
    else:
        click.echo(markdown, nl=False)
        click.echo(f"\nreport: {html_path}")


def complete_manifest(run_dir: Path) -> dict:
    """The manifest of a completed run in `run_dir`, or a CurateError saying what is wrong."""
    from curate.runstore import RUN_FORMAT
    from curate.why import read_manifest

    if run_dir.exists() and not run_dir.is_dir():
        raise CurateError(f"{run_dir}: is a file, not a run folder")
    manifest = read_manifest(run_dir)
    if manifest.get("run_format") != RUN_FORMAT:
        raise CurateError(f"{run_dir}: written by an incompatible curate (run format"
                          f" {manifest.get('run_format')}, this curate reads {RUN_FORMAT}):"
                          f" run the recipe again")
    if manifest.get("status") != "complete":
        raise CurateError(f"{run_dir}: {_incomplete(manifest.get('status'), manifest)}")
    if not (manifest.get("steps") and isinstance(manifest["steps"], list)
            and isinstance(manifest.get("final"), dict)):
        raise CurateError(f"{run_dir}: manifest.json lacks the run's steps or final counts:"
                          f" run the recipe again to rebuild it")
    return manifest


def _incomplete(status: object, manifest: dict) -> str:
    if status == "partial":
        return (f"the run stopped after step '{manifest.get('until', '?')}' (--until); a report"
                f" needs a complete run: run the recipe without --until")
    if status == "review":
        pending = manifest.get("review", {}).get("pending", "some")
        return (f"the run stopped before the dataset: {pending} records wait for review; review"
                f" them with `curate review RECIPE`, then run the recipe again")
    if status == "running":
        return "a run is going on in this folder now: let it finish"
    if status == "interrupted":
        return "the run was interrupted (Ctrl-C or kill): run the recipe again to finish it"
    if status == "failed":
        error = manifest.get("error", "no error recorded")
        return f"the run failed ({error}): fix it and run the recipe again"
    return f"the run is not complete (status {status!r}): run the recipe again"


def write_report(run_dir: Path, manifest: dict) -> tuple[Path, Path, str]:
    """Write report.html and report.md into `run_dir`; returns their paths and the Markdown."""
    import pyarrow as pa

    from curate.plugins.report_data import gather
    from curate.plugins.report_html import render_html
    from curate.plugins.report_markdown import render_markdown
    from curate.runstore import write_text_atomic

    try:
        gathered = gather(run_dir, manifest)
    except (OSError, pa.ArrowInvalid) as error:
        raise CurateError(f"{run_dir}: the run folder is damaged ({error}): run the recipe"
                          f" again to rebuild it") from None
    markdown = render_markdown(gathered)
    html_path, markdown_path = run_dir / HTML_FILE, run_dir / MARKDOWN_FILE
    write_text_atomic(html_path, render_html(gathered))
    write_text_atomic(markdown_path, markdown)
    return html_path, markdown_path, markdown
