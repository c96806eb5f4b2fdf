"""The `length` stage: drop examples whose prompt, response or whole conversation is too short
or too long, measured in characters."""

from __future__ import annotations

from dataclasses import dataclass

from curate import hookimpl
from curate.options import option
from curate.records import Record
from curate.stages import Filter, Reject


@hookimpl
def register_stages(register):
    register(LengthFilter)


@dataclass
class LengthOptions:
    min_chars: int = option(10, min=0, help="shortest response kept, in characters")
    max_chars: int = option(2000, min=1, help="longest response kept, in characters")
    min_prompt_chars: int = option(1, min=0, help="shortest prompt kept, in characters")
    max_prompt_chars: int | None = option(None, min=1, help="longest prompt kept")
    max_total_chars: int | None = option(None, min=1,
                                         help="longest whole conversation kept, system included")


class LengthFilter(Filter):
    name = "length"
    Options = LengthOptions
    version = "1"

    def check(self, record: Record) -> Reject | None:
        options = self.options
        checks = (
            ("response", len(record.response.strip()), options.min_chars, options.max_chars),
            ("prompt", len(record.prompt.strip()), options.min_prompt_chars,
             options.max_prompt_chars),
            ("conversation", sum(len(m["content"]) for m in record.messages), None,
             options.max_total_chars),
        )
        for part, size, low, high in checks:
            if low is not None and size < low:
                return Reject(f"{part}-too-short",
                              f"{part} has {size} characters, minimum is {low}")
            if high is not None and size > high:
                return Reject(f"{part}-too-long",
                              f"{part} has {size} characters, maximum is {high}")
        return None
