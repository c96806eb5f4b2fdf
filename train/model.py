"""Loading the base model at its quantisation, and putting LoRA adapters on it.

`trust_remote_code` is passed through only from the recipe's `[model]` (off by default): code
in a model repository never runs unless the recipe says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curate.errors import CurateError, did_you_mean
from curate.train.options import LOFTQ_NEEDS_CUDA, QLoRAOptions


@dataclass(frozen=True)
class ModelSource:
    """Where the base model and its tokenizer come from, resolved against the recipe."""

    path: str
    tokenizer: str
    revision: str | None = None
    trust_remote_code: bool = False

    @classmethod
    def from_recipe(cls, model: Any, recipe_dir: Path) -> ModelSource:
        if model is None or not model.path:
            raise CurateError("[model] path is missing: the trainer needs a base model (a local"
                              " folder or a hub id)")
        path = _resolve(model.path, recipe_dir)
        tokenizer = _resolve(model.tokenizer, recipe_dir) if model.tokenizer else path
        return cls(path, tokenizer, model.revision, model.trust_remote_code)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def is_local(self) -> bool:
        return Path(self.path).is_dir()


def _resolve(location: str, recipe_dir: Path) -> str:
    """A folder relative to the recipe when one exists there; else a hub id as written."""
    local = recipe_dir / location
    if local.exists():
        return str(local.resolve())
    if location.startswith((".", "/", "~")):
        raise CurateError(f"[model] '{location}': no such folder (relative to the recipe,"
                          f" {recipe_dir})")
    return location


def torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16,
            "float32": torch.float32}[name]


def quantization_config(options: QLoRAOptions, compute_dtype: str):
    from transformers import BitsAndBytesConfig

    if options.quantization == "none":
        return None
    if options.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=options.quantization,
                              bnb_4bit_use_double_quant=options.double_quantization,
                              bnb_4bit_compute_dtype=torch_dtype(compute_dtype))


def device_map() -> dict | None:
    """Each process's whole model on its own GPU (DDP under `accelerate launch`); CPU: none."""
    import torch

    if not torch.cuda.is_available():
        return None
    from accelerate import PartialState

    return {"": PartialState().local_process_index}


def quiet_library_output() -> None:
    """No progress bars (curate prints its own progress lines, which the libraries' bars
    would interleave with) and no deprecation notices about transformers' own internals
    (nothing a recipe can change)."""
    import warnings

    import datasets
    from transformers.utils import logging

    datasets.disable_progress_bars()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")


def load_tokenizer(source: ModelSource):
    """The tokenizer, loaded the way the checks before training load it
    (`curate.tokenizer.load_chat_tokenizer`), so training counts the tokens they counted."""
    from curate.tokenizer import load_chat_tokenizer

    return load_chat_tokenizer(source.tokenizer, source.revision, source.trust_remote_code)


def check_tokenizer_as_auto(tokenizer, source: ModelSource, texts: Iterable[str]) -> None:
    """The tokenizer splits `texts` (training text) as transformers' AutoTokenizer does, which
    inference loads: a folder's tokenizer_config.json can name a class AutoTokenizer
    overrides for that model type, which the checks cannot ask without importing torch."""
    from transformers import AutoTokenizer

    auto = _loading(source.tokenizer, lambda: AutoTokenizer.from_pretrained(
        source.tokenizer, revision=source.revision, trust_remote_code=source.trust_remote_code))
    if type(auto) is type(tokenizer):
        return
    for number, text in enumerate(texts, start=1):
        ours, theirs = _token_ids(tokenizer, text), _token_ids(auto, text)
        if ours != theirs:
            raise CurateError(
                f"[model] '{source.tokenizer}': its tokenizer_config.json names"
                f" {type(tokenizer).__name__}, which the checks and training use, but"
                f" AutoTokenizer (what inference uses) loads {type(auto).__name__} and splits"
                f" training text {number} into {len(theirs):,} tokens instead of {len(ours):,}:"
                f" write \"tokenizer_class\": \"{type(auto).__name__}\" in its"
                f" tokenizer_config.json so that all of them use the same")


def _token_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def load_base_model(source: ModelSource, options: QLoRAOptions, compute_dtype: str):
    from transformers import AutoModelForCausalLM

    return _loading(source.path, lambda: AutoModelForCausalLM.from_pretrained(
        source.path, revision=source.revision, trust_remote_code=source.trust_remote_code,
        dtype=torch_dtype(compute_dtype), device_map=device_map(),
        quantization_config=quantization_config(options, compute_dtype)))


def _loading(location: str, load):
    try:
        return load()
    except (OSError, ValueError) as error:
        reason = (str(error).strip() or type(error).__name__).splitlines()[0]
        if "custom code" in reason or "trust_remote_code" in reason:
            reason = ("it ships its own Python code, which curate does not run unless the recipe"
                      " says [model] trust_remote_code = true (only for code you trust)")
        raise CurateError(f"[model] '{location}': cannot load it: {reason}") from None


SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")


def lora_config(options: QLoRAOptions):
    from peft import LoraConfig

    init = options.init_lora_weights
    return LoraConfig(
        r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
        target_modules=options.target_modules, use_rslora=options.use_rslora,
        use_dora=options.use_dora, init_lora_weights=True if init in ("default", "loftq") else init,
        modules_to_save=list(options.modules_to_save) or None, bias="none", task_type="CAUSAL_LM")


def add_lora(model, options: QLoRAOptions, source: ModelSource, seed: int):
    """The base prepared for training (k-bit preparation, gradient checkpointing) with fresh
    LoRA adapters, initialised from `seed`; only adapter (and modules_to_save) parameters
    require gradients."""
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    require_known_modules(model, options)
    checkpointing = {"use_reentrant": False}
    if options.quantization != "none":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=options.gradient_checkpointing,
            gradient_checkpointing_kwargs=checkpointing)
    elif options.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
        model.enable_input_require_grads()
    model.config.use_cache = False
    set_seed(seed)
    peft_model = get_peft_model(model, lora_config(options))
    if changes_base(options.init_lora_weights):
        keep_initial_adapter(peft_model)
    if options.init_lora_weights == "loftq":
        _loftq(peft_model, source)
    return peft_model


BASE_CHANGING_INITIALISATIONS = ("pissa", "olora", "corda", "lora_ga")
"""Initialisations that move the top of each base weight W into the adapter (the base becomes
W - B0 A0): an adapter saved as trained only works on that residual base."""

INITIAL_ADAPTER = "curate_initial_adapter"
"""The attribute of the peft model holding its initial adapter weights (B0, A0)."""


def changes_base(init) -> bool:
    return str(init).lower().startswith(BASE_CHANGING_INITIALISATIONS)


def keep_initial_adapter(peft_model) -> None:
    """Keep B0, A0 as initialised, before any training step (a resumed run re-initialises
    the same way from the same seed, and its base is the residual of that initialisation):
    the final save subtracts them to give plain LoRA on the original weights."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model)
    setattr(peft_model, INITIAL_ADAPTER, {name: tensor.detach().to("cpu", copy=True)
                                          for name, tensor in state.items() if "lora_" in name})


def require_known_modules(model, options: QLoRAOptions) -> None:
    """Each name in target_modules and modules_to_save matches a module, the way peft matches
    them (peft itself only fails when no name matches)."""
    if isinstance(options.target_modules, list):
        _require_matches(model, "target_modules", options.target_modules,
                         lambda name, wanted: name == wanted or name.endswith(f".{wanted}"))
    _require_matches(model, "modules_to_save", options.modules_to_save,
                     lambda name, wanted: name.endswith(wanted))


def _require_matches(model, key: str, wanted_names: list[str], matches) -> None:
    names = [name for name, _ in model.named_modules()]
    for wanted in wanted_names:
        if not any(matches(name, wanted) for name in names):
            leaves = weight_module_names(model)
            raise CurateError(f"[train] {key}: no module of the model is named '{wanted}'"
                              f" (its modules: {', '.join(leaves)}){did_you_mean(wanted, leaves)}")


def weight_module_names(model) -> list[str]:
    """The distinct short names of the modules holding weights, in model order (embed_tokens,
    q_proj, ..., lm_head)."""
    return list(dict.fromkeys(
        name.rsplit(".", 1)[-1] for name, module in model.named_modules()
        if name and next(module.parameters(recurse=False), None) is not None))


def _loftq(peft_model, source: ModelSource) -> None:
    import torch
    from peft import replace_lora_weights_loftq

    if not torch.cuda.is_available():
        raise CurateError(f"[train] init_lora_weights: {LOFTQ_NEEDS_CUDA}")
    folder = Path(source.path)
    if not any((folder / name).is_file() for name in SAFETENSORS):
        raise CurateError(f"[train] init_lora_weights = \"loftq\" reads the full-precision"
                          f" weights from a local model.safetensors (or its sharded index), and"
                          f" '{source.path}' has neither: download the model to a folder first")
    # peft finds model.safetensors.index.json next to this path when the weights are sharded
    replace_lora_weights_loftq(peft_model, model_path=str(folder / SAFETENSORS[0]))


def load_for_training(source: ModelSource, options: QLoRAOptions, compute_dtype: str,
                      seed: int):
    """(peft model, tokenizer): the quantised base with LoRA adapters, ready for the trainer."""
    tokenizer = load_tokenizer(source)
    model = load_base_model(source, options, compute_dtype)
    return add_lora(model, options, source, seed), tokenizer


def load_adapter(base, folder: Path):
    """The saved adapter on `base` (a peft model). An adapter saved unconverted from PiSSA or
    OLoRA (by curate before it converted them) is refused: peft would re-run the
    initialisation on load and rewrite the base weights."""
    import json

    from peft import PeftModel

    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CurateError(f"{folder}: no readable adapter_config.json ({error}): the adapter"
                          f" folder is incomplete; train again (curate run --force)") from None
    init = config.get("init_lora_weights")
    if changes_base(init):
        raise CurateError(f"{folder}: this {init} adapter fits the residual base its"
                          f" initialisation left, not the original weights (curate now saves"
                          f" such adapters converted to plain LoRA): train it again (curate run"
                          f" --force)")
    return PeftModel.from_pretrained(base, folder)
