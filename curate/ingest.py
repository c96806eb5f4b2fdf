"""Turning a source's raw rows into records: column mapping, format detection and conversion.

Every row ends as a Record or as a Rejection naming its location. A source with no rows, data
that fits no format, a declared format that fits none of the first rows, too many unreadable
rows, or no row that became a record stops the run with one clear line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from curate.errors import CurateError, did_you_mean
from curate.formats import Format, RowError
from curate.recipe import PluginSpec
from curate.records import Record, Rejection, message_problem, plugin_code, plugin_label
from curate.registry import Registry
from curate.sources import BadRow, Row, SourceContext, file_errors

FORMAT_CHECK_ROWS = 10
"""When none of the first rows fits the format, the recipe is wrong, not the rows."""

READ_STEP = "read"
READ_RULES = 3  # 3: messages of plugin formats checked for shape and roles
"""Bumped when what the host accepts from a converted row changes: part of the read step's
fingerprint, so cached reads are redone."""


@dataclass
class SourceCounts:
    rows: int = 0
    records: int = 0
    rejected: int = 0
    unreadable: int = 0
    first_rejected: str = ""
    first_unreadable: str = ""
    first_unreadable_raw: str = ""
    """The first problems as "location: message (reason)", for errors about the whole source."""

    def add(self, outcome: Record | Rejection, unreadable: bool) -> None:
        self.rows += 1
        if isinstance(outcome, Record):
            self.records += 1
            return
        self.rejected += 1
        problem = f"{outcome.detail} ({outcome.reason})"
        self.first_rejected = self.first_rejected or problem
        if unreadable:
            self.unreadable += 1
            if not self.first_unreadable:
                self.first_unreadable, self.first_unreadable_raw = problem, outcome.raw or ""


class RowConverter:
    """Converts one source's rows with its declared format, or the first format that fits."""

    def __init__(self, spec: PluginSpec, context: SourceContext, formats: Registry):
        self.spec, self.context, self.formats = spec, context, formats
        declared = spec.source_options.format
        self.format: Format | None = None if declared == "auto" else formats.get(declared)()
        self.misfits = 0
        self.first_misfit: tuple[str, list[str]] = ("", [])
        self.settled = False
        """True once a row converted or failed for another reason than its shape."""
        self.unseen_columns = set(spec.source_options.columns.values())
        """Columns that `columns` maps and no row has had yet."""
        self.keys_seen: set[str] = set()

    def convert(self, item: Row) -> Record | Rejection:
        if self.unseen_columns:
            self._look_for_columns(item.data)
        row = map_columns(item.data, self.spec.source_options.columns)
        fmt = self.format or self._detect(row)
        if fmt is None:
            return self._misfit(item, row, "unknown-format", "fits no format (keys: "
                                + ", ".join(sorted(map(str, row))) + ")")
        try:
            messages = check_turns_have_text(check_unicode(check_shape(fmt.to_messages(row))))
        except RowError as error:
            if error.reason == "missing-field" and not fmt.matches(row):
                return self._misfit(item, row, error.reason, str(error))
            self.settled = True
            return self.reject(item.location, error.reason, str(error), preview(row))
        self.settled = True
        return Record(messages, source=self.spec.name, origin=self.spec.source_options.origin,
                      meta=self._meta(item))

    def _meta(self, item: Row) -> dict:
        """Where the row came from, and the data columns the source keeps (`meta_columns`)."""
        meta = {"from": item.location}
        for column in self.spec.source_options.meta_columns:
            if column in item.data:
                meta[column] = json_value(item.data[column])
        return meta

    def _look_for_columns(self, data: dict) -> None:
        self.unseen_columns.difference_update(data)
        if len(self.keys_seen) < 1000:  # enough for a hint; a row of a thousand keys is odd
            self.keys_seen.update(map(str, data))

    def finish(self, counts: SourceCounts) -> None:
        if self.unseen_columns and counts.rows > counts.unreadable:
            self._fail_missing_column()
        if not self.settled and self.misfits and self.misfits == counts.rows - counts.unreadable:
            self._fail_format()

    def _fail_missing_column(self) -> None:
        columns = self.spec.source_options.columns
        field, column = next((f, c) for f, c in sorted(columns.items())
                             if c in self.unseen_columns)
        raise CurateError(f"{self.context.recipe_file}: {self.spec.key_path}.columns.{field}:"
                          f" no row of source '{self.spec.name}' has a column"
                          f" '{printable(column)}' (its columns:"
                          f" {', '.join(sorted(map(printable, self.keys_seen))[:12])})"
                          f"{did_you_mean(column, self.keys_seen)}")

    def _detect(self, row: dict) -> Format | None:
        for name in self.formats.names():
            if self.formats.get(name).matches(row):
                self.format = self.formats.get(name)()
                return self.format
        return None

    def _misfit(self, item: Row, row: dict, reason: str, message: str) -> Rejection:
        self.misfits += 1
        if not self.first_misfit[0]:
            self.first_misfit = (item.location, sorted(map(str, row)))
        if not self.settled and self.misfits >= FORMAT_CHECK_ROWS:
            if self.unseen_columns:
                self._fail_missing_column()
            self._fail_format()
        return self.reject(item.location, reason, message, preview(row))

    def _fail_format(self) -> None:
        location, keys = self.first_misfit[0], [printable(k) for k in self.first_misfit[1]]
        where = f"{self.context.recipe_file}: {self.spec.key_path}"
        names = ", ".join(self.formats.names())
        if self.spec.source_options.format == "auto":
            raise CurateError(f"{where}: cannot tell the format of source '{self.spec.name}'"
                              f" ({location}: keys {', '.join(keys) or 'none'}): set format ="
                              f" one of {names}, and `columns` to map other column names")
        fitting = [n for n in self.formats.names()
                   if self.formats.get(n).matches(dict.fromkeys(keys))]
        hint = f"; the data looks like '{fitting[0]}'" if fitting else ""
        raise CurateError(f"{where}.format: format '{self.spec.source_options.format}' fits none of the"
                          f" first rows of source '{self.spec.name}' ({location}: keys"
                          f" {', '.join(keys)}){hint}: fix `format`, or map column names with"
                          f" `columns`")

    def reject(self, location: str, reason: str, message: str, raw: str) -> Rejection:
        return Rejection(None, reason, printable(f"{location}: {message}"), stage=READ_STEP,
                         raw=printable(raw), source=self.spec.name, location=location)


def read_source(spec: PluginSpec, context: SourceContext, formats: Registry,
                counts: SourceCounts) -> Iterator[Record | Rejection]:
    """Yield a Record or a Rejection for every row of one recipe source."""
    converter = RowConverter(spec, context, formats)
    with file_errors(context):
        for item in plugin_rows(spec, context):
            unreadable = isinstance(item, BadRow)
            if unreadable:
                outcome = converter.reject(item.location, item.reason, item.message, item.raw)
            else:
                outcome = converter.convert(item)
            counts.add(outcome, unreadable)
            yield outcome
    converter.finish(counts)
    check_totals(counts, spec, context)


def plugin_rows(spec: PluginSpec, context: SourceContext) -> Iterator[Row | BadRow]:
    """The source plugin's rows, each checked to be a Row or a BadRow; an error the plugin
    raises names the source and the plugin."""
    label = plugin_label("source", spec.name, spec.identity)
    with plugin_code(label):
        rows = spec.plugin().rows(spec.options, context)
        if not isinstance(rows, Iterable):
            raise CurateError(f"{label}: rows() returned {type(rows).__name__}: {YIELD_ROWS}")
        for item in rows:
            if not isinstance(item, BadRow) and not (isinstance(item, Row) and isinstance(
                    item.data, dict) and isinstance(item.location, str)):
                raise CurateError(f"{label}: rows() yielded {_described(item)}: {YIELD_ROWS}")
            yield item


YIELD_ROWS = ("yield Row(data, location) for each row, data a dict of column -> value and"
              " location a text such as \"data.db:17\", or BadRow(location, reason, message) for"
              " a row it cannot read")


def _described(item: object) -> str:
    if not isinstance(item, Row):
        return type(item).__name__
    if not isinstance(item.data, dict):
        return f"a Row whose data is {type(item.data).__name__}"
    return f"a Row whose location is {type(item.location).__name__}"


def json_value(value: object) -> object:
    """A data value as JSON keeps it (a parquet date or decimal becomes its text, a NaN or
    infinite number null: JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.loads(json.dumps(value, default=str))


def map_columns(row: dict, columns: dict[str, str]) -> dict:
    """Rename data columns to the format's field names (`columns` maps field -> column)."""
    if not columns:
        return row
    mapped = {k: v for k, v in row.items() if k not in columns.values()}
    mapped.update({field: row[column] for field, column in columns.items() if column in row})
    return mapped


def check_unicode(messages: list[dict]) -> list[dict]:
    """The messages, or RowError when a text holds a lone surrogate (JSON allows "\\ud800")."""
    for index, message in enumerate(messages):
        try:
            message["content"].encode("utf-8")
        except UnicodeEncodeError as error:
            raise RowError("invalid-unicode", f"message {index} contains"
                           f" {error.object[error.start]!r} at character {error.start}, which"
                           f" is not valid Unicode text") from None
    return messages


def check_shape(messages: object) -> list[dict]:
    """The messages, or RowError when a format (a plugin's too) made no list of known-role
    text turns."""
    problem = message_problem(messages)
    if problem:
        raise RowError(*problem)
    return messages


def check_turns_have_text(messages: list[dict]) -> list[dict]:
    """The messages, or RowError when a user turn, or an assistant turn before the last, is
    blank: an empty question teaches nothing, an empty answer mid-conversation teaches to stop
    at once. (Checked here, not in each format, so plugin formats get it too.) A blank final
    answer is a prompt-only record, which the generate stage's `answer` strategy fills; the
    chat-template step rejects those still unanswered."""
    for index, message in enumerate(messages[:-1]):
        if message["role"] in ("user", "assistant") and not message["content"].strip():
            raise RowError("empty-turn", f"message {index} ({message['role']}) is empty or"
                           f" only whitespace")
    return messages


def printable(text: str) -> str:
    """Text that can be written as UTF-8, with lone surrogates shown as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_totals(counts: SourceCounts, spec: PluginSpec, context: SourceContext) -> None:
    where = f"{context.recipe_file}: {spec.key_path}"
    if counts.rows == 0:
        raise CurateError(f"{where}: source '{spec.name}' contains no rows: check its path"
                          f" and data")
    fraction = counts.unreadable / counts.rows
    if fraction > spec.source_options.max_bad_fraction:
        raise CurateError(f"{where}: {counts.unreadable} of {counts.rows} rows of source"
                          f" '{spec.name}' are unreadable ({fraction:.0%}, more than"
                          f" max_bad_fraction = {spec.source_options.max_bad_fraction}), the first at"
                          f" {counts.first_unreadable}: {_unreadable_fix(counts, spec)}")
    if counts.records == 0:
        raise CurateError(f"{where}: none of the {counts.rows} rows of source '{spec.name}'"
                          f" became a record, the first rejected at {counts.first_rejected}:"
                          f" fix the data, or check `format` and `columns`")


def _unreadable_fix(counts: SourceCounts, spec: PluginSpec) -> str:
    if spec.use == "jsonl" and counts.first_unreadable_raw.lstrip().startswith("["):
        return "the file looks like one JSON array, not JSON lines: use = \"json\""
    if counts.unreadable == counts.rows:
        return "no row could be read: check the file's format and encoding"
    return "fix the data or raise max_bad_fraction"


def preview(row: dict, limit: int = 2000) -> str:
    text = repr(row)
    return text if len(text) <= limit else text[:limit] + "…"
