"""The `unsloth` trainer: the qlora trainer with unsloth's model loading and kernels, when
unsloth is installed and a CUDA GPU is present. Otherwise it says so in one line and trains
through the standard qlora path, with the same options and outputs."""

from __future__ import annotations

import importlib.util

from curate.options import OptionError
from curate.train.options import QLoRAOptions
from curate.train.trainer import QLoRATrainer
from curate.training import TrainContext

LLAMA_LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"]


class UnslothTrainer(QLoRATrainer):
    name = "unsloth"

    @classmethod
    def check_options(cls, options: QLoRAOptions) -> None:
        super().check_options(options)
        if options.quantization == "fp4":
            raise OptionError("quantization", "unsloth loads nf4, 8bit or none, not fp4")
        if options.use_dora or options.init_lora_weights != "default":
            key = "use_dora" if options.use_dora else "init_lora_weights"
            raise OptionError(key, "unsloth trains plain LoRA / rsLoRA from the default"
                                   " initialisation: use the qlora trainer for this")

    def train(self, options: QLoRAOptions, context: TrainContext) -> dict:
        from curate.train.session import run_training

        missing = unavailable_reason()
        if missing:
            context.log(f"unsloth: {missing}, so training takes the standard qlora path")
            return run_training(self.name, options, context, self.load)
        return run_training(self.name, options, context, load_with_unsloth)


def unavailable_reason() -> str | None:
    if importlib.util.find_spec("unsloth") is None:
        return "not installed (pip install unsloth)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU here"
    return None


def load_with_unsloth(source, options: QLoRAOptions, compute_dtype: str, max_length: int,
                      seed: int):
    from unsloth import FastLanguageModel

    from curate.train.model import load_tokenizer, torch_dtype

    # The tokenizer the checks counted with ([model] tokenizer included), not unsloth's copy:
    # the trainer refuses one the chat-template step did not check the data with.
    tokenizer = load_tokenizer(source)
    model, _ = FastLanguageModel.from_pretrained(
        model_name=source.path, max_seq_length=max_length, dtype=torch_dtype(compute_dtype),
        load_in_4bit=options.quantization == "nf4", load_in_8bit=options.quantization == "8bit",
        revision=source.revision, trust_remote_code=source.trust_remote_code)
    targets = (LLAMA_LINEAR_MODULES if options.target_modules == "all-linear"
               else options.target_modules)
    model = FastLanguageModel.get_peft_model(
        model, r=options.lora_r, lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout, target_modules=targets, bias="none",
        use_gradient_checkpointing="unsloth" if options.gradient_checkpointing else False,
        use_rslora=options.use_rslora, random_state=seed,
        modules_to_save=list(options.modules_to_save) or None)
    return model, tokenizer
