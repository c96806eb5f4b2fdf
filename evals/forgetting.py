"""`forgetting`: what the fine-tune cost elsewhere. The same loss and perplexity as `loss`, on
the general records a rehearsal stage held out of training (`dataset/general_eval.jsonl`),
before (base) and after (base + adapter); flagged when perplexity rose by more than
`max_increase`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from curate.evals.examples import read_examples
from curate.evals.loss import compare_loss, describe
from curate.options import option
from curate.training import Evaluation, TrainContext

NO_GENERAL_DATA = ("forgetting: no held-out general data ({file} is missing), so forgetting"
                   " cannot be measured: add a rehearsal stage with held_out > 0 to the recipe"
                   " (docs/stages/rehearsal.md)")


@dataclass
class ForgettingOptions:
    max_increase: float = option(0.05, min=0.0, help="flag the run when general perplexity rises"
                                                     " by more than this share (0.05: 5%)")
    batch_size: int = option(4, min=1, help="conversations per forward pass")
    max_examples: int | None = option(None, min=1, help="measure on the first N held-out"
                                                        " general examples only")


class ForgettingEval(Evaluation):
    name = "forgetting"
    Options = ForgettingOptions
    version = "1"

    def evaluate(self, options: ForgettingOptions, context: TrainContext) -> dict:
        from curate.evals.model import load_tuned

        file = general_file(context)
        examples = read_examples(file)[:options.max_examples]
        if not examples:
            context.log(NO_GENERAL_DATA.format(file=file))
            return {"measured": False, "reason": "no held-out general data: add a rehearsal"
                                                 " stage with held_out > 0"}
        result = compare_loss(load_tuned(context.run_dir), examples, options.batch_size)
        flagged = result["perplexity_change"] > options.max_increase
        result.update(measured=True, flagged=flagged, max_increase=options.max_increase)
        context.log(f"forgetting: general perplexity {describe(result)}")
        if flagged:
            context.log(warning(result))
        return result


def general_file(context: TrainContext) -> Path:
    return context.general_eval_file or context.run_dir / "dataset" / "general_eval.jsonl"


def warning(result: dict) -> str:
    return (f"warning: forgetting: perplexity on held-out general data rose"
            f" {100 * result['perplexity_change']:.1f}%, past max_increase"
            f" {100 * result['max_increase']:.1f}%: the adapter lost general ability; mix in"
            f" more general data (rehearsal ratio), train fewer steps or lower the learning"
            f" rate")
