"""The train/eval split."""

import types

from curate import hookimpl
from curate.recipe import SplitOptions
from curate.records import NEEDS_REVIEW, Record
from curate.split import choose_eval_keys, eval_count
from curate.stages import Stage
from curate.testing import alpaca_row, assert_clear_error, jsonl, source_table


def test_eval_count_by_fraction_and_by_size():
    assert eval_count(100, SplitOptions(eval_fraction=0.1)) == 10
    assert eval_count(100, SplitOptions(eval_size=7)) == 7
    assert eval_count(5, SplitOptions(eval_size=7)) == 5
    assert eval_count(100, SplitOptions(eval_fraction=0.0)) == 0


def test_the_split_is_seeded_and_stable_when_data_is_added():
    ids = [f"{i:016x}" for i in range(1000)]
    first = choose_eval_keys(ids, SplitOptions(eval_fraction=0.1), seed=0)
    assert len(first) == 100
    assert choose_eval_keys(ids, SplitOptions(eval_fraction=0.1), seed=0) == first
    assert choose_eval_keys(ids, SplitOptions(eval_fraction=0.1), seed=1) != first
    grown = choose_eval_keys(ids + [f"{i:016x}" for i in range(1000, 1100)],
                            SplitOptions(eval_fraction=0.1), seed=0)
    assert len(first & grown) >= 90


def test_equal_ids_are_held_out_together_without_overshooting():
    ids = ["a" * 16] * 30 + [f"{i:016x}" for i in range(90)]
    for seed in range(20):
        chosen = choose_eval_keys(ids, SplitOptions(eval_fraction=0.1), seed=seed)
        held = [i for i in ids if i in chosen]
        assert len(held) == 12
        assert held.count("a" * 16) in (0, 30)
    small_group = ["b" * 16] * 3 + [f"{i:016x}" for i in range(7)]
    sizes = {len([i for i in small_group if i in choose_eval_keys(small_group,
                                                                 SplitOptions(eval_size=4), s)])
             for s in range(30)}
    assert sizes == {4}


def test_only_task_records_are_held_out_for_eval():
    from curate.records import Record
    from curate.split import side_of

    def record(origin, **meta):
        return Record([{"role": "user", "content": origin}], "s", origin, meta)

    task, general = record("human"), record("rehearsal", rehearsal="train")
    held = record("rehearsal", rehearsal="held-out")
    # as if every question had been chosen
    assert [side_of(r, True) for r in (task, general, held)] == ["eval", "train", "general_eval"]
    assert side_of(task, False) == "train"


def test_copies_of_one_question_never_straddle_the_split(run_recipe):
    from curate.split import split_key

    def chat(question, answer):
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    assert split_key(chat("How do I reset it?", "a")) == split_key(chat("how do i RESET it", "b"))
    assert split_key(chat("Is 3.5 > 35?", "a")) != split_key(chat("Is 35 > 3.5 ?", "a"))
    rows = [alpaca_row(i) for i in range(40)]
    rows += [{**row, "instruction": row["instruction"].upper() + "!!"} for row in rows]
    result = run_recipe(source_table("qa", "qa.jsonl") + "[split]\neval_fraction = 0.25\n",
                        files={"qa.jsonl": jsonl(*rows)})
    questions = {side: {split_key(row["messages"]) for row in result.dataset(side)}
                 for side in ("train", "eval")}
    assert len(result.dataset("eval")) == 20 and not questions["train"] & questions["eval"]


class AsksAboutOne(Stage):
    """Asks a person about one record, as consistency's on_conflict = "review" does, without
    any recipe check knowing it."""
    name = "asks-about-one"

    def process(self, records):
        for number, record in enumerate(records):
            if number == 2:
                record = Record(record.messages, record.source, record.origin,
                                {**record.meta, NEEDS_REVIEW: ["two answers disagree"]},
                                record.id)
            yield record


def asking_plugin():
    module = types.ModuleType("asking")
    module.register_stages = hookimpl(lambda register: register(AsksAboutOne))
    return module


def test_a_record_sent_to_review_that_no_person_saw_never_reaches_the_dataset(curate_plugin,
                                                                              run_recipe):
    curate_plugin(asking_plugin(), name="asking")
    recipe = source_table("qa", "qa.jsonl") + '[[stages]]\nuse = "asks-about-one"\n'
    result = run_recipe(recipe, files={"qa.jsonl": jsonl(*map(alpaca_row, range(6)))},
                        args=["-q"])
    assert_clear_error(result, "was sent to review (two answers disagree) but no person approved"
                       " it, so no dataset was written: add a review stage after the stage that"
                       " asks")
    assert not (result.run_dir / "dataset" / "train.jsonl").exists()
    with_review = run_recipe(recipe + '[[stages]]\nuse = "review"\n')
    assert with_review.exit_code == 3 and with_review.manifest["review"]["pending"] == 1


def test_the_ascii_split_key_agrees_with_the_general_rule():
    import hashlib
    import re

    from curate.records import normalise_text
    from curate.split import split_key

    def general(text):
        words = re.sub(r"[\W_]+", " ", normalise_text(text).casefold()).strip()
        return hashlib.blake2b(words.encode(), digest_size=8).hexdigest()

    for code in range(128):
        text = f"Ab{chr(code)}C d_e\t\n x"
        assert split_key([{"role": "user", "content": text}]) == general(text), repr(chr(code))
