"""The general pool's texts, hashed for the rehearsal stage: exact lookups after normalisation,
MinHash + LSH for near ones, and every near candidate verified by its measured similarity.

Texts are compared as character 5-grams: instruction prompts are often a sentence long, where
word shingles would miss a changed word. The pool is indexed once; task records stream past it
in batches, so memory grows with the pool, not with the task data.

A task text is copied by a pool text when its containment in it (the share of the task text's
5-grams found in the pool text) reaches the threshold, so that a prompt wrapped in a few words
of its own is caught; a task text of fewer than MIN_CONTAINED 5-grams is measured by Jaccard
instead, since a few words are found inside many unrelated texts. No LSH bucket is truncated: a
query that shares buckets with more pool texts than the pool holds is compared with every pool
text by its MinHash estimate; pool duplicates are looked up among the prompts already accepted,
bucketed as they are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.plugins.minhash import (ShingleSpec, band_hashes, hash_batch, jaccard,
                                    lsh_bands, shingle_sets, text_keys)

SPEC = ShingleSpec("char", 5, 128)
HASH_BATCH = 2048
ESTIMATE_CHUNK = 8192
"""Candidate pairs estimated at once (two 4 MiB signature gathers)."""
PAIR_BUDGET = 1 << 20
"""LSH (query, pool) pairs built at once (8 MiB of codes): queries are grouped to fit, and a
query that alone shares buckets with more pool texts than the pool holds is compared with the
whole pool instead."""
ESTIMATE_SLACK = 0.2
"""LSH candidates whose MinHash estimate is more than this below the threshold are not verified:
with 128 values the estimate's standard deviation is at most 0.044, so a pair at the threshold
is dropped about once in a million. Template-heavy prompts make ~100 candidates a record, and
verifying each costs a numpy round trip. (Keeping the pool's signatures for this costs 512
bytes a pool text.)"""
SCREEN_JACCARD = 0.5
"""The LSH bands are tuned to find pairs of Jaccard 0.5 and up (at most the threshold): a task
prompt wrapped in a text up to twice its length."""
MIN_SHARED_BANDS = 2
"""A (query, pool text) pair is a candidate when it shares this many LSH bands: one shared band
lets through about ten times as many unrelated pairs of texts written from a small vocabulary,
while a pair at the threshold 0.7 still shares two with probability 0.998 or more (0.974 at
Jaccard 0.5, a prompt wrapped in as much text again; 0.996 at 0.55)."""
MIN_CONTAINED = 40
"""Task texts of fewer 5-grams (about 44 characters) are compared by Jaccard, not containment:
a short question is found inside many unrelated texts."""


@dataclass(frozen=True)
class Match:
    """A pool text that is an exact or near copy of another text."""

    query: int
    """The position of the compared record in its batch (or in the pool)."""
    pool: int
    """The pool record (its position in the pool) that holds the copying text."""
    similarity: float
    method: str
    """"exact" (equal after normalisation) or "minhash" (measured on character 5-grams)."""
    measure: str = "jaccard"
    """"jaccard", or "containment": the share of the query's 5-grams in the pool text."""
    part: str = "prompt"
    """The pool record's text that copies: "prompt", "user turn 2", "response"."""


def shingles_of(texts: list[str]) -> list[np.ndarray]:
    return shingle_sets(SPEC, [(text,) for text in texts])


def text_similarity(first: str, second: str) -> float:
    """1.0 for texts equal after normalisation, else the Jaccard of their character 5-grams."""
    keys = text_keys([(first,), (second,)])
    if (keys[0] == keys[1]).all():
        return 1.0
    return jaccard(*shingles_of([first, second]))


def containment(part: np.ndarray, whole: np.ndarray) -> float:
    """The share of the sorted set `part` found in the sorted set `whole`."""
    if not len(part) or not len(whole):
        return 0.0
    found = np.searchsorted(whole, part)
    return np.count_nonzero(whole[np.minimum(found, len(whole) - 1)] == part) / len(part)


def copy_similarity(query: np.ndarray, pool: np.ndarray) -> tuple[float, str]:
    """How much of the query text the pool text copies, and the measure used."""
    if len(query) >= MIN_CONTAINED:
        return containment(query, pool), "containment"
    return jaccard(query, pool), "jaccard"


class PromptIndex:
    """Exact and near lookups of texts against the pool's texts: text i < len(prompts) is pool
    record i's prompt; `extra` adds (pool record, part name, text) rows, such as the user turns
    of a multi-turn record. Pool duplicates are found among the prompts only. With `contain`
    False, texts are compared by Jaccard only (the answers: a copied answer is a near-equal
    one)."""

    def __init__(self, prompts: list[str], threshold: float,
                 extra: list[tuple[int, str, str]] = (), part: str = "prompt",
                 contain: bool = True):
        self.count = len(prompts)
        self.prompts = list(prompts) + [text for _, _, text in extra]
        self.owners = np.r_[np.arange(self.count), [o for o, _, _ in extra]].astype(np.int64)
        self.parts = [part] * self.count + [name for _, name, _ in extra]
        self.threshold, self.contain = threshold, contain
        self.lowest = min(threshold, SCREEN_JACCARD) if contain else threshold
        """The lowest Jaccard the LSH bands are tuned to find."""
        self.bands, self.rows = lsh_bands(self.lowest, SPEC.num_perm)
        signatures, keys, counts = _hash_all(self.prompts)
        self.by_key: dict[bytes, list[int]] = {}
        for index in np.flatnonzero(counts > 0).tolist():
            self.by_key.setdefault(keys[index].tobytes(), []).append(index)
        self.members = np.flatnonzero(counts > 0)
        self.member_bands = band_hashes(signatures[self.members], self.bands, self.rows)
        self.order = np.argsort(self.member_bands, axis=0, kind="stable")
        self.sorted_bands = np.take_along_axis(self.member_bands, self.order, axis=0)
        self.signatures, self.sizes = signatures, counts
        self._row = np.full(len(self.prompts), -1, dtype=np.int64)
        self._row[self.members] = np.arange(len(self.members))
        self._sets: dict[int, np.ndarray] = {}
        self._keys = keys
        self._accepted_keys: dict[bytes, int] = {}
        self._accepted_buckets: list[dict[int, list[int]]] = [{} for _ in range(self.bands)]

    def shingles(self, index: int) -> np.ndarray:
        if index not in self._sets:
            self.prefetch([index])
        return self._sets[index]

    def prefetch(self, indices: list[int]) -> None:
        """Build the shingle sets of these pool texts in one batch: one at a time costs a numpy
        round trip each."""
        missing = sorted(index for index in set(indices) if index not in self._sets)
        self._sets.update(zip(missing, shingles_of([self.prompts[i] for i in missing])))

    def key(self, index: int) -> bytes:
        return self._keys[index].tobytes()

    def matches(self, texts: list[str], min_shingles: int = 1) -> list[Match]:
        """For each (text, pool record) the closest pool text that copies the text: equal after
        normalisation, or at least `threshold` by copy_similarity. Texts of fewer than
        `min_shingles` 5-grams are not looked up."""
        signatures, keys, counts = hash_batch(SPEC, [(t,) for t in texts])
        counts = np.where(counts >= min_shingles, counts, 0)
        found: dict[tuple[int, int], Match] = {}
        for query in np.flatnonzero(counts > 0).tolist():
            for text in self.by_key.get(keys[query].tobytes(), ()):
                self._keep(found, Match(query, int(self.owners[text]), 1.0, "exact",
                                        "jaccard", self.parts[text]))
        candidates = self._near_candidates(signatures, counts)
        queries = sorted({query for query, _ in candidates})
        sets = dict(zip(queries, shingles_of([texts[query] for query in queries])))
        self.prefetch([text for _, text in candidates])
        for query, text in candidates:
            similarity, measure = copy_similarity(sets[query], self.shingles(text)) \
                if self.contain else (jaccard(sets[query], self.shingles(text)), "jaccard")
            if similarity >= self.threshold:
                self._keep(found, Match(query, int(self.owners[text]), similarity, "minhash",
                                        measure, self.parts[text]))
        return [found[pair] for pair in sorted(found)]

    @staticmethod
    def _keep(found: dict, match: Match) -> None:
        known = found.get((match.query, match.pool))
        if known is None or match.similarity > known.similarity:
            found[match.query, match.pool] = match

    def accept(self, index: int) -> None:
        """Note a pool prompt as drawn (or held out): later ones that copy it are duplicates.
        Accepted prompts are bucketed by LSH band as they come, so a pool of template-like
        prompts costs no pairwise graph: a near copy of an accepted prompt is found at once."""
        self._accepted_keys.setdefault(self.key(index), index)
        row = self._row[index]
        if row >= 0:
            for band, value in enumerate(self.member_bands[row].tolist()):
                self._accepted_buckets[band].setdefault(value, []).append(index)

    def pool_duplicate(self, index: int) -> Match | None:
        """The first accepted pool prompt that `index`'s prompt copies, exactly or nearly
        (by Jaccard)."""
        earlier = self._accepted_keys.get(self.key(index))
        if earlier is not None and len(self.shingles(index)):
            return Match(index, earlier, 1.0, "exact")
        row = self._row[index]
        if row < 0:
            return None
        others = set()
        for band, value in enumerate(self.member_bands[row].tolist()):
            others.update(self._accepted_buckets[band].get(value, ()))
        if not others:
            return None
        others = np.array(sorted(others))
        estimates = estimated_jaccard(self.signatures[others], self.signatures[index][None, :])
        for other in others[estimates >= self.threshold - ESTIMATE_SLACK].tolist():
            match = self._verified(index, other)
            if match is not None:
                return match
        return None

    def _verified(self, index: int, other: int) -> Match | None:
        similarity = jaccard(self.shingles(index), self.shingles(other))
        return Match(index, other, similarity, "minhash") if similarity >= self.threshold else None

    def _near_candidates(self, signatures: np.ndarray,
                         counts: np.ndarray) -> list[tuple[int, int]]:
        """(query, pool text) candidates worth verifying, every one of them: band pairs in
        groups of at most PAIR_BUDGET, or the whole pool by estimate for a query whose buckets
        hold more than it."""
        queries = np.flatnonzero(counts > 0)
        if not len(self.members) or not len(queries):
            return []
        values = band_hashes(signatures[queries], self.bands, self.rows)
        low = np.stack([np.searchsorted(self.sorted_bands[:, band], values[:, band], "left")
                        for band in range(self.bands)], axis=1)
        high = np.stack([np.searchsorted(self.sorted_bands[:, band], values[:, band], "right")
                         for band in range(self.bands)], axis=1)
        totals = (high - low).sum(axis=1)
        crowded = totals > len(self.members)
        found = [self._whole_pool(query, signatures, counts) for query in queries[crowded]]
        light = np.flatnonzero(~crowded)
        groups = np.cumsum(totals[light]) // PAIR_BUDGET
        for group in np.unique(groups):
            rows = light[groups == group]
            pairs = self._band_pairs(queries[rows], low[rows], high[rows])
            found.append(self._near_enough(pairs, signatures, counts))
        return list(map(tuple, np.concatenate(found).tolist())) if found else []

    def _band_pairs(self, queries: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """(query, pool text) pairs sharing at least MIN_SHARED_BANDS LSH bands, unique, as an
        array of rows (built with numpy: a bucket of template-like prompts holds many)."""
        found = []
        for band in range(self.bands):
            sizes = high[:, band] - low[:, band]
            total = int(sizes.sum())
            if not total:
                continue
            starts = np.repeat(low[:, band], sizes)
            offsets = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            pools = self.members[self.order[starts + offsets, band]]
            found.append(np.repeat(queries, sizes).astype(np.int64) * len(self.prompts) + pools)
        codes = np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else codes
        shared = np.diff(np.r_[starts, len(codes)])
        codes = codes[starts[shared >= MIN_SHARED_BANDS]]
        return np.stack([codes // len(self.prompts), codes % len(self.prompts)], axis=1)

    def _whole_pool(self, query: int, signatures: np.ndarray, counts: np.ndarray) -> np.ndarray:
        pairs = np.stack([np.full(len(self.members), query), self.members], axis=1)
        return self._near_enough(pairs, signatures, counts)

    def _near_enough(self, pairs: np.ndarray, signatures: np.ndarray,
                     counts: np.ndarray) -> np.ndarray:
        """The pairs whose estimated copy_similarity is within ESTIMATE_SLACK of the
        threshold."""
        kept = []
        for start in range(0, len(pairs), ESTIMATE_CHUNK):
            chunk = pairs[start:start + ESTIMATE_CHUNK]
            jaccard = estimated_jaccard(signatures[chunk[:, 0]], self.signatures[chunk[:, 1]])
            sizes = counts[chunk[:, 0]] if self.contain else np.zeros(len(chunk), np.int64)
            copied = estimated_copy(jaccard, sizes, self.sizes[chunk[:, 1]])
            kept.append(chunk[(copied >= self.threshold - ESTIMATE_SLACK)
                              & (jaccard >= self.lowest - ESTIMATE_SLACK)])
        return np.concatenate(kept) if kept else pairs


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


def estimated_copy(jaccard: np.ndarray, first_sizes: np.ndarray,
                   second_sizes: np.ndarray) -> np.ndarray:
    """Row by row, copy_similarity estimated from the estimated Jaccard and the 5-gram counts:
    containment |A & B| / |A| = J (|A| + |B|) / ((1 + J) |A|), for texts of MIN_CONTAINED
    5-grams or more."""
    estimate = jaccard
    sizes = np.maximum(first_sizes, 1)
    contained = estimate * (sizes + second_sizes) / ((1 + estimate) * sizes)
    return np.where(first_sizes >= MIN_CONTAINED, np.minimum(contained, 1.0), estimate)
