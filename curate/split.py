"""The train/eval split: seeded, stable, and never splitting identical examples across sides.

Each record's side is decided by a hash of the seed and its id, not by its position, so adding
data later leaves most existing assignments where they were, and records with the same id (the
same normalised content) always land on the same side. Records stream from the last step to the
dataset files; only the ids are held in memory.

Only task records are candidates for eval, so the eval split measures the task. Records a
rehearsal stage mixed in (origin "rehearsal") always train, except the general slice it held out
(meta["rehearsal"] = "held-out"), which goes to general_eval.jsonl for the forgetting check.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.recipe import SplitOptions
from curate.records import APPROVED, GENERATED, NEEDS_REVIEW, REVIEW, Record
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


REHEARSAL = "rehearsal"
HELD_OUT = "held-out"
GENERAL_EVAL = "general_eval"


def check_generated_is_approved(table) -> None:
    """Refuse, before anything is written, a generated record no person approved, or one a
    stage asked a person about (meta needs_review) that no person saw: the recipe's check asks
    for a review stage after every stage that generates, and this holds the promise for any
    plugin."""
    for record_id, origin, meta in zip(table["id"].to_pylist(), table["origin"].to_pylist(),
                                       table["meta"].to_pylist()):
        if origin != GENERATED and f'"{NEEDS_REVIEW}"' not in meta:
            continue  # the common case, without parsing the meta
        meta = json.loads(meta)
        approved = (meta.get(REVIEW) or {}).get("status") in APPROVED
        if origin == GENERATED and not approved:
            raise CurateError(f"record {record_id} was generated but no person approved it, so"
                              f" no dataset was written: add a review stage after the stage"
                              f" that generates it ([[stages]] use = \"review\")")
        if meta.get(NEEDS_REVIEW) and not approved:
            asked = "; ".join(map(str, _as_list(meta[NEEDS_REVIEW])))
            raise CurateError(f"record {record_id} was sent to review ({asked}) but no person"
                              f" approved it, so no dataset was written: add a review stage"
                              f" after the stage that asks ([[stages]] use = \"review\")")


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def write_split(kept_file: Path, dataset_dir: Path, options: SplitOptions, seed: int,
                count_tokens: Callable[[Record], int] | None = None) -> dict:
    """Write train.jsonl and eval.jsonl (and general_eval.jsonl when a rehearsal stage held
    general records out) from a step's kept records; return counts and hashes, and the train
    records (and with `count_tokens`, their tokens) by origin."""
    table = pq.read_table(kept_file, columns=["id", "origin", "meta"])
    check_generated_is_approved(table)
    task_ids = [i for i, origin in zip(table["id"].to_pylist(), table["origin"].to_pylist())
                if origin != REHEARSAL]
    eval_ids = choose_eval_ids(task_ids, options, seed)
    sides = ["train", "eval"] + ([GENERAL_EVAL] if _holds_held_out(table) else [])
    train_origins: Counter = Counter()
    train_tokens: Counter = Counter()
    unanswered = 0
    with ExitStack() as stack:
        writers = {side: stack.enter_context(AtomicTextWriter(dataset_dir / f"{side}.jsonl"))
                   for side in sides}
        for record in read_records(kept_file):
            side = side_of(record, eval_ids)
            writers[side].write(dumps(dataset_line(record)) + "\n")
            unanswered += not record.messages[-1]["content"].strip()
            if side == "train":
                train_origins[record.origin] += 1
                if count_tokens is not None:
                    train_tokens[record.origin] += count_tokens(record)
    counts = {side: writers[side].lines for side in sides}
    counts.update({f"{side}_sha256": writers[side].sha256 for side in sides})
    counts["train_origins"] = dict(sorted(train_origins.items()))
    if count_tokens is not None:
        counts["train_tokens"] = dict(sorted(train_tokens.items()))
    if GENERAL_EVAL in sides:
        counts["general_eval_file"] = f"dataset/{GENERAL_EVAL}.jsonl"
    if unanswered:
        counts["unanswered"] = unanswered
    return counts


def side_of(record: Record, eval_ids: set[str]) -> str:
    if record.origin == REHEARSAL:
        return GENERAL_EVAL if record.meta.get(REHEARSAL) == HELD_OUT else "train"
    return "eval" if record.id in eval_ids else "train"


def _holds_held_out(table) -> bool:
    # meta is canonical JSON without spaces, so the marker is one exact substring.
    marker = pc.and_(pc.equal(table["origin"], REHEARSAL),
                     pc.match_substring(table["meta"], f'"{REHEARSAL}":"{HELD_OUT}"'))
    return bool(pc.any(pc.fill_null(marker, False)).as_py())


def dataset_line(record: Record) -> dict:
    return {"id": record.id, "source": record.source, "origin": record.origin,
            "messages": record.messages}


def _rank(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()
