"""The train/eval split: seeded, stable, and never splitting identical examples across sides.

Each record's side is decided by a hash of the seed and its id, not by its position, so adding
data later leaves most existing assignments where they were, and records with the same id (the
same normalised content) always land on the same side. Records stream from the last step to the
dataset files; only the ids are held in memory.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from curate.recipe import SplitOptions
from curate.records import Record
from curate.runstore import AtomicTextWriter, dumps, read_records


def eval_count(total: int, options: SplitOptions) -> int:
    if options.eval_size is not None:
        return min(options.eval_size, total)
    return round(total * options.eval_fraction)


def choose_eval_ids(ids: list[str], options: SplitOptions, seed: int) -> set[str]:
    """The ids held out: whole groups of equal ids, in seeded-hash order, skipping any group
    that would take the count past the target, so the eval split never exceeds it."""
    wanted = eval_count(len(ids), options)
    group_sizes = Counter(ids)
    chosen: set[str] = set()
    taken = 0
    for record_id in sorted(group_sizes, key=lambda i: _rank(seed, i)):
        if taken == wanted:
            break
        if taken + group_sizes[record_id] <= wanted:
            chosen.add(record_id)
            taken += group_sizes[record_id]
    return chosen


def write_split(kept_file: Path, dataset_dir: Path, options: SplitOptions, seed: int) -> dict:
    """Write train.jsonl and eval.jsonl from a step's kept records; return counts and hashes."""
    ids = pq.read_table(kept_file, columns=["id"])["id"].to_pylist()
    held_out = choose_eval_ids(ids, options, seed)
    with AtomicTextWriter(dataset_dir / "train.jsonl") as train, \
            AtomicTextWriter(dataset_dir / "eval.jsonl") as evaluation:
        for record in read_records(kept_file):
            (evaluation if record.id in held_out else train).write(dumps(dataset_line(record)) + "\n")
    return {"train": train.lines, "eval": evaluation.lines, "train_sha256": train.sha256,
            "eval_sha256": evaluation.sha256}


def dataset_line(record: Record) -> dict:
    return {"id": record.id, "source": record.source, "origin": record.origin,
            "messages": record.messages}


def _rank(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()
