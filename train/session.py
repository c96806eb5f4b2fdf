"""One training run, start to finish: read the dataset, advise, load the model, pick the
training template, train (resuming from the last checkpoint of an interrupted run with the same
inputs), and save the adapter with its card."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.chat_templates import render_text
from curate.runstore import fingerprint, write_text_atomic
from curate.train import card, data, sft
from curate.train.advisor import TrainingFacts, advise, world_size
from curate.train.model import (INITIAL_ADAPTER, ModelSource, check_tokenizer_as_auto,
                                quiet_library_output)
from curate.train.options import QLoRAOptions, effective_compute_dtype, effective_optimizer
from curate.train.template import (TrainingTemplate, check_as_checked,
                                   check_stop_token_trained, training_template)
from curate.training import TrainContext

DEFAULT_MAX_LENGTH = 2048
FINGERPRINT_FILE = "curate-fingerprint"
TRAINER_STATE = "trainer_state.json"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")

Loader = Callable[[ModelSource, QLoRAOptions, str, int, int], tuple[Any, Any]]
"""(source, options, compute dtype, max length, seed) -> (peft model, tokenizer)."""


def run_training(trainer_name: str, options: QLoRAOptions, context: TrainContext,
                 load: Loader) -> dict:
    quiet_library_output()
    paths = sft.RunPaths(context.run_dir)
    source = ModelSource.from_recipe(context.model, context.recipe_dir)
    train, held_out, facts = _read_dataset(context, options)
    hardware = detect_hardware(options)
    max_length = getattr(context.model, "max_length", None) or DEFAULT_MAX_LENGTH
    context.log(f"training {source.path} ({options.quantization}, {hardware.compute_dtype}"
                f" compute, {'GPU' if hardware.cuda else 'CPU'}) on {len(train):,} examples")
    model, tokenizer = load(source, options, hardware.compute_dtype, max_length, context.seed)
    template = _use_training_template(context, tokenizer, source, train)
    if options.packing:
        from curate.train.packing import require_isolated_packing

        require_isolated_packing(model)
    trainer = _trainer(options, paths, hardware, model, tokenizer, train, held_out, max_length,
                       context)
    run_print = fingerprint(trainer_name, options.__dict__, source.as_dict(), facts.sha256,
                            context.seed, template.text, max_length)
    resume = prepare_checkpoints(trainer, paths, run_print, context.log)
    elapsed = next(c for c in trainer.callback_handler.callbacks
                   if isinstance(c, sft.ElapsedTime))
    elapsed.before = sft.elapsed_before(resume)
    metrics = _metrics(trainer, _train(trainer, resume, context.log), resume, model,
                       elapsed.so_far())
    if trainer.is_world_process_zero():
        _save(trainer, tokenizer, paths, template, context, facts, {
            "trainer": trainer_name, "base": source.as_dict(), "options": dict(options.__dict__),
            "compute_dtype": hardware.compute_dtype, "max_length": max_length,
            "template": {"label": template.label, "how": template.how},
            "dataset_sha256": facts.sha256, "metrics": metrics})
        shutil.rmtree(paths.checkpoints)  # only an interrupted run resumes; this one is done
        context.log(f"adapter -> {paths.adapter}")
    return metrics


def _read_dataset(context: TrainContext, options: QLoRAOptions):
    """(train examples, eval examples, facts), with the advice for this data printed."""
    train = data.read_examples(context.train_file)
    held_out = data.read_examples(context.eval_file)
    data.require_examples(train, context.train_file)
    facts = data.dataset_facts(train, held_out, context.train_file, context.eval_file)
    for warning in advise(options, TrainingFacts(facts.train_examples, facts.rehearsal_examples,
                                                 bool(held_out), world_size())):
        context.log(f"advice: {warning}")
    return train, held_out, facts


TOKENIZER_SAMPLE = 256
"""Training examples the tokenizer is compared with AutoTokenizer's on (when they differ)."""


def _use_training_template(context, tokenizer, source, train) -> TrainingTemplate:
    """Select the training template as the checks did, refuse one (or a tokenizer) other than
    the chat-template step checked the data with, make it the tokenizer's (trl's
    assistant-only loss reads it from there) and check it trains the end-of-turn token."""
    template = training_template(context.model, context.recipe_dir, tokenizer)
    check_as_checked(template, tokenizer, context.run_dir)
    check_tokenizer_as_auto(tokenizer, source, (  # rendered only when the classes differ
        render_text(tokenizer, template.text, example["messages"])
        for example in train[:TOKENIZER_SAMPLE]))
    tokenizer.chat_template = template.text
    check_stop_token_trained(tokenizer, template, train[0]["messages"])
    return template


def detect_hardware(options: QLoRAOptions) -> sft.Hardware:
    import torch

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return sft.Hardware(cuda, effective_compute_dtype(options, cuda, bf16),
                        effective_optimizer(options, cuda))


def _trainer(options, paths, hardware, model, tokenizer, train, held_out, max_length, context):
    config = sft.sft_config(options, paths, hardware, max_length, bool(held_out), context.seed)
    trainer = sft.build_trainer(model, tokenizer, config, data.to_dataset(train),
                                data.to_dataset(held_out) if held_out else None,
                                sft.callbacks(options, paths, bool(held_out), context.log))
    sft.match_adapter_dtype(model, hardware.compute_dtype)
    if options.early_stopping_patience and not held_out:
        context.log("early stopping is off for this run: there is no eval split to stop on")
    return trainer


def prepare_checkpoints(trainer, paths: sft.RunPaths, run_print: str,
                        log: Callable[[str], None]) -> str | None:
    """The newest complete checkpoint of an interrupted run with the same inputs, to resume
    from. Checkpoints of other inputs are removed first, so a changed recipe never resumes, and
    so are those a kill left half-written."""
    if trainer.is_world_process_zero():
        _remove_stale_checkpoints(paths, run_print, log)
        _remove_incomplete_checkpoints(paths, log)
    trainer.accelerator.wait_for_everyone()
    last = newest_checkpoint(paths.checkpoints)
    initial = getattr(trainer.accelerator.unwrap_model(trainer.model), INITIAL_ADAPTER, None)
    if last is not None and initial is not None and not _same_initial_adapter(paths, initial):
        log("the PiSSA/OLoRA initialisation differs from the one the checkpoints were trained"
            " against (another GPU, torch or peft?): training starts over")
        last = None
        if trainer.is_world_process_zero():
            for folder in checkpoint_folders(paths.checkpoints):
                shutil.rmtree(folder)
    if last is None and initial is not None and trainer.is_world_process_zero():
        _save_initial_adapter(paths, initial)
    trainer.accelerator.wait_for_everyone()
    if last is not None:
        log(f"resuming from {last}")
    if trainer.is_world_process_zero():
        # the log goes on from the checkpoint: what a killed run logged after it is redone
        step = checkpoint_step(last)
        sft.keep_log_up_to(paths.log, step)
        sft.keep_tensorboard_up_to(trainer, paths.tensorboard, step)
    return str(last) if last else None


INITIAL_ADAPTER_FILE = "initial_adapter.safetensors"


def _save_initial_adapter(paths: sft.RunPaths, initial: dict) -> None:
    """A PiSSA/OLoRA run's initial adapter, beside its checkpoints: their base is the residual
    of that initialisation, which a resumed run must re-derive exactly."""
    from safetensors.torch import save_file

    save_file({name: tensor.contiguous() for name, tensor in initial.items()},
              str(paths.checkpoints / INITIAL_ADAPTER_FILE))


def _same_initial_adapter(paths: sft.RunPaths, initial: dict) -> bool:
    import torch
    from safetensors.torch import load_file

    file = paths.checkpoints / INITIAL_ADAPTER_FILE
    if not file.is_file():
        return False
    saved = load_file(str(file))
    return saved.keys() == initial.keys() and all(
        torch.equal(saved[name], tensor) for name, tensor in initial.items())


def checkpoint_folders(folder: Path) -> list[Path]:
    """transformers' `checkpoint-N` folders, oldest first."""
    found = [(int(match[1]), path) for path in folder.glob("checkpoint-*")
             if (match := CHECKPOINT_NAME.fullmatch(path.name)) and path.is_dir()]
    return [path for _, path in sorted(found)]


def checkpoint_state(folder: Path) -> dict | None:
    """The trainer state a checkpoint holds; None when it is incomplete. transformers writes
    trainer_state.json last, after the adapter, optimizer, scheduler and RNG states, so a kill
    while saving leaves a folder without it (or with a truncated one)."""
    try:
        return json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def checkpoint_step(folder: str | Path | None) -> int:
    """The step a checkpoint was saved at; 0 for none."""
    state = checkpoint_state(Path(folder)) if folder else None
    return int(state["global_step"]) if state else 0


def newest_checkpoint(folder: Path) -> Path | None:
    complete = [path for path in checkpoint_folders(folder) if checkpoint_state(path)]
    return complete[-1] if complete else None


def _remove_incomplete_checkpoints(paths: sft.RunPaths, log) -> None:
    for folder in checkpoint_folders(paths.checkpoints):
        if checkpoint_state(folder) is None:
            log(f"removing {folder.name}: an interrupted save left it incomplete (no"
                f" {TRAINER_STATE})")
            shutil.rmtree(folder)


def _train(trainer, resume: str | None, log: Callable[[str], None]) -> TrainCall:
    """Train, or resume; a checkpoint at the end of training (killed before the adapter was
    saved or its checkpoints removed) is only loaded: transformers would train one step more."""
    start = checkpoint_step(resume)  # read now: training may rotate the checkpoint away
    if resume and _training_ended(checkpoint_state(Path(resume))):
        log(f"{Path(resume).name} is the end of training: nothing left to train")
        _load_final_checkpoint(trainer, resume)
        return TrainCall(start, steps=0, loss=None)
    result = trainer.train(resume_from_checkpoint=resume)
    return TrainCall(start, trainer.state.global_step - start, result.training_loss)


def _training_ended(state: dict) -> bool:
    control = state.get("stateful_callbacks", {}).get("TrainerControl", {}).get("args", {})
    return state["global_step"] >= state["max_steps"] or bool(control.get("should_training_stop"))


def _load_final_checkpoint(trainer, checkpoint: str) -> None:
    """The trainer's state and adapter as training left them: the best checkpoint's adapter when
    the best model is loaded at the end."""
    from transformers import TrainerState

    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE))
    best = trainer.state.best_model_checkpoint
    use_best = trainer.args.load_best_model_at_end and best and Path(best).is_dir()
    peft_model = trainer.model
    peft_model.load_adapter(best if use_best else checkpoint, peft_model.active_adapter,
                            is_trainable=True)


def _remove_stale_checkpoints(paths: sft.RunPaths, run_print: str, log) -> None:
    marker = paths.checkpoints / FINGERPRINT_FILE
    if not marker.exists() or marker.read_text() != run_print:
        if any(paths.checkpoints.glob("checkpoint-*")):
            log("removing the checkpoints of a run with other inputs")
        shutil.rmtree(paths.checkpoints, ignore_errors=True)
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    write_text_atomic(marker, run_print)


@dataclass(frozen=True)
class TrainCall:
    """What this call of `trainer.train` did: the steps after `start` it trained, and their
    mean loss."""

    start: int
    steps: int
    loss: float | None


def _metrics(trainer, call: TrainCall, resume: str | None, model, seconds: float) -> dict:
    history = trainer.state.log_history
    evals = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    loss, loss_steps = whole_run_loss(history, call)
    metrics = {"train_loss": loss, "steps": trainer.state.global_step,
               "epochs": trainer.state.epoch, "trained_parameters": trained,
               "train_seconds": round(seconds, 3)}
    if loss_steps != trainer.state.global_step:
        metrics["train_loss_steps"] = loss_steps  # the steps train_loss averages
    if evals:
        metrics.update(eval_loss=min(evals), last_eval_loss=evals[-1])
    if trainer.state.num_input_tokens_seen:
        metrics["train_tokens"] = int(trainer.state.num_input_tokens_seen)
    if trainer.args.load_best_model_at_end and trainer.state.best_model_checkpoint:
        metrics["best_checkpoint"] = Path(trainer.state.best_model_checkpoint).name
    if resume:
        metrics["resumed_from"] = Path(resume).name
    return metrics


def whole_run_loss(history: list[dict], call: TrainCall) -> tuple[float | None, int]:
    """(mean training loss, steps it covers) over the whole run: the losses logged up to the
    checkpoint resumed from (each the mean since the log before it) and this call's. Steps
    between the checkpoint's last log and the checkpoint itself have no loss on record."""
    total, covered, last = 0.0, 0, 0
    for entry in history:
        if "loss" in entry and last < entry["step"] <= call.start:
            total += entry["loss"] * (entry["step"] - last)
            covered += entry["step"] - last
            last = entry["step"]
    if call.loss is not None:
        total += call.loss * call.steps
        covered += call.steps
    return (total / covered if covered else call.loss), covered


def _save(trainer, tokenizer, paths, template, context, facts, record) -> None:
    card.save_adapter(trainer, tokenizer, paths.adapter, template, context.log)
    card.write_record(paths.adapter, record)
    recipe_text = context.recipe_file.read_text(encoding="utf-8") if context.recipe_file else ""
    card.write_model_card(paths.adapter, record, recipe_text, facts)
