"""What a finished run leaves in `<run dir>/adapter/`: the adapter, the tokenizer, the chat
template it was trained with, `training.json` (what `curate merge` needs to rebuild the exact
base) and a model card with the recipe, the dataset's hashes and the metrics."""

from __future__ import annotations

import json
from pathlib import Path

from curate.runstore import write_json_atomic, write_text_atomic
from curate.train.data import DatasetFacts
from curate.train.template import TrainingTemplate

TEMPLATE_FILE = "chat_template.jinja"
RECORD_FILE = "training.json"


def save_adapter(trainer, tokenizer, folder: Path, template: TrainingTemplate) -> None:
    trainer.save_model(str(folder))
    tokenizer.save_pretrained(folder)
    write_text_atomic(folder / TEMPLATE_FILE, template.text)


def write_record(folder: Path, record: dict) -> None:
    write_json_atomic(folder / RECORD_FILE, record)


def read_record(folder: Path) -> dict:
    return json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))


def write_model_card(folder: Path, record: dict, recipe_text: str, data: DatasetFacts) -> None:
    base = record["base"]["path"]
    metrics = record["metrics"]
    rows = "\n".join(f"| {key} | {_number(value)} |" for key, value in sorted(metrics.items()))
    card = f"""---
library_name: peft
base_model: {base}
tags: [curate, lora, {record["options"]["quantization"]}, sft]
---

# LoRA adapter for {base}

Trained by curate's `{record["trainer"]}` trainer with trl's SFTTrainer, assistant-only loss,
on a {record["options"]["quantization"]} base with {record["compute_dtype"]} compute. The chat
template it was trained with is `{TEMPLATE_FILE}` ({record["template"]["label"]}: \
{record["template"]["how"]}); use the same one at inference.

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


def _number(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
