"""The response cache: every answer the model gave, by request key, in one SQLite file in the run
folder. An answer is committed the moment it arrives, so a rerun, or a run restarted after a
crash, never sends a request whose answer it already has."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from curate.errors import CurateError


@dataclass(frozen=True)
class Answer:
    """What the model said to one request. `time` is when it first answered (ISO 8601, UTC),
    kept in the cache only: in a record it would make every fresh run's output differ. A
    refusal (`refused`) has the model's refusal as its content. `response_format` is the one
    the request was sent with (a server may refuse json_schema)."""

    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    time: str
    refused: bool = False
    response_format: str = "json_schema"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    content TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    model TEXT NOT NULL,
    time TEXT NOT NULL,
    refused INTEGER NOT NULL DEFAULT 0,
    response_format TEXT NOT NULL DEFAULT 'json_schema'
)
"""
_FIELDS = ("content", "finish_reason", "prompt_tokens", "completion_tokens", "model", "time",
           "refused", "response_format")
_ADDED_COLUMNS = {"refused": "INTEGER NOT NULL DEFAULT 0",
                  "response_format": "TEXT NOT NULL DEFAULT 'json_schema'"}
"""Columns newer than the first caches, added to a cache file that lacks them."""


class ResponseCache:
    """Answers by request key. Safe to use from the threads that send requests."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._add_missing_columns()
        except sqlite3.DatabaseError as error:
            raise CurateError(f"{path}: cannot open the response cache ({error}): delete the"
                              f" file to start a new one (its answers will be paid for again)")

    def _add_missing_columns(self) -> None:
        present = {row[1] for row in self._db.execute("PRAGMA table_info(answers)")}
        for name, declaration in _ADDED_COLUMNS.items():
            if name not in present:
                try:
                    self._db.execute(f"ALTER TABLE answers ADD COLUMN {name} {declaration}")
                except sqlite3.OperationalError:  # another process added it meanwhile
                    pass

    def get(self, key: str) -> Answer | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_FIELDS)} FROM answers WHERE key = ?",
                                   (key,)).fetchone()
        return Answer(*row[:-2], bool(row[-2]), row[-1]) if row else None

    def put(self, key: str, request: str, answer: Answer) -> None:
        """Store an answer; the first answer to a key stays (a rerun keeps its time)."""
        values = asdict(answer)
        with self._lock:
            self._db.execute(
                f"INSERT OR IGNORE INTO answers (key, request, {', '.join(_FIELDS)})"
                f" VALUES (?, ?, {', '.join('?' for _ in _FIELDS)})",
                (key, request, *(values[name] for name in _FIELDS)))

    def forget(self, key: str) -> None:
        """Drop the answer to a key, so that the next request asks again."""
        with self._lock:
            self._db.execute("DELETE FROM answers WHERE key = ?", (key,))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
