"""Record formats: how a raw row (a dict) becomes chat messages.

Built-in formats live in `curate.plugins.formats`; a plugin adds one with the
`register_formats` hook. A format raises `RowError` for a row that does not fit, and the host
records that row as rejected with its location and the reason.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RowError(Exception):
    """A row that cannot become a record: `reason` is a short slug, the message says why."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


class Format:
    """Converts one raw row into a list of {role, content} messages."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    fields: ClassVar[tuple[str, ...]] = ()
    """Every row key the format reads; a recipe's `columns` table can map data columns onto them."""
    required: ClassVar[tuple[str, ...]] = ()
    """The keys a row must have; used to detect the format and to spot a declared format that
    does not match the data."""

    def to_messages(self, row: dict[str, Any]) -> list[dict]:
        raise NotImplementedError

    @classmethod
    def matches(cls, row: dict[str, Any]) -> bool:
        return all(key in row for key in cls.required)


def text_field(row: dict[str, Any], key: str, *, optional: bool = False) -> str:
    """Row[key] as a string, or RowError naming the key (None counts as missing)."""
    value = row.get(key)
    if value is None:
        if optional:
            return ""
        raise RowError("missing-field", f"missing field '{key}'")
    if not isinstance(value, str):
        raise RowError("bad-field", f"field '{key}' should be text, found {type(value).__name__}")
    return value
