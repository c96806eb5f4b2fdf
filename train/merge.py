"""`curate merge`: the adapter merged into a 16-bit copy of its base, checked against the
adapter model it came from.

By default the base is loaded exactly as it was trained (same quantisation), then dequantised,
so the merged weights are the very weights the adapter learnt against, plus the adapter.
Merging into the re-quantised 4-bit model instead changes outputs (PEFT #2321): only on request,
with a warning, and the comparison shows by how much.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from curate.errors import CurateError
from curate.runstore import write_json_atomic
from curate.train.card import RECORD_FILE, read_record
from curate.train.data import read_examples
from curate.train.inference_template import TRAINING_TEMPLATE_FILE, saved_training_template
from curate.train.model import (ModelSource, load_adapter, load_base_model, load_tokenizer,
                                quiet_library_output, torch_dtype)
from curate.train.options import QLoRAOptions
from curate.train.stop_tokens import GENERATION_CONFIG_FILE

SAVED_DTYPE = "bfloat16"
EXPECTED_AGREEMENT = 0.99
"""Top-1 agreement (near-ties aside) a faithful 16-bit merge keeps (100% on the test model);
below it the merge warns."""
MIN_AGREEMENT = 0.95
"""Below this the merged model is not the trained one (an adapter loading differently gave
~92%): the merge fails. The margin is for bf16 rounding on large models, unmeasured here."""
NEAR_TIE = 0.1
"""Logits this close are a near-tie: which of the two is picked is a coin toss."""
HELD_OUT, TRAINING = "held-out examples", "training examples (no eval split)"
"""What the merged model is compared on: eval examples, or training ones without an eval split."""
QUANTISED = {"nf4": "4-bit NF4", "fp4": "4-bit FP4", "8bit": "8-bit"}
"""How the linear layers of a merge into the re-quantised model are stored."""


def merge_run(run_dir: Path, output: Path, into_quantized: bool, examples: int,
              log: Callable[[str], None] = print) -> dict:
    import torch

    adapter = run_dir / "adapter"
    if not (adapter / RECORD_FILE).is_file():
        raise CurateError(f"{run_dir}: no trained adapter ({adapter / RECORD_FILE} is missing):"
                          f" run a recipe with a [train] section first")
    record = read_record(adapter)
    quiet_library_output()
    options = QLoRAOptions(**record["options"])
    source = ModelSource(**record["base"])
    into_quantized = _into_quantized(into_quantized, options, log)
    tokenizer = load_tokenizer(ModelSource(str(adapter), str(adapter)))
    batch, compared_on = held_out_batch(run_dir, tokenizer, saved_training_template(adapter),
                                        examples, record["max_length"])
    reference = adapter_logits(source, options, record["compute_dtype"], adapter, batch)
    merged = merged_model(source, options, record["compute_dtype"], adapter, into_quantized)
    with torch.no_grad():
        logits = merged(**_on(batch, merged)).logits.float().cpu()
    report = fidelity(reference, logits, batch["attention_mask"])
    check_fidelity(report, run_dir, into_quantized, log)
    output.mkdir(parents=True, exist_ok=True)
    use_adapter_generation_config(merged, adapter)
    merged.save_pretrained(output)
    tokenizer.save_pretrained(output)
    if (adapter / TRAINING_TEMPLATE_FILE).is_file():
        shutil.copyfile(adapter / TRAINING_TEMPLATE_FILE, output / TRAINING_TEMPLATE_FILE)
    report.update(output=str(output), base=source.path, examples=int(batch["input_ids"].shape[0]),
                  compared_on=compared_on, into_quantized=into_quantized,
                  quantization=options.quantization if into_quantized else "none",
                  dtype=unquantised_dtype(merged))
    write_json_atomic(output / "merge_report.json", report)
    return report


def use_adapter_generation_config(model, adapter: Path) -> None:
    """The generation config training saved with the adapter, which stops at the end-of-turn
    token trained; an adapter saved before curate wrote one leaves the base's."""
    from transformers import GenerationConfig

    if (adapter / GENERATION_CONFIG_FILE).is_file():
        model.generation_config = GenerationConfig.from_pretrained(adapter)


def _into_quantized(requested: bool, options: QLoRAOptions, log) -> bool:
    """Whether to merge into the re-quantised model: only on request, and only when there is
    one."""
    if requested and options.quantization == "none":
        log("note: --into-quantized does nothing here: the run trained on a 16-bit base"
            " (quantization = \"none\"), so the adapter is merged into its 16-bit weights")
        return False
    if requested:
        log(f"warning: merging into the re-quantised {options.quantization} model changes its"
            f" outputs (the merged weights are rounded to {options.quantization} again); the"
            f" comparison below shows by how much")
    return requested


def held_out_batch(run_dir: Path, tokenizer, template: str, count: int,
                   max_length: int) -> tuple[dict, str]:
    """The first `count` eval examples (train ones when there is no eval split), rendered
    with the template trained with, padded into one batch; and which examples they are."""
    rows, compared_on = read_examples(run_dir / "dataset" / "eval.jsonl"), HELD_OUT
    if not rows:
        rows, compared_on = read_examples(run_dir / "dataset" / "train.jsonl"), TRAINING
    if not rows:
        raise CurateError(f"{run_dir / 'dataset'}: no examples to compare the merged model on")
    texts = [tokenizer.apply_chat_template(row["messages"], chat_template=template,
                                           tokenize=False)
             for row in rows[:count]]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return dict(tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                          max_length=max_length, add_special_tokens=False)), compared_on


def unquantised_dtype(model) -> str:
    """The dtype of the weights not quantised: all of them in a 16-bit merge; the embeddings,
    norms and lm_head in one into the re-quantised model."""
    dtype = next(p.dtype for p in model.parameters() if p.dtype.is_floating_point)
    return str(dtype).removeprefix("torch.")


def summary_lines(report: dict) -> list[str]:
    """What `curate merge` prints when done: where the merged model is, in which precision,
    and how faithful it is to the adapter model."""
    precision = QUANTISED.get(report["quantization"], report["dtype"])
    return [f"merged model ({precision}): {report['output']}",
            f"fidelity on {report['examples']} {report['compared_on']}, {report['tokens']}"
            f" tokens: max logit difference {report['max_logit_difference']:.4g}, top-1"
            f" agreement {report['top1_agreement']:.2%}"]


def adapter_logits(source, options, compute_dtype, adapter: Path, batch: dict):
    """Logits of the model as trained: the quantised base with the adapter applied."""
    import torch

    base = load_base_model(source, options, compute_dtype)
    model = load_adapter(base, adapter).eval()
    with torch.no_grad():
        logits = model(**_on(batch, model)).logits.float().cpu()
    del model, base
    return logits


def merged_model(source, options, compute_dtype, adapter: Path, into_quantized: bool):
    base = load_base_model(source, options, compute_dtype)
    if options.quantization != "none" and not into_quantized:
        base = _dequantized(base, torch_dtype(compute_dtype))
    merged = load_adapter(base, adapter).merge_and_unload().eval()
    if not into_quantized:
        merged = merged.to(torch_dtype(SAVED_DTYPE))
    return merged


def _dequantized(model, dtype):
    """The 4-bit base dequantised, without transformers' notice of the dtype we asked for."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        return model.dequantize(dtype=dtype)
    finally:
        logging.set_verbosity(verbosity)


def fidelity(reference, logits, attention_mask) -> dict:
    """Maximum absolute logit difference and top-1 agreement over the real (unpadded) tokens,
    also counting as agreeing a different pick at a near-tie (the adapter model scores it
    within NEAR_TIE of its own pick): rounding the merged weights to 16 bits flips those."""
    mask = attention_mask.bool().to(logits.device)
    reference = reference.to(logits.device)
    difference = (logits - reference).abs().amax(dim=-1)[mask]
    picks = logits.argmax(-1, keepdim=True)
    agree = (picks.squeeze(-1) == reference.argmax(-1))[mask]
    shortfall = reference.amax(-1) - reference.gather(-1, picks).squeeze(-1)
    return {"max_logit_difference": float(difference.max()),
            "top1_agreement": float(agree.float().mean()),
            "top1_agreement_beyond_near_ties": float((shortfall[mask] <= NEAR_TIE).float().mean()),
            "tokens": int(mask.sum())}


def check_fidelity(report: dict, run_dir: Path, into_quantized: bool, log) -> None:
    """A merge that does not reproduce the adapter model fails (nothing is saved), one that
    strays more than a faithful merge warns; into the re-quantised model, whose rounding is
    expected, it only warns."""
    agreement = report["top1_agreement_beyond_near_ties"]
    if agreement >= EXPECTED_AGREEMENT:
        return
    what = (f"the merged model picks another top-1 token than the adapter model on"
            f" {1 - agreement:.1%} of {report['tokens']} tokens, near-ties aside (max logit"
            f" difference {report['max_logit_difference']:.4g})")
    if into_quantized:
        log(f"warning: {what}: the cost of the re-quantised merge; merging without"
            f" --into-quantized keeps the model as trained")
        return
    if agreement >= MIN_AGREEMENT:
        log(f"warning: {what}, more than the {1 - EXPECTED_AGREEMENT:.0%} a faithful merge"
            f" shows: compare the merged model's answers before using it")
        return
    raise CurateError(f"{run_dir}: not merged: {what}, where a faithful merge stays within"
                      f" {1 - EXPECTED_AGREEMENT:.0%}: the merged weights are not the trained"
                      f" model"
                      f" (an adapter that loads differently each time, or a merge peft gets"
                      f" wrong for this model); please report it with adapter/training.json")


def _on(batch: dict, model) -> dict:
    device = next(model.parameters()).device
    return {key: value.to(device) for key, value in batch.items()}
