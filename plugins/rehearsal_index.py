"""The general pool's prompts, hashed for the rehearsal stage: exact lookups after normalisation,
MinHash + LSH for near ones, and every near candidate verified by its measured Jaccard.

Prompts are compared as character 5-grams: instruction prompts are often a sentence long, where
word shingles would miss a changed word. The pool is indexed once; task records stream past it
in batches, so memory grows with the pool, not with the task data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.plugins.minhash import (MAX_BUCKET, ShingleSpec, band_candidates, band_hashes,
                                    hash_batch, jaccard, lsh_bands, shingle_sets, text_keys)

SPEC = ShingleSpec("char", 5, 128)
HASH_BATCH = 2048
ESTIMATE_CHUNK = 8192
QUERY_CHUNK = 64
"""Queries whose band pairs are built at once: at most 64 x bands x MAX_BUCKET pairs."""
"""Candidate pairs estimated at once (two 4 MiB signature gathers)."""
ESTIMATE_SLACK = 0.2
"""LSH candidates whose MinHash estimate of Jaccard (the share of equal signature values) is
more than this below the threshold are not verified: with 128 values the estimate's standard
deviation is at most 0.044, so a pair at the threshold is dropped about once in a million.
Template-heavy prompts make ~100 candidates a record, and verifying each costs a numpy round
trip. (Keeping the pool's signatures for this costs 512 bytes a pool record.)"""


@dataclass(frozen=True)
class Match:
    """A pool prompt that is an exact or near copy of another text's prompt."""

    query: int
    """The position of the compared record in its batch (or in the pool)."""
    pool: int
    similarity: float
    method: str
    """"exact" (equal after normalisation) or "minhash" (Jaccard of character 5-grams)."""


def shingles_of(texts: list[str]) -> list[np.ndarray]:
    return shingle_sets(SPEC, [(text,) for text in texts])


def text_similarity(first: str, second: str) -> float:
    """1.0 for texts equal after normalisation, else the Jaccard of their character 5-grams."""
    keys = text_keys([(first,), (second,)])
    if (keys[0] == keys[1]).all():
        return 1.0
    return jaccard(*shingles_of([first, second]))


class PromptIndex:
    """Exact and near lookups of prompts against the pool's prompts."""

    def __init__(self, prompts: list[str], threshold: float):
        self.prompts, self.threshold = prompts, threshold
        self.bands, self.rows = lsh_bands(threshold, SPEC.num_perm)
        signatures, keys, counts = _hash_all(prompts)
        self.by_key: dict[bytes, list[int]] = {}
        for index in np.flatnonzero(counts > 0).tolist():
            self.by_key.setdefault(keys[index].tobytes(), []).append(index)
        self.members = np.flatnonzero(counts > 0)
        self.member_bands = band_hashes(signatures[self.members], self.bands, self.rows)
        self.order = np.argsort(self.member_bands, axis=0, kind="stable")
        self.sorted_bands = np.take_along_axis(self.member_bands, self.order, axis=0)
        self.neighbours = _pool_neighbours(signatures, self.members, self.bands, self.rows,
                                           threshold)
        self.signatures = signatures
        self._sets: dict[int, np.ndarray] = {}

    def shingles(self, index: int) -> np.ndarray:
        if index not in self._sets:
            self.prefetch([index])
        return self._sets[index]

    def prefetch(self, indices: list[int], with_neighbours: bool = False) -> None:
        """Build the shingle sets of these pool prompts (and their LSH neighbours) in one
        batch: one at a time costs a numpy round trip each."""
        wanted = set(indices)
        if with_neighbours:
            wanted.update(other for index in indices for other in self.neighbours.get(index, ()))
        missing = sorted(index for index in wanted if index not in self._sets)
        self._sets.update(zip(missing, shingles_of([self.prompts[i] for i in missing])))

    def key(self, index: int) -> bytes:
        return text_keys([(self.prompts[index],)])[0].tobytes()

    def matches(self, prompts: list[str]) -> list[Match]:
        """Every (prompt, pool prompt) pair that is exact or at least `threshold` similar."""
        signatures, keys, counts = hash_batch(SPEC, [(p,) for p in prompts])
        found: dict[tuple[int, int], Match] = {}
        for query in np.flatnonzero(counts > 0).tolist():
            for pool in self.by_key.get(keys[query].tobytes(), ()):
                found[query, pool] = Match(query, pool, 1.0, "exact")
        candidates = [pair for pair in self._near_candidates(signatures, counts)
                      if pair not in found]
        queries = sorted({query for query, _ in candidates})
        sets = dict(zip(queries, shingles_of([prompts[query] for query in queries])))
        self.prefetch([pool for _, pool in candidates])
        for query, pool in candidates:
            similarity = jaccard(sets[query], self.shingles(pool))
            if similarity >= self.threshold:
                found[query, pool] = Match(query, pool, similarity, "minhash")
        return [found[pair] for pair in sorted(found)]

    def pool_duplicate(self, index: int, accepted_keys: dict[bytes, int],
                       accepted: set[int]) -> Match | None:
        """The first accepted pool prompt that `index`'s prompt copies, exactly or nearly."""
        earlier = accepted_keys.get(self.key(index))
        if earlier is not None and len(self.shingles(index)):
            return Match(index, earlier, 1.0, "exact")
        for other in self.neighbours.get(index, ()):
            if other in accepted:
                similarity = jaccard(self.shingles(index), self.shingles(other))
                if similarity >= self.threshold:
                    return Match(index, other, similarity, "minhash")
        return None

    def _near_candidates(self, signatures: np.ndarray,
                         counts: np.ndarray) -> list[tuple[int, int]]:
        """(query, pool) LSH candidates worth verifying, QUERY_CHUNK queries at a time: a
        query of a templated batch can share buckets with thousands of pool prompts."""
        queries = np.flatnonzero(counts > 0)
        if not len(self.members):
            return []
        found = []
        for start in range(0, len(queries), QUERY_CHUNK):
            pairs = self._band_pairs(signatures, queries[start:start + QUERY_CHUNK])
            found += map(tuple, near_enough(pairs, signatures, self.signatures,
                                            self.threshold).tolist())
        return found

    def _band_pairs(self, signatures: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """(query, pool) pairs sharing at least one LSH band, unique, as an array of rows
        (built with numpy: a bucket of template-like prompts holds many)."""
        values = band_hashes(signatures[queries], self.bands, self.rows)
        found = []
        for band in range(self.bands):
            column = self.sorted_bands[:, band]
            low = np.searchsorted(column, values[:, band], "left")
            high = np.minimum(np.searchsorted(column, values[:, band], "right"), low + MAX_BUCKET)
            sizes = np.maximum(high - low, 0)
            total = int(sizes.sum())
            if not total:
                continue
            starts = np.repeat(low, sizes)
            offsets = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            pools = self.members[self.order[starts + offsets, band]]
            found.append(np.repeat(queries, sizes).astype(np.int64) * len(self.prompts) + pools)
        codes = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
        return np.stack([codes // len(self.prompts), codes % len(self.prompts)], axis=1)


def _hash_all(prompts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [hash_batch(SPEC, [(p,) for p in prompts[start:start + HASH_BATCH]])
             for start in range(0, len(prompts), HASH_BATCH)]
    if not parts:
        return (np.zeros((0, SPEC.num_perm), dtype=np.uint32), np.zeros((0, 2), dtype=np.uint64),
                np.zeros(0, dtype=np.int64))
    return tuple(np.concatenate(column) for column in zip(*parts))


def estimated_jaccard(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row by row, the share of equal MinHash values: an unbiased estimate of Jaccard."""
    return (first == second).mean(axis=1)


def near_enough(pairs: np.ndarray, first: np.ndarray, second: np.ndarray,
                threshold: float) -> np.ndarray:
    """The rows (i, j) of `pairs` whose signatures first[i] and second[j] estimate a Jaccard
    within ESTIMATE_SLACK of `threshold`: the candidates worth verifying."""
    chunks = (pairs[start:start + ESTIMATE_CHUNK]
              for start in range(0, len(pairs), ESTIMATE_CHUNK))
    kept = [chunk[estimated_jaccard(first[chunk[:, 0]], second[chunk[:, 1]])
                  >= threshold - ESTIMATE_SLACK] for chunk in chunks]
    return np.concatenate(kept) if kept else pairs


def _pool_neighbours(signatures: np.ndarray, members: np.ndarray, bands: int, rows: int,
                     threshold: float) -> dict[int, list[int]]:
    """For each pool prompt, the pool prompts it shares an LSH band with and whose MinHash
    estimate is near enough to verify (candidates only)."""
    own = signatures[members]

    def near(pairs: np.ndarray) -> np.ndarray:
        return near_enough(pairs, own, own, threshold)

    neighbours: dict[int, list[int]] = {}
    for a, b in members[band_candidates(signatures, members, bands, rows, near)].tolist():
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    return {index: sorted(set(others)) for index, others in neighbours.items()}
