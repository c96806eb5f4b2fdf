"""The checks before training that a chat template trains what it must.

Template-level findings (run once, by `curate validate` and by the chat-template step):
the template has `{% generation %}` markers and compiles; it renders curate's probe
conversations, and in them every assistant turn ends with a trained end-of-turn token; the
registry template renders like the tokenizer's own (else a diff); a system prompt is not
silently dropped. The end-of-turn rule here (`untrained_turn_end`) is the one validate, the
chat-template step and the trainer apply; each example is judged in `curate.example_checks`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from curate.chat_templates import (RenderedExample, Selection, TemplateRefused, guess_refused,
                                   has_generation_markers, own_template, render,
                                   render_text, with_fixed_date)
from curate.errors import CurateError

SYSTEM_PROBE = "Answer in one sentence."
PROBES = (
    [{"role": "user", "content": "What is two plus two?"},
     {"role": "assistant", "content": "It is four."},
     {"role": "user", "content": "And three plus three?"},
     {"role": "assistant", "content": "Six."}],
    [{"role": "system", "content": SYSTEM_PROBE},
     {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue."}],
)


@dataclass
class Finding:
    level: str
    """"ok", "warning" or "error"."""
    message: str
    detail: str = ""


def template_findings(tokenizer: Any, selection: Selection,
                      samples: list[list[dict]] = ()) -> list[Finding]:
    """Everything that can be said about the template before any example is judged."""
    if not has_generation_markers(selection.text):
        return [Finding("error", f"chat template {selection.label} has no {{% generation %}}"
                                 f" markers, so no token would be trained: name a registered"
                                 f" template (curate templates) or a .jinja file with them in"
                                 f" [model] chat_template")]
    syntax_error = compile_error(selection.text)
    if syntax_error:
        return [Finding("error", f"chat template {_named(selection)} does not compile:"
                                 f" {syntax_error}; fix the template")]
    findings = [_end_of_turn_finding(tokenizer, selection)]
    findings += _agreement_findings(tokenizer, selection, [*PROBES, *samples])
    findings += _system_prompt_findings(tokenizer, selection)
    return findings


def raise_errors(findings: list[Finding]) -> None:
    for finding in findings:
        if finding.level == "error":
            raise CurateError(finding.message)


def compile_error(text: str) -> str:
    """Where and why the template is not valid Jinja, or "" (compiled as apply_chat_template
    compiles it, so its `{% generation %}` tag is known)."""
    from jinja2 import TemplateSyntaxError

    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:  # a transformers without it: no probe renders, also an error
        return ""
    try:
        _compile_jinja_template(text)
    except TemplateSyntaxError as error:
        line = text.splitlines()[error.lineno - 1].strip() if error.lineno else ""
        shown = line if len(line) <= 60 else line[:59] + "…"
        return f"{(error.message or '').rstrip('.')} (Jinja line {error.lineno}: {shown!r})"
    return ""


def end_token_ids(tokenizer: Any, end_of_turn: tuple[str, ...], label: str) -> set[int]:
    """The ids an assistant turn may end with: the template's end-of-turn tokens, or, for a
    template that declares none, any special token (as trl's stop-token check does)."""
    if not end_of_turn:
        return set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    missing = [t for t in end_of_turn if t not in tokenizer.get_vocab()]
    if len(missing) == len(end_of_turn):
        raise CurateError(f"chat template {label} ends turns with {' or '.join(missing)},"
                          f" which the tokenizer does not have: this template is for another"
                          f" model family; name the right one in [model] chat_template")
    return {tokenizer.convert_tokens_to_ids(t) for t in end_of_turn if t not in missing}


def untrained_end_message(label: str, problem: str) -> str:
    return (f"chat template {label}: {problem}: the model would never learn to stop; put the"
            f" end-of-turn token inside the {{% generation %}} block")


def _end_of_turn_finding(tokenizer: Any, selection: Selection) -> Finding:
    ends = end_token_ids(tokenizer, selection.end_of_turn, selection.label)
    refusals = []
    for probe in PROBES:
        try:
            problem = untrained_turn_end(render(tokenizer, selection.text, probe), probe,
                                         tokenizer, ends)
        except TemplateRefused as error:
            refusals.append(str(error))  # e.g. no system role: judged per example instead
            continue
        if problem:
            return Finding("error", untrained_end_message(selection.label, problem))
    if len(refusals) == len(PROBES):
        return Finding("error", f"chat template {_named(selection)} renders none of curate's"
                                f" {len(PROBES)} test conversations (the first fails with:"
                                f" {refusals[0]}): fix the template")
    names = " or ".join(selection.end_of_turn) or "special token"
    return Finding("ok", f"every assistant turn ends with a trained {names}")


def _named(selection: Selection) -> str:
    """The template's label, with the plugin that registered it for a registered one."""
    if selection.template is None:
        return selection.label
    from curate.pluginmanager import get_host

    entry = get_host().registry("chat template").entries.get(selection.label)
    return f"{selection.label} (plugin {entry.plugin})" if entry else selection.label


def _agreement_findings(tokenizer: Any, selection: Selection,
                        conversations: list[list[dict]]) -> list[Finding]:
    own = own_template(tokenizer)
    own = own and with_fixed_date(own, selection.template_date)
    if not own or own == selection.text:
        return []
    for conversation in conversations:
        expected, got = _render_or_error(tokenizer, own, conversation), _render_or_error(
            tokenizer, selection.text, conversation)
        if expected != got:
            diff = difflib.unified_diff(expected.splitlines(keepends=True),
                                        got.splitlines(keepends=True),
                                        "tokenizer's own template", f"template {selection.label}")
            detail = "".join(line if line.endswith("\n") else line + "\n" for line in diff)
            if selection.guessed and conversation in PROBES:  # only a name suggested it
                return [Finding("error", guess_refused(selection, expected, got), detail)]
            return [Finding("warning", f"template {selection.label} renders differently from"
                                       f" the tokenizer's own template: training text would"
                                       f" not match what the model sees at inference", detail)]
    return [Finding("ok", f"renders like the tokenizer's own template on {len(conversations)}"
                          f" conversations")]


def _render_or_error(tokenizer: Any, template: str, conversation: list[dict]) -> str:
    try:
        return render_text(tokenizer, template, conversation)
    except TemplateRefused as error:
        return f"(the template refuses this conversation: {error})"


def _system_prompt_findings(tokenizer: Any, selection: Selection) -> list[Finding]:
    try:
        text = render_text(tokenizer, selection.text, PROBES[1])
    except TemplateRefused as error:
        return [Finding("warning", f"template {selection.label} refuses system messages"
                                   f" ({error}): examples with one are rejected")]
    if SYSTEM_PROBE not in text:
        return [Finding("warning", f"template {selection.label} drops the system prompt of"
                                   f" examples that end with an assistant turn")]
    return []


def untrained_turn_end(example: RenderedExample, messages: list[dict], tokenizer: Any,
                       ends: set[int]) -> str:
    """Why an assistant turn's end is not trained, or "" when every turn ends right: the last
    trained token that is not whitespace is an end-of-turn token (a newline trained after it is
    harmless: generation stops at the end-of-turn token). The one rule for validate, the
    chat-template step and the trainer."""
    lasts = trained_turn_ends(example, tokenizer)
    turns = sum(1 for message in messages if message["role"] == "assistant")
    if len(lasts) < turns:
        return f"{turns - len(lasts)} of {turns} assistant turns have no trained token"
    for number, last in enumerate(lasts, start=1):
        if last not in ends:
            return (f"assistant turn {number} ends with {tokenizer.decode([last])!r}, not with"
                    f" a trained end-of-turn token")
    return ""


def trained_turn_ends(example: RenderedExample, tokenizer: Any) -> list[int]:
    """The token each trained stretch ends with, whitespace after it aside."""
    return [_last_visible(example.input_ids[start:end], tokenizer)
            for start, end in example.trained_runs()]


def _last_visible(ids: list[int], tokenizer: Any) -> int:
    for token in reversed(ids):
        if tokenizer.decode([token]).strip():
            return token
    return ids[-1]
