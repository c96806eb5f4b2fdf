"""Where did a record go? Looks an id (or a prefix of one) up in every step of a run folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.runstore import RunFolder, read_json

MIN_PREFIX = 4


@dataclass
class Finding:
    id: str
    place: str
    """"rejected" or "train"/"eval"."""
    step: str
    reason: str = ""
    detail: str = ""
    source: str = ""
    origin: str = ""
    where_from: str = ""
    """The input location, e.g. data/reviews.jsonl:17."""


def locate(run_dir: Path, prefix: str) -> list[Finding]:
    folder = RunFolder(run_dir)
    if not folder.manifest_file.exists():
        raise CurateError(f"{run_dir}: not a curate run folder (no manifest.json)")
    read_manifest(run_dir)
    if len(prefix) < MIN_PREFIX:
        raise CurateError(f"record id '{prefix}' is too short: give at least {MIN_PREFIX}"
                          f" characters")
    try:
        findings = _rejections(folder, prefix) + _kept(folder, prefix)
    except (OSError, ValueError) as error:  # pyarrow raises ArrowInvalid, a ValueError
        raise CurateError(f"{run_dir}: the run folder is damaged ({error}): run the recipe"
                          f" again to rebuild it") from None
    if not findings:
        raise CurateError(f"no record whose id starts with '{prefix}' in {run_dir}")
    return findings


def steps_passed(run_dir: Path, step: str) -> list[str]:
    """Names of the steps a record got through before `step` (all of them for kept records)."""
    names = [s["name"] for s in read_manifest(run_dir).get("steps", [])]
    return names[: names.index(step)] if step in names else names


def read_manifest(run_dir: Path) -> dict:
    try:
        manifest = read_json(RunFolder(run_dir).manifest_file)
    except (OSError, ValueError) as error:
        raise CurateError(f"{run_dir}: manifest.json is unreadable ({error}): run the recipe"
                          f" again to rebuild it") from None
    if not isinstance(manifest, dict):
        raise CurateError(f"{run_dir}: manifest.json is not a curate manifest")
    return manifest


def _rejections(folder: RunFolder, prefix: str) -> list[Finding]:
    findings = []
    if not folder.stages.exists():
        return findings
    for step_dir in sorted(p for p in folder.stages.iterdir() if not p.name.startswith(".")):
        table = pq.read_table(step_dir / "rejected.parquet")
        matches = table.filter(pc.starts_with(table["id"], prefix)).to_pylist()
        findings += [Finding(row["id"], "rejected", row["stage"], row["reason"], row["detail"],
                             row["source"] or "", row["origin"] or "", _where_from(row))
                     for row in matches]
    return findings


def _where_from(row: dict) -> str:
    if row.get("meta"):
        return json.loads(row["meta"]).get("from", "")
    return row["detail"].split(": ", 1)[0] if row["stage"] == "read" else ""


def _kept(folder: RunFolder, prefix: str) -> list[Finding]:
    origins = _kept_origins(folder, prefix)
    findings = []
    for split in ("train", "eval"):
        path = folder.dataset / f"{split}.jsonl"
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if f'"id":"{prefix}' in line:
                    record = json.loads(line)
                    findings.append(Finding(record["id"], split, split, source=record["source"],
                                            origin=record["origin"],
                                            detail=f"dataset/{split}.jsonl line {number}",
                                            where_from=_next(origins, record["id"])))
    return findings


def _next(origins: dict[str, list[str]], record_id: str) -> str:
    places = origins.get(record_id)
    return places.pop(0) if places else ""


def _kept_origins(folder: RunFolder, prefix: str) -> dict[str, list[str]]:
    """Input locations of the final step's kept records matching the prefix, in order."""
    steps = sorted(p for p in folder.stages.glob("[0-9][0-9]-*"))
    if not steps:
        return {}
    table = pq.read_table(steps[-1] / "kept.parquet", columns=["id", "meta"])
    origins: dict[str, list[str]] = {}
    for row in table.filter(pc.starts_with(table["id"], prefix)).to_pylist():
        origins.setdefault(row["id"], []).append(_where_from(row))
    return origins
