"""The record-level rules of the `consistency` stage (empty, refusal, declared format), the
comparison keys it groups prompts and answers by, and the near-identical prompt finder."""

from __future__ import annotations

import hashlib
import math
from array import array
from collections.abc import Collection, Iterator
import json
import re
import string
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Any

from curate.options import OptionError
from curate.stages import Reject

BUILTIN_REFUSALS = {  # pattern -> a phrase it needs, checked first because regexes are slow
    r"\bas an ai(?: language)? model\b": "as an ai",
    r"\bas a large language model\b": "as a large language model",
    r"\bi(?:'m| am) (?:just |only )?an ai\b": " an ai",
    r"\bi(?:'m| am) sorry,? but i (?:can't|cannot|am unable to|won't)\b": "sorry",
    r"\bi apologi[sz]e,? but i (?:can't|cannot|am unable to)\b": "apologi",
    r"\bi (?:can't|cannot|am unable to|am not able to) (?:help|assist|comply) with (?:that|this)\b":
        " with th",
    r"\bi (?:can't|cannot|am unable to|won't) (?:fulfil+|provide|complete) (?:that|this|your)"
    r" request\b": " request",
    r"\bi must decline\b": "must decline",
}
JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
              "number": (int, float), "integer": int}
SCHEMA_KEYS = ("type", "required", "properties")
_ASCII_BLANKED = string.punctuation.translate(str.maketrans("", "", "$+<=>^`|~"))
_ASCII_TABLE = bytes.maketrans((_ASCII_BLANKED + "".join(map(chr, range(32))) + "\x7f").encode(),
                               b" " * (len(_ASCII_BLANKED) + 33))


def comparison_key(text: str) -> bytes:
    """The text as compared: NFKC, casefolded, punctuation and control characters read as
    spaces, invisible (format) characters dropped, whitespace runs collapsed."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).casefold()
    if text.isascii():  # the fast path gives the same bytes as the general one below
        key = text.lower().encode().translate(_ASCII_TABLE)
        while b"  " in key:
            key = key.replace(b"  ", b" ")
        return key.strip(b" ")
    return " ".join(text.translate(_unicode_table()).split()).encode("utf-8", "surrogatepass")


@cache
def _unicode_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for code in [*range(0x40000), *range(0xE0000, 0xE1000)]:  # planes 4-13 are unassigned
        category = unicodedata.category(chr(code))
        if category[0] == "P" or category == "Cc":
            table[code] = " "
        elif category in ("Cf", "Cs"):
            table[code] = None
    return table


def key_hash(*keys: bytes) -> int:
    """A 64-bit digest of comparison keys; 0 is kept for "no text"."""
    if not any(keys):
        return 0
    digest = hashlib.blake2b(b"\x00".join(keys), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


def snippet(text: str, width: int = 60) -> str:
    """The start of a text for a detail line, on one line."""
    flat = " ".join(text[:width * 4].split())  # bounded: a response may be a megabyte
    return flat if len(flat) <= width else flat[:width - 3].rstrip() + "..."


@dataclass
class Finding:
    """What a whole-data rule found about one record; `rejects` False means flag only."""

    rule: str
    detail: str
    evidence: dict
    rejects: bool

    def note(self) -> dict:
        """The shape kept in record.meta["consistency"] (read by the quality report)."""
        note = {"rule": self.rule, "detail": self.detail, "other_id": self.evidence.get("other_id")}
        if "other_answer" in self.evidence:
            note["other_answer"] = self.evidence["other_answer"]
        return note


def compile_pattern(pattern: str, key: str, flags: int = 0) -> re.Pattern:
    try:
        return re.compile(pattern, flags)
    except re.error as error:
        raise OptionError(key, f"{pattern!r} is not a valid regular expression: {error}") from None


def check_json_schema(schema: dict[str, Any]) -> None:
    unknown = sorted(set(schema) - set(SCHEMA_KEYS))
    if unknown:
        raise OptionError("json_schema", f"unsupported key(s) {', '.join(unknown)}: only"
                          f" {', '.join(SCHEMA_KEYS)} are checked")
    types = [schema.get("type")] + [p.get("type") for p in _properties(schema).values()]
    for kind in types:
        if kind is not None and kind not in JSON_TYPES:
            raise OptionError("json_schema", f"unknown type {kind!r} (one of"
                              f" {', '.join(JSON_TYPES)})")
    if not all(isinstance(k, str) for k in schema.get("required", [])):
        raise OptionError("json_schema", "required must be a list of key names")


def _properties(schema: dict[str, Any]) -> dict[str, dict]:
    properties = schema.get("properties", {})
    if not isinstance(properties, dict) or not all(isinstance(p, dict)
                                                   for p in properties.values()):
        raise OptionError("json_schema", "properties must be a table of {type = \"...\"} tables")
    return properties


def schema_errors(value: Any, schema: dict[str, Any]) -> str | None:
    """Why `value` breaks the minimal schema (type, required keys, property types), or None."""
    if not _is_type(value, schema.get("type")):
        return f"expected a JSON {schema['type']}, found {_json_type(value)}"
    required = schema.get("required", [])
    if required and not isinstance(value, dict):
        return f"expected a JSON object with keys {', '.join(required)}, found {_json_type(value)}"
    missing = [key for key in required if key not in value]
    if missing:
        return f"missing required key(s) {', '.join(missing)}"
    for key, rule in schema.get("properties", {}).items():
        if isinstance(value, dict) and key in value and not _is_type(value[key], rule.get("type")):
            return f"key {key!r} should be a JSON {rule['type']}, found {_json_type(value[key])}"
    return None


def _is_type(value: Any, kind: str | None) -> bool:
    if kind is None:
        return True
    if isinstance(value, bool) and kind in ("number", "integer"):
        return False
    return isinstance(value, JSON_TYPES[kind])


def _json_type(value: Any) -> str:
    return next((name for name, kind in JSON_TYPES.items() if type(value) is kind
                 or (isinstance(kind, tuple) and type(value) in kind)), type(value).__name__)


class RecordRules:
    """The checks that judge one record alone: empty response, refusal, declared format."""

    def __init__(self, options: Any):
        self.options = options
        self.answer_pattern = options.answer_pattern and compile_pattern(options.answer_pattern,
                                                                        "answer_pattern")
        self.response_regex = options.response_regex and compile_pattern(options.response_regex,
                                                                        "response_regex")
        builtins = BUILTIN_REFUSALS if options.builtin_refusals else {}
        self.refusals = [(re.compile(p, re.IGNORECASE), phrase) for p, phrase in builtins.items()]
        self.refusals += [(re.compile(p, re.IGNORECASE), "") for p in options.refusal_patterns]

    def check(self, response: str) -> Reject | None:
        text = response.strip()
        if self.options.reject_empty and not _visible(text):
            return Reject("empty-response", _emptiness(response), {"rule": "empty-response",
                                                                  "chars": len(response)})
        if self.options.reject_refusals and self.refusals:
            refused = self._refusal(text)
            if refused:
                return refused
        return self._format(text) if self.options.response_format else None

    def label(self, response: str) -> str | None:
        """The answer's label by `answer_pattern` (its first group), None when it does not match."""
        found = self.answer_pattern.search(response.strip())
        return found.group(1) if found else None

    def _refusal(self, text: str) -> Reject | None:
        text = text.replace("\u2019", "'")
        lowered = text.lower()
        for pattern, phrase in self.refusals:
            if phrase in lowered and (found := pattern.search(text)):
                return Reject("refusal", f"response reads as a refusal: {found.group(0)!r} in"
                              f" {snippet(text[max(found.start() - 20, 0):], 80)!r}",
                              {"rule": "refusal", "pattern": pattern.pattern,
                               "match": found.group(0)})
        return None

    def _format(self, text: str) -> Reject | None:
        kind = self.options.response_format
        problem = {"json": self._json_problem, "regex": self._regex_problem,
                   "labels": self._label_problem}[kind](text)
        if problem is None:
            return None
        return Reject("format-violation", problem, {"rule": "format-violation", "format": kind,
                                                    "response": snippet(text, 200)})

    def _json_problem(self, text: str) -> str | None:
        try:
            value = json.loads(text, parse_constant=_not_json)
        except (ValueError, RecursionError) as error:
            return f"response is not valid JSON ({error}): {snippet(text)!r}"
        problem = schema_errors(value, self.options.json_schema or {})
        return problem and f"response JSON breaks json_schema: {problem}"

    def _regex_problem(self, text: str) -> str | None:
        if self.response_regex.fullmatch(text):
            return None
        return (f"response does not fully match response_regex {self.options.response_regex!r}:"
                f" {snippet(text)!r}")

    def _label_problem(self, text: str) -> str | None:
        label = self.label(text) if self.answer_pattern else text
        if label is None:
            return f"answer_pattern finds no label in the response: {snippet(text)!r}"
        if label.strip() in self.options.labels:
            return None
        return (f"label {snippet(label, 40)!r} is not one of the allowed labels"
                f" ({', '.join(self.options.labels)})")


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _visible(text: str) -> bool:
    """True when something other than whitespace, control or invisible characters remains: a
    response of only "?" or an emoji still counts as an answer."""
    return any(not (c.isspace() or unicodedata.category(c) in ("Cf", "Cc", "Cs")) for c in text)


def _emptiness(response: str) -> str:
    if not response:
        return "response is empty (no assistant text)"
    return f"response has {len(response)} characters but only whitespace or invisible ones"


def shingle_hashes(key: bytes, size: int = 3) -> list[int]:
    """64-bit hashes of the word `size`-shingles of a comparison key (one shingle when shorter)."""
    words = key.split(b" ") if key else []
    spans = [words[i:i + size] for i in range(max(len(words) - size + 1, 1))] if words else []
    return sorted({int.from_bytes(hashlib.blake2b(b" ".join(span), digest_size=8).digest(), "big")
                   for span in spans})


def jaccard(first: Collection[int], second: Collection[int]) -> float:
    if not first or not second:
        return 0.0
    shared = len((first if isinstance(first, set) else set(first)).intersection(second))
    return shared / (len(first) + len(second) - shared)


class SimilarPrompts:
    """Finds prompts whose word 3-shingle Jaccard similarity reaches `threshold`: MinHashLSH
    proposes candidates, the exact Jaccard decides. Prompts join clusters in first-seen order and
    a cluster is named by its first prompt, so the result does not depend on timing."""

    def __init__(self, threshold: float, num_perm: int = 128):
        from datasketch import MinHash, MinHashLSH

        self.threshold, self.num_perm = threshold, num_perm
        # weigh misses over false candidates: every candidate is verified exactly anyway
        self.index = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.2, 0.8))
        # one MinHash reused: building one draws its permutations (~1 ms); the index keeps
        # only the band hashes, not the object
        self.signature = MinHash(num_perm, hashfunc=_low_bits)
        self.shingles: list[array] = []  # compact: a list of ints would cost 5x the memory
        self.contexts = array("Q")
        self.parent: list[int] = []

    def add(self, key: bytes, context: int = 0) -> None:
        """Add the next distinct prompt (numbered from 0 in the order added); prompts only join
        when their `context` (the system prompt's hash, say) is the same."""
        number, shingles = len(self.shingles), array("Q", shingle_hashes(key))
        self.shingles.append(shingles)
        self.contexts.append(context)
        self.parent.append(number)
        if not shingles:
            return
        signature = self.signature
        signature.clear()
        signature.update_batch(shingles)
        mine = set(shingles)
        for other in sorted(self.index.query(signature)):
            if (self.contexts[other] == context and self.cluster(other) != self.cluster(number)
                    and jaccard(mine, self.shingles[other]) >= self.threshold):
                self._join(number, other)
        self.index.insert(number, signature, check_duplication=False)

    def cluster(self, number: int) -> int:
        while self.parent[number] != number:
            self.parent[number] = number = self.parent[self.parent[number]]
        return number

    def similarity(self, first: int, second: int) -> float:
        return jaccard(self.shingles[first], self.shingles[second])

    def _join(self, first: int, second: int) -> None:
        roots = sorted((self.cluster(first), self.cluster(second)))
        self.parent[roots[1]] = roots[0]


def _low_bits(value: int) -> int:
    return value & 0xFFFFFFFF


def length_findings(ledger: Any, options: Any) -> Iterator[tuple[int, Finding]]:
    """Responses whose log length lies over `max_zscore` standard deviations from their source's
    mean: log, because lengths are skewed and one huge response would hide the rest."""
    import numpy as np

    if not options.max_zscore or not len(ledger):
        return
    judged = np.frombuffer(ledger.locally_rejected, dtype=np.int8) == 0
    sources = np.frombuffer(ledger.sources, dtype=np.int64)
    chars = np.frombuffer(ledger.lengths, dtype=np.int64)
    logs = np.log1p(chars)
    count = np.bincount(sources[judged], minlength=len(ledger.source_names))
    mean = np.bincount(sources[judged], logs[judged], len(count)) / np.maximum(count, 1)
    spread = np.bincount(sources[judged], (logs[judged] - mean[sources[judged]]) ** 2, len(count))
    std = np.sqrt(spread / np.maximum(count, 1))
    judged &= (count >= options.min_source_records)[sources] & (std > 1e-9)[sources]
    zscores = np.abs(logs - mean[sources]) / np.where(std > 1e-9, std, 1.0)[sources]
    names = list(ledger.source_names)
    for index in np.flatnonzero(judged & (zscores > options.max_zscore)).tolist():
        source = sources[index]
        yield index, length_outlier(int(chars[index]), float(zscores[index]), names[source],
                                    int(count[source]), math.expm1(mean[source]), options)


def length_outlier(chars: int, zscore: float, source: str, records: int, typical: float,
                   options: Any) -> Finding:
    kind = "long" if chars > typical else "short"
    detail = (f"response is unusually {kind}: {chars:,} characters, log-length z-score"
              f" {zscore:.1f} within source {source!r} (typical {round(typical):,} characters"
              f" over {records:,} records); maximum is {options.max_zscore}")
    return Finding("length-outlier", detail, {
        "rule": "length-outlier", "chars": chars, "zscore": round(zscore, 3),
        "max_zscore": options.max_zscore, "source": source, "source_records": records,
        "typical_chars": round(typical)}, True)


def system_findings(ledger: Any, options: Any) -> Iterator[tuple[int, Finding]]:
    """Records whose system prompt (or its absence) differs from their source's most common one
    (ties: the one seen first)."""
    common: dict[int, tuple[int, int, int]] = {}  # source -> (count, -first index, system)
    totals: dict[int, int] = {}
    for (source, system), (count, first) in ledger.system_counts.items():
        totals[source] = totals.get(source, 0) + count
        common[source] = max(common.get(source, (0, 0, 0)), (count, -first, system))
    if all(count == totals[source] for source, (count, _, _) in common.items()):
        return
    names = list(ledger.source_names)
    for index, (source, system) in enumerate(zip(ledger.sources, ledger.systems)):
        if ledger.locally_rejected[index] or system == common[source][2]:
            continue
        count, first, usual = common[source]
        yield index, Finding("system-prompt-drift", *drift(ledger, index, (usual, -first), (
            count, totals[source], names[source])), options.on_drift == "reject")


def drift(ledger: Any, index: int, usual: tuple[int, int], counts: tuple[int, int, str]):
    (system, first), (count, total, source) = usual, counts
    mine, theirs = ledger.system_snippets[ledger.systems[index]], ledger.system_snippets[system]
    detail = (f"system prompt {_shown_system(mine)} differs from {_shown_system(theirs)}, which"
              f" {count:,} of {total:,} records of source {source!r} use"
              f" (e.g. {ledger.ids[first]})")
    return detail, {"rule": "system-prompt-drift", "other_id": ledger.ids[first],
                    "system": mine or None, "other_system": theirs or None,
                    "common_count": count, "source_records": total, "source": source}


def _shown_system(text: str) -> str:
    return repr(snippet(text)) if text else "(none)"
