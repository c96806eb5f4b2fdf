"""A test plugin standing in for the `generate` stage: it marks the records of one source as
generated, with a generation strategy in meta["generation"], as generated records carry."""

import json
from dataclasses import dataclass

from curate import hookimpl
from curate.options import option
from curate.records import Record
from curate.stages import Stage


@dataclass
class MarkOptions:
    source: str = option("synthetic", help="the source whose records count as generated")
    strategies: list[str] = option(["self-instruct", "evol"], help="given in turn")


class MarkGenerated(Stage):
    name = "mark-generated"
    Options = MarkOptions

    def process(self, records):
        marked = 0
        for record in records:
            if record.source != self.options.source:
                yield record
                continue
            strategy = self.options.strategies[marked % len(self.options.strategies)]
            marked += 1
            meta = {**record.meta, "generation": {"strategy": strategy, "model": "test-model"}}
            yield Record(record.messages, record.source, "generated", meta, record.id)


@hookimpl
def register_stages(register):
    register(MarkGenerated)


def rows(kind: str, count: int) -> str:
    return "".join(json.dumps({"instruction": f"{kind} question number {i}?",
                               "output": f"A {kind.lower()} answer, number {i}."}) + "\n"
                   for i in range(count))


FILES = {"people.jsonl": rows("Human", 6), "synthetic.jsonl": rows("Generated", 6)}

RECIPE = """
[run]
seed = 1

[[sources]]
name = "people"
use = "jsonl"
path = "people.jsonl"

[[sources]]
name = "synthetic"
use = "jsonl"
path = "synthetic.jsonl"

[[stages]]
use = "mark-generated"

[[stages]]
use = "review"

[[stages]]
use = "length"
min_chars = 12

[split]
eval_fraction = 0.25
"""
