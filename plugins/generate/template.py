"""The `template` strategy: a prompt written in the recipe, filled in from each chosen record
({prompt}, {response}, {system}, {source}), whose answer is a new pair or a new response."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from curate.generation import Draft, GenerationRequest, GenerationStrategy, object_schema
from curate.options import OptionError, option
from curate.records import Record

FIELDS = ("prompt", "response", "system", "source")


@dataclass
class TemplateOptions:
    template: str = option(help="the user message, with {prompt}, {response}, {system} and"
                                " {source} filled in from each record ({{ and }} for braces)")
    system: str = option("", help="a system message for every request")
    output: Literal["pair", "response"] = option(
        "pair", help="'pair': the answer is a new prompt and response; 'response': a new"
                     " response to the record's own prompt")
    sources: list[str] = option([], help="use only records of these sources (default: all)")
    limit: int | None = option(None, min=1, help="use at most this many records, chosen at"
                                                 " random with the run's seed")


class TemplatePrompts(GenerationStrategy):
    name = "template"
    Options = TemplateOptions
    version = "1"

    @classmethod
    def check_options(cls, options: TemplateOptions) -> None:
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(options.template)
                     if name is not None]
        except ValueError as error:
            raise OptionError("template", f"{error}: write {{{{ and }}}} for literal braces")
        for name in names:
            if name not in FIELDS:
                raise OptionError("template", f"unknown field {{{name}}} (fields: "
                                  f"{', '.join('{' + f + '}' for f in FIELDS)}; write {{{{ and"
                                  f" }}}} for literal braces)")

    def requests(self, records: list[Record], rng: random.Random) -> Iterator[GenerationRequest]:
        wanted = set(self.options.sources)
        chosen = [r for r in records if r.origin != "generated"
                  and (not wanted or r.source in wanted)]
        if self.options.limit is not None and len(chosen) > self.options.limit:
            picked = sorted(rng.sample(range(len(chosen)), self.options.limit))
            chosen = [chosen[index] for index in picked]
        for record in chosen:
            yield self._request(record)

    def parse(self, answer: dict, request: GenerationRequest) -> list[Draft]:
        record: Record = request.context["record"]
        if self.options.output == "pair":
            return [Draft.pair(answer["prompt"].strip(), answer["response"].strip(),
                               record.source, record.system)]
        last_is_answer = record.messages and record.messages[-1]["role"] == "assistant"
        messages = record.messages[:-1] if last_is_answer else record.messages
        reply = {"role": "assistant", "content": answer["response"].strip()}
        return [Draft([*messages, reply], record.source)]

    def _request(self, record: Record) -> GenerationRequest:
        text = self.options.template.format(prompt=record.prompt, response=record.response,
                                            system=record.system, source=record.source)
        system = [{"role": "system", "content": self.options.system}] if (
            self.options.system.strip()) else []
        fields = ("prompt", "response") if self.options.output == "pair" else ("response",)
        schema = object_schema(**{f: {"type": "string", "minLength": 1} for f in fields})
        return GenerationRequest([*system, {"role": "user", "content": text}], schema=schema,
                                 seeds=(record.id,), context={"record": record})
