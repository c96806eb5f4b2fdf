"""The run folder: stage outputs as parquet, the final dataset, and the manifest.

    <dir>/manifest.json               recipe hash, versions, per-step counts and fingerprints
    <dir>/stages/NN-name/             kept.parquet, rejected.parquet, pending.parquet (records
                                      waiting for review), step.json (written last)
    <dir>/dataset/train.jsonl, eval.jsonl
    <dir>/review.sqlite               the review queue, when a recipe has a `review` stage

Every file is written to a temporary name and renamed into place, and a stage folder appears
only once complete, so a run killed at any moment leaves nothing half-written in place of a
result; the next run deletes the temporary files it left, and reruns a cached step whose files
were damaged since.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.records import Added, Pending, Record, Rejection

RUN_FORMAT = 2
"""Bumped whenever this layout changes in a way older readers cannot follow."""

BATCH_ROWS = 4096

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
KEPT_SCHEMA = pa.schema([("id", pa.string()), ("messages", MESSAGES), ("source", pa.string()),
                         ("origin", pa.string()), ("meta", pa.string())])
REJECTED_SCHEMA = pa.schema([("id", pa.string()), ("stage", pa.string()),
                             ("reason", pa.string()), ("detail", pa.string()),
                             ("source", pa.string()), ("location", pa.string()),
                             ("origin", pa.string()), ("evidence", pa.string()),
                             ("messages", MESSAGES), ("meta", pa.string()), ("raw", pa.string())])
PENDING_SCHEMA = KEPT_SCHEMA.append(pa.field("detail", pa.string()))


def dumps(data: Any) -> str:
    """Canonical JSON: the same data always gives the same bytes."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def fingerprint(*parts: Any) -> str:
    """A sha256 of the canonical JSON of `parts`: what a cached result depends on."""
    return hashlib.sha256(dumps(parts).encode()).hexdigest()


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class AtomicTextWriter:
    """Writes a text file line by line under a temporary name, renamed into place on success;
    counts the lines and hashes the bytes as it goes."""

    def __init__(self, path: Path):
        self.path = path
        self.temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.lines = 0
        self._digest = hashlib.sha256()

    def __enter__(self) -> "AtomicTextWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.temporary, "wb")
        return self

    def write(self, line: str) -> None:
        data = line.encode("utf-8")
        self._handle.write(data)
        self._digest.update(data)
        self.lines += 1

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def __exit__(self, kind, error, traceback) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        if kind is None:
            os.replace(self.temporary, self.path)
        else:
            self.temporary.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class StepWriter:
    """Streams one step's kept, rejected and pending records into parquet files, in batches."""

    def __init__(self, folder: Path, stage: str):
        self.folder, self.stage = folder, stage
        self.kept_rows: list[dict] = []
        self.rejected_rows: list[dict] = []
        self.pending_rows: list[dict] = []
        self.kept = self.rejected = self.pending = self.added = 0
        self.reasons: dict[str, int] = {}
        self._kept_file = pq.ParquetWriter(folder / "kept.parquet", KEPT_SCHEMA)
        self._rejected_file = pq.ParquetWriter(folder / "rejected.parquet", REJECTED_SCHEMA)
        self._pending_file = pq.ParquetWriter(folder / "pending.parquet", PENDING_SCHEMA)

    def add(self, outcome: Record | Rejection | Pending | Added) -> None:
        if isinstance(outcome, Added):
            self.added += 1
            outcome = outcome.outcome
        if isinstance(outcome, Pending):
            self.pending += 1
            self.pending_rows.append({**record_row(outcome.record), "detail": outcome.detail})
            if len(self.pending_rows) >= BATCH_ROWS:
                self._flush_pending()
        elif isinstance(outcome, Rejection):
            self.rejected += 1
            self.reasons[outcome.reason] = self.reasons.get(outcome.reason, 0) + 1
            self.rejected_rows.append(rejection_row(outcome, self.stage))
            if len(self.rejected_rows) >= BATCH_ROWS:
                self._flush_rejected()
        else:
            self.kept += 1
            self.kept_rows.append(record_row(outcome))
            if len(self.kept_rows) >= BATCH_ROWS:
                self._flush_kept()

    def close(self) -> None:
        self._flush_kept()
        self._flush_rejected()
        self._flush_pending()
        self._kept_file.close()
        self._rejected_file.close()
        self._pending_file.close()

    def _flush_kept(self) -> None:
        if self.kept_rows:
            self._kept_file.write_table(pa.Table.from_pylist(self.kept_rows, KEPT_SCHEMA))
            self.kept_rows = []

    def _flush_pending(self) -> None:
        if self.pending_rows:
            self._pending_file.write_table(pa.Table.from_pylist(self.pending_rows, PENDING_SCHEMA))
            self.pending_rows = []

    def _flush_rejected(self) -> None:
        if self.rejected_rows:
            self._rejected_file.write_table(
                pa.Table.from_pylist(self.rejected_rows, REJECTED_SCHEMA))
            self.rejected_rows = []


def record_row(record: Record) -> dict:
    return {"id": record.id, "messages": record.messages, "source": record.source,
            "origin": record.origin, "meta": dumps(record.meta)}


def rejection_row(rejection: Rejection, stage: str) -> dict:
    record = rejection.record
    return {"id": rejection.id, "stage": rejection.stage or stage, "reason": rejection.reason,
            "detail": rejection.detail, "source": rejection.source,
            "location": rejection.location,
            "evidence": dumps(rejection.evidence) if rejection.evidence else None,
            "origin": record.origin if record else None,
            "messages": record.messages if record else None,
            "meta": dumps(record.meta) if record else None, "raw": rejection.raw or None}


def read_records(path: Path) -> Iterator[Record]:
    """Stream the records of a kept.parquet file, in order."""
    columns = ("messages", "source", "origin", "meta", "id")
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
        # a column at a time: a quarter faster than a dict per row
        for messages, source, origin, meta, record_id in zip(
                *(column.to_pylist() for column in batch.columns)):
            yield Record(messages, source, origin, json.loads(meta), record_id)


def count_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def step_damage(folder: Path, summary: dict) -> str:
    """What is wrong with a finished step's parquet files, judged by their metadata (cheap):
    missing, unreadable, or holding other row counts than step.json; "" when they are whole."""
    for kind in ("kept", "rejected", "pending"):
        path = folder / f"{kind}.parquet"
        expected = summary.get(kind, 0)
        if not path.exists():
            if kind == "pending" and not expected:
                continue  # an older curate wrote no pending file
            return f"{path.name} is missing"
        try:
            rows = count_rows(path)
        except (OSError, ValueError, pa.ArrowException):
            return f"{path.name} is not a readable parquet file"
        if rows != expected:
            return f"{path.name} holds {rows:,} rows, step.json says {expected:,}"
    return ""


class RunFolder:
    """One run folder on disk: its steps, its dataset and its manifest."""

    def __init__(self, path: Path, log: Callable[[str], None] | None = None):
        self.path = path
        self.log = log or (lambda message: None)
        """Where a damaged cached step is reported before it runs again."""
        self.stages = path / "stages"
        self.dataset = path / "dataset"
        self.manifest_file = path / "manifest.json"

    def check_compatible(self) -> None:
        """Refuse a folder that is not a run folder, or one another curate version laid out."""
        if self.path.exists() and not self.path.is_dir():
            raise CurateError(f"{self.path}: is a file, not a run folder: choose another"
                              f" --run-dir")
        if not self.path.exists() or not any(self.path.iterdir()):
            return
        if not self.manifest_file.exists():
            raise CurateError(f"{self.path}: exists but is not a curate run folder (no"
                              f" manifest.json): choose another --run-dir or empty it")
        try:
            found = read_json(self.manifest_file).get("run_format")
        except (json.JSONDecodeError, OSError, AttributeError):
            found = "unreadable"
        if found != RUN_FORMAT:
            raise CurateError(f"{self.path}: written by an incompatible curate (run format"
                              f" {found}, this curate writes {RUN_FORMAT}): use a new --run-dir"
                              f" or delete the folder to start over")

    @contextmanager
    def lock(self) -> Iterator[None]:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.path / ".lock", "w")
        except OSError as error:
            raise CurateError(f"{self.path}: cannot create the run folder here"
                              f" ({error.strerror}): choose another --run-dir") from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CurateError(f"{self.path}: another curate process is using this run"
                                  f" folder; wait for it to finish") from None
            yield

    def step_dir(self, index: int, name: str) -> Path:
        return self.stages / f"{index:02d}-{name}"

    def cached_step(self, folder: Path, fingerprint: str) -> dict | None:
        """The step's saved summary, if it finished with this fingerprint and its output is
        whole; a damaged one is reported, and None makes it run again."""
        summary_file = folder / "step.json"
        if not summary_file.exists():
            return None
        try:
            summary = read_json(summary_file)
        except (OSError, ValueError) as error:
            return self._damaged(folder, f"step.json is unreadable: {error}")
        if not isinstance(summary, dict) or summary.get("fingerprint") != fingerprint:
            return None
        damage = step_damage(folder, summary)
        return self._damaged(folder, damage) if damage else summary

    def _damaged(self, folder: Path, damage: str) -> None:
        self.log(f"step {folder.name}: its output is damaged ({damage}), running it again")
        return None

    def check_training_finished(self, rerun: str) -> None:
        """CurateError when a training started in this folder did not finish (it leaves its
        checkpoints until it saves the adapter): the adapter here is then an earlier one."""
        checkpoints = self.path / "train" / "checkpoints"
        if checkpoints.is_dir():
            raise CurateError(f"{self.path}: a training started here did not finish (its"
                              f" checkpoints are in {checkpoints}), so {self.path / 'adapter'}"
                              f" is not the last training's: run `{rerun}` to finish it (it"
                              f" resumes from the last checkpoint)")

    def in_use(self) -> bool:
        """True while a curate process holds the folder's lock (a run, an evaluation)."""
        try:
            handle = open(self.path / ".lock")
        except OSError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def remove_temporary_files(self) -> None:
        """Delete the half-written dataset and manifest files of a killed run (call it with the
        folder locked: no other process is writing them then)."""
        leftovers = [*self.dataset.glob(".*.tmp-*"),
                     *self.path.glob(f".{self.manifest_file.name}.tmp-*")]
        for path in leftovers:
            path.unlink(missing_ok=True)

    @contextmanager
    def new_step(self, folder: Path) -> Iterator[Path]:
        """A temporary folder that replaces `folder` only if the block finishes."""
        self.stages.mkdir(parents=True, exist_ok=True)
        temporary = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        yield temporary
        replace_folder(temporary, folder)

    def remove_stale_steps(self, keep: Iterable[Path]) -> None:
        """Delete step folders the recipe no longer has, and leftovers of killed runs."""
        if not self.stages.exists():
            return
        wanted = {p.name for p in keep}
        for child in self.stages.iterdir():
            if child.name not in wanted:
                shutil.rmtree(child, ignore_errors=True)


def replace_folder(source: Path, target: Path) -> None:
    trash = target.with_name(f".{target.name}.old")
    shutil.rmtree(trash, ignore_errors=True)
    if target.exists():
        os.replace(target, trash)
    os.replace(source, target)
    shutil.rmtree(trash, ignore_errors=True)
