"""The rehearsal mix as it came out: the share of general records in the training split, measured
when the dataset is written, against the target a rehearsal stage planned for.

A stage plans a mix by reporting `{"rehearsal": {"target_ratio": ..., "count": "examples" |
"tokens", ...}}` from `Stage.summary()`; the split then counts what reached train.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from curate.records import Record

TOLERANCE = 0.005
"""How far (as a share, 0.5 percentage points) the achieved ratio may be from the target
before the run warns."""


def rehearsal_plan(steps: list[dict]) -> dict | None:
    """The mix the last rehearsal step planned, from its manifest stats; None without one."""
    for step in reversed(steps):
        plan = (step.get("stats") or {}).get("rehearsal")
        if plan:
            return plan
    return None


def conversation_tokens(record: Record, counter: Any) -> int:
    """A record's tokens as the length stage counts a conversation: every text, one per line."""
    return counter.count("\n".join(message["content"] for message in record.messages))


def token_counting(plan: dict | None, load_counter: Callable[[], Any] | None
                   ) -> Callable[[Record], int] | None:
    """What counts a record's tokens for the split, when the mix is planned in tokens."""
    if not plan or plan["count"] != "tokens" or load_counter is None:
        return None
    counter = load_counter()
    return lambda record: conversation_tokens(record, counter)


def achieved_mix(plan: dict, split: dict) -> dict:
    """The manifest's `split.rehearsal`: general records against all of train, in examples (and
    tokens), the gap to the target, and a warning when it is over the tolerance."""
    mix: dict = {"target": plan["target_ratio"], "count": plan["count"],
                 "examples": _share(split["train_origins"])}
    if "train_tokens" in split:
        mix["tokens"] = _share(split["train_tokens"])
    gap = mix[plan["count"]]["ratio"] - plan["target_ratio"]
    mix["gap_pp"] = round(gap * 100, 3)
    if abs(gap) > TOLERANCE + 1e-12:
        mix["warning"] = mix_warning(plan, mix)
    return mix


def _share(by_origin: dict[str, int]) -> dict:
    total = sum(by_origin.values())
    general = by_origin.get("rehearsal", 0)
    return {"general": general, "train": total, "ratio": round(general / total, 6) if total else 0.0}


def mix_warning(plan: dict, mix: dict) -> str:
    unit = plan["count"]
    share = mix[unit]
    text = (f"rehearsal: general data is {share['ratio']:.2%} of the training {unit}"
            f" ({share['general']:,} of {share['train']:,}), {mix['gap_pp']:+.2f} percentage"
            f" points from the target {plan['target_ratio']:.2%}")
    pool = plan.get("pool", {})
    if plan.get("pool_exhausted"):
        return (f"{text}: the pool ran out after {pool.get('drawn', 0):,} of the"
                f" {plan.get('wanted', 0):,} {unit} wanted ({pool.get('rows', 0):,} rows read,"
                f" {pool.get('duplicates', 0):,} duplicates, {pool.get('contaminated', 0):,} too"
                f" close to a task prompt, {pool.get('unreadable', 0):,} unreadable,"
                f" {pool.get('held_out', 0):,} held out): add general data, or lower ratio or"
                f" held_out")
    return (f"{text}: {plan.get('task_train', 0):,} task training examples are too few for a"
            f" closer ratio, or a step after the rehearsal stage changed the training set")
