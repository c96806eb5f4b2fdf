"""After curation: hand the final dataset to the trainer, then to the evaluations.

Both are cached like curation steps: training reruns only when its options, its plugin's
version, the dataset, the seed, [model], the chat template or the local model folder's files
changed, and an evaluation only when it, the trained adapter (a hash of `adapter/`), the base
model or the data it reads did. `curate eval` runs the same evaluations on a trained run folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from curate.console import Console
from curate.errors import CurateError
from curate.options import options_to_dict
from curate.pluginmanager import get_host
from curate.recipe import PluginSpec, Recipe
from curate.records import plugin_code, plugin_label
from curate.runstore import (RunFolder, fingerprint, read_json, write_json_atomic,
                             write_text_atomic)
from curate.template_step import (TemplateStepOptions, has_model, recorded_template,
                                  template_fingerprint)
from curate.training import TrainContext


def plugin_fingerprint(spec: PluginSpec, *inputs: object) -> str:
    return fingerprint(spec.identity, options_to_dict(spec.options), *inputs)


def train_context(recipe: Recipe, folder: RunFolder, console: Console) -> TrainContext:
    return TrainContext(folder.path, recipe.file.parent, folder.dataset / "train.jsonl",
                        folder.dataset / "eval.jsonl", recipe.run.seed, console.info,
                        recipe.model, recipe.file, folder.dataset / "general_eval.jsonl")


def train_fingerprint(recipe: Recipe, split: dict, run_dir: Path) -> str:
    """What training depends on: the trainer and its options, the dataset, seed and [model],
    the chat template and the model's files."""
    return plugin_fingerprint(recipe.train, split["train_sha256"], split["eval_sha256"],
                              recipe.run.seed, options_to_dict(recipe.model),
                              chat_template_used(recipe, run_dir), model_files_digest(recipe))


def chat_template_used(recipe: Recipe, run_dir: Path) -> object:
    """The template the chat-template step chose (its text's digest and the tokenizer class,
    which the trainer checks it trains with): another plugin's template changing retrains
    nothing. Without a recorded step, everything the choice depends on."""
    return recorded_template(run_dir) or chat_template_inputs(recipe)


def chat_template_inputs(recipe: Recipe) -> list:
    """What the chat-template step's output depends on (the tokenizer's files, a .jinja named
    in [model], every registered template)."""
    if not has_model(recipe.model):
        return []
    options = TemplateStepOptions(**vars(recipe.model), recipe_dir=str(recipe.file.parent))
    return template_fingerprint(options, get_host().registry("chat template"))


def model_files_digest(recipe: Recipe) -> str:
    """A digest of the local model and tokenizer folders' files by relative name, size and
    modification time ("" for a hub id, which [model]'s name and revision stand for): weights
    replaced in place retrain, without hashing gigabytes on every run. A copied folder counts
    as changed (new times): a retrain too many, never a stale adapter."""
    lines = []
    for name in sorted({recipe.model.path, recipe.model.tokenizer} - {None, ""}):
        location = recipe.file.parent / name
        for path in _model_files(location):
            stat = path.stat()
            lines.append(f"{name}:{path.relative_to(location).as_posix()}:{stat.st_size}:"
                         f"{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest() if lines else ""


def _model_files(location: Path) -> list[Path]:
    """The files of a local model folder (or the file itself), without hidden ones such as a
    hub download's `.cache/`, whose times change on every re-download."""
    if location.is_file():
        return [location]
    if not location.is_dir():
        return []
    return sorted(path for path in location.rglob("*") if path.is_file()
                  and not any(part.startswith(".")
                              for part in path.relative_to(location).parts))


def train_and_evaluate(recipe: Recipe, folder: RunFolder, split: dict, console: Console,
                       force: bool, evals_console: Console | None = None) -> dict:
    context = train_context(recipe, folder, console)
    spec = recipe.train
    train_print = train_fingerprint(recipe, split, folder.path)
    result = cached_call(folder.path / "train.json", train_print, force, console, "train",
                         lambda: {"use": spec.use, "metrics": run_trainer(spec, context)})
    if recipe.evals:
        result["evals"] = evaluate(recipe, folder, evals_console or console, force)
    return result


def evaluate(recipe: Recipe, folder: RunFolder, console: Console, force: bool) -> dict:
    """Run the recipe's evaluations on the trained run folder, each cached by its options,
    its plugin and what it reads; write every result, by name, to `eval/results.json`."""
    context = train_context(recipe, folder, console)
    inputs = evaluation_inputs(recipe, folder.path)
    # A failing evaluation must not leave an earlier run's results looking current.
    (folder.path / "eval" / "results.json").unlink(missing_ok=True)
    results = {
        evaluation.name: cached_call(
            folder.path / "eval" / "cached" / f"{evaluation.name}.json",
            plugin_fingerprint(evaluation, inputs), force, console, f"eval {evaluation.name}",
            lambda e=evaluation: run_evaluation(e, dataclasses.replace(context,
                                                                       evaluation=e.name)))
        for evaluation in recipe.evals}
    write_results(folder.path / "eval" / "results.json", results)
    return results


def run_trainer(spec: PluginSpec, context: TrainContext) -> dict:
    """The trainer's metrics (none when it returns None), checked to be a JSON object."""
    label = plugin_label("trainer", spec.name, spec.identity)
    with plugin_code(label):
        metrics = spec.plugin().train(spec.options, context)
    return checked_result({} if metrics is None else metrics, label, "train()")


def run_evaluation(spec: PluginSpec, context: TrainContext) -> dict:
    """The evaluation's results, checked to be a JSON object."""
    label = plugin_label("evaluation", spec.name, spec.identity)
    with plugin_code(label):
        results = spec.plugin().evaluate(spec.options, context)
    return checked_result(results, label, "evaluate()")


def checked_result(result: object, label: str, method: str) -> dict:
    """`result` when it is a dict that JSON can hold, else one line naming the plugin."""
    fix = 'return a dict of JSON values (text, numbers, lists, dicts), e.g. {"accuracy": 0.93}'
    if not isinstance(result, dict):
        raise CurateError(f"{label}: {method} returned {type(result).__name__}; {fix}")
    try:
        json.dumps(result, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise CurateError(f"{label}: {method} returned a dict JSON cannot hold ({error});"
                          f" {fix}") from None
    return result


def write_results(path: Path, results: dict) -> None:
    """Evaluations in the recipe's order (what the report shows them in); within each, keys
    sorted so that the same results are the same bytes."""
    ordered = {name: json.loads(json.dumps({k: v for k, v in result.items() if k != "cached"},
                                           sort_keys=True))
               for name, result in results.items()}
    write_text_atomic(path, json.dumps(ordered, ensure_ascii=False, indent=2) + "\n")


def evaluation_inputs(recipe: Recipe, run_dir: Path) -> list:
    """What every evaluation's result depends on besides its own options and code: the
    trained adapter, the held-out data, [model], the base model's files and the seed."""
    dataset = run_dir / "dataset"
    return [folder_digest(run_dir / "adapter"),
            [file_digest(dataset / name) for name in ("eval.jsonl", "general_eval.jsonl")],
            options_to_dict(recipe.model), recipe.run.seed, model_files_digest(recipe)]


def folder_digest(folder: Path) -> str:
    """A sha256 of every file's relative path and content under `folder` ("" when absent)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []:
        digest.update(f"{path.relative_to(folder).as_posix()}\n{file_digest(path)}\n".encode())
    return digest.hexdigest() if folder.is_dir() else ""


def file_digest(path: Path) -> str:
    if not path.is_file():
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_call(path: Path, fingerprint: str, force: bool, console: Console, label: str,
                compute: Callable[[], dict]) -> dict:
    """compute()'s result, saved with its fingerprint; reused while the fingerprint holds,
    unless the result says it is incomplete."""
    if not force and path.exists():
        saved = read_json(path)
        # An older curate saved whatever a plugin returned: only a dict can be reused.
        if (saved.get("fingerprint") == fingerprint and isinstance(saved.get("result"), dict)
                and not saved["result"].get("incomplete")):
            console.info(f"{label:<24} cached")
            return {**saved["result"], "cached": True}
    started = time.monotonic()
    result = compute()
    seconds = round(time.monotonic() - started, 3)
    write_json_atomic(path, {"fingerprint": fingerprint, "result": result, "seconds": seconds})
    console.info(f"{label:<24} ran      {seconds:.1f}s")
    return {**result, "cached": False}
