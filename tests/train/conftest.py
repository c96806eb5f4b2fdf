"""A tiny Llama and its tokenizer, built once per session, and one trained run shared by the
tests that only read its outputs. Nothing is downloaded."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from curate.testing import invoke_cli, toml_value

CODE_WORDS = ("apple", "river", "stone", "cloud", "ember", "frost", "grove", "harbor",
              "island", "jungle", "kettle", "lantern")

CORPUS = " ".join(f"What is the code word {i}? The code word {i} is {word}."
                  for i, word in enumerate(CODE_WORDS)) * 5


def memorisation_rows(count: int = len(CODE_WORDS)) -> list[dict]:
    """Short question/answer pairs of varied length, one code word each, to be learnt by heart."""
    return [{"messages": [
        {"role": "user", "content": f"What is the code word {i}?"},
        {"role": "assistant", "content": f"The code word {i} is {word}." + " Yes." * (i % 3)}]}
        for i, word in enumerate(CODE_WORDS[:count])]


def jsonl_text(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def training_recipe(model: Path, max_length: int = 64, eval_size: int = 2, **train) -> str:
    """A recipe that reads d.jsonl (messages) and trains the tiny model with `train` options."""
    options = {"use": "qlora", "learning_rate": 1e-2, "batch_size": 4,
               "gradient_accumulation": 1, "lora_dropout": 0.0, "logging_steps": 2,
               "eval_steps": 4, **train}
    lines = "".join(f"{key} = {toml_value(value)}\n" for key, value in options.items())
    return textwrap.dedent(f"""\
        [model]
        path = {toml_value(str(model))}
        max_length = {max_length}

        [[sources]]
        name = "d"
        use = "jsonl"
        path = "d.jsonl"
        format = "messages"

        [split]
        eval_size = {eval_size}

        [train]
        """) + lines


def run_in(folder: Path, recipe: str, rows: list[dict], *args: str) -> tuple[int, str, Path]:
    """Write the recipe and data into `folder`, `curate run` it; (exit code, output, run dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "d.jsonl").write_text(jsonl_text(rows))
    (folder / "r.toml").write_text(recipe)
    run_dir = folder / "run"
    code, output = invoke_cli(["run", str(folder / "r.toml"), "--run-dir", str(run_dir), *args])
    return code, output, run_dir


class Killed(RuntimeError):
    """A kill in the middle of training, raised from a trainer callback."""


def run_killed_at_step(monkeypatch, folder: Path, recipe: str, rows: list[dict],
                       step: int) -> None:
    """`run_in`, killed at the end of training step `step` (checkpoints written before it
    stay); the trainer's callbacks are as they were afterwards."""
    from transformers import TrainerCallback

    from curate.train import sft

    class KillAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise Killed(f"killed at step {step}")

    real_callbacks = sft.callbacks
    monkeypatch.setattr(sft, "callbacks", lambda *a: [*real_callbacks(*a), KillAtStep()])
    try:
        with pytest.raises(Killed):
            run_in(folder, recipe, rows)
    finally:
        monkeypatch.setattr(sft, "callbacks", real_callbacks)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny matrices: a second thread only adds overhead, and much more on a busy machine."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from curate.train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", [CORPUS])


@pytest.fixture(scope="session")
def trained_run(tiny_model, tmp_path_factory) -> tuple[str, Path]:
    """One training of the tiny NF4 model on the memorisation task: (output, run dir)."""
    recipe = training_recipe(tiny_model, max_steps=24, eval_steps=8, logging_steps=4)
    code, output, run_dir = run_in(tmp_path_factory.mktemp("trained"), recipe,
                                   memorisation_rows())
    assert code == 0, output
    return output, run_dir
