"""`curate merge`: the adapter merged into a 16-bit copy of its base, checked against the
adapter model it came from.

By default the base is loaded exactly as it was trained (same quantisation), then dequantised,
so the merged weights are the very weights the adapter learnt against, plus the adapter.
Merging into the re-quantised 4-bit model instead changes outputs (PEFT #2321): only on request,
with a warning, and the comparison shows by how much.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from curate.errors import CurateError
from curate.runstore import write_json_atomic
from curate.train.card import RECORD_FILE, read_record
from curate.train.data import read_examples
from curate.train.model import (ModelSource, load_base_model, load_tokenizer, quiet_progress_bars,
                                torch_dtype)
from curate.train.options import QLoRAOptions

SAVED_DTYPE = "bfloat16"


def merge_run(run_dir: Path, output: Path, into_quantized: bool, examples: int,
              log: Callable[[str], None] = print) -> dict:
    import torch

    adapter = run_dir / "adapter"
    if not (adapter / RECORD_FILE).is_file():
        raise CurateError(f"{run_dir}: no trained adapter ({adapter / RECORD_FILE} is missing):"
                          f" run a recipe with a [train] section first")
    record = read_record(adapter)
    quiet_progress_bars()
    options = QLoRAOptions(**record["options"])
    source = ModelSource(**record["base"])
    tokenizer = load_tokenizer(ModelSource(str(adapter), str(adapter)))
    batch = held_out_batch(run_dir, tokenizer, examples, record["max_length"])
    reference = adapter_logits(source, options, record["compute_dtype"], adapter, batch)
    quantised = options.quantization != "none"
    if into_quantized and quantised:
        log(f"warning: merging into the re-quantised {options.quantization} model changes its"
            f" outputs (the merged weights are rounded to {options.quantization} again); the"
            f" comparison below shows by how much")
    merged = merged_model(source, options, record["compute_dtype"], adapter,
                          into_quantized and quantised)
    with torch.no_grad():
        logits = merged(**_on(batch, merged)).logits.float().cpu()
    report = fidelity(reference, logits, batch["attention_mask"])
    output.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output)
    tokenizer.save_pretrained(output)
    report.update(output=str(output), base=source.path, examples=int(batch["input_ids"].shape[0]),
                  into_quantized=bool(into_quantized and quantised),
                  dtype=str(next(merged.parameters()).dtype).removeprefix("torch."))
    write_json_atomic(output / "merge_report.json", report)
    return report


def held_out_batch(run_dir: Path, tokenizer, count: int, max_length: int) -> dict:
    """The first `count` eval examples (train ones when there is no eval split), rendered
    with the adapter's template, padded into one batch."""
    rows = read_examples(run_dir / "dataset" / "eval.jsonl") or read_examples(
        run_dir / "dataset" / "train.jsonl")
    if not rows:
        raise CurateError(f"{run_dir / 'dataset'}: no examples to compare the merged model on")
    texts = [tokenizer.apply_chat_template(row["messages"], tokenize=False)
             for row in rows[:count]]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return dict(tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                          max_length=max_length, add_special_tokens=False))


def adapter_logits(source, options, compute_dtype, adapter: Path, batch: dict):
    """Logits of the model as trained: the quantised base with the adapter applied."""
    import torch
    from peft import PeftModel

    base = load_base_model(source, options, compute_dtype)
    model = PeftModel.from_pretrained(base, adapter).eval()
    with torch.no_grad():
        logits = model(**_on(batch, model)).logits.float().cpu()
    del model, base
    return logits


def merged_model(source, options, compute_dtype, adapter: Path, into_quantized: bool):
    from peft import PeftModel

    base = load_base_model(source, options, compute_dtype)
    if options.quantization != "none" and not into_quantized:
        base = base.dequantize(dtype=torch_dtype(compute_dtype))
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload().eval()
    if not into_quantized:
        merged = merged.to(torch_dtype(SAVED_DTYPE))
    return merged


def fidelity(reference, logits, attention_mask) -> dict:
    """Maximum absolute logit difference and top-1 agreement over the real (unpadded) tokens."""
    mask = attention_mask.bool().to(logits.device)
    reference = reference.to(logits.device)
    difference = (logits - reference).abs().amax(dim=-1)[mask]
    agree = (logits.argmax(-1) == reference.argmax(-1))[mask]
    return {"max_logit_difference": float(difference.max()),
            "top1_agreement": float(agree.float().mean()), "tokens": int(mask.sum())}


def _on(batch: dict, model) -> dict:
    device = next(model.parameters()).device
    return {key: value.to(device) for key, value in batch.items()}
