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
    `curate.options`) and `version` (part of the read step's cache fingerprint: bump it when what
    the source reads changes), and implements `rows(options, context)`, yielding
    `curate.sources.Row` for each raw row (a dict and its location, e.g. file and line) or
    `curate.sources.BadRow` for a row that cannot be read. The host converts rows to records with
    the source's `format`. `fingerprint(options, context)` decides whether the cached read is
    still valid: the default hashes the files that `options.path` matches, so a source without a
    `path` option (a database, an API) must override it and return a string that changes when
    its data does.

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
    (implement `process(records)` yielding every input record once, kept as a `Record`,
    dropped as a `Rejection`, or held for a person's review as a `Pending`, for stages that
    compare records; the stage's options and
    `StageContext` are `self.options` and `self.context`). Set `name`, `Options` and `version`: the version is part of the stage's
    cache fingerprint, so bump it when the stage's behaviour changes.

    Since 0.1.
    """


@hookspec
def register_chat_templates(register: Callable[[Any], None]) -> None:
    """Register chat templates for model families: how a conversation becomes training text.

    Call `register(ChatTemplate(...))` with a `curate.chat_templates.ChatTemplate`: `name` (what a
    recipe's `[model] chat_template = "..."` names), `template` (the Jinja text, or a function
    returning it, called on first use), `end_of_turn` (the token(s) that end an assistant turn),
    and how a model is matched to it: `originals` (the family's own template texts: a tokenizer
    shipping one of them is this family), `name_patterns` (regular expressions searched in the
    recipe's model path and tokenizer) and `architectures` (config.json `architectures` entries);
    plus `default_system_prompt` and `description`, which `curate templates` and `curate validate`
    show for information only: `default_system_prompt` says what the template itself writes when a
    conversation has no system message; curate never inserts it, the template text alone decides.
    The template must wrap everything the model learns to say, the assistant's words and the
    end-of-turn token, in `{% generation %}` ... `{% endgeneration %}`: only those tokens are
    trained. Training text is rendered by the tokenizer's `apply_chat_template` with it; apart from
    the markers it should render exactly like the family's original, which `curate validate` checks
    (a mismatch is shown as a diff). A recipe's choice wins; otherwise a tokenizer fingerprint
    match, then a name, then an architecture decides, when exactly one template fits. Read big
    texts lazily: every plugin is imported for every command.

    Since 0.1 (what a template carries: since 0.2).
    """


@hookspec
def register_trainers(register: Callable[[type], None]) -> None:
    """Register trainers: what `[train] use = "..."` runs on the approved dataset.

    Call `register(MyTrainer)` with a subclass of `curate.training.Trainer`: `name`, `Options`,
    and `train(options, context)`, which receives the run folder, the final
    `dataset/train.jsonl` and `dataset/eval.jsonl`, and the recipe's `[model]` options
    (`context.model`). Optionally `check_recipe(options, recipe)` raises
    `curate.errors.RecipeError` for options that do not fit the rest of the recipe (checked
    when the recipe loads, before any step runs), and `advice(options, recipe)` returns
    warnings that `curate validate` prints (never changes). Import heavy libraries (torch, transformers) inside
    `train`, never at module level: `curate --help` and `curate validate` must stay fast.
    Built-ins: `qlora`, `unsloth`.

    Since 0.1.
    """


@hookspec
def register_evals(register: Callable[[type], None]) -> None:
    """Register evaluations: what `[[evals]] use = "..."` runs after training.

    Call `register(MyEval)` with a subclass of `curate.training.Evaluation`: `name` (what the
    recipe's `use` names), `Options` (a dataclass of its recipe keys; `check_options` may refuse
    combinations with `OptionError`), `version`, and `evaluate(options, context)`. `context` is
    the trainer's `curate.training.TrainContext`: the run folder (`run_dir`, where the trainer
    left `adapter/`), `eval_file` (`dataset/eval.jsonl`), `general_eval_file` (general records
    a rehearsal stage held out, for a forgetting check; it may not exist), `model` (the
    recipe's `[model]`), `seed` and `log` (print a line). Return a JSON-serialisable dict: the
    host writes it under the evaluation's name to `eval/results.json` and the manifest's
    `train.evals`, and caches it until the evaluation's options or version, the adapter
    folder, the held-out files, `[model]` or the seed change; a result holding `"incomplete":
    "why"` (some answers could not be judged, say) is written but not reused, so the next run
    evaluates again. Raise `curate.errors.CurateError`
    for a user's mistake. They run after `curate run` trains, and on demand with `curate
    eval`. Import heavy libraries inside `evaluate`. Built-ins: `loss`, `task-metrics`,
    `forgetting`, `judge` (docs/evals.md).

    Since 0.1 (`general_eval_file`, `curate eval`: since 0.2).
    """


@hookspec
def register_language_detectors(register: Callable[[type], None]) -> None:
    """Register language detectors for the `language` stage (`detector = "..."`).

    Call `register(MyDetector)` with a subclass of `curate.language.LanguageDetector`: `name`,
    and `detect(text)` returning `[(language code, probability), ...]`, most likely first. It
    must be deterministic for the seed it is given (a fixed one, not the run's). `languages`
    lists the codes it returns (validate checks `keep` against them), and `consider(keep)` is
    called once before any text. Override `detect_many(texts)` too when a
    batch is cheaper to judge than one text at a time. The built-ins are `langdetect` and
    `langid`.

    Since 0.1.
    """


@hookspec
def register_generation_strategies(register: Callable[[type], None]) -> None:
    """Register generation strategies for the `generate` stage (`[stages.strategy] use = "..."`).

    Call `register(MyStrategy)` with a subclass of `curate.generation.GenerationStrategy`:
    `name`, `Options`, `version`, `requests(records, rng)` yielding a `GenerationRequest` per
    request to send (chat messages, the JSON schema the answer must follow, the ids of the seed
    records), and `parse(answer, request)` turning a schema-valid JSON answer into `Draft`
    records (raise `curate.generation.GenerationError` to reject it). The host sends, retries
    and caches the requests and adds the drafts as records of origin "generated" with their
    provenance. Built-ins: `self-instruct`, `answer`, `augment`, `template`.

    Since 0.2.
    """


@hookspec
def after_run(run_dir: Path, manifest: dict) -> None:
    """Called when `curate run` has finished a run completely, with the run folder and its
    manifest (the dict written to `manifest.json`). The built-in quality report is written here;
    a plugin might post a summary somewhere. Each plugin's implementation runs on its own: an
    exception is printed as a one-line warning naming the plugin (`CURATE_TRACEBACK=1` shows the
    traceback), and the other plugins' implementations still run; the run stays complete.

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
