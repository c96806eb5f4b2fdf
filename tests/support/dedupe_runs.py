"""Runs of the dedupe stages over jsonl files, and the near-copy rows they are tested on:
shared by the in-memory and the Redis-backed tests."""

import json
import random

from curate.testing import jsonl, source_table
from curate.testing import messages_row as row

WORDS = [f"w{i}" for i in range(2000)]


def source(name: str, path: str, origin: str = "human") -> str:
    return source_table(name, path, format="messages", origin=origin, max_bad_fraction=0.0)


def recipe(stage: str, options: str = "", workers: int = 1, sources: str = "",
           before: str = "") -> str:
    return (f"[run]\nworkers = {workers}\n{sources or source('data', 'data.jsonl')}{before}"
            f'[[stages]]\nuse = "{stage}"\n{options}\n[split]\neval_fraction = 0.0\n')


def run_stage(run_recipe, rows, stage, options="", workers=1, name="recipe"):
    result = run_recipe(recipe(stage, options, workers), {"data.jsonl": jsonl(*rows)}, name=name)
    assert result.exit_code == 0, result.output
    assert result.manifest["final"]["accounted"] == len(rows)
    return result


def rejected_lines(result, step) -> dict[int, dict]:
    """Line number -> the rejected row, with its evidence parsed."""
    lines = {}
    for rejected in result.rejected(step):
        rejected["evidence"] = json.loads(rejected["evidence"])
        lines[int(rejected["location"].rsplit(":", 1)[1])] = rejected
    return lines


def words(generator: random.Random, count: int) -> str:
    return " ".join(generator.choices(WORDS, k=count))


def changed(text: str, generator: random.Random, count: int) -> str:
    """`text` with `count` words replaced by new ones."""
    tokens = text.split()
    for place in generator.sample(range(len(tokens)), count):
        tokens[place] = f"new{generator.randrange(10**6)}"
    return " ".join(tokens)


def near_rows(seed=0, originals=30, copies=10, changes=1):
    """`originals` random records, then copies of the first `copies` with words changed."""
    generator = random.Random(seed)
    rows = [row(words(generator, 15), words(generator, 150)) for _ in range(originals)]
    for index in range(copies):
        prompt, response = (m["content"] for m in rows[index]["messages"])
        rows.append(row(prompt, changed(response, generator, changes)))
    return rows
