"""MinHash for the dedupe stages: the compared forms of a text (exact-dedupe's exact form, the
shingled form near-dedupe derives from it, and the looser `normalise` that the consistency and
rehearsal stages compare prompts by), shingles as 64-bit hashes, signatures computed a batch at a
time, LSH candidates, and the exact Jaccard check of a candidate pair.

Signatures equal datasketch's `MinHash(num_perm, seed=1, scheme="affine32")` fed with each
shingle's low 32 bits, and in-memory candidates equal datasketch `MinHashLSH`'s for the same
bands and rows (`tests/plugins/test_minhash.py` checks both); but a batch of records is one numpy
computation, and banding sorts each band instead of keeping MinHashLSH's dict of sets per
band (measured here: 6.7 GB per million records at 20 bands of 6 rows).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import re
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PERMUTATION_SEED = 1
"""Fixed, not the run's seed: changing [run] seed then neither changes what is a duplicate nor
throws away the signature cache."""
HASHING_VERSION = 3
"""Part of the signature cache key: bump whenever normalisation, shingling or hashing changes."""

_MIX = np.uint64(0x9E3779B97F4A7C15)
_MIX_INVERSE = np.uint64(pow(0x9E3779B97F4A7C15, -1, 1 << 64))
_PART_TAGS = (np.uint64(0x51ED270B27A1B3C5), np.uint64(0x2545F4914F6CDD1D))
"""Added to prompt and response shingles, so the same words in the prompt and in the response
are different shingles (and no shingle spans the two)."""
MAX_BUCKET = 1000
"""A band value shared by more texts than this links each only to the 1,000 earliest: a guard
against quadratic work on templated data (it can only miss duplicates, never add one)."""
_CHUNK_SHINGLES = 8192
"""Shingles per signature step (a 4 MB block at 128 permutations, allocated once per batch:
fresh large arrays cost page faults)."""
_LENGTH_MIX = np.uint64(0xD6E8FEB86659FD93)
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))
_FMIX64 = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(33),
           np.uint64(0xC4CEB9FE1A85EC53))
"""MurmurHash3's finalisers (shift, multiplier, shift, multiplier; the last shift repeats the
first): the 32-bit one is what datasketch applies to every input hash."""


class _DedupeCharacters(dict):
    """A str.translate table filled on demand: punctuation and invisible format characters
    (zero-width spaces and joiners, direction marks) are dropped, controls become spaces."""

    def __missing__(self, codepoint: int):
        category = unicodedata.category(chr(codepoint))
        if category[0] == "P" or category == "Cf":
            value = None
        elif category in ("Cc", "Zs", "Zl", "Zp"):
            value = " "
        else:
            value = codepoint
        self[codepoint] = value
        return value


_CHARACTERS = _DedupeCharacters()
_ASCII_PUNCTUATION = bytes(c for c in range(128) if unicodedata.category(chr(c))[0] == "P")
_SPACES = re.compile(b"  +")
_ASCII_FOLD = bytes(32 if unicodedata.category(chr(c)) in ("Cc", "Zs") else ord(chr(c).lower())
                    for c in range(128)) + bytes(range(128, 256))


def normalise(text: str) -> str:
    """NFKC, casefolded, punctuation and invisible format characters removed, controls and
    whitespace collapsed to single spaces: how the consistency and rehearsal stages compare
    prompts (`ShingleSpec(strict=False)`). The dedupe stages use `exact_form`, which keeps
    punctuation, signs and indentation."""
    if text.isascii():  # NFKC changes no ASCII and casefold is lower(): do it all in bytes
        folded = text.encode().translate(_ASCII_FOLD, _ASCII_PUNCTUATION)
        return _SPACES.sub(b" ", folded).strip().decode()
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.translate(_CHARACTERS).split())


_QUOTES = {0x2018: "'", 0x2019: "'", 0x201A: "'", 0x201B: "'",
           0x201C: '"', 0x201D: '"', 0x201E: '"', 0x201F: '"'}
_LINE_BREAK_CHARACTERS = "\r\x0b\x0c\x85\u2028\u2029"
_ASCII_EXACT = bytes(ord("\n") if chr(c) in _LINE_BREAK_CHARACTERS
                     else c if chr(c) in "\t\n" or unicodedata.category(chr(c)) != "Cc"
                     else 32 for c in range(128)).lower() + bytes(range(128, 256))
"""Lower case; \r, \v and \f are line breaks (so \r\n is a blank line, which is dropped);
other controls are spaces."""
_FLAT = bytes.maketrans(b"\t\n", b"  ")
_EMPHASIS = re.compile(r"(\*(?<![\w*]\*)\*?)(?=[^\s*])(.+?)(?<=[^\s*])\1(?![\w*])")
"""Text between * or ** that opens after no word character and closes before none: `2*3*4`
and `a * b` are not emphasis. (It starts with a literal, which the regex engine finds fast.)"""
_FENCES = ("```", "~~~")


class _ExactCharacters(dict):
    """A str.translate table filled on demand: invisible format characters are dropped, curly
    quotes become straight ones, line break characters become \n, other controls spaces."""

    def __missing__(self, codepoint: int):
        character = chr(codepoint)
        category = unicodedata.category(character)
        if codepoint in _QUOTES:
            value = _QUOTES[codepoint]
        elif character in _LINE_BREAK_CHARACTERS:
            value = "\n"
        elif category == "Cf":
            value = None
        elif category in ("Cc", "Zs") and character not in "\t\n":
            value = " "
        else:
            value = codepoint
        self[codepoint] = value
        return value


_EXACT_CHARACTERS = _ExactCharacters()


def exact_form(text: str) -> str:
    """The text up to presentation, what exact-dedupe compares: NFKC (superscripts and
    subscripts kept), casefolded, curly quotes straight, invisible format characters dropped,
    **emphasis** marks removed outside code, every run of spaces one space, except that a line
    break and its indentation stay wherever a line is indented or inside a fenced block; every
    other line break is a space. Punctuation, digits and symbols stay as they are."""
    if text.isascii():
        data = text.encode().translate(_ASCII_EXACT)
        if not _has_layout(data):  # the common case, all in bytes
            return _without_emphasis(_SPACES.sub(b" ", data.translate(_FLAT)).strip().decode())
        text = data.decode()
    else:
        text = _nfkc(text).casefold().translate(_EXACT_CHARACTERS)
        if not _has_layout(text):
            return _without_emphasis(" ".join(text.split()))
    return _layout(text)


def _has_layout(text):
    """Whether a line of the text (str or bytes, line breaks already \n) is indented or a
    code fence: only then do line breaks count."""
    if isinstance(text, bytes):  # one-byte tests first: they are memchr calls
        return (b"\n" in text and (b"\n " in text or b"\n\t" in text)) \
            or (b"`" in text and b"```" in text) or (b"~" in text and b"~~~" in text)
    return ("\n" in text and ("\n " in text or "\n\t" in text)) \
        or (("`" in text or "~" in text) and any(fence in text for fence in _FENCES))


def _layout(text: str) -> str:
    pieces: list[str] = []
    fenced = kept_break = False
    for line in text.split("\n"):
        words = " ".join(line.split())
        if not words:
            continue
        indent = line[:len(line) - len(line.lstrip(" \t"))]
        fence = words.startswith(_FENCES)
        code = fenced or fence or bool(indent)
        if pieces:
            pieces.append("\n" + indent if code or kept_break else " ")
        pieces.append(words if code else _without_emphasis(words))
        kept_break = code
        fenced ^= fence
    return "".join(pieces)


def _without_emphasis(words: str) -> str:
    """The line without emphasis marks, except inside `inline code`."""
    if "*" not in words:
        return words
    pieces = words.split("`")
    for index in range(0, len(pieces), 2):
        if "*" in pieces[index]:
            pieces[index] = _EMPHASIS.sub(r"\2", pieces[index])
    return "`".join(pieces)


@functools.cache
def _kept_compatibility() -> re.Pattern:
    """Superscript and subscript characters, which NFKC would make plain (x² as x2)."""
    kept = [chr(c) for c in range(0x30000)
            if unicodedata.decomposition(chr(c)).startswith(("<super>", "<sub>"))]
    return re.compile("([" + re.escape("".join(kept)) + "])")


def _nfkc(text: str) -> str:
    if unicodedata.is_normalized("NFKC", text):
        return text
    pieces = _kept_compatibility().split(text)
    pieces[::2] = (unicodedata.normalize("NFKC", piece) for piece in pieces[::2])
    return "".join(pieces)


_SENTENCE_MARKS = b".,:!\"';?"
_NUMBER_MARK = re.compile(rb"\d[.,:](?=\d)")
"""`.`, `,` and `:` between two digits are part of a number (3.5, 1,000, 10:30)."""
_PROTECTED = bytes.maketrans(b".,:", b"\x01\x02\x03")
_UNPROTECTED = bytes.maketrans(b"\x01\x02\x03", b".,:")
_DIGITS = b"0123456789"
_SPACE_RUNS = re.compile(r"([^\n ])  +")


class _SentencePunctuation(dict):
    """Non-ASCII sentence punctuation and quotes (Unicode Po, Pi, Pf) are dropped; ASCII is
    left to `_SENTENCE_MARKS`, so that `#`, `%`, `*`, `/` and the like stay."""

    def __missing__(self, codepoint: int):
        category = unicodedata.category(chr(codepoint))
        value = None if codepoint >= 128 and category in ("Po", "Pi", "Pf") \
            and chr(codepoint) not in "‰‱′″‴" else codepoint
        self[codepoint] = value
        return value


_SENTENCE_PUNCTUATION = _SentencePunctuation()


def shingle_form(exact: str) -> str:
    """What near-dedupe shingles, from an exact form: without sentence punctuation
    (. , : ; ! ? and quotes, so that `Paris.` and `Paris!` are one word), but with brackets,
    dashes, operators, numbers (3.5 keeps its point) and the kept line breaks."""
    if not exact.isascii():
        exact = exact.translate(_SENTENCE_PUNCTUATION)
    data = exact.encode("utf-8", "surrogatepass")
    if len(data.translate(None, _DIGITS)) < len(data):  # only then can a mark be in a number
        data = _NUMBER_MARK.sub(lambda match: match.group().translate(_PROTECTED), data)
    text = data.translate(None, _SENTENCE_MARKS).translate(_UNPROTECTED).decode(
        "utf-8", "surrogatepass")
    if text.count("  ") > exact.count("  "):  # a word of punctuation alone was dropped
        text = _SPACE_RUNS.sub(r"\1 ", text)
    return text.strip()


_NUMBER = re.compile(r"[-+\u2212]?\d+(?:[.,:]\d+)*")
_SIGNS = "-+\u2212"


def numbers(exact: str) -> collections.Counter:
    """The numbers of an exact form, with their sign and separators (-5, 3.5, 10:30, 24h);
    digits after a letter are part of a name (x2, w17), not a number, and a sign after a letter
    or digit is an operator (2-7 holds 2 and 7)."""
    found: collections.Counter = collections.Counter()
    if exact.isascii() and not _has_digit(exact):
        return found
    for match in _NUMBER.finditer(exact):
        number, start = match.group(), match.start()
        if start and (exact[start - 1].isalnum() or exact[start - 1] in "_."):
            if number[0] not in _SIGNS:
                continue
            number = number[1:]
        found[number] += 1
    return found


def _has_digit(text: str) -> bool:
    data = text.encode()
    return len(data.translate(None, _DIGITS)) < len(data)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _normalised(parts_list: list[tuple[str, ...]], form=normalise) -> tuple[list[str], int]:
    """Every part of every record, normalised, in one list; and the parts per record."""
    return [form(part) for parts in parts_list for part in parts], \
        len(parts_list[0]) if parts_list else 1


def text_keys(parts_list: list[tuple[str, ...]]) -> np.ndarray:
    """A 128-bit key per record (two uint64 columns): equal keys, equal normalised texts."""
    return _keys(*_normalised(parts_list))


def exact_keys(parts_list: list[tuple[str, ...]]) -> np.ndarray:
    """A 128-bit key per record: equal keys, equal exact forms (what exact-dedupe compares)."""
    return _keys(*_normalised(parts_list, exact_form))


def raw_keys(parts_list: list[tuple[str, ...]]) -> np.ndarray:
    """A 64-bit hash per record of its parts as they are, the signature cache's key."""
    return np.array([int.from_bytes(hashlib.blake2b(b"\x1f".join(map(_utf8, parts)),
                                                    digest_size=8).digest(), "big")
                     for parts in parts_list], dtype=np.uint64)


def _keys(parts: list[str], width: int) -> np.ndarray:
    digests = (hashlib.blake2b(b"\x1f".join(map(_utf8, parts[start:start + width])),
                               digest_size=16).digest() for start in range(0, len(parts), width))
    return np.frombuffer(b"".join(digests), dtype="<u8").reshape(-1, 2).astype(np.uint64)


@dataclass(frozen=True)
class ShingleSpec:
    """How records are shingled and signed: everything a signature depends on."""

    kind: str = "word"
    size: int = 5
    num_perm: int = 128
    strict: bool = False
    """False: shingles of `normalise` and its text keys (punctuation gone). True, near-dedupe's:
    shingles of `shingle_form` and keys of `exact_form`."""

    def cache_key(self, compare: str) -> str:
        text = f"v{HASHING_VERSION}/{compare}/{self.kind}/{self.size}/{self.num_perm}/" \
               f"{PERMUTATION_SEED}/{'strict' if self.strict else 'loose'}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fmix(values: np.ndarray, constants=_FMIX64) -> np.ndarray:
    s1, m1, s2, m2 = constants
    values = (values ^ (values >> s1)) * m1
    values = (values ^ (values >> s2)) * m2
    return values ^ (values >> s1)


def _word_hashes(parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of every word of every part, in order, and each part's word count: one
    polynomial hash over the UTF-8 bytes of the whole batch, cut at the spaces."""
    encoded = [_utf8(part) for part in parts]
    data = np.frombuffer(b" ".join(encoded), dtype=np.uint8)
    spaces = np.flatnonzero(data == 32)
    starts, ends = np.r_[0, spaces + 1], np.r_[spaces, len(data)]
    starts, ends = starts[ends > starts], ends[ends > starts]  # empty parts leave empty words
    powers, inverses = _powers(len(data))
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum(data * powers[:len(data)], out=prefix[1:])
    sums = (prefix[ends] - prefix[starts]) * inverses[starts]  # sum of byte * MIX^(offset)
    hashes = _fmix(sums + (ends - starts).astype(np.uint64) * _LENGTH_MIX)
    part_ends = np.cumsum([len(e) + 1 for e in encoded], dtype=np.int64)
    return hashes, np.diff(np.searchsorted(starts, part_ends), prepend=0)


_POWER_TABLES = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))


def _powers(count: int) -> tuple[np.ndarray, np.ndarray]:
    """MIX**i and MIX**-i (mod 2**64) for i up to at least `count`, kept between batches."""
    global _POWER_TABLES
    if len(_POWER_TABLES[0]) <= count:
        size = max(2 * count, 1 << 16)
        _POWER_TABLES = tuple(np.cumprod(np.r_[np.uint64(1), np.full(size, base)])
                              for base in (_MIX, _MIX_INVERSE))
    return _POWER_TABLES


def _char_hashes(parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    codepoints = np.frombuffer("".join(parts).encode("utf-32-le", "surrogatepass"), dtype="<u4")
    return _fmix(codepoints.astype(np.uint64) + _MIX), np.array([len(p) for p in parts],
                                                                   dtype=np.int64)


def shingle_batch(parts_list: list[tuple[str, ...]], spec: ShingleSpec
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Every record's shingle hashes (with repeats), concatenated, and each record's count.

    A part shorter than the shingle size is one shingle; an empty part has none."""
    return _shingles(*_shingled(parts_list, spec), spec)


def _shingled(parts_list: list[tuple[str, ...]], spec: ShingleSpec) -> tuple[list[str], int]:
    if not spec.strict:
        return _normalised(parts_list)
    exact, width = _normalised(parts_list, exact_form)
    return [shingle_form(part) for part in exact], width


def _shingles(parts: list[str], width: int, spec: ShingleSpec) -> tuple[np.ndarray, np.ndarray]:
    units, lengths = (_word_hashes if spec.kind == "word" else _char_hashes)(parts)
    size = spec.size
    # each part's units, then size - 1 zeros, so that no shingle spans two parts
    flat = np.zeros(len(units) + len(parts) * (size - 1), dtype=np.uint64)
    flat[np.arange(len(units)) + np.repeat(np.arange(len(parts)), lengths) * (size - 1)] = units
    starts = np.cumsum(lengths + size - 1) - (lengths + size - 1)
    per_part = np.where(lengths > 0, np.maximum(lengths - size + 1, 1), 0)
    first = np.repeat(starts, per_part)
    positions = first + np.arange(len(first)) - np.repeat(np.cumsum(per_part) - per_part, per_part)
    rolling = flat[positions]
    for offset in range(1, size):
        rolling = rolling * _MIX + flat[positions + offset]
    tags = np.tile(np.array(_PART_TAGS[:width], dtype=np.uint64), len(parts) // width)
    shingles = _fmix(rolling + np.repeat(tags, per_part))
    counts = np.bincount(np.arange(len(parts)) // width, weights=per_part,
                         minlength=len(parts) // width)
    return shingles, counts.astype(np.int64)


def permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b) for PERMUTATION_SEED."""
    generator = np.random.RandomState(PERMUTATION_SEED)
    a = generator.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = generator.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


EMPTY_SIGNATURE = np.uint32(0xFFFFFFFF)


def signatures(shingles: np.ndarray, counts: np.ndarray, num_perm: int) -> np.ndarray:
    """One MinHash signature (num_perm uint32) per record; records without shingles keep the
    empty signature (all 0xFFFFFFFF)."""
    a, b = (column[:, None] for column in permutations(num_perm))
    hashed = _fmix((shingles & np.uint64(0xFFFFFFFF)).astype(np.uint32), _FMIX32)
    owners = np.repeat(np.arange(len(counts)), counts)
    # permutations x records: each record's minimum is then a reduction over contiguous memory
    result = np.full((num_perm, len(counts)), EMPTY_SIGNATURE, dtype=np.uint32)
    buffer = np.empty((num_perm, min(_CHUNK_SHINGLES, len(hashed))), dtype=np.uint32)
    for start in range(0, len(hashed), _CHUNK_SHINGLES):
        chunk = hashed[start:start + _CHUNK_SHINGLES]
        block = np.multiply(a, chunk, out=buffer[:, :len(chunk)])
        block += b
        owner = owners[start:start + _CHUNK_SHINGLES]
        cuts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        rows = owner[cuts]
        result[:, rows] = np.minimum(result[:, rows], np.minimum.reduceat(block, cuts, axis=1))
    return np.ascontiguousarray(result.T)


def hash_batch(spec: ShingleSpec, parts_list: list[tuple[str, ...]]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signatures, text keys, shingle counts) of a batch of records: a worker's job."""
    if spec.strict:
        exact, width = _normalised(parts_list, exact_form)
        keys = _keys(exact, width)
        shingles, counts = _shingles([shingle_form(part) for part in exact], width, spec)
    else:
        parts, width = _normalised(parts_list)
        keys = _keys(parts, width)
        shingles, counts = _shingles(parts, width, spec)
    return signatures(shingles, counts, spec.num_perm), keys, counts


def shingle_sets(spec: ShingleSpec, parts_list: list[tuple[str, ...]]) -> list[np.ndarray]:
    """Each record's set of shingle hashes, sorted: what the exact Jaccard check compares."""
    if not parts_list:
        return []
    shingles, counts = shingle_batch(parts_list, spec)
    return [np.unique(chunk) for chunk in np.split(shingles, np.cumsum(counts)[:-1])]


@dataclass(frozen=True)
class PartProfile:
    """What near-dedupe verifies a candidate pair on, per compared part: its sorted shingle
    hashes and its exact form, whose numbers are found only for pairs similar enough."""

    shingles: tuple[np.ndarray, ...]
    exact: tuple[str, ...]

    @functools.cached_property
    def numbers(self) -> tuple[collections.Counter, ...]:
        return tuple(numbers(part) for part in self.exact)


def part_profiles(spec: ShingleSpec, parts_list: list[tuple[str, ...]]) -> list[PartProfile]:
    """Each record's PartProfile, from the strict forms near-dedupe shingles (a worker's
    job)."""
    if not parts_list:
        return []
    width = len(parts_list[0])
    exact = [exact_form(part) for parts in parts_list for part in parts]
    hashes, counts = _shingles([shingle_form(part) for part in exact], 1, spec)
    sets = [np.unique(chunk) for chunk in np.split(hashes, np.cumsum(counts)[:-1])]
    return [PartProfile(tuple(sets[start:start + width]), tuple(exact[start:start + width]))
            for start in range(0, len(exact), width)]


def part_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """The Jaccard similarity of one part of two records; two empty parts are the same."""
    return 1.0 if not len(first) and not len(second) else jaccard(first, second)


def jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """|A & B| / |A | B| of two sorted sets of shingle hashes (0.0 when both are empty)."""
    small, large = (first, second) if len(first) <= len(second) else (second, first)
    if not len(small):
        return 0.0
    found = np.searchsorted(large, small)
    common = np.count_nonzero(large[np.minimum(found, len(large) - 1)] == small)
    return common / (len(small) + len(large) - common)


def lsh_bands(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows) for a threshold, chosen for recall: the most rows per band that still give
    a pair at the threshold a `recall` chance of sharing a band. The extra candidates this lets
    through cost only an exact Jaccard check."""
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold ** rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def band_candidates(signatures: np.ndarray, members: np.ndarray, bands: int, rows: int,
                    keep: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Pairs (i < j, positions in `members`) of signatures equal on all `rows` values of at
    least one of `bands` bands, found by sorting each band. `keep`, given a band's pairs as
    rows (i, j), returns the ones to keep: filtering band by band bounds memory when templated
    texts share buckets by the million."""
    count = len(members)
    codes = [np.zeros(0, dtype=np.int64)]
    for band in range(bands):
        hashed = _band_hash(signatures[members, band * rows:(band + 1) * rows])
        order = np.argsort(hashed, kind="stable")
        found = _bucket_pairs(order, hashed[order], count)
        if keep is not None:
            kept = keep(np.stack([found // max(count, 1), found % max(count, 1)], axis=1))
            found = kept[:, 0] * count + kept[:, 1]
        codes.append(found)
    pairs = np.unique(np.concatenate(codes))
    return np.stack([pairs // max(count, 1), pairs % max(count, 1)], axis=1)


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Each signature's value in each band (uint64, a column a band): two signatures are LSH
    candidates when they share a value in a column. Smaller to keep than the signatures."""
    return np.stack([_band_hash(signatures[:, band * rows:(band + 1) * rows])
                     for band in range(bands)], axis=1)


def _band_hash(block: np.ndarray) -> np.ndarray:
    block = block.astype(np.uint64)
    hashed = block[:, 0].copy()
    for column in range(1, block.shape[1]):
        hashed = hashed * _MIX + block[:, column]
    return hashed


def _bucket_pairs(order: np.ndarray, hashed: np.ndarray, count: int) -> np.ndarray:
    starts = np.r_[0, np.flatnonzero(hashed[1:] != hashed[:-1]) + 1]
    lengths = np.diff(np.r_[starts, len(order)])
    twos = starts[lengths == 2]
    codes = [order[twos] * count + order[twos + 1]]
    for start, length in zip(starts[lengths > 2], lengths[lengths > 2]):
        members = order[start:start + length]
        first, second = np.triu_indices(min(length, MAX_BUCKET), 1, length)
        codes.append(members[first] * count + members[second])
    return np.concatenate(codes)


def redis_candidates(signatures: np.ndarray, bands: int, rows: int, redis: dict) -> np.ndarray:
    """The pairs band_candidates finds, from datasketch's MinHashLSH with its Redis storage
    (`redis`: redis.Redis arguments). The index lives under a fresh key prefix, deleted after."""
    from datasketch import LeanMinHash, MinHashLSH

    config = {"type": "redis", "basename": f"curate-{uuid.uuid4().hex}".encode(), "redis": redis}
    lsh = MinHashLSH(num_perm=signatures.shape[1], params=(bands, rows), storage_config=config)

    def sketch(row):
        return LeanMinHash(seed=PERMUTATION_SEED, hashvalues=row, scheme="affine32")

    try:
        with lsh.insertion_session(buffer_size=10_000) as session:
            for index, row in enumerate(signatures):
                session.insert(index, sketch(row), check_duplication=False)
        pairs = [(other, index) for index, row in enumerate(signatures)
                 for other in sorted(k for k in lsh.query(sketch(row)) if k < index)[:MAX_BUCKET]]
    finally:
        _delete_prefix(config)
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _delete_prefix(config: dict) -> None:
    import redis

    client = redis.Redis(**config["redis"])
    keys = list(client.scan_iter(match=config["basename"] + b"*", count=10_000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])
