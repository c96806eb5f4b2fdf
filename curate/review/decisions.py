"""Deciding many candidates at once, for teams that review elsewhere: apply one decision to a
selection, export candidates to JSONL, and import decisions back.

Every decision goes through `ReviewQueue.decide`, a compare and set on the version the decision
was based on, so a decision made on stale information is reported, never applied over a newer
one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from curate.errors import CurateError
from curate.review.queue import STATUSES, Candidate, Decision, ReviewQueue, State, now
from curate.review.render import EditError, check_conversation, describe_decision

DECISIONS = ("approved", "rejected", "edited")


@dataclass
class Applied:
    """What a batch of decisions did: counts, and a line for each one not applied."""

    applied: int = 0
    unchanged: int = 0
    refused: list[str] = field(default_factory=list)


def decide_all(queue: ReviewQueue, targets: Iterable[Candidate | State], decision: Decision,
               change_decided: bool) -> Applied:
    """Apply one decision to each target: to pending ones, and to decided ones only with
    `change_decided`."""
    result = Applied()
    wanted = []
    for candidate in targets:
        if candidate.status != "pending" and not change_decided:
            result.refused.append(f"{candidate.id}: already"
                                  f" {describe_decision(candidate.decision)} (--force changes it)")
        else:
            wanted.append((candidate.id, decision, candidate.version))
    apply_all(queue, wanted, result)
    return result


def apply_all(queue: ReviewQueue, wanted: list[tuple[str, Decision, int]],
              result: Applied) -> None:
    for applied, now_stands in queue.decide_many(wanted):
        if applied:
            result.applied += 1
        else:
            result.refused.append(f"{now_stands.id}: changed meanwhile, now"
                                  f" {describe_decision(now_stands.decision)}; not applied")


def candidate_json(candidate: Candidate) -> dict:
    """One exported line: the candidate, its provenance, and its decision with the version it
    is at (an import applies a decision only while the candidate is still at that version)."""
    record, decision = candidate.record, candidate.decision
    return {"id": candidate.id, "status": decision.status, "version": candidate.version,
            "source": record.source, "origin": record.origin, "strategy": candidate.strategy,
            "reason": candidate.reason, "messages": record.messages, "meta": record.meta,
            "reviewer": decision.reviewer, "decided_at": decision.decided_at,
            "note": decision.note, "edited": decision.edited}


def export_lines(candidates: Iterable[Candidate]) -> Iterator[str]:
    for candidate in candidates:
        yield json.dumps(candidate_json(candidate), ensure_ascii=False, sort_keys=True) + "\n"


@dataclass
class Imported:
    line: int
    id: str
    decision: Decision
    version: int | None
    messages: object = None
    """The text the line was decided on (its exported "messages"), when it gives one."""


def read_decisions(path: Path, reviewer: str) -> list[Imported]:
    """Every decision in an exported (or hand-written) JSONL file; lines still "pending" are
    skipped. The whole file is checked before anything is applied."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CurateError(f"{path}: cannot read the decisions file ({error})") from None
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            item = _parse_line(line, reviewer, f"{path}:{number}")
            if item is not None:
                found.append(Imported(number, *item))
    return found


def _parse_line(line: str, reviewer: str, where: str) -> tuple | None:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise CurateError(f"{where}: not a JSON object ({error.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise CurateError(f"{where}: each line needs an \"id\" (a candidate id) and a \"status\"")
    status = data.get("status")
    if status not in STATUSES:
        raise CurateError(f"{where}: status {status!r} is not one of {', '.join(DECISIONS)}"
                          f" (or pending)")
    if status == "pending":
        return None
    version = data.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise CurateError(f"{where}: version must be the integer the export gave")
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        raise CurateError(f"{where}: note must be a string")
    edited = _edited_messages(data, where) if status == "edited" else None
    who = data.get("reviewer") if isinstance(data.get("reviewer"), str) else reviewer
    seen = data.get("messages") if status != "edited" or "edited" in data else None
    return data["id"], Decision(status, who, now(), note or None, edited), version, seen


def _edited_messages(data: dict, where: str) -> list[dict]:
    messages = data.get("edited") or data.get("messages")
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and set(m) == {"role", "content"}
            and isinstance(m["content"], str) for m in messages):
        raise CurateError(f"{where}: status \"edited\" needs \"edited\": the new messages, a list"
                          f" of {{\"role\", \"content\"}} objects")
    try:
        check_conversation(messages)
    except EditError as error:
        raise CurateError(f"{where}: the edited messages are not a conversation: {error}") from None
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def import_decisions(queue: ReviewQueue, items: list[Imported], path: Path) -> Applied:
    """Apply imported decisions: each at the version it names, or, without one, only to a
    candidate still pending. Unknown ids stop the import before anything is applied."""
    current = {}
    for item in items:
        try:
            current[item.id] = queue.find(item.id)
        except CurateError:
            raise CurateError(f"{path}:{item.line}: no candidate '{item.id}' in the queue;"
                              f" nothing was imported") from None
    result = Applied()
    wanted = []
    for item in items:
        candidate = current[item.id]
        if item.messages is not None and item.messages != candidate.record.messages:
            result.refused.append(f"{path}:{item.line}: {candidate.id}'s text is not the one in"
                                  f" the file (it changed since the export): export it again")
        elif _same(candidate.decision, item.decision, candidate):
            result.unchanged += 1
        elif item.version is None and candidate.status != "pending":
            result.refused.append(f"{path}:{item.line}: {candidate.id} is already"
                                  f" {describe_decision(candidate.decision)}; give the exported"
                                  f" \"version\" to change it")
        else:
            version = candidate.version if item.version is None else item.version
            wanted.append((candidate.id, _edit_or_approve(item.decision, candidate), version))
    apply_all(queue, wanted, result)
    return result


def _same(current: Decision, wanted: Decision, candidate: Candidate) -> bool:
    wanted = _edit_or_approve(wanted, candidate)
    return (current.status, current.note, current.edited) == (wanted.status, wanted.note,
                                                               wanted.edited)


def _edit_or_approve(decision: Decision, candidate: Candidate) -> Decision:
    """An "edit" that changes nothing is an approval."""
    if decision.status == "edited" and decision.edited == candidate.record.messages:
        return Decision("approved", decision.reviewer, decision.decided_at, decision.note)
    return decision
