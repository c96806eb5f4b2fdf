"""Where did a record go? Looks an id (or a prefix of one) up in every step of a run folder.

A record ends in a step's rejected set, in a step's pending set (waiting in the review queue),
or in the dataset. A stage that rewrites a record gives it a new id (a reviewer's edit too);
`Record.revised` notes the old one in `meta.revised_from`, and the lookup follows it. A record a
stage added (a generated or rehearsal one) first appears in that step's output: the lookup names
the step, and the steps it passed start after it.
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
    """The steps the record got through before `step` (all of them for kept records), from the
    one after the step that added it, if a stage added it."""
    added_by: str = ""
    """The step that added the record and how, e.g. "step 'generate' (self-instruct, model m)";
    empty for a record read from a source."""
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
                            source=place["source"], origin=place["origin"],
                            where_from=place["where_from"], review=place["review"])
                    for record_id, places in origins.items() for place in places]
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

    def adding_step(self, record_id: str, origin: str, last: int) -> tuple[int, dict] | None:
        """(position, meta) of the step, at or before position `last`, that added the record,
        following its revisions back; None for a record read from a source."""
        found = self._first_output(record_id, origin, last)
        while found is not None and found[0] > 0:
            position, meta = found
            earlier = meta.get("revised_from")
            before = self._first_output(earlier, origin, position - 1) if earlier else None
            if before is None:
                added = self.manifest["steps"][position].get("added")
                return found if added else None
            found = before
        return None

    def _first_output(self, record_id: str, origin: str, last: int) -> tuple[int, dict] | None:
        """(position, meta) of the first step whose output holds the record (by id and origin:
        a general record may copy a task record's messages, and so its id). The meta of what
        the read step holds is not needed, nor read."""
        for position, step_dir in enumerate(self.step_dirs[: last + 1]):
            for kind in ("kept", "rejected", "pending"):
                path = step_dir / f"{kind}.parquet"
                if not path.exists():
                    continue
                table = pq.read_table(path, columns=["id", "origin"])
                matches = pc.and_(pc.equal(table["id"], record_id),
                                  pc.equal(table["origin"], origin))
                rows = pc.indices_nonzero(pc.fill_null(matches, False).combine_chunks())
                if len(rows):
                    return position, _meta_at(path, rows[0].as_py()) if position else {}
        return None

    def _kept_origins(self, prefix: str) -> dict[str, list[dict]]:
        """Source, origin, input location and review decision of the last step's kept records
        matching the prefix, in order."""
        if not self.step_dirs:
            return {}
        table = pq.read_table(self.step_dirs[-1] / "kept.parquet",
                              columns=["id", "source", "origin", "meta"])
        origins: dict[str, list[dict]] = {}
        for row in table.filter(pc.starts_with(table["id"], prefix)).to_pylist():
            meta = json.loads(row["meta"])
            review = meta.get("review")
            origins.setdefault(row["id"], []).append(
                {"source": row["source"], "origin": row["origin"],
                 "where_from": meta.get("from", ""),
                 "review": review if isinstance(review, dict) else {}})
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
        trace(lookup, finding)
    return findings


def trace(lookup: RunLookup, finding: Finding) -> None:
    """Fill in the step that added the record, if a stage added it, and the steps it passed."""
    names = lookup.step_names
    end = names.index(finding.step) if finding.step in names else len(names)
    added = lookup.adding_step(finding.id, finding.origin, end) if finding.origin else None
    if added is not None:
        position, meta = added
        finding.added_by = _addition(names[position], finding.origin, meta)
    finding.passed = names[added[0] + 1 if added else 0: end]


def _addition(step: str, origin: str, meta: dict) -> str:
    generation = meta.get("generation")
    if isinstance(generation, dict):
        how = [str(generation["strategy"])] if generation.get("strategy") else []
        how += [f"model {generation['model']}"] if generation.get("model") else []
        return f"step '{step}'" + (f" ({', '.join(how)})" if how else "")
    if origin == "rehearsal":
        where = f" ({meta['from']})" if meta.get("from") else ""
        return f"step '{step}', drawn from the general pool{where}"
    return f"step '{step}'"


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


def _meta_at(path: Path, row: int) -> dict:
    return json.loads(pq.read_table(path, columns=["meta"])["meta"][row].as_py() or "{}")


def _where_from(row: dict) -> str:
    return json.loads(row["meta"]).get("from", "")


def _next(origins: dict[str, list[dict]], record_id: str) -> dict:
    places = origins.get(record_id)
    place = places.pop(0) if places else {"where_from": "", "review": {}}
    return {"where_from": place["where_from"], "review": place["review"]}
