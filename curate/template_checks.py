"""The checks before training: does the chat template train what it must, and does every
example keep something to train on after truncation?

Template-level findings (run once, by `curate validate` and by the chat-template step):
the template has `{% generation %}` markers and compiles; it renders curate's probe
conversations, and in them every assistant turn ends with a trained end-of-turn token; the
registry template renders like the tokenizer's own (else a diff); a system prompt is not
silently dropped. Per example (`ExampleJudge`): no message spells a control token as text, the
template accepts the conversation, it keeps trainable tokens and its final answer after
truncation at `max_length`, and each of its assistant turns ends with a trained end-of-turn token.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from curate.chat_templates import (RenderedExample, Selection, TemplateRefused, guess_refused,
                                   has_generation_markers, own_template, render, render_many,
                                   render_text, with_fixed_date)
from curate.errors import CurateError
from curate.stages import Reject

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


@dataclass
class TokenStats:
    """How long examples are in tokens, and how much truncation at max_length cuts."""

    examples: int = 0
    truncated: int = 0
    tokens_cut: int = 0
    most_cut: int = 0
    longest: int = 0
    replies_lost: int = 0
    """Examples of which max_length cuts off at least one whole reply."""

    def add(self, total: int, max_length: int, replies_lost: int = 0) -> None:
        self.examples += 1
        self.longest = max(self.longest, total)
        self.replies_lost += bool(replies_lost)
        if total > max_length:
            self.truncated += 1
            self.tokens_cut += total - max_length
            self.most_cut = max(self.most_cut, total - max_length)

    def describe(self, max_length: int) -> str:
        if not self.truncated:
            return (f"none of {self.examples:,} examples is longer than max_length"
                    f" {max_length:,} (longest {self.longest:,} tokens)")
        lost = (f"; in {self.replies_lost:,} of them whole replies are cut off"
                if self.replies_lost else "")
        return (f"{self.truncated:,} of {self.examples:,} examples are cut at max_length"
                f" {max_length:,}, by {self.tokens_cut / self.truncated:,.0f} tokens on"
                f" average, at most {self.most_cut:,}{lost}")


class ControlTokenSpellings:
    """Finds the text of a control token (a special token, or the template's end of turn) in a
    message: the tokenizer reads it as that token, not as text, so an answer that mentions
    `<|im_end|>` would train a real end of turn mid-answer and a prompt could open a fake turn."""

    def __init__(self, tokenizer: Any, end_of_turn: tuple[str, ...]):
        tokens = {*tokenizer.all_special_tokens, *end_of_turn,
                  *(added.content for added in tokenizer.added_tokens_decoder.values()
                    if added.special)}
        # Longest first: the tokenizer reads the longest token that matches.
        spellings = sorted((t for t in tokens if t), key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, spellings))) if spellings else None

    def reject(self, messages: list[dict]) -> Reject | None:
        if self.pattern is None:
            return None
        for number, message in enumerate(messages):  # counted from 0, as reading counts
            found = self.pattern.search(message["content"])
            if found:
                return Reject("special-token-in-text", self._detail(number, message, found),
                              {"token": found.group(), "message": number})
        return None

    @staticmethod
    def _detail(number: int, message: dict, found: re.Match) -> str:
        text, (start, end) = message["content"], found.span()
        excerpt = (("…" if start > 30 else "") + text[max(0, start - 30):end + 30]
                   + ("…" if end + 30 < len(text) else ""))
        return (f"message {number} ({message['role']}) spells the control token"
                f" {found.group()!r} as text ({excerpt!r}): the tokenizer reads it as that token,"
                f" so training would see a real one there (a stop mid-answer, a fake turn);"
                f" remove it from the data or write it differently")


class ExampleJudge:
    """Renders one conversation and says whether it can be trained on."""

    def __init__(self, tokenizer: Any, selection: Selection, max_length: int):
        self.tokenizer, self.selection, self.max_length = tokenizer, selection, max_length
        self.ends = end_token_ids(tokenizer, selection.end_of_turn, selection.label)
        self.control_tokens = ControlTokenSpellings(tokenizer, selection.end_of_turn)
        self.stats = TokenStats()

    def judge(self, messages: list[dict]) -> tuple[Reject | None, dict]:
        """A rejection (or None) and the example's token counts."""
        try:
            example = render(self.tokenizer, self.selection.text, messages)
        except TemplateRefused as error:
            return Reject("template-error", f"chat template {self.selection.label} refuses this"
                                            f" conversation: {error}"), {}
        return self._assess(example, messages)

    def judge_many(self, conversations: list[list[dict]]) -> list[tuple[Reject | None, dict]]:
        """`judge` for each conversation, rendered in one call when the template accepts all."""
        try:
            examples = render_many(self.tokenizer, self.selection.text, conversations)
        except TemplateRefused:
            return [self.judge(messages) for messages in conversations]
        return [self._assess(example, messages)
                for example, messages in zip(examples, conversations)]

    def _assess(self, example: RenderedExample, messages: list[dict]) -> tuple[Reject | None,
                                                                               dict]:
        total = len(example.input_ids)
        counts = {"total": total, "trained": example.trained_count(self.max_length),
                  "truncated": max(0, total - self.max_length)}
        lost = sum(1 for start, _ in example.trained_runs() if start >= self.max_length)
        if lost:  # only ever on rejected records: a kept one keeps every reply
            counts["replies_lost"] = lost
        self.stats.add(total, self.max_length, lost)
        return self._verdict(example, messages, counts), counts

    def _verdict(self, example: RenderedExample, messages: list[dict],
                 counts: dict) -> Reject | None:
        spelled = self.control_tokens.reject(messages)
        if spelled:
            return spelled
        if not messages[-1]["content"].strip():
            return Reject("empty-answer", "the final answer is empty: the example would only"
                                          " teach to stop at once (a generate stage with the"
                                          " `answer` strategy can write one)")
        if not counts["trained"]:
            return Reject("no-trainable-tokens", self._no_trainable_detail(example),
                          {"tokens": counts["total"], "max_length": self.max_length})
        problem = untrained_turn_end(example, messages, self.tokenizer, self.ends)
        if problem:
            return Reject("untrained-end-of-turn", f"{problem} (chat template"
                                                   f" {self.selection.label})")
        if counts.get("replies_lost"):
            return Reject("final-answer-truncated", self._lost_detail(example, counts),
                          {"tokens": counts["total"], "max_length": self.max_length,
                           "replies_lost": counts["replies_lost"]})
        short = self._tokens_cut_before_end_of_turn(example)
        if short:
            return Reject("end-of-turn-truncated", self._cut_detail(example, short),
                          {"tokens": counts["total"], "max_length": self.max_length})
        return None

    def _tokens_cut_before_end_of_turn(self, example: RenderedExample) -> int:
        """How many tokens of the answer that max_length cuts into are lost up to and with its
        end-of-turn token; 0 when the cut falls outside answers or after an end of turn (a
        template may train a newline after it)."""
        for start, end in example.trained_runs():
            if start < self.max_length < end:
                ends = [i for i in range(start, end) if example.input_ids[i] in self.ends]
                last = ends[-1] if ends else end - 1
                return max(0, last + 1 - self.max_length)
        return 0

    def _cut_detail(self, example: RenderedExample, short: int) -> str:
        tokens = "1 token" if short == 1 else f"{short:,} tokens"
        return (f"the example is {len(example.input_ids):,} tokens and max_length"
                f" {self.max_length:,} cuts an answer {tokens} before the end of its turn (its"
                f" end-of-turn token included): trained like that, the model learns not to"
                f" stop; raise [model] max_length or shorten the answer")

    def _lost_detail(self, example: RenderedExample, counts: dict) -> str:
        runs, lost = example.trained_runs(), counts["replies_lost"]
        replies = "its final reply" if lost == 1 else f"its last {lost} of {len(runs)} replies"
        return (f"the example is {counts['total']:,} tokens and max_length {self.max_length:,}"
                f" ends before its final answer (which starts at token {runs[-1][0]:,}):"
                f" {replies} would not be trained; raise [model] max_length or shorten the"
                f" conversation")

    def _no_trainable_detail(self, example: RenderedExample) -> str:
        total = len(example.input_ids)
        if not example.trained_count():
            return (f"chat template {self.selection.label} marks none of the example's"
                    f" {total:,} tokens for training")
        prompt = example.trained.index(1)
        return (f"after truncation at max_length {self.max_length:,} no trained token is left:"
                f" the prompt before the first reply is {prompt:,} tokens (the whole example"
                f" {total:,}); raise [model] max_length or shorten the prompt")
