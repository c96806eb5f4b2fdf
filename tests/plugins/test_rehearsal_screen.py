"""What the rehearsal stage screens out of the general pool: every near copy however crowded its
LSH buckets, task prompts inside a user turn or a short wrapper, copied answers, empty answers,
and copies of general records an earlier rehearsal step held out."""

import json
import random

from curate.plugins.minhash import MAX_BUCKET, jaccard
from curate.plugins.rehearsal_draw import PoolDraw, Target
from curate.plugins.rehearsal_index import PromptIndex, copy_similarity, shingles_of
from curate.records import Record
from curate.testing import assert_complete, jsonl

from tests.plugins.test_rehearsal import contained, files, pool_rows, prompt, recipe, task_rows

TEMPLATE = ("You are a careful assistant. Read the customer's message below and write a short,"
            " polite, helpful reply that answers the question directly, cites the relevant store"
            " policy by name, offers one concrete next step, avoids jargon, never promises refunds"
            " that policy does not allow, and signs off as the Northwind support team. Keep the"
            " reply under one hundred words and do not repeat the question back. Customer"
            " message: ")
WORDS = "order refund parcel late broken invoice account password delivery address".split()


def templated(count: int) -> list[str]:
    rng = random.Random(5)
    return [TEMPLATE + " ".join(rng.choice(WORDS) for _ in range(4)) + f" {i}"
            for i in range(count)]


def test_a_bucket_over_the_cap_is_searched_whole():
    pool = templated(3 * MAX_BUCKET)
    task = TEMPLATE + "my parcel never arrived, where is it?"
    index = PromptIndex(pool, 0.7)
    query = shingles_of([task])[0]
    near = {i for i, text in enumerate(shingles_of(pool)) if jaccard(query, text) >= 0.7}
    assert len(near) == len(pool)
    assert {match.pool for match in index.matches([task])} == near


def test_pool_duplicates_in_a_crowded_bucket_are_found():
    index = PromptIndex(templated(MAX_BUCKET + 500), 0.7)
    index.accept(0)
    assert all(index.pool_duplicate(i) is not None for i in range(1, index.count))


def test_a_short_task_text_is_measured_by_jaccard_not_containment():
    short, long = shingles_of(["What is the capital of Peru?",
                               "What is the capital of Peru? Explain the history of its founding,"
                               " its architecture and the politics of the region in detail."])
    assert copy_similarity(short, long) == (jaccard(short, long), "jaccard")
    assert copy_similarity(short, long)[0] < 0.7


def chat(*turns: str) -> dict:
    roles = ("user", "assistant") * len(turns)
    return {"messages": [{"role": role, "content": text} for role, text in zip(roles, turns)]}


def test_task_prompts_in_a_user_turn_a_wrapper_or_an_answer_never_train(run_recipe):
    task = task_rows(200)  # more than the pool can give: every pool record is screened
    task[2]["completion"] = ("Answer 2: the parcel left the depot on Monday and reaches the"
                             " customer by Thursday at the latest.")
    pool = [chat(row["instruction"], row["output"]) for row in pool_rows(40)]
    pool.append(chat("Hello there, can you help me today?", "Of course, ask away.",
                     task[0]["prompt"], "Here is what I think about that."))
    wrapper = ("Here is a ticket from one of our customers, please read it carefully: {} Thanks"
               " a lot.")
    pool.append(chat(wrapper.format(task[1]["prompt"]), task[1]["completion"]))
    pool.append(chat("When does my parcel arrive, please tell me?", task[2]["completion"]))
    pool.append(chat(wrapper.format(task[3]["prompt"]), "Something else entirely."))
    text = recipe("ratio = 0.5\nheld_out = 0", 'use = "jsonl"\npath = "pool.jsonl"\n'
                  'format = "messages"', eval_fraction=0.5)
    result = run_recipe(text, {"task.jsonl": jsonl(*task), "pool.jsonl": jsonl(*pool)})
    assert_complete(result)
    parts = sorted(json.loads(r["evidence"])["part"] for r in result.rejected("rehearsal"))
    assert parts == ["prompt", "prompt", "response", "user turn 2"]
    general = [r for r in result.dataset("train") if r["origin"] == "rehearsal"]
    assert len(general) == 40
    copied = [row["prompt"] for row in task[:4]]
    assert not any(c in prompt(r) for r in general for c in copied)
    for row in result.rejected("rehearsal"):
        evidence = json.loads(row["evidence"])
        if evidence["part"] == "response":
            assert row["reason"] == "rehearsal-contamination"
            assert row["detail"].startswith("its answer copies the answer of task record")
        elif evidence["part"] == "prompt":
            assert evidence["measure"] == "containment" and evidence["similarity"] == 1.0
            wrapped = prompt(row)
            assert max(contained(copied["prompt"], wrapped) for copied in task[1:4:2]) == 1.0


def test_an_empty_answer_is_rejected_not_drawn(run_recipe):
    pool = pool_rows(30) + [{"instruction": "Say something kind.", "output": "  "}]
    result = run_recipe(recipe("ratio = 0.5\nheld_out = 0"), files(task_rows(60), pool))
    assert_complete(result)
    [row] = result.rejected("rehearsal")
    assert row["reason"] == "empty-response" and "empty or blank" in row["detail"]
    assert all(r["messages"][-1]["content"].strip() for r in result.dataset("train"))
    step = next(s for s in result.manifest["steps"] if s["name"] == "rehearsal")
    assert step["stats"]["rehearsal"]["pool"]["empty_response"] == 1


def test_a_short_held_out_slice_warns_and_says_what_was_asked(run_recipe):
    result = run_recipe(recipe("ratio = 0\nheld_out = 100"), files(task_rows(60), pool_rows(40)))
    assert_complete(result)
    assert ("warning: rehearsal: the held-out general slice has 40 of the 100 records asked"
            in result.output)
    step = next(s for s in result.manifest["steps"] if s["name"] == "rehearsal")
    pool = step["stats"]["rehearsal"]["pool"]
    assert (pool["held_out"], pool["held_out_wanted"]) == (40, 100)


def test_a_second_stage_names_a_held_out_general_record_as_such(run_recipe):
    pool = pool_rows(40)
    twins = [{"instruction": row["instruction"], "output": "A different reply."} for row in pool]
    second = ('\n[[stages]]\nuse = "rehearsal"\nname = "again"\nratio = 0.5\nheld_out = 0\n'
              '[stages.source]\nuse = "jsonl"\npath = "twins.jsonl"\nformat = "alpaca"\n')
    text = recipe("ratio = 0.1\nheld_out = 10").replace("\n[split]", second + "\n[split]")
    result = run_recipe(text, {**files(task_rows(100), pool), "twins.jsonl": jsonl(*twins)})
    assert_complete(result)
    held = {r["id"] for r in result.dataset("general_eval")}
    details = [(json.loads(r["evidence"]), r) for r in result.rejected("again")]
    of_held = [r for evidence, r in details if evidence["task_record"] in held]
    assert len(of_held) == 10
    assert all(r["reason"] == "rehearsal-contamination"
               and r["detail"].startswith("its prompt copies the prompt of held-out general"
                                          " record ")
               and "kept for the forgetting check" in r["detail"] for r in of_held)
    others = [r for evidence, r in details if evidence["task_record"] not in held]
    assert others and all(r["reason"] == "rehearsal-duplicate"
                          and "drawn by an earlier rehearsal step" in r["detail"] for r in others)


def record(index: int, words: int) -> Record:
    return Record([{"role": "user", "content": f"Question {index} " + "word " * 3},
                   {"role": "assistant", "content": "answer " * words}], "pool",
                  origin="rehearsal", id=f"r{index:03d}")


def test_in_tokens_a_record_that_would_overshoot_ends_the_draw_without_exhausting_it():
    pool = [record(i, 2000 if i else 10) for i in range(40)]
    index = PromptIndex([r.prompt for r in pool], 0.7)
    draw = PoolDraw(index, pool, {}, 0.7)
    draw.outcomes(Target(0, 300, "tokens", lambda r: len(r.response.split())), seed=0)
    assert draw.overshoot == 2000 and not draw.exhausted
