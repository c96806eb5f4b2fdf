"""The `length` stage: drop examples whose prompt, response or whole conversation is too short
or too long, in characters and, with the recipe's tokenizer, in tokens.

Defaults follow the usual data-quality checklist: a response under 10 characters is too short,
one over 2,000 too long.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from curate import hookimpl
from curate.options import OptionError, option
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

    min_chars: int = option(10, min=0, help="shortest response kept, in characters")
    max_chars: int = option(2000, min=0, help="longest response kept, in characters")
    min_prompt_chars: int = option(1, min=0, help="shortest prompt kept")
    max_prompt_chars: int = option(0, min=0, help="longest prompt kept")
    min_conversation_chars: int = option(0, min=0, help="shortest conversation kept, system"
                                                        " prompt included")
    max_conversation_chars: int = option(0, min=0, help="longest conversation kept")
    min_tokens: int = option(0, min=0, help="shortest response kept, in tokens")
    max_tokens: int = option(0, min=0, help="longest response kept, in tokens")
    min_prompt_tokens: int = option(0, min=0, help="shortest prompt kept, in tokens")
    max_prompt_tokens: int = option(0, min=0, help="longest prompt kept, in tokens")
    min_conversation_tokens: int = option(0, min=0, help="shortest conversation kept, in tokens")
    max_conversation_tokens: int = option(0, min=0, help="longest conversation kept, in tokens")


def limit_key(bound: str, part: str, unit: str) -> str:
    """The option holding a limit: min_chars, max_prompt_tokens, max_conversation_chars..."""
    middle = "" if part == "response" else f"{part}_"
    return f"{bound}_{middle}{unit}"


class LengthFilter(Filter):
    name = "length"
    Options = LengthOptions
    version = "2"

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
        # Tokenising is the slow part, so only then is it worth spreading over processes.
        self.parallel = self.needs_model(options)
        if self.parallel:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def check(self, record: Record) -> Reject | None:
        texts = {"prompt": record.prompt.strip(), "response": record.response.strip(),
                 "conversation": "\n".join(m["content"] for m in record.messages)}
        for unit in UNITS:
            for part in PARTS:
                verdict = self.judge_part(part, unit, texts[part])
                if verdict is not None:
                    return verdict
        return None

    def judge_part(self, part: str, unit: str, text: str) -> Reject | None:
        low = getattr(self.options, limit_key("min", part, unit))
        high = getattr(self.options, limit_key("max", part, unit))
        if not low and not high:
            return None
        size = len(text) if unit == "chars" else self.context.tokenizer().count(text)
        word = "characters" if unit == "chars" else "tokens"
        evidence = {"part": part, "unit": unit, "size": size}
        if low and size < low:
            return Reject(f"{part}-too-short", f"{part} has {size} {word}, minimum is {low}",
                          {**evidence, "limit": low})
        if high and size > high:
            return Reject(f"{part}-too-long", f"{part} has {size} {word}, maximum is {high}",
                          {**evidence, "limit": high})
        return None
