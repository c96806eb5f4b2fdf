"""Language detectors: what the `language` stage asks which language a text is in.

A plugin adds a faster or better detector with the `register_language_detectors` hook; a recipe
picks one with the stage's `detector` option.
"""

from __future__ import annotations

from typing import ClassVar


class LanguageDetector:
    """Subclasses set `name` and implement `detect`. One instance is made per process, and
    `detect` may be called from several processes at once (one instance each)."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    languages: ClassVar[tuple[str, ...]] = ()
    """The codes it can return, when known: recipes' `keep` lists are checked against them."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def consider(self, languages: list[str]) -> None:
        """Called once, before any `detect`, with the languages the stage keeps: a detector
        that weighs only some of its languages must weigh these too. The default does
        nothing."""

    def detect(self, text: str) -> list[tuple[str, float]]:
        """The likely languages of `text` as (ISO 639-1 code, probability), most likely first;
        an empty list when the text has nothing to judge (only digits or punctuation, say).
        Must be deterministic for a given seed."""
        raise NotImplementedError

    def detect_many(self, texts: list[str]) -> list[list[tuple[str, float]]]:
        """`detect` for each text, in order. Override it when a batch is cheaper than one text at
        a time; a text's result must not depend on the other texts of the batch."""
        return [self.detect(text) for text in texts]
