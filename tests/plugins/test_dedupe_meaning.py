"""What the dedupe stages must never take for a duplicate: texts that differ in a sign, a
separator, a bracket or a line's indentation (exact-dedupe), and records that share a prompt
template or a response template but not both, or that differ in a number (near-dedupe)."""

import pytest

from curate.plugins import minhash
from curate.plugins.dedupe_index import measure
from curate.testing import messages_row as row
from support.dedupe_runs import recipe, rejected_lines, run_stage

LOOP_AFTER = "for x in xs:\n    print(x)\nprint('done')"
LOOP_INSIDE = "for x in xs:\n    print(x)\n    print('done')"

DIFFERENT = [  # (prompt, response, response): one answer each, both must stay
    ("What is 2 - 7?", "The answer is -5.", "The answer is 5."),
    ("What is 7 divided by 2?", "7 / 2 = 3.5", "7 / 2 = 35"),
    ("How much is the basic plan per month?", "The basic plan costs $3.50 per month.",
     "The basic plan costs $350 per month."),
    ("When does the store open on Sunday?", "We open at 10:30 on Sundays.",
     "We open at 1030 on Sundays."),
    ("How do I get the first element of list a in Python?", "Use a[0] to get it.",
     "Use a(0) to get it."),
    ("Write Python that prints done after the loop.", LOOP_AFTER, LOOP_INSIDE),
    ("Write Python that prints done after the loop.", f"```python\n{LOOP_AFTER}\n```",
     f"```python\n{LOOP_INSIDE}\n```"),
    ("Square it.", "x² + y²", "x2 + y2"),
    ("Give the list.", "- a\n  - b\n- c", "- a\n- b\n- c"),
]

SAME = [  # pairs of texts that differ only in presentation
    ("What is the capital of France?", "WHAT IS THE CAPITAL OF FRANCE?"),  # case
    ("Paris is the capital of France.", "Ｐａｒｉｓ is the capital of France."),  # full width
    ("What is the capital of France?", "What is the\u00a0capital of Fr\u200bance?"),
    ("It's me, don't worry.", "It\u2019s me, don\u2019t worry."),  # curly quotes
    ('He said "yes".', "He said \u201cyes\u201d."),
    ("café", "cafe\u0301"),  # decomposed accent
    ("**Jupiter** is the largest planet.", "Jupiter is the largest planet."),
    ("*Jupiter* is the __largest__ planet.", "Jupiter is the __largest__ planet."),
    ("Mercury is the smallest planet.\n\n", "Mercury is the smallest planet."),
    ("Paris is\nthe capital.", "Paris is the  capital."),  # line breaks in prose
    ("Line one.\r\nLine two.", "Line one.\nLine two."),
    (f"Code:\n{LOOP_AFTER}\n", f"code:\n{LOOP_AFTER}   \n\n"),  # trailing spaces, blank lines
    ("  Paris.", "Paris."),  # a leading space before the first word
]


@pytest.mark.parametrize("prompt, first, second", DIFFERENT)
def test_exact_forms_keep_what_changes_the_meaning(prompt, first, second):
    assert minhash.exact_form(first) != minhash.exact_form(second)


@pytest.mark.parametrize("first, second", SAME)
def test_exact_forms_ignore_presentation(first, second):
    assert minhash.exact_form(first) == minhash.exact_form(second)


def test_emphasis_marks_stay_in_code_and_arithmetic():
    assert minhash.exact_form("2*3*4 and a * b * c") == "2*3*4 and a * b * c"
    assert minhash.exact_form("Call f(*args, **kwargs)") == "call f(*args, **kwargs)"
    assert minhash.exact_form("Use `**x**` or **x**") == "use `**x**` or x"
    assert minhash.exact_form("```\n**x** = 1\n```") == "```\n**x** = 1\n```"


def test_the_ascii_shortcut_gives_the_general_result():
    for text in [chr(c) for c in range(128)] + [LOOP_AFTER, "A\r\nB\x0b\tC\x00d **e**",
                                               "a #1, 50% & 3.5 * x / y @ z \\ w; ok?"]:
        exact = minhash.exact_form(text + " \u00e9")
        assert exact == (minhash.exact_form(text) + " \u00e9").strip()
        assert minhash.shingle_form(exact) == \
            (minhash.shingle_form(minhash.exact_form(text)) + " \u00e9").strip()


def test_exact_dedupe_keeps_answers_that_differ_in_meaning(run_recipe):
    rows = [row(prompt, response) for prompt, *responses in DIFFERENT for response in responses]
    rows += [row("Name a planet.", first) for first, _ in SAME[:1]]
    result = run_stage(run_recipe, rows, "exact-dedupe")
    assert rejected_lines(result, "exact-dedupe") == {}


def test_exact_dedupe_removes_presentation_variants(run_recipe):
    rows = [row("Say it.", text) for pair in SAME for text in pair]
    result = run_stage(run_recipe, rows, "exact-dedupe")
    rejected = rejected_lines(result, "exact-dedupe")
    # every second text, and line 5: the third pair's first text is the first pair's
    assert set(rejected) == {2 * index + 2 for index in range(len(SAME))} | {5}
    assert "after normalising Unicode (NFKC), case, whitespace, curly quotes and emphasis" \
        " marks" in rejected[2]["detail"]


def test_records_that_share_an_id_but_not_their_code_stay_on_a_cached_rerun(run_recipe):
    """LOOP_AFTER and LOOP_INSIDE differ only in whitespace, so they share a record id: the
    signature cache is keyed by the texts themselves, not by id."""
    rows = [row("Write the loop.", LOOP_AFTER), row("Write the loop.", LOOP_INSIDE)]
    first = run_stage(run_recipe, rows, "near-dedupe")
    again = run_recipe(recipe("near-dedupe"), args=["--force"])
    assert again.exit_code == 0, again.output
    assert "hashed 0 records, reused 2 signatures" in again.output
    assert rejected_lines(first, "near-dedupe") == rejected_lines(again, "near-dedupe") == {}


# --- near-dedupe verifies each part ---------------------------------------------------------

TEMPLATE = ("Read the customer review below and classify its sentiment as positive, negative or"
            " neutral. Answer with the label, a colon, and one short reason in plain English. Do"
            " not add anything else, and do not repeat the review in your answer.\n\nReview: ")
MATH = ("Solve the following arithmetic problem step by step and give the final answer on its"
        " own line at the end. Problem: what is {} + {}?")


def math_row(a: int, b: int) -> dict:
    return row(MATH.format(a, b), f"We add the two numbers: {a} + {b} = {a + b}.\n"
                                  f"Final answer: {a + b}")


@pytest.mark.parametrize("options", ["", 'shingle = "char"\nthreshold = 0.7'])
def test_a_shared_prompt_template_with_other_answers_is_not_a_duplicate(run_recipe, options):
    rows = [row(TEMPLATE + "The hotel room was spotless and quiet.", "positive: clean and quiet"
                                                                     " room."),
            row(TEMPLATE + "The hotel room was dirty and noisy.", "negative: dirty and noisy"
                                                                  " room."),
            row(TEMPLATE + "The battery died after two days.", "negative: the battery died"
                                                               " quickly.")]
    assert rejected_lines(run_stage(run_recipe, rows, "near-dedupe", options),
                          "near-dedupe") == {}


@pytest.mark.parametrize("options", ['shingle = "char"', 'shingle = "char"\nthreshold = 0.7'])
def test_changed_numbers_are_not_a_duplicate(run_recipe, options):
    rows = [math_row(17, 25), math_row(17, 26), math_row(170, 25)]
    assert rejected_lines(run_stage(run_recipe, rows, "near-dedupe", options),
                          "near-dedupe") == {}


def test_a_number_one_side_lacks_is_shown(run_recipe):
    rows = [row("How do I reset my password?",
                "To reset your password, open the app, tap Settings, then Account, then Reset"
                " password. We will email you a link that is valid for 24 hours; open it on the"
                " same device and choose a new password of at least 12 characters."),
            row("How do I reset my password?",
                "To reset your password, open the app, tap Settings, then Account, then Reset"
                " password. We will email you a link that is valid for one day; open it on the"
                " same device and choose a new password of at least 12 characters.")]
    result = run_stage(run_recipe, rows, "near-dedupe", 'shingle = "char"\nthreshold = 0.7')
    [rejected] = rejected_lines(result, "near-dedupe").values()
    evidence = rejected["evidence"]
    assert evidence["prompt_similarity"] == 1.0 and 0.7 <= evidence["response_similarity"] < 1
    assert evidence["similarity"] == evidence["response_similarity"]
    assert evidence["numbers_only_in_kept"] == ["24"]
    assert evidence["numbers_only_in_removed"] == []
    assert (f"(Jaccard prompt 1.000, response {evidence['response_similarity']:.3f}; each >= 0.7,"
            f" char 5-shingles; numbers only in the kept record: 24); cluster of 2") \
        in rejected["detail"]


def test_near_dedupe_on_one_part_names_that_part(run_recipe):
    rows = [row("Tell me about cats.", "Cats sleep most of the day and hunt at night, alone."),
            row("Cats?", "Cats sleep most of the day and hunt at night, alone!")]
    result = run_stage(run_recipe, rows, "near-dedupe", 'compare = "response"')
    [rejected] = rejected_lines(result, "near-dedupe").values()
    assert rejected["evidence"]["response_similarity"] == 1.0
    assert "prompt_similarity" not in rejected["evidence"]
    assert "(Jaccard response 1.000; >= 0.8, word 5-shingles)" in rejected["detail"]


def test_measure_needs_every_part_and_no_changed_number():
    spec = minhash.ShingleSpec("char", 5, 128, strict=True)
    same, other, number, more = minhash.part_profiles(spec, [
        ("A long shared prompt template here", "answer one is here"),
        ("A long shared prompt template here", "something else entirely"),
        ("A long shared prompt template here", "answer one is here: 7"),
        ("A long shared prompt template here", "answer one is here: 8"),
    ])
    assert measure(same, other, 0.5) is None  # the prompts alone would pass
    assert measure(number, more, 0.5) is None  # 7 against 8
    found = measure(same, number, 0.5)
    assert found.parts[0] == 1.0 and found.only_first == () and found.only_second == ("7",)


def test_empty_parts_are_the_same_part():
    spec = minhash.ShingleSpec("word", 5, 128, strict=True)
    first, second = minhash.part_profiles(spec, [("", "one two three"), ("", "one two three")])
    assert measure(first, second, 0.8).parts == (1.0, 1.0)


def test_shingles_leave_out_sentence_punctuation_only():
    form = minhash.shingle_form
    assert form(minhash.exact_form("Paris, France! Isn't it?")) == "paris france isnt it"
    assert form(minhash.exact_form("-5, 3.5 and 1,000 at 10:30 (a[0])")) == \
        "-5 3.5 and 1,000 at 10:30 (a[0])"
    assert form(minhash.exact_form("a ... b")) == "a b"
    assert minhash.numbers(minhash.exact_form("-5 x2 w17 3.50 $4 10:30 2-7 24h")) == \
        {"-5": 1, "3.50": 1, "4": 1, "10:30": 1, "2": 1, "7": 1, "24": 1}
