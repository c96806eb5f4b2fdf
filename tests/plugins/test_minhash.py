"""The MinHash parts of the dedupe stages against real datasketch: normalisation, shingles,
signatures equal to datasketch's, exact Jaccard, and LSH candidates equal to MinHashLSH's."""

import random

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from curate.plugins import dedupe_index, minhash
from support.shingles import python_shingles

WORDS = [f"word{i}" for i in range(400)]


def text(generator: random.Random, words: int) -> str:
    return " ".join(generator.choices(WORDS, k=words))


@pytest.mark.parametrize("raw, normalised", [
    ("Hello,   World!", "hello world"),
    ("ＨＥＬＬＯ　ｗｏｒｌｄ", "hello world"),            # full-width letters and space (NFKC)
    ("Straße", "strasse"),                               # casefold, not lower()
    ("ﬁne", "fine"),                                     # ligature (NFKC)
    ("hel\u200blo wo\u200drld\u2069", "hello world"),    # zero-width and direction marks
    ("tab\there\x00null\x1fsep\nline", "tab here null sep line"),  # controls are spaces
    ("I \u2764\ufe0f 🐍", "i \u2764\ufe0f 🐍"),            # emoji and variation selector kept
    ("\u05e2\u05d5\u05dc\u05dd, \u05e9\u05dc\u05d5\u05dd!",  # right-to-left, punctuation gone
     "\u05e2\u05d5\u05dc\u05dd \u05e9\u05dc\u05d5\u05dd"),
    ("  \u3000 ", ""),
])
def test_normalise(raw, normalised):
    assert minhash.normalise(raw) == normalised


def test_ascii_takes_a_shortcut_to_the_same_result():
    """An ASCII text is normalised in bytes; a non-ASCII one through NFKC and str.translate."""
    for text in [chr(c) for c in range(128)] + ["Hello,\tWORLD!\x00 a_b-c $5 <tag>  x~y|z"]:
        assert minhash.normalise(text + " \u00e9") == (minhash.normalise(text) + " \u00e9").strip()


def test_words_hash_by_their_bytes():
    spec = minhash.ShingleSpec("word", 1, 128)
    [words, again, empty] = minhash.shingle_sets(spec, [("ab ba a b aab aba baa",),
                                                        ("baa aba aab b a ba ab ab",), ("",)])
    assert len(words) == 7 and np.array_equal(words, again) and len(empty) == 0


def test_normalise_removes_punctuation_but_keeps_symbols():
    assert minhash.normalise("a-b (c) «d» ¿e? 5$ 3+4=7") == "ab c d e 5$ 3+4=7"


def test_permutations_are_datasketchs():
    a, b = minhash.permutations(64)
    expected = MinHash(num_perm=64, seed=minhash.PERMUTATION_SEED).permutations
    assert np.array_equal(a, expected[0]) and np.array_equal(b, expected[1])


def test_signatures_equal_datasketch_update_batch():
    generator = random.Random(1)
    parts_list = [(text(generator, 30), text(generator, 80)), ("", ""), ("short", "two words"),
                  ("", text(generator, 3000))]
    spec = minhash.ShingleSpec("word", 5, 128)
    shingles, counts = minhash.shingle_batch(parts_list, spec)
    ours = minhash.signatures(shingles, counts, 128)
    for row, chunk in zip(ours, np.split(shingles, np.cumsum(counts)[:-1])):
        reference = MinHash(num_perm=128, seed=minhash.PERMUTATION_SEED, hashfunc=int)
        reference.update_batch((chunk & np.uint64(0xFFFFFFFF)).tolist())
        assert np.array_equal(row, reference.digest())


def test_shingles_of_a_batch_are_the_reference_sets():
    generator = random.Random(2)
    parts_list = [(text(generator, 12), text(generator, 40)), ("one two", ""),
                  ("", "a b c d e"), ("same words here and there", "same words here and there")]
    sets = minhash.shingle_sets(minhash.ShingleSpec("word", 5, 128), parts_list)
    for parts, ours in zip(parts_list, sets):
        assert len(ours) == len(python_shingles(parts))
    assert [len(s) for s in sets[1:]] == [1, 1, 2]  # prompt and response shingles differ


def test_char_shingles():
    spec = minhash.ShingleSpec("char", 3, 128)
    [first, second, empty] = minhash.shingle_sets(spec, [("abcd",), ("ABCD!",), ("",)])
    assert len(first) == 2 and np.array_equal(first, second) and len(empty) == 0


def test_jaccard_is_exact():
    generator = random.Random(3)
    for _ in range(20):
        first = np.unique(np.array(generator.sample(range(1000), 300), dtype=np.uint64))
        second = np.unique(np.array(generator.sample(range(1000), 200), dtype=np.uint64))
        expected = len(set(first) & set(second)) / len(set(first) | set(second))
        assert minhash.jaccard(first, second) == pytest.approx(expected, abs=0)
    assert minhash.jaccard(first[:0], second[:0]) == 0.0


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9, 0.95])
def test_default_bands_give_99_percent_recall_at_the_threshold(threshold):
    bands, rows = minhash.lsh_bands(threshold, 128)
    assert bands * rows <= 128 and bands >= 2
    assert 1 - (1 - threshold ** rows) ** bands >= 0.99
    assert 1 - (1 - threshold ** (rows + 1)) ** (128 // (rows + 1)) < 0.99
    assert minhash.lsh_bands(0.8, 128) == (21, 6)


def test_band_candidates_are_minhashlsh_candidates():
    generator = random.Random(4)
    base = [text(generator, 60) for _ in range(150)]
    texts = base + [" ".join(t.split()[:55] + ["changed"] * 5) for t in base[:50]]
    spec = minhash.ShingleSpec("word", 5, 128)
    signatures, _, _ = minhash.hash_batch(spec, [(t,) for t in texts])
    members = np.arange(len(texts))
    ours = {tuple(pair) for pair in minhash.band_candidates(signatures, members, 21, 6)}
    lsh = MinHashLSH(num_perm=128, params=(21, 6))
    sketches = [MinHash(num_perm=128, seed=1, hashvalues=row, scheme="affine32")
                for row in signatures]
    for index, sketch in enumerate(sketches):
        lsh.insert(index, sketch)
    theirs = {(other, index) for index, sketch in enumerate(sketches)
              for other in lsh.query(sketch) if other < index}
    assert ours == theirs
    assert {(i, 150 + i) for i in range(50)} <= ours


def test_band_candidates_keep_filters_each_band_before_the_union():
    generator = random.Random(5)
    base = [text(generator, 60) for _ in range(100)]
    texts = base + [" ".join(t.split()[:55] + ["changed"] * 5) for t in base[:30]]
    signatures, _, _ = minhash.hash_batch(minhash.ShingleSpec("word", 5, 128),
                                          [(t,) for t in texts])
    members = np.arange(len(texts))
    seen = []

    def keep(pairs):
        seen.append(len(pairs))
        return pairs[pairs[:, 1] - pairs[:, 0] == 100]

    everything = minhash.band_candidates(signatures, members, 21, 6)
    kept = minhash.band_candidates(signatures, members, 21, 6, keep)
    assert len(seen) == 21  # called once a band
    assert kept.tolist() == [pair for pair in everything.tolist() if pair[1] - pair[0] == 100]
    assert {(i, 100 + i) for i in range(30)} <= {tuple(pair) for pair in kept.tolist()}


def test_buckets_beyond_the_limit_link_to_the_earliest_members():
    signatures = np.zeros((minhash.MAX_BUCKET + 5, 16), dtype=np.uint32)
    pairs = minhash.band_candidates(signatures, np.arange(len(signatures)), 2, 8)
    assert pairs[:, 0].max() == minhash.MAX_BUCKET - 1
    assert len(pairs) == sum(min(i, minhash.MAX_BUCKET) for i in range(len(signatures)))


def test_choose_survivors_names_a_verified_survivor():
    # groups: 0 and 1 the same text; 2 joined to 0 (0.9); 3 joined to 2 only (0.85)
    groups = np.array([0, 0, 2, 3])
    ranks = np.array([1, 0, 2, 3])  # record 1 is preferred over record 0
    edges = ([0, 2], [2, 3], [0.9, 0.85])
    duplicate_of, similarity = dedupe_index.choose_survivors(groups, ranks, edges)
    assert duplicate_of.tolist() == [1, -1, 1, -1]  # 3 is not similar enough to 1: it stays
    assert similarity.tolist() == [1.0, 0.0, 0.9, 0.0]
    assert dedupe_index.cluster_sizes(duplicate_of)[1] == 3
