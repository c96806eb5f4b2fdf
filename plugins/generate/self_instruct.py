"""The `self-instruct` strategy: new instruction/response pairs in the style of seed examples
sampled from the curated data (Wang et al. 2023, "Self-Instruct")."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from curate.generation import (Draft, GenerationError, GenerationRequest, GenerationStrategy,
                               object_schema)
from curate.options import OptionError, option
from curate.records import Record

SYSTEM = ("You write training examples for an AI assistant: realistic instructions a user might"
          " give, each with the response the assistant should give.")


@dataclass
class SelfInstructOptions:
    count: int = option(20, min=1, help="how many new pairs to ask for in all")
    pairs_per_request: int = option(1, min=1, max=20, help="pairs asked for in one request")
    seeds_per_request: int = option(3, min=1, max=20, help="examples shown in each request")
    sources: list[str] = option([], help="draw seeds only from these sources (default: all)")
    balance_sources: bool = option(True, help="take seeds from each source in turn, so a large"
                                              " source does not drown the others")
    reuse_seeds: bool = option(False, help="let a seed appear again before every other seed"
                                           " has been shown once")
    temperatures: list[float] = option([], help="cycle through these temperatures request by"
                                                " request, for variety (default: the stage's)")
    guidance: str = option("", help="more instructions for the model, e.g. the topics wanted")


class SelfInstruct(GenerationStrategy):
    name = "self-instruct"
    Options = SelfInstructOptions
    version = "1"

    @classmethod
    def check_options(cls, options: SelfInstructOptions) -> None:
        for index, value in enumerate(options.temperatures):
            if not 0 <= value <= 2:
                raise OptionError(f"temperatures[{index}]", f"expected a temperature between 0"
                                  f" and 2, found {value}")

    def requests(self, records: list[Record], rng: random.Random) -> Iterator[GenerationRequest]:
        pool = SeedPool(self._seed_records(records), rng, self.options.balance_sources,
                        self.options.reuse_seeds)
        total = math.ceil(self.options.count / self.options.pairs_per_request)
        for number in range(total):
            asked = min(self.options.pairs_per_request,
                        self.options.count - number * self.options.pairs_per_request)
            seeds = pool.take(self.options.seeds_per_request)
            temperatures = self.options.temperatures
            yield GenerationRequest(
                [{"role": "system", "content": SYSTEM},
                 {"role": "user", "content": self._prompt(seeds, asked, number)}],
                schema=pairs_schema(asked), seeds=tuple(seed.id for seed in seeds),
                temperature=temperatures[number % len(temperatures)] if temperatures else None,
                context={"asked": asked})

    def parse(self, answer: dict, request: GenerationRequest) -> list[Draft]:
        pairs = answer["pairs"][: request.context["asked"]]
        return [Draft.pair(pair["prompt"].strip(), pair["response"].strip(), self.stage_name)
                for pair in pairs]

    def _seed_records(self, records: list[Record]) -> list[Record]:
        wanted = set(self.options.sources)
        seeds = [r for r in records if r.origin != "generated" and r.prompt.strip()
                 and r.response.strip() and (not wanted or r.source in wanted)]
        if not seeds:
            where = f" in sources {', '.join(sorted(wanted))}" if wanted else ""
            raise GenerationError(f"no records with a prompt and a response{where} to use as"
                                  f" seeds")
        return seeds

    def _prompt(self, seeds: list[Record], asked: int, number: int) -> str:
        shown = "\n\n".join(f"Example {i}:\nInstruction: {seed.prompt}\nResponse: {seed.response}"
                            for i, seed in enumerate(seeds, start=1))
        plural = "a new example" if asked == 1 else f"{asked} new examples"
        guidance = f"\n\n{self.options.guidance.strip()}" if self.options.guidance.strip() else ""
        # The request number keeps two requests over the same seeds distinct.
        return (f"Here are examples of the data (set {number + 1}):\n\n{shown}\n\nWrite {plural}"
                f" in the same style, domain and language, each different from the examples and"
                f" from each other: an instruction and the response to it. Do not copy the"
                f" examples.{guidance}")


def pairs_schema(count: int) -> dict:
    pair = object_schema(prompt={"type": "string", "minLength": 1},
                         response={"type": "string", "minLength": 1})
    return object_schema(pairs={"type": "array", "items": pair, "minItems": 1,
                                "maxItems": count})


class SeedPool:
    """Hands out seed records, shuffled: in turn from each source when balancing, and none shown
    twice before all of its source's have been shown (unless reuse is allowed)."""

    def __init__(self, records: list[Record], rng: random.Random, balance: bool, reuse: bool):
        self.rng, self.reuse = rng, reuse
        self.groups: dict[str, list[Record]] = {}
        for record in records:
            self.groups.setdefault(record.source if balance else "", []).append(record)
        self.order = sorted(self.groups)
        self.left = {name: self._shuffled(name) for name in self.order}
        self.distinct = len({record.id for record in records})
        self.turn = 0

    def take(self, count: int) -> list[Record]:
        taken: dict[str, Record] = {}
        while len(taken) < min(count, self.distinct):
            name = self.order[self.turn % len(self.order)]
            self.turn += 1
            if self.reuse:
                record = self.rng.choice(self.groups[name])
            else:
                if not self.left[name]:
                    self.left[name] = self._shuffled(name)  # all shown once: start over
                record = self.left[name].pop()
            taken.setdefault(record.id, record)
        return list(taken.values())

    def _shuffled(self, name: str) -> list[Record]:
        group = list(self.groups[name])
        self.rng.shuffle(group)
        return group
