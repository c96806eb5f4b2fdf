"""The `consistency` rules that judge one record alone: an empty response, a boilerplate refusal,
and a response that breaks the declared format. A record rejected here takes part in nothing
else (no prompt group, no source statistics)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from curate.stages import Reject

from curate.plugins.consistency_formats import ResponseFormat, compile_pattern
from curate.plugins.consistency_refusals import REFUSAL_MAX_WORDS, builtin_refusal
from curate.plugins.consistency_text import snippet


class RecordRules:
    """The checks that judge one record alone: empty response, refusal, declared format."""

    def __init__(self, options: Any):
        self.options = options
        self.answer_pattern = options.answer_pattern and compile_pattern(
            options.answer_pattern, "answer_pattern", re.IGNORECASE)
        self.format = options.response_format and ResponseFormat(
            options, self.label if self.answer_pattern else None)
        self.refusals = [re.compile(p, re.IGNORECASE) for p in options.refusal_patterns]

    def check(self, response: str) -> Reject | None:
        text = response.strip()
        if self.options.reject_empty and not _visible(text):
            return Reject("empty-response", _emptiness(response), {"rule": "empty-response",
                                                                  "chars": len(response)})
        if self.options.reject_refusals:
            refused = self._refusal(text)
            if refused:
                return refused
        return self.format.check(text) if self.format else None

    def label(self, response: str) -> str | None:
        """The answer's label by `answer_pattern` (its first group), None when it does not match."""
        found = self.answer_pattern.search(response.strip())
        return found.group(1) if found else None

    def _refusal(self, text: str) -> Reject | None:
        text = text.replace("\u2019", "'")
        if self.options.builtin_refusals and (found := builtin_refusal(text)):
            return Reject("refusal", f"response reads as a refusal: it opens with {found.match!r}"
                          f" and has {found.words} words with no turn to help (built-in"
                          f" refusals: at most {REFUSAL_MAX_WORDS} words)",
                          {"rule": "refusal", "pattern": "built-in", "match": found.match,
                           "words": found.words, "max_words": REFUSAL_MAX_WORDS})
        for pattern in self.refusals:
            if found := pattern.search(text):
                return Reject("refusal", f"response reads as a refusal: {found.group(0)!r} in"
                              f" {snippet(text[max(found.start() - 20, 0):], 80)!r}",
                              {"rule": "refusal", "pattern": pattern.pattern,
                               "match": found.group(0)})
        return None


def _visible(text: str) -> bool:
    """True when something other than whitespace, control or invisible characters remains: a
    response of only "?" or an emoji still counts as an answer."""
    return any(not (c.isspace() or unicodedata.category(c) in ("Cf", "Cc", "Cs")) for c in text)


def _emptiness(response: str) -> str:
    if not response:
        return "response is empty (no assistant text)"
    return f"response has {len(response)} characters but only whitespace or invisible ones"
