"""Near-duplicate removal against a naive datasketch baseline, with precision and recall.

Builds N chat examples (100,000 by default, ~300 tokens each) of which some are planted copies of
others, each copy's Jaccard similarity to its original measured exactly (word 5-shingles, the lower
of the prompts' and the responses', as near-dedupe compares them):
  exact   case, punctuation and spacing changed (the same text after normalisation)
  clear   a few words changed, Jaccard 0.85-0.95
  above   just above the 0.8 threshold (0.80-0.85)
  below   just under it (0.70-0.80): must never be removed
Then measures, in one run:
  curate    `curate run` on a recipe: near-dedupe, then exact-dedupe ([run] workers)
  cached    the same run again with --force: near-dedupe reads every signature from its cache
  baseline  datasketch MinHash.update per shingle, then MinHashLSH query and insert, in one
            process, on the first --baseline-rows records
and prints records per second, the ratio, peak memory, and precision and recall.

    python benchmarks/dedupe.py [--rows 1000000] [--workers 2] [--baseline-rows 10000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from curate.plugins.minhash import normalise

THRESHOLD = 0.8
PLANTED = {"exact": 0.04, "clear": 0.04, "above": 0.02, "below": 0.02}
TARGETS = {"clear": (0.86, 0.95), "above": (0.805, 0.845), "below": (0.70, 0.79)}


@dataclass
class Data:
    rows: list[tuple[str, str]] = field(default_factory=list)
    pairs: list[tuple[int, int, float, str]] = field(default_factory=list)
    """(earlier line, later line, measured Jaccard, kind), lines counted from 1."""


def vocabulary(generator: random.Random, size: int = 6000) -> tuple[list[str], list[float]]:
    """Made-up words with Zipf frequencies (as cumulative weights), like real text."""
    syllables = ["ka", "lo", "ri", "men", "tas", "ul", "pre", "dor", "in", "ve", "sto", "ber",
                 "an", "ti", "co", "mu", "ser", "ga", "ne", "pol"]
    words = sorted({"".join(generator.choices(syllables, k=generator.randint(1, 4)))
                    for _ in range(size * 2)})[:size]
    generator.shuffle(words)
    return words, list(itertools.accumulate(1 / (rank + 1) for rank in range(len(words))))


def passage(generator, vocab, count: int) -> str:
    words, cumulative = vocab
    tokens = generator.choices(words, cum_weights=cumulative, k=count)
    sentences, start = [], 0
    while start < count:
        length = generator.randint(8, 20)
        sentence = tokens[start:start + length]
        sentences.append(" ".join([sentence[0].capitalize(), *sentence[1:]]) + ".")
        start += length
    return " ".join(sentences)


def exact_copy(text: str, generator: random.Random) -> str:
    choice = generator.randrange(3)
    if choice == 0:
        return text.upper()
    if choice == 1:
        return text.replace(".", "!").replace(" ", "  ")
    return text.lower().replace(".", " ...")


def shingles(parts: tuple[str, ...], size: int = 5) -> set:
    found = set()
    for index, part in enumerate(parts):
        words = normalise(part).split()
        found |= {(index, tuple(words[i:i + size])) for i in range(max(len(words) - size + 1, 1))}
    return found


def jaccard(first: tuple[str, ...], second: tuple[str, ...]) -> float:
    """The lower of the prompts' and the responses' Jaccard: near-dedupe removes a pair only
    when each part reaches the threshold."""
    values = []
    for a_part, b_part in zip(first, second):
        a, b = shingles((a_part,)), shingles((b_part,))
        values.append(len(a & b) / len(a | b) if a | b else 1.0)
    return min(values)


def near_copy(prompt: str, response: str, target: float, generator) -> str:
    """The response with words replaced at positions 5 apart, so that each replacement changes
    five shingles and the Jaccard lands near `target`."""
    words = response.split()
    total = len(shingles((prompt, response)))
    changes = max(1, round((1 - target) / (1 + target) * total / 5))
    slots = list(range(2, len(words) - 2, 5))
    for place in generator.sample(slots, min(changes, len(slots))):
        words[place] = f"zq{generator.randrange(10 ** 9)}"
    return " ".join(words)


def build(count: int, seed: int = 0) -> Data:
    generator = random.Random(seed)
    vocab = vocabulary(generator)
    kinds = [kind for kind, share in PLANTED.items() for _ in range(int(count * share))]
    originals = [(passage(generator, vocab, generator.randint(12, 40)),
                  passage(generator, vocab, generator.randint(150, 260)))
                 for _ in range(count - len(kinds))]
    rows = [(row, None, None) for row in originals]
    for kind, source in zip(kinds, generator.sample(range(len(originals)), len(kinds))):
        prompt, response = originals[source]
        if kind == "exact":
            copy = (exact_copy(prompt, generator), exact_copy(response, generator))
        else:
            copy = (prompt, near_copy(prompt, response, generator.uniform(*TARGETS[kind]),
                                      generator))
        rows.append((copy, source, kind))
    order = list(range(len(rows)))
    generator.shuffle(order)
    line_of = {old: new + 1 for new, old in enumerate(order)}
    data = Data(rows=[rows[old][0] for old in order])
    for index, (copy, source, kind) in enumerate(rows):
        if source is not None:
            first, second = sorted((line_of[source], line_of[index]))
            value = jaccard(originals[source], copy)
            data.pairs.append((first, second, value, kind if kind == "exact" else _kind(value)))
    return data


def _kind(similarity: float) -> str:
    """Planted pairs count by their measured Jaccard, not by the one aimed at."""
    return "clear" if similarity >= 0.85 else "above" if similarity >= THRESHOLD else "below"


def write(data: Data, folder: Path, workers: int) -> Path:
    with open(folder / "data.jsonl", "w", encoding="utf-8") as handle:
        for prompt, response in data.rows:
            handle.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                                  {"role": "assistant", "content": response}]})
                         + "\n")
    recipe = folder / "bench.toml"
    recipe.write_text(f'[run]\nworkers = {workers}\n[[sources]]\nname = "d"\nuse = "jsonl"\n'
                      f'path = "data.jsonl"\nformat = "messages"\n[[stages]]\n'
                      f'use = "near-dedupe"\n[[stages]]\nuse = "exact-dedupe"\n')
    return recipe


CHILD = """import resource, sys
from curate.cli import main
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
own, workers = (resource.getrusage(who).ru_maxrss / 1024
                for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(own, workers, file=sys.stderr)
"""


def curate_run(recipe: Path, run_dir: Path, *extra: str) -> dict:
    """Seconds per step and peak MiB (main process, largest worker) of a `curate run`."""
    result = subprocess.run([sys.executable, "-c", CHILD, "run", str(recipe), "--run-dir",
                             str(run_dir), "--quiet", *extra], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    own, workers = map(float, result.stderr.strip().splitlines()[-1].split())
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    return {"steps": {s["name"]: s["seconds"] for s in manifest["steps"]}, "peak": own,
            "worker_peak": workers}


def removals(run_dir: Path) -> dict[int, int]:
    """Line of each record near-dedupe removed -> line of the record it names."""
    read = pq.read_table(run_dir / "stages" / "00-read" / "kept.parquet", columns=["id", "meta"])
    line_of = {i: int(json.loads(m)["from"].rsplit(":", 1)[1])
               for i, m in zip(read["id"].to_pylist(), read["meta"].to_pylist())}
    rejected = pq.read_table(run_dir / "stages" / "01-near-dedupe" / "rejected.parquet",
                             columns=["location", "evidence"])
    return {int(location.rsplit(":", 1)[1]): line_of[json.loads(evidence)["duplicate_of"]]
            for location, evidence in zip(rejected["location"].to_pylist(),
                                          rejected["evidence"].to_pylist())}


def baseline(data: Data, count: int) -> tuple[float, dict[int, int]]:
    """The naive way: MinHash.update per shingle, query, insert if nothing matched."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    removed = {}
    started = time.perf_counter()
    for line, (prompt, response) in enumerate(data.rows[:count], start=1):
        sketch = MinHash(num_perm=128)
        words = f"{prompt} {response}".lower().split()
        for start in range(max(len(words) - 4, 1)):
            sketch.update(" ".join(words[start:start + 5]).encode("utf-8"))
        matches = lsh.query(sketch)
        if matches:
            removed[line] = min(matches)
        else:
            lsh.insert(line, sketch)
    return time.perf_counter() - started, removed


def quality(data: Data, removed: dict[int, int], lines: int) -> dict:
    """Recall per kind of planted pair, precision, and removals under the threshold."""
    pairs = [p for p in data.pairs if p[1] <= lines]
    found = {kind: [removed.get(second) == first for first, second, _, k in pairs if k == kind]
             for kind in PLANTED}
    true = {(second, first) for first, second, value, _ in pairs if value >= THRESHOLD}
    under = sum(jaccard(data.rows[line - 1], data.rows[other - 1]) < THRESHOLD
                for line, other in removed.items())
    clear = found["exact"] + found["clear"]
    return {"recall_clear": sum(clear) / max(len(clear), 1),
            "recall_above": sum(found["above"]) / max(len(found["above"]), 1),
            "removed_below": sum(found["below"]), "removed": len(removed),
            "precision": sum(item in true for item in removed.items()) / max(len(removed), 1),
            "under_threshold": under}


def show(name: str, rate: float, result: dict, extra: str = "") -> None:
    print(f"{name:<28}{rate:>9,.0f} records/s  recall clear {result['recall_clear']:.3f},"
          f" just above {result['recall_above']:.3f}; precision {result['precision']:.3f};"
          f" removed {result['removed']:,}, of them under the threshold"
          f" {result['under_threshold']}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument("--baseline-rows", type=int, default=10_000)
    options = parser.parse_args()
    started = time.perf_counter()
    data = build(options.rows)
    print(f"rows: {options.rows:,} ({len(data.pairs):,} planted copies), built in"
          f" {time.perf_counter() - started:.0f}s")
    with tempfile.TemporaryDirectory() as folder:
        recipe = write(data, Path(folder), options.workers)
        first = curate_run(recipe, Path(folder) / "run")
        removed = removals(Path(folder) / "run")
        cached = curate_run(recipe, Path(folder) / "run", "--force")
    seconds, naive_removed = baseline(data, options.baseline_rows)
    near, naive = first["steps"]["near-dedupe"], options.baseline_rows / seconds
    show("curate near-dedupe", options.rows / near, quality(data, removed, options.rows),
         f"; peak {first['peak']:,.0f} MiB (largest worker {first['worker_peak']:,.0f} MiB)")
    again = options.rows / cached["steps"]["near-dedupe"]
    print(f"{'  again, signatures cached':<28}{again:>9,.0f} records/s")
    print(f"{'curate exact-dedupe':<28}{options.rows / first['steps']['exact-dedupe']:>9,.0f}"
          f" records/s (on what near-dedupe kept)")
    show(f"baseline ({options.baseline_rows:,} rows)", naive,
         quality(data, naive_removed, options.baseline_rows))
    print(f"ratio: curate near-dedupe is {options.rows / near / naive:.1f}x the baseline")


if __name__ == "__main__":
    main()
