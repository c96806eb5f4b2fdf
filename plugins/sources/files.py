"""Local file sources: jsonl, json, csv and parquet, with glob patterns for many files.

Unreadable rows (malformed JSON, invalid UTF-8, a row that is not an object) are yielded as
`BadRow` with their file and line, so the run goes on and reports each one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from curate import hookimpl
from curate.errors import CurateError
from curate.options import option
from curate.sources import BadRow, Row, Source, SourceContext, resolve_paths


@hookimpl
def register_sources(register):
    for source in (JsonlSource, JsonSource, CsvSource, ParquetSource):
        register(source)


@dataclass
class FileOptions:
    path: str | list[str] = option(help="a file, a glob pattern (data/*.jsonl) or a list of them,"
                                        " relative to the recipe")


class FileSource(Source):
    """Reads every file that `path` matches, in sorted order, one after the other."""

    Options = FileOptions

    def rows(self, options, context: SourceContext) -> Iterator[Row | BadRow]:
        for path in resolve_paths(options.path, context):
            yield from self.read_file(path, context.display(path), options)

    def read_file(self, path: Path, shown: str, options) -> Iterator[Row | BadRow]:
        raise NotImplementedError


class JsonlSource(FileSource):
    """One JSON object per line; blank lines are skipped."""

    name = "jsonl"

    def read_file(self, path: Path, shown: str, options) -> Iterator[Row | BadRow]:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if raw.strip():
                    yield parse_json_line(raw, f"{shown}:{number}")


def parse_json_line(raw: bytes, location: str) -> Row | BadRow:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return BadRow(location, "invalid-utf8", f"invalid UTF-8 at byte {error.start} of the"
                      f" line: re-save the file as UTF-8", raw.decode("utf-8", "replace"))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return BadRow(location, "malformed-json", f"{error.msg} at column {error.colno}", text)
    if not isinstance(data, dict):
        return BadRow(location, "not-an-object", f"expected a JSON object, found"
                      f" {type(data).__name__}", text)
    return Row(data, location)


@dataclass
class JsonOptions(FileOptions):
    field: str | None = option(None, help="the key holding the list of rows, when the file is"
                                          " an object rather than a list")


class JsonSource(FileSource):
    """A JSON file holding a list of objects (or an object with the list under `field`)."""

    name = "json"
    Options = JsonOptions

    def read_file(self, path: Path, shown: str, options) -> Iterator[Row | BadRow]:
        items = load_json_rows(path, shown, options.field)
        for index, item in enumerate(items):
            location = f"{shown}[{index}]"
            if isinstance(item, dict):
                yield Row(item, location)
            else:
                yield BadRow(location, "not-an-object",
                             f"expected a JSON object, found {type(item).__name__}", repr(item))


def load_json_rows(path: Path, shown: str, field: str | None) -> list:
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CurateError(f"{shown}: invalid UTF-8 at byte {error.start}: re-save the file as"
                          f" UTF-8") from None
    except json.JSONDecodeError as error:
        raise CurateError(f"{shown}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"
                          f" (for one object per line, use `use = \"jsonl\"`)") from None
    if field is not None:
        if not isinstance(data, dict) or field not in data:
            raise CurateError(f"{shown}: no top-level key '{field}' (the source's `field`)")
        data = data[field]
    if not isinstance(data, list):
        raise CurateError(f"{shown}: expected a JSON list of rows, found {type(data).__name__}:"
                          f" name the key that holds the rows with `field = \"...\"`")
    return data


@dataclass
class CsvOptions(FileOptions):
    delimiter: str = option(",", help="the field separator, e.g. \"\\t\" for TSV")


class CsvSource(FileSource):
    """A CSV file with a header row; each other row becomes one raw row."""

    name = "csv"
    Options = CsvOptions

    def read_file(self, path: Path, shown: str, options) -> Iterator[Row | BadRow]:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=options.delimiter)
        try:
            for row in reader:
                location = f"{shown}:{reader.line_num}"
                yield check_csv_row(row, location, reader.fieldnames or [])
        except csv.Error as error:
            raise CurateError(f"{shown}:{reader.line_num}: unreadable CSV: {error}") from None


def check_csv_row(row: dict, location: str, header: list[str]) -> Row | BadRow:
    raw = ",".join(str(v) for v in row.values())
    if None in row or any(value is None for value in row.values()):
        return BadRow(location, "wrong-column-count",
                      f"the row has a different number of fields than the header"
                      f" ({len(header)})", raw)
    if any(_has_surrogates(value) for value in row.values()):
        return BadRow(location, "invalid-utf8", "invalid UTF-8 in the row: re-save the file"
                      " as UTF-8", raw.encode("utf-8", "surrogateescape").decode("utf-8",
                                                                                "replace"))
    return Row(row, location)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


class ParquetSource(FileSource):
    """A parquet file; each table row becomes one raw row."""

    name = "parquet"

    def read_file(self, path: Path, shown: str, options) -> Iterator[Row | BadRow]:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as error:  # pyarrow raises several types for a file that is not parquet
            raise CurateError(f"{shown}: not a readable parquet file ({error})") from None
        index = 0
        for batch in parquet.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                yield Row(row, f"{shown} row {index}")
                index += 1
