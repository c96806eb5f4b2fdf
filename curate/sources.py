"""Data sources: plugins that read raw rows, which the host turns into records.

A source yields `Row` (a dict plus where it came from, e.g. "data/a.jsonl:17") or `BadRow` for a
row it could not read (malformed JSON, invalid UTF-8). The host applies the recipe's `columns`
mapping and `format`, and records every row that fails as a rejection with its location.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from curate.errors import RecipeError
from curate.options import NoOptions, option


@dataclass
class Row:
    data: dict[str, Any]
    location: str


@dataclass
class BadRow:
    location: str
    reason: str
    message: str
    raw: str = ""


@dataclass
class SourceHostOptions:
    """The keys of every [[sources]] table that the host reads; the rest go to the plugin."""

    name: str = option(help="the source's name, stored in every record's `source`")
    use: str = option(help="the source plugin, e.g. jsonl, csv, parquet, datasets")
    format: str = option("auto", help="alpaca, sharegpt, messages, prompt-completion, or auto")
    columns: dict[str, str] = option({}, help="format field -> column name in the data")
    origin: Literal["human", "generated", "rehearsal"] = option("human", help="who wrote it")
    max_bad_fraction: float = option(0.1, min=0.0, max=1.0,
                                     help="fail the run when more rows than this are unreadable")
    meta_columns: list[str] = option([], help="data columns kept in each record's meta, e.g."
                                              " [\"quality_score\"] for dedupe's keep ="
                                              " \"score\"")


@dataclass
class SourceContext:
    """What a source needs to know about the recipe it runs in."""

    recipe_file: Path
    key_path: str
    """Where the source sits in the recipe, e.g. `sources[0]`, for error messages."""
    seed: int = 0

    @property
    def recipe_dir(self) -> Path:
        return self.recipe_file.parent

    def resolve(self, pattern: str, key: str = "path") -> list[Path]:
        """Files matching a path or glob pattern relative to the recipe file, sorted.

        Raises a RecipeError naming the key when nothing matches.
        """
        full = self.recipe_dir / Path(pattern).expanduser()
        # A file whose name has glob characters ("data[1].jsonl") is still found by its name.
        if full.is_file():
            return [full]
        matches = sorted(Path(p) for p in glob.glob(str(full), recursive=True) if Path(p).is_file())
        if not matches:
            raise RecipeError(str(self.recipe_file), f"{self.key_path}.{key}",
                              f"no file matches '{pattern}' (paths are relative to the recipe's"
                              f" folder, {self.recipe_dir}){_path_hint(pattern, full)}")
        return matches

    def display(self, path: Path) -> str:
        """A path as the user wrote it: relative to the recipe folder when inside it."""
        try:
            return str(path.relative_to(self.recipe_dir))
        except ValueError:
            return str(path)


class Source:
    """Reads raw rows. Subclasses set `name` and `Options`, and implement `rows`."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    version: ClassVar[str] = "1"

    def rows(self, options: Any, context: SourceContext) -> Iterator[Row | BadRow]:
        raise NotImplementedError

    def estimate_rows(self, options: Any, context: SourceContext) -> int | None:
        """Roughly how many rows `rows` will yield, for progress and time left; None if unknown
        or costly to tell."""
        return None

    def check(self, options: Any, context: SourceContext) -> None:
        """Checks beyond types and ranges, run when the recipe is validated, before any data is
        read: raise `curate.options.OptionError(key, message)`. The default checks that
        `options.path`, if there is one, matches a file."""
        paths = getattr(options, "path", None)
        if paths is not None:
            for path in resolve_paths(paths, context):
                if not os.access(path, os.R_OK):
                    raise RecipeError(str(context.recipe_file), f"{context.key_path}.path",
                                      f"cannot read {path}: permission denied")

    def fingerprint(self, options: Any, context: SourceContext) -> str:
        """What identifies the data this source would read; it decides whether caches are valid.

        The default hashes the bytes of every file that `options.path` matches.
        """
        paths = getattr(options, "path", None)
        if paths is None:
            raise NotImplementedError(f"source '{self.name}' must implement fingerprint()")
        return hash_files(resolve_paths(paths, context))


def resolve_paths(paths: str | list[str], context: SourceContext) -> list[Path]:
    """All files named by a path, a glob or a list of either, in order, without repeats."""
    patterns = [paths] if isinstance(paths, str) else paths
    if not patterns:
        raise RecipeError(str(context.recipe_file), f"{context.key_path}.path",
                          "the list of paths is empty: name at least one file or pattern")
    found: dict[Path, None] = {}
    for pattern in patterns:
        found.update(dict.fromkeys(context.resolve(pattern)))
    return list(found)


@contextmanager
def file_errors(context: SourceContext) -> Iterator[None]:
    """An OSError while a source reads (no permission, a failing disk, a lost connection) as
    one line naming the source and the file, instead of a traceback."""
    try:
        yield
    except OSError as error:
        what = f"{error.filename}: {error.strerror}" if error.filename else str(error)
        raise RecipeError(str(context.recipe_file), context.key_path,
                          f"cannot read {what}") from None


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Gives an OSError raised while reading `path` the file name a failed read() lacks."""
    try:
        yield
    except OSError as error:
        if error.filename:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from None


def hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.name).encode())
        with naming(path), open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _path_hint(pattern: str, full: Path) -> str:
    if any(not c.isprintable() for c in pattern):
        return (": a backslash in \"...\" starts an escape (\\r, \\t, \\n): write the path"
                " with / or in single quotes")
    if full.is_dir():
        return ": it is a folder; name the files in it, e.g. 'folder/*.jsonl'"
    return ""
