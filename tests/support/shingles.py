"""The reference word shingles, in plain Python, that the MinHash code is checked against."""

from curate.plugins import minhash


def python_shingles(parts, size=5):
    """The reference: each part's words (or its single short run of words), tagged by part."""
    shingles = set()
    for part_index, part in enumerate(parts):
        words = minhash.normalise(part).split()
        spans = range(max(len(words) - size + 1, 1)) if words else ()
        shingles |= {(part_index, tuple(words[start:start + size])) for start in spans}
    return shingles
