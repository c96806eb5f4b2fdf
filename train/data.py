"""The final dataset as the trainer reads it: `{"messages": [...]}` examples, and what the
advisor and the model card need to know about it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from curate.errors import CurateError


@dataclass
class DatasetFacts:
    train_examples: int
    eval_examples: int
    rehearsal_examples: int
    train_sha256: str
    eval_sha256: str

    @property
    def sha256(self) -> str:
        """One hash for the dataset: of the train and eval files' hashes."""
        return hashlib.sha256(f"{self.train_sha256}\n{self.eval_sha256}".encode()).hexdigest()


def read_examples(file: Path) -> list[dict]:
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line]


def dataset_facts(train: list[dict], eval_examples: list[dict], train_file: Path,
                  eval_file: Path) -> DatasetFacts:
    rehearsal = sum(1 for example in train if example.get("origin") == "rehearsal")
    return DatasetFacts(len(train), len(eval_examples), rehearsal, _sha256(train_file),
                        _sha256(eval_file))


def to_dataset(examples: list[dict]):
    """A datasets.Dataset holding only the conversations."""
    from datasets import Dataset

    return Dataset.from_list([{"messages": example["messages"]} for example in examples])


def require_examples(train: list[dict], train_file: Path) -> None:
    if not train:
        raise CurateError(f"{train_file}: no training examples: nothing to train on")


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest() if file.exists() else ""
