"""Near-identical prompts for the `consistency` stage (`prompt_similarity` below 1.0): prompts
whose word 3-shingle Jaccard similarity reaches the threshold are one question.

The near-dedupe stage's numpy MinHash does the work: every record's normalised prompt is written
to a scratch file and hashed, a batch at a time in `[run] workers` processes, into its LSH band
values, the only thing kept per record (uint64s in one array). Prompts that share a band value are
candidates; a candidate joins a group only when the Jaccard similarity measured on the two
shingle sets reaches the threshold, and never when the prompts hold other numbers. Groups are the
connected components of those verified pairs, named by their first record, so they depend only
on the input.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np

from curate.stages import ordered_map

from curate.plugins.consistency_text import key_hash
from curate.plugins.dedupe_index import SpilledTexts
from curate.plugins.minhash import (ShingleSpec, band_hashes, jaccard, lsh_bands, shingle_batch,
                                    shingle_sets, signatures)

SHINGLES = ShingleSpec("word", 3, 128)
BATCH_SIZE = 512
BUCKET_WINDOW = 16
"""A prompt is a candidate of at most this many prompts before it in each of its band buckets.
Thousands of near-identical prompts (one template filled with ids) share buckets: all their
pairs would be quadratic, while chains of neighbours still link them into one group."""


def prompt_jaccard(first: str, second: str) -> float:
    """The similarity `prompt_similarity` is compared with, of two comparison keys (as text)."""
    return float(jaccard(*shingle_sets(SHINGLES, [(first,), (second,)])))


def prompt_bands(bands: int, rows: int, batch: list[tuple[str]]) -> np.ndarray:
    """The LSH band values of a batch of prompts (a worker's job)."""
    shingles, counts = shingle_batch(batch, SHINGLES)
    return band_hashes(signatures(shingles, counts, SHINGLES.num_perm), bands, rows)


def bucket_neighbours(columns: Iterable[np.ndarray], count: int, window: int = BUCKET_WINDOW
                      ) -> np.ndarray:
    """Pairs (i < j, of `count` rows) that share a value in one of the `columns` (one band's
    values each), with fewer than `window` rows of that bucket between them."""
    codes = [np.zeros(0, dtype=np.int64)]
    for column in columns:
        order = np.argsort(column, kind="stable")
        ordered = column[order]
        for offset in range(1, window + 1):
            same = np.flatnonzero(ordered[offset:] == ordered[:-offset])
            if not len(same):  # no bucket holds more than `offset` rows
                break
            codes.append(order[same] * count + order[same + offset])
    pairs = np.unique(np.concatenate(codes))
    return np.stack([pairs // max(count, 1), pairs % max(count, 1)], axis=1)


class NearPrompts:
    """Groups near-identical prompts; `close()` removes the scratch file."""

    def __init__(self, threshold: float, work_dir: Path, workers: int, max_word_changes: int):
        self.threshold, self.workers, self.max_word_changes = threshold, workers, max_word_changes
        self.bands, self.rows = lsh_bands(threshold, SHINGLES.num_perm)
        self.texts = SpilledTexts(work_dir)
        self.band_values = array("Q")  # record by record, `bands` values each
        self.numbers = array("Q")  # record -> digest of its prompt's words with digits
        self.first_of = np.zeros(0, dtype=np.int64)  # record -> first record with its prompt
        self._measured: dict[tuple[int, int], float] = {}
        self._differing: dict[tuple[int, int], tuple[list[str], list[str]]] = {}

    def index(self, prompts: Iterable[bytes]) -> None:
        """Takes every record's prompt comparison key, in input order (empty for a record in no
        group)."""
        for values in ordered_map(partial(prompt_bands, self.bands, self.rows),
                                  self._spilled(prompts), self.workers):
            self.band_values.frombytes(values.tobytes())

    def _spilled(self, prompts: Iterable[bytes]) -> Iterator[list[tuple[str]]]:
        iterator = iter(prompts)
        while batch := [(key.decode("utf-8", "surrogatepass"),)
                        for key in islice(iterator, BATCH_SIZE)]:
            self.texts.add(batch)
            self.numbers.extend(numbers_digest(key) for key, in batch)
            yield batch

    def groups(self, prompts: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        """Each record's prompt group: 0 for no prompt, else 1 + the first record of the group.
        `prompts` are the exact prompt hashes (0: none), `contexts` what must also be equal.
        Prompts with other numbers in them are never one group."""
        distinct, firsts, inverse = np.unique(prompts, return_index=True, return_inverse=True)
        self.first_of = firsts[inverse.ravel()]
        contexts = contexts ^ np.frombuffer(self.numbers, dtype=np.uint64)
        pairs = self._candidates(np.sort(firsts[distinct != 0]), contexts)
        self.band_values = array("Q")  # not needed any more
        parent = array("q", range(len(prompts)))
        self._join_similar(pairs, parent)
        roots = np.frombuffer(parent, dtype=np.int64)
        while not np.array_equal(roots[roots], roots):  # every record straight to its root
            roots = roots[roots]
        return np.where(prompts != 0, roots[self.first_of] + 1, 0).astype(np.uint64)

    def _candidates(self, members: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        """Pairs of `members` (sorted records, so the earlier one comes first) that share a
        band value and their context."""
        values = np.frombuffer(self.band_values, dtype=np.uint64).reshape(-1, self.bands)
        # a context mixed into every band keeps other contexts' prompts out of the buckets
        bands = (values[members, band] ^ contexts[members] for band in range(self.bands))
        pairs = members[bucket_neighbours(bands, len(members))]
        return pairs[contexts[pairs[:, 0]] == contexts[pairs[:, 1]]]

    def _join_similar(self, pairs: np.ndarray, parent: array) -> None:
        """Joins the groups of the candidate pairs whose measured Jaccard reaches the threshold
        and whose words differ in at most `max_word_changes`; a pair already in one group is not
        measured, since joining it changes nothing."""
        def joined(first: int, second: int) -> bool:
            return _root(parent, first) == _root(parent, second)

        for first, second, value in self._jaccards(pairs, joined):
            if value >= self.threshold and self._few_changes(first, second):
                _join(parent, first, second)

    def _few_changes(self, first: int, second: int) -> bool:
        """A long template filled with a short input (a review, a product) reaches a high
        Jaccard however different the inputs: near-identical prompts differ in a word or two."""
        mine, theirs = (self.texts.parts(record, 1)[0].split() for record in (first, second))
        if len(set(mine).symmetric_difference(theirs)) > self.max_word_changes:
            return False  # the common case, found without counting repeated words
        mine, theirs = _changed_words(mine, theirs)
        return len(mine) + len(theirs) <= self.max_word_changes

    def _jaccards(self, pairs: np.ndarray, skip: Callable[[int, int], bool]
                  ) -> Iterator[tuple[int, int, float]]:
        """(earlier, later, Jaccard) of each pair (earlier < later) that `skip` leaves, by later
        record, from shingle sets built in batches and dropped after their last pair."""
        if not len(pairs):
            return
        pairs = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]
        cuts = np.flatnonzero(np.diff(pairs[:, 1])) + 1
        partners = {int(group[0, 1]): group[:, 0].tolist() for group in np.split(pairs, cuts)}
        remaining = np.bincount(pairs[:, 0], minlength=int(pairs.max()) + 1).tolist()
        sets: dict[int, np.ndarray] = {}
        for index, shingles in self._shingle_sets(np.unique(pairs)):
            for other in partners.get(index, ()):
                if not skip(other, index):
                    yield other, index, jaccard(sets[other], shingles)
                remaining[other] -= 1
                if not remaining[other]:
                    del sets[other]
            if remaining[index]:
                sets[index] = shingles

    def _shingle_sets(self, needed: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(record, its prompt's sorted shingle hashes) for the `needed` records, in order."""
        jobs = ([self.texts.parts(index, 1) for index in needed[start:start + BATCH_SIZE].tolist()]
                for start in range(0, len(needed), BATCH_SIZE))
        built = ordered_map(partial(shingle_sets, SHINGLES), jobs, self.workers)
        return zip(needed.tolist(), (shingles for batch in built for shingles in batch))

    def measure(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Measures the prompt similarity of many pairs of records at once (after `groups`):
        far faster than one `similarity` call at a time."""
        wanted = {self._key(first, second) for first, second in pairs}
        wanted = sorted(key for key in wanted if key[0] != key[1] and key not in self._measured)
        found = np.array(wanted, dtype=np.int64).reshape(-1, 2)
        for first, second, value in self._jaccards(found, lambda first, second: False):
            self._measured[first, second] = float(value)

    def similarity(self, first: int, second: int) -> float:
        """The measured Jaccard similarity of two records' prompts (after `groups`)."""
        key = self._key(first, second)
        if key[0] == key[1]:
            return 1.0
        if key not in self._measured:
            self.measure([key])
        return self._measured[key]

    def differing_words(self, first: int, second: int) -> tuple[list[str], list[str]]:
        """The words of each record's normalised prompt that the other's lacks, in order."""
        key = self._key(first, second)
        if key not in self._differing:
            self._differing[key] = _changed_words(*(self.texts.parts(record, 1)[0].split()
                                                    for record in key))
        found = self._differing[key]
        return found if self.first_of[first] == key[0] else found[::-1]

    def _key(self, first: int, second: int) -> tuple[int, int]:
        first, second = int(self.first_of[first]), int(self.first_of[second])
        return (first, second) if first <= second else (second, first)

    def close(self) -> None:
        self.texts.close()


def numbers_digest(key: str) -> int:
    """A digest of the words of a normalised prompt that hold a digit ("17", "t0", "2pm"),
    0 for none: prompts that differ in a number ask about different things ("17 + 25" and
    "17 + 26", order 1000 and order 1001), however similar the rest."""
    numbers = sorted(word for word in key.split() if any(char.isdigit() for char in word))
    return key_hash(" ".join(numbers).encode("utf-8", "surrogatepass"))


def _changed_words(mine: list[str], theirs: list[str]) -> tuple[list[str], list[str]]:
    """The words of each list that the other lacks (as many times as they are missing)."""
    mine_counted, theirs_counted = Counter(mine), Counter(theirs)
    return (list((mine_counted - theirs_counted).elements()),
            list((theirs_counted - mine_counted).elements()))


def _root(parent: array, record: int) -> int:
    while parent[record] != record:
        parent[record] = record = parent[parent[record]]
    return record


def _join(parent: array, first: int, second: int) -> None:
    """Joins two groups under the earlier root, so a group is named by its first record."""
    roots = sorted((_root(parent, first), _root(parent, second)))
    parent[roots[1]] = roots[0]
