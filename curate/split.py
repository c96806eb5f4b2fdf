"""The train/eval split: seeded, stable, and never splitting identical examples across sides.

Each record's side is decided by a hash of the seed and its id, not by its position, so adding
data later leaves most existing assignments where they were, and records with the same id (the
same normalised content) always land on the same side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from curate.recipe import SplitOptions
from curate.records import Record


def eval_count(total: int, options: SplitOptions) -> int:
    if options.eval_size is not None:
        return min(options.eval_size, total)
    return round(total * options.eval_fraction)


def split_records(records: Iterable[Record], options: SplitOptions,
                  seed: int) -> tuple[list[Record], list[Record]]:
    """(train, eval), each in input order."""
    records = list(records)
    wanted = eval_count(len(records), options)
    ids_in_order = sorted({r.id for r in records}, key=lambda i: _rank(seed, i))
    group_sizes: dict[str, int] = {}
    for record in records:
        group_sizes[record.id] = group_sizes.get(record.id, 0) + 1
    eval_ids: set[str] = set()
    taken = 0
    for record_id in ids_in_order:
        if taken >= wanted:
            break
        eval_ids.add(record_id)
        taken += group_sizes[record_id]
    train = [r for r in records if r.id not in eval_ids]
    held_out = [r for r in records if r.id in eval_ids]
    return train, held_out


def _rank(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()
