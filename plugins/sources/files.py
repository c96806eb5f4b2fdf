"""Local file sources: jsonl, json, csv and parquet, with glob patterns for many files.

Unreadable rows (malformed JSON, invalid UTF-8, a row that is not an object) are yielded as
`BadRow` with their file and line, so the run goes on and reports each one. A file broken from
some row to its end (a CSV quote never closed, damaged gzip data) stops the run instead, naming
the file and line. jsonl, json and csv files compressed with gzip are read as they are.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from curate import hookimpl
from curate.errors import CurateError
from curate.options import OptionError, option
from curate.sources import BadRow, Row, Source, SourceContext, naming, resolve_paths


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
            shown = context.display(path)
            with naming(path), gzip_errors(shown):
                yield from self.read_file(path, shown, options)

    def read_file(self, path: Path, shown: str, options) -> Iterator[Row | BadRow]:
        raise NotImplementedError


class JsonlSource(FileSource):
    """One JSON object per line; blank lines are skipped."""

    name = "jsonl"
    version = "2"

    def estimate_rows(self, options, context: SourceContext) -> int | None:
        paths = resolve_paths(options.path, context)
        if any(is_gzip(path) for path in paths):
            return None  # counting would decompress the file twice
        return sum(count_lines(path) for path in paths)

    def read_file(self, path: Path, shown: str, options) -> Iterator[Row | BadRow]:
        with open_data(path, shown) as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1:
                    raw = raw.removeprefix(UTF8_BOM)
                if raw.strip():
                    yield parse_json_line(raw, f"{shown}:{number}")


UTF8_BOM = b"\xef\xbb\xbf"
"""Editors on Windows start UTF-8 files with it; it is not part of the data."""

GZIP_MAGIC = b"\x1f\x8b"
OTHER_COMPRESSIONS = {b"PK\x03\x04": "zip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
                      b"\x28\xb5\x2f\xfd": "zstd"}
"""What a file's first bytes say it was compressed with; read as text, it is all invalid UTF-8."""


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def open_data(path: Path, shown: str):
    """The file for reading bytes, decompressed when its first bytes say it is gzip (whatever
    its name); CurateError for other compressed files, which would read as invalid UTF-8."""
    with open(path, "rb") as handle:
        start = handle.read(8)
    if start.startswith(GZIP_MAGIC):
        return gzip.open(path, "rb")
    for magic, kind in OTHER_COMPRESSIONS.items():
        if start.startswith(magic):
            raise CurateError(f"{shown}: the file is {kind}-compressed: decompress it first"
                              f" (gzip files are read as they are)")
    return open(path, "rb")


def read_data(path: Path, shown: str) -> bytes:
    with open_data(path, shown) as handle:
        return handle.read()


@contextmanager
def gzip_errors(shown: str) -> Iterator[None]:
    """Damaged gzip data as one line naming the file, not a traceback."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise CurateError(f"{shown}: damaged gzip data ({error}): compress or download the file"
                          f" again") from None


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def parse_json_line(raw: bytes, location: str) -> Row | BadRow:
    # Without its line end, a line cut off inside a string is "Unterminated string", not an
    # "Invalid control character" (the newline) at its end.
    raw = raw.rstrip(b"\r\n")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return BadRow(location, "invalid-utf8", f"invalid UTF-8 at byte {error.start} of the"
                      f" line: re-save the file as UTF-8", raw.decode("utf-8", "replace"))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        # Some messages end in " at" because json puts the position after them.
        message = error.msg.removesuffix(" at")
        return BadRow(location, "malformed-json", f"{message} at column {error.colno}"
                      f"{extra_data_hint(error)}", text)
    except RecursionError:
        return BadRow(location, "malformed-json", "nested too deeply to parse", text[:2000])
    if not isinstance(data, dict):
        return BadRow(location, "not-an-object", f"expected a JSON object, found"
                      f" {type(data).__name__}", text)
    return Row(data, location)


def extra_data_hint(error: json.JSONDecodeError) -> str:
    """Why a line goes on after its object: lines ended by a lone carriage return, or objects
    written back to back."""
    if error.msg != "Extra data":
        return ""
    # A JSON string cannot hold a raw carriage return: one before the error separates lines.
    if "\r" in error.doc[:error.pos]:
        return (": the file's lines end in a lone carriage return (\\r), not a newline (\\n):"
                " convert its line ends")
    return ": a second JSON value starts there: put one object on each line"


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
    raw = read_data(path, shown)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise CurateError(f"{shown}: invalid UTF-8 at byte {error.start}: re-save the file as"
                          f" UTF-8") from None
    except json.JSONDecodeError as error:
        raise CurateError(f"{shown}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"
                          f" (for one object per line, use `use = \"jsonl\"`)") from None
    except RecursionError:
        raise CurateError(f"{shown}: JSON nested too deeply to parse") from None
    if field is not None:
        if not isinstance(data, dict) or field not in data:
            raise CurateError(f"{shown}: no top-level key '{field}' (the source's `field`)"
                              f"{list_keys_hint(data)}")
        data = data[field]
    if not isinstance(data, list):
        raise CurateError(f"{shown}: expected a JSON list of rows, found {type(data).__name__}:"
                          f" name the key that holds the rows with `field = \"...\"`"
                          f"{list_keys_hint(data)}")
    return data


def list_keys_hint(data: object) -> str:
    if not isinstance(data, dict):
        return f"; the file holds a {type(data).__name__}, not an object"
    keys = [key for key, value in data.items() if isinstance(value, list)]
    return f" (keys holding lists: {', '.join(keys)})" if keys else ""


@dataclass
class CsvOptions(FileOptions):
    delimiter: str = option(",", help="the field separator, e.g. \"\\t\" for TSV")


class CsvSource(FileSource):
    """A CSV file with a header row; each other row becomes one raw row, located by the line
    it starts on (a quoted field may span lines)."""

    name = "csv"
    Options = CsvOptions
    version = "2"

    def check(self, options, context: SourceContext) -> None:
        if len(options.delimiter) != 1:
            raise OptionError("delimiter", f"expected one character, found {options.delimiter!r}")
        super().check(options, context)

    def read_file(self, path: Path, shown: str, options) -> Iterator[Row | BadRow]:
        # Invalid bytes survive decoding as surrogates, so one bad row does not stop the file.
        text = read_data(path, shown).decode("utf-8-sig", "surrogateescape")
        # The default limit (128 KiB per field) is smaller than some long responses.
        csv.field_size_limit(MAX_CSV_FIELD)
        stream = io.StringIO(text, newline="")
        reader = csv.reader(stream, delimiter=options.delimiter)
        header = read_csv_header(reader, shown)
        if reader.line_num > 1 and runs_unclosed_to_the_end(text, 0, stream, options.delimiter):
            raise unclosed_quote_error(f"{shown}:1", reader.line_num - 1)
        for start, offset, fields in _csv_rows(reader, stream, shown):
            location = f"{shown}:{start}"
            if runs_unclosed_to_the_end(text, offset, stream, options.delimiter):
                yield unclosed_quote(location, reader.line_num - start, fields, options.delimiter)
            elif fields:
                yield check_csv_row(header, fields, location, options.delimiter)


def _csv_rows(reader, stream: io.StringIO, shown: str) -> Iterator[tuple[int, int, list[str]]]:
    """(the line it starts on, its offset in the text, its fields) of each row after the
    header."""
    while True:
        start, offset = reader.line_num + 1, stream.tell()
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise CurateError(f"{shown}:{reader.line_num}: unreadable CSV: {error}") from None
        yield start, offset, fields


MAX_CSV_FIELD = min(sys.maxsize, 2**31 - 1)
UNCLOSED = "unexpected end of data"
"""What the strict csv reader says about a quoted field still open at the end of the file."""


def runs_unclosed_to_the_end(text: str, offset: int, stream: io.StringIO,
                             delimiter: str) -> bool:
    """True when the row just read from `offset` ran to the end of the file because a quoted
    field in it is never closed. The lenient csv reader (the default, which reads `"a"b` as
    `ab`) says nothing of it, and puts every later row inside that field."""
    return stream.tell() == len(text) and _never_closed(text[offset:], delimiter)


def unclosed_quote(location: str, lines_after: int, fields: list[str],
                   delimiter: str) -> BadRow:
    """A rejection when the field never closed is on the last line; CurateError when it took
    in later lines, which can no longer be told apart."""
    if lines_after:
        raise unclosed_quote_error(location, lines_after)
    return BadRow(location, "unclosed-quote", "a quoted field opened here is never closed:"
                  " close the quote", _csv_text(fields, delimiter))


def unclosed_quote_error(location: str, lines_after: int) -> CurateError:
    taken = "the line" if lines_after == 1 else f"the {lines_after} lines"
    return CurateError(f"{location}: a quoted field opened here is never closed: it runs to the"
                       f" end of the file, taking in {taken} after it: close the quote (a"
                       f' quote inside a quoted field is written twice: "")')


def _never_closed(rest: str, delimiter: str) -> bool:
    try:
        for _ in csv.reader(io.StringIO(rest, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error as error:
        return str(error) == UNCLOSED
    return False


def read_csv_header(reader, shown: str) -> list[str]:
    try:
        header = next(reader, [])
    except csv.Error as error:
        raise CurateError(f"{shown}:1: unreadable CSV header: {error}") from None
    if any(_has_surrogates(name) for name in header):
        raise CurateError(f"{shown}:1: invalid UTF-8 in the header row: re-save the file as"
                          f" UTF-8")
    return header


def check_csv_row(header: list[str], fields: list[str], location: str,
                  delimiter: str) -> Row | BadRow:
    if len(fields) != len(header):
        return BadRow(location, "wrong-column-count", f"the row has {len(fields)} fields, the"
                      f" header has {len(header)}", _csv_text(fields, delimiter))
    if any(_has_surrogates(value) for value in fields):
        return BadRow(location, "invalid-utf8", "invalid UTF-8 in the row: re-save the file"
                      " as UTF-8", _csv_text(fields, delimiter))
    return Row(dict(zip(header, fields)), location)


def _csv_text(fields: list[str], delimiter: str) -> str:
    joined = delimiter.join(fields).encode("utf-8", "surrogateescape")
    return joined.decode("utf-8", "replace")


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


class ParquetSource(FileSource):
    """A parquet file; each table row becomes one raw row."""

    name = "parquet"

    def estimate_rows(self, options, context: SourceContext) -> int | None:
        import pyarrow.parquet as pq

        try:
            return sum(pq.ParquetFile(path).metadata.num_rows
                       for path in resolve_paths(options.path, context))
        except Exception:  # an unreadable file is reported, with its name, when it is read
            return None

    def read_file(self, path: Path, shown: str, options) -> Iterator[Row | BadRow]:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as error:  # pyarrow raises several types for a file that is not parquet
            raise CurateError(f"{shown}: not a readable parquet file ({error})") from None
        index = 0
        try:
            for batch in parquet.iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    yield Row(row, f"{shown} row {index}")
                    index += 1
        except (OSError, ValueError) as error:  # pyarrow's errors derive from these
            raise CurateError(f"{shown} row {index}: unreadable parquet data ({error})") from None
