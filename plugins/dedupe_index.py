"""What the dedupe stages keep between passes: per-record facts, the signature cache, the compared
texts spilled to disk, verified similarity edges, and the choice of survivors."""

from __future__ import annotations

import itertools
import math
import os
from array import array
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from curate.plugins.minhash import (PartProfile, ShingleSpec, hash_batch, part_profiles,
                                    part_similarity, raw_keys)
from curate.records import Record
from curate.stages import ordered_map

ORIGIN_ORDER = {"human": 0, "rehearsal": 1, "generated": 2}
VERIFY_BATCH = 256


class RecordFacts:
    """The little kept per record between passes: id, response length, origin, score, and
    where it was read from (meta.from), to name a survivor's place."""

    def __init__(self, score_key: str):
        self.score_key = score_key
        self.ids: list[str] = []
        self.lengths, self.origins, self.scores = array("q"), array("b"), array("d")
        self.places = PackedStrings()
        self.scored = 0
        """How many records have a real score."""

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, record: Record) -> None:
        self.ids.append(record.id)
        self.lengths.append(len(record.response))
        self.origins.append(ORIGIN_ORDER.get(record.origin, len(ORIGIN_ORDER)))
        score = _score(record.meta.get(self.score_key))
        self.scores.append(score)
        self.scored += score > -math.inf
        place = record.meta.get("from")
        self.places.append(str(place) if place else "")

    def has_score(self, index: int) -> bool:
        return self.scores[index] > -math.inf

    def ranks(self, policy: str) -> np.ndarray:
        """Each record's place in the survivor order of `policy` (0 survives first); ties go
        to the earlier record."""
        index = np.arange(len(self.ids))
        primary = {"first": index, "longest": -np.asarray(self.lengths, dtype=np.int64),
                   "score": -np.asarray(self.scores), "human-first": np.asarray(self.origins)}
        ranks = np.empty(len(index), dtype=np.int64)
        ranks[np.lexsort((index, primary[policy]))] = index
        return ranks


class PackedStrings:
    """Short strings in one buffer: a few bytes each rather than a Python object each."""

    def __init__(self):
        self.data = bytearray()
        self.ends = array("q", [0])

    def append(self, text: str) -> None:
        self.data += text.encode("utf-8", "surrogatepass")
        self.ends.append(len(self.data))

    def __getitem__(self, index: int) -> str:
        return self.data[self.ends[index]:self.ends[index + 1]].decode("utf-8", "surrogatepass")


def _score(value: object) -> float:
    """A missing, non-numeric or non-finite score ranks below every real one (a number
    written as text, as a CSV column holds it, counts)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return -math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return -math.inf
    try:
        number = float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    return number if math.isfinite(number) else -math.inf


def group_by_key(keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """For each record, the first record (in input order) with the same text key; -1 where
    `valid` is false."""
    members = np.flatnonzero(valid)
    groups = np.full(len(keys), -1, dtype=np.int64)
    if len(members):
        _, first, inverse = np.unique(keys[members], axis=0, return_index=True,
                                      return_inverse=True)
        groups[members] = members[first][inverse.ravel()]
    return groups


def choose_survivors(groups: np.ndarray, ranks: np.ndarray, edges=((), (), ())
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate_of, similarity) per record; duplicate_of is -1 for a kept record.

    Records in one group (the same text) follow their best-ranked member. Groups joined by
    verified edges (rep_a, rep_b, Jaccard) are settled greedily in survivor order: a group
    whose best member comes first survives; a later one is removed as a duplicate of the most
    similar survivor it is joined to, so every removed record is at least the threshold
    similar to the record it names."""
    members = np.flatnonzero(groups >= 0)
    order = members[np.lexsort((ranks[members], groups[members]))]
    firsts = order[np.r_[True, groups[order][1:] != groups[order][:-1]]] if len(order) else order
    target = np.full(len(groups), -1, dtype=np.int64)
    target[groups[firsts]] = firsts
    target_similarity = np.ones(len(groups))
    for rep, (record, value) in _absorbed_groups(target.copy(), ranks, edges).items():
        target[rep], target_similarity[rep] = record, value
    duplicate_of, similarity = np.full(len(groups), -1, dtype=np.int64), np.zeros(len(groups))
    removed = members[target[groups[members]] != members]
    duplicate_of[removed] = target[groups[removed]]
    similarity[removed] = target_similarity[groups[removed]]
    return duplicate_of, similarity


def _absorbed_groups(best, ranks, edges) -> dict[int, tuple[int, float]]:
    neighbours: dict[int, list] = defaultdict(list)
    for first, second, value in zip(*edges):
        neighbours[int(first)].append((int(second), float(value)))
        neighbours[int(second)].append((int(first), float(value)))
    survivors: dict[int, int] = {}
    absorbed: dict[int, tuple[int, float]] = {}
    for rep in sorted(neighbours, key=lambda group: ranks[best[group]]):
        joined = [(-value, ranks[survivors[other]], survivors[other])
                  for other, value in neighbours[rep] if other in survivors]
        if joined:
            negative, _, record = min(joined)
            absorbed[rep] = (record, -negative)
        else:
            survivors[rep] = int(best[rep])
    return absorbed


def cluster_sizes(duplicate_of: np.ndarray) -> np.ndarray:
    """Per survivor: itself plus the records that name it."""
    return np.bincount(duplicate_of[duplicate_of >= 0], minlength=len(duplicate_of)) + 1


class SignatureCache:
    """Signatures of records hashed in earlier runs, one file per hashing setup in the stage's
    work folder: `signatures-KEY.npy`, rows sorted by a hash of the compared texts as they are
    (not by record id: two records that differ only in a line's indentation share an id).
    Written to a temporary file and renamed into place, so a killed run leaves the previous
    cache intact."""

    def __init__(self, work_dir: Path, key: str, num_perm: int):
        self.path = work_dir / f"signatures-{key}.npy"
        self.dtype = np.dtype([("id", "<u8"), ("key", "<u8", (2,)), ("count", "<i8"),
                               ("signature", "<u4", (num_perm,))])
        self.rows = np.zeros(0, dtype=self.dtype)
        try:
            self.rows = np.load(self.path, mmap_mode="r")
        except (OSError, ValueError):
            pass  # missing or unreadable: rebuilt from this run's hashing
        if self.rows.dtype != self.dtype:
            self.rows = np.zeros(0, dtype=self.dtype)
        self.ids = np.asarray(self.rows["id"])

    def lookup(self, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, the cached rows of the found ones)."""
        if not len(self.ids):
            return np.zeros(len(numbers), dtype=bool), self.rows[:0]
        places = np.minimum(np.searchsorted(self.ids, numbers), len(self.ids) - 1)
        found = self.ids[places] == numbers
        return found, self.rows[places[found]]

    def save(self, numbers, keys, counts, signatures, fresh: np.ndarray) -> None:
        """Add this run's freshly hashed rows to the cache file."""
        if not fresh.any():
            return
        new = np.flatnonzero(fresh)
        every = np.concatenate([self.ids, numbers[new]])
        order = np.argsort(every, kind="stable")
        order = order[np.r_[True, every[order][1:] != every[order][:-1]]]
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (len(order),)}
        temporary = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(temporary, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            for start in range(0, len(order), 65536):
                handle.write(self._merged(order[start:start + 65536], new,
                                          (numbers, keys, counts, signatures)).tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def _merged(self, order: np.ndarray, new: np.ndarray, columns) -> np.ndarray:
        """Rows `order` of the cached rows followed by this run's `new` rows."""
        part = np.empty(len(order), dtype=self.dtype)
        old = order < len(self.ids)
        part[old] = self.rows[order[old]]
        rows = new[order[~old] - len(self.ids)]
        for name, column in zip(("id", "key", "count", "signature"), columns):
            part[name][~old] = column[rows]
        return part


def sign(batches: Iterable[list], cache: SignatureCache, spec: ShingleSpec,
         workers: int) -> tuple[np.ndarray, ...]:
    """(cache keys, text keys, shingle counts, signatures, hashed-now flags) of every record
    of `batches` (lists of compared parts): from the cache, or hashed in worker processes."""
    looked_up: deque = deque()

    def jobs():
        for parts_list in batches:
            numbers = raw_keys(parts_list)
            found, rows = cache.lookup(numbers)
            looked_up.append((numbers, found, rows))
            yield [parts for parts, hit in zip(parts_list, found) if not hit]

    columns: list[list] = [[np.zeros(0, np.uint64)], [np.zeros((0, 2), np.uint64)],
                           [np.zeros(0, np.int64)], [np.zeros((0, spec.num_perm), np.uint32)],
                           [np.zeros(0, bool)]]
    for hashed in ordered_map(partial(hash_batch, spec), jobs(), workers):
        numbers, found, rows = looked_up.popleft()
        signatures, keys, counts = (_fill(found, rows[name], new) for name, new
                                    in zip(("signature", "key", "count"), hashed))
        for part, column in zip(columns, (numbers, keys, counts, signatures, ~found)):
            part.append(column)
    return tuple(np.concatenate(part) for part in columns)


def _fill(found: np.ndarray, cached: np.ndarray, new: np.ndarray) -> np.ndarray:
    """A batch's column: cached values where `found`, the new ones elsewhere, in order."""
    column = np.empty((len(found), *new.shape[1:]), new.dtype)
    column[found], column[~found] = cached, new
    return column


class SpilledTexts:
    """Every record's compared texts, written to a scratch file in the work folder during the
    first pass, so that the exact Jaccard check re-reads candidates without a second pass over
    the input (which costs far more: parquet, JSON, records). Read back with pread rather than
    mmap, whose read-ahead would count most of the file as this process's memory."""

    def __init__(self, work_dir: Path):
        for stale in work_dir.glob(".compared-*.tmp"):
            stale.unlink()  # left by a killed run; the run folder lock keeps others out
        self.path = work_dir / f".compared-{os.getpid()}.tmp"
        self.file = open(self.path, "w+b")
        self.ends = array("q", [0])

    def add(self, batch: list[tuple[str, ...]]) -> None:
        encoded = [part.encode("utf-8", "surrogatepass") for parts in batch for part in parts]
        self.file.write(b"".join(encoded))
        ends = itertools.accumulate(map(len, encoded), initial=self.ends[-1])
        next(ends)  # the end of what was written before
        self.ends.extend(ends)

    def parts(self, record: int, width: int) -> tuple[str, ...]:
        self.file.flush()
        start, end = self.ends[record * width], self.ends[(record + 1) * width]
        data = os.pread(self.file.fileno(), end - start, start)
        cuts = [self.ends[k] - start for k in range(record * width, (record + 1) * width + 1)]
        return tuple(data[cuts[k]:cuts[k + 1]].decode("utf-8", "surrogatepass")
                     for k in range(width))

    def close(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class Measure(NamedTuple):
    """A verified pair: each compared part's Jaccard, and the numbers only one side has."""

    parts: tuple[float, ...]
    only_first: tuple[str, ...]
    only_second: tuple[str, ...]


def measure(first: PartProfile, second: PartProfile, threshold: float) -> Measure | None:
    """The pair's Measure when every part reaches the threshold and no part had a number
    changed (each side with a number the other lacks); else None."""
    parts = tuple(part_similarity(a, b) for a, b in zip(first.shingles, second.shingles))
    if min(parts) < threshold:
        return None
    only_first, only_second = [], []
    for a, b in zip(first.numbers, second.numbers):
        if a - b and b - a:
            return None
        only_first += sorted((a - b).elements())
        only_second += sorted((b - a).elements())
    return Measure(parts, tuple(only_first), tuple(only_second))


def verified_edges(pairs: np.ndarray, texts: SpilledTexts, width: int, spec: ShingleSpec,
                   threshold: float, workers: int) -> tuple[list, list, list, list]:
    """(earlier, later, similarity, Measure) of the candidate pairs that `measure` accepts,
    the similarity being the least of the parts' Jaccards; measured on the parts' shingle sets,
    which are built for candidates only and dropped after their last pair."""
    firsts, seconds, values, measures = [], [], [], []
    if not len(pairs):
        return firsts, seconds, values, measures
    pairs = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]
    cuts = np.flatnonzero(np.diff(pairs[:, 1])) + 1
    partners = {int(group[0, 1]): group[:, 0].tolist() for group in np.split(pairs, cuts)}
    remaining = np.bincount(pairs[:, 0], minlength=int(pairs.max()) + 1)
    profiles: dict[int, PartProfile] = {}
    for index, profile in _candidate_profiles(np.unique(pairs), texts, width, spec, workers):
        for other in partners.get(index, ()):
            found = measure(profiles[other], profile, threshold)
            if found is not None:
                firsts.append(other)
                seconds.append(index)
                values.append(min(found.parts))
                measures.append(found)
            remaining[other] -= 1
            if not remaining[other]:
                del profiles[other]
        if remaining[index]:
            profiles[index] = profile
    return firsts, seconds, values, measures


def _candidate_profiles(needed: np.ndarray, texts: SpilledTexts, width: int, spec: ShingleSpec,
                        workers: int) -> Iterator[tuple[int, PartProfile]]:
    """(record, its PartProfile) for the `needed` records, in order."""
    jobs = ([texts.parts(index, width) for index in needed[start:start + VERIFY_BATCH].tolist()]
            for start in range(0, len(needed), VERIFY_BATCH))
    built = ordered_map(partial(part_profiles, spec), jobs, workers)
    return zip(needed.tolist(), (profile for batch in built for profile in batch))
