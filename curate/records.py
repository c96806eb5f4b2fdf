"""The canonical record: one training example as chat messages, and what happens to it.

A `Record` is kept by a stage by passing it on; a `Rejection` says which stage dropped it and why;
a `Pending` record waits for a person's decision in the review queue.
Every input row ends as exactly one of: a record in the final dataset, a rejection, or pending.
A stage that makes new records (the `generate` stage) yields each wrapped in `Added`.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from curate.errors import CurateError

ROLES = ("system", "user", "assistant")
RECORD_ID_SCHEME = 2
"""Bumped whenever record_id changes, so cached steps holding old ids are recomputed."""
ORIGINS = ("human", "generated", "rehearsal")
GENERATED = "generated"
"""The origin of records a model wrote: they reach the dataset only once a person approved them."""
REVIEW = "review"
"""The meta key where a review stage notes a person's decision on a record it passes on:
{"status": "approved" or "edited", "reviewer": ..., "at": ...}."""
APPROVED = ("approved", "edited")
NEEDS_REVIEW = "needs_review"
"""The meta key where a stage asks for a person's look at a record it keeps: a list of short
texts saying why. A `review` stage later in the recipe queues every such record."""


def message_problem(messages: object) -> tuple[str, str] | None:
    """(reason, detail) when `messages` is not a list of {"role", "content"} turns with known
    roles and text; None when it is. The host checks what formats and stages hand it."""
    if not isinstance(messages, list) or not messages:
        return "empty-conversation", "the conversation has no messages"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            keys = sorted(map(str, message)) if isinstance(message, dict) else []
            return "bad-field", (f"message {index} is not {{\"role\": ..., \"content\": ...}}"
                                 f" (found {type(message).__name__}"
                                 f"{' with keys ' + ', '.join(keys) if keys else ''})")
        if message["role"] not in ROLES:
            return "unsupported-role", (f"message {index} has role {message['role']!r};"
                                        f" expected one of {', '.join(ROLES)}")
        if not isinstance(message["content"], str):
            return "bad-field", (f"message {index} content should be text, found"
                                 f" {type(message['content']).__name__}")
    return None


def normalise_text(text: str) -> str:
    """NFKC, trimmed, with runs of whitespace collapsed: the form ids are computed from."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def record_id(messages: list[dict]) -> str:
    """A stable 16-hex-digit id from the normalised roles and contents of the messages."""
    # Unit and record separators cannot survive normalisation inside a text (they count as
    # whitespace), so this encoding is unambiguous.
    canonical = "\x1e".join(f"{m['role']}\x1f{normalise_text(m['content'])}" for m in messages)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass
class Record:
    """One training example. `meta` is free-form; readers put the row's location in meta["from"]."""

    messages: list[dict]
    source: str
    origin: str = "human"
    meta: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = record_id(self.messages)

    def revised(self, messages: list[dict]) -> "Record":
        """A copy with new messages, and so a new id. Stages that rewrite records use it:
        `meta` keeps where the record came from and names the id it revises, which
        `curate why` follows."""
        return Record(messages, self.source, self.origin, {**self.meta, "revised_from": self.id})

    @property
    def prompt(self) -> str:
        """The user turns joined by blank lines (what the model is asked)."""
        return "\n\n".join(m["content"] for m in self.messages if m["role"] == "user")

    @property
    def response(self) -> str:
        """The assistant turns joined by blank lines (what the model learns to say)."""
        return "\n\n".join(m["content"] for m in self.messages if m["role"] == "assistant")

    @property
    def system(self) -> str:
        return "\n\n".join(m["content"] for m in self.messages if m["role"] == "system")

    def to_json(self) -> dict:
        return {"id": self.id, "messages": self.messages, "source": self.source,
                "origin": self.origin, "meta": self.meta}


@dataclass
class Rejection:
    """A record (or an unreadable raw row) that a stage dropped, with a reason a person can act on.

    `reason` is a short stable slug (e.g. "too-short", "malformed-json"); `detail` says what was
    measured or where ("response has 4 characters, minimum is 10"; "data.jsonl:17: ...").
    """

    record: Record | None
    reason: str
    detail: str
    stage: str = ""
    raw: str = ""
    id: str = ""
    source: str = ""
    location: str = ""
    """Where the input row was read, e.g. data/reviews.jsonl:17."""
    evidence: dict = field(default_factory=dict)
    """The detail as data, for reports: e.g. {"duplicate_of": id, "similarity": 0.93}."""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = self.record.id if self.record else _raw_id(self.raw, self.detail)
        if self.record:
            self.source = self.source or self.record.source
            self.location = self.location or self.record.meta.get("from", "")


def _raw_id(raw: str, detail: str) -> str:
    return hashlib.sha256(f"{detail}\0{raw}".encode("utf-8", "replace")).hexdigest()[:16]


@dataclass
class Pending:
    """A record held back until a person reviews it: neither kept nor rejected yet. A run with
    pending records stops before writing the dataset; `detail` says where it waits."""

    record: Record
    detail: str = ""

    @property
    def id(self) -> str:
        return self.record.id


@dataclass
class Added:
    """A record a stage adds rather than receives (a generated one), kept or rejected: counted
    as `added` in the step's summary, so that in + added == kept + rejected + pending."""

    outcome: Record | Rejection | Pending


def plugin_label(kind: str, name: str, identity: list) -> str:
    """How messages name a plugin's part of a recipe: "stage 'judge' (plugin acme)"."""
    return f"{kind} '{name}'" + (f" (plugin {identity[0]})" if identity else "")


@contextmanager
def plugin_code(label: str) -> Iterator[None]:
    """Runs a plugin's code: an unexpected error keeps its traceback, with a last line naming
    the plugin (`label`); a CurateError already says what to fix and passes unchanged."""
    try:
        yield
    except CurateError:
        raise
    except Exception as error:
        if hasattr(error, "add_note"):  # Python 3.11+
            error.add_note(f"raised in {label}")
        raise
