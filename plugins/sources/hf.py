"""Hugging Face `datasets` source: hub datasets, local dataset folders and `save_to_disk` output.

`datasets` is imported only when the source is read, so `curate --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from curate import hookimpl
from curate.errors import CurateError
from curate.options import option
from curate.sources import BadRow, Row, Source, SourceContext, hash_files


@hookimpl
def register_sources(register):
    register(DatasetsSource)


@dataclass
class DatasetsOptions:
    path: str = option(help="a hub id (org/name), a builder (json, csv, parquet), or a local"
                            " folder, including `save_to_disk` output")
    name: str | None = option(None, help="the dataset configuration")
    split: str = option("train", help="the split to read")
    data_files: str | list[str] | dict[str, str] | None = option(
        None, help="files for a builder such as json or csv, relative to the recipe")
    revision: str | None = option(None, help="a git revision of a hub dataset, for pinning")


class DatasetsSource(Source):
    name = "datasets"
    Options = DatasetsOptions

    def rows(self, options: DatasetsOptions, context: SourceContext) -> Iterator[Row | BadRow]:
        dataset = self.load(options, context)
        label = options.path if options.split == "train" else f"{options.path}[{options.split}]"
        for index, row in enumerate(dataset):
            yield Row(dict(row), f"{label} row {index}")

    def load(self, options: DatasetsOptions, context: SourceContext):
        import datasets

        local = self.local_folder(options, context)
        try:
            if local is not None and is_saved_dataset(local):
                return pick_split(datasets.load_from_disk(str(local)), options.split, local)
            return datasets.load_dataset(str(local or options.path), options.name,
                                         split=options.split, revision=options.revision,
                                         data_files=self.data_files(options, context))
        except (FileNotFoundError, ValueError) as error:
            raise CurateError(f"{context.recipe_file}: {context.key_path}: cannot load dataset"
                              f" '{options.path}': {first_line(error)}") from None

    def fingerprint(self, options: DatasetsOptions, context: SourceContext) -> str:
        local = self.local_folder(options, context)
        files = self.data_files(options, context)
        if local is not None or files is not None:
            paths = sorted(p for p in local.rglob("*") if p.is_file()) if local else []
            paths += [Path(f) for f in flatten(files)]
            return hash_files(paths)
        return self.load(options, context)._fingerprint

    def local_folder(self, options: DatasetsOptions, context: SourceContext) -> Path | None:
        candidate = context.recipe_dir / options.path
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


def is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").exists() or (folder / "state.json").exists()


def pick_split(loaded, split: str, folder: Path):
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise CurateError(f"{folder}: no split '{split}' (splits: {', '.join(loaded)})")
        return loaded[split]
    return loaded


def flatten(files) -> list[str]:
    if files is None:
        return []
    if isinstance(files, dict):
        return [f for group in files.values() for f in group]
    return list(files)


def first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


