"""Trainers and evaluations: what runs on the final dataset once curation is done.

A trainer (`[train] use = "..."`) and evaluations (`[[evals]] use = "..."`) are plugins like any
other. Import heavy libraries inside `train` / `evaluate`, never at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.options import Configurable


@dataclass
class TrainContext:
    run_dir: Path
    recipe_dir: Path
    train_file: Path
    eval_file: Path
    seed: int
    log: Callable[[str], None] = print
    model: Any = None
    """The recipe's `[model]` options (`curate.recipe.ModelOptions`): the base model to train."""
    recipe_file: Path | None = None
    general_eval_file: Path | None = None
    """`dataset/general_eval.jsonl`: general records a rehearsal stage held out of training, for
    a forgetting check (the file exists only when one did)."""
    evaluation: str = ""
    """The recipe's name of the evaluation being run (its `name`, else its `use`): two
    evaluations of one plugin tell their outputs apart by it."""


class Trainer(Configurable):
    """What `[train] use = "..."` runs on the final dataset."""

    def train(self, options: Any, context: TrainContext) -> dict:
        """Train on `context.train_file`; return metrics for the manifest."""
        raise NotImplementedError

    @classmethod
    def check_recipe(cls, options: Any, recipe: Any) -> None:
        """Raise `curate.errors.RecipeError` for options that do not fit the rest of the recipe
        (`curate.recipe.Recipe`: its [model], its stages). Called when the recipe loads, so
        `curate validate` and `curate run` refuse it before any step runs."""

    @classmethod
    def advice(cls, options: Any, recipe: Any) -> list[str]:
        """Warnings about these options for this recipe (`curate.recipe.Recipe`), printed by
        `curate validate`. Advice only: it must never change an option."""
        return []


class Evaluation(Configurable):
    """What `[[evals]] use = "..."` runs once training is done."""

    uses_eval_split: bool = False
    """True for an evaluation of the held-out task examples (`context.eval_file`): a recipe
    whose [split] holds none out is refused at validate, not after training."""

    def evaluate(self, options: Any, context: TrainContext) -> dict:
        """Evaluate the trained model (under `context.run_dir`, e.g. `adapter/`); return
        JSON-serialisable results, written by name to `eval/results.json`. Results holding
        `"incomplete": "why"` are not reused by the next run."""
        raise NotImplementedError
