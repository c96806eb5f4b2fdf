"""The `qlora` trainer: QLoRA (or plain LoRA) supervised fine-tuning of the approved dataset
with transformers, peft, trl and bitsandbytes. torch and friends are imported when training
starts, never when curate starts."""

from __future__ import annotations

from curate import hookimpl
from curate.errors import RecipeError
from curate.train.advisor import advise, facts_from_recipe
from curate.train.options import QLoRAOptions, check_qlora_options
from curate.training import TrainContext, Trainer


class QLoRATrainer(Trainer):
    name = "qlora"
    Options = QLoRAOptions
    version = "2"  # 2: pissa/olora adapters saved as plain LoRA on the original weights

    @classmethod
    def check_options(cls, options: QLoRAOptions) -> None:
        check_qlora_options(options)

    @classmethod
    def check_recipe(cls, options: QLoRAOptions, recipe) -> None:
        if not recipe.model.path:
            raise RecipeError(str(recipe.file), "model.path", "[train] fine-tunes a base model"
                              " and [model] names none: add [model] path = \"MODEL\" (a local"
                              " folder or a hub id)")

    @classmethod
    def advice(cls, options: QLoRAOptions, recipe) -> list[str]:
        return advise(options, facts_from_recipe(recipe))

    def train(self, options: QLoRAOptions, context: TrainContext) -> dict:
        from curate.train.session import run_training

        return run_training(self.name, options, context, self.load)

    @staticmethod
    def load(source, options: QLoRAOptions, compute_dtype: str, max_length: int, seed: int):
        from curate.train.model import load_for_training

        return load_for_training(source, options, compute_dtype, seed)


@hookimpl
def register_trainers(register):
    from curate.train.unsloth import UnslothTrainer

    register(QLoRATrainer)
    register(UnslothTrainer)
