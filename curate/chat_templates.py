"""Chat templates: how a conversation becomes the token ids a model trains on, and which of them
carry the loss.

Training text is only ever produced by a tokenizer's `apply_chat_template`, with a Jinja template
whose `{% generation %}` ... `{% endgeneration %}` blocks mark what the model learns to say: the
assistant's words and the end-of-turn token that makes it stop. Plugins register a
`ChatTemplate` per model family (`register_chat_templates`); a recipe's `[model] chat_template`
names one or gives a .jinja file. transformers is imported inside functions only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from curate.errors import CurateError, did_you_mean
from curate.registry import Registry

GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")

OWN = "of the tokenizer"
"""The label of a tokenizer's own template: "chat template of the tokenizer"."""

TEMPLATE_DATE = "26 Jul 2024"
"""The "Today Date" Llama 3.x templates write (their own default): Llama 3.2's writes today's
date unless `date_string` is set, which would change training text from day to day."""

Text = str | Callable[[], str]
"""Template text, or a function that returns it (read on first use, e.g. from another package)."""


@dataclass(frozen=True)
class ChatTemplate:
    """A model family's chat template, as a plugin registers it."""

    name: str
    template: Text
    """Jinja with `{% generation %}` around everything the model must learn to produce."""
    end_of_turn: tuple[str, ...]
    """The token(s) that end an assistant turn: each turn's trained tokens must end with one."""
    architectures: tuple[str, ...] = ()
    """`architectures` entries of a model's config.json that mean this family (asked only for a
    tokenizer without a template of its own that could train)."""
    name_patterns: tuple[str, ...] = ()
    """Regular expressions searched, ignoring case, in the model's and tokenizer's names: a hub
    id as written, a local folder's own name (not the folders around it)."""
    originals: tuple[Text, ...] = ()
    """The family's own template(s) as its tokenizers ship them: a tokenizer whose
    `chat_template` is identical to one is this family (the tokenizer fingerprint)."""
    default_system_prompt: str = ""
    """Informational, shown by `curate templates` and `curate validate`: what the template
    itself writes as system prompt when a conversation has none ("" if nothing). curate never
    inserts it; the template text alone decides what is rendered."""
    description: str = ""

    def __post_init__(self) -> None:
        # A lone string where a tuple belongs would otherwise be read character by character.
        for name in ("end_of_turn", "architectures", "name_patterns", "originals"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        for pattern in self.name_patterns:
            _check_pattern(self.name, pattern)

    def text(self) -> str:
        return resolve_text(self.template)

    def original_texts(self) -> list[str]:
        return [resolve_text(original) for original in self.originals]

    def matches_name(self, model_name: str) -> bool:
        return any(re.search(pattern, model_name, re.IGNORECASE)
                   for pattern in self.name_patterns)


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) or callable(value) else tuple(value)


def _check_pattern(template_name: str, pattern: str) -> None:
    """A pattern that does not compile is refused when the template is made, so that the plugin
    registering it fails to load by name, instead of every model's template selection."""
    try:
        re.compile(pattern, re.IGNORECASE)
    except (re.error, TypeError) as error:
        raise ValueError(f"chat template '{template_name}': name_patterns entry {pattern!r} is"
                         f" not a regular expression: {error}") from None


@cache
def resolve_text(text: Text) -> str:
    return text() if callable(text) else text


def has_generation_markers(text: str) -> bool:
    return GENERATION_MARKER.search(text) is not None


GUESSES = ("name", "architecture")
"""The evidence that only suggests a family: a name pattern or config.json's architecture."""


@dataclass
class Selection:
    """The template a recipe trains with, and why it was chosen."""

    text: str
    label: str
    """Its registered name, its file, or OWN."""
    how: str
    template: ChatTemplate | None = None
    template_date: str = TEMPLATE_DATE
    """The `date_string` fixed in `text` (see `with_fixed_date`)."""
    chosen_by: str = "recipe"
    """"recipe", "fingerprint" (the tokenizer ships the family's original), "name",
    "architecture" or "tokenizer" (its own template)."""

    @property
    def end_of_turn(self) -> tuple[str, ...]:
        return self.template.end_of_turn if self.template else ()

    @property
    def guessed(self) -> bool:
        """Chosen by a name or an architecture, not by the recipe or the template's text."""
        return self.chosen_by in GUESSES


def guess_refused(selection: Selection, own_text: str, text: str) -> str:
    """Why a guessed registered template is not used when it renders a conversation (as
    `text`) unlike the tokenizer's own template (as `own_text`): one line with the fix."""
    return (f"chat template {selection.label} was chosen because {selection.how}, but the"
            f" tokenizer has its own template and they render curate's test conversations"
            f" differently ({first_difference(own_text, text, selection.label)}): to train with"
            f" the tokenizer's own template, save a copy with {{% generation %}} markers as a"
            f" .jinja file and name it in [model] chat_template = \"FILE.jinja\"; to use"
            f" {selection.label} anyway, [model] chat_template = \"{selection.label}\"")


def first_difference(own_text: str, text: str, label: str) -> str:
    own_lines, lines = own_text.splitlines() or [""], text.splitlines() or [""]
    number = next((n for n, (a, b) in enumerate(zip(own_lines, lines)) if a != b),
                  min(len(own_lines), len(lines)))
    return (f"line {number + 1}: own {_excerpt(own_lines, number)}, {label}"
            f" {_excerpt(lines, number)}")


def _excerpt(lines: list[str], number: int) -> str:
    if number >= len(lines):
        return "ends"
    line = lines[number]
    return repr(line if len(line) <= 50 else line[:49] + "…")


@dataclass
class ModelFacts:
    """What selection looks at: the recipe's choice, the model's names, its config and its
    tokenizer's own template."""

    choice: str | None
    names: list[str]
    recipe_dir: Path
    architectures: list[str] = field(default_factory=list)
    own_template: str | None = None
    template_date: str = TEMPLATE_DATE


def with_fixed_date(text: str, date: str) -> str:
    """The template with its `date_string` variable set to `date`, if it reads one (Llama 3.x
    templates fall back to `strftime_now`, i.e. today, only when it is undefined)."""
    if "date_string" not in text:
        return text
    return "{%- set date_string = " + json.dumps(date, ensure_ascii=False) + " %}" + text


def is_template_file(choice: str) -> bool:
    return choice.endswith((".jinja", ".j2")) or "/" in choice


def check_choice(choice: str, recipe_dir: Path, registry: Registry) -> None:
    """A recipe's `chat_template` names a registered template or an existing file."""
    if is_template_file(choice):
        if not (recipe_dir / choice).is_file():
            raise CurateError(f"template file '{choice}' not found (relative to the recipe)")
    elif choice not in registry.entries:
        known = registry.names()
        raise CurateError(f"unknown chat template '{choice}'{did_you_mean(choice, known)}"
                          f" (registered: {', '.join(known) or 'none'}; or give a .jinja file)")


def select_template(facts: ModelFacts, registry: Registry) -> Selection:
    """The recipe's choice, else the registered template the model matches (tokenizer
    fingerprint, then name, then architecture, the last only for a tokenizer without a template
    of its own that could train), else the tokenizer's own template; with its date fixed to
    `facts.template_date`, so the same recipe renders the same text every day. A name's guess
    that renders unlike the tokenizer's own template is refused by the template checks
    (`guess_refused`)."""
    selection = _select(facts, registry)
    selection.text = with_fixed_date(selection.text, facts.template_date)
    selection.template_date = facts.template_date
    return selection


def _select(facts: ModelFacts, registry: Registry) -> Selection:
    if facts.choice:
        return _chosen(facts.choice, facts.recipe_dir, registry)
    matched = _match(facts, [entry.obj for entry in registry.entries.values()])
    if matched:
        return matched
    if facts.own_template:
        return Selection(facts.own_template, OWN, "no registered template matches the model,"
                                                  " so its tokenizer's template is used",
                         chosen_by="tokenizer")
    raise CurateError(f"[model]: no chat template for '{facts.names[0]}': its tokenizer has none"
                      f" and no registered template matches it; name one with [model]"
                      f" chat_template = \"NAME\" (see curate templates) or a .jinja file")


def _chosen(choice: str, recipe_dir: Path, registry: Registry) -> Selection:
    check_choice(choice, recipe_dir, registry)
    if is_template_file(choice):
        text = (recipe_dir / choice).read_text(encoding="utf-8")
        return Selection(text, choice, "named in the recipe")
    template = registry.get(choice)
    return Selection(template.text(), choice, "named in the recipe", template)


def _match(facts: ModelFacts, templates: list[ChatTemplate]) -> Selection | None:
    """The first kind of evidence that points to exactly one template decides. An
    architecture is shared by models with other templates (DeepSeek-R1-Distill-Qwen is a
    Qwen2ForCausalLM, Zephyr a MistralForCausalLM): it only decides for a tokenizer without a
    template of its own that could train (none, or one without `{% generation %}` markers),
    and then as a guess, refused when it renders unlike the tokenizer's own."""
    tests = [
        ("fingerprint", "its tokenizer's template is this family's original",
         lambda t: facts.own_template is not None and facts.own_template in t.original_texts()),
        ("name", f"the model name '{facts.names[0]}' matches",
         lambda t: any(t.matches_name(name) for name in facts.names)),
    ]
    if not (facts.own_template and has_generation_markers(facts.own_template)):
        tests.append(("architecture", f"config.json says {', '.join(facts.architectures)}",
                      lambda t: bool(set(t.architectures) & set(facts.architectures))))
    for evidence, how, test in tests:
        found = [template for template in templates if _fits(test, template)]
        if len(found) == 1:
            return Selection(found[0].text(), found[0].name, how, found[0], chosen_by=evidence)
    return None


def _fits(test: Callable[[ChatTemplate], bool], template: ChatTemplate) -> bool:
    """A template whose text cannot be read (trl missing, say) matches nothing by fingerprint;
    found by name, it still says why it cannot be used."""
    try:
        return test(template)
    except CurateError:
        return False


def own_template(tokenizer: Any) -> str | None:
    """The tokenizer's own chat template, if it has one: of named variants (Command-R's and
    Hermes' "default" and "tool_use"), the "default" one."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, list):  # as tokenizer_config.json writes them
        template = {item.get("name"): item.get("template") for item in template
                    if isinstance(item, dict)}
    if isinstance(template, dict):
        template = template.get("default")
    return template if isinstance(template, str) and template else None


def read_architectures(location: str) -> list[str]:
    config = Path(location) / "config.json"
    if not config.is_file():
        return []
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures")
    except (ValueError, AttributeError):
        return []
    return [a for a in architectures or [] if isinstance(a, str)]


@dataclass
class RenderedExample:
    """One conversation as the model sees it: token ids, and which of them are trained."""

    input_ids: list[int]
    trained: list[int]
    """1 where the token carries the loss, else 0 (the assistant mask)."""
    offsets: list[tuple[int, int]]
    """Each token's character span in the rendered text."""

    def trained_count(self, max_length: int | None = None) -> int:
        return sum(self.trained[:max_length])

    def trained_runs(self) -> list[tuple[int, int]]:
        """(start, end) token indices of each stretch of trained tokens (one per turn)."""
        runs, start = [], None
        for index, flag in enumerate([*self.trained, 0]):
            if flag and start is None:
                start = index
            elif not flag and start is not None:
                runs.append((start, index))
                start = None
        return runs


class TemplateRefused(Exception):
    """The template raised for this conversation (e.g. a role it does not support)."""


def render(tokenizer: Any, template: str, messages: list[dict]) -> RenderedExample:
    from jinja2 import TemplateError

    try:
        out = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=True,
                                            return_dict=True, return_assistant_tokens_mask=True)
    except TemplateError as error:
        raise TemplateRefused(str(error)) from None
    return RenderedExample(list(out["input_ids"]), list(out["assistant_masks"]),
                           list(out.encodings[0].offsets))


def render_many(tokenizer: Any, template: str,
                conversations: list[list[dict]]) -> list[RenderedExample]:
    """`render` for many conversations in one call (about 1.4x faster); TemplateRefused when
    the template refuses any of them."""
    from jinja2 import TemplateError

    try:
        out = tokenizer.apply_chat_template(conversations, chat_template=template, tokenize=True,
                                            return_dict=True, return_assistant_tokens_mask=True)
    except TemplateError as error:
        raise TemplateRefused(str(error)) from None
    return [RenderedExample(ids, mask, encoding.offsets)
            for ids, mask, encoding in zip(out["input_ids"], out["assistant_masks"],
                                           out.encodings)]


def render_text(tokenizer: Any, template: str, messages: list[dict]) -> str:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
    except TemplateError as error:
        raise TemplateRefused(str(error)) from None
