"""The `answer` strategy: responses for prompts that lack them. The prompt-only record is then
rejected as "answered", naming the generated record that replaces it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from curate.generation import Draft, GenerationRequest, GenerationStrategy, object_schema
from curate.options import option
from curate.records import Record

INSTRUCTION = ("Answer the user's last message as a helpful assistant would. Put your reply, and"
               " nothing else, in \"response\".")


@dataclass
class AnswerOptions:
    sources: list[str] = option([], help="answer only records of these sources (default: all)")
    limit: int | None = option(None, min=1, help="answer at most this many records, the first"
                                                 " in input order")
    guidance: str = option("", help="more instructions for the model, e.g. tone and length")


class AnswerPrompts(GenerationStrategy):
    name = "answer"
    Options = AnswerOptions
    version = "1"

    def requests(self, records: list[Record], rng: random.Random) -> Iterator[GenerationRequest]:
        wanted = set(self.options.sources)
        unanswered = [r for r in records if r.prompt.strip() and not r.response.strip()
                      and (not wanted or r.source in wanted)]
        for record in unanswered[: self.options.limit]:
            conversation = _without_empty_answer(record.messages)
            guidance = f" {self.options.guidance.strip()}" if self.options.guidance.strip() else ""
            yield GenerationRequest(
                [{"role": "system", "content": INSTRUCTION + guidance}, *conversation],
                schema=object_schema(response={"type": "string", "minLength": 1}),
                seeds=(record.id,), replaces=record.id,
                context={"messages": conversation, "source": record.source})

    def parse(self, answer: dict, request: GenerationRequest) -> list[Draft]:
        reply = {"role": "assistant", "content": answer["response"].strip()}
        return [Draft([*request.context["messages"], reply], request.context["source"])]


def _without_empty_answer(messages: list[dict]) -> list[dict]:
    """The conversation up to its last user turn: blank assistant turns at the end dropped."""
    kept = list(messages)
    while kept and kept[-1]["role"] == "assistant" and not kept[-1]["content"].strip():
        kept.pop()
    return kept
