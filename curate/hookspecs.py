"""Every hook a curate plugin can implement. These docstrings are the plugin author's manual.

A plugin is a module (or any object) with functions decorated by `curate.hookimpl`, named after
the hooks below. Register it under the `curate` entry-point group in your package's
`pyproject.toml`:

    [project.entry-points.curate]
    my_plugin = "my_package.plugin"

Every hook but `after_run` receives a `register` callback: call it once per thing you provide. The host checks
what you pass (a plugin that registers something malformed fails to load, reported by name). A
third-party plugin that registers a built-in's name replaces the built-in. When two third-party
plugins register one name, the name is reported with both plugins' names and cannot be used
until one of them is disabled. Every built-in of curate is registered through these same hooks.

Hooks are plain calls (not `firstresult`): every plugin's implementation runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("curate")


@hookspec
def register_sources(register: Callable[[type], None]) -> None:
    """Register data sources: classes that read raw rows from somewhere.

    Call `register(MySource)` with a subclass of `curate.sources.Source`. It sets `name` (what a
    recipe writes in `[[sources]] use = "..."`), `Options` (a dataclass of its recipe keys, see
    `curate.options`) and implements `rows(options, context)`, yielding `curate.sources.Row` for
    each raw row (a dict and its location, e.g. file and line) or `curate.sources.BadRow` for a row
    that cannot be read. The host converts rows to records with the source's `format`.

    Since 0.1.
    """


@hookspec
def register_formats(register: Callable[[type], None]) -> None:
    """Register record formats: how a raw row becomes chat `messages`.

    Call `register(MyFormat)` with a subclass of `curate.formats.Format`. It sets `name` (the
    recipe's `format = "..."`), `fields` (the row keys it reads, which a recipe's `columns` table
    can rename) and implements `to_messages(row)`, raising `curate.formats.RowError` with a
    reason a person can act on when the row does not fit.

    Since 0.1.
    """


@hookspec
def register_stages(register: Callable[[type], None]) -> None:
    """Register curation stages: steps that keep or reject records, and say why.

    Call `register(MyStage)` with a subclass of `curate.stages.Filter` (judge one record at a
    time: return `None` to keep it, or `Reject(reason, detail)`) or of `curate.stages.Stage`
    (implement `process(records)` yielding every input record once, kept as a `Record` or
    dropped as a `Rejection`, for stages that compare records; the stage's options and
    `StageContext` are `self.options` and `self.context`). Set `name`, `Options` and `version`: the version is part of the stage's
    cache fingerprint, so bump it when the stage's behaviour changes.

    Since 0.1.
    """


@hookspec
def register_chat_templates(register: Callable[[Any], None]) -> None:
    """Register chat templates for model families.

    Call `register(template)` with an object that has a `name` attribute. Nothing in curate
    uses registered templates yet: the chat-template machinery that renders training examples
    with them is still to come, and will define what else a template carries.

    Since 0.1.
    """


@hookspec
def register_trainers(register: Callable[[type], None]) -> None:
    """Register trainers: what `[train] use = "..."` runs on the approved dataset.

    Call `register(MyTrainer)` with a subclass of `curate.training.Trainer`: `name`, `Options`,
    and `train(options, context)`, which receives the run folder and the final
    `dataset/train.jsonl` and `dataset/eval.jsonl`. Import heavy libraries (torch, transformers)
    inside `train`, never at module level: `curate --help` and `curate validate` must stay fast.

    Since 0.1.
    """


@hookspec
def register_evals(register: Callable[[type], None]) -> None:
    """Register evaluations: what `[[evals]] use = "..."` runs after training.

    Call `register(MyEval)` with a subclass of `curate.training.Evaluation`: `name`, `Options`,
    and `evaluate(options, context)` returning a dict of results. Import heavy libraries inside
    `evaluate`.

    Since 0.1.
    """


@hookspec
def register_language_detectors(register: Callable[[type], None]) -> None:
    """Register language detectors for the `language` stage (`detector = "..."`).

    Call `register(MyDetector)` with a subclass of `curate.language.LanguageDetector`: `name`,
    and `detect(text)` returning `[(language code, probability), ...]`, most likely first. It
    must be deterministic for the seed it is given. Override `detect_many(texts)` too when a
    batch is cheaper to judge than one text at a time. The built-ins are `langdetect` and
    `langid`.

    Since 0.1.
    """


@hookspec
def after_run(run_dir: Path, manifest: dict) -> None:
    """Called when `curate run` has finished a run completely, with the run folder and its
    manifest (the dict written to `manifest.json`). The built-in quality report is written here;
    a plugin might post a summary somewhere. An exception stops `curate` with its traceback, but
    the run folder stays complete: the dataset is already written.

    Since 0.1.
    """


@hookspec
def register_commands(register: Callable[[Any], None]) -> None:
    """Add commands to the `curate` command line.

    Call `register(command)` with a `click.Command` (or `click.Group`), e.g. a function decorated
    with `@click.command()`; its name is the subcommand's name. Import heavy libraries inside the
    command's function. Raise `curate.errors.CurateError` for user mistakes: it is printed as one
    line without a traceback.

    Since 0.1.
    """
