"""The trained run as the evaluations see it: the base model loaded exactly as it was trained
(the quantisation and compute dtype in `adapter/training.json`), the adapter on top, and the
tokenizer and chat template saved with the adapter. One load serves both sides: the base is
the same model with its adapter switched off.

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

SIDES = ("base", "tuned")
TEMPLATE_FILE = "chat_template.jinja"
RECORD_FILE = "training.json"


@dataclass
class TunedModel:
    model: Any
    """The peft model: the tuned side; `side(model, "base")` switches the adapter off."""
    tokenizer: Any
    template: str
    """The chat template it was trained with."""
    stop_ids: list[int]
    """The end-of-turn token ids (and the tokenizer's end-of-sequence id): generation stops there."""
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
                                        load_tokenizer, quiet_progress_bars)
        from curate.train.options import QLoRAOptions
    except ImportError as error:
        raise CurateError(f"the evaluations need the training libraries ({error}): install"
                          f" them with pip install 'curate[train]'") from None
    record = json.loads((adapter / RECORD_FILE).read_text(encoding="utf-8"))
    quiet_progress_bars()
    tokenizer = load_tokenizer(ModelSource(str(adapter), str(adapter)))
    if tokenizer.pad_token is None:  # batches need one; padding is masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    base = load_base_model(ModelSource(**record["base"]), QLoRAOptions(**record["options"]),
                           record["compute_dtype"])
    model = load_adapter(base, adapter).eval()
    template = (adapter / TEMPLATE_FILE).read_text(encoding="utf-8")
    return TunedModel(model, tokenizer, template, stop_ids(tokenizer, record), record["max_length"],
                      digest)


def stop_ids(tokenizer: Any, record: dict) -> list[int]:
    """The end-of-turn tokens of the template trained with (registered templates name them),
    and the tokenizer's end-of-sequence token."""
    from curate.pluginmanager import get_host

    entry = get_host().registry("chat template").entries.get(record["template"]["label"])
    tokens = list(entry.obj.end_of_turn) if entry else []
    ids = {tokenizer.convert_tokens_to_ids(token) for token in tokens}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
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
