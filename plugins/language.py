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
JUDGED = (*PARTS, "conversation")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[a-z]{2,4})?$")
CODE = re.compile(r"(```|~~~).*?(?:\1|\Z)|`[^`\n]*`", re.DOTALL)
"""Markdown code: fenced blocks (an unclosed fence runs to the end) and inline spans."""
CODE_SYMBOLS = str.maketrans("", "", "(){}[]<>;=_\\/|&$#*+%^~@")
"""A line whose non-space characters are at least 10% of these, or that is indented by a tab or
four spaces, is code (an unfenced answer): langdetect reads `def merge(a, b):` as Romanian."""
WIDE_LETTERS = re.compile("[\u1100-\u11ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3"
                          "\uf900-\ufaff\U00020000-\U0003ffff]")
"""Hangul, kana and Chinese characters."""
CONVERSATION_LETTERS = 40
"""Fewest letters a record's prompt and response need between them to be judged together."""
DETECTOR_SEED = 0
"""The seed detectors are made with: fixed rather than the run's, so that changing `[run] seed`
(which reshuffles the split) never changes which records the stage keeps."""
CLEANED_PER_JUDGED = 8
"""Characters of a text cleaned (code lines and invisible ones dropped) per character judged."""
INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xad\u061c\u180e\u200b-\u200f"
                       "\u202a-\u202e\u2060-\u206f\ufe00-\ufe0f\ufeff\U000e0000-\U000e007f]")
"""Control characters and invisible format characters (zero-width, direction marks, variation
selectors): langdetect reads a text of nothing but zero-width spaces as Latvian."""


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
    any seed, and about ten times faster than langdetect on a few hundred characters.

    It weighs only `candidates` and the kept languages: given all of its 140 languages, it read
    plain one-line English as Nigerian Pidgin, Kikuyu or Bikol, and spread a short text's
    probability so thin that no language reached `min_probability`."""

    name = "langid"
    version = "3"
    languages: ClassVar[tuple[str, ...]] = (
        "ace", "af", "am", "an", "ar", "ary", "arz", "as", "az", "ba", "bcl", "be", "bg", "bn",
        "br", "bs", "ca", "crh", "cs", "cy", "da", "de", "dz", "el", "en", "eo", "es", "et", "eu",
        "ext", "fa", "fi", "fo", "fr", "fuv", "fy", "ga", "gcf", "gcr", "gd", "gl", "gom", "grc",
        "gu", "gug", "guw", "ha", "hbo", "he", "hi", "hr", "ht", "hu", "hy", "id", "ig", "is",
        "it", "ja", "jv", "ka", "kab", "kik", "kk", "km", "kn", "ko", "ku", "ky", "la", "lb", "lg",
        "lij", "ln", "lo", "lt", "ltg", "lv", "mg", "mk", "ml", "mn", "mr", "ms", "mt", "my", "ne",
        "nl", "nn", "no", "nso", "oc", "om", "or", "pa", "pcm", "pl", "ps", "pt", "qu", "ro", "ru",
        "rw", "sa", "sdh", "se", "si", "sk", "sl", "sn", "so", "sq", "sr", "st", "sv", "sw", "ta",
        "te", "tg", "th", "tk", "tl", "tr", "tt", "ug", "uk", "ur", "uz", "uzs", "vec", "vi", "vo",
        "wa", "wuu", "xh", "yo", "yue", "zh", "zu", "zxx")
    """The codes of py3langid 0.4's model (a test checks them): Chinese is "zh"."""
    candidates: ClassVar[tuple[str, ...]] = tuple(sorted(
        {code.split("-")[0] for code in LangdetectDetector.languages}))
    """The languages weighed besides the kept ones: the 54 widely written languages that
    langdetect knows."""

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.weighed = self.candidates
        _langid_scorer(self.weighed)  # loaded now, so that forked worker processes share it

    def consider(self, languages: list[str]) -> None:
        self.weighed = tuple(sorted({*self.candidates, *languages}))
        _langid_scorer(self.weighed)

    def detect(self, text: str) -> list[tuple[str, float]]:
        return self.detect_many([text])[0]

    def detect_many(self, texts: list[str]) -> list[list[tuple[str, float]]]:
        judged = [index for index, text in enumerate(texts) if any(map(str.isalpha, text))]
        found: list[list[tuple[str, float]]] = [[] for _ in texts]
        scorer = _langid_scorer(self.weighed)
        for index, verdict in zip(judged, scorer.rank([texts[i] for i in judged])):
            found[index] = verdict
        return found


@functools.cache
def _langid_scorer(languages: tuple[str, ...]):
    from curate.plugins.langid_batch import BatchScorer

    return BatchScorer(_langid_identifier(), languages)


@functools.cache
def _langid_identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


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
    keep_uncertain: bool = option(True, help="keep a part the detector is unsure about"
                                             " (false: reject it as language-uncertain)")
    ignore_code: bool = option(True, help="leave code (Markdown code, `code` spans, and lines"
                                          " that look like code) out of what is judged:"
                                          " detectors read code as a language")
    min_chars: int = option(40, min=0, help="a part with fewer letters than this is not judged"
                                            " alone: when no part is long enough, the prompt"
                                            " and response are judged together")
    judged_chars: int = option(1000, min=0, help="judge only the first N characters of a text"
                                                 " (0: all): a language shows in a paragraph,"
                                                 " and detectors cost time per character")
    judge_short: bool = option(False, help="judge parts shorter than min_chars alone too")
    reject_mismatch: bool = option(True, help="reject a prompt and a response detected in"
                                              " different languages")
    detector: str = option("langdetect", help="the language detector (see `curate plugins`)")


class LanguageFilter(Filter):
    name = "language"
    Options = LanguageOptions
    version = "5"
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
            check_language_code(code, f"keep[{index}]", detector)

    def __init__(self, options: LanguageOptions, context):
        super().__init__(options, context)
        # Made here, before the worker processes fork, so that they share what it loaded.
        self.detector = detector_class(options.detector)(DETECTOR_SEED)
        self.detector.consider(list(options.keep))
        self.parts = PARTS if options.judge == "both" else (options.judge,)

    def check(self, record: Record) -> Reject | None:
        return self.check_batch([record])[0]

    def check_batch(self, records: list[Record]) -> list[Reject | None]:
        plans = [self.plan(record) for record in records]
        verdicts = iter(self.detector.detect_many([text for plan in plans
                                                   for text in plan.values()]))
        results = []
        for record, plan in zip(records, plans):
            found: dict = dict.fromkeys(JUDGED)
            for key in plan:
                found[key] = sorted(next(verdicts), key=lambda pair: -pair[1]) or None
            results.append(self.verdict(record, found))
        return results

    def plan(self, record: Record) -> dict[str, str]:
        """What is judged of a record: {"prompt" | "response" | "conversation": text}. A part
        with at least `min_chars` letters is judged alone. Detectors misread short texts (one
        English line in 14 of 20-39 letters), so a shorter part is judged only when no part is
        judged alone and both are judged: then together with the other part."""
        cleaned = {part: self.cut(self.cleaned(getattr(record, part))) for part in PARTS}
        plan, short = {}, False
        for part in self.parts:
            letters = count_letters(cleaned[part])
            if letters >= self.options.min_chars or (self.options.judge_short and letters):
                plan[part] = cleaned[part]
            elif letters:
                short = True
        if short and not plan and self.options.judge == "both":
            whole = "\n\n".join(text for text in cleaned.values() if text)
            if count_letters(whole) >= CONVERSATION_LETTERS:
                plan["conversation"] = self.cut(whole)
        return plan

    def cleaned(self, text: str) -> str:
        """A text as it is judged: without code (with `ignore_code`) or invisible characters.
        With `judged_chars`, only a prefix of it is cleaned: enough for the judged part unless
        nearly all of it is code, and a long text costs no more than a short one."""
        if self.options.judged_chars:
            text = text[:CLEANED_PER_JUDGED * self.options.judged_chars]
        if self.options.ignore_code:
            text = without_code_lines(CODE.sub(" ", text))
        return INVISIBLE.sub("", text).strip()

    def cut(self, text: str) -> str:
        return text[:self.options.judged_chars] if self.options.judged_chars else text

    def verdict(self, record: Record, found: dict) -> Reject | None:
        """found: the detector's verdict per part, most likely first, None when not judged."""
        record.meta["language"] = {key: summary(found[key]) for key in JUDGED}
        for key in JUDGED:
            verdict = self.judge_part(key, found[key])
            if verdict is not None:
                return verdict
        return self.check_mismatch(found["prompt"], found["response"])

    def judge_part(self, part: str, found: list[tuple[str, float]] | None) -> Reject | None:
        if found is None:
            return None
        options = self.options
        least = options.min_probability
        code, probability = found[0]
        evidence = {"part": part, "language": code, "probability": rounded(probability),
                    "keep": options.keep}
        if code in options.keep:
            return None  # the likeliest language is a kept one, however short the text
        kept = sum(p for c, p in found if c in options.keep)
        other = sum(p for c, p in found if c not in options.keep)
        where = self.where(part)
        if probability >= least:
            return Reject("wrong-language", f"{where} is in {code} (p={probability:.2f}), kept"
                          f" languages: {', '.join(options.keep)}", evidence)
        if other >= least:
            return Reject("wrong-language", f"{where} is in {candidates(found, options.keep)},"
                          f" p={other:.2f} together; kept languages: {', '.join(options.keep)}"
                          f" (p={kept:.2f})",
                          {**evidence, "other_probability": rounded(other),
                           "candidates": [[c, rounded(p)] for c, p in found]})
        if kept >= least or options.keep_uncertain:
            return None
        return self.uncertain(where, found, kept, evidence)

    def where(self, part: str) -> str:
        if part != "conversation":
            return part
        return (f"conversation (prompt and response judged together: no part has"
                f" min_chars = {self.options.min_chars} letters)")

    def uncertain(self, where: str, found: list[tuple[str, float]], kept: float,
                  evidence: dict) -> Reject:
        least = self.options.min_probability
        listed = ", ".join(f"{c} (p={p:.2f})" for c, p in found[:3])
        return Reject("language-uncertain", f"{where} language is uncertain: {listed}; the"
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


def check_language_code(code: str, key: str, detector: type[LanguageDetector]) -> None:
    known = detector.languages
    if known and code not in known:
        hint = spelling_hint(code, detector)
        listed = "" if hint else f" (it knows: {', '.join(known)})"
        raise OptionError(key, f"the detector does not know language '{code}'{hint}{listed}")
    if not LANGUAGE_CODE.match(code):
        raise OptionError(key, f"'{code}' is not a language code: write ISO 639-1 codes such"
                               f" as 'en' or 'pt'")


def spelling_hint(code: str, detector: type[LanguageDetector]) -> str:
    """How the detector spells a code it does not know as written ("zh-cn" for langid)."""
    known, lower = detector.languages, code.lower()
    if lower in known:
        return f": did you mean '{lower}'?"
    base = lower.split("-")[0]
    variants = [c for c in known if c.split("-")[0] == base and c != lower]
    if variants:
        spelled = " and ".join(f"'{c}'" for c in variants)
        return (f": did you mean {' or '.join(repr(c) for c in variants)}? ({detector.name}"
                f" writes it as {spelled})")
    # langid's "zxx" (no linguistic content) is no language to suggest for a misspelling
    return did_you_mean(code, [c for c in known if c != "zxx"])


def without_code_lines(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not looks_like_code(line))


def looks_like_code(line: str) -> bool:
    if line.startswith(("\t", "    ")):
        return True
    visible = line.replace(" ", "")
    symbols = len(visible) - len(visible.translate(CODE_SYMBOLS))
    return bool(visible) and 10 * symbols >= len(visible)


def candidates(found: list[tuple[str, float]], keep: list[str]) -> str:
    """"ru (p=0.57), bg (p=0.29) or uk (p=0.14)": the languages found that are not kept."""
    named = [f"{c} (p={p:.2f})" for c, p in found if c not in keep]
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"


def count_letters(text: str) -> int:
    """Letters of any script; digits, punctuation, emoji and spaces tell no language. A Chinese,
    Japanese or Korean letter counts as 3, as it stands for a syllable or a word: the sentence
    "中国的首都是北京。" (8 letters) counts 24."""
    return sum(map(str.isalpha, text)) + 2 * len(WIDE_LETTERS.findall(text))


def summary(found: list[tuple[str, float]] | None) -> dict | None:
    """What meta["language"] holds for one part (the quality report reads this shape)."""
    if found is None:
        return None
    code, probability = found[0]
    return {"code": code, "probability": rounded(probability)}


def rounded(probability: float) -> float:
    return round(float(probability), 4)
