"""Near-identical prompts in the consistency stage (`prompt_similarity` below 1.0): the measured
Jaccard similarity must reach the threshold (LSH candidates alone group nothing), a planted near
copy with another answer is found with its evidence, groups are transitive and respect system
prompts, and the result does not depend on the number of workers."""

import hashlib
import random

import numpy as np
import pytest

from curate.plugins.consistency_near_prompts import bucket_neighbours, prompt_bands
from curate.plugins.consistency_text import comparison_key
from curate.plugins.minhash import lsh_bands
from curate.testing import jsonl
from curate.testing import messages_row as row
from support.consistency_runs import PLAIN, by_line, ids, recipe, run, similar


BASE = ("Write a short and friendly reply to a customer whose blender arrived with a cracked jar"
        " and who wants a replacement")
OTHER_PRODUCT = BASE.replace("blender", "kettle").replace("replacement", "refund")
VOCABULARY = ("battery screen delivery refund warranty keyboard speaker lens charger strap kettle"
              " blender mattress router printer jacket arrived broke works failed quickly slowly"
              " never always again really quite good bad great poor cheap expensive light heavy"
              " small large quiet loud warm cold bright dim soft hard new old customer order"
              " support review answer question problem issue update model feature setting").split()


def keys(*prompts):
    return [(comparison_key(prompt).decode(),) for prompt in prompts]


def random_prompts(count, seed=7):
    rng = random.Random(seed)
    return [f"Case {i}: " + " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(30, 40)))
            for i in range(count)]


def one_word_changed(prompt, position, word="different"):
    words = prompt.split()
    return " ".join([*words[:position], word, *words[position + 1:]])


@pytest.mark.parametrize("offset, grouped", [(-0.001, True), (0.0, True), (0.001, False)])
def test_the_measured_jaccard_must_reach_prompt_similarity(run_recipe, offset, grouped):
    similarity = similar(BASE, OTHER_PRODUCT)
    threshold = similarity + offset
    bands, rows = lsh_bands(threshold, 128)
    # the two prompts are LSH candidates at every one of these thresholds: only the measured
    # similarity decides
    values = prompt_bands(bands, rows, keys(BASE, OTHER_PRODUCT))
    assert bucket_neighbours(values.T, 2).tolist() == [[0, 1]]
    options = f"\nprompt_similarity = {threshold!r}\nmax_prompt_word_changes = 4"
    result = run(run_recipe, PLAIN + options,
                 row(BASE, "Sorry, a new jar is on its way."), row(OTHER_PRODUCT, "Refund sent."))
    found = by_line(result)
    if not grouped:
        assert found == {"a.jsonl:1": ("kept", None), "a.jsonl:2": ("kept", None)}
        return
    [note] = found["a.jsonl:2"][1]
    assert note["other_id"] == ids(result)["a.jsonl:1"]
    assert (f"(similar prompt, Jaccard {similarity:.2f}; only here: 'kettle refund', only there:"
            f" 'blender replacement')" in note["detail"])


def test_a_planted_near_copy_with_another_answer_is_found_with_evidence(run_recipe):
    prompts = random_prompts(700)
    planted = one_word_changed(prompts[123], 9)
    rows = [row(prompt, f"Answer {i}.") for i, prompt in enumerate(prompts)]
    rows.insert(600, row(planted, "Something else entirely."))
    rows.append(row(one_word_changed(prompts[123], 20), "Answer 123."))  # no tie: 2 against 1
    expected = similar(prompts[123], planted)
    assert 0.8 <= expected < 1
    options = PLAIN + '\non_conflict = "majority"\nprompt_similarity = 0.8'
    result = run(run_recipe, options, *rows)
    [rejected] = result.rejected("consistency")
    evidence = by_line(result)["a.jsonl:601"][2]
    assert evidence["other_id"] == ids(result)["a.jsonl:124"]
    assert evidence["prompt_similarity"] == round(expected, 3)
    assert (evidence["answer"], evidence["other_answer"]) == ("Something else entirely.",
                                                              "Answer 123.")
    assert f"(similar prompt, Jaccard {expected:.2f}; only here: 'different'," in rejected["detail"]
    assert run(run_recipe, PLAIN + '\non_conflict = "majority"', *rows).rejected(
        "consistency") == []


def test_groups_are_transitive(run_recipe):
    middle = one_word_changed(BASE, 5)
    far = one_word_changed(middle, 15)
    assert similar(BASE, middle) >= 0.7 and similar(middle, far) >= 0.7 > similar(BASE, far)
    result = run(run_recipe, PLAIN + "\nprompt_similarity = 0.7",
                 row(far, "C."), row(BASE, "A."), row(middle, "B."))
    notes = {line: found[1][0] for line, found in by_line(result).items()}
    assert {note["rule"] for note in notes.values()} == {"conflicting-answer"}
    assert notes["a.jsonl:2"]["other_id"] == ids(result)["a.jsonl:1"]
    assert notes["a.jsonl:2"]["detail"] == (
        f"answers 'A.' but {ids(result)['a.jsonl:1']} (similar prompt, Jaccard"
        f" {similar(BASE, far):.2f}; only here: 'reply jar', only there: 'different different')"
        f" answers 'C.'; 1 of 3 records agree with the other answer")


def test_bucket_neighbours_pairs_each_row_with_the_rows_before_it_in_its_buckets():
    bands = np.array([[5, 7, 5, 5, 9], [1, 2, 3, 2, 4]], dtype=np.uint64)
    assert bucket_neighbours(bands, 5, window=1).tolist() == [[0, 2], [1, 3], [2, 3]]
    assert bucket_neighbours(bands, 5, window=2).tolist() == [[0, 2], [0, 3], [1, 3], [2, 3]]
    assert bucket_neighbours(bands[:, :0], 0).shape == (0, 2)


def ticket_name(number):
    """A ticket name without digits: "ta", "tb", ... "tbh"."""
    letters = ""
    while True:
        number, digit = divmod(number, 26)
        letters = "abcdefghijklmnopqrstuvwxyz"[digit] + letters
        if not number:
            return "t" + letters


def test_hundreds_of_templated_prompts_form_one_group(run_recipe):
    template = ("Summarise support ticket {} about a blender whose glass jar arrived cracked and"
                " whose owner now wants a full refund from the shop")
    prompts = [template.format(ticket_name(i)) for i in range(200)]
    assert similar(prompts[0], prompts[1]) >= 0.7
    result = run(run_recipe, PLAIN + "\nprompt_similarity = 0.7",
                 *[row(prompt, f"Ticket answer {i}.") for i, prompt in enumerate(prompts)])
    notes = [found[1] for found in by_line(result).values()]
    assert all(note and "1 of 200 records agree" in note[0]["detail"] for note in notes)


def test_prompts_with_other_numbers_are_never_grouped(run_recipe):
    template = "Solve step by step and give the final answer at the end. Problem: what is {}?"
    rows = [row(template.format("17 + 25"), "17 + 25 = 42"),
            row(template.format("17 + 26"), "17 + 26 = 43"),
            row(template.format("17 plus 25"), "Forty-two.")]
    assert similar(rows[0]["messages"][0]["content"], rows[1]["messages"][0]["content"]) > 0.8
    found = by_line(run(run_recipe, PLAIN + "\nprompt_similarity = 0.5", *rows))
    assert found["a.jsonl:2"] == ("kept", None)
    [note] = found["a.jsonl:3"][1]
    assert "only here: 'plus', only there: '+'" in note["detail"]


REVIEW = ("Read the customer review below and classify its sentiment as positive, negative or"
          " neutral. Answer with the label, a colon, and one short reason. Review: The hotel room"
          " was {} and {}.")


@pytest.mark.parametrize("changes, grouped", [(None, False), (3, False), (4, True)])
def test_prompts_differing_in_more_than_a_few_words_are_not_grouped(run_recipe, changes, grouped):
    rows = [row(REVIEW.format("spotless", "quiet"), "positive: clean and quiet room."),
            row(REVIEW.format("dirty", "noisy"), "negative: dirty and noisy room.")]
    assert similar(REVIEW.format("spotless", "quiet"), REVIEW.format("dirty", "noisy")) > 0.8
    options = PLAIN + '\nprompt_similarity = 0.8\non_conflict = "reject-all"'
    options += f"\nmax_prompt_word_changes = {changes}" if changes else ""
    found = by_line(run(run_recipe, options, *rows))
    if not grouped:
        assert set(found.values()) == {("kept", None)}
        return
    assert found["a.jsonl:1"][0] == "conflicting-answer"
    assert "only here: 'spotless quiet', only there: 'dirty noisy'" in found["a.jsonl:1"][1]


def test_near_prompts_under_other_system_prompts_stay_apart(run_recipe):
    rows = [row(BASE, "A.", "Be formal."), row(one_word_changed(BASE, 5), "B.", "Be casual.")]
    options = PLAIN + "\nprompt_similarity = 0.7"
    assert by_line(run(run_recipe, options, *rows))["a.jsonl:2"] == ("kept", None)
    merged = by_line(run(run_recipe, options + "\nprompt_includes_system = false", *rows))
    assert merged["a.jsonl:2"][1][0]["rule"] == "conflicting-answer"


def families(count):
    """`count` base prompts, each followed later by two near copies with other answers."""
    prompts = random_prompts(count, seed=11)
    rows = [row(prompt, f"Answer {i}.") for i, prompt in enumerate(prompts)]
    for i, prompt in enumerate(prompts[::3]):
        rows.append(row(one_word_changed(prompt, 4), f"Variant {i}."))
        rows.append(row(one_word_changed(prompt, 12, "other"), f"Answer {3 * i}."))
    return rows


@pytest.mark.parametrize("policy", ["flag", "majority"])
def test_near_prompt_groups_do_not_depend_on_the_workers(run_recipe, policy):
    data = jsonl(*families(900))  # 1,500 records: three hashing batches
    digests = []
    for workers in (1, 2):
        result = run_recipe(recipe(f'{PLAIN}\non_conflict = "{policy}"\nprompt_similarity = 0.8',
                                   workers=workers), files={"a.jsonl": data}, name=f"w{workers}")
        assert result.exit_code == 0, result.output
        folder = result.step_dir("consistency")
        digests.append([hashlib.sha256((folder / name).read_bytes()).hexdigest()
                        for name in ("kept.parquet", "rejected.parquet")])
    assert digests[0] == digests[1]
    findings = [found for found in by_line(result).values() if found[0] != "kept" or found[1]]
    assert len(findings) == {"flag": 900, "majority": 300}[policy]  # every family found
