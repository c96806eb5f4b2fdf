"""The per-example checks before training (`ExampleJudge`), run by the chat-template step and
`curate validate` / `curate preview` on samples: no message spells a control token as text, the
template accepts the conversation, it keeps trainable tokens and its final answer after
truncation at `max_length`, and each of its assistant turns ends with a trained end-of-turn token
(`curate.template_checks.untrained_turn_end`, the one rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from curate.chat_templates import RenderedExample, Selection, TemplateRefused, render, render_many
from curate.stages import Reject
from curate.template_checks import end_token_ids, untrained_turn_end


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
