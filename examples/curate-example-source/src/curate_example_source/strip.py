"""The `strip-markdown` stage: rewrites messages as plain text, for a model that should not
answer in Markdown. Fenced code blocks are left as they are."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from curate.options import option
from curate.records import Record, Rejection
from curate.stages import Stage

FENCED_BLOCK = re.compile(r"(^```.*?^```[ \t]*$)", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
EMPHASIS = re.compile(r"(?<![\w*])(\*\*|\*|__)(?=\S)(.+?)(?<=\S)\1(?![\w*])")


@dataclass
class StripOptions:
    roles: list[Literal["system", "user", "assistant"]] = option(
        ["assistant"], help="the turns to rewrite")
    keep_urls: bool = option(True, help="write a link as `text (url)`; false keeps only the text")


class StripMarkdown(Stage):
    """Removes emphasis, inline-code backticks and link syntax from the chosen turns.

    Not a Filter: it changes records. A changed record is a new `Record`, so it gets a new id
    (ids hash the messages); `meta` keeps where it was read and the id it had before.
    """

    name = "strip-markdown"
    Options = StripOptions
    version = "1"

    def process(self, records: Iterable[Record]) -> Iterator[Record | Rejection]:
        for record in records:
            messages = [self.rewrite(message) for message in record.messages]
            if messages == record.messages:
                yield record
            else:
                yield record.revised(messages)

    def rewrite(self, message: dict) -> dict:
        if message["role"] not in self.options.roles:
            return message
        return {**message, "content": strip_markdown(message["content"], self.options.keep_urls)}


def strip_markdown(text: str, keep_urls: bool = True) -> str:
    pieces = FENCED_BLOCK.split(text)  # odd pieces are fenced code blocks
    return "".join(piece if index % 2 else _strip_inline(piece, keep_urls)
                   for index, piece in enumerate(pieces))


def _strip_inline(text: str, keep_urls: bool) -> str:
    text = LINK.sub(r"\1 (\2)" if keep_urls else r"\1", text)
    text = CODE.sub(r"\1", text)
    return EMPHASIS.sub(r"\2", text)
