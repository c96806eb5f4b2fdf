"""Recipes: TOML files that say which sources to read, which stages to run, and what follows.

The whole recipe is validated, every plugin's options included, before any data is read.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.chat_templates import TEMPLATE_DATE, check_choice
from curate.errors import CurateError, RecipeError, did_you_mean
from curate.options import OptionError, option, parse_options
from curate.pluginmanager import PluginHost
from curate.records import GENERATED
from curate.registry import Registry
from curate.sources import Source, SourceContext, SourceHostOptions

SECTIONS = ("run", "model", "sources", "stages", "split", "train", "evals")
RESERVED_STEP_NAMES = ("read", "chat-template")
HOST_META_KEYS = ("from", "revised_from", "generation", "review", "language", "tokens",
                  "consistency", "rehearsal")
"""Record meta keys the host and built-in stages write, which meta_columns must not take."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class RunOptions:
    name: str = option("", help="a name for the run; defaults to the recipe file's stem")
    seed: int = option(0, help="seed for every random choice; same seed, same output bytes")
    dir: str = option("", help="run folder, relative to the recipe; defaults to runs/<stem> "
                               "in the current directory")
    workers: int = option(0, min=0, help="processes for parallel stages; 0 means one per core")


@dataclass
class ModelOptions:
    path: str | None = option(None, help="the base model: a local folder (relative to the recipe)"
                                         " or a hub id")
    tokenizer: str | None = option(None, help="its tokenizer, when not in `path`")
    revision: str | None = option(None, help="a hub revision, for pinning")
    trust_remote_code: bool = option(False, help="run code from the model repository; off"
                                                 " unless you trust it")
    chat_template: str | None = option(None, help="a registered chat template (curate templates)"
                                                  " or a .jinja file relative to the recipe;"
                                                  " default: the one matching the model")
    max_length: int = option(2048, min=1, help="tokens per training example; longer ones are"
                                               " truncated")
    template_date: str = option(TEMPLATE_DATE, help="the \"Today Date\" Llama 3.x templates"
                                                    " write; fixed so training text does not"
                                                    " change from day to day")


@dataclass
class SplitOptions:
    eval_fraction: float = option(0.1, min=0.0, max=0.9, help="share of records held out")
    eval_size: int | None = option(None, min=0, help="exact number held out, instead of"
                                                  " eval_fraction")


HOST_SECTIONS = {"run": RunOptions, "model": ModelOptions, "split": SplitOptions}
SHARED_KEYS = ("path", "name")
"""Keys too common to point at the host section that happens to have them."""


@dataclass
class PluginSpec:
    """One `use = "..."` table of a recipe: which plugin, under what name, with what options."""

    name: str
    use: str
    plugin: type
    options: Any
    key_path: str
    identity: list = field(default_factory=list)
    """Which code runs it (plugin, distribution version, class, class version): part of every
    cache fingerprint, so replacing or upgrading a plugin reruns what it computed."""
    source_options: SourceHostOptions | None = None
    """For sources: the host's keys of the table (format, columns, origin, ...)."""
    sources: dict[str, "PluginSpec"] = field(default_factory=dict)
    """For stages: the source tables their options hold (`Stage.source_keys`), parsed like
    [[sources]] entries, by option key."""


@dataclass
class Recipe:
    file: Path
    digest: str
    run: RunOptions
    model: ModelOptions
    sources: list[PluginSpec]
    stages: list[PluginSpec]
    split: SplitOptions
    train: PluginSpec | None = None
    evals: list[PluginSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """What is allowed but likely a mistake, for `curate validate` and `curate run` to print:
    one line each, starting with the key path."""

    @property
    def name(self) -> str:
        return self.run.name or self.file.stem

    def default_run_dir(self) -> Path:
        if self.run.dir:
            return (self.file.parent / self.run.dir).resolve()
        return Path("runs") / self.file.stem


def load_recipe(path: str | Path, host: PluginHost) -> Recipe:
    """Read and fully validate a recipe, or raise a RecipeError naming the file and key."""
    file = Path(path)
    raw = _read_toml(file)
    where = str(file)
    for key in raw:
        if key not in SECTIONS:
            raise RecipeError(where, key, f"unknown section '{key}'{did_you_mean(key, SECTIONS)}"
                              f" (sections: {', '.join(SECTIONS)})")
    run = _section(raw, "run", where)
    model = _section(raw, "model", where)
    sources = [_source(t, f"sources[{i}]", where, host)
               for i, t in enumerate(_tables(raw, "sources", where))]
    if not sources:
        raise RecipeError(where, "sources", "the recipe has no [[sources]]: add at least one")
    stages = [_plugin_spec(t, f"stages[{i}]", "stage", where, host)
              for i, t in enumerate(_tables(raw, "stages", where))]
    for spec in stages:
        _stage_sources(spec, where, host)
    _check_model_for(stages, model, where)
    _check_model_folders(model, file.parent, where)
    _check_generated_is_reviewed(sources, stages, where)
    _check_asked_is_reviewed(stages, where)
    _check_chat_template(model, file.parent, where, host)
    _check_unique(sources, "sources", where)
    _check_unique(stages, "stages", where)
    split = _split(_table(raw, "split", where), where)
    train = _plugin_spec(raw["train"], "train", "trainer", where, host) if "train" in raw else None
    evals = [_plugin_spec(t, f"evals[{i}]", "evaluation", where, host)
             for i, t in enumerate(_tables(raw, "evals", where))]
    _check_unique(evals, "evals", where)
    _check_held_out_for(evals, split, where)
    if evals and train is None:
        raise RecipeError(where, "evals", "evaluations need a model: add a [train] section")
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    recipe = Recipe(file.resolve(), digest, run, model, sources, stages, split, train, evals,
                    unchecked_after_review(stages) + rehearsal_not_last(stages))
    if train is not None:
        train.plugin.check_recipe(train.options, recipe)
    _check_model_named(_table(raw, "model", where), model, where)
    return recipe


def _check_held_out_for(evals: list[PluginSpec], split: SplitOptions, where: str) -> None:
    holds_none = split.eval_size == 0 or (split.eval_size is None and split.eval_fraction == 0)
    for spec in evals:
        if holds_none and spec.plugin.uses_eval_split:
            raise RecipeError(where, spec.key_path, f"evaluation '{spec.name}' scores held-out"
                              f" examples and [split] holds none out: set [split]"
                              f" eval_fraction (e.g. 0.1) or eval_size")


def _split(table: dict, where: str) -> SplitOptions:
    if "eval_fraction" in table and "eval_size" in table:
        raise RecipeError(where, "split", "eval_fraction and eval_size both set: keep one"
                                          " (eval_size is an exact number of records)")
    _check_placed(table, set(SplitOptions.__dataclass_fields__), where, "split")
    return parse_options(SplitOptions, table, where, "split")


def _read_toml(file: Path) -> dict:
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise CurateError(f"{file}: recipe file not found") from None
    except OSError as error:
        raise CurateError(f"{file}: cannot read the recipe: {error.strerror}") from None
    try:
        text = data.decode("utf-8-sig")  # Notepad starts UTF-8 files with a byte-order mark
        return tomllib.loads(text)
    except UnicodeDecodeError as error:
        raise RecipeError(str(file), "", f"not UTF-8 text (byte {error.start})") from None
    except tomllib.TOMLDecodeError as error:
        twice = _repeated_key(text, str(error)) if str(error).startswith("Cannot overwrite") \
            else None
        single = _single_bracket_array(text)
        if single:
            raise RecipeError(str(file), "", f"invalid TOML: line {single[1]} opens"
                              f" [{single[0]}], one table, where each entry is a table of the"
                              f" array [[{single[0]}]]: write [[{single[0]}]]") from None
        if twice:
            raise RecipeError(str(file), "", f"invalid TOML: key '{twice[0]}' is set twice in"
                              f" one table (line {twice[1]}): keep one") from None
        raise RecipeError(str(file), "", f"invalid TOML: {error}") from None


def _single_bracket_array(text: str) -> tuple[str, int] | None:
    """A section that is an array of tables opened as [stages] while [[stages]] also appears:
    tomllib then says only "Cannot overwrite a value", at the next [[stages]]."""
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        header = re.fullmatch(r"\s*\[\s*(sources|stages|evals)\s*\]\s*(#.*)?", line)
        if header and any(re.fullmatch(rf"\s*\[\[\s*{header.group(1)}\s*\]\]\s*(#.*)?", other)
                          for other in lines):
            return header.group(1), number
    return None


def _repeated_key(text: str, message: str) -> tuple[str, int] | None:
    """The key set twice and its line: tomllib names the line ("at line 8, column 1") unless
    the repeat ends the document; then the first plain key repeated under one header."""
    lines = text.splitlines()
    if at := re.search(r"at line (\d+)", message):
        number = int(at[1])
        key = re.match(r"\s*([A-Za-z0-9_-]+)\s*=", lines[number - 1] if number <= len(lines)
                       else "")
        return (key[1], number) if key else None
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            seen = set()
        elif match := re.match(r"([A-Za-z0-9_-]+)\s*=", stripped):
            if match.group(1) in seen:
                return match.group(1), number
            seen.add(match.group(1))
    return None


def _section(raw: dict, key: str, where: str) -> Any:
    table = _table(raw, key, where)
    schema = HOST_SECTIONS[key]
    _check_placed(table, set(schema.__dataclass_fields__), where, key)
    return parse_options(schema, table, where, key)


def _check_placed(table: dict, known: set[str], where: str, key_path: str) -> None:
    """An unknown key that another host section has: say where it belongs."""
    for key in table:
        if key in known or key in SHARED_KEYS:
            continue
        owner = next((name for name, schema in HOST_SECTIONS.items()
                      if key in schema.__dataclass_fields__), None)
        if owner:
            raise RecipeError(where, f"{key_path}.{key}", f"'{key}' belongs in [{owner}], not"
                              f" here: move it there")


def _check_stage_table_keys(spec: PluginSpec, key: str, table: dict, known: set[str],
                            where: str) -> None:
    """TOML puts every key after a [stages.source] header into that table: a key of the stage
    written below it lands there."""
    for name in table:
        if name not in known and name in spec.plugin.Options.__dataclass_fields__:
            raise RecipeError(where, f"{spec.key_path}.{key}.{name}", f"'{name}' is an option"
                              f" of stage '{spec.name}', but it comes after [stages.{key}], so"
                              f" TOML puts it in that table: move it above [stages.{key}]")


def _table(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise RecipeError(where, key, f"expected a table [{key}], found {type(value).__name__}")
    return value


def _tables(raw: dict, key: str, where: str) -> list[dict]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise RecipeError(where, key, f"expected an array of tables [[{key}]]")
    return value


def _source(table: dict, key_path: str, where: str, host: PluginHost) -> PluginSpec:
    host_keys = {k: v for k, v in table.items() if k in SourceHostOptions.__dataclass_fields__}
    for key in ("use", "name"):
        if key not in table:
            raise RecipeError(where, f"{key_path}.{key}", f"required key '{key}' is missing")
    spec = _plugin_spec(table, key_path, "source", where, host,
                        host_keys=SourceHostOptions.__dataclass_fields__)
    spec.source_options = parse_options(SourceHostOptions, host_keys, where, key_path)
    taken = [c for c in spec.source_options.meta_columns if c in HOST_META_KEYS]
    if taken:
        raise RecipeError(where, f"{key_path}.meta_columns", f"'{taken[0]}' is a meta key curate"
                          f" sets itself ({', '.join(HOST_META_KEYS)}): rename the data column")
    context = SourceContext(Path(where), key_path)
    _run_check(lambda: spec.plugin().check(spec.options, context), where, key_path)
    _check_fingerprint(spec, where)
    if spec.source_options.format != "auto":
        _lookup(host, "format", spec.source_options.format, where, f"{key_path}.format")
    _check_columns(spec, where, host.registry("format"))
    return spec


def _check_fingerprint(spec: PluginSpec, where: str) -> None:
    """Source.fingerprint hashes the files `path` names; without a path the plugin must say
    what identifies its data, or no run could tell whether its cached steps are current."""
    if spec.plugin.fingerprint is Source.fingerprint and getattr(spec.options, "path",
                                                                  None) is None:
        raise RecipeError(where, spec.key_path, f"source plugin '{spec.use}'"
                          f" (plugin {spec.identity[0] if spec.identity else spec.use}) has no"
                          f" `path` to fingerprint and does not implement fingerprint(), so no"
                          f" run could tell whether its data changed: its author must implement"
                          f" Source.fingerprint()")


def _stage_sources(spec: PluginSpec, where: str, host: PluginHost) -> None:
    """Parse the source tables a stage's options hold; `name` defaults to the stage's name."""
    for key in spec.plugin.source_keys:
        table = getattr(spec.options, key)
        if isinstance(table, dict) and isinstance(table.get("use"), str):
            source = host.get("source", table["use"]) if table["use"] in host.registry(
                "source").entries else None
            if source is not None:
                _check_stage_table_keys(spec, key, table, {
                    *source.Options.__dataclass_fields__,
                    *SourceHostOptions.__dataclass_fields__, "use", "name"}, where)
        if table is not None:
            spec.sources[key] = _source({"name": spec.name, **table}, f"{spec.key_path}.{key}",
                                        where, host)


def _check_columns(spec: PluginSpec, where: str, formats: Registry) -> None:
    """Every `columns` key must be a field of the format (or of some format, for auto)."""
    declared = None if spec.source_options.format == "auto" else formats.get(spec.source_options.format)
    candidates = [declared] if declared else [formats.get(n) for n in formats.names()]
    if any(not fmt.fields for fmt in candidates):
        return  # a plugin format that does not list its fields may read any key
    fields = sorted({name for fmt in candidates for name in fmt.fields})
    for key, column in spec.source_options.columns.items():
        if key in fields:
            continue
        flipped = (f"; `columns` maps field = \"column\", so write {column} = \"{key}\""
                   if column in fields else "")
        owner = f"format '{declared.name}'" if declared else "any format"
        raise RecipeError(where, f"{spec.key_path}.columns.{key}",
                          f"'{key}' is not a field of {owner} (fields: {', '.join(fields)})"
                          f"{flipped}")


def _plugin_spec(table: Any, key_path: str, kind: str, where: str, host: PluginHost,
                 host_keys: Any = ("use", "name")) -> PluginSpec:
    if not isinstance(table, dict):
        raise RecipeError(where, key_path, f"expected a table, found {type(table).__name__}")
    use = table.get("use")
    if "use" in table and not isinstance(use, str):
        raise RecipeError(where, f"{key_path}.use", f"expected the {kind} plugin's name as a"
                          f" string, found {type(use).__name__}: write use = \"NAME\" (one"
                          f" {kind} per table)")
    if not isinstance(use, str):
        raise RecipeError(where, f"{key_path}.use", f"required key 'use' is missing: name the {kind}"
                          f" plugin (one of {', '.join(host.registry(kind).names())})")
    plugin = _lookup(host, kind, use, where, f"{key_path}.use")
    own = {k: v for k, v in table.items() if k not in host_keys}
    known = set(plugin.Options.__dataclass_fields__) | set(host_keys)
    _check_placed(own, known, where, key_path)
    for key in own:
        if key not in known:
            raise RecipeError(where, f"{key_path}.{key}", f"unknown key '{key}' for {kind} '{use}'"
                              f"{did_you_mean(key, known)} (known keys: {', '.join(sorted(known))})")
    options = parse_options(plugin.Options, own, where, key_path)
    if kind != "source":
        _run_check(lambda: plugin.check_options(options), where, key_path)
    name = table.get("name", use)
    if not isinstance(name, str) or not _NAME.match(name):
        raise RecipeError(where, f"{key_path}.name", f"expected a name of letters, digits, '-', '_'"
                          f" and '.', found {name!r}")
    if kind == "stage" and name in RESERVED_STEP_NAMES:
        raise RecipeError(where, f"{key_path}.name", f"'{name}' is the name of a built-in step:"
                          f" give this stage another `name = \"...\"`")
    return PluginSpec(name, use, plugin, options, key_path, host.identity(kind, use))


def _run_check(check, where: str, key_path: str) -> None:
    try:
        check()
    except OptionError as error:
        raise RecipeError(where, f"{key_path}.{error.key}", str(error)) from None


def _lookup(host: PluginHost, kind: str, name: str, where: str, key_path: str) -> Any:
    try:
        return host.get(kind, name)
    except CurateError as error:
        raise RecipeError(where, key_path, str(error)) from None


def _check_model_for(stages: list[PluginSpec], model: ModelOptions, where: str) -> None:
    if model.path or model.tokenizer:
        return
    for spec in stages:
        if spec.plugin.needs_model(spec.options):
            raise RecipeError(where, spec.key_path, f"stage '{spec.name}' counts tokens, which"
                              f" needs a tokenizer: add [model] path = \"MODEL\" (a local"
                              f" folder or a hub id)")


def _check_model_named(table: dict, model: ModelOptions, where: str) -> None:
    """[model] options without a model would be ignored without a word."""
    if table and not (model.path or model.tokenizer):
        raise RecipeError(where, f"model.{sorted(table)[0]}", f"[model] sets"
                          f" {', '.join(sorted(table))} but names no model: add path = \"MODEL\""
                          f" (a local folder or a hub id), or remove [model]")


def _check_model_folders(model: ModelOptions, recipe_dir: Path, where: str) -> None:
    """A [model] path or tokenizer written as a path (./, ../, /, ~, more than one "/", or
    under a folder beside the recipe) cannot be a hub id ("org/name"): it must be a folder, or
    it is a typo, found now rather than after curation and the hub's retries."""
    for key in ("path", "tokenizer"):
        name = getattr(model, key)
        if not name:
            continue
        if (recipe_dir / name).is_file():
            raise RecipeError(where, f"model.{key}", f"'{name}' is a file: name the model's"
                              f" folder (the one holding config.json and the tokenizer files)")
        if (recipe_dir / name).exists():
            continue
        if (name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
                or (recipe_dir / name.split("/")[0]).is_dir()):
            raise RecipeError(where, f"model.{key}", f"no folder '{name}' (relative to the"
                              f" recipe's folder, {recipe_dir}); a hub id is written org/name")


def _check_generated_is_reviewed(sources: list[PluginSpec], stages: list[PluginSpec],
                                 where: str) -> None:
    """Generated data reaches the dataset only through a person's approval, so a source of
    generated records needs a review stage that holds them, and a stage that generates needs
    one after it."""
    reviewed = any(GENERATED in spec.plugin.sends_to_review(spec.options) for spec in stages)
    for index, spec in enumerate(sources):
        if spec.source_options.origin == GENERATED and not reviewed:
            raise RecipeError(where, f"sources[{index}].origin", f"source '{spec.name}' holds"
                              f" generated records, which reach the dataset only once a person"
                              f" approved them: {_review_fix(stages)}")
    for index, spec in enumerate(stages):
        if spec.plugin.adds_origin != GENERATED:
            continue
        if not any(GENERATED in later.plugin.sends_to_review(later.options)
                   for later in stages[index + 1:]):
            raise RecipeError(where, f"stages[{index}]", f"stage '{spec.name}' generates"
                              f" records, which reach the dataset only once a person approved"
                              f" them: {_review_fix(stages[index + 1:], ' after it')}")


def unchecked_after_review(stages: list[PluginSpec]) -> list[str]:
    """A reviewer may edit what they approve, and the edit goes through the stages after the
    review only: say so when no stage after a review checks records, or when a check that
    judged the generated records before the review is not repeated after it."""
    messages = []
    generators = [i for i, spec in enumerate(stages) if spec.plugin.adds_origin == GENERATED]
    first_new = generators[0] if generators else 0
    for index, spec in enumerate(stages):
        if not spec.plugin.sends_to_review(spec.options):
            continue
        after = {later.use for later in stages[index + 1:] if _checks(later)}
        if "near-dedupe" in after:
            after.add("exact-dedupe")  # a near-dedupe finds the exact copies too
        skipped = list(dict.fromkeys(earlier.use for earlier in stages[first_new:index]
                                     if _checks(earlier) and earlier.use not in after))
        where = f"stages[{index}]: review stage '{spec.name}'"
        if not after:
            repeat = ", ".join(skipped) or "e.g. length, near-dedupe"
            messages.append(f"{where} has no stage after it that checks records, so a"
                            f" reviewer's edit reaches the dataset unchecked: add the checks"
                            f" after it ({repeat})")
        elif skipped:
            messages.append(f"{where}: a reviewer's edit skips {', '.join(skipped)}, which run"
                            f" only before it: repeat them after it")
    return messages


def rehearsal_not_last(stages: list[PluginSpec]) -> list[str]:
    """A stage that adds general records sizes its draw by the records it sees: checks after
    it drop records the ratio counted on (and general records it held out for the forgetting
    check)."""
    messages = []
    for index, spec in enumerate(stages):
        if spec.plugin.adds_origin != "rehearsal":
            continue
        checks = list(dict.fromkeys(s.name for s in stages[index + 1:] if _checks(s)))
        makers = list(dict.fromkeys(s.name for s in stages[index + 1:]
                                    if s.plugin.adds_origin == GENERATED))
        if checks:
            messages.append(f"stages[{index}]: rehearsal stage '{spec.name}' comes before"
                            f" {', '.join(checks)}, which can drop records after it drew its"
                            f" share, so the ratio and the held-out general slice come out"
                            f" smaller than asked: put it after the curation stages")
        if makers:
            messages.append(f"stages[{index}]: rehearsal stage '{spec.name}' comes before"
                            f" {', '.join(makers)}, whose records it neither counts in the"
                            f" ratio nor screens its general data against (and whose seeds"
                            f" may be general records): put it after the stages that make"
                            f" records")
    return messages


def _checks(spec: PluginSpec) -> bool:
    """Whether a stage judges the records it is given: not a review, not one that adds records."""
    return not spec.plugin.sends_to_review(spec.options) and spec.plugin.adds_origin is None


def _check_asked_is_reviewed(stages: list[PluginSpec], where: str) -> None:
    """A stage that asks a person about records it keeps needs a review stage after it, or
    the records it asks about would train unseen."""
    for index, spec in enumerate(stages):
        if spec.plugin.asks_for_review(spec.options) and not any(
                later.use == "review" for later in stages[index + 1:]):
            raise RecipeError(where, f"stages[{index}]", f"stage '{spec.name}' sends records to"
                              f" people for review, and no review stage after it holds them:"
                              f" add one after it ([[stages]] use = \"review\")")


def _review_fix(stages: list[PluginSpec], after: str = "") -> str:
    """What to change: a review stage that leaves generated records out, or a new one."""
    named = [spec.name for spec in stages if spec.use == "review"]
    if named:
        return (f"review stage '{named[0]}' does not hold them: add \"{GENERATED}\" to its"
                f" origins")
    return f"add a review stage{after} ([[stages]] use = \"review\")"


def _check_chat_template(model: ModelOptions, recipe_dir: Path, where: str,
                         host: PluginHost) -> None:
    if model.chat_template is None:
        return
    if not (model.path or model.tokenizer):
        raise RecipeError(where, "model.chat_template", "a chat template needs a tokenizer: add"
                          " [model] path = \"MODEL\" (a local folder or a hub id)")
    try:
        check_choice(model.chat_template, recipe_dir, host.registry("chat template"))
    except CurateError as error:
        raise RecipeError(where, "model.chat_template", str(error)) from None


def _check_unique(specs: list[PluginSpec], section: str, where: str) -> None:
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.name in seen:
            raise RecipeError(where, f"{spec.key_path}.name", f"{section} name '{spec.name}' is"
                              f" used twice (also {seen[spec.name]}): give each a distinct"
                              f" `name = \"...\"`")
        seen[spec.name] = spec.key_path
