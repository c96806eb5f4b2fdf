"""The `length` stage: drop examples whose turns or whole conversation are too short or too
long, in characters and, with the recipe's tokenizer, in tokens.

Prompt and response limits apply to each user and each assistant turn, so a long chat is not
"too long" for being long, and a short last answer is measured on its own. By default only an
empty answer is too short ("Yes.", "42" and "positive" are answers) and an answer over 2,000
characters too long.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from curate import hookimpl
from curate.options import OptionError, option
from curate.plugins.language import INVISIBLE
from curate.records import Record
from curate.stages import Filter, Reject

PARTS = ("prompt", "response", "conversation")
UNITS = ("chars", "tokens")


@hookimpl
def register_stages(register):
    register(LengthFilter)


@dataclass
class LengthOptions:
    """Every limit is inclusive; 0 turns it off (TOML has no null)."""

    min_chars: int = option(1, min=0, help="shortest assistant turn kept, in visible"
                                           " characters")
    max_chars: int = option(2000, min=0, help="longest assistant turn kept, in characters")
    min_prompt_chars: int = option(1, min=0, help="shortest user turn kept")
    max_prompt_chars: int = option(0, min=0, help="longest user turn kept")
    min_conversation_chars: int = option(0, min=0, help="shortest conversation kept, system"
                                                        " prompt included")
    max_conversation_chars: int = option(0, min=0, help="longest conversation kept")
    min_tokens: int = option(0, min=0, help="shortest assistant turn kept, in tokens")
    max_tokens: int = option(0, min=0, help="longest assistant turn kept, in tokens")
    min_prompt_tokens: int = option(0, min=0, help="shortest user turn kept, in tokens")
    max_prompt_tokens: int = option(0, min=0, help="longest user turn kept, in tokens")
    min_conversation_tokens: int = option(0, min=0, help="shortest conversation kept, in tokens")
    max_conversation_tokens: int = option(0, min=0, help="longest conversation kept, in tokens")


def limit_key(bound: str, part: str, unit: str) -> str:
    """The option holding a limit: min_chars, max_prompt_tokens, max_conversation_chars..."""
    middle = "" if part == "response" else f"{part}_"
    return f"{bound}_{middle}{unit}"


class LengthFilter(Filter):
    name = "length"
    Options = LengthOptions
    version = "3"

    @classmethod
    def check_options(cls, options: LengthOptions) -> None:
        for part in PARTS:
            for unit in UNITS:
                low = getattr(options, limit_key("min", part, unit))
                high = getattr(options, limit_key("max", part, unit))
                if low and high and low > high:
                    raise OptionError(limit_key("min", part, unit),
                                      f"{low} is above {limit_key('max', part, unit)} = {high}")

    @classmethod
    def needs_model(cls, options: LengthOptions) -> bool:
        return any(getattr(options, limit_key(bound, part, "tokens"))
                   for bound in ("min", "max") for part in PARTS)

    def __init__(self, options: LengthOptions, context):
        super().__init__(options, context)
        self.limits = [(part, unit, low, high) for unit in UNITS for part in PARTS
                       if (low := getattr(options, limit_key("min", part, unit)))
                       | (high := getattr(options, limit_key("max", part, unit)))]
        """The limits set, (part, unit, min, max), in the order they are checked."""
        # Tokenising is the slow part, so only then is it worth spreading over processes.
        self.parallel = self.needs_model(options)
        if self.parallel:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def check(self, record: Record) -> Reject | None:
        for part, unit, low, high in self.limits:
            texts = part_texts(record, part)
            for number, text in enumerate(texts, start=1):
                verdict = self.judge_turn(part, unit, low, high, text, (number, len(texts)))
                if verdict is not None:
                    return verdict
        return None

    def judge_turn(self, part: str, unit: str, low: int, high: int, text: str,
                   turn: tuple[int, int]) -> Reject | None:
        """turn: (number, count) of the user or assistant turn measured."""
        if unit == "chars":
            size = visible_length(text)
        else:  # the model reads invisible characters as tokens too
            size = self.context.tokenizer().count(text.strip())
        word = "characters" if unit == "chars" else "tokens"
        number, count = turn
        evidence = {"part": part, "unit": unit, "size": size}
        where = part
        if count > 1:
            where = f"{part} turn {number} of {count}"
            evidence.update(turn=number, turns=count)
        if low and size < low:
            return Reject(f"{part}-too-short", f"{where} has {size} {word}, minimum is {low}",
                          {**evidence, "limit": low})
        if high and size > high:
            return Reject(f"{part}-too-long", f"{where} has {size} {word}, maximum is {high}",
                          {**evidence, "limit": high})
        return None


def part_texts(record: Record, part: str) -> list[str]:
    if part == "conversation":
        return ["\n".join(m["content"] for m in record.messages)]
    return turns(record, "user" if part == "prompt" else "assistant")


def turns(record: Record, role: str) -> list[str]:
    """The record's turns of one role; one empty turn when it has none, so that a minimum
    still rejects a record without an answer."""
    return [m["content"] for m in record.messages if m["role"] == role] or [""]


_ASCII_INVISIBLE = bytes([*range(0x09), 0x0b, 0x0c, *range(0x0e, 0x20), 0x7f])


def visible_length(text: str) -> int:
    """len(visible(text)), without building the text for plain ASCII."""
    if text.isascii():
        return len(text.encode("ascii").translate(None, _ASCII_INVISIBLE).strip())
    return len(visible(text))


def visible(text: str) -> str:
    """A text without invisible characters (zero-width spaces and joiners, direction marks,
    controls) and without the spaces around it: a response of zero-width spaces is empty, and
    an emoji joined by zero-width joiners counts one character per emoji."""
    return INVISIBLE.sub("", text).strip()
