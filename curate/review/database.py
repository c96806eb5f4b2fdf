"""The review database file: opening it in WAL mode with a busy timeout, creating its schema,
write transactions, and turning sqlite errors into one clear line."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from curate.errors import CurateError

DEFAULT_WAIT = 10.0
SCHEMA_VERSION = 2
SCHEMA = (
    """CREATE TABLE candidates (
        id TEXT PRIMARY KEY,          -- the record id
        step TEXT NOT NULL,           -- the step that queued it last
        active INTEGER NOT NULL,      -- 1 while the step's latest run has it in its input
        position INTEGER NOT NULL,    -- queue order
        record TEXT NOT NULL,         -- the record as JSON (id, messages, source, origin, meta)
        content TEXT NOT NULL,        -- messages_digest of its messages: what a decision is on
        source TEXT NOT NULL,
        strategy TEXT,                -- meta.generation.strategy, for filtering
        reason TEXT NOT NULL,         -- why it was queued
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'approved', 'rejected', 'edited')),
        version INTEGER NOT NULL DEFAULT 0,   -- bumped by every decision and every new text:
                                              -- the compare-and-set
        reviewer TEXT, decided_at TEXT, note TEXT,
        edited TEXT,                  -- the edited messages as JSON
        changed TEXT                  -- set when a new text undid a decision; shown while pending
    )""",
    "CREATE INDEX candidates_queue ON candidates (active, status, position)",
    "CREATE INDEX candidates_position ON candidates (position)",
    """CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL, version INTEGER NOT NULL, status TEXT NOT NULL,
        reviewer TEXT, decided_at TEXT, note TEXT, edited TEXT
    )""",
)
UPGRADE_FROM_1 = (
    "ALTER TABLE candidates ADD COLUMN content TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE candidates ADD COLUMN changed TEXT",
)


def messages_digest(messages: list[dict]) -> str:
    """The digest of the exact text a decision is made on: every message, the system prompt
    included, as it would be trained (not normalised, unlike record ids)."""
    text = json.dumps(messages, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class QueueDatabase:
    """The connection to a review database. Use as a context manager; every sqlite error
    becomes a one-line CurateError naming the file (locked, damaged, unreadable)."""

    def __init__(self, path: Path, wait: float = DEFAULT_WAIT, create: bool = True):
        if not create and not path.exists():
            raise CurateError(f"{path.parent}: no review queue yet ({path.name} is missing):"
                              f" run the recipe first; a `review` stage fills the queue")
        self.path, self.wait = path, wait
        with self.errors():
            self.db = sqlite3.connect(path, timeout=wait, isolation_level=None)
            self.db.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            self._prepare()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.db.close()

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as error:
            raise CurateError(self._explain(error)) from None
        except sqlite3.DatabaseError as error:
            raise CurateError(f"{self.path}: the review database is damaged ({error}): nothing"
                              f" was changed; restore it from a backup, or move it aside and"
                              f" run the recipe again to queue every candidate afresh") from None

    def _explain(self, error: sqlite3.OperationalError) -> str:
        text = str(error)
        if "locked" in text or "busy" in text:
            return (f"{self.path}: the review database is locked by another process (waited"
                    f" {self.wait:g}s): nothing was changed; try again when it is done")
        return f"{self.path}: cannot use the review database ({text}): nothing was changed"

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading so that what is read stays true."""
        with self.errors():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _prepare(self) -> None:
        found = self.db.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise CurateError(f"{self.path}: written by a newer curate (review schema {found},"
                              f" this curate reads {SCHEMA_VERSION}): upgrade curate")
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.execute("PRAGMA journal_mode = WAL")
        if found < SCHEMA_VERSION:
            with self.transaction() as db:
                found = db.execute("PRAGMA user_version").fetchone()[0]
                if found >= SCHEMA_VERSION:
                    return  # another process created it meanwhile
                if found == 0:
                    for statement in SCHEMA:
                        db.execute(statement)
                else:
                    _upgrade_from_1(db)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _upgrade_from_1(db: sqlite3.Connection) -> None:
    """Schema 1 kept each candidate's text as first queued, never replaced: the text its
    decision was made on, whose digest the new column holds."""
    for statement in UPGRADE_FROM_1:
        db.execute(statement)
    rows = db.execute("SELECT id, record FROM candidates").fetchall()
    db.executemany("UPDATE candidates SET content = ? WHERE id = ?",
                   [(messages_digest(json.loads(stored)["messages"]), candidate_id)
                    for candidate_id, stored in rows])
