"""The whole curation pipeline at scale: read, length, language, exact and near dedupe,
consistency, split and write, as `curate run` does it.

Builds N chat examples of ~300 tokens (100,000 by default; `--rows 1000000` for the full target)
with known exact copies (case and whitespace changed), near copies (a few words changed) and
some non-English records, then runs a recipe with every built-in stage in a child process and
prints, per step, records per second, plus the total time and peak memory. In the same run it
measures the floor every step pays, reading the file with json.loads, and prints the ratio.

    python benchmarks/pipeline.py [--rows 1000000] [--workers 2] [--prompt-similarity 0.9]
                                  [--keep DIR]

Targets on a 2-core machine (issue 3): 1M examples in at most 15 minutes and 8 GB peak memory.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOPICS = ("battery", "screen", "delivery", "refund", "warranty", "keyboard", "speaker", "lens",
          "charger", "strap", "kettle", "blender", "mattress", "router", "printer", "jacket")
WORDS = ("after before during because although while since unless until whenever the a this "
         "that every some many few several product item order package support team customer "
         "review answer question problem issue solution update version model feature setting "
         "works broke failed arrived returned replaced fixed improved lasted charged connected "
         "quickly slowly easily barely finally again never always often sometimes really quite "
         "good bad great poor excellent terrible decent solid cheap expensive light heavy small "
         "large quiet loud warm cold bright dim clear fuzzy soft hard smooth rough new old").split()
FOREIGN = (
    "Der Akku hält den ganzen Tag, aber das Armband ist nach einer Woche gerissen und der "
    "Kundendienst hat nie auf meine E-Mail geantwortet.",
    "La batería dura todo el día, pero la correa se rompió después de una semana y el servicio "
    "de atención al cliente nunca respondió a mi correo.",
    "La batterie tient toute la journée, mais le bracelet s'est cassé au bout d'une semaine et "
    "le service client n'a jamais répondu à mon courriel.",
)


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def example(rng: random.Random, index: int) -> dict:
    topic = TOPICS[index % len(TOPICS)]
    prompt = f"Customer message {index} about the {topic}: " + " ".join(
        sentence(rng, rng.randint(8, 16)) for _ in range(4))
    answer = " ".join(sentence(rng, rng.randint(10, 18)) for _ in range(12))
    return {"instruction": prompt, "output": answer}


def near_copy(rng: random.Random, row: dict) -> dict:
    words = row["output"].split()
    for _ in range(2):
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    return {**row, "output": " ".join(words)}


def build_data(path: Path, rows: int, seed: int = 0) -> dict:
    """Write `rows` alpaca lines; returns how many of each planted kind went in."""
    rng = random.Random(seed)
    counts = {"unique": 0, "exact": 0, "near": 0, "foreign": 0}
    recent: list[dict] = []
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(rows):
            kind = rng.choices(("unique", "exact", "near", "foreign"), (90, 4, 4, 2))[0]
            if kind in ("exact", "near") and recent:
                original = rng.choice(recent)
                row = ({**original, "output": "  " + original["output"].upper()}
                       if kind == "exact" else near_copy(rng, original))
            elif kind == "foreign":
                text = rng.choice(FOREIGN)
                row = {"instruction": f"{text} ({index})", "output": f"{text} {text}"}
            else:
                kind, row = "unique", example(rng, index)
                recent = (recent + [row])[-1000:]
            counts[kind] += 1
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return counts


RECIPE = """
[run]
seed = 0
workers = {workers}

[[sources]]
name = "bench"
use = "jsonl"
path = "data.jsonl"
format = "alpaca"

[[stages]]
use = "length"
max_chars = 4000

[[stages]]
use = "language"
keep = ["en"]
detector = "{detector}"
judged_chars = {judged_chars}

[[stages]]
use = "exact-dedupe"

[[stages]]
use = "near-dedupe"

[[stages]]
use = "consistency"
prompt_similarity = {prompt_similarity}

[split]
eval_fraction = 0.01
"""


def json_floor(path: Path) -> float:
    started = time.perf_counter()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            json.loads(line)
    return time.perf_counter() - started


def run_curate(folder: Path) -> tuple[float, float]:
    """(seconds, peak MiB) of `curate run` in a child process."""
    code = ("import resource, sys, time\nfrom curate.cli import main\n"
            "started = time.perf_counter()\ntry:\n    main()\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nprint('BENCH', time.perf_counter() - started,"
            " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,"
            " resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code, "run", str(folder / "bench.toml"),
                             "--run-dir", str(folder / "run")], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"curate run failed:\n{result.stdout}\n{result.stderr}")
    line = [l for l in result.stderr.splitlines() if l.startswith("BENCH")][-1]
    _, seconds, children, own = line.split()
    return float(seconds), max(float(children), float(own))


def report(folder: Path, rows: int, counts: dict, floor: float, seconds: float,
           peak: float) -> None:
    manifest = json.loads((folder / "run" / "manifest.json").read_text())
    print(f"rows: {rows:,}  planted: {counts}")
    print(f"floor (json.loads only): {rows / floor:,.0f} rows/s")
    for step in manifest["steps"]:
        rate = step["in"] / step["seconds"] if step["seconds"] else float("inf")
        print(f"  {step['name']:<14} {step['in']:>10,} in {step['rejected']:>9,} rejected"
              f"  {step['seconds']:>8.1f}s  {rate:>10,.0f} records/s")
    final = manifest["final"]
    print(f"total: {seconds:.0f}s ({seconds / 60:.1f} min), {rows / seconds:,.0f} rows/s,"
          f" {floor / seconds:.3f}x of the floor's speed; peak memory {peak:,.0f} MiB")
    print(f"final: {final['train']:,} train, {final['eval']:,} eval, {final['rejected']:,}"
          f" rejected; reasons: " + ", ".join(
              f"{reason} {count:,}" for step in manifest["steps"]
              for reason, count in step["reasons"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--detector", default="langid",
                        help="language detector: langid (fast) or langdetect (the default one)")
    parser.add_argument("--judged-chars", type=int, default=1000,
                        help="the language stage's judged_chars: characters judged per text")
    parser.add_argument("--prompt-similarity", type=float, default=1.0,
                        help="the consistency stage's prompt_similarity (below 1.0 it also"
                             " groups near-identical prompts)")
    parser.add_argument("--keep", type=Path, help="keep the data and run folder here")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="curate-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    counts = build_data(folder / "data.jsonl", args.rows)
    (folder / "bench.toml").write_text(RECIPE.format(workers=args.workers,
                                                     detector=args.detector,
                                                     judged_chars=args.judged_chars,
                                                     prompt_similarity=args.prompt_similarity))
    floor = json_floor(folder / "data.jsonl")
    seconds, peak = run_curate(folder)
    report(folder, args.rows, counts, floor, seconds, peak)
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
