"""The `language` stage: keep records whose prompt and response are in the languages you want,
as judged by a language detector (`langdetect` is built in; plugins add others), and write what
was detected into meta["language"]."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from curate import hookimpl
from curate.errors import CurateError, did_you_mean
from curate.language import LanguageDetector
from curate.options import OptionError, option
from curate.records import Record
from curate.stages import Filter, Reject

PARTS = ("prompt", "response")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[a-z]{2,4})?$")
CODE = re.compile(r"(```|~~~).*?(?:\1|\Z)|`[^`\n]*`", re.DOTALL)
"""Markdown code: fenced blocks (an unclosed fence runs to the end) and inline spans."""
INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xad\u061c\u180e\u200b-\u200f"
                       "\u202a-\u202e\u2060-\u206f\ufeff\U000e0000-\U000e007f]")
"""Control characters and invisible format characters (zero-width, direction marks): langdetect
reads a text of nothing but zero-width spaces as Latvian."""


@hookimpl
def register_stages(register):
    register(LanguageFilter)


@hookimpl
def register_language_detectors(register):
    register(LangdetectDetector)
    register(LangidDetector)


class LangdetectDetector(LanguageDetector):
    """langdetect (a port of Google's language-detection), seeded so that a text's result
    depends only on the text and the seed, never on the order of texts or on the process."""

    name = "langdetect"
    version = "1"
    languages: ClassVar[tuple[str, ...]] = (
        "af", "ar", "bg", "bn", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et", "fa", "fi",
        "fr", "gu", "he", "hi", "hr", "hu", "id", "it", "ja", "kn", "ko", "lt", "lv", "mk", "ml",
        "mr", "ne", "nl", "no", "pa", "pl", "pt", "ro", "ru", "sk", "sl", "so", "sq", "sv", "sw",
        "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "zh-cn", "zh-tw")
    """The codes langdetect 1.0.9 knows (its `profiles` folder)."""
    max_chars: ClassVar[int] = 20_000
    """langdetect reads only the first 10,000 characters left after it removes URLs and e-mail
    addresses; cutting a 1 MB text before that cleaning keeps it from costing half a second."""

    def detect(self, text: str) -> list[tuple[str, float]]:
        from langdetect.lang_detect_exception import ErrorCode, LangDetectException

        detector = _langdetect_factory().create()
        # The seed is set on each detector rather than on the shared factory (the class
        # attribute `DetectorFactory.seed`) so that detectors of different seeds can coexist.
        detector.seed = self.seed
        detector.append(text[:self.max_chars])
        try:
            found = detector.get_probabilities()
        except LangDetectException as error:
            if error.get_code() != ErrorCode.CantDetectError:
                raise
            return []  # no letters langdetect knows: nothing to judge
        return [(language.lang, language.prob) for language in found]


class LangidDetector(LanguageDetector):
    """py3langid (langid.py's naive Bayes model, bundled): no randomness, so deterministic for
    any seed, and about ten times faster than langdetect on a few hundred characters."""

    name = "langid"
    version = "2"

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        _langid_scorer()  # loaded now, so that forked worker processes share it

    def detect(self, text: str) -> list[tuple[str, float]]:
        return self.detect_many([text])[0]

    def detect_many(self, texts: list[str]) -> list[list[tuple[str, float]]]:
        judged = [index for index, text in enumerate(texts) if any(map(str.isalpha, text))]
        found: list[list[tuple[str, float]]] = [[] for _ in texts]
        for index, verdict in zip(judged, _langid_scorer().rank([texts[i] for i in judged])):
            found[index] = verdict
        return found


@functools.cache
def _langid_scorer():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    from curate.plugins.langid_batch import BatchScorer

    return BatchScorer(LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True))


@functools.cache
def _langdetect_factory():
    """langdetect's profiles, loaded once per process (0.8 s, 60 MB) in name order: langdetect's
    own loader takes them in directory order, which varies between file systems and would
    change the order of its floating-point sums."""
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    profiles = []
    for name in sorted(os.listdir(PROFILES_DIRECTORY)):
        with open(os.path.join(PROFILES_DIRECTORY, name), encoding="utf-8") as file:
            profiles.append(file.read())
    factory = DetectorFactory()
    factory.load_json_profile(profiles)
    return factory


@dataclass
class LanguageOptions:
    keep: list[str] = option(["en"], help="ISO 639-1 codes of the languages kept, e.g."
                                          " [\"en\", \"de\"]")
    judge: Literal["both", "prompt", "response"] = option(
        "both", help="which parts are judged; each is judged on its own")
    min_probability: float = option(0.8, min=0.0, max=1.0,
                                    help="how sure the detector must be of a verdict")
    keep_uncertain: bool = option(False, help="keep a part the detector is unsure about"
                                              " instead of rejecting it as language-uncertain")
    ignore_code: bool = option(True, help="leave Markdown code blocks and `code` spans out of"
                                          " what is judged: detectors read code as a language")
    min_chars: int = option(20, min=0, help="texts with fewer letters than this are not judged")
    judged_chars: int = option(1000, min=0, help="judge only the first N characters of a text"
                                                 " (0: all): a language shows in a paragraph,"
                                                 " and detectors cost time per character")
    judge_short: bool = option(False, help="judge texts shorter than min_chars too")
    reject_mismatch: bool = option(True, help="reject a prompt and a response detected in"
                                              " different languages")
    detector: str = option("langdetect", help="the language detector (see `curate plugins`)")


class LanguageFilter(Filter):
    name = "language"
    Options = LanguageOptions
    version = "4"
    parallel = True

    @classmethod
    def fingerprint_extra(cls, options: LanguageOptions) -> list:
        from curate.pluginmanager import get_host

        return get_host().identity("language detector", options.detector)

    @classmethod
    def check_options(cls, options: LanguageOptions) -> None:
        try:
            detector = detector_class(options.detector)
        except CurateError as error:
            raise OptionError("detector", str(error)) from None
        if not options.keep:
            raise OptionError("keep", "list at least one language to keep, e.g. keep = [\"en\"]")
        for index, code in enumerate(options.keep):
            check_language_code(code, f"keep[{index}]", getattr(detector, "languages", ()))

    def __init__(self, options: LanguageOptions, context):
        super().__init__(options, context)
        # Made here, before the worker processes fork, so that they share what it loaded.
        self.detector = detector_class(options.detector)(context.seed)
        self.parts = PARTS if options.judge == "both" else (options.judge,)

    def check(self, record: Record) -> Reject | None:
        return self.check_batch([record])[0]

    def check_batch(self, records: list[Record]) -> list[Reject | None]:
        judged = [(number, part, self.judged_text(getattr(record, part)))
                  for number, record in enumerate(records) for part in self.parts]
        verdicts = iter(self.detector.detect_many([text for *_, text in judged if text]))
        found: list[dict] = [dict.fromkeys(PARTS) for _ in records]
        for number, part, text in judged:
            if text:
                found[number][part] = sorted(next(verdicts), key=lambda pair: -pair[1]) or None
        return [self.verdict(record, parts) for record, parts in zip(records, found)]

    def judged_text(self, text: str) -> str | None:
        """What the detector reads of a text, or None when the text is not judged."""
        if self.options.ignore_code:
            text = CODE.sub(" ", text)
        text = INVISIBLE.sub("", text).strip()
        if self.options.judged_chars:
            text = text[:self.options.judged_chars]
        if not self.options.judge_short and count_letters(text) < self.options.min_chars:
            return None
        return text or None

    def verdict(self, record: Record, found: dict) -> Reject | None:
        """found: the detector's verdict per part, most likely first, None when not judged."""
        record.meta["language"] = {part: summary(found[part]) for part in PARTS}
        for part in self.parts:
            verdict = self.judge_part(part, found[part])
            if verdict is not None:
                return verdict
        return self.check_mismatch(found["prompt"], found["response"])

    def judge_part(self, part: str, found: list[tuple[str, float]] | None) -> Reject | None:
        if found is None:
            return None
        options = self.options
        code, probability = found[0]
        evidence = {"part": part, "language": code, "probability": rounded(probability),
                    "keep": options.keep}
        if code in options.keep:
            return None  # the likeliest language is a kept one, however short the text
        if probability >= options.min_probability:
            return Reject("wrong-language", f"{part} is in {code} (p={probability:.2f}), kept"
                          f" languages: {', '.join(options.keep)}", evidence)
        kept = sum(p for c, p in found if c in options.keep)
        if kept >= options.min_probability or options.keep_uncertain:
            return None
        return self.uncertain(part, found, kept, evidence)

    def uncertain(self, part: str, found: list[tuple[str, float]], kept: float,
                  evidence: dict) -> Reject:
        least = self.options.min_probability
        candidates = ", ".join(f"{c} (p={p:.2f})" for c, p in found[:3])
        return Reject("language-uncertain", f"{part} language is uncertain: {candidates}; the"
                      f" kept languages ({', '.join(self.options.keep)}) reach p={kept:.2f},"
                      f" min_probability is {least:.2f}",
                      {**evidence, "kept_probability": rounded(kept), "min_probability": least,
                       "candidates": [[c, rounded(p)] for c, p in found]})

    def check_mismatch(self, prompt, response) -> Reject | None:
        if not (self.options.reject_mismatch and prompt and response):
            return None
        (asked, asked_p), (answered, answered_p) = prompt[0], response[0]
        least = self.options.min_probability
        if asked == answered or asked_p < least or answered_p < least:
            return None
        return Reject("language-mismatch", f"prompt is in {asked} (p={asked_p:.2f}) but response"
                      f" is in {answered} (p={answered_p:.2f}); reject_mismatch = false keeps such"
                      f" pairs",
                      {"part": "response", "language": answered,
                       "probability": rounded(answered_p), "keep": self.options.keep,
                       "prompt_language": asked, "prompt_probability": rounded(asked_p)})


def detector_class(name: str) -> type[LanguageDetector]:
    from curate.pluginmanager import get_host

    return get_host().get("language detector", name)


def check_language_code(code: str, key: str, known: tuple[str, ...]) -> None:
    if known and code not in known:
        hint = (f": did you mean '{code.lower()}'?" if code.lower() in known
                else did_you_mean(code, known))
        listed = "" if hint else f" (it knows: {', '.join(known)})"
        raise OptionError(key, f"the detector does not know language '{code}'{hint}{listed}")
    if not LANGUAGE_CODE.match(code):
        raise OptionError(key, f"'{code}' is not a language code: write ISO 639-1 codes such"
                               f" as 'en' or 'pt'")


def count_letters(text: str) -> int:
    """Letters of any script; digits, punctuation, emoji and spaces tell no language."""
    return sum(map(str.isalpha, text))


def summary(found: list[tuple[str, float]] | None) -> dict | None:
    """What meta["language"] holds for one part (the quality report reads this shape)."""
    if found is None:
        return None
    code, probability = found[0]
    return {"code": code, "probability": rounded(probability)}


def rounded(probability: float) -> float:
    return round(float(probability), 4)
