"""py3langid's naive Bayes model scored for a batch of texts at once.

py3langid scores one text at a time: a walk of its byte automaton (pure Python), then a small
matrix product and a sort of every language per text. Here the walk stays per text, but the
scoring of a whole batch is one sparse matrix product. Each text's sum runs over its own
features only, in feature order, so a text's result does not depend on the other texts of its
batch.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

TOP = 5
"""How many languages a verdict lists."""


class BatchScorer:
    """`languages`, when given, restricts the model to those of its languages, as py3langid's
    `set_languages` does."""

    def __init__(self, identifier, languages=None):
        self.identifier = identifier
        classes = list(identifier.nb_classes)
        columns = [column for column, code in enumerate(classes)
                   if languages is None or code in languages]
        self.table = np.asarray(identifier.nb_ptc, dtype=np.float32)[:, columns]
        self.prior = np.asarray(identifier.nb_pc, dtype=np.float32)[columns]
        self.classes = [classes[column] for column in columns]
        self.alias_pairs = _alias_pairs(self.classes)
        self.features = self.table.shape[0]

    def rank(self, texts: list[str]) -> list[list[tuple[str, float]]]:
        """The likeliest languages of each text with normalised probabilities, best first; an
        empty list for a text in which the model finds no feature at all."""
        if not texts:
            return []
        encoded = [self.identifier._encode(text) for text in texts]
        emitted = [self._walk(data) for data in encoded]
        counts = np.fromiter(map(len, emitted), dtype=np.int64, count=len(emitted))
        features = np.fromiter(itertools.chain.from_iterable(emitted), dtype=np.int64,
                               count=int(counts.sum()))
        keys = np.repeat(np.arange(len(texts), dtype=np.int64) * self.features, counts) + features
        scores = self._scores(keys, len(texts))
        lengths = np.array([math.sqrt(len(data) or 1) for data in encoded], dtype=np.float32)
        ranked = self._ranked(self._probabilities(scores, lengths))
        return [verdict if found else [] for verdict, found in zip(ranked, counts)]

    @functools.cached_property
    def _walk(self):
        identifier = self.identifier
        return functools.partial(_emitted_features, identifier.tk_nextmove, identifier._rowbase,
                                 identifier.tk_output)

    def _scores(self, keys: np.ndarray, count: int) -> np.ndarray:
        from scipy.sparse import csr_matrix

        unique, counts = np.unique(keys, return_counts=True)
        texts, features = np.divmod(unique, self.features)
        weights = csr_matrix((np.log1p(counts.astype(np.float32)), (texts, features)),
                             shape=(count, self.features))
        return weights @ self.table + self.prior

    def _probabilities(self, scores: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        # py3langid's temperature: T = sqrt(bytes) keeps the softmax calibrated across lengths.
        scores = scores / lengths[:, None]
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
        for first, duplicate in self.alias_pairs:  # script aliases (srl -> sr) share one label
            scores[:, first] += scores[:, duplicate]
            scores[:, duplicate] = 0.0
        return scores

    def _ranked(self, probabilities: np.ndarray) -> list[list[tuple[str, float]]]:
        count = min(TOP, probabilities.shape[1])
        top = np.argpartition(-probabilities, count - 1, axis=1)[:, :count]
        chosen = np.take_along_axis(probabilities, top, axis=1)
        # Ties broken by column, the order py3langid's stable sort gives.
        order = np.lexsort((top, -chosen), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        return [[(self.classes[column], float(row[column])) for column in columns]
                for row, columns in zip(probabilities, top.tolist())]


def _emitted_features(nextmove, rowbase, output, data: bytes) -> list[int]:
    state, emitted = 0, []
    append = emitted.append
    for byte in data:
        state = nextmove[rowbase[state] + byte]
        feature = output[state]
        if feature >= 0:
            append(feature)
    return emitted


def _alias_pairs(classes: list[str]) -> list[tuple[int, int]]:
    """(first, duplicate) columns of the codes the model lists twice (two scripts of one
    language)."""
    first: dict[str, int] = {}
    pairs = []
    for column, code in enumerate(classes):
        if code in first:
            pairs.append((first[code], column))
        else:
            first[code] = column
    return pairs
