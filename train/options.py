"""The `[train]` options of the `qlora` trainer, and the checks `curate validate` runs on them.

Defaults follow the QLoRA recipe: a 4-bit NF4 base with double quantisation, bf16 compute on a
GPU, LoRA on every linear layer, a paged 32-bit AdamW, cosine schedule with warmup.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from curate.errors import did_you_mean
from curate.options import OptionError, option

INITIALISATIONS = ("default", "gaussian", "olora", "orthogonal", "pissa", "loftq")
"""LoRA initialisations offered, plus `pissa_niter_N` (fast-SVD PiSSA with N iterations)."""

KNOWN_OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor",
    "adamw_anyprecision", "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad",
    "adamw_bnb_8bit", "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit",
    "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit",
    "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor",
    "galore_adamw_layerwise", "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise",
    "lomo", "adalomo", "grokadamw", "schedule_free_radam", "schedule_free_adamw",
    "schedule_free_sgd", "apollo_adamw", "apollo_adamw_layerwise", "stable_adamw")
"""transformers 5.24's `OptimizerNames`: used when the installed transformers cannot be read."""


def optimizer_names() -> tuple[str, ...]:
    """The installed transformers' `optim` names, read from its source: importing
    `transformers.training_args` imports torch, which `curate validate` must not."""
    spec = importlib.util.find_spec("transformers")
    folders = spec.submodule_search_locations if spec else None
    source = Path(next(iter(folders or []), "")) / "training_args.py"
    if not source.is_file():
        return KNOWN_OPTIMIZERS
    body = source.read_text(encoding="utf-8").split("class OptimizerNames", 1)[-1]
    body = body.split("\nclass ", 1)[0].split("\ndef ", 1)[0]
    return tuple(re.findall(r'^\s+[A-Z0-9_]+ = "([a-z0-9_]+)"', body, re.MULTILINE)) or \
        KNOWN_OPTIMIZERS
"""transformers' `optim` names (its OptimizerNames, which cannot be imported without torch:
tests/train/test_options.py checks this list against the installed transformers)."""

TASK_RANKS = {"simple": 4, "general": 8, "complex": 16, "style": 16, "near-full": 64}
"""The LoRA rank that usually suits each kind of task (the advisor compares `lora_r` with it)."""


@dataclass
class QLoRAOptions:
    quantization: Literal["nf4", "fp4", "8bit", "none"] = option(
        "nf4", help="how the base model's weights are held: 4-bit NF4 or FP4, 8-bit, or none"
                    " (plain LoRA on a 16-bit base)")
    double_quantization: bool = option(True, help="quantise the 4-bit scales too (~0.37 bits"
                                                  " per parameter saved)")
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = option(
        "auto", help="dtype of the computation; auto is bfloat16 on a GPU that has it, else"
                     " float32 (bfloat16 matrix products are slow on most CPUs)")
    lora_r: int = option(8, min=1, help="LoRA rank")
    lora_alpha: float = option(16, min=0, help="LoRA scale numerator: the update is scaled by"
                                               " alpha / r (alpha / sqrt(r) with rsLoRA)")
    lora_dropout: float = option(0.05, min=0.0, max=0.9, help="dropout on the LoRA input")
    target_modules: str | list[str] = option(
        "all-linear", help='"all-linear", or a list of module names such as ["q_proj", "v_proj"]')
    use_rslora: bool = option(False, help="rank-stabilised LoRA: scale by alpha / sqrt(r)")
    use_dora: bool = option(False, help="weight-decomposed LoRA (DoRA)")
    init_lora_weights: str = option(
        "default", help="default, gaussian, orthogonal, olora, pissa or pissa_niter_N (these"
                        " three on a 16-bit base only) or loftq (NF4 base from local"
                        " safetensors, CUDA GPU only)")
    modules_to_save: list[str] = option([], help="modules trained in full and saved with the"
                                                 " adapter, e.g. [\"lm_head\"]")
    task: Literal["simple", "general", "complex", "style", "near-full"] = option(
        "general", help="what the adapter must learn; the advisor compares lora_r with it")
    learning_rate: float = option(2e-4, min=0.0, help="peak learning rate")
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = option(
        "cosine", help="learning-rate schedule after warmup")
    warmup_steps: float = option(0.03, min=0.0, help="warmup: a number of steps, or below 1 a"
                                                     " fraction of all steps")
    epochs: float = option(3.0, min=0.0, help="passes over the training set")
    max_steps: int = option(0, min=0, help="stop after this many optimizer steps (0: all"
                                           " epochs)")
    batch_size: int = option(4, min=1, help="examples per device per step")
    gradient_accumulation: int = option(4, min=1, help="steps whose gradients are summed"
                                                       " before each update")
    weight_decay: float = option(0.0, min=0.0, help="AdamW weight decay")
    max_grad_norm: float = option(0.3, min=0.0, help="gradient clipping (QLoRA used 0.3)")
    optimizer: str = option("auto", help="auto is paged_adamw_32bit on a GPU, adamw_torch on"
                                         " CPU; or any transformers `optim` name")
    gradient_checkpointing: bool = option(True, help="recompute activations in the backward"
                                                     " pass: far less memory, ~30% slower")
    packing: bool = option(False, help="pack several examples into each sequence (refused for"
                                       " models whose attention would mix them)")
    eval_steps: int = option(50, min=1, help="evaluate (and save a checkpoint) every N steps")
    early_stopping_patience: int = option(3, min=0, help="evaluations without a better eval"
                                                         " loss before stopping; 0 turns it off")
    logging_steps: int = option(10, min=1, help="log the loss every N steps")
    save_total_limit: int = option(2, min=1, help="checkpoints kept (the best is always kept)")


def check_qlora_options(options: QLoRAOptions) -> None:
    """Combinations that cannot work: raise OptionError naming the key and the fix."""
    _check_target_modules(options.target_modules)
    _check_initialisation(options)
    _check_optimizer(options.optimizer)
    init = options.init_lora_weights
    if options.use_dora and (init.startswith("pissa") or init in ("olora", "loftq")):
        raise OptionError("use_dora", f"DoRA cannot start from init_lora_weights ="
                                      f" \"{options.init_lora_weights}\": use one or the other")


def _check_target_modules(target: str | list[str]) -> None:
    if isinstance(target, str) and target != "all-linear":
        raise OptionError("target_modules", f'expected "all-linear" or a list of module names,'
                                            f' found "{target}": write ["{target}"]')
    if isinstance(target, list) and not target:
        raise OptionError("target_modules", 'the list is empty: name modules or use'
                                            ' "all-linear"')


def _check_optimizer(name: str) -> None:
    known = optimizer_names()
    if name != "auto" and name not in known:
        raise OptionError("optimizer", f"unknown optimizer '{name}'{did_you_mean(name, known)}"
                                       f" (auto, or a transformers `optim` name such as"
                                       f" adamw_torch, paged_adamw_32bit or adamw_8bit)")


def _check_initialisation(options: QLoRAOptions) -> None:
    init = options.init_lora_weights
    if init not in INITIALISATIONS and not re.fullmatch(r"pissa_niter_\d+", init):
        raise OptionError("init_lora_weights", f"unknown initialisation '{init}' (known:"
                                               f" {', '.join(INITIALISATIONS)}, pissa_niter_N)")
    if (init.startswith("pissa") or init == "olora") and options.quantization != "none":
        raise OptionError("init_lora_weights", f"{init} moves part of each full-precision weight"
                                               f" into the adapter, which is saved as plain LoRA"
                                               f" on the original weights; on a"
                                               f" {options.quantization} base no such adapter"
                                               f" reproduces the trained model: set quantization"
                                               f" = \"none\", or use \"default\"")
    if init == "loftq" and options.quantization != "nf4":
        raise OptionError("init_lora_weights", "LoftQ initialises against an NF4 base: set"
                                               " quantization = \"nf4\"")
    if init == "loftq" and not cuda_driver_present():
        raise OptionError("init_lora_weights", LOFTQ_NEEDS_CUDA)
    if init == "orthogonal" and options.lora_r % 2:
        raise OptionError("lora_r", f"the orthogonal initialisation needs an even rank, found"
                                    f" {options.lora_r}")


LOFTQ_NEEDS_CUDA = ("LoftQ (peft's replace_lora_weights_loftq) computes on a CUDA GPU and this"
                    " machine has none: use \"default\" here, or train on a GPU")


def cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is visible, judged without importing torch (validate stays fast);
    training checks torch.cuda.is_available() itself before LoftQ."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")


def effective_compute_dtype(options: QLoRAOptions, cuda: bool, cuda_bf16: bool) -> str:
    if options.compute_dtype != "auto":
        return options.compute_dtype
    if cuda:
        return "bfloat16" if cuda_bf16 else "float16"
    return "float32"


def effective_optimizer(options: QLoRAOptions, cuda: bool) -> str:
    if options.optimizer != "auto":
        return options.optimizer
    return "paged_adamw_32bit" if cuda else "adamw_torch"
