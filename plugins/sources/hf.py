"""Hugging Face `datasets` source: hub datasets, local dataset folders and `save_to_disk` output.

`datasets` is imported only when the source is read, so `curate --help` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from curate import hookimpl
from curate.errors import CurateError, RecipeError
from curate.options import option
from curate.sources import BadRow, Row, Source, SourceContext, hash_files


@hookimpl
def register_sources(register):
    register(DatasetsSource)


@dataclass
class DatasetsOptions:
    path: str = option(help="a hub id (org/name), a builder (json, csv, parquet), or a local"
                            " folder, including `save_to_disk` output")
    config: str | None = option(None, help="the dataset configuration (load_dataset's `name`)")
    split: str = option("train", help="the split to read")
    data_files: str | list[str] | dict[str, str] | None = option(
        None, help="files for a builder such as json or csv, relative to the recipe")
    revision: str | None = option(None, help="a git revision of a hub dataset, for pinning")


class DatasetsSource(Source):
    name = "datasets"
    Options = DatasetsOptions

    def rows(self, options: DatasetsOptions, context: SourceContext) -> Iterator[Row | BadRow]:
        dataset = self.load(options, context)
        label = row_label(options)
        for index, row in enumerate(dataset):
            yield Row(dict(row), f"{label} row {index}")

    def check(self, options: DatasetsOptions, context: SourceContext) -> None:
        if self.local_folder(options, context) is None:
            check_not_local(options.path, context)
        self.data_files(options, context)

    def load(self, options: DatasetsOptions, context: SourceContext):
        import datasets

        local = self.local_folder(options, context)
        if local is None:
            check_not_local(options.path, context)
        errors = (datasets.exceptions.DatasetsError, FileNotFoundError, ValueError,
                  ConnectionError, StopIteration)
        try:
            with quiet_progress_off_terminal(datasets):
                return self._load(datasets, local, options, context)
        except errors as error:
            raise CurateError(f"{context.recipe_file}: {context.key_path}: cannot load dataset"
                              f" '{options.path}': {explain(error, local, context)}") from None

    def _load(self, datasets, local: Path | None, options: DatasetsOptions,
              context: SourceContext):
        if local is not None and is_saved_dataset(local):
            return pick_split(datasets.load_from_disk(str(local)), options.split, local)
        return datasets.load_dataset(str(local or options.path), options.config,
                                     split=options.split, revision=options.revision,
                                     data_files=self.data_files(options, context))

    def fingerprint(self, options: DatasetsOptions, context: SourceContext) -> str:
        local = self.local_folder(options, context)
        files = self.data_files(options, context)
        if local is not None or files is not None:
            paths = sorted(p for p in local.rglob("*") if p.is_file()) if local else []
            paths += [Path(f) for f in flatten(files)]
            return hash_files(paths)
        return self.load(options, context)._fingerprint

    def local_folder(self, options: DatasetsOptions, context: SourceContext) -> Path | None:
        candidate = context.recipe_dir / Path(options.path).expanduser()
        return candidate if candidate.is_dir() else None

    def data_files(self, options: DatasetsOptions, context: SourceContext):
        if options.data_files is None:
            return None
        if isinstance(options.data_files, dict):
            return {split: [str(p) for p in context.resolve(pattern, "data_files")]
                    for split, pattern in options.data_files.items()}
        patterns = [options.data_files] if isinstance(options.data_files, str) else \
            options.data_files
        return [str(p) for pattern in patterns for p in context.resolve(pattern, "data_files")]


def row_label(options: DatasetsOptions) -> str:
    """What a row's location starts with: the data files when given, else the dataset path."""
    files = options.data_files
    if isinstance(files, dict):
        files = files.get(options.split)
    if files is None:
        files = options.path
    shown = files if isinstance(files, str) else ",".join(files)
    return shown if options.split == "train" else f"{shown}[{options.split}]"


LOCAL_PREFIXES = (".", "/", "~")
DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".arrow", ".txt")


def check_not_local(path: str, context: SourceContext) -> None:
    """Stop early, with the fix, when `path` names a local file or a missing local folder
    rather than a hub dataset, instead of asking the hub about it."""
    key = f"{context.key_path}.path"
    if (context.recipe_dir / path).is_file() or path.endswith(DATA_SUFFIXES):
        raise RecipeError(str(context.recipe_file), key, f"'{path}' is a file, and this key"
                          f" takes a folder, a hub id or a builder: write path = \"json\" (or"
                          f" csv, parquet) and data_files = \"{path}\", or use = \"jsonl\"")
    if path.startswith(LOCAL_PREFIXES):
        raise RecipeError(str(context.recipe_file), key, f"no folder '{path}' (paths are"
                          f" relative to the recipe's folder, {context.recipe_dir})")


@contextmanager
def quiet_progress_off_terminal(datasets) -> Iterator[None]:
    """`datasets` draws progress bars even into log files; show them on a terminal only."""
    if sys.stderr.isatty() or not datasets.is_progress_bar_enabled():
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


def explain(error: BaseException, local: Path | None, context: SourceContext) -> str:
    """One line saying why loading failed, with the cause `datasets` wraps its errors around."""
    if isinstance(error, StopIteration):
        return "the data files hold no rows"
    import datasets

    text = first_line(error)
    if isinstance(error, datasets.exceptions.DatasetGenerationError) and error.__cause__:
        text += f" ({first_and_last_line(error.__cause__)}): a file with a broken line or rows"
        text += " of another shape reads row by row, with each bad row reported, through"
        text += " use = \"jsonl\" (or csv, parquet)"
    if local is None and isinstance(error, (ConnectionError, FileNotFoundError)):
        text += f"; no folder of that name is next to the recipe ({context.recipe_dir})"
    return text


def is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").exists() or (folder / "state.json").exists()


def pick_split(loaded, split: str, folder: Path):
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise CurateError(f"{folder}: no split '{split}' (splits: {', '.join(loaded)})")
        return loaded[split]
    if split != "train":
        raise CurateError(f"{folder}: holds one saved Dataset without splits, so there is no"
                          f" split '{split}': remove `split`")
    return loaded


def flatten(files) -> list[str]:
    if files is None:
        return []
    if isinstance(files, dict):
        return [f for group in files.values() for f in group]
    return list(files)


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def first_and_last_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if len(lines) < 2:
        return first_line(error)
    return f"{lines[0]} ... {lines[-1]}"


