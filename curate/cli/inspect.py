"""`curate why`: where one record went, and why."""

from __future__ import annotations

from pathlib import Path

import click

from curate import hookimpl


@hookimpl
def register_commands(register):
    register(why)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("record")
@click.option("--text", "show_text", is_flag=True,
              help="also print the messages of a rejected or waiting record as the step judged"
                   " them (or the unreadable row)")
def why(run_dir: Path, record: str, show_text: bool):
    """Say where a record went: the step that rejected it and why, or the dataset file and line.

    A record a stage added (a generated or general one) names that step and how it was made.

    RECORD is a record id, or a prefix of one of at least 4 characters (every record it matches
    is shown), or the input row it was read from, as `curate why` shows it after "from"
    (data/reviews.jsonl:13, data.json[3], train.parquet row 7; the file's folder may be left
    out: reviews.jsonl:13).

    \b
    Examples:
      curate why runs/quickstart 3f9c0a1b
      curate why runs/quickstart 3f9c0a1b --text
      curate why runs/quickstart data/reviews.jsonl:13
    """
    from curate.why import locate

    for finding in locate(run_dir, record):
        origin = f", {finding.origin}" if finding.origin else ""
        came_from = f", from {finding.where_from}" if finding.where_from else ""
        click.echo(f"{finding.id}  (source {finding.source or '?'}{origin}{came_from})")
        if finding.added_by:
            click.echo(f"  added by {finding.added_by}")
        for revision in finding.revisions:
            click.echo(f"  {revision}")
        if finding.place == "rejected":
            click.echo(f"  rejected at step '{finding.step}': {finding.reason}")
            click.echo(f"  detail: {finding.detail}")
        elif finding.place == "pending":
            click.echo(f"  waits for review at step '{finding.step}': {finding.detail}")
        elif finding.place == "kept":
            click.echo(f"  kept through step '{finding.step}', {finding.detail}")
        else:
            click.echo(f"  kept in the {finding.place} split: {finding.detail}")
        if finding.review:
            review = finding.review
            note = f": {review['note']}" if review.get("note") else ""
            click.echo(f"  {review.get('status', 'approved')} in review by"
                       f" {review.get('reviewer', '?')} at {review.get('at', '?')}{note}")
        if finding.passed:
            click.echo(f"  passed: {', '.join(finding.passed)}")
        if show_text:
            for line in text_lines(finding):
                click.echo(line)


def text_lines(finding) -> list[str]:
    """The judged text, each message under its role, indented."""
    if finding.messages:
        return [f"  {m['role']}: {_indented(m['content'])}" for m in finding.messages]
    if finding.raw:
        return [f"  row as read: {_indented(finding.raw)}"]
    return []


def _indented(text: str) -> str:
    return "\n".join(f"    {line}" if line and number else line
                     for number, line in enumerate(text.split("\n")))
