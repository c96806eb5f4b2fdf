"""The `faq-markdown` source: every question heading of a Markdown file, and the text under it,
becomes one `{"prompt": question, "completion": answer}` row."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from curate.errors import CurateError
from curate.options import option
from curate.sources import BadRow, Row, Source, SourceContext, resolve_paths

HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t]*$")
FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")


@dataclass
class FaqOptions:
    path: str | list[str] = option(help="a Markdown file, a glob (faq/*.md) or a list of them,"
                                        " relative to the recipe")
    heading_level: int = option(2, min=1, max=6,
                                help="the level of question headings: 2 reads `## ` headings;"
                                     " shallower headings end an answer, deeper ones belong"
                                     " to it")


@dataclass
class Question:
    text: str
    line: int
    answer: list[str] = field(default_factory=list)


class FaqMarkdownSource(Source):
    """Reads Markdown FAQs: each question heading is a prompt, the text below it the answer."""

    name = "faq-markdown"
    Options = FaqOptions
    version = "1"

    def rows(self, options: FaqOptions, context: SourceContext) -> Iterator[Row | BadRow]:
        for path in resolve_paths(options.path, context):
            shown = context.display(path)
            for question in parse_faq(read_text(path, shown), options.heading_level):
                yield to_row(question, shown)


def read_text(path: Path, shown: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise CurateError(f"{shown}: invalid UTF-8 at byte {error.start}: re-save the file as"
                          f" UTF-8") from None


def parse_faq(text: str, level: int) -> Iterator[Question]:
    """The questions of a Markdown text in order; a `#` line inside a code fence is no heading."""
    question: Question | None = None
    in_fence = False
    for number, line in enumerate(text.splitlines(), start=1):
        in_fence = in_fence != bool(FENCE.match(line))
        heading = None if in_fence else HEADING.match(line)
        if heading and len(heading[1]) <= level:
            if question:
                yield question
            question = Question(heading[2], number) if len(heading[1]) == level else None
        elif question:
            question.answer.append(line)
    if question:
        yield question


def to_row(question: Question, shown: str) -> Row | BadRow:
    location = f"{shown}:{question.line}"
    answer = "\n".join(question.answer).strip()
    if not answer:
        return BadRow(location, "empty-answer", f"the question {question.text!r} has no answer"
                      f" text before the next heading", question.text)
    return Row({"prompt": question.text, "completion": answer}, location)
