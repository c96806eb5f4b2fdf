"""`loss`: held-out loss and perplexity of the base model and of base + adapter on the eval
split, over the tokens training trains (the assistant's words and end-of-turn tokens, by the
template's `{% generation %}` markers), cut at the same `max_length` as in training."""

from __future__ import annotations

import math
from dataclasses import dataclass

from curate.errors import CurateError
from curate.evals.examples import EvalExample, read_examples, require_examples
from curate.options import option
from curate.training import Evaluation, TrainContext


@dataclass
class LossOptions:
    batch_size: int = option(4, min=1, help="conversations per forward pass")
    max_examples: int | None = option(None, min=1, help="evaluate on the first N held-out"
                                                        " examples only")


class LossEval(Evaluation):
    name = "loss"
    Options = LossOptions
    version = "1"
    uses_eval_split = True

    def evaluate(self, options: LossOptions, context: TrainContext) -> dict:
        from curate.evals.model import load_tuned

        examples = read_examples(context.eval_file)[:options.max_examples]
        require_examples(examples, context.eval_file)
        result = compare_loss(load_tuned(context.run_dir), examples, options.batch_size)
        context.log(f"loss: eval perplexity {describe(result)}")
        return result


def compare_loss(tuned, examples: list[EvalExample], batch_size: int) -> dict:
    """{"examples", "tokens", "base": {loss, perplexity}, "tuned": {...}, "perplexity_change"}
    (the relative change of perplexity, tuned against base)."""
    from curate.evals.model import SIDES, side

    batches = trained_batches(tuned, examples, batch_size)
    if not batches:
        raise CurateError(f"none of the {len(examples):,} held-out examples has a trained token"
                          f" within max_length {tuned.max_length}: nothing to measure")
    sides = {}
    for name in SIDES:
        with side(tuned.model, name):
            total, tokens = summed_loss(tuned.model, batches)
        sides[name] = {"loss": total / tokens, "perplexity": math.exp(total / tokens)}
    change = sides["tuned"]["perplexity"] / sides["base"]["perplexity"] - 1
    return {"examples": len(examples), "tokens": tokens, **sides,
            "perplexity_change": change}


def describe(result: dict) -> str:
    return (f"{result['base']['perplexity']:.4g} -> {result['tuned']['perplexity']:.4g}"
            f" ({100 * result['perplexity_change']:+.1f}%) on {result['examples']:,} examples"
            f" ({result['tokens']:,} trained tokens)")


@dataclass
class Batch:
    input_ids: object
    attention_mask: object
    labels: object
    """The next token at each position where it is trained, else -100."""


def trained_batches(tuned, examples: list[EvalExample], batch_size: int) -> list[Batch]:
    """Examples rendered with the training template, cut at max_length, padded into batches;
    examples with nothing trained left are left out."""
    from curate.chat_templates import render_many

    rendered = render_many(tuned.tokenizer, tuned.template, [e.messages for e in examples])
    cut = [(r.input_ids[:tuned.max_length], r.trained[:tuned.max_length]) for r in rendered]
    cut = [(ids, mask) for ids, mask in cut if any(mask[1:])]
    return [_batch(cut[start:start + batch_size], tuned.tokenizer.pad_token_id or 0)
            for start in range(0, len(cut), batch_size)]


def _batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> Batch:
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for row, (tokens, trained) in enumerate(rows):
        ids[row, :len(tokens)] = torch.tensor(tokens)
        attention[row, :len(tokens)] = 1
        # position i predicts token i + 1: a trained token is the label of the one before it
        labels[row, :len(tokens) - 1] = torch.tensor(
            [t if flag else -100 for t, flag in zip(tokens[1:], trained[1:])])
    return Batch(ids, attention, labels)


def summed_loss(model, batches: list[Batch]) -> tuple[float, int]:
    """(summed cross-entropy, token count) over every labelled position of the batches."""
    import torch.nn.functional as F

    from curate.evals.model import device_of, inference

    device = device_of(model)
    total, tokens = 0.0, 0
    with inference():
        for batch in batches:
            logits = model(input_ids=batch.input_ids.to(device),
                           attention_mask=batch.attention_mask.to(device)).logits
            labels = batch.labels.to(device)
            wanted = labels != -100
            total += float(F.cross_entropy(logits[wanted].float(), labels[wanted],
                                           reduction="sum"))
            tokens += int(wanted.sum())
    return total, tokens
