"""The hyperparameter advisor: warnings about `[train]` options against practice, printed by
`curate validate` and at the start of training. It never changes an option.

Pure arithmetic on the options and what is known of the data: no torch here.
"""

from __future__ import annotations

import math
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
    examples_before_curation: bool = False
    """`examples` counts the sources' input rows (what validate knows), with what a rehearsal
    stage adds at most: an upper bound."""
    rehearsal_share: str = ""
    """How `examples` counts the rehearsal stage's rows before curation, when there is one."""
    has_rehearsal: bool | None = None
    """Whether rehearsal data is coming, when `rehearsal_examples` is not known yet."""


def advise(options: QLoRAOptions, facts: TrainingFacts) -> list[str]:
    checks = (_learning_rate, _rank, _alpha, _epochs, _effective_batch, _rehearsal, _eval_split)
    return [warning for check in checks if (warning := check(options, facts))]


def facts_from_recipe(recipe) -> TrainingFacts:
    """What `curate validate` knows cheaply: the split, whether rehearsal data is mixed in, and
    the sources' input rows when every source can count them without reading the data."""
    split = recipe.split
    has_eval = split.eval_size != 0 if split.eval_size is not None else split.eval_fraction > 0
    rows = input_rows(recipe)
    added, share = rehearsal_rows(recipe, rows)
    return TrainingFacts(examples=rows + added if rows is not None else None, has_eval=has_eval,
                         devices=world_size(), examples_before_curation=rows is not None,
                         has_rehearsal=has_rehearsal(recipe), rehearsal_share=share)


def rehearsal_rows(recipe, rows: int | None) -> tuple[int, str]:
    """The most rows rehearsal stages add to `rows` task rows, and how the count says so. A
    stage measuring its ratio in tokens adds an unknown number of examples."""
    stages = [stage.options for stage in recipe.stages
              if stage.use == "rehearsal" and stage.options.ratio > 0]
    if rows is None or not stages:
        return 0, ""
    if any(options.count != "examples" for options in stages):
        return 0, ", without the general rows the rehearsal stage adds"
    ratio = max(options.ratio for options in stages)
    return math.ceil(ratio / (1 - ratio) * rows), f", with {ratio:.0%} rehearsal data on top"


def has_rehearsal(recipe) -> bool:
    return (any(stage.use == "rehearsal" and stage.options.ratio > 0 for stage in recipe.stages)
            or any(getattr(spec.source_options, "origin", None) == "rehearsal"
                   for spec in recipe.sources))


def input_rows(recipe) -> int | None:
    """The sources' rows, as their `estimate_rows` tells (local jsonl files count lines); None
    when any source cannot tell cheaply or its files are missing (validate reports that), or
    when there are none."""
    from curate.errors import CurateError
    from curate.sources import SourceContext

    total = 0
    for spec in recipe.sources:
        context = SourceContext(recipe.file, spec.key_path, recipe.run.seed)
        try:
            rows = spec.plugin().estimate_rows(spec.options, context)
        except (CurateError, OSError):
            return None
        if rows is None:
            return None
        total += rows
    return total or None  # no rows yet: nothing to judge


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
    return (f"epochs {options.epochs:g} with {_examples(facts)}: {usual} is usual"
            f" for this size (under 1k: 3-5, 1k-10k: 1-3, over 10k: 1)")


def _examples(facts: TrainingFacts) -> str:
    if facts.examples_before_curation:
        return (f"at most {facts.examples:,} examples (the sources' rows, before curation"
                f"{facts.rehearsal_share})")
    return f"{facts.examples:,} examples"


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
    rehearsal = (facts.rehearsal_examples > 0 if facts.rehearsal_examples is not None
                 else facts.has_rehearsal)
    if facts.examples is None or rehearsal is None:
        return None
    if facts.examples >= SMALL_DATASET or rehearsal:
        return None
    return (f"no rehearsal data among {_examples(facts)}: mixing in 10-20% general data limits"
            f" catastrophic forgetting (add [[stages]] use = \"rehearsal\" with ratio = 0.15 and"
            f" a [stages.source] of general data)")


def _eval_split(options: QLoRAOptions, facts: TrainingFacts) -> str | None:
    if facts.has_eval is not False or not options.early_stopping_patience:
        return None
    return (f"early_stopping_patience is {options.early_stopping_patience} but there is no eval"
            f" split to stop on: set [split] eval_fraction, or early_stopping_patience = 0")
