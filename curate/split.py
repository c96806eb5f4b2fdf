"""The train/eval split: seeded, stable, and never splitting one question across sides.

Each record's side is decided by a hash of the seed and its question (`split_key`: the user
turns after NFKC, case, punctuation and whitespace are set aside), not by its position, so adding
data later leaves most existing assignments where they were, and records asking the same
question (copies, case variants, other answers to it) always land on the same side: an eval
score never measures a question the model trained on. Near copies (a word changed) are not
grouped: a near-dedupe stage before the split keeps them off both sides. Records stream from the
last step to the dataset files; only a short key per record is held in memory.

Only task records are candidates for eval, so the eval split measures the task. Records a
rehearsal stage mixed in (origin "rehearsal") always train, except the general slice it held out
(meta["rehearsal"] = "held-out"), which goes to general_eval.jsonl for the forgetting check.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.recipe import SplitOptions
from curate.records import APPROVED, GENERATED, NEEDS_REVIEW, REVIEW, Record, normalise_text
from curate.runstore import AtomicTextWriter, dumps, read_records


def eval_count(total: int, options: SplitOptions) -> int:
    if options.eval_size is not None:
        return min(options.eval_size, total)
    return round(total * options.eval_fraction)


_NOT_WORDS = re.compile(r"[\W_]+")
_ASCII_NOT_WORDS = bytes.maketrans(
    bytes(c for c in range(128) if not chr(c).isalnum()), b" " * sum(
        not chr(c).isalnum() for c in range(128)))


def split_key(messages: list[dict]) -> str:
    """What the split groups records by: their question, the user turns with Unicode form,
    case, punctuation and spacing set aside (a record without one: all of its turns)."""
    asked = "\n\n".join([m["content"] for m in messages if m["role"] == "user"] or [
        m["content"] for m in messages])
    if asked.isascii():  # the same words as below, without NFKC and a regex
        words = asked.encode().lower().translate(_ASCII_NOT_WORDS).split()
        text = b" ".join(words)
    else:
        text = _NOT_WORDS.sub(" ", normalise_text(asked).casefold()).strip().encode(
            "utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def choose_eval_keys(keys: list[str], options: SplitOptions, seed: int) -> set[str]:
    """The `split_key`s held out: whole groups of equal keys, in seeded-hash
    order, skipping any group that would take the count past the target, so the eval split
    never exceeds it."""
    wanted = eval_count(len(keys), options)
    group_sizes = Counter(keys)
    chosen: set[str] = set()
    taken = 0
    for key in sorted(group_sizes, key=lambda k: _rank(seed, k)):
        if taken == wanted:
            break
        if taken + group_sizes[key] <= wanted:
            chosen.add(key)
            taken += group_sizes[key]
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
    keys = split_keys(kept_file)
    eval_keys = choose_eval_keys([key for key, origin in zip(keys, table["origin"].to_pylist())
                                 if origin != REHEARSAL], options, seed)
    sides = ["train", "eval"] + ([GENERAL_EVAL] if _holds_held_out(table) else [])
    train_origins: Counter = Counter()
    train_tokens: Counter = Counter()
    unanswered = 0
    with ExitStack() as stack:
        writers = {side: stack.enter_context(AtomicTextWriter(dataset_dir / f"{side}.jsonl"))
                   for side in sides}
        for record, key in zip(read_records(kept_file), keys):
            side = side_of(record, key in eval_keys)
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


def split_keys(kept_file: Path) -> list[str]:
    """`split_key` of every record of a step's table, in order, reading only the messages."""
    keys = []
    for batch in pq.ParquetFile(kept_file).iter_batches(columns=["messages"], batch_size=4096):
        keys += map(split_key, batch.column(0).to_pylist())
    return keys


def side_of(record: Record, held_out: bool) -> str:
    """Where a record goes: general records a rehearsal stage held out to general_eval, other
    general records to train, task records to eval when their question was held out."""
    if record.origin == REHEARSAL:
        return GENERAL_EVAL if record.meta.get(REHEARSAL) == HELD_OUT else "train"
    return "eval" if held_out else "train"


def _holds_held_out(table) -> bool:
    # meta is canonical JSON without spaces, so the marker is one exact substring.
    marker = pc.and_(pc.equal(table["origin"], REHEARSAL),
                     pc.match_substring(table["meta"], f'"{REHEARSAL}":"{HELD_OUT}"'))
    return bool(pc.any(pc.fill_null(marker, False)).as_py())


def dataset_line(record: Record) -> dict:
    return {"id": record.id, "source": record.source, "origin": record.origin,
            "messages": record.messages}


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()
