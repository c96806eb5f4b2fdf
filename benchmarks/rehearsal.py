"""The rehearsal stage at scale: N task records, a general pool of P records with planted copies
and near copies of task prompts, mixed at a 10% ratio.

Runs the same data twice in child processes, as `curate run` does it: once read and split only
(the baseline every run pays), once with the rehearsal stage, and prints the stage's records per
second, the pool it screened, how many planted leaks it caught, and time and peak memory against
the baseline.

    python benchmarks/rehearsal.py [--rows 200000] [--pool 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from pathlib import Path

from pipeline import example, run_curate

BASELINE = """
[[sources]]
name = "task"
use = "jsonl"
path = "task.jsonl"
format = "alpaca"

[split]
eval_fraction = 0.01
"""

REHEARSAL = """
[[stages]]
use = "rehearsal"
ratio = 0.1
held_out = 200

[stages.source]
use = "jsonl"
path = "pool.jsonl"
format = "alpaca"
"""


def build(folder: Path, rows: int, pool: int, leaks: int) -> None:
    rng = random.Random(0)
    task = [example(rng, index) for index in range(rows)]
    with open(folder / "task.jsonl", "w", encoding="utf-8") as handle:
        for row in task:
            handle.write(json.dumps(row) + "\n")
    with open(folder / "pool.jsonl", "w", encoding="utf-8") as handle:
        for index in range(pool):
            row = example(rng, rows + index)
            if index < leaks:  # half exact copies of a task prompt, half with one word changed
                prompt = task[rng.randrange(rows)]["instruction"]
                if index % 2:
                    words = prompt.split()
                    words[rng.randrange(len(words))] = "changed"
                    prompt = " ".join(words)
                row = {**row, "instruction": prompt}
            handle.write(json.dumps(row) + "\n")


def measure(folder: Path, recipe: str) -> tuple[float, float, dict]:
    (folder / "bench.toml").write_text(recipe)
    shutil.rmtree(folder / "run", ignore_errors=True)
    seconds, peak = run_curate(folder)
    return seconds, peak, json.loads((folder / "run" / "manifest.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--leaks", type=int, default=1_000)
    parser.add_argument("--keep", type=Path, help="keep the data and run folders here")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="curate-rehearsal-"))
    folder.mkdir(parents=True, exist_ok=True)
    build(folder, args.rows, args.pool, args.leaks)
    base_seconds, base_peak, _ = measure(folder, BASELINE)
    seconds, peak, manifest = measure(folder, BASELINE.replace("[split]", REHEARSAL + "\n[split]"))
    step = next(s for s in manifest["steps"] if s["use"] == "rehearsal")
    stats = step["stats"]["rehearsal"]["pool"]
    print(f"task records {args.rows:,}, pool {args.pool:,} ({args.leaks:,} planted copies of"
          f" task prompts, half exact, half one word changed)")
    print(f"rehearsal step: {step['seconds']:.1f}s, {step['in'] / step['seconds']:,.0f} task"
          f" records/s; pool considered {stats['considered']:,}, too close to a task record"
          f" {stats['contaminated']:,}, duplicates {stats['duplicates']:,}, drawn"
          f" {stats['drawn']:,}")
    print(f"mix: {manifest['split']['rehearsal']['examples']}")
    print(f"baseline (read + split): {base_seconds:.1f}s, peak {base_peak:,.0f} MiB")
    print(f"with rehearsal:          {seconds:.1f}s, peak {peak:,.0f} MiB"
          f" ({seconds / base_seconds:.2f}x the time, +{peak - base_peak:,.0f} MiB)")
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
