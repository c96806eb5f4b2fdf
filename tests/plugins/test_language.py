"""The `language` stage and the built-in `langdetect` detector, on real sentences judged by the
real langdetect: what is kept, what is rejected and why, what lands in meta["language"], and
that the verdicts are the same bytes whatever the number of worker processes."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curate import hookimpl
from curate.language import LanguageDetector
from curate.plugins.language import (LangdetectDetector, LangidDetector, LanguageFilter,
                                     LanguageOptions, looks_like_code)
from curate.records import Record, Rejection
from curate.stages import StageContext
from curate.testing import invoke_cli, jsonl, output_digests

SENTENCES = {
    "en": "The committee reviewed the proposal carefully before voting on the new budget.",
    "de": "Der Ausschuss hat den Vorschlag sorgfältig geprüft, bevor er abgestimmt hat.",
    "es": "El comité revisó la propuesta con cuidado antes de votar el nuevo presupuesto.",
    "fr": "Le comité a examiné la proposition avec soin avant de voter le nouveau budget.",
    "pt": "O comitê analisou a proposta com cuidado antes de votar o novo orçamento.",
}
QUESTIONS = {
    "en": "What did the committee do before the vote on the budget?",
    "de": "Was hat der Ausschuss vor der Abstimmung über den Haushalt gemacht?",
    "es": "¿Qué hizo el comité antes de la votación del presupuesto?",
    "fr": "Qu'a fait le comité avant le vote sur le budget de l'année?",
    "pt": "O que o comitê fez antes da votação do orçamento deste ano?",
}
# langdetect with seed 0 reads this as fr (p=0.57) and en (p=0.43)
MIXED = "We love this city. Nous adorons cette ville et ses rues."


def pairs_jsonl(*pairs: tuple[str, str]) -> str:
    return jsonl(*({"prompt": p, "completion": c} for p, c in pairs), ensure_ascii=False)


def recipe(options: str = "", run: str = "") -> str:
    return f"""
        [run]
        {run}

        [[sources]]
        name = "data"
        use = "jsonl"
        path = "data.jsonl"

        [[stages]]
        use = "language"
        {options}

        [split]
        eval_fraction = 0.0
        """


def run_language(run_recipe, pairs, options: str = "", run: str = ""):
    result = run_recipe(recipe(options, run), files={"data.jsonl": pairs_jsonl(*pairs)})
    assert result.exit_code == 0, result.output
    return result


def verdicts(result) -> dict[str, str]:
    """Response text -> "kept" or the rejection's reason."""
    kept = {r["messages"][-1]["content"]: "kept" for r in result.kept("language")}
    rejected = {r["messages"][-1]["content"]: r["reason"] for r in result.rejected("language")}
    return {**kept, **rejected}


def test_only_the_kept_language_passes(run_recipe):
    result = run_language(run_recipe, [(QUESTIONS[c], SENTENCES[c]) for c in SENTENCES])
    assert verdicts(result) == {SENTENCES["en"]: "kept", **{
        SENTENCES[c]: "wrong-language" for c in ("de", "es", "fr", "pt")}}
    details = {r["messages"][-1]["content"]: r["detail"] for r in result.rejected("language")}
    assert details[SENTENCES["de"]] == "prompt is in de (p=1.00), kept languages: en"
    evidence = json.loads(result.rejected("language")[0]["evidence"])
    assert evidence == {"part": "prompt", "language": "de", "probability": 1.0, "keep": ["en"]}


@pytest.mark.parametrize("keep", [["de", "fr"], ["es", "pt"]])
def test_several_languages_can_be_kept(run_recipe, keep):
    result = run_language(run_recipe, [(QUESTIONS[c], SENTENCES[c]) for c in SENTENCES],
                          f"keep = {json.dumps(keep)}")
    assert {text for text, verdict in verdicts(result).items() if verdict == "kept"} == {
        SENTENCES[c] for c in keep}


def test_a_response_in_another_kept_language_is_a_mismatch(run_recipe):
    pairs = [(QUESTIONS["en"], SENTENCES["de"]), (QUESTIONS["de"], SENTENCES["de"])]
    result = run_language(run_recipe, pairs, 'keep = ["en", "de"]')
    [rejected] = result.rejected("language")
    assert rejected["reason"] == "language-mismatch"
    assert rejected["detail"].startswith("prompt is in en (p=1.00) but response is in de"
                                         " (p=1.00)")
    assert json.loads(rejected["evidence"]) == {
        "part": "response", "language": "de", "probability": 1.0, "keep": ["en", "de"],
        "prompt_language": "en", "prompt_probability": 1.0}
    allowed = run_language(run_recipe, pairs, 'keep = ["en", "de"]\nreject_mismatch = false')
    assert set(verdicts(allowed).values()) == {"kept"}


def test_a_wrong_response_is_rejected_even_when_the_prompt_is_right(run_recipe):
    result = run_language(run_recipe, [(QUESTIONS["en"], SENTENCES["pt"])])
    [rejected] = result.rejected("language")
    assert rejected["detail"] == "response is in pt (p=1.00), kept languages: en"


def prompt_languages(rows) -> dict[str, str | None]:
    return {r["messages"][0]["content"]: (json.loads(r["meta"])["language"]["prompt"] or {}).get(
        "code") for r in rows}


def test_short_texts_are_not_judged_unless_asked(run_recipe):
    digits = "1234567890 1234567890 !?"  # long, but no letters: nothing to judge
    pairs = [("OK", SENTENCES["en"]), ("Thanks!", SENTENCES["en"]), (digits, SENTENCES["en"])]
    result = run_language(run_recipe, pairs)
    assert prompt_languages(result.kept("language")) == {"OK": None, "Thanks!": None,
                                                         digits: None}
    judged = run_language(run_recipe, pairs, "judge_short = true")
    [rejected] = judged.rejected("language")  # langdetect reads "OK" as Portuguese
    assert (rejected["messages"][0]["content"], rejected["reason"]) == ("OK", "wrong-language")
    assert prompt_languages(judged.kept("language")) == {"Thanks!": "en", digits: None}


def test_min_chars_sets_what_is_short(run_recipe):
    result = run_language(run_recipe, [("Danke schön", SENTENCES["en"])], "min_chars = 5")
    assert [r["reason"] for r in result.rejected("language")] == ["wrong-language"]


def test_an_unsure_verdict_is_kept_or_language_uncertain(run_recipe):
    assert verdicts(run_language(run_recipe, [(QUESTIONS["en"], MIXED)])) == {MIXED: "kept"}
    result = run_language(run_recipe, [(QUESTIONS["en"], MIXED)], "keep_uncertain = false")
    [rejected] = result.rejected("language")
    assert rejected["reason"] == "language-uncertain"
    assert rejected["detail"] == ("response language is uncertain: fr (p=0.57), en (p=0.43);"
                                  " the kept languages (en) reach p=0.43, min_probability is"
                                  " 0.80")
    evidence = json.loads(rejected["evidence"])
    assert evidence["candidates"] == [["fr", 0.5714], ["en", 0.4286]]
    assert evidence["kept_probability"] == 0.4286 and evidence["min_probability"] == 0.8


@pytest.mark.parametrize("options, verdict", [
    ("min_probability = 0.5", "wrong-language"),   # sure enough that it is French
    ("keep_uncertain = false", "language-uncertain"),
    ('keep = ["en", "fr"]', "kept"),                # kept languages together reach p=1.0
    ('keep = ["en", "fr"]\nmin_probability = 1.0', "kept"),  # the likeliest one is kept
    ('keep = ["de"]\nmin_probability = 0.9\njudge = "response"', "wrong-language"),  # not de
])
def test_min_probability_decides_unsure_verdicts(run_recipe, options, verdict):
    result = run_language(run_recipe, [(QUESTIONS["en"], MIXED)], options)
    assert verdicts(result) == {MIXED: verdict}


def test_a_text_surely_in_no_kept_language_is_wrong_language(run_recipe):
    result = run_language(run_recipe, [(QUESTIONS["en"], MIXED)],
                          'keep = ["de"]\nmin_probability = 0.9\njudge = "response"')
    [rejected] = result.rejected("language")
    assert rejected["detail"] == ("response is in fr (p=0.57) or en (p=0.43), p=1.00 together;"
                                  " kept languages: de (p=0.00)")
    evidence = json.loads(rejected["evidence"])
    assert evidence["other_probability"] == 1.0
    assert evidence["candidates"] == [["fr", 0.5714], ["en", 0.4286]]


def test_meta_holds_each_part_language_in_the_report_shape(run_recipe):
    pairs = [(QUESTIONS["en"], SENTENCES["en"]), ("Hi", SENTENCES["en"]),
             (QUESTIONS["fr"], SENTENCES["fr"])]
    result = run_language(run_recipe, pairs)
    english = {"code": "en", "probability": 1.0}
    assert [json.loads(r["meta"])["language"] for r in result.kept("language")] == [
        {"prompt": english, "response": english, "conversation": None},
        {"prompt": None, "response": english, "conversation": None}]
    [rejected] = result.rejected("language")
    french = {"code": "fr", "probability": 1.0}
    assert json.loads(rejected["meta"])["language"] == {"prompt": french, "response": french,
                                                        "conversation": None}


def test_judge_response_leaves_the_prompt_alone(run_recipe):
    result = run_language(run_recipe, [(QUESTIONS["de"], SENTENCES["en"])], 'judge = "response"')
    [kept] = result.kept("language")
    assert json.loads(kept["meta"])["language"] == {
        "prompt": None, "response": {"code": "en", "probability": 1.0}, "conversation": None}


UNFENCED = "def merge(a, b):\n    result = dict(a)\n    result.update(b)\n    return result"
"""langdetect reads it as Romanian (p=1.00)."""


def test_code_is_left_out_of_what_is_judged(run_recipe):
    fenced = f"```python\n{UNFENCED}\n```"
    explained = f"Here is the function:\n{fenced}\nIt returns `result`, both merged."
    pairs = [(QUESTIONS["en"], fenced), (QUESTIONS["en"], explained),
             (QUESTIONS["en"], UNFENCED)]
    result = run_language(run_recipe, pairs)
    assert verdicts(result) == {fenced: "kept", explained: "kept", UNFENCED: "kept"}
    assert json.loads(result.kept("language")[0]["meta"])["language"]["response"] is None
    raw = run_language(run_recipe, pairs, "ignore_code = false")
    assert verdicts(raw)[fenced] == verdicts(raw)[UNFENCED] == "wrong-language"


@pytest.mark.parametrize("line, code", [
    ("def factorial(n):", True), ("    if n <= 1:", True), ("\tfor i := range s {", True),
    ("evens = [x * x for x in range(10) if x % 2 == 0]", True),
    ("SELECT * FROM users WHERE age > 30;", True),
    ("The CPU, or central processing unit, carries out the instructions.", False),
    ("Yes, gift wrapping is $5 per item and you can add it at checkout.", False),
])
def test_lines_that_look_like_code(line, code):
    assert looks_like_code(line) is code


def many_pairs(count: int) -> list[tuple[str, str]]:
    """More than one 256-record batch; every language, unsure texts, and short prompts that
    are not judged (which keeps the test quick) mixed in."""
    languages = sorted(SENTENCES)
    texts = [*SENTENCES.values(), MIXED, "Merci beaucoup pour votre aide, vraiment"]
    return [(QUESTIONS[languages[i % 5]] if i % 3 == 0 else f"Q{i}",
             texts[i % len(texts)] + f" {i}") for i in range(count)]


def test_output_is_the_same_bytes_with_one_or_two_workers_and_on_rerun(run_recipe):
    data = {"data.jsonl": pairs_jsonl(*many_pairs(300))}
    digests = []
    for name, workers in (("one", 1), ("two", 2), ("two-again", 2)):
        result = run_recipe(recipe('keep = ["en", "es"]\nkeep_uncertain = false',
                                   f"workers = {workers}"), files=data,
                            name=name)
        assert result.exit_code == 0, result.output
        digests.append(output_digests(result.run_dir))
    assert digests[0] == digests[1] == digests[2]
    assert len(set(verdicts(result).values())) == 4  # kept and all three reasons


def test_the_seed_reaches_langdetect():
    texts = [MIXED, "Merci beaucoup", SENTENCES["fr"]]
    first = [LangdetectDetector(0).detect(text) for text in texts]
    backwards = [LangdetectDetector(0).detect(text) for text in reversed(texts)][::-1]
    assert first == backwards
    assert LangdetectDetector(7).detect(MIXED) != first[0]


def test_a_fresh_process_detects_the_same():
    script = ("from curate.plugins.language import LangdetectDetector as D;"
              f"print(D(3).detect({MIXED!r}))")
    # Run outside the checkout, so the installed curate is imported rather than the source tree.
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, cwd="/").stdout
    assert output.strip() == str(LangdetectDetector(3).detect(MIXED))


def test_an_unknown_detector_fails_validation_with_a_suggestion(tmp_path):
    recipe_file = write_recipe(tmp_path, 'detector = "langdetekt"')
    code, output = invoke_cli(["validate", str(recipe_file)])
    assert code == 2
    assert ("stages[0].detector: unknown language detector 'langdetekt': did you mean"
            " 'langdetect'?") in output


@pytest.mark.parametrize("keep, message", [
    ('["en", "DE"]', "stages[0].keep[1]: the detector does not know language 'DE': did you"
                     " mean 'de'?"),
    ('["english"]', "the detector does not know language 'english' (it knows: af, ar,"),
    ("[]", "stages[0].keep: list at least one language to keep"),
])
def test_bad_language_codes_fail_validation(tmp_path, keep, message):
    code, output = invoke_cli(["validate", str(write_recipe(tmp_path, f"keep = {keep}"))])
    assert code == 2 and message in output


def write_recipe(folder: Path, options: str) -> Path:
    (folder / "data.jsonl").write_text(pairs_jsonl((QUESTIONS["en"], SENTENCES["en"])))
    recipe_file = folder / "recipe.toml"
    recipe_file.write_text(recipe(options).replace("\n        ", "\n"))
    return recipe_file


class ScriptDetector(LanguageDetector):
    """Hebrew letters are Hebrew, Latin letters English; anything else has nothing to judge."""

    name = "by-script"
    seeds: list[int] = []

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.seeds.append(seed)

    def detect(self, text):
        if any("\u05d0" <= c <= "\u05ea" for c in text):
            return [("he", 0.9)]
        return [("en", 0.95)] if any(c.isascii() and c.isalpha() for c in text) else []


class ScriptPlugin:
    @hookimpl
    def register_language_detectors(self, register):
        register(ScriptDetector)


def test_a_plugin_detector_is_used_through_the_hook(curate_plugin, run_recipe):
    curate_plugin(ScriptPlugin(), name="by_script")
    hebrew = "שלום, מה שלומך היום? אני מקווה שהכל בסדר אצלך ושהמשפחה בריאה"
    result = run_language(run_recipe, [(QUESTIONS["en"], hebrew), (QUESTIONS["en"], "42 " * 10)],
                          'detector = "by-script"\nkeep = ["en"]', "seed = 11\nworkers = 1")
    assert verdicts(result) == {hebrew: "wrong-language", "42 " * 10: "kept"}
    assert json.loads(result.rejected("language")[0]["evidence"])["probability"] == 0.9
    assert ScriptDetector.seeds[-1] == 0  # a fixed seed: [run] seed only reshuffles the split


def language_filter(**options) -> LanguageFilter:
    context = StageContext("language", 0, Path("."), Path("."))
    return LanguageFilter(LanguageOptions(**options), context)


BAD_INPUTS = {
    "empty": "",
    "blank": " \n\t ",
    "emoji": "😀🎉🚀" * 20,
    "control": "\x00\x07\x1b[31m" * 10,
    "zero-width": "\u200b\u200c\u200d\ufeff" * 10,
    "zero-width-in-words": "The\u200b committee\u200d reviewed\ufeff the proposal before the vote.",
    "rtl-override": "\u202e" + SENTENCES["en"],
    "arabic": "مرحبا بك في هذا المكان الجميل، كيف حالك اليوم؟ أتمنى أن تكون بخير",
    "hebrew": "שלום, מה שלומך היום? אני מקווה שהכל בסדר אצלך ושהמשפחה בריאה",
    "lone-surrogate": "\ud800 " + SENTENCES["en"],
    "one-megabyte": (SENTENCES["en"] + " ") * 13_000,
    "unclosed-fence": SENTENCES["en"] + "\n```python\n" + "x = 1\n" * 50_000,
}
# name -> (verdict, language detected in both parts; None: not judged)
EXPECTED = {"empty": ("kept", None), "blank": ("kept", None), "emoji": ("kept", None),
            "control": ("kept", None), "zero-width": ("kept", None),
            "zero-width-in-words": ("kept", "en"), "rtl-override": ("kept", "en"),
            "arabic": ("wrong-language", "ar"), "hebrew": ("wrong-language", "he"),
            "lone-surrogate": ("kept", "en"), "one-megabyte": ("kept", "en"),
            "unclosed-fence": ("kept", "en")}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_kept_or_rejected_with_a_reason(name):
    record = Record([{"role": "user", "content": BAD_INPUTS[name]},
                     {"role": "assistant", "content": BAD_INPUTS[name]}], "data")
    (outcome,) = language_filter().judge_batch([record])
    verdict = outcome.reason if isinstance(outcome, Rejection) else "kept"
    detected = {part: found and found["code"] for part, found in record.meta["language"].items()}
    expected_verdict, expected_code = EXPECTED[name]
    assert (verdict, detected) == (expected_verdict, {"prompt": expected_code,
                                                      "response": expected_code,
                                                      "conversation": None})
    assert verdict == "kept" or outcome.detail


def test_right_to_left_languages_can_be_kept():
    record = Record([{"role": "user", "content": BAD_INPUTS["arabic"]},
                     {"role": "assistant", "content": BAD_INPUTS["arabic"]}], "data")
    (outcome,) = language_filter(keep=["ar"]).judge_batch([record])
    assert outcome is record
    assert record.meta["language"]["response"] == {"code": "ar", "probability": 1.0}


def test_a_run_with_bad_input_accounts_for_every_record(run_recipe):
    pairs = [(BAD_INPUTS[name], BAD_INPUTS[name] or ".") for name in sorted(BAD_INPUTS)
             if name not in ("lone-surrogate", "empty", "blank")]
    result = run_language(run_recipe, pairs, run="workers = 2")
    assert result.manifest["steps"][-1]["in"] == len(pairs)
    assert sorted(r["reason"] for r in result.rejected("language")) == ["wrong-language"] * 2


def test_langdetect_languages_match_its_profiles():
    from langdetect.detector_factory import PROFILES_DIRECTORY

    assert LangdetectDetector.languages == tuple(sorted(os.listdir(PROFILES_DIRECTORY)))


def test_importing_the_plugin_does_not_import_langdetect():
    script = "import sys, curate.plugins.language; print('langdetect' in sys.modules)"
    # Run outside the checkout, so the installed curate is imported rather than the source tree.
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, cwd="/").stdout
    assert output.strip() == "False"


def test_every_option_is_in_the_stage_documentation(repo):
    page = (repo / "docs" / "stages" / "language.md").read_text(encoding="utf-8")
    for field in dataclasses.fields(LanguageOptions):
        assert f"| `{field.name}` |" in page, f"docs/stages/language.md lacks `{field.name}`"


def test_the_langid_detector_judges_the_same_sentences(run_recipe):
    result = run_language(run_recipe, [(QUESTIONS[c], SENTENCES[c]) for c in SENTENCES],
                          'detector = "langid"')
    assert verdicts(result) == {SENTENCES["en"]: "kept", **{
        SENTENCES[c]: "wrong-language" for c in ("de", "es", "fr", "pt")}}
    meta = json.loads(result.kept("language")[0]["meta"])
    assert meta["language"]["response"]["code"] == "en"


def test_only_the_first_judged_chars_are_judged(run_recipe):
    english_then_german = SENTENCES["en"] + " " + SENTENCES["de"] * 40
    pairs = [(QUESTIONS["en"], english_then_german)]
    assert verdicts(run_language(run_recipe, pairs, "judged_chars = 80")) == {
        english_then_german: "kept"}


def test_swapping_the_detector_reruns_the_stage(run_recipe):
    pairs = [(QUESTIONS["en"], SENTENCES["en"])]
    run_language(run_recipe, pairs)
    again = run_language(run_recipe, pairs, 'detector = "langid"')
    assert {s["name"]: s["cached"] for s in again.manifest["steps"]} == {
        "read": True, "language": False}


# Plain English that langdetect (and langid, given all 140 of its languages) rejected when
# each part was judged on its own; seed 0, 1 and 7 each rejected a different set.
SHORT_ENGLISH = [
    ("What is the freezing point of water in Fahrenheit?",
     "Water freezes at 32 degrees Fahrenheit."),                      # de, p=1.00
    ("Can you gift wrap my order?",                                   # cy, p=1.00
     "Yes, gift wrapping is $5 per item and you can add it at checkout."),
    ("Give me a regex for a US zip code.", "^\\d{5}(-\\d{4})?$"),       # ro, p=1.00
    ("What does the Russian word 'спасибо' mean?", "It means 'thank you' in Russian."),
    ("Calculate 24 multiplied by 30.", "24 × 30 = 720."),
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi."),  # langid: kik
    ("How many months have 31 days?",                                      # langid: pcm
     "Seven months have 31 days: January, March, May, July, August, October and December."),
    ("Write a Python function to merge two dictionaries.", UNFENCED),       # ro, p=1.00
]
SHORT_FOREIGN = [
    ("Kann ich meine Bestellung stornieren?", "Ja, solange sie noch nicht versandt wurde."),
    ("¿Cuánto cuesta el envío a México?", "Cuesta 15 dólares y tarda una semana."),
    ("Qu'est-ce qu'un nombre premier ?", "Un entier qui n'a que deux diviseurs."),
]


@pytest.mark.parametrize("detector", ["langdetect", "langid"])
def test_short_parts_are_judged_with_the_rest_of_the_conversation(detector):
    records = [Record([{"role": "user", "content": prompt},
                       {"role": "assistant", "content": response}], "data")
               for prompt, response in SHORT_ENGLISH + SHORT_FOREIGN]
    outcomes = language_filter(detector=detector).judge_batch(records)
    rejected = [o.reason for o in outcomes if isinstance(o, Rejection)]
    assert rejected == ["wrong-language"] * len(SHORT_FOREIGN)
    assert all(o is r for o, r in zip(outcomes, records[:len(SHORT_ENGLISH)]))
    german = outcomes[len(SHORT_ENGLISH)]
    assert german.detail == ("conversation (prompt and response judged together: no part has"
                             " min_chars = 40 letters) is in de (p=1.00), kept languages: en")
    assert german.evidence["part"] == "conversation"
    assert records[len(SHORT_ENGLISH)].meta["language"] == {
        "prompt": None, "response": None, "conversation": {"code": "de", "probability": 1.0}}


def test_judge_short_judges_short_parts_alone():
    record = Record([{"role": "user", "content": SHORT_ENGLISH[1][0]},
                     {"role": "assistant", "content": SHORT_ENGLISH[1][1]}], "data")
    (outcome,) = language_filter(judge_short=True).judge_batch([record])
    assert outcome.detail == "prompt is in cy (p=1.00), kept languages: en"


def test_the_run_seed_does_not_change_the_verdicts(run_recipe):
    pairs = [(QUESTIONS["en"], MIXED), *SHORT_ENGLISH, *SHORT_FOREIGN]
    metas = [[json.loads(r["meta"])["language"] for r in run_language(
        run_recipe, pairs, "keep_uncertain = false", f"seed = {seed}").kept("language")]
        for seed in (0, 1, 7)]
    assert metas[0] == metas[1] == metas[2] and len(metas[0]) == len(SHORT_ENGLISH)


@pytest.mark.parametrize("detector, keep, message", [
    ("langid", '["zh-cn"]', "stages[0].keep[0]: the detector does not know language 'zh-cn':"
                            " did you mean 'zh'? (langid writes it as 'zh')"),
    ("langid", '["xx"]', "stages[0].keep[0]: the detector does not know language 'xx'"),
    ("langdetect", '["zh"]', "did you mean 'zh-cn' or 'zh-tw'? (langdetect writes it as"
                             " 'zh-cn' and 'zh-tw')"),
])
def test_keep_is_checked_against_the_chosen_detector(tmp_path, detector, keep, message):
    recipe_file = write_recipe(tmp_path, f'detector = "{detector}"\nkeep = {keep}')
    code, output = invoke_cli(["validate", str(recipe_file)])
    assert code == 2 and message in output


def test_langid_languages_match_its_model():
    from curate.plugins.language import _langid_identifier

    assert LangidDetector.languages == tuple(sorted(set(_langid_identifier().nb_classes)))
    assert set(LangidDetector.candidates) <= set(LangidDetector.languages)


def test_langid_weighs_a_kept_language_outside_its_candidates():
    basque = "Kaixo, zer moduz zaude gaur? Eguraldi ona dago eta hondartzara joango gara."
    detector = LangidDetector()
    assert detector.detect(basque)[0][0] != "eu"
    detector.consider(["eu"])
    assert detector.detect(basque)[0][0] == "eu"


def test_a_single_judged_part_is_never_judged_with_the_other():
    translation = Record([{"role": "user", "content": "Translate into German: good morning"},
                          {"role": "assistant", "content": "Guten Morgen, wie geht es dir?"}],
                         "data")
    (outcome,) = language_filter(judge="prompt").judge_batch([translation])
    assert outcome is translation
    assert translation.meta["language"] == {"prompt": None, "response": None,
                                            "conversation": None}
