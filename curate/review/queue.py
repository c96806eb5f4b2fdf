"""The review queue: one SQLite row per candidate in `<run dir>/review.sqlite`.

The database runs in WAL mode with a busy timeout, so reviewers read while another writes. Every
decision is one `BEGIN IMMEDIATE` transaction that updates the row only if its `version` is still
the one the reviewer saw (compare and set) and appends to `history`; two reviewers deciding the
same candidate at once get one decision applied and one conflict, never two decisions or none.

A decision holds for the text it was made on: each row keeps the digest of its messages, and
when a run queues the same id with a different text (a fresh answer, a changed prompt), the
stored record is replaced and is pending again, its old decision kept in the history.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from curate.errors import CurateError
from curate.records import Record
from curate.review.database import QueueDatabase, messages_digest

QUEUE_FILE = "review.sqlite"
STATUSES = ("pending", "approved", "rejected", "edited")
REASON = "reason || CASE status WHEN 'pending' THEN COALESCE('; ' || changed, '') ELSE '' END"
"""Why a candidate was queued, and while it waits, whether its text changed since a decision."""
COLUMNS = (f"id, step, active, position, record, source, strategy, {REASON}, status, version,"
           f" reviewer, decided_at, note, edited")
RUN_REVIEWER = "curate run"
"""The history's reviewer of a decision a run undid because the text changed."""


@dataclass(frozen=True)
class Decision:
    """What a reviewer decided about one candidate; `edited` holds the new messages."""

    status: str
    reviewer: str | None = None
    decided_at: str | None = None
    note: str | None = None
    edited: list[dict] | None = None


STATE_COLUMNS = f"id, version, {REASON}, status, reviewer, decided_at, note, edited"
CHUNK = 500
"""Rows per statement or transaction in bulk work (SQLite limits the parameters of one query)."""


@dataclass(frozen=True)
class State:
    """A candidate without its record: enough to decide it, or to act on its decision."""

    id: str
    version: int
    reason: str
    decision: Decision

    @property
    def status(self) -> str:
        return self.decision.status


@dataclass
class Candidate:
    """A queued record with its decision; `version` counts the decisions made on it."""

    id: str
    step: str
    active: bool
    position: int
    record: Record
    reason: str
    """Why it was queued: "origin generated", or the flags a stage set."""
    decision: Decision
    version: int

    @property
    def status(self) -> str:
        return self.decision.status

    @property
    def strategy(self) -> str | None:
        generation = self.record.meta.get("generation")
        return generation.get("strategy") if isinstance(generation, dict) else None


@dataclass(frozen=True)
class Snapshot:
    """The decisions made, read at one moment, with the digest of the text each was made on.
    A review step's output is computed from one snapshot, the one its fingerprint holds."""

    digest: str
    decided: dict[str, tuple[str, Decision]]
    """id -> (messages_digest of the decided text, the decision)."""

    def decision(self, record: Record) -> Decision | None:
        """The decision on exactly this record's text; None when none was made on it."""
        found = self.decided.get(record.id)
        if found is None or found[0] != messages_digest(record.messages):
            return None
        return found[1]


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def queue_path(run_dir: Path) -> Path:
    return run_dir / QUEUE_FILE


def decisions_snapshot(run_dir: Path) -> Snapshot:
    """The decisions of a run folder; a folder without a queue has none made."""
    path = queue_path(run_dir)
    if not path.exists():
        return Snapshot(hashlib.sha256().hexdigest(), {})
    with ReviewQueue(path) as queue:
        return queue.snapshot()


class ReviewQueue(QueueDatabase):
    """The candidates of one run folder, and the decisions on them."""

    # The review stage's side.

    def deactivate(self, step: str) -> None:
        """Mark the step's candidates as not in the current run, before it queues its input."""
        with self.transaction() as db:
            db.execute("UPDATE candidates SET active = 0 WHERE step = ?", (step,))

    def enqueue(self, step: str, entries: list[tuple[Record, str]]) -> dict[str, State]:
        """Queue (record, reason) pairs; returns each one's reason and decision as they now
        stand. A record queued before (by id) keeps its decision while its text is the one
        decided; another text replaces the stored one and is pending again."""
        ids = [record.id for record, _ in entries]
        with self.transaction() as db:
            start = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM candidates").fetchone()[0]
            stored = {row[0]: row[1:] for row in _rows_by_id(
                db, "id, content, status, reviewer, decided_at", ids)}
            batch = _Batch(db, step)
            for offset, (record, reason) in enumerate(entries):
                batch.add(record, reason, start + offset, stored)
            batch.flush()
            rows = _rows_by_id(db, STATE_COLUMNS, ids)
        return {row[0]: _state(row) for row in rows}

    def snapshot(self) -> Snapshot:
        """Every decision made, read in one statement, and their digest: it changes whenever a
        decision does, and returns to the same value when a decision is undone."""
        digest, decided = hashlib.sha256(), {}
        with self.errors():
            rows = self.db.execute("SELECT id, content, status, reviewer, decided_at, note, edited"
                                   " FROM candidates WHERE status != 'pending' ORDER BY id")
            for row in rows:
                digest.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
                decided[row[0]] = (row[1], _decision(row[2:]))
        return Snapshot(digest.hexdigest(), decided)

    def decisions_digest(self) -> str:
        return self.snapshot().digest

    # The reviewers' side.

    def find(self, prefix: str) -> Candidate:
        """The candidate whose id starts with `prefix`."""
        with self.errors():
            rows = self.db.execute(f"SELECT {COLUMNS} FROM candidates WHERE id >= ? AND id < ?"
                                   f" ORDER BY id LIMIT 6", (prefix, prefix + "\uffff")).fetchall()
        if not rows:
            raise CurateError(f"no candidate whose id starts with '{prefix}' in {self.path}")
        if len(rows) > 1:
            shown = ", ".join(row[0] for row in rows[:5])
            raise CurateError(f"id '{prefix}' matches several candidates ({shown}...): give more"
                              f" characters")
        return _candidate(rows[0])

    def select(self, status: str | None = "pending", source: str | None = None,
               strategy: str | None = None, everything: bool = False) -> list[Candidate]:
        """Candidates in queue order; only those in the current run unless `everything`."""
        rows = self._matching(COLUMNS, status, source, strategy, everything)
        return [_candidate(row) for row in rows]

    def states(self, status: str | None = "pending", source: str | None = None,
               strategy: str | None = None) -> list[State]:
        """`select` without the records, for deciding many candidates at once."""
        return [_state(row) for row in self._matching(STATE_COLUMNS, status, source, strategy)]

    def _matching(self, columns: str, status: str | None, source: str | None,
                  strategy: str | None, everything: bool = False) -> list[tuple]:
        clauses, values = [], []
        for column, value in (("status", status), ("source", source), ("strategy", strategy)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        if not everything:
            clauses.append("active = 1")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.errors():
            return self.db.execute(f"SELECT {columns} FROM candidates{where} ORDER BY position",
                                   values).fetchall()

    def next_pending(self, skipped: Iterable[str] = ()) -> Candidate | None:
        skipped = list(skipped)
        marks = ", ".join("?" * len(skipped))
        with self.errors():
            row = self.db.execute(f"SELECT {COLUMNS} FROM candidates WHERE active = 1 AND"
                                  f" status = 'pending' AND id NOT IN ({marks}) ORDER BY position"
                                  f" LIMIT 1", skipped).fetchone()
        return _candidate(row) if row else None

    def values(self, column: str) -> list[str]:
        """The distinct sources or strategies of every candidate, for checking a filter."""
        assert column in ("source", "strategy")
        with self.errors():
            rows = self.db.execute(f"SELECT DISTINCT {column} FROM candidates"
                                   f" WHERE {column} IS NOT NULL ORDER BY {column}").fetchall()
        return [row[0] for row in rows]

    def counts(self) -> dict[str, int]:
        """Candidates in the current run, by status."""
        with self.errors():
            rows = self.db.execute("SELECT status, COUNT(*) FROM candidates WHERE active = 1"
                                   " GROUP BY status").fetchall()
        return {status: 0 for status in STATUSES} | dict(rows)

    def decide(self, candidate_id: str, decision: Decision,
               seen_version: int) -> tuple[bool, State]:
        """Apply `decision` if the candidate is still at `seen_version`. Returns whether it was
        applied, and the candidate as it now stands (on a conflict: with the other decision)."""
        return self.decide_many([(candidate_id, decision, seen_version)])[0]

    def undo(self, candidate_id: str, before: Decision, seen_version: int,
             reviewer: str) -> tuple[bool, State]:
        """Put `before` back (so the decisions digest returns to what it was), logging in the
        history who undid the decision, and when."""
        logged = Decision(before.status, reviewer, now(), f"undo: back to {before.status}",
                          before.edited)
        with self.transaction() as db:
            applied = _compare_and_set(db, candidate_id, before, seen_version, logged)
            [row] = _rows_by_id(db, STATE_COLUMNS, [candidate_id])
        return applied, _state(row)

    def decide_many(self, items: list[tuple[str, Decision, int]]) -> list[tuple[bool, State]]:
        """`decide` for many (id, decision, seen version), CHUNK to a transaction."""
        results = []
        for start in range(0, len(items), CHUNK):
            with self.transaction() as db:
                chunk = items[start:start + CHUNK]
                applied = [_compare_and_set(db, *item) for item in chunk]
                found = {row[0]: _state(row)
                         for row in _rows_by_id(db, STATE_COLUMNS, [item[0] for item in chunk])}
            for (candidate_id, _, _), was_applied in zip(chunk, applied):
                if candidate_id not in found:
                    raise CurateError(f"no candidate '{candidate_id}' in {self.path}")
                results.append((was_applied, found[candidate_id]))
        return results

    def history(self, candidate_id: str | None = None) -> list[tuple]:
        query = "SELECT id, version, status, reviewer, decided_at, note FROM history"
        values: tuple = ()
        if candidate_id:
            query, values = query + " WHERE id = ?", (candidate_id,)
        with self.errors():
            return self.db.execute(query + " ORDER BY seq", values).fetchall()



def _compare_and_set(db: sqlite3.Connection, candidate_id: str, decision: Decision,
                     seen_version: int, logged: Decision | None = None) -> bool:
    """Apply `decision` at `seen_version`; the history gets `logged` when given (an undo)."""
    applied = db.execute(
        "UPDATE candidates SET status = ?, reviewer = ?, decided_at = ?, note = ?, edited = ?,"
        " version = version + 1 WHERE id = ? AND version = ?",
        (*_decision_columns(decision), candidate_id, seen_version)).rowcount == 1
    if applied:
        db.execute("INSERT INTO history (id, version, status, reviewer, decided_at, note, edited)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (candidate_id, seen_version + 1, *_decision_columns(logged or decision)))
    return applied


class _Batch:
    """The writes of one enqueue: new rows and rows queued again go in bulk; a new text under
    a known id is written at once, after the rows before it."""

    def __init__(self, db: sqlite3.Connection, step: str):
        self.db, self.step = db, step
        self.new: list[tuple] = []
        self.again: list[tuple] = []

    def add(self, record: Record, reason: str, position: int, stored: dict) -> None:
        """Queue one record; `stored` maps ids to (content, status, reviewer, decided_at) as
        they stand, and is kept so."""
        content = messages_digest(record.messages)
        known = stored.get(record.id)
        if known is not None and known[0] == content:
            self.again.append((self.step, reason, record.id))
            return
        if known is None:
            self.new.append((*_new_row(record, self.step, position, reason), content))
        else:
            self.flush()
            _replace_text(self.db, record, self.step, reason, content, known)
        stored[record.id] = (content, "pending", None, None)

    def flush(self) -> None:
        self.db.executemany("INSERT INTO candidates (id, step, active, position, record, source,"
                            " strategy, reason, content) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?)",
                            self.new)
        self.db.executemany("UPDATE candidates SET active = 1, step = ?, reason = ? WHERE id = ?",
                            self.again)
        self.new, self.again = [], []


def _replace_text(db: sqlite3.Connection, record: Record, step: str, reason: str, content: str,
                  known: tuple) -> None:
    """The same id with another text: the new text is stored and waits for a decision, so a
    reviewer holding the old one meets a new version; a decision made on the old text goes to
    the history, and `changed` says why the candidate waits again."""
    _, status, reviewer, decided_at = known
    changed = None if status == "pending" else (f"the text changed since it was {status} by"
                                                f" {reviewer or '?'} at {decided_at or '?'}")
    _, _, _, stored, source, strategy, _ = _new_row(record, step, 0, reason)
    db.execute("UPDATE candidates SET record = ?, source = ?, strategy = ?, content = ?,"
               " active = 1, step = ?, reason = ?, status = 'pending', reviewer = NULL,"
               " decided_at = NULL, note = NULL, edited = NULL, changed = COALESCE(?, changed),"
               " version = version + 1 WHERE id = ?",
               (stored, source, strategy, content, step, reason, changed, record.id))
    if changed is not None:
        db.execute("INSERT INTO history (id, version, status, reviewer, decided_at, note)"
                   " SELECT id, version, status, ?, ?, ? FROM candidates WHERE id = ?",
                   (RUN_REVIEWER, now(), f"{changed}: pending again", record.id))


def _rows_by_id(db: sqlite3.Connection, columns: str, ids: list[str]) -> list[tuple]:
    found = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        marks = ", ".join("?" * len(chunk))
        found += db.execute(f"SELECT {columns} FROM candidates WHERE id IN ({marks})",
                            chunk).fetchall()
    return found


def _new_row(record: Record, step: str, position: int, reason: str) -> tuple:
    generation = record.meta.get("generation")
    strategy = generation.get("strategy") if isinstance(generation, dict) else None
    stored = json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True)
    return (record.id, step, position, stored, record.source,
            None if strategy is None else str(strategy), reason)


def _decision_columns(decision: Decision) -> tuple:
    edited = None if decision.edited is None else json.dumps(decision.edited, ensure_ascii=False)
    return decision.status, decision.reviewer, decision.decided_at, decision.note, edited


def _candidate(row: tuple) -> Candidate:
    (candidate_id, step, active, position, stored, _source, _strategy, reason, status, version,
     reviewer, decided_at, note, edited) = row
    data = json.loads(stored)
    record = Record(data["messages"], data["source"], data["origin"], data["meta"], data["id"])
    decision = _decision((status, reviewer, decided_at, note, edited))
    return Candidate(candidate_id, step, bool(active), position, record, reason, decision, version)


def _state(row: tuple) -> State:
    return State(row[0], row[1], row[2], _decision(row[3:]))


def _decision(columns: tuple) -> Decision:
    status, reviewer, decided_at, note, edited = columns
    return Decision(status, reviewer, decided_at, note,
                    None if edited is None else json.loads(edited))
