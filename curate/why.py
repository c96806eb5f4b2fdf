"""Where did a record go? Looks an id (or a prefix of one), or the input row a record was read
from, up in every step of a run folder.

A record ends in a step's rejected set, in a step's pending set (waiting in the review queue),
or in the dataset. A stage that rewrites a record gives it a new id (a reviewer's edit too);
`Record.revised` notes the old one in `meta.revised_from`, and the lookup follows it. A record a
stage added (a generated or rehearsal one) first appears in that step's output: the lookup names
the step, and the steps it passed start after it.
"""

from __future__ import annotations

import json
import re
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
    revised_from: str = ""
    """The id this record's last revision rewrote (meta.revised_from), if a stage rewrote it."""
    messages: list[dict] | None = None
    """The record's messages as the step judged them (rejected and pending records)."""
    raw: str = ""
    """The unreadable row as read, for a row rejected before it became a record."""


@dataclass(frozen=True)
class Revision:
    """A record with id `old` that step `step` rewrote into id `new`; `origin` and `source` tell
    it from another record that has (or got) the same text, and so the same id."""

    old: str
    step: str
    new: str
    origin: str
    source: str

    def led_to(self, finding: Finding) -> bool:
        """Whether `finding` is where this revision went (a later revision was checked when it
        was followed)."""
        same_record = (finding.origin, finding.source) == (self.origin, self.source)
        return same_record and (bool(finding.revisions) or finding.revised_from == self.old)


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
        for revision in self.revisions(prefix):
            for finding in filter(revision.led_to, self.locate(revision.new)):
                finding.revisions.insert(0, f"step '{revision.step}' revised {revision.old}"
                                            f" into {revision.new}")
                findings.append(finding)
        return findings

    def locate_row(self, location: str) -> list[Finding]:
        """Where the record read from `location` ("data/reviews.jsonl:13", or its end after a
        "/": "reviews.jsonl:13") went, following it through every id it had."""
        findings: dict[tuple, Finding] = {}
        for record_id in self._ids_from(location):
            for finding in self.locate(record_id):
                key = (finding.id, finding.place, finding.step, finding.where_from)
                if same_location(finding.where_from, location) and key not in findings:
                    findings[key] = finding
        return list(findings.values())

    def rejections(self, prefix: str) -> list[Finding]:
        findings = []
        for step_dir in self.step_dirs:
            table = pq.read_table(step_dir / "rejected.parquet")
            matches = table.filter(pc.starts_with(table["id"], prefix)).to_pylist()
            findings += [Finding(row["id"], "rejected", row["stage"], row["reason"],
                                 row["detail"], row["source"] or "", row["origin"] or "",
                                 row["location"] or "", revised_from=_revised_from(row),
                                 messages=row["messages"], raw=row["raw"] or "")
                         for row in matches]
        return findings

    def pending(self, prefix: str) -> list[Finding]:
        findings = []
        for name, step_dir in zip(self.step_names, self.step_dirs):
            path = step_dir / "pending.parquet"
            if not path.exists():
                continue
            table = pq.read_table(path, columns=["id", "source", "origin", "meta", "detail",
                                                 "messages"])
            command = (f"curate review {self.manifest.get('recipe', {}).get('file', 'RECIPE')}"
                       f" --run-dir {self.folder.path}")
            findings += [Finding(row["id"], "pending", name, detail=f"{row['detail']}; review"
                                 f" it with: {command}", source=row["source"], origin=row["origin"],
                                 where_from=_where_from(row), revised_from=_revised_from(row),
                                 messages=row["messages"])
                         for row in table.filter(pc.starts_with(table["id"], prefix)).to_pylist()]
        return findings

    def kept(self, prefix: str) -> list[Finding]:
        origins = self._kept_origins(prefix)
        status = self.manifest.get("status")
        if status in STOPPED:
            return self._kept_where_stopped(origins, STOPPED[status])
        findings = self._in_dataset(prefix, origins)
        if not findings and status in UNFINISHED:
            return self._kept_where_stopped(origins, UNFINISHED[status])
        return findings

    def _kept_where_stopped(self, origins: dict[str, list[dict]], stopped: str) -> list[Finding]:
        return [Finding(record_id, "kept", self.step_names[-1], detail=stopped, **place)
                for record_id, places in origins.items() for place in places]

    def _in_dataset(self, prefix: str, origins: dict[str, list[dict]]) -> list[Finding]:
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

    def revisions(self, prefix: str) -> list[Revision]:
        """The records rewritten from an id with this prefix, by the first step whose output
        names it (later steps carry the same `meta` on)."""
        for name, step_dir in zip(self.step_names, self.step_dirs):
            found = []
            for kind in ("kept", "rejected"):
                table = pq.read_table(step_dir / f"{kind}.parquet",
                                      columns=["id", "meta", "origin", "source"])
                needle = f'"revised_from":"{prefix}'  # meta is canonical JSON, without spaces
                hits = table.filter(pc.fill_null(pc.match_substring(table["meta"], needle),
                                                  False)).to_pylist()
                found += [Revision(_revised_from(row), name, row["id"], row["origin"] or "",
                                   row["source"] or "") for row in hits]
            if found:
                return list(dict.fromkeys(found))
        return []

    def _ids_from(self, location: str) -> list[str]:
        """The ids of the records any step read, added or rejected whose input location is
        `location` (meta.from), in step order: the first is the one the row was read as."""
        escaped = json.dumps(location, ensure_ascii=False)[1:-1]  # as it appears in meta
        ids: dict[str, None] = {}
        for step_dir in self.step_dirs:
            for kind, column in (("kept", "meta"), ("pending", "meta"),
                                 ("rejected", "location")):
                path = step_dir / f"{kind}.parquet"
                if not path.exists():
                    continue
                table = pq.read_table(path, columns=["id", column])
                hits = table.filter(pc.fill_null(pc.match_substring(table[column], escaped),
                                                  False)).to_pylist()
                ids.update((row["id"], None) for row in hits
                           if same_location(_row_location(row, column), location))
        return list(ids)

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
                 "review": review if isinstance(review, dict) else {},
                 "revised_from": meta.get("revised_from", "")})
        return origins


STOPPED = {"partial": "where the run stopped (--until)",
           "review": "where the run stopped: records wait for review, so no dataset yet"}
"""Statuses of a run that stopped on purpose before the dataset, and what a kept record says."""

UNFINISHED = {
    "interrupted": "where the last run was interrupted or killed, before its dataset was"
                   " written: run the recipe again to finish it",
    "failed": "where the last run failed, before its dataset was written: fix it and run the"
              " recipe again",
}
"""Statuses of a run that ended before its end, and what a record kept so far says."""


def locate(run_dir: Path, wanted: str) -> list[Finding]:
    """Where the record went whose id starts with `wanted`, or that was read from the input
    location `wanted` (as in meta.from: "data.jsonl:3", "data.json[3]", "train.parquet row 7";
    anything but hex digits, which a record id is made of)."""
    by_location = not re.fullmatch("[0-9a-fA-F]+", wanted)
    if not by_location and len(wanted) < MIN_PREFIX:
        raise CurateError(f"record id '{wanted}' is too short: give at least {MIN_PREFIX}"
                          f" characters")
    lookup = RunLookup(run_dir)
    try:
        findings = lookup.locate_row(wanted) if by_location else lookup.locate(wanted)
        seen_from_recipe = _from_recipe_folder(wanted, lookup.manifest) if by_location else None
        if not findings and seen_from_recipe:
            findings = lookup.locate_row(seen_from_recipe)
    except (OSError, ValueError) as error:  # pyarrow raises ArrowInvalid, a ValueError
        raise CurateError(f"{run_dir}: the run folder is damaged ({error}): run the recipe"
                          f" again to rebuild it") from None
    if not findings:
        raise CurateError(_nothing_found(run_dir, wanted, by_location, lookup.manifest))
    for finding in findings:
        trace(lookup, finding)
    return findings


def _from_recipe_folder(location: str, manifest: dict) -> str | None:
    """A location given as a path from the current folder ("recipes/data/d.jsonl:3"), as
    meta.from writes it: relative to the recipe's folder ("data/d.jsonl:3"); None otherwise."""
    parts = re.fullmatch(r"(.+?)((?::\d+|\[\d+\]| row \d+))", location)
    recipe = (manifest.get("recipe") or {}).get("path")
    if not parts or not recipe or not Path(parts.group(1)).is_file():
        return None
    try:
        inside = Path(parts.group(1)).resolve().relative_to(Path(recipe).parent)
    except ValueError:
        return None
    return inside.as_posix() + parts.group(2)


def _nothing_found(run_dir: Path, wanted: str, by_location: bool, manifest: dict) -> str:
    if not by_location:
        return f"no record whose id starts with '{wanted}' in {run_dir}{_unfinished(manifest)}"
    hint = (_unfinished(manifest) or ": give an input row as `curate why` shows it after"
                                     " \"from\" (data/reviews.jsonl:13), or a record id")
    return f"no record read from '{wanted}' in {run_dir}{hint}"


def _unfinished(manifest: dict) -> str:
    """Why a run folder may not hold a record yet: its last run did not finish."""
    status, steps = manifest.get("status"), manifest.get("steps") or []
    after = f" after step '{steps[-1]['name']}'" if steps else " before its first step finished"
    if status == "interrupted" and manifest.get("killed"):
        # A killed run never wrote which steps it finished.
        return ": its last run was killed before it finished: run the recipe again to finish it"
    if status == "interrupted":
        return f": its last run was interrupted{after}: run the recipe again to finish it"
    if status == "failed":
        return (f": its last run failed{after} ({manifest.get('error', 'no error recorded')}):"
                f" fix it and run the recipe again")
    if status == "running":
        return ": a run is going on in this folder now: ask again when it has finished"
    return ""


def same_location(found: str, asked: str) -> bool:
    """`asked` names the input location `found`, in full or by its end after a "/"."""
    return bool(found) and (found == asked or found.endswith(f"/{asked}"))


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
    if manifest.get("status") == "running" and not RunFolder(run_dir).in_use():
        # The run writes "running" first and its end status last; with no process holding the
        # folder's lock, it was killed (SIGKILL, power loss) before it could.
        manifest.update(status="interrupted", killed=True)
    return manifest


def _meta_at(path: Path, row: int) -> dict:
    return json.loads(pq.read_table(path, columns=["meta"])["meta"][row].as_py() or "{}")


def _where_from(row: dict) -> str:
    return json.loads(row["meta"]).get("from", "")


def _revised_from(row: dict) -> str:
    return json.loads(row["meta"] or "{}").get("revised_from", "")


def _row_location(row: dict, column: str) -> str:
    return (row[column] or "") if column == "location" else _where_from(row)


def _next(origins: dict[str, list[dict]], record_id: str) -> dict:
    places = origins.get(record_id)
    place = places.pop(0) if places else {"where_from": "", "review": {}, "revised_from": ""}
    return {"where_from": place["where_from"], "review": place["review"],
            "revised_from": place["revised_from"]}
