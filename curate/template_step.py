"""The chat-template step: when a recipe has a [model], the runner adds it after the recipe's
stages, so every final record is rendered with the training template and the ones that cannot
be trained on are rejected with a reason (a built-in stage, `chat-template`, does the work).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.chat_templates import (ModelFacts, Selection, own_template, read_architectures,
                                   select_template)
from curate.errors import CurateError
from curate.options import option
from curate.pluginmanager import PluginHost
from curate.recipe import ModelOptions, PluginSpec, Recipe
from curate.registry import Registry
from curate.tokenizer import load_chat_tokenizer, tokenizer_location

TEMPLATE_STEP = "chat-template"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                   "special_tokens_map.json", "config.json")


@dataclass
class TemplateStepOptions(ModelOptions):
    """The recipe's [model], and the folder its relative paths start from."""

    recipe_dir: str = option("", help="the recipe's folder")


def has_model(model: ModelOptions) -> bool:
    return bool(model.path or model.tokenizer)


def template_steps(recipe: Recipe, host: PluginHost) -> list[PluginSpec]:
    """[the chat-template step] when the recipe has a [model] (and the stage is not disabled)."""
    if not has_model(recipe.model) or TEMPLATE_STEP not in host.registry("stage").entries:
        return []
    options = TemplateStepOptions(**vars(recipe.model), recipe_dir=str(recipe.file.parent))
    return [PluginSpec(TEMPLATE_STEP, TEMPLATE_STEP, host.get("stage", TEMPLATE_STEP), options,
                       "model", host.identity("stage", TEMPLATE_STEP))]


def load_template(model: ModelOptions, recipe_dir: Path, registry: Registry) -> tuple[Any,
                                                                                     Selection]:
    """The recipe's tokenizer and the template it trains with."""
    location = tokenizer_location(model, recipe_dir)
    tokenizer = load_chat_tokenizer(location, model.revision, model.trust_remote_code)
    return tokenizer, model_template(model, recipe_dir, tokenizer, registry)


def model_template(model: ModelOptions, recipe_dir: Path, tokenizer: Any,
                   registry: Registry) -> Selection:
    """The template the [model] trains with: the one choice validate, preview, the
    chat-template step and the trainer all make."""
    model_folder = recipe_dir / model.path if model.path else None
    facts = ModelFacts(model.chat_template, model_names(model, recipe_dir), recipe_dir,
                       read_architectures(str(model_folder)) if model_folder else [],
                       own_template(tokenizer), model.template_date)
    return select_template(facts, registry)


def model_names(model: ModelOptions, recipe_dir: Path) -> list[str]:
    """The names template name patterns are matched on: a local folder's own name (never the
    folders around it: a project called qwen2.5-experiments says nothing about its models),
    the folder of a tokenizer.json named directly, a hub id as written."""
    names = []
    for name in (model.path, model.tokenizer):
        local = recipe_dir / name if name else None
        if local is not None and local.exists():
            local = Path(os.path.abspath(local))  # "." and ".." resolved, symlinks kept
            names.append((local.parent if local.is_file() else local).name)
        elif name:
            names.append(name)
    return names


def template_record(label: str, text: str, tokenizer: Any) -> dict:
    """What the chat-template step checked the data with, in its summary: the trainer refuses
    to train with anything else."""
    return {"label": label, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "tokenizer": type(tokenizer).__name__}


def recorded_template(run_dir: Path) -> dict | None:
    """The `template_record` of the run's chat-template step; None without one (no [model]
    step ran into this run folder, or the stage is disabled)."""
    steps = sorted((int(folder.name.split("-", 1)[0]), folder)
                   for folder in Path(run_dir, "stages").glob(f"*-{TEMPLATE_STEP}")
                   if re.fullmatch(rf"\d+-{TEMPLATE_STEP}", folder.name))
    if not steps:
        return None
    try:
        summary = json.loads((steps[-1][1] / "step.json").read_text(encoding="utf-8"))
        stats = summary.get("stats") or {}
    except (OSError, ValueError, AttributeError):
        return None
    record = stats.get("template") if isinstance(stats, dict) else None
    return record if isinstance(record, dict) else None


def is_local(model: ModelOptions, recipe_dir: Path) -> bool:
    return Path(tokenizer_location(model, recipe_dir)).is_dir()


def template_fingerprint(options: TemplateStepOptions, registry: Registry) -> list:
    """What the step's output depends on beyond its options: the local tokenizer's files and
    every registered template's text (upgrading trl can change a built-in's)."""
    recipe_dir = Path(options.recipe_dir)
    files = tokenizer_digests(options, recipe_dir)
    chosen = options.chat_template
    if chosen and (recipe_dir / chosen).is_file():
        files.append(_digest(recipe_dir / chosen))
    return [files, [[name, entry.plugin, _template_digest(entry.obj)]
                    for name, entry in sorted(registry.entries.items())]]


def tokenizer_digests(model: ModelOptions, recipe_dir: Path,
                      names: tuple[str, ...] = TOKENIZER_FILES) -> list[str]:
    """The sha256 of each of `names` in the [model]'s local tokenizer and model folders ("" for
    a missing file, so a hub id gives only empty ones); of the file itself when [model]
    tokenizer names a tokenizer.json."""
    location = Path(tokenizer_location(model, recipe_dir))
    if location.is_file():
        return [_digest(location)]
    folders = {location}
    if model.path:
        folders.add(recipe_dir / model.path)
    return [_digest(folder / name) for folder in sorted(folders) for name in names]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _template_digest(template: Any) -> str:
    try:
        return hashlib.sha256(template.text().encode("utf-8")).hexdigest()
    except CurateError:
        return "unavailable"
