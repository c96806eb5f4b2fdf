"""How a candidate reads in a terminal, and the text a reviewer edits in `$EDITOR`.

The edit text is the conversation with one header line per turn (`=== user ===`); comment
lines before the first header are dropped, and the text of each turn is kept as written.
"""

from __future__ import annotations

import re
import textwrap

from curate.review.queue import Candidate, Decision

TURN_HEADER = re.compile(r"^=== (system|user|assistant) ===\s*$")
ESCAPED_HEADER = re.compile(r"^\\*=== (system|user|assistant) ===\s*$")
"""A header line, or one with backslashes before it: in a turn's text, written with one more."""
EDIT_HELP = """\
# Edit the conversation below, save and close the editor to apply the edit.
# Each turn starts with a line '=== role ===' (system, user or assistant); the conversation
# needs a user turn and must end with an assistant turn. Lines starting with '#' above the
# first turn are ignored. A line of a turn's text that reads like a turn's first line is
# written with a backslash before it ('\\=== user ==='). Close without saving to leave the
# example pending.
"""
SHOWN_GENERATION_KEYS = 8
SHOWN_VALUE_CHARS = 100


class EditError(ValueError):
    """An edited text that is not a conversation."""


def render_candidate(candidate: Candidate) -> str:
    """The candidate as a conversation with its provenance, for a terminal."""
    lines = [*provenance_lines(candidate), ""]
    for message in candidate.record.messages:
        lines.append(f"--- {message['role']} ---")
        lines.append(message["content"])
    return "\n".join(lines)


def provenance_lines(candidate: Candidate) -> list[str]:
    record = candidate.record
    came_from = record.meta.get("from")
    lines = [f"{candidate.id}  source {record.source}, {record.origin}"
             + (f", from {came_from}" if came_from else ""),
             f"queued: {candidate.reason}"]
    generation = record.meta.get("generation")
    if isinstance(generation, dict) and generation:
        shown = list(generation.items())[:SHOWN_GENERATION_KEYS]
        lines.append("generated: " + ", ".join(f"{key}={_short(value)}" for key, value in shown))
    findings = record.meta.get("consistency")
    for note in findings if isinstance(findings, list) else []:
        if isinstance(note, dict) and note.get("detail"):
            lines.append(f"flag: {note.get('rule', '')}: {_short(note['detail'])}")
    if candidate.status != "pending":
        lines.append(f"decision: {describe_decision(candidate.decision)}")
    return lines


def describe_decision(decision: Decision) -> str:
    if decision.status == "pending":
        return "pending"
    said = f"{decision.status} by {decision.reviewer or '?'} at {decision.decided_at or '?'}"
    return f"{said}: {decision.note}" if decision.note else said


def edit_text(messages: list[dict]) -> str:
    turns = [f"=== {m['role']} ===\n{_escaped(m['content'])}\n" for m in messages]
    return EDIT_HELP + "\n" + "\n".join(turns)


def _escaped(content: str) -> str:
    return "\n".join("\\" + line if ESCAPED_HEADER.match(line) else line
                     for line in content.split("\n"))


def _unescaped(line: str) -> str:
    return line[1:] if line.startswith("\\") and ESCAPED_HEADER.match(line) else line


def parse_edit(text: str, original: list[dict]) -> list[dict]:
    """The messages an edited text describes; EditError says what is wrong with it. Turns left
    as they were keep their original text exactly (the edit text trims blank lines around
    each turn)."""
    messages: list[dict] = []
    lines: list[str] = []
    # Only "\n" ends a line, as in edit_text: other line breaks are part of a turn's text.
    for number, line in enumerate(text.split("\n"), start=1):
        header = TURN_HEADER.match(line)
        if header:
            _close_turn(messages, lines)
            _check_new_turn(messages, header.group(1), number, original)
            messages.append({"role": header.group(1), "content": ""})
            lines = []
        elif messages:
            lines.append(_unescaped(line))
        elif line.strip() and not line.startswith("#"):
            raise EditError(f"line {number} comes before the first '=== role ===' line")
    _close_turn(messages, lines)
    check_conversation(messages)
    return [_untouched(message, original[index]) if index < len(original) else message
            for index, message in enumerate(messages)]


def _check_new_turn(messages: list[dict], role: str, number: int, original: list[dict]) -> None:
    """Two turns of one role in a row, where the original has none, are most likely a line of
    text read as a turn's first line: said, not silently made into two turns."""
    repeated = any(a["role"] == b["role"] for a, b in zip(original, original[1:]))
    if messages and messages[-1]["role"] == role and not repeated:
        raise EditError(f"line {number} starts a second {role} turn in a row; to keep the line"
                        f" '=== {role} ===' in the text, write '\\=== {role} ===' instead")


def _untouched(edited: dict, original: dict) -> dict:
    # The editor's file comes back with "\r\n" read as "\n" (click.edit).
    same = (edited["role"] == original["role"]
            and edited["content"] == original["content"].replace("\r\n", "\n").strip("\n"))
    return original if same else edited


def _close_turn(messages: list[dict], lines: list[str]) -> None:
    if messages:
        messages[-1]["content"] = "\n".join(lines).strip("\n")


def check_conversation(messages: list[dict]) -> None:
    if not messages:
        raise EditError("no '=== user ===' and '=== assistant ===' turns found")
    empty = [m["role"] for m in messages if not m["content"].strip()]
    if empty:
        raise EditError(f"the {empty[0]} turn is empty")
    if not any(m["role"] == "user" for m in messages):
        raise EditError("the conversation has no user turn")
    if any(m["role"] == "system" for m in messages[1:]):
        raise EditError("a system turn may only come first")
    if messages[-1]["role"] != "assistant":
        raise EditError("the conversation must end with an assistant turn")


def _short(value: object) -> str:
    text = " ".join(str(value).split())
    return textwrap.shorten(text, SHOWN_VALUE_CHARS, placeholder="...") if text else "''"
