"""`curate review`: decide the records that wait in a run's review queue.

`curate review RECIPE` starts the terminal review; the subcommands list, show, approve, reject,
export and import do the same without a terminal, for scripts and teams that review elsewhere.
"""

from __future__ import annotations

import functools
import getpass
from pathlib import Path

import click

from curate import hookimpl
from curate.errors import CurateError, did_you_mean

INTERACTIVE = "start"
MIN_PREFIX = 4


@hookimpl
def register_commands(register):
    register(review)


class ReviewGroup(click.Group):
    """`curate review RECIPE ...` is short for `curate review start RECIPE ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = [INTERACTIVE, *args]
        return super().parse_args(ctx, args)


@click.group(cls=ReviewGroup)
def review():
    """Review the records that wait in a run's review queue before training.

    `curate review RECIPE` shows each waiting record as a conversation with its provenance:
    press a (approve), r (reject, with an optional note), e (edit in $EDITOR), s (skip),
    u (undo) or q (quit). Then `curate run RECIPE` continues from its cache, and only approved
    and edited records go on.

    \b
    Examples:
      curate review recipe.toml
      curate review list recipe.toml --strategy self-instruct
      curate review approve recipe.toml 3f9c0a1b 77e2d0c4
      curate review reject recipe.toml --source synthetic --note "off topic"
      curate review export recipe.toml -o queue.jsonl
      curate review import recipe.toml queue.jsonl
    """


def queue_command(function):
    """The recipe argument and the options every subcommand shares; passes `queue` and
    `hint` (how to continue the run) instead."""

    @click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
                  help="Run folder, if the run was given one (default: the recipe's).")
    @click.option("--wait", type=click.FloatRange(min=0), default=10.0, show_default=True,
                  help="Seconds to wait for a review database another process holds.")
    @functools.wraps(function)
    def command(recipe: Path, run_dir: Path | None, wait: float, **options):
        from curate.review.queue import ReviewQueue, queue_path

        folder = run_dir or _default_run_dir(recipe)
        hint = f"curate run {recipe}" + (f" --run-dir {run_dir}" if run_dir else "")
        with ReviewQueue(queue_path(folder), wait=wait, create=False) as queue:
            return function(queue=queue, hint=hint, **options)

    return command


def _default_run_dir(recipe: Path) -> Path:
    from curate.pluginmanager import get_host
    from curate.recipe import load_recipe

    return load_recipe(recipe, get_host()).default_run_dir()


reviewer_option = click.option("--reviewer", default=lambda: _user(), show_default="your user"
                               " name", help="Who decides, as recorded with each decision.")


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


@review.command(INTERACTIVE)
@queue_command
@reviewer_option
def start(queue, hint: str, reviewer: str):
    """Review waiting records one at a time in the terminal (also: curate review RECIPE)."""
    from curate.review.terminal import TerminalReview

    if not queue.counts()["pending"]:
        click.echo(f"nothing waits for review in {queue.path}")
        return
    session = TerminalReview(queue, reviewer).run()
    click.echo(f"this session: {session.tally()}")
    _say_left(queue, hint)


@review.command("list")
@queue_command
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "edited", "all"]),
              default="pending", show_default=True)
@click.option("--source", help="Only candidates from this source.")
@click.option("--strategy", help="Only candidates generated with this strategy.")
@click.option("--stale", is_flag=True, help="Also candidates the latest run no longer has.")
def list_(queue, hint: str, status: str, source: str | None, strategy: str | None, stale: bool):
    """List candidates: id, status, source, strategy, decision and the start of the prompt."""
    from curate.review.render import describe_decision

    check_filters(queue, source, strategy)
    candidates = queue.select(None if status == "all" else status, source, strategy, stale)
    for candidate in candidates:
        prompt = " ".join(candidate.record.prompt.split())
        mark = "" if candidate.active else "  [stale: not in the latest run]"
        click.echo(f"{candidate.id}  {describe_decision(candidate.decision):<40.40}"
                   f"  {candidate.record.source}  {candidate.strategy or '-'}  {prompt[:60]}"
                   f"{mark}")
    click.echo(f"{len(candidates)} candidates")


@review.command()
@queue_command
@click.argument("record_id")
def show(queue, hint: str, record_id: str):
    """Show one candidate as a conversation, with its provenance and decisions."""
    from curate.review.render import render_candidate

    candidate = queue.find(_prefix(record_id))
    click.echo(render_candidate(candidate))
    if candidate.decision.edited:
        click.echo("edited into:")
        for message in candidate.decision.edited:
            click.echo(f"--- {message['role']} ---\n{message['content']}")
    history = queue.history(candidate.id)
    if history:
        click.echo("history:")
    for _, version, status, reviewer, decided_at, note in history:
        said = f": {note}" if note else ""
        click.echo(f"  v{version} {status} by {reviewer or '?'} at {decided_at or '?'}{said}")


def decision_command(status: str):
    def decorate(function):
        @queue_command
        @click.argument("record_ids", nargs=-1)
        @click.option("--source", help="Every pending candidate from this source.")
        @click.option("--strategy", help="Every pending candidate of this generation strategy.")
        @click.option("--all", "everything", is_flag=True, help="Every pending candidate.")
        @click.option("--note", help="A note kept with the decision.")
        @click.option("--force", is_flag=True, help="Also change candidates already decided.")
        @reviewer_option
        @functools.wraps(function)
        def command(queue, hint, record_ids, source, strategy, everything, note, force,
                    reviewer):
            from curate.review.decisions import decide_all
            from curate.review.queue import Decision, now

            targets = _targets(queue, record_ids, source, strategy, everything)
            decision = Decision(status, reviewer, now(), note)
            _conclude(queue, decide_all(queue, targets, decision, force), status, hint)

        return command

    return decorate


@review.command()
@decision_command("approved")
def approve():
    """Approve candidates by id (a prefix will do), or every pending one of a --source,
    a --strategy, or --all."""


@review.command()
@decision_command("rejected")
def reject():
    """Reject candidates by id, or every pending one of a --source, a --strategy, or --all,
    with an optional --note."""


@review.command()
@queue_command
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: standard output).")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "edited", "all"]),
              default="all", show_default=True)
def export(queue, hint: str, output: Path | None, status: str):
    """Write candidates as JSONL, one per line, with their decisions and versions.

    Edit "status" (approved, rejected or edited), "note" and, for edits, "edited" (the new
    messages) in the file, then bring the decisions back with `curate review import`.
    """
    from curate.review.decisions import export_lines
    from curate.runstore import write_text_atomic

    lines = export_lines(queue.select(None if status == "all" else status))
    if output is None:
        for line in lines:
            click.echo(line, nl=False)
        return
    text = "".join(lines)
    write_text_atomic(output, text)
    click.echo(f"{text.count(chr(10))} candidates -> {output}", err=True)


@review.command("import")
@queue_command
@click.argument("decisions", type=click.Path(dir_okay=False, path_type=Path))
@reviewer_option
def import_(queue, hint: str, decisions: Path, reviewer: str):
    """Apply the decisions in a JSONL file written by `curate review export` (or by hand:
    {"id": ..., "status": "approved" | "rejected" | "edited", "note": ..., "edited": [...]}).

    A line with the exported "version" changes the candidate only if nobody decided it since;
    a line without one decides only a pending candidate.
    """
    from curate.review.decisions import import_decisions, read_decisions

    items = read_decisions(decisions, reviewer)
    _conclude(queue, import_decisions(queue, items, decisions), "decided", hint)


def _targets(queue, record_ids: tuple[str, ...], source: str | None, strategy: str | None,
             everything: bool) -> list:
    if record_ids and (source or strategy or everything):
        raise CurateError("give record ids, or --source / --strategy / --all, not both")
    if record_ids:
        return [queue.find(_prefix(record_id)) for record_id in record_ids]
    if not (source or strategy or everything):
        raise CurateError("say which candidates: record ids, --source NAME, --strategy NAME or"
                          " --all")
    check_filters(queue, source, strategy)
    return queue.states("pending", source, strategy)


PLURALS = {"source": "sources", "strategy": "strategies"}


def check_filters(queue, source: str | None, strategy: str | None) -> None:
    """A --source or --strategy no candidate has is a typo, not an empty selection."""
    for option, value in (("source", source), ("strategy", strategy)):
        known = queue.values(option) if value is not None else []
        if value is not None and value not in known:
            raise CurateError(f"--{option} {value}: no candidate has that {option}"
                              f"{did_you_mean(value, known)} ({PLURALS[option]} in the queue:"
                              f" {', '.join(known) or 'none'})")


def _prefix(record_id: str) -> str:
    if len(record_id) < MIN_PREFIX:
        raise CurateError(f"record id '{record_id}' is too short: give at least {MIN_PREFIX}"
                          f" characters")
    return record_id


def waiting(count: int) -> str:
    return "1 record still waits" if count == 1 else f"{count:,} records still wait"


def _report(result, verb: str) -> None:
    for line in result.refused:
        click.echo(f"not applied: {line}", err=True)
    unchanged = f", {result.unchanged} unchanged" if result.unchanged else ""
    click.echo(f"{verb}: {result.applied}{unchanged}, not applied: {len(result.refused)}")


def _conclude(queue, result, verb: str, hint: str) -> None:
    """What the decisions did and what still waits; exit status 1 when a decision was not
    applied, so a script that decides in bulk can tell (the ones applied stay applied)."""
    _report(result, verb)
    _say_left(queue, hint)
    if result.refused:
        raise SystemExit(1)


def _say_left(queue, hint: str) -> None:
    pending = queue.counts()["pending"]
    if pending:
        click.echo(f"{waiting(pending)} for review")
    else:
        click.echo(f"nothing waits for review: {hint} continues the run")
