"""Where did a record go? Looks an id (or a prefix of one) up in every step of a run folder.

A record ends in a step's rejected set, in a step's pending set (waiting in the review queue),
or in the dataset. A stage that rewrites a record gives it a new id (a reviewer's edit too);
`Record.revised` notes the old one in `meta.revised_from`, and the lookup follows it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
    """"rejected", "pending" (waiting for review), "train", "eval", "general_eval" (general
    records a rehearsal stage held out for the forgetting check), or "kept" (a run stopped
    early with --until, or waiting for review)."""
    step: str
    reason: str = ""
    detail: str = ""
    source: str = ""
    origin: str = ""
    where_from: str = ""
    """The input location, e.g. data/reviews.jsonl:17."""
    revisions: list[str] = field(default_factory=list)
    """How the asked-for id became this one: "step 'x' revised A into B", in order."""
    passed: list[str] = field(default_factory=list)
    """The steps the record got through before `step` (all of them for kept records)."""
    review: dict = field(default_factory=dict)
    """A reviewer's decision that let it through: status, reviewer, at, note (meta.review)."""


class RunLookup:
    """Searches the step folders of a run folder's latest run, in step order."""

    def __init__(self, run_dir: Path):
        self.folder = RunFolder(run_dir)
        self.manifest = read_manifest(run_dir)
        self.step_names = [s["name"] for s in self.manifest.get("steps", [])]
        self.step_dirs = [self.folder.step_dir(s["index"], s["name"])
                          for s in self.manifest.get("steps", [])]

    def locate(self, prefix: str) -> list[Finding]:
        findings = self.rejections(prefix) + self.pending(prefix) + self.kept(prefix)
        if findings:
            return findings
        for revised_id, step, new_id in self.revisions(prefix):
            for finding in self.locate(new_id):
                finding.revisions.insert(0, f"step '{step}' revised {revised_id} into {new_id}")
                findings.append(finding)
        return findings

    def rejections(self, prefix: str) -> list[Finding]:
        findings = []
        for step_dir in self.step_dirs:
            table = pq.read_table(step_dir / "rejected.parquet")
            matches = table.filter(pc.starts_with(table["id"], prefix)).to_pylist()
            findings += [Finding(row["id"], "rejected", row["stage"], row["reason"],
                                 row["detail"], row["source"] or "", row["origin"] or "",
                                 row["location"] or "") for row in matches]
        return findings

    def pending(self, prefix: str) -> list[Finding]:
        findings = []
        for name, step_dir in zip(self.step_names, self.step_dirs):
            path = step_dir / "pending.parquet"
            if not path.exists():
                continue
            table = pq.read_table(path, columns=["id", "source", "origin", "meta", "detail"])
            command = (f"curate review {self.manifest.get('recipe', {}).get('file', 'RECIPE')}"
                       f" --run-dir {self.folder.path}")
            findings += [Finding(row["id"], "pending", name, detail=f"{row['detail']}; review"
                                 f" it with: {command}", source=row["source"], origin=row["origin"],
                                 where_from=_where_from(row))
                         for row in table.filter(pc.starts_with(table["id"], prefix)).to_pylist()]
        return findings

    def kept(self, prefix: str) -> list[Finding]:
        origins = self._kept_origins(prefix)
        status = self.manifest.get("status")
        if status in ("partial", "review"):
            stopped = ("where the run stopped (--until)" if status == "partial" else
                       "where the run stopped: records wait for review, so no dataset yet")
            return [Finding(record_id, "kept", self.step_names[-1], detail=stopped,
                            where_from=place, review=review)
                    for record_id, places in origins.items() for place, review in places]
        findings = []
        for split in ("train", "eval", "general_eval"):
            path = self.folder.dataset / f"{split}.jsonl"
            if not path.exists():
                continue
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    # Lines are canonical JSON with sorted keys: the id comes first.
                    if line.startswith(f'{{"id":"{prefix}'):
                        record = json.loads(line)
                        findings.append(Finding(record["id"], split, split,
                                                source=record["source"], origin=record["origin"],
                                                detail=f"dataset/{split}.jsonl line {number}",
                                                **_next(origins, record["id"])))
        return findings

    def revisions(self, prefix: str) -> list[tuple[str, str, str]]:
        """(old id, step, new id) for records rewritten from an id with this prefix, by the
        first step whose output names it (later steps carry the same `meta` on)."""
        for name, step_dir in zip(self.step_names, self.step_dirs):
            found = []
            for kind in ("kept", "rejected"):
                table = pq.read_table(step_dir / f"{kind}.parquet", columns=["id", "meta"])
                needle = f'"revised_from":"{prefix}'  # meta is canonical JSON, without spaces
                hits = table.filter(pc.fill_null(pc.match_substring(table["meta"], needle),
                                                  False)).to_pylist()
                found += [(json.loads(row["meta"])["revised_from"], name, row["id"])
                          for row in hits]
            if found:
                return found
        return []

    def _kept_origins(self, prefix: str) -> dict[str, list[tuple[str, dict]]]:
        """(input location, review decision) of the last step's kept records matching the
        prefix, in order."""
        if not self.step_dirs:
            return {}
        table = pq.read_table(self.step_dirs[-1] / "kept.parquet", columns=["id", "meta"])
        origins: dict[str, list[tuple[str, dict]]] = {}
        for row in table.filter(pc.starts_with(table["id"], prefix)).to_pylist():
            meta = json.loads(row["meta"])
            review = meta.get("review")
            origins.setdefault(row["id"], []).append(
                (meta.get("from", ""), review if isinstance(review, dict) else {}))
        return origins


def locate(run_dir: Path, prefix: str) -> list[Finding]:
    if len(prefix) < MIN_PREFIX:
        raise CurateError(f"record id '{prefix}' is too short: give at least {MIN_PREFIX}"
                          f" characters")
    lookup = RunLookup(run_dir)
    try:
        findings = lookup.locate(prefix)
    except (OSError, ValueError) as error:  # pyarrow raises ArrowInvalid, a ValueError
        raise CurateError(f"{run_dir}: the run folder is damaged ({error}): run the recipe"
                          f" again to rebuild it") from None
    if not findings:
        raise CurateError(f"no record whose id starts with '{prefix}' in {run_dir}")
    for finding in findings:
        names = lookup.step_names
        finding.passed = names[: names.index(finding.step)] if finding.step in names else names
    return findings


def read_manifest(run_dir: Path) -> dict:
    manifest_file = RunFolder(run_dir).manifest_file
    if not manifest_file.exists():
        raise CurateError(f"{run_dir}: not a curate run folder (no manifest.json)")
    try:
        manifest = read_json(manifest_file)
    except (OSError, ValueError) as error:
        raise CurateError(f"{run_dir}: manifest.json is unreadable ({error}): run the recipe"
                          f" again to rebuild it") from None
    if not isinstance(manifest, dict):
        raise CurateError(f"{run_dir}: manifest.json is not a curate manifest")
    return manifest


def _where_from(row: dict) -> str:
    return json.loads(row["meta"]).get("from", "")


def _next(origins: dict[str, list[tuple[str, dict]]], record_id: str) -> dict:
    places = origins.get(record_id)
    where_from, review = places.pop(0) if places else ("", {})
    return {"where_from": where_from, "review": review}
