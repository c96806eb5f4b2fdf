"""How much the host costs on top of the floor: reading, converting, hashing and writing records.

Builds N alpaca rows (default 100,000; ~150 words each), then measures in the same run:
  baseline  json.loads per line, then pyarrow writes the rows to parquet in batches (one process)
  curate    `curate run --until read` on the same file (format conversion, ids, parquet output)
  pipeline  `curate run` with the length stage and the split
and prints rows per second, the ratio against the baseline, and peak memory.

    python benchmarks/ingest.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

WORDS = ("the battery lasts all day but the strap broke after a week and support never answered "
         "my email great value for the price would buy again shipping was fast slow quality "
         "product works love hate returned refund excellent terrible okay average").split()


def build_data(path: Path, rows: int) -> None:
    generator = random.Random(0)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(rows):
            handle.write(json.dumps({
                "instruction": " ".join(generator.choices(WORDS, k=30)),
                "output": " ".join(generator.choices(WORDS, k=120)),
            }) + "\n")


def baseline(path: Path, out: Path) -> float:
    started = time.perf_counter()
    writer, batch = None, []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            batch.append(json.loads(line))
            if len(batch) == 4096:
                writer = _write(writer, batch, out)
                batch = []
    _write(writer, batch, out).close()
    return time.perf_counter() - started


def _write(writer, batch, out):
    table = pa.Table.from_pylist(batch)
    writer = writer or pq.ParquetWriter(out, table.schema)
    writer.write_table(table)
    return writer


def curate_run(recipe: Path, run_dir: Path, *extra: str) -> tuple[float, float]:
    """(seconds, peak MiB) of `curate run` in a child process."""
    code = ("import resource, sys, time\nfrom curate.cli import main\nstarted = time.perf_counter()\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)"
            ".ru_maxrss / 1024, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code, "run", str(recipe), "--run-dir",
                             str(run_dir), "--quiet", *extra], capture_output=True, text=True,
                            check=True)
    seconds, peak = result.stderr.strip().splitlines()[-1].split()
    return float(seconds), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        build_data(root / "data.jsonl", rows)
        (root / "bench.toml").write_text('[[sources]]\nname = "d"\nuse = "jsonl"\n'
                                         'path = "data.jsonl"\nformat = "alpaca"\n'
                                         '[[stages]]\nuse = "length"\nmax_chars = 100000\n')
        base = baseline(root / "data.jsonl", root / "baseline.parquet")
        base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        read, read_peak = curate_run(root / "bench.toml", root / "run-read", "--until", "read")
        whole, whole_peak = curate_run(root / "bench.toml", root / "run-all")
    print(f"rows: {rows:,}")
    print(f"baseline (json.loads + parquet)   {rows / base:>9,.0f} rows/s  peak {base_peak:,.0f} MiB")
    print(f"curate read step                  {rows / read:>9,.0f} rows/s  peak {read_peak:,.0f} MiB"
          f"  ratio {base / read:.2f}x of baseline speed")
    print(f"curate read + length + split      {rows / whole:>9,.0f} rows/s  peak {whole_peak:,.0f} MiB"
          f"  ratio {base / whole:.2f}x of baseline speed")


if __name__ == "__main__":
    main()
