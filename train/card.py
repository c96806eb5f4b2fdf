"""What a finished run leaves in `<run dir>/adapter/`: the adapter, the tokenizer, the chat
template for inference and the one it was trained with, a generation config that stops at the
end-of-turn token trained, `training.json` (what `curate merge` needs to rebuild the exact base)
and a model card with the recipe, the dataset's hashes and the metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from curate.runstore import write_json_atomic, write_text_atomic
from curate.train import stop_tokens
from curate.train.data import DatasetFacts
from curate.train.inference_template import (TEMPLATE_FILE, TRAINING_TEMPLATE_FILE,
                                             inference_template)
from curate.train.model import INITIAL_ADAPTER, changes_base
from curate.train.template import TrainingTemplate

RECORD_FILE = "training.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def save_adapter(trainer, tokenizer, folder: Path, template: TrainingTemplate,
                 log: Callable[[str], None]) -> None:
    """Run on the main process only (it alone writes the adapter)."""
    trainer.save_model(str(folder))
    model = trainer.accelerator.unwrap_model(trainer.model)
    initial = getattr(model, INITIAL_ADAPTER, None)
    if initial is not None:
        save_as_plain_lora(model, initial, folder)
    tokenizer.save_pretrained(folder)
    save_templates(folder, template)
    save_generation_config(model.get_base_model().generation_config, tokenizer, folder,
                           template, log)
    # save_model adds the TrainingArguments as a pickle: unsafe to load from a shared adapter,
    # and training.json holds the options anyway.
    (folder / "training_args.bin").unlink(missing_ok=True)


def save_templates(folder: Path, template: TrainingTemplate) -> None:
    """The template for inference as the model's chat template, and the training one beside
    it (with its `{% generation %}` markers, to train on)."""
    write_text_atomic(folder / TEMPLATE_FILE, inference_template(template.text, template.label))
    write_text_atomic(folder / TRAINING_TEMPLATE_FILE, template.text)


def save_generation_config(base_config, tokenizer, folder: Path, template: TrainingTemplate,
                           log: Callable[[str], None]) -> None:
    """The base model's generation config, stopping at the end-of-turn tokens trained too;
    one line in the log when the base did not stop at all of them."""
    before = stop_tokens.eos_ids(base_config)
    trained = stop_tokens.trained_end_ids(tokenizer, template.text, template.end_of_turn,
                                          template.label)
    after = stop_tokens.stop_ids(trained, tokenizer, before)
    stop_tokens.save_with_stop_ids(base_config, after, folder)
    note = stop_tokens.added_note(tokenizer, before, after)
    if note:
        log(note)


def save_as_plain_lora(model, initial: dict, folder: Path) -> None:
    """A PiSSA/OLoRA model is W_res + B A with W_res = W - B0 A0: saved with peft's conversion
    as the rank-2r LoRA [B | -B0] [A ; A0] on the original W, which any consumer (peft, vLLM,
    curate's evaluations and merge) applies to the real base without re-initialising it."""
    import tempfile
    import warnings

    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    # peft's conversion loads the modules_to_save with the initial adapter (any values do)
    # and drops them from its output: they go back in after it
    full_modules = {name: tensor.detach().to("cpu").contiguous()
                    for name, tensor in get_peft_model_state_dict(model).items()
                    if "lora_" not in name}
    with tempfile.TemporaryDirectory() as scratch:
        initial_folder = Path(scratch) / "initial_adapter"
        initial_folder.mkdir()
        save_file({**initial, **full_modules}, initial_folder / WEIGHTS_FILE,
                  metadata={"format": "pt"})
        with warnings.catch_warnings():  # its advice to convert, given while converting
            warnings.filterwarnings("ignore", message=r".* changes the base weights")
            model.save_pretrained(folder,
                                  path_initial_model_for_weight_conversion=str(initial_folder))
    if full_modules:
        weights = folder / WEIGHTS_FILE
        save_file({**load_file(weights), **full_modules}, weights, metadata={"format": "pt"})


def write_record(folder: Path, record: dict) -> None:
    write_json_atomic(folder / RECORD_FILE, record)


def read_record(folder: Path) -> dict:
    return json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))


def write_model_card(folder: Path, record: dict, recipe_text: str, data: DatasetFacts) -> None:
    base = record["base"]["path"]
    metrics = record["metrics"]
    rows = "\n".join(f"| {key} | {_number(value)} |" for key, value in sorted(metrics.items()))
    # The Hub reads base_model as a model id: a local folder's path would only mislead it.
    base_line = "" if Path(base).is_absolute() else f"base_model: {base}\n"
    card = f"""---
library_name: peft
{base_line}tags: [curate, lora, {record["options"]["quantization"]}, sft]
---

# LoRA adapter for {base}

Trained by curate's `{record["trainer"]}` trainer with trl's SFTTrainer, assistant-only loss,
on a {record["options"]["quantization"]} base with {record["compute_dtype"]} compute. The chat
template it was trained with is `{TRAINING_TEMPLATE_FILE}` ({record["template"]["label"]}: \
{record["template"]["how"]}); `{TEMPLATE_FILE}` is the same template for inference, without the
training markers. `generation_config.json` stops generation at the end-of-turn token trained.\
{_conversion_note(record["options"])}

## Dataset

| split | examples | sha256 |
|---|---|---|
| train | {data.train_examples:,} | `{data.train_sha256}` |
| eval | {data.eval_examples:,} | `{data.eval_sha256}` |

Dataset hash (of both files' hashes): `{data.sha256}`. Rehearsal examples in train:
{data.rehearsal_examples:,}.

## Metrics

| metric | value |
|---|---|
{rows}

## Recipe

```toml
{recipe_text.rstrip()}
```
"""
    write_text_atomic(folder / "README.md", card)


def _conversion_note(options: dict) -> str:
    init = options.get("init_lora_weights", "default")
    if not changes_base(init):
        return ""
    return (f"\n\nInitialised with {init}, which trains against a residual of the base weights;"
            f" saved converted to plain LoRA of rank {2 * options['lora_r']} on the original"
            f" base weights, so it applies to the base model as published.")


def _number(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
