"""The hyperparameter advisor: warnings about `[train]` options against practice, printed by
`curate validate` and at the start of training. It never changes an option.

Pure arithmetic on the options and what is known of the data: no torch here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from curate.train.options import TASK_RANKS, QLoRAOptions

LEARNING_RATES = (1e-4, 3e-4)
EFFECTIVE_BATCH = (16, 32)
ALPHA_PER_RANK = (1.0, 2.0)
SMALL_DATASET = 1_000


@dataclass
class TrainingFacts:
    """What the advice depends on besides the options; None where not known yet (before the
    run, `curate validate` does not know the dataset's size)."""

    examples: int | None = None
    rehearsal_examples: int | None = None
    has_eval: bool | None = None
    devices: int = 1


def advise(options: QLoRAOptions, facts: TrainingFacts) -> list[str]:
    checks = (_learning_rate, _rank, _alpha, _epochs, _effective_batch, _rehearsal, _eval_split)
    return [warning for check in checks if (warning := check(options, facts))]


def facts_from_recipe(recipe) -> TrainingFacts:
    """What `curate validate` knows without reading data: the split, not the dataset's size."""
    split = recipe.split
    has_eval = split.eval_size != 0 if split.eval_size is not None else split.eval_fraction > 0
    return TrainingFacts(has_eval=has_eval, devices=world_size())


def world_size() -> int:
    """Processes training together: `accelerate launch` / torchrun set WORLD_SIZE."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _learning_rate(options: QLoRAOptions, facts: TrainingFacts) -> str | None:
    low, high = LEARNING_RATES
    if low <= options.learning_rate <= high:
        return None
    return (f"learning_rate {options.learning_rate:g} is outside {low:g} to {high:g}, the usual"
            f" range for LoRA")


def _rank(options: QLoRAOptions, facts: TrainingFacts) -> str | None:
    usual = TASK_RANKS[options.task]
    if usual / 2 <= options.lora_r <= usual * 2:
        return None
    judgement = "high" if options.lora_r > usual else "low"
    return (f"lora_r {options.lora_r} is {judgement} for task = \"{options.task}\" (usually"
            f" {usual}; 4 simple, 8 general, 16 complex or style, 64 near full fine-tuning)")


def _alpha(options: QLoRAOptions, facts: TrainingFacts) -> str | None:
    ratio = options.lora_alpha / options.lora_r
    low, high = ALPHA_PER_RANK
    if low <= ratio <= high:
        return None
    return (f"lora_alpha {options.lora_alpha:g} is {ratio:.2g}x lora_r; alpha = r to 2r is usual"
            f" (a larger alpha acts like a larger learning rate)")


def _epochs(options: QLoRAOptions, facts: TrainingFacts) -> str | None:
    if facts.examples is None or options.max_steps:
        return None
    low, high = usual_epochs(facts.examples)
    if low <= options.epochs <= high:
        return None
    usual = f"{low}" if low == high else f"{low}-{high}"
    return (f"epochs {options.epochs:g} with {facts.examples:,} examples: {usual} is usual"
            f" for this size (under 1k: 3-5, 1k-10k: 1-3, over 10k: 1)")


def usual_epochs(examples: int) -> tuple[int, int]:
    if examples < 1_000:
        return 3, 5
    if examples <= 10_000:
        return 1, 3
    return 1, 1


def _effective_batch(options: QLoRAOptions, facts: TrainingFacts) -> str | None:
    effective = options.batch_size * options.gradient_accumulation * facts.devices
    low, high = EFFECTIVE_BATCH
    if low <= effective <= high:
        return None
    return (f"effective batch {effective} (batch_size {options.batch_size} x"
            f" gradient_accumulation {options.gradient_accumulation} x {facts.devices}"
            f" device{'s' if facts.devices != 1 else ''}) is outside {low}-{high}")


def _rehearsal(options: QLoRAOptions, facts: TrainingFacts) -> str | None:
    if facts.examples is None or facts.rehearsal_examples is None:
        return None
    if facts.examples >= SMALL_DATASET or facts.rehearsal_examples:
        return None
    return (f"no rehearsal data among {facts.examples:,} examples: mixing in 10-20% general data"
            f" (a source with origin = \"rehearsal\") limits catastrophic forgetting")


def _eval_split(options: QLoRAOptions, facts: TrainingFacts) -> str | None:
    if facts.has_eval is not False or not options.early_stopping_patience:
        return None
    return (f"early_stopping_patience is {options.early_stopping_patience} but there is no eval"
            f" split to stop on: set [split] eval_fraction, or early_stopping_patience = 0")
