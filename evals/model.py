"""The trained run as the evaluations see it: the base model loaded exactly as it was trained
(the quantisation and compute dtype in `adapter/training.json`), the adapter on top, the
tokenizer and training chat template saved with the adapter, and the stop tokens of its
`generation_config.json`. One load serves both sides: the base is the same model with its
adapter switched off.

The last model loaded is kept for the next evaluation of the same adapter, so a recipe's
several evaluations load it once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import CurateError
from curate.train.inference_template import saved_training_template

SIDES = ("base", "tuned")
RECORD_FILE = "training.json"


@dataclass
class TunedModel:
    model: Any
    """The peft model: the tuned side; `side(model, "base")` switches the adapter off."""
    tokenizer: Any
    template: str
    """The chat template it was trained with."""
    stop_ids: list[int]
    """The end-of-turn token ids trained (and the tokenizer's end-of-sequence id): generation
    stops there, as the adapter's generation_config.json says."""
    max_length: int
    digest: str
    """A hash of the adapter folder: what the answers of the tuned side depend on."""


_loaded: dict[str, TunedModel] = {}


def adapter_folder(run_dir: Path) -> Path:
    """`run_dir/adapter`, or a CurateError when the run has no adapter trained by curate."""
    adapter = run_dir / "adapter"
    if not (adapter / RECORD_FILE).is_file():
        raise CurateError(f"{run_dir}: no trained adapter ({adapter / RECORD_FILE} is missing):"
                          f" the built-in evaluations need a run trained by `qlora` or"
                          f" `unsloth`; run the recipe with a [train] section first")
    return adapter


def load_tuned(run_dir: Path) -> TunedModel:
    """The run's base model with its adapter, loaded once per adapter."""
    from curate.finishing import folder_digest

    adapter = adapter_folder(run_dir)
    digest = folder_digest(adapter)
    if digest not in _loaded:
        _loaded.clear()  # one model in memory at a time
        _loaded[digest] = _load(adapter, digest)
    return _loaded[digest]


def _load(adapter: Path, digest: str) -> TunedModel:
    import json

    try:
        import peft  # noqa: F401  (missing: the hint below, not a traceback later)

        from curate.train.model import (ModelSource, load_adapter, load_base_model,
                                        load_tokenizer, quiet_library_output)
        from curate.train.options import QLoRAOptions
        from curate.train.stop_tokens import saved_stop_ids
    except ImportError as error:
        raise CurateError(f"the evaluations need the training libraries ({error}): install"
                          f" them with pip install 'curate[train]'") from None
    record = json.loads((adapter / RECORD_FILE).read_text(encoding="utf-8"))
    quiet_library_output()
    tokenizer = load_tokenizer(ModelSource(str(adapter), str(adapter)))
    if tokenizer.pad_token is None:  # batches need one; padding is masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    base = load_base_model(ModelSource(**record["base"]), QLoRAOptions(**record["options"]),
                           record["compute_dtype"])
    model = load_adapter(base, adapter).eval()
    template = saved_training_template(adapter)
    stops = saved_stop_ids(adapter) or stop_ids(tokenizer, record, template)
    return TunedModel(model, tokenizer, template, stops, record["max_length"], digest)


def stop_ids(tokenizer: Any, record: dict, template: str = "") -> list[int]:
    """For an adapter saved without its stop tokens: the end-of-turn tokens of the template
    trained with (a registered template names them; else those found ending its trained
    turns), and the tokenizer's end-of-sequence token."""
    from curate.pluginmanager import get_host
    from curate.train.stop_tokens import trained_end_ids

    label = record["template"]["label"]
    entry = get_host().registry("chat template").entries.get(label)
    end_of_turn = tuple(entry.obj.end_of_turn) if entry else ()
    ends = trained_end_ids(tokenizer, template, end_of_turn, label) if (
        end_of_turn or template) else []
    ids = {*ends, tokenizer.eos_token_id}
    return sorted(i for i in ids if i is not None and i != tokenizer.unk_token_id)


def side(model: Any, name: str):
    """A context in which `model` answers as the base (adapter off) or as tuned."""
    return model.disable_adapter() if name == "base" else nullcontext()


@contextmanager
def inference() -> Iterator[None]:
    import torch

    with torch.inference_mode():
        yield


def device_of(model: Any):
    return next(model.parameters()).device
