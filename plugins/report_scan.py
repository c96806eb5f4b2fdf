"""Reading a run folder's parquet files for the quality report: only the columns needed, row
group by row group, with pyarrow's vectorised functions, and JSON columns parsed in C++ rather
than row by row. A scan collects raw material (row positions, lengths, parsed JSON columns);
report_data turns it into the report's sections."""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

SAMPLE_ROWS = 100_000
"""Most records whose lengths and languages are measured; more are sampled by row group."""
PARSE_BYTES = 64 << 20
"""JSON parsed at once: large enough for the C++ parser's threads, far below 2 GiB offsets."""
EXAMPLES = 3
"""Example rows noted per rejection reason."""
_LANGUAGE = pa.struct([("code", pa.string()), ("probability", pa.float64())])
LANGUAGE_SCHEMA = pa.schema([("language", pa.struct([("prompt", _LANGUAGE),
                                                     ("response", _LANGUAGE)]))])
FLAGS_SCHEMA = pa.schema([("consistency", pa.list_(pa.struct([
    ("rule", pa.string()), ("detail", pa.string()), ("other_id", pa.string())])))])
EVIDENCE_SCHEMA = pa.schema([
    ("duplicate_of", pa.string()), ("task_record", pa.string()), ("similarity", pa.float64()),
    ("method", pa.string()), ("cluster_size", pa.int64()), ("rule", pa.string()),
    ("other_id", pa.string()), ("other_answer", pa.string())])
TASK_COPY = "rehearsal-duplicate"
"""The rehearsal stage's reason for a general record that copies a task record, prompt and
answer: its evidence names that record `task_record` rather than `duplicate_of`, and it is the
cluster's survivor all the same."""


class RowGroups:
    """One parquet file read row group by row group, with each group's first row position."""

    def __init__(self, path: Path):
        self.path = path
        self.file = pq.ParquetFile(path)
        sizes = [self.file.metadata.row_group(i).num_rows
                 for i in range(self.file.metadata.num_row_groups)]
        self.starts = [0, *np.cumsum(sizes, dtype=np.int64).tolist()]
        self.rows = self.starts[-1]

    def __len__(self) -> int:
        return len(self.starts) - 1

    def read(self, group: int, columns: list[str]) -> pa.Table:
        return self.file.read_row_group(group, columns=columns)

    def rows_at(self, positions: list[int], columns: list[str]) -> dict[int, dict]:
        """The rows at these positions (0-based, in file order), reading only their groups."""
        by_group: dict[int, list[int]] = {}
        for position in sorted(set(positions)):
            by_group.setdefault(bisect.bisect_right(self.starts, position) - 1, []).append(position)
        found = {}
        for group, wanted in by_group.items():
            offsets = [position - self.starts[group] for position in wanted]
            found.update(zip(wanted, self.read(group, columns).take(offsets).to_pylist()))
        return found


class Sampler:
    """Chooses evenly spaced row groups so that about `budget` of `total` rows are measured; the
    same fraction of every file, so kept and rejected records are sampled alike."""

    def __init__(self, total: int, budget: int | None = None):
        budget = SAMPLE_ROWS if budget is None else budget
        self.fraction = 1.0 if total <= budget else budget / total
        self.measured = 0

    def chosen(self, groups: RowGroups) -> set[int]:
        count = len(groups)
        wanted = count if self.fraction == 1.0 else max(1, math.ceil(count * self.fraction))
        chosen = {index * count // wanted for index in range(wanted)} if count else set()
        self.measured += sum(groups.starts[g + 1] - groups.starts[g] for g in chosen)
        return chosen

    @property
    def sampled(self) -> bool:
        return self.fraction < 1.0


def column(table: pa.Table, name: str) -> pa.Array:
    return table.column(name).combine_chunks()


def rows_containing(strings: pa.Array, needle: str) -> pa.Array:
    """Indices of the strings that contain `needle` (nulls never do)."""
    return pc.indices_nonzero(pc.fill_null(pc.match_substring(strings, needle), False))


def text_lengths(messages: pa.Array, role: str) -> np.ndarray:
    """Characters of each row's turns of `role` joined by blank lines, as Record.prompt and
    Record.response join them; rows without messages (unreadable rows) are left out."""
    flat = pc.list_flatten(messages)
    owners = pc.list_parent_indices(messages)
    chosen = pc.fill_null(pc.equal(pc.struct_field(flat, "role"), role), False)
    sizes = pc.fill_null(pc.utf8_length(pc.struct_field(flat, "content")), 0)
    owners = owners.filter(chosen).to_numpy()
    total = np.bincount(owners, weights=sizes.filter(chosen).to_numpy(), minlength=len(messages))
    turns = np.bincount(owners, minlength=len(messages))
    lengths = total.astype(np.int64) + 2 * np.maximum(turns - 1, 0)
    return lengths[messages.is_valid().to_numpy(zero_copy_only=False)]


def parse_json_rows(pieces: list[pa.Array], schema: pa.Schema) -> pa.Table:
    """Parse JSON objects (one per string, in string arrays) into one table of just the schema's
    fields, in C++ and in batches of PARSE_BYTES; values of another shape than the schema's
    become null instead of failing the report."""
    tables = [_parse(batch, schema) for batch in _batches(pieces)]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _batches(pieces: list[pa.Array]) -> Iterator[pa.Array]:
    batch, size = [], 0
    for piece in pieces:
        if batch and size + piece.nbytes > PARSE_BYTES:
            yield pa.concat_arrays(batch)
            batch, size = [], 0
        batch.append(piece)
        size += piece.nbytes
    if batch:
        yield pa.concat_arrays(batch)


def _parse(strings: pa.Array, schema: pa.Schema) -> pa.Table:
    if len(strings) == 0:
        return schema.empty_table()
    data = _values(pc.binary_join_element_wise(strings, "", "\n"))
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pa_json.read_json(pa.BufferReader(data), parse_options=options,
                                  read_options=pa_json.ReadOptions(block_size=1 << 24))
        if table.num_rows == len(strings):
            return table.select(schema.names)
    except pa.ArrowInvalid:
        pass
    rows = [_conform(_loads(text), pa.struct(list(schema))) for text in strings.to_pylist()]
    return pa.Table.from_pylist([row or {} for row in rows], schema)


def _values(lines: pa.Array) -> pa.Buffer:
    """The bytes of a string array's values: its strings back to back."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1,
                            offset=4 * lines.offset)
    return lines.buffers()[2][int(offsets[0]):int(offsets[-1])]


def _loads(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _conform(value, kind: pa.DataType):
    """`value` if it has the shape of `kind` (recursively), else None."""
    if pa.types.is_struct(kind):
        if not isinstance(value, dict):
            return None
        return {f.name: _conform(value.get(f.name), f.type) for f in kind}
    if pa.types.is_list(kind):
        return [_conform(v, kind.value_type) for v in value] if isinstance(value, list) else None
    if pa.types.is_string(kind):
        return value if isinstance(value, str) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if pa.types.is_integer(kind):
        whole = isinstance(value, int) or (math.isfinite(value) and value.is_integer())
        return int(value) if whole and abs(value) < 2**63 else None
    return float(value)


class _Scan:
    """A pass over one parquet file, measuring prompt and response lengths of the row groups
    the sampler chose."""

    def __init__(self, groups: RowGroups, sampler: Sampler):
        self.groups = groups
        self.chosen = sampler.chosen(groups)
        self._prompts: list[np.ndarray] = []
        self._responses: list[np.ndarray] = []

    def _measure(self, messages: pa.Array) -> None:
        self._prompts.append(text_lengths(messages, "user"))
        self._responses.append(text_lengths(messages, "assistant"))

    def _finish_lengths(self) -> None:
        self.prompt_lengths = _numbers(self._prompts)
        self.response_lengths = _numbers(self._responses)


class RejectedScan(_Scan):
    """One pass over a step's rejected.parquet: example rows per reason, the duplicate and
    consistency evidence, and the lengths of the sampled row groups."""

    def __init__(self, groups: RowGroups, step: str, reasons: dict[str, int], sampler: Sampler):
        super().__init__(groups, sampler)
        self.step = step
        self.example_rows: dict[str, list[int]] = {reason: [] for reason in reasons}
        self._wanted = {reason: min(count, EXAMPLES) for reason, count in reasons.items()}
        self._positions: list[pa.Array] = []
        self._texts: list[pa.Array] = []
        self._task_copies: list[pa.Array] = []
        for group in range(len(groups)):
            self._scan(group)
        self._finish_lengths()
        evidence = parse_json_rows(self._texts, EVIDENCE_SCHEMA)
        self.evidence = _with_task_survivors(evidence, self._task_copies).append_column(
            "position", _positions(self._positions))

    def _scan(self, group: int) -> None:
        measure = group in self.chosen
        columns = ["evidence", "reason", *(["messages"] * measure)]
        table = self.groups.read(group, columns)
        start = self.groups.starts[group]
        reasons = column(table, "reason")
        if self._wanted:
            self._note_examples(reasons, start)
        evidence = column(table, "evidence")
        task_copy = pc.fill_null(pc.and_(pc.equal(reasons, TASK_COPY),
                                         pc.match_substring(evidence, '"task_record":')), False)
        found = pc.indices_nonzero(pc.fill_null(pc.or_(pc.or_(
            pc.match_substring(evidence, '"duplicate_of":'),
            pc.match_substring(evidence, '"rule":')), task_copy), False))
        self._positions.append(pc.add(found.cast(pa.int64()), start))
        self._texts.append(evidence.take(found))
        self._task_copies.append(task_copy.take(found))
        if measure:
            self._measure(column(table, "messages"))

    def _note_examples(self, reasons: pa.Array, start: int) -> None:
        """Note the first rows of each reason (from the step's summary) still short of examples."""
        for reason in sorted(set(pc.unique(reasons).to_pylist()) & self._wanted.keys()):
            found = pc.indices_nonzero(pc.equal(reasons, reason))[:self._wanted[reason]]
            self.example_rows[reason] += [start + index for index in found.to_pylist()]
            self._wanted[reason] -= len(found)
            if not self._wanted[reason]:
                del self._wanted[reason]

    def duplicate_rows(self) -> pa.Table:
        table = self.evidence
        return table.filter(pc.is_valid(table["duplicate_of"]))

    def rule_rows(self) -> list[dict]:
        table = self.evidence
        return table.filter(pc.and_(pc.is_valid(table["rule"]),
                                    pc.is_null(table["duplicate_of"]))).to_pylist()


class KeptScan(_Scan):
    """One pass over the last step's kept.parquet: consistency flags of every record, and the
    lengths and languages of the sampled row groups."""

    def __init__(self, groups: RowGroups, sampler: Sampler):
        super().__init__(groups, sampler)
        self.measured = 0
        self._languages: list[pa.Array] = []
        self._flag_rows: list[pa.Array] = []
        self._flag_texts: list[pa.Array] = []
        for group in range(len(groups)):
            self._scan(group)
        self._finish_lengths()
        self.language_rows = parse_json_rows(self._languages, LANGUAGE_SCHEMA)
        self.flags = parse_json_rows(self._flag_texts, FLAGS_SCHEMA).append_column(
            "position", _positions(self._flag_rows))

    def _scan(self, group: int) -> None:
        measure = group in self.chosen
        table = self.groups.read(group, ["meta", *(["messages"] * measure)])
        meta = column(table, "meta")
        found = rows_containing(meta, '"consistency":')
        self._flag_rows.append(pc.add(found.cast(pa.int64()), self.groups.starts[group]))
        self._flag_texts.append(meta.take(found))
        if measure:
            self.measured += len(meta)
            self._languages.append(meta.take(rows_containing(meta, '"language":')))
            self._measure(column(table, "messages"))

    def flagged(self) -> list[tuple[int, dict]]:
        """(row position, finding) for every consistency finding, in file order."""
        lists = column(self.flags, "consistency")
        owners = pc.list_parent_indices(lists)
        positions = column(self.flags, "position").take(owners).to_pylist()
        return list(zip(positions, pc.list_flatten(lists).to_pylist()))


def _with_task_survivors(evidence: pa.Table, task_copies: list[pa.Array]) -> pa.Table:
    """The evidence with a task copy's `task_record` as its `duplicate_of`."""
    copies = pa.chunked_array(task_copies, pa.bool_()).combine_chunks()
    named = column(evidence, "duplicate_of")
    survivor = pc.if_else(pc.and_(copies, pc.is_null(named)), column(evidence, "task_record"),
                          named)
    return evidence.set_column(evidence.schema.get_field_index("duplicate_of"), "duplicate_of",
                               survivor)


def _positions(arrays: list[pa.Array]) -> pa.Array:
    return pa.chunked_array(arrays, pa.int64()).combine_chunks()


def _numbers(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
