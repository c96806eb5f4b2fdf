"""One tiny model trained for a few steps, with the built-in evaluations run after it by
`curate run`, shared by the tests that read what they left. The tiny Llama and its tokenizer
come from the training tests' fixtures; nothing is downloaded."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from curate.testing import toml_value

from ..train.conftest import memorisation_rows, one_torch_thread, run_in, tiny_model  # noqa: F401

TASK_EVALS = """
[[evals]]
use = "loss"

[[evals]]
use = "task-metrics"
metrics = ["exact", "contains", "regex"]
pattern = "^the code word "
max_new_tokens = 12

[[evals]]
use = "forgetting"
max_increase = 0.05
"""


def general_rows(count: int = 12) -> list[dict]:
    """General records of symbols the task never shows: a model fitted to the task alone
    finds them less likely than the untrained base did (forgetting)."""
    return [{"messages": [{"role": "user", "content": f"Echo {i}: {'#%&' * (i % 3 + 1)}"},
                          {"role": "assistant", "content": f"{'@!$' * (i % 4 + 2)} {i}"}]}
            for i in range(count)]


def evals_recipe(model: Path, evals: str = TASK_EVALS, eval_size: int = 4) -> str:
    """The tiny model trained on the memorisation task, with a rehearsal stage that mixes no
    general data in (ratio 0) but holds 4 records out for the forgetting check."""
    return textwrap.dedent(f"""\
        [model]
        path = {toml_value(str(model))}
        max_length = 64

        [[sources]]
        name = "d"
        use = "jsonl"
        path = "d.jsonl"
        format = "messages"

        [[stages]]
        use = "rehearsal"
        ratio = 0.0
        held_out = 4
        [stages.source]
        use = "jsonl"
        path = "general.jsonl"
        format = "messages"

        [split]
        eval_size = {eval_size}

        [train]
        use = "qlora"
        learning_rate = 1e-2
        batch_size = 4
        gradient_accumulation = 1
        lora_dropout = 0.0
        max_steps = 16
        eval_steps = 8
        logging_steps = 4
        """) + evals


def write_inputs(folder: Path) -> None:
    """The recipe's data files: the task (d.jsonl) and the general pool."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("d.jsonl", memorisation_rows()), ("general.jsonl", general_rows())):
        (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="session")
def evaluated_run(tiny_model, tmp_path_factory) -> tuple[str, Path, Path]:
    """(output, run dir, recipe file) of one `curate run` that trained and evaluated."""
    folder = tmp_path_factory.mktemp("evaluated")
    write_inputs(folder)
    code, output, run_dir = run_in(folder, evals_recipe(tiny_model), memorisation_rows())
    assert code == 0, output
    return output, run_dir, folder / "r.toml"


