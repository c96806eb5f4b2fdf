"""The interactive review: one candidate at a time, rendered as a conversation, decided with
one key. Plain lines on stdout, so it works over any ssh session: on a terminal a key press
is enough; otherwise (a pipe, a test) each key is a line."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

import click

from curate.review.queue import Candidate, Decision, ReviewQueue, now
from curate.review.render import EditError, edit_text, parse_edit, render_candidate
from curate.review.render import describe_decision

KEYS = "[a]pprove  [r]eject  [e]dit  [s]kip  [u]ndo  [q]uit"
END_KEYS = "[u]ndo  [q]uit"
RULE = "-" * 72


@dataclass
class Done:
    """A decision made in this session, with what it replaced, so it can be undone."""

    candidate_id: str
    status: str
    before: Decision
    version: int


@dataclass
class Session:
    done: list[Done] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)

    def tally(self) -> str:
        counts = {status: 0 for status in ("approved", "edited", "rejected")}
        for item in self.done:
            counts[item.status] += 1
        said = ", ".join(f"{status} {count}" for status, count in counts.items())
        return f"{said}, skipped {len(self.skipped)}"


class Terminal:
    """Reads keys and lines from stdin: single key presses on a TTY, whole lines otherwise."""

    def __init__(self):
        self.stdin = sys.stdin
        self.tty = self.stdin.isatty()

    def key(self, prompt: str) -> str:
        click.echo(prompt, nl=False)
        if self.tty:
            pressed = click.getchar()
            click.echo(pressed)
            return pressed.lower()
        line = self.stdin.readline()
        if not line:
            click.echo()
            return "q"  # end of input ends the session like quit
        return line.strip()[:1].lower()

    def line(self, prompt: str) -> str:
        click.echo(prompt, nl=False)
        return self.stdin.readline().rstrip("\n")


class TerminalReview:
    def __init__(self, queue: ReviewQueue, reviewer: str, terminal: Terminal | None = None):
        self.queue, self.reviewer = queue, reviewer
        self.terminal = terminal or Terminal()
        self.session = Session()
        self.actions: dict[str, Callable[[Candidate], bool]] = {
            "a": self.approve, "r": self.reject, "e": self.edit, "s": self.skip,
            "u": self.undo, "q": lambda candidate: False}

    def run(self) -> Session:
        """Review until nothing is left or the reviewer quits; returns what was done."""
        while True:
            candidate = self.queue.next_pending(self.session.skipped)
            if candidate is None:
                if self.undo_at_the_end():
                    continue
                return self.session
            self.show(candidate)
            if not self.ask(candidate):
                return self.session

    def undo_at_the_end(self) -> bool:
        """Says nothing is left and, while this session has a decision to undo, offers to undo
        it; True when it was undone (the candidate is then shown again)."""
        click.echo("nothing left to review" if not self.session.skipped else
                   "nothing left to review but what you skipped")
        while self.session.done:
            pressed = self.terminal.key(f"{END_KEYS} > ")
            if pressed == "u":
                return self.undo(None)
            if pressed == "q":
                return False
            click.echo(f"unknown key {pressed!r}: press u or q")
        return False

    def show(self, candidate: Candidate) -> None:
        position = len(self.session.done) + 1
        waiting = self.queue.counts()["pending"] - len(self.session.skipped)
        click.echo(RULE)
        click.echo(f"[{position}/{len(self.session.done) + waiting}] {waiting} pending")
        click.echo(render_candidate(candidate))
        click.echo(RULE)

    def ask(self, candidate: Candidate) -> bool:
        """Reads keys until one acts on the candidate; False when the reviewer quits."""
        while True:
            pressed = self.terminal.key(f"{KEYS} > ")
            action = self.actions.get(pressed)
            if action is None:
                click.echo(f"unknown key {pressed!r}: press a, r, e, s, u or q")
                continue
            return action(candidate)

    def approve(self, candidate: Candidate) -> bool:
        self.decide(candidate, Decision("approved", self.reviewer, now()))
        return True

    def reject(self, candidate: Candidate) -> bool:
        note = self.terminal.line("note (Enter for none): ").strip()
        self.decide(candidate, Decision("rejected", self.reviewer, now(), note or None))
        return True

    def edit(self, candidate: Candidate) -> bool:
        messages = self.edited_messages(candidate)
        if messages is not None:
            self.decide(candidate, Decision("edited", self.reviewer, now(), edited=messages))
        return True

    def edited_messages(self, candidate: Candidate) -> list[dict] | None:
        """The messages from $EDITOR, or None (and why) when the edit is not applied."""
        try:
            text = click.edit(edit_text(candidate.record.messages), extension=".txt",
                              require_save=True)
        except click.ClickException as error:
            click.echo(f"edit failed ({error.format_message()}): {candidate.id} stays pending")
            return None
        if text is None:
            click.echo(f"editor closed without saving: {candidate.id} stays pending")
            return None
        try:
            messages = parse_edit(text, candidate.record.messages)
        except EditError as error:
            click.echo(f"edit not applied: {error}; {candidate.id} stays pending")
            return None
        if messages == candidate.record.messages:
            click.echo(f"nothing was changed: {candidate.id} stays pending (a approves it as"
                       f" it is)")
            return None
        return messages

    def skip(self, candidate: Candidate) -> bool:
        self.session.skipped.add(candidate.id)
        return True

    def undo(self, candidate: Candidate | None) -> bool:
        if not self.session.done:
            click.echo("nothing to undo in this session")
            return True
        last = self.session.done.pop()
        applied, now_stands = self.queue.undo(last.candidate_id, last.before, last.version,
                                              self.reviewer)
        if not applied:
            click.echo(f"cannot undo: {last.candidate_id} was changed since"
                       f" ({describe_decision(now_stands.decision)})")
        else:
            click.echo(f"undone: {last.candidate_id} is {last.before.status} again")
            self.session.skipped.discard(last.candidate_id)
        return True

    def decide(self, candidate: Candidate, decision: Decision) -> None:
        applied, result = self.queue.decide(candidate.id, decision, candidate.version)
        if not applied and result.status == "pending":
            click.echo(f"not applied: {candidate.id} changed meanwhile (a new text, or a decision"
                       f" made and undone): it is shown again as it now stands")
            return
        if not applied:
            click.echo(f"not applied: {candidate.id} was decided meanwhile"
                       f" ({describe_decision(result.decision)})")
            return
        self.session.done.append(Done(candidate.id, decision.status, candidate.decision,
                                      result.version))
        click.echo(f"{decision.status}: {candidate.id}")
