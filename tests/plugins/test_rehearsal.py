"""The rehearsal stage, through real `curate run`s: the mix it makes, what it refuses to mix in,
the held-out general slice, and the same bytes for the same seed."""

import json
import random
import re
import unicodedata

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from curate.testing import assert_clear_error, assert_complete, invoke_cli, jsonl, output_digests

VOCABULARY = ("amber basket candle delta engine falcon garden harbor island jacket kettle lemon"
              " meadow needle orbit pepper quartz river saddle timber umbrella valley walnut"
              " yellow zebra anchor bridge cactus dragon ember forest glacier hollow iron jungle"
              " kayak lantern marble nectar oyster pebble quiver rocket sierra tunnel velvet"
              " willow yarrow zephyr").split()
THRESHOLD = 0.7
# A [model] makes a run render every record with its chat template: the tiny model has one.
CHAT_TEMPLATE = ("{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}"
                 "{{ m.content }} <eot>{% endgeneration %}{% else %}{{ m.content }} {% endif %}"
                 "{% endfor %}")


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(words))


def task_rows(count: int, seed: int = 1, long_answers: bool = False) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": f"Task {i}: {sentence(rng, 14)}?",
             "completion": f"Answer {i}: {sentence(rng, rng.randint(4, 40) if long_answers else 6)}."}
            for i in range(count)]


def pool_rows(count: int, seed: int = 2, long_answers: bool = False) -> list[dict]:
    rng = random.Random(seed)
    return [{"instruction": f"General {i}: {sentence(rng, 8)}",
             "output": f"Reply {i}: {sentence(rng, rng.randint(4, 40) if long_answers else 6)}."}
            for i in range(count)]


def recipe(stage_options: str = "", pool: str = 'use = "jsonl"\npath = "pool.jsonl"\n'
           'format = "alpaca"', before: str = "", eval_fraction: float = 0.1) -> str:
    return (f"{before}\n[[sources]]\nname = \"task\"\nuse = \"jsonl\"\npath = \"task.jsonl\"\n"
            f"format = \"prompt-completion\"\n\n[[stages]]\nuse = \"rehearsal\"\n{stage_options}\n"
            f"[stages.source]\n{pool}\n\n[split]\neval_fraction = {eval_fraction}\n")


def files(task: list[dict], pool: list[dict]) -> dict:
    return {"task.jsonl": jsonl(*task), "pool.jsonl": jsonl(*pool)}


def prompt(record: dict) -> str:
    return "\n\n".join(m["content"] for m in record["messages"] if m["role"] == "user")


def normalised(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join("".join(c for c in folded if not unicodedata.category(c).startswith("P"))
                    .split())


def grams(text: str) -> set[str]:
    text = normalised(text)
    return {text[i:i + 5] for i in range(max(len(text) - 4, 1))}


def similarity(first: str, second: str) -> float:
    """Exact-after-normalisation is 1.0; else the plain-Python Jaccard of character 5-grams."""
    if normalised(first) == normalised(second):
        return 1.0
    a, b = grams(first), grams(second)
    return len(a & b) / len(a | b)


def contained(part: str, whole: str) -> float:
    """The plain-Python share of `part`'s character 5-grams found in `whole`'s."""
    if normalised(part) == normalised(whole):
        return 1.0
    a = grams(part)
    return len(a & grams(whole)) / len(a)


def mix(result) -> dict:
    return result.manifest["split"]["rehearsal"]


def test_a_large_pool_gives_the_target_ratio_of_examples(run_recipe):
    result = run_recipe(recipe("ratio = 0.2\nheld_out = 30"), files(task_rows(400), pool_rows(900)))
    manifest = assert_complete(result)
    train = result.dataset("train")
    general = [r for r in train if r["origin"] == "rehearsal"]
    assert len(train) - len(general) == 360  # 400 task records, 40 held out for eval
    assert len(general) == 90  # 90 / 450 = 20%
    assert mix(result)["examples"] == {"general": 90, "train": 450, "ratio": 0.2}
    assert abs(mix(result)["gap_pp"]) <= 0.5 and "warning" not in mix(result)
    assert "warning" not in result.output
    [step] = [s for s in manifest["steps"] if s["name"] == "rehearsal"]
    assert step["added"] == 120 and step["kept"] == 400 + 120 and step["rejected"] == 0
    assert step["stats"]["rehearsal"]["pool"]["not_drawn"] == 900 - 120
    assert all(r["source"] == "rehearsal" for r in general)


@pytest.fixture
def tokenizer_dir(tmp_path):
    """A word-level tokenizer trained here (every unknown word is one [UNK] token), saved the
    way a model folder holds one."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator([" ".join(VOCABULARY)] * 10,
                                  trainers.WordLevelTrainer(special_tokens=["[UNK]", "<eot>"]))
    folder = tmp_path / "tiny-model"
    folder.mkdir()
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]",
                            chat_template=CHAT_TEMPLATE).save_pretrained(folder)
    return folder


def test_counted_in_tokens_the_token_ratio_is_on_target(run_recipe, tokenizer_dir):
    model = f'[model]\npath = "{tokenizer_dir.name}"'
    result = run_recipe(recipe('ratio = 0.15\ncount = "tokens"\nheld_out = 10', before=model),
                        files(task_rows(300, long_answers=True), pool_rows(900, long_answers=True)))
    assert_complete(result)
    counter = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))

    def tokens(record):
        text = "\n".join(m["content"] for m in record["messages"])
        return len(counter.encode(text, add_special_tokens=False).ids)

    train = result.dataset("train")
    general = sum(tokens(r) for r in train if r["origin"] == "rehearsal")
    total = sum(tokens(r) for r in train)
    measured = mix(result)["tokens"]
    assert measured == {"general": general, "train": total, "ratio": round(general / total, 6)}
    assert abs(general / total - 0.15) <= 0.005
    # Long and short answers: the example ratio is not what was aimed at.
    assert mix(result)["count"] == "tokens" and mix(result)["examples"]["ratio"] != 0.15


def test_a_small_pool_warns_with_the_numbers(run_recipe):
    result = run_recipe(recipe("ratio = 0.3\nheld_out = 10"), files(task_rows(200), pool_rows(40)))
    assert_complete(result)
    warning = mix(result)["warning"]
    assert f"warning: {warning}" in result.output
    assert warning.startswith("rehearsal: general data is 14.29% of the training examples"
                              " (30 of 210), -15.71 percentage points from the target 30.00%")
    assert "the pool ran out after 30 of the 77 examples wanted (40 rows read, 0 duplicates," \
           " 0 too close to a task record, 0 with an empty answer, 0 unreadable, 10 held" \
           " out)" in warning
    assert result.manifest["steps"][-1]["stats"]["rehearsal"]["pool_exhausted"] is True


def test_pool_rows_left_out_are_named_with_their_location(run_recipe):
    pool = files(task_rows(50), pool_rows(60))
    pool["pool.jsonl"] = pool["pool.jsonl"].replace("\n", "\n{broken\n", 1)
    result = run_recipe(recipe("ratio = 0.2\nheld_out = 5"), pool)
    assert_complete(result)
    stats = result.manifest["steps"][-1]["stats"]["rehearsal"]["pool"]
    assert stats["unreadable"] == 1 and stats["rows"] == 61
    [problem] = stats["unreadable_rows"]
    assert problem.startswith("pool.jsonl:2: ") and problem.endswith("(malformed-json)")
    assert (f"warning: rehearsal: 1 of 61 pool rows left out, unreadable or unusable (first:"
            f" {problem})") in result.output


def leaky_pool(task: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """Clean general rows, then for 30 task rows an exact copy (case and punctuation changed),
    and for 30 others a near copy of the prompt (one word changed) with another answer;
    returns the pool and, for each leaky instruction, the prompt it copies."""
    rng = random.Random(3)
    leaks = {}
    rows = pool_rows(40)
    for row in task[:30]:
        copy = row["prompt"].upper().replace("?", "")
        leaks[copy] = row["prompt"]
        rows.append({"instruction": copy, "output": row["completion"]})
    for row in task[30:60]:
        words = row["prompt"].split()
        words[-2] = rng.choice([w for w in VOCABULARY if w != words[-2]])
        near = " ".join(words)
        leaks[near] = row["prompt"]
        rows.append({"instruction": near, "output": f"Something else: {sentence(rng, 6)}."})
    random.Random(4).shuffle(rows)
    assert all(similarity(copy, original) >= THRESHOLD for copy, original in leaks.items())
    return rows, leaks


def test_no_eval_prompt_exact_or_near_reaches_train(run_recipe):
    task = task_rows(100)
    pool, leaks = leaky_pool(task)
    # More than the pool can give, so every pool record is screened.
    result = run_recipe(recipe("ratio = 0.5\nheld_out = 0"), files(task, pool))
    assert_complete(result)
    train_prompts = [prompt(r) for r in result.dataset("train")]
    for record in result.dataset("eval"):
        assert max(similarity(prompt(record), other) for other in train_prompts
                   if other != prompt(record)) < THRESHOLD
    general = [prompt(r) for r in result.dataset("train") if r["origin"] == "rehearsal"]
    assert not set(general) & set(leaks)
    assert len(general) == 40


def test_copies_of_task_records_are_rejected_with_the_evidence(run_recipe):
    task = task_rows(100)
    pool, leaks = leaky_pool(task)
    result = run_recipe(recipe("ratio = 0.5\nheld_out = 0"), files(task, pool))
    ids = {prompt(r): r["id"] for split in ("train", "eval") for r in result.dataset(split)}
    rejected = result.rejected("rehearsal")
    assert len(rejected) == 60
    reasons = {"rehearsal-duplicate": 0, "rehearsal-contamination": 0}
    for row in rejected:
        evidence = json.loads(row["evidence"])
        [instruction] = [m["content"] for m in row["messages"] if m["role"] == "user"]
        copied = leaks[instruction]
        assert evidence["task_record"] == ids[copied]
        measured = contained(copied, instruction) if evidence["measure"] == "containment" \
            else similarity(instruction, copied)
        assert evidence["similarity"] == pytest.approx(measured, abs=1e-9)
        assert evidence["task_record"] in row["detail"]
        reasons[row["reason"]] += 1
        if row["reason"] == "rehearsal-duplicate":
            assert evidence["method"] == "exact" and evidence["response_similarity"] == 1.0
            assert "prompt equal after normalising case, spacing and punctuation" in row["detail"]
        else:
            assert evidence["method"] == "minhash" and evidence["similarity"] >= THRESHOLD
            assert evidence["measure"] == "containment"
            assert re.search(r"containing 0\.\d{3} of the copied text's character 5-grams,"
                             r" >= 0\.7", row["detail"])
    assert reasons == {"rehearsal-duplicate": 30, "rehearsal-contamination": 30}
    code, output = invoke_cli(["why", str(result.run_dir), rejected[0]["id"]])
    assert code == 0 and rejected[0]["detail"] in output and "pool.jsonl:" in output


def test_pool_copies_of_each_other_are_drawn_once(run_recipe):
    pool = pool_rows(30)
    pool += [{"instruction": row["instruction"].lower() + "!", "output": "Another reply here."}
             for row in pool[:10]]
    result = run_recipe(recipe("ratio = 0.5\nheld_out = 0"), files(task_rows(100), pool))
    rejected = result.rejected("rehearsal")
    assert len(rejected) == 10
    drawn = {r["id"] for r in result.dataset("train") if r["origin"] == "rehearsal"}
    for row in rejected:
        evidence = json.loads(row["evidence"])
        assert row["reason"] == "rehearsal-duplicate" and evidence["duplicate_of"] in drawn


def test_the_held_out_general_slice_is_written_apart_from_train(run_recipe):
    result = run_recipe(recipe("ratio = 0.15\nheld_out = 25"), files(task_rows(200), pool_rows(300)))
    manifest = assert_complete(result)
    held = result.dataset("general_eval")
    train = result.dataset("train")
    assert len(held) == 25 and all(r["origin"] == "rehearsal" for r in held)
    assert not {r["id"] for r in held} & {r["id"] for r in train}
    assert not {r["id"] for r in held} & {r["id"] for r in result.dataset("eval")}
    assert manifest["split"]["general_eval"] == 25 == manifest["final"]["general_eval"]
    assert manifest["split"]["general_eval_file"] == "dataset/general_eval.jsonl"
    assert all(r["origin"] != "rehearsal" for r in result.dataset("eval"))
    code, output = invoke_cli(["why", str(result.run_dir), held[0]["id"]])
    assert code == 0 and "kept in the general_eval split: dataset/general_eval.jsonl line 1" in output


def test_why_names_the_rehearsal_step_and_only_the_steps_after_it(run_recipe):
    task = task_rows(60)
    # Word for word a task record: the same messages, so the same id, but another origin.
    copy = {"instruction": task[0]["prompt"], "output": task[0]["completion"]}
    text = recipe("ratio = 0.5\nheld_out = 0", eval_fraction=0).replace(
        "\n[split]", '\n[[stages]]\nuse = "length"\n\n[split]')
    result = run_recipe(text, files(task, [copy, *pool_rows(40)]))
    assert_complete(result)
    drawn = next(r for r in result.dataset("train") if r["origin"] == "rehearsal")
    code, output = invoke_cli(["why", str(result.run_dir), drawn["id"]])
    assert code == 0, output
    lines = output.splitlines()
    where = re.search(r", from (pool\.jsonl:\d+)\)$", lines[0]).group(1)
    assert lines[1] == f"  added by step 'rehearsal', drawn from the general pool ({where})"
    assert lines[-1] == "  passed: length"
    [duplicate] = result.rejected("rehearsal")
    code, output = invoke_cli(["why", str(result.run_dir), duplicate["id"]])
    general, human = output.split(f"\n{duplicate['id']}  ")
    assert "rejected at step 'rehearsal': rehearsal-duplicate" in general
    assert "added by step 'rehearsal', drawn from the general pool (pool.jsonl:1)" in general
    assert "passed" not in general
    assert "added by" not in human and human.endswith("passed: read, rehearsal, length\n")


def test_a_fraction_holds_out_a_share_of_the_pool(run_recipe):
    result = run_recipe(recipe("held_out = 0.1"), files(task_rows(50), pool_rows(120)))
    assert len(result.dataset("general_eval")) == 12


def test_same_seed_same_bytes_whatever_the_workers(run_recipe):
    data = files(task_rows(300), pool_rows(500))
    first = run_recipe("[run]\nworkers = 1\n" + recipe(), data, name="one")
    second = run_recipe("[run]\nworkers = 2\n" + recipe(), name="two")
    other_seed = run_recipe("[run]\nseed = 5\n" + recipe(), name="seed5")
    assert_complete(first), assert_complete(second)
    assert output_digests(first.run_dir) == output_digests(second.run_dir)
    drawn = [{r["id"] for r in run.dataset("train") if r["origin"] == "rehearsal"}
             for run in (first, other_seed)]
    assert drawn[0] != drawn[1]


def test_ratio_zero_mixes_nothing(run_recipe):
    data = files(task_rows(100), pool_rows(100))
    plain = run_recipe("[[sources]]\nname = \"task\"\nuse = \"jsonl\"\npath = \"task.jsonl\"\n"
                       "[split]\neval_fraction = 0.1\n", data, name="plain")
    nothing = run_recipe(recipe("ratio = 0\nheld_out = 0"), name="nothing")
    held_only = run_recipe(recipe("ratio = 0\nheld_out = 5"), name="held")
    assert_complete(nothing)
    assert (nothing.run_dir / "dataset" / "train.jsonl").read_bytes() == \
        (plain.run_dir / "dataset" / "train.jsonl").read_bytes()
    assert not (nothing.run_dir / "dataset" / "general_eval.jsonl").exists()
    assert "rehearsal" not in nothing.manifest["split"]
    assert all(r["origin"] != "rehearsal" for r in held_only.dataset("train"))
    assert len(held_only.dataset("general_eval")) == 5


def test_a_changed_pool_or_split_reruns_the_step(run_recipe, tmp_path):
    def cached(run):  # read now: every run here writes the same run folder
        return {s["name"]: s["cached"] for s in run.manifest["steps"]}

    run_recipe(recipe(), files(task_rows(100), pool_rows(100)))
    (tmp_path / "pool.jsonl").write_text(jsonl(*pool_rows(101)))
    assert cached(run_recipe(recipe())) == {"read": True, "rehearsal": False}
    assert cached(run_recipe(recipe(eval_fraction=0.2))) == {"read": True, "rehearsal": False}
    assert cached(run_recipe(recipe(eval_fraction=0.2))) == {"read": True, "rehearsal": True}


def test_a_datasets_pool_works_like_a_file(run_recipe):
    pool = 'use = "datasets"\npath = "json"\ndata_files = "pool.jsonl"\nformat = "alpaca"'
    data = files(task_rows(100), pool_rows(100))
    from_datasets = run_recipe(recipe(pool=pool), data, name="datasets")
    from_file = run_recipe(recipe(), name="file")
    assert_complete(from_datasets)
    assert (from_datasets.run_dir / "dataset" / "train.jsonl").read_bytes() == \
        (from_file.run_dir / "dataset" / "train.jsonl").read_bytes()


@pytest.mark.parametrize("options, pool, fragments", [
    ("ratio = 0.7", None, ["stages[0].ratio: expected a value between 0.0 and 0.5, found 0.7"]),
    ("", 'use = "jsonl"\npath = "missing.jsonl"',
     ["stages[0].source.path: no file matches 'missing.jsonl'"]),
    ("", 'use = "jsonl"\npaht = "pool.jsonl"', ["stages[0].source.paht: unknown key 'paht'",
                                               "did you mean 'path'"]),
    ("", 'use = "jsonl"\npath = "pool.jsonl"\norigin = "human"',
     ["stages[0].source.origin: general records always have origin 'rehearsal'"]),
    ('count = "tokens"', None, ["stages[0]: stage 'rehearsal' counts tokens, which needs a"
                                " tokenizer: add [model]"]),
    ("held_out = 2.5", None, ["stages[0].held_out: expected a whole number of records (200)"]),
])
def test_bad_options_are_one_clear_line_at_validate(run_recipe, options, pool, fragments):
    text = recipe(options) if pool is None else recipe(options, pool=pool)
    result = run_recipe(text, files(task_rows(5), pool_rows(5)), args=["-q"])
    assert_clear_error(result, *fragments)
    code, output = invoke_cli(["validate", str(result.recipe)])
    assert code == 2 and output.count("\n") == 1 and fragments[0] in output
