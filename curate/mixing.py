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
    warnings = [mix_warning(plan, mix)] if abs(gap) > TOLERANCE + 1e-12 else []
    held_out = plan.get("pool", {}).get("held_out", 0)
    if split.get("general_eval", 0) < held_out:
        mix["general_eval"] = {"held_out": held_out, "written": split.get("general_eval", 0)}
        warnings.append(general_eval_warning(held_out, split.get("general_eval", 0)))
    if warnings:
        mix["warning"] = "; ".join(warnings)
    return mix


def general_eval_warning(held_out: int, written: int) -> str:
    return (f"rehearsal: general_eval.jsonl has {written:,} of the {held_out:,} general records"
            f" held out: a step after the rehearsal stage dropped {held_out - written:,} (the"
            f" chat-template step drops records it cannot fit; `curate why` shows why)")


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
    drawn = pool.get("drawn_tokens", 0) if unit == "tokens" else pool.get("drawn", 0)
    if plan.get("pool_exhausted"):
        return (f"{text}: the pool ran out after {drawn:,} of the {plan.get('wanted', 0):,}"
                f" {unit} wanted ({pool.get('rows', 0):,} rows read, {pool.get('duplicates', 0):,}"
                f" duplicates, {pool.get('contaminated', 0):,} too close to a task record,"
                f" {pool.get('empty_response', 0):,} with an empty answer,"
                f" {pool.get('unreadable', 0):,} unreadable, {pool.get('held_out', 0):,} held"
                f" out): add general data, or lower ratio or held_out")
    if "overshoot_tokens" in plan:
        return (f"{text}: the draw stopped at {drawn:,} of the {plan.get('wanted', 0):,} tokens"
                f" wanted, as the next general record ({plan['overshoot_tokens']:,} tokens) would"
                f" overshoot the target further: the task data is too small, or the general"
                f" records too long, for a closer ratio in tokens")
    lost = pool.get("drawn", 0) - mix["examples"]["general"]
    if lost > 0:
        return (f"{text}: {lost:,} of the {pool['drawn']:,} general records drawn did not reach"
                f" train: a step after the rehearsal stage dropped them (the chat-template step"
                f" drops records it cannot fit; `curate why` shows why)")
    task = plan.get("task_train_tokens" if unit == "tokens" else "task_train", 0)
    return (f"{text}: {task:,} task training {unit} are too few for a closer ratio, or a step"
            f" after the rehearsal stage changed the training set (the chat-template step drops"
            f" records it cannot fit)")
