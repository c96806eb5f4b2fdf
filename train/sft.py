"""trl's SFTTrainer set up from the `[train]` options: assistant-only loss on the messages,
cosine schedule with warmup, evaluation and checkpoints every `eval_steps`, early stopping on
the eval loss with the best checkpoint loaded at the end, logs in the run folder."""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from curate.runstore import write_text_atomic
from curate.train.options import QLoRAOptions


@dataclass(frozen=True)
class RunPaths:
    run_dir: Path

    @property
    def adapter(self) -> Path:
        return self.run_dir / "adapter"

    @property
    def work(self) -> Path:
        return self.run_dir / "train"

    @property
    def checkpoints(self) -> Path:
        return self.work / "checkpoints"

    @property
    def log(self) -> Path:
        return self.work / "log.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.work / "tensorboard"


@dataclass(frozen=True)
class Hardware:
    cuda: bool
    compute_dtype: str
    optimizer: str


def sft_config(options: QLoRAOptions, paths: RunPaths, hardware: Hardware, max_length: int,
               has_eval: bool, seed: int):
    from trl import SFTConfig

    early_stopping = has_eval and options.early_stopping_patience > 0
    return SFTConfig(**_checkpointing(SFTConfig, options.gradient_checkpointing),
        output_dir=str(paths.checkpoints), seed=seed, data_seed=seed,
        num_train_epochs=options.epochs, max_steps=options.max_steps or -1,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation,
        learning_rate=options.learning_rate, lr_scheduler_type=options.lr_scheduler,
        warmup_steps=options.warmup_steps, weight_decay=options.weight_decay,
        max_grad_norm=options.max_grad_norm, optim=hardware.optimizer,
        bf16=hardware.compute_dtype == "bfloat16" and hardware.cuda,
        fp16=hardware.compute_dtype == "float16" and hardware.cuda, use_cpu=not hardware.cuda,
        logging_steps=options.logging_steps, report_to="none", disable_tqdm=True,
        eval_strategy="steps" if has_eval else "no", eval_steps=options.eval_steps,
        save_strategy="steps", save_steps=options.eval_steps,
        save_total_limit=options.save_total_limit,
        load_best_model_at_end=early_stopping, metric_for_best_model="eval_loss",
        greater_is_better=False,
        max_length=max_length, assistant_only_loss=True, packing=options.packing,
        packing_strategy="bfd", ddp_find_unused_parameters=False,
        include_num_input_tokens_seen=_tokens_to_count(options.packing))


def _tokens_to_count(packing: bool) -> str:
    """The trainer state counts the tokens trained on, saved with each checkpoint, so the count
    covers a resumed run. Packed batches are padding-free (no attention mask to count by)."""
    return "all" if packing else "non_padding"


def _checkpointing(config_class, enabled: bool) -> dict:
    """transformers 5.2x renamed gradient_checkpointing to activation_checkpointing."""
    name = ("activation_checkpointing" if "activation_checkpointing" in
            config_class.__dataclass_fields__ else "gradient_checkpointing")
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False}}


class LogLines:
    """Each logged step as a JSON line in `train/log.jsonl`, and a short line for the user."""

    def __init__(self, file: Path, log: Callable[[str], None]):
        self.file = file
        self.say = log

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")
        where = f"step {state.global_step}/{state.max_steps}"
        if "loss" in logs:
            self.say(f"{where}  loss {logs['loss']:.4f}  lr {logs.get('learning_rate', 0):.3g}")
        if "eval_loss" in logs:
            self.say(f"{where}  eval loss {logs['eval_loss']:.4f}")


ELAPSED_FILE = "curate_elapsed.json"


class ElapsedTime:
    """Training seconds so far, written into each checkpoint: a resumed run's time adds the
    killed runs' (`before`, read from the checkpoint it resumes) to its own."""

    before = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                write_text_atomic(folder / ELAPSED_FILE,
                                  json.dumps({"seconds": round(self.so_far(), 3)}))

    def so_far(self) -> float:
        return self.before + time.monotonic() - getattr(self, "started", time.monotonic())


def elapsed_before(checkpoint: str | None) -> float:
    """The training seconds a checkpoint was saved after (0 when it did not record them)."""
    try:
        return float(json.loads((Path(checkpoint) / ELAPSED_FILE).read_text())["seconds"])
    except (TypeError, OSError, ValueError, KeyError):
        return 0.0


def keep_log_up_to(file: Path, step: int) -> None:
    """Drop the log lines of the steps after `step`: a resumed run logs them again, and a fresh
    start (step 0) shows its own run only."""
    if not step or not file.is_file():
        file.unlink(missing_ok=True)
        return
    kept = [line for line in file.read_text(encoding="utf-8").splitlines()
            if 0 < _logged_step(line) <= step]
    write_text_atomic(file, "".join(line + "\n" for line in kept))


def _logged_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 0  # a line a kill cut short


def callbacks(options: QLoRAOptions, paths: RunPaths, has_eval: bool,
              log: Callable[[str], None]) -> list:
    from transformers import EarlyStoppingCallback, TrainerCallback

    class CurateLog(LogLines, TrainerCallback):
        """LogLines, as the transformers callback it must be."""

    class CurateElapsed(ElapsedTime, TrainerCallback):
        """ElapsedTime, as the transformers callback it must be."""

    result: list[Any] = [CurateLog(paths.log, log), CurateElapsed()]
    if has_eval and options.early_stopping_patience:
        result.append(EarlyStoppingCallback(options.early_stopping_patience))
    if importlib.util.find_spec("tensorboard") is not None:
        result.append(tensorboard_callback(paths.tensorboard))
    return result


def tensorboard_callback(folder: Path):
    """transformers' TensorBoard callback writing into the run folder. Its writer is made
    lazily on the main process only, so DDP ranks do not each leave an events file; set
    `resumed_at` to a checkpoint's step and what a killed run logged after it is purged."""
    from transformers.integrations import TensorBoardCallback

    class RunFolderTensorBoard(TensorBoardCallback):
        resumed_at = 0

        def _init_summary_writer(self, args, log_dir=None):
            # transformers 4.x and 5.x both create the writer here, from different settings
            purge = self.resumed_at + 1 if self.resumed_at else None
            self.tb_writer = self._SummaryWriter(log_dir=str(folder), purge_step=purge)

    return RunFolderTensorBoard()


def keep_tensorboard_up_to(trainer, folder: Path, step: int) -> None:
    """On a fresh start (step 0) the folder's earlier runs go; on a resume, the events a killed
    run wrote after `step` are purged by the writer."""
    if not step:
        shutil.rmtree(folder, ignore_errors=True)
    for callback in trainer.callback_handler.callbacks:
        if hasattr(callback, "resumed_at"):
            callback.resumed_at = step


def build_trainer(model, tokenizer, config, train_dataset, eval_dataset, extra_callbacks):
    from transformers import PrinterCallback
    from trl import SFTTrainer

    trainer = SFTTrainer(model=model, args=config, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=tokenizer,
                         callbacks=extra_callbacks)
    trainer.remove_callback(PrinterCallback)  # LogLines says it shorter
    return trainer


def match_adapter_dtype(model, compute_dtype: str) -> None:
    """trl casts the adapters of a quantised base to bf16; with float32 compute (CPU) that
    only slows every LoRA product down, so they go back to float32 before the optimizer is
    built."""
    import torch

    if compute_dtype != "float32":
        return
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
