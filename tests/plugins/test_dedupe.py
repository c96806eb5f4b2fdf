"""The exact-dedupe and near-dedupe stages in real runs: what is a duplicate for each compare
mode, verified similarities, survivor policies, explanations, options, the signature cache,
worker counts and bad input."""

import json
import random

import numpy as np
import pytest

from curate import hookimpl
from curate.plugins import minhash
from curate.plugins.dedupe import NearDedupe, NearDedupeOptions
from curate.plugins.dedupe_index import RecordFacts
from curate.records import Record
from curate.stages import Filter, StageContext
from curate.testing import source_table
from curate.testing import invoke_cli, jsonl
from curate.testing import messages_row as row
from support.dedupe_runs import (WORDS, changed, near_rows, recipe, rejected_lines, run_stage,
                                 source, words)
from support.shingles import python_shingles


def ids_by_line(result) -> dict[int, str]:
    return {int(json.loads(r["meta"])["from"].rsplit(":", 1)[1]): r["id"]
            for r in result.kept("read")}


def reference_jaccards(first: dict, second: dict) -> list[float]:
    """The Jaccard of each compared part (prompt, response) of two rows."""
    parts = [[m["content"] for m in r["messages"] if m["role"] != "system"]
             for r in (first, second)]
    found = []
    for one, other in zip(*parts):
        a, b = python_shingles((one,)), python_shingles((other,))
        found.append(len(a & b) / len(a | b))
    return found


def reference_jaccard(first: dict, second: dict) -> float:
    """What near-dedupe compares with its threshold: the least of the parts' Jaccards."""
    return min(reference_jaccards(first, second))


# --- exact duplicates -----------------------------------------------------------------------

@pytest.mark.parametrize("compare, expected", [
    ("prompt", {2: 1, 4: 1}), ("response", {3: 1, 4: 1}), ("both", {4: 1})])
def test_exact_duplicates_by_compare_mode(run_recipe, compare, expected):
    rows = [row("What is 2 + 2?", "It is four."), row("What is 2 + 2?", "Four, obviously."),
            row("And 3 + 1?", "It is four."), row("WHAT IS  2 + 2?", "IT IS **FOUR**.\n"),
            row("Something else", "Entirely.")]
    result = run_stage(run_recipe, rows, "exact-dedupe", f'compare = "{compare}"')
    ids = ids_by_line(result)
    rejected = rejected_lines(result, "exact-dedupe")
    assert {line: r["evidence"]["duplicate_of"] for line, r in rejected.items()} == \
        {line: ids[1] for line in expected}
    for r in rejected.values():
        assert r["reason"] == "exact-duplicate"
        assert r["evidence"]["method"] == "exact" and r["evidence"]["similarity"] == 1.0
        assert r["evidence"]["cluster_size"] == len(expected) + 1
        assert r["detail"].startswith(f"exact duplicate of {ids[1]} from data.jsonl:1: same ")
        assert r["evidence"]["duplicate_of_from"] == "data.jsonl:1"
        assert f"{len(expected) + 1} copies, kept the first" in r["detail"]


def test_normalisation_makes_exact_duplicates(run_recipe):
    variants = ["Hello, World! How are you?", "hello, world! how are you?",
                "HELLO,   WORLD!\n\nHOW ARE YOU?", "Ｈｅｌｌｏ，　Ｗｏｒｌｄ！ Ｈｏｗ ａｒｅ ｙｏｕ？",
                "Hel\u200blo, Wor\u200dld! how are you?", "**Hello**,\u00a0World! how are you?\n"]
    rows = [row(v, "Fine, thanks.") for v in variants] + [row("Hello World how are you",
                                                              "Fine, thanks.")]
    result = run_stage(run_recipe, rows, "exact-dedupe")
    assert sorted(rejected_lines(result, "exact-dedupe")) == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("stage", ["exact-dedupe", "near-dedupe"])
def test_the_system_prompt_is_not_compared(run_recipe, stage):
    rows = [row("Tell me a joke about cats.", "Cats do not laugh at jokes.", "You are terse."),
            row("Tell me a joke about cats.", "Cats do not laugh at jokes.", "You are a pirate.")]
    result = run_stage(run_recipe, rows, stage)
    assert sorted(rejected_lines(result, stage)) == [2]


# --- near duplicates ------------------------------------------------------------------------

def test_near_duplicates_are_found_and_verified(run_recipe):
    rows = near_rows()
    result = run_stage(run_recipe, rows, "near-dedupe")
    ids = ids_by_line(result)
    rejected = rejected_lines(result, "near-dedupe")
    assert sorted(rejected) == list(range(31, 41))
    for line, r in rejected.items():
        prompt, response = reference_jaccards(rows[line - 31], rows[line - 1])
        assert prompt == 1.0 and 0.8 <= response < 1
        assert r["reason"] == "near-duplicate"
        assert r["evidence"] == {"duplicate_of": ids[line - 30],
                                 "duplicate_of_from": f"data.jsonl:{line - 30}",
                                 "similarity": response, "method": "minhash",
                                 "cluster_size": 2, "compare": "both", "keep": "first",
                                 "prompt_similarity": 1.0, "response_similarity": response,
                                 "numbers_only_in_removed": [], "numbers_only_in_kept": []}
        assert r["detail"] == (f"near duplicate of {ids[line - 30]} from data.jsonl:{line - 30}"
                               f" (Jaccard prompt 1.000, response {response:.3f}; each >= 0.8,"
                               f" word 5-shingles); cluster of 2, kept the first")


def test_a_pair_under_the_threshold_is_kept(run_recipe):
    generator = random.Random(5)
    original = row(words(generator, 10), words(generator, 100))
    prompt, response = (m["content"] for m in original["messages"])
    copy = row(prompt, changed(response, generator, 3))
    similarity = reference_jaccard(original, copy)
    assert 0.6 < similarity < 0.8
    assert rejected_lines(run_stage(run_recipe, [original, copy], "near-dedupe"),
                          "near-dedupe") == {}
    lowered = run_stage(run_recipe, [original, copy], "near-dedupe", "threshold = 0.6",
                        name="lowered")
    assert rejected_lines(lowered, "near-dedupe")[2]["evidence"]["similarity"] == similarity


def high_estimate_low_jaccard_pair():
    """Two word sets with true Jaccard 0.5 whose 16-permutation signatures agree on >= 13."""
    generator = random.Random(0)
    spec = minhash.ShingleSpec("word", 1, 16)
    for _ in range(5000):
        shared, first, second = (generator.sample(WORDS, 10) for _ in range(3))
        texts = (" ".join(shared + first[:5]), " ".join(shared + second[:5]))
        sets = [set(t.split()) for t in texts]
        if len(sets[0] & sets[1]) / len(sets[0] | sets[1]) != 0.5:
            continue
        signatures, _, _ = minhash.hash_batch(spec, [(t,) for t in texts])
        if np.count_nonzero(signatures[0] == signatures[1]) >= 13:
            return texts
    raise AssertionError("no such pair found")


def test_a_high_estimate_with_a_low_jaccard_is_not_removed(run_recipe):
    first, second = high_estimate_low_jaccard_pair()
    rows = [row("Same prompt", first), row("Same prompt", second)]
    options = ('compare = "response"\nshingle_size = 1\nnum_perm = 16\nbands = 16\nrows = 1\n'
               'threshold = 0.8')
    assert rejected_lines(run_stage(run_recipe, rows, "near-dedupe", options), "near-dedupe") == {}
    lowered = run_stage(run_recipe, rows, "near-dedupe", options.replace("0.8", "0.5"),
                        name="lowered")
    assert rejected_lines(lowered, "near-dedupe")[2]["evidence"]["similarity"] == 0.5


def test_explicit_bands_and_rows_are_used(run_recipe):
    rows = near_rows(seed=3, originals=20, copies=10, changes=3)
    assert all(reference_jaccard(rows[i], rows[20 + i]) >= 0.8 for i in range(10))
    strict = run_stage(run_recipe, rows, "near-dedupe", "bands = 2\nrows = 64", name="strict")
    loose = run_stage(run_recipe, rows, "near-dedupe", "bands = 32\nrows = 4", name="loose")
    assert len(rejected_lines(strict, "near-dedupe")) < 10
    assert sorted(rejected_lines(loose, "near-dedupe")) == list(range(21, 31))


def test_char_shingles_find_near_duplicates(run_recipe):
    rows = [row("Spell it", "The colour of the sky is blue on a clear summer day."),
            row("Spell it", "The color of the sky is blue on a clear summer day!"),
            row("Spell it", "Something quite different is written here instead.")]
    result = run_stage(run_recipe, rows, "near-dedupe", 'shingle = "char"\nthreshold = 0.7')
    [rejected] = rejected_lines(result, "near-dedupe").values()
    assert "(Jaccard prompt 1.000, response 0.824; each >= 0.7, char 5-shingles)" \
        in rejected["detail"]


# --- survivor policies ----------------------------------------------------------------------

class ScoreFromSystem(Filter):
    """Test helper: copies "score X" from the system prompt into meta["quality_score"]."""

    name = "score-from-system"

    def check(self, record):
        label, _, value = record.system.partition(" ")
        if label == "score" and value.replace(".", "").isdigit():
            record.meta["quality_score"] = float(value)
        return None


class ScorePlugin:
    @hookimpl
    def register_stages(self, register):
        register(ScoreFromSystem)


POLICY_SOURCES = {
    "gen.jsonl": [row("What is 2+2?", "The answer is four.", "score 0.5"),
                  row("What is 2+2?", "the answer is four.", "score 0.9")],
    "old.jsonl": [row("What is 2+2?", "THE ANSWER  IS  FOUR.\n\n", "no score")],
    "human.jsonl": [row("What is 2+2?", "The answer is **four**.", "score 0.7"),
                    row("Unrelated", "Nothing alike at all, this one stays.", "score 0.1")],
}


@pytest.mark.parametrize("stage", ["exact-dedupe", "near-dedupe"])
@pytest.mark.parametrize("keep, survivor, kept_by", [
    ("first", "gen.jsonl:1", "the first"), ("longest", "old.jsonl:1", "the longest response"),
    ("score", "gen.jsonl:2", "the highest meta.quality_score"),
    ("human-first", "human.jsonl:1", "by origin, human first")])
def test_survivor_policies(run_recipe, curate_plugin, stage, keep, survivor, kept_by):
    curate_plugin(ScorePlugin(), name="scores")
    sources = (source("gen", "gen.jsonl", "generated") + source("old", "old.jsonl", "rehearsal")
               + source("human", "human.jsonl"))
    text = recipe(stage, f'keep = "{keep}"\n[[stages]]\nuse = "review"', sources=sources,
                  before='[[stages]]\nuse = "score-from-system"\n')
    result = run_recipe(text, {path: jsonl(*rows) for path, rows in POLICY_SOURCES.items()})
    # A generated survivor waits for review (exit status 3); the stage's output is what counts.
    assert result.exit_code == (3 if survivor.startswith("gen") else 0), result.output
    ids = {json.loads(r["meta"])["from"]: r["id"] for r in result.kept("read")}
    kept = {json.loads(r["meta"])["from"] for r in result.kept(stage)}
    assert kept == {survivor, "human.jsonl:2"}
    for rejected in result.rejected(stage):
        evidence = json.loads(rejected["evidence"])
        assert evidence["duplicate_of"] == ids[survivor] and evidence["cluster_size"] == 4
        assert evidence["duplicate_of_from"] == survivor
        assert f" from {survivor}" in rejected["detail"]
        assert rejected["detail"].endswith(f"kept {kept_by}")
    assert "no record has a numeric meta" not in result.output


@pytest.mark.parametrize("stage", ["exact-dedupe", "near-dedupe"])
def test_keep_score_without_scores_says_it_kept_the_first(run_recipe, stage):
    """A quality_score column stays in the data: no source puts it in meta."""
    rows = [{**row("What is 2+2?", "four."), "quality_score": 0.1},
            {**row("What is 2+2?", "Four."), "quality_score": 0.9}]
    result = run_stage(run_recipe, rows, stage, 'keep = "score"')
    [rejected] = rejected_lines(result, stage).values()
    assert rejected["location"] == "data.jsonl:2"
    assert rejected["detail"].endswith("kept the first: no copy has a numeric meta.quality_score")
    assert result.output.count(f'warning: {stage}: keep = "score", but no record has a numeric'
                               f" meta.quality_score, so each cluster kept its first copy: keep"
                               f' the data column with meta_columns = ["quality_score"]') == 1


@pytest.mark.parametrize("stage", ["exact-dedupe", "near-dedupe"])
def test_keep_score_ranks_by_a_data_column_the_source_keeps(run_recipe, stage):
    rows = [{**row("What is 2+2?", "four."), "quality_score": 0.1, "note": "x"},
            {**row("What is 2+2?", "Four."), "quality_score": "0.9"},  # as a CSV writes it
            {**row("What is 2+2?", "FOUR.")}]
    sources = source_table("data", "data.jsonl", format="messages",
                           meta_columns=["quality_score"])
    result = run_recipe(recipe(stage, 'keep = "score"', sources=sources),
                        {"data.jsonl": jsonl(*rows)})
    assert result.exit_code == 0, result.output
    [kept] = result.kept(stage)
    assert json.loads(kept["meta"]) == {"from": "data.jsonl:2", "quality_score": "0.9"}
    assert {line: r["detail"].endswith("kept the highest meta.quality_score")
            for line, r in rejected_lines(result, stage).items()} == {1: True, 3: True}
    assert "warning" not in result.output


def test_a_cluster_without_scores_among_scored_ones_says_so(run_recipe, curate_plugin):
    curate_plugin(ScorePlugin(), name="scores")
    rows = [row("What is 2+2?", "four.", "score 0.1"), row("What is 2+2?", "Four.", "score 0.9"),
            row("Capital of France?", "Paris", "none"), row("Capital of France?", "paris", "none")]
    text = recipe("exact-dedupe", 'keep = "score"',
                  before='[[stages]]\nuse = "score-from-system"\n')
    result = run_recipe(text, {"data.jsonl": jsonl(*rows)})
    assert result.exit_code == 0, result.output
    details = {line: r["detail"] for line, r in rejected_lines(result, "exact-dedupe").items()}
    assert details[1].endswith("kept the highest meta.quality_score")
    assert details[4].endswith("kept the first: no copy has a numeric meta.quality_score")
    assert "warning" not in result.output


def test_byte_equal_copies_name_where_the_survivor_was_read(run_recipe):
    """Identical copies share their id: the survivor's place is what tells them apart."""
    copy = row("What is 2+2?", "Four.")
    result = run_stage(run_recipe, [row("Other?", "Yes."), copy, copy], "exact-dedupe")
    [rejected] = rejected_lines(result, "exact-dedupe").values()
    assert rejected["id"] == rejected["evidence"]["duplicate_of"]
    assert rejected["detail"].startswith(f"exact duplicate of {rejected['id']} from data.jsonl:2:")


def test_ranks_put_missing_and_odd_scores_last():
    facts = RecordFacts("quality_score")
    scores = [0.5, None, float("nan"), "high", True, 0.7, 10**400, 0.7, "0.9"]
    for score in scores:
        meta = {} if score is None else {"quality_score": score}
        facts.add(Record([{"role": "user", "content": "q"},
                          {"role": "assistant", "content": "a"}], "s", meta=meta))
    assert np.argsort(facts.ranks("score")).tolist() == [6, 8, 5, 7, 0, 1, 2, 3, 4]


# --- options --------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ("bands = 16", "stages[0].rows: bands and rows go together"),
    ("rows = 8", "stages[0].bands: bands and rows go together"),
    ("bands = 20\nrows = 7", "stages[0].bands: bands x rows = 20 x 7 = 140 is more than"
                             " num_perm = 128"),
    ('storage = "redis"', "stages[0].redis_url: storage = 'redis' needs redis_url"),
    ('redis_url = "redis://localhost:6379"', "stages[0].redis_url: only used with storage"),
    ('storage = "redis"\nredis_url = "http://x"', "stages[0].redis_url: expected redis://"),
    ('keep = "last"', "stages[0].keep: expected one of 'first', 'longest', 'score',"
                      " 'human-first'"),
    ("threshold = 1.5", "stages[0].threshold: expected a value between 0.01 and 1.0"),
])
def test_option_errors_fail_validate(tmp_path, options, message):
    (tmp_path / "data.jsonl").write_text(jsonl(row("q", "a")), encoding="utf-8")
    (tmp_path / "recipe.toml").write_text(recipe("near-dedupe", options), encoding="utf-8")
    code, output = invoke_cli(["validate", str(tmp_path / "recipe.toml")])
    assert code == 2 and message in output, output


# --- signature cache ------------------------------------------------------------------------

def test_the_signature_cache_skips_records_hashed_before(run_recipe):
    rows = near_rows(seed=7, originals=40, copies=10)
    first = run_stage(run_recipe, rows[:30], "near-dedupe")
    assert "near-dedupe: hashed 30 records, reused 0 signatures" in first.output
    assert len(list((first.run_dir / "work" / "near-dedupe").glob("signatures-*.npy"))) == 1
    grown = run_stage(run_recipe, rows, "near-dedupe")
    assert "near-dedupe: hashed 20 records, reused 30 signatures" in grown.output
    fresh = run_stage(run_recipe, rows, "near-dedupe", name="fresh")
    assert "hashed 50 records, reused 0" in fresh.output
    assert grown.rejected("near-dedupe") == fresh.rejected("near-dedupe")
    assert len(grown.rejected("near-dedupe")) == 10


def test_changed_hashing_options_do_not_reuse_signatures(run_recipe):
    rows = near_rows(seed=8)
    run_stage(run_recipe, rows, "near-dedupe")
    threshold = run_stage(run_recipe, rows, "near-dedupe", "threshold = 0.85")
    assert "hashed 0 records, reused 40 signatures" in threshold.output
    resized = run_stage(run_recipe, rows, "near-dedupe", "shingle_size = 3")
    assert "hashed 40 records, reused 0 signatures" in resized.output
    assert len(list((resized.run_dir / "work" / "near-dedupe").glob("signatures-*.npy"))) == 2


def test_a_damaged_cache_is_rebuilt(run_recipe):
    rows = near_rows(seed=9)
    first = run_stage(run_recipe, rows, "near-dedupe")
    [cache] = (first.run_dir / "work" / "near-dedupe").glob("signatures-*.npy")
    cache.write_bytes(b"not numpy")
    again = run_recipe(recipe("near-dedupe"), args=["--force"])
    assert again.exit_code == 0, again.output
    assert "hashed 40 records, reused 0" in again.output
    assert again.rejected("near-dedupe") == first.rejected("near-dedupe")


def test_a_stage_without_reread_keeps_its_input_in_memory(tmp_path):
    records = [Record(r["messages"], "data") for r in near_rows(seed=12)]
    outcomes = {}
    for reread in (None, lambda: iter(records)):
        context = StageContext("near-dedupe", 0, tmp_path, tmp_path / str(reread is None),
                               print, 1, reread=reread)
        context.work_dir.mkdir()
        stage = NearDedupe(NearDedupeOptions(), context)
        outcomes[reread is None] = [(type(o).__name__, o.id, getattr(o, "detail", ""))
                                    for o in stage.process(iter(records))]
    assert outcomes[True] == outcomes[False]
    assert sum(kind == "Rejection" for kind, _, _ in outcomes[True]) == 10


# --- workers and bad input ------------------------------------------------------------------

@pytest.mark.parametrize("stage", ["exact-dedupe", "near-dedupe"])
def test_worker_count_does_not_change_the_result(run_recipe, stage):
    rows = near_rows(seed=11, originals=1100, copies=300)
    rows += [rows[i] for i in range(0, 1100, 7)]
    one = run_stage(run_recipe, rows, stage, workers=1, name="one")
    three = run_stage(run_recipe, rows, stage, workers=3, name="three")
    assert one.rejected(stage) == three.rejected(stage)
    assert one.kept(stage) == three.kept(stage)
    assert len(one.rejected(stage)) >= 158


BAD_ROWS = [row("", "An answer to nothing."), row("A question with no answer", ""), row("", ""),
            row("Big", "word " * 200_000), row("Control\x00\x01\x07 chars\x1b[31m", "red\x7f"),
            row("مرحبا بالعالم، كيف حالك؟", "أنا بخير، شكرا لك"),
            row("Emoji 🎉🎉👨‍👩‍👧", "🙂 " * 50), row("zero\u200bwidth\u200d text", "hid\ufeffden"),
            row("zerowidth text", "hidden"), row("", ""), row("\u202eevil\u202c", "\u200f")]


@pytest.mark.parametrize("stage, options", [
    ("exact-dedupe", ""), ("near-dedupe", ""), ("near-dedupe", 'shingle = "char"'),
    ("near-dedupe", 'compare = "prompt"')])
def test_bad_input_is_kept_or_rejected_never_a_crash(run_recipe, stage, options):
    result = run_stage(run_recipe, BAD_ROWS, stage, options, workers=2)
    rejected = rejected_lines(result, stage)
    blank_prompts = result.rejected("read")
    assert {r["reason"] for r in blank_prompts} == {"empty-turn"} and len(blank_prompts) == 3
    assert len(result.kept(stage)) + len(rejected) + len(blank_prompts) == len(BAD_ROWS)
    assert all(r["reason"] in ("exact-duplicate", "near-duplicate") for r in rejected.values())
    assert 9 in rejected  # the zero-width characters hid nothing
