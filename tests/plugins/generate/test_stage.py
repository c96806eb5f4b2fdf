"""The generate stage end to end: real `curate run`s whose generate stage drives the real openai
client against a scripted server on 127.0.0.1: each strategy, the accounting of added records,
provenance, reruns served from the response cache, budgets, malformed answers, the API key kept
out of the run folder, the example recipe, and a strategy from a plugin."""

import json
import time

from curate import hookimpl
from curate.cli.run import EXIT_REVIEW_PENDING
from curate.generation import Draft, GenerationRequest, GenerationStrategy, object_schema
from curate.testing import assert_complete, invoke_cli, output_digests

SELF_INSTRUCT = {"use": "self-instruct", "count": 4, "pairs_per_request": 2,
                 "seeds_per_request": 2}


def generated(result, step="generate"):
    return [row for row in result.kept(step) if row["origin"] == "generated"]


def meta(row):
    return json.loads(row["meta"])


def test_self_instruct_adds_records_with_their_provenance(server, generate_recipe, files,
                                                          run_recipe):
    result = run_recipe(generate_recipe(SELF_INSTRUCT), files=files)
    manifest = assert_complete(result)
    step = manifest["steps"][1]
    assert (step["in"], step["added"], step["kept"], step["rejected"]) == (6, 4, 10, 0)
    assert manifest["final"]["added"] == 4 and manifest["final"]["accounted"] == 10
    assert "6 input rows + 4 generated -> 10 train" in result.output
    assert server.count == 2
    read_ids = {row["id"] for row in result.kept("read")}
    made = generated(result)
    assert len(made) == 4 and {row["source"] for row in made} == {"generate"}
    for row in made:
        provenance = meta(row)["generation"]
        assert provenance["model"] == "test-model" and provenance["strategy"] == "self-instruct"
        assert len(provenance["seeds"]) == 2 and set(provenance["seeds"]) <= read_ids
        assert len(provenance["request_key"]) == 64 and len(provenance["prompt_hash"]) == 16
        assert "time" not in provenance  # it would make every fresh run differ
        assert row["messages"][-1]["content"].startswith("response ")
    sent = server.requests[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["temperature"] == 0.7 and sent["seed"] == 1 and sent["max_tokens"] == 1024
    system = sent["messages"][0]
    assert system["role"] == "system" and "JSON schema" in system["content"]


def test_seeds_come_from_every_source_in_turn(server, generate_recipe, files, run_recipe):
    strategy = {**SELF_INSTRUCT, "pairs_per_request": 1}
    result = run_recipe(generate_recipe(strategy), files=files)
    assert_complete(result)
    source_of = {row["id"]: row["source"] for row in result.kept("read")}
    for row in generated(result):
        seeds = meta(row)["generation"]["seeds"]
        assert sorted(source_of[seed] for seed in seeds) == ["chats", "qa"]


def test_a_rerun_is_served_from_the_cache_and_is_byte_identical(server, generate_recipe, files,
                                                                run_recipe):
    first = run_recipe(generate_recipe(SELF_INSTRUCT), files=files)
    before = output_digests(first.run_dir)
    again = run_recipe(generate_recipe(SELF_INSTRUCT), args=["--force"])
    assert_complete(again)
    assert server.count == 2  # nothing asked twice
    assert "2 requests (2 answered from the cache)" in again.output.replace(",", "")
    assert output_digests(again.run_dir) == before


def test_two_fresh_runs_against_a_deterministic_server_write_the_same_bytes(
        server, generate_recipe, files, run_recipe):
    def generate_step(result):
        return {path: digest for path, digest in output_digests(result.run_dir).items()
                if "-generate/" in path}

    first = run_recipe(generate_recipe(SELF_INSTRUCT), files=files, name="first")
    time.sleep(1.1)  # answer times are to the second
    second = run_recipe(generate_recipe(SELF_INSTRUCT), name="second")
    assert server.count == 4  # each run has its own response cache
    assert generate_step(first) and generate_step(second) == generate_step(first)


def test_the_api_key_never_reaches_the_run_folder_or_the_output(server, generate_recipe, files,
                                                               run_recipe):
    result = run_recipe(generate_recipe(SELF_INSTRUCT), files=files, args=["-v"])
    assert_complete(result)
    key = server.api_key.encode()
    assert server.headers[0]["authorization"] == f"Bearer {server.api_key}"
    leaks = [path for path in result.run_dir.rglob("*") if path.is_file()
             and key in path.read_bytes()]
    assert leaks == [] and server.api_key not in result.output


def test_answer_replaces_prompt_only_records(server, generate_recipe, files, run_recipe):
    files["qa.jsonl"] += json.dumps({"prompt": "Why is the sky blue?", "completion": ""}) + "\n"
    result = run_recipe(generate_recipe({"use": "answer"}), files=files)
    manifest = assert_complete(result)
    assert server.count == 1
    [rejected] = result.rejected("generate")
    [made] = generated(result)
    assert rejected["reason"] == "answered"
    assert json.loads(rejected["evidence"]) == {"answered_by": made["id"]}
    assert made["messages"][0] == {"role": "user", "content": "Why is the sky blue?"}
    assert made["messages"][1]["content"].startswith("response ")
    assert made["source"] == "qa" and meta(made)["generation"]["seeds"] == [rejected["id"]]
    assert manifest["final"] == {"input": 7, "added": 1, "rejected": 1, "train": 7, "eval": 0,
                                 "accounted": 8}
    code, why = invoke_cli(["why", str(result.run_dir), rejected["id"]])
    assert code == 0 and "rejected at step 'generate': answered" in why and made["id"] in why


def test_augment_paraphrases_the_smaller_source(server, generate_recipe, files, run_recipe):
    strategy = {"use": "augment", "min_share": 0.5}
    result = run_recipe(generate_recipe(strategy), files=files)
    assert_complete(result)
    made = generated(result)
    assert len(made) == 1 and made[0]["source"] == "chats"  # 2 of 6 records; half is 3
    [seed] = meta(made[0])["generation"]["seeds"]
    original = next(r for r in result.kept("read") if r["id"] == seed)
    assert made[0]["messages"][1] == original["messages"][1]  # the answer stays
    assert made[0]["messages"][0]["content"] != original["messages"][0]["content"]


def test_template_writes_new_responses(server, generate_recipe, files, run_recipe):
    strategy = {"use": "template", "template": "Say it kindly: {response} (to: {prompt})",
                "output": "response", "limit": 3}
    result = run_recipe(generate_recipe(strategy), files=files)
    assert_complete(result)
    made = generated(result)
    assert len(made) == 3 and server.count == 3
    assert all(m["messages"][-1]["content"].startswith("response ") for m in made)
    assert all("Say it kindly: Answer" in body["messages"][-1]["content"]
               or "Say it kindly: Order" in body["messages"][-1]["content"]
               for body in server.requests)


def test_a_malformed_answer_is_a_rejection_with_the_raw_text(server, generate_recipe, files,
                                                            run_recipe):
    files["qa.jsonl"] += json.dumps({"prompt": "Why is the sky blue?", "completion": ""}) + "\n"
    server.rules["sky"] = "malformed"
    result = run_recipe(generate_recipe({"use": "answer"}, malformed_attempts=2), files=files)
    manifest = assert_complete(result)
    assert server.count == 2  # asked again once, with another seed
    assert [body["seed"] for body in server.requests] == [1, 2]
    [rejected] = result.rejected("generate")
    assert rejected["reason"] == "malformed-generation" and rejected["origin"] == "generated"
    assert rejected["raw"] == "Sure! Here is {not json"
    assert "not JSON" in rejected["detail"] and "after 2 attempts" in rejected["detail"]
    assert json.loads(rejected["evidence"])["attempts"] == 2
    assert manifest["final"]["train"] == 7  # the prompt-only record stays, unanswered


def test_records_that_do_not_fit_the_schema_are_rejected(server, generate_recipe, files,
                                                         run_recipe):
    server.answer = lambda body: json.dumps({"pairs": [{"prompt": "only a prompt"}]})
    result = run_recipe(generate_recipe(SELF_INSTRUCT), files=files)
    assert_complete(result)
    details = [row["detail"] for row in result.rejected("generate")]
    assert len(details) == 2 and all("$.pairs[0]: missing key 'response'" in d for d in details)


def test_generated_records_pass_through_the_stages_that_follow(server, generate_recipe, files,
                                                               run_recipe):
    copy = {"pairs": [{"prompt": "Question 0 about kettles?", "response": "Answer 0: boil it"
                       " twice."}, {"prompt": "Short one?", "response": "no"}]}
    server.answer = lambda body: json.dumps(copy)
    after = '[[stages]]\nuse = "exact-dedupe"\n\n[[stages]]\nuse = "length"\nmin_chars = 5\n'
    strategy = {**SELF_INSTRUCT, "count": 2}
    result = run_recipe(generate_recipe(strategy, after=after), files=files)
    assert_complete(result)
    [duplicate] = result.rejected("exact-dedupe")
    [short] = result.rejected("length")
    assert duplicate["origin"] == short["origin"] == "generated"


def test_why_names_the_generate_step_and_only_the_steps_after_it(server, generate_recipe,
                                                               files, run_recipe):
    after = '[[stages]]\nuse = "length"\nmin_chars = 5\n'
    result = run_recipe(generate_recipe(SELF_INSTRUCT, after=after), files=files)
    names = [step["name"] for step in assert_complete(result)["steps"]]
    made = [row for row in result.dataset("train") if row["origin"] == "generated"][0]
    code, output = invoke_cli(["why", str(result.run_dir), made["id"]])
    assert code == 0, output
    lines = output.splitlines()
    assert lines[1] == "  added by step 'generate' (self-instruct, model test-model)"
    after_generate = names[names.index("generate") + 1:]
    assert after_generate[0] == "length" and lines[-1] == f"  passed: {', '.join(after_generate)}"
    read = next(row for row in result.dataset("train") if row["origin"] == "human")
    code, output = invoke_cli(["why", str(result.run_dir), read["id"]])
    assert "added by" not in output and output.endswith(f"passed: {', '.join(names)}\n")


def test_a_request_budget_stops_cleanly_and_a_larger_one_continues(server, generate_recipe, files,
                                                                   run_recipe):
    strategy = {**SELF_INSTRUCT, "count": 6, "pairs_per_request": 1}
    result = run_recipe(generate_recipe(strategy, max_requests=2, concurrency=1), files=files)
    assert_complete(result)
    assert server.count == 2 and len(generated(result)) == 2
    assert "stopped at max_requests = 2: 2 of 6 planned requests done, 4 not sent" in result.output
    more = run_recipe(generate_recipe(strategy, max_requests=6, concurrency=1))
    assert_complete(more)
    assert server.count == 6 and len(generated(more)) == 6


def test_malformed_retries_count_against_max_requests_and_rate_limits_do_not(
        server, generate_recipe, files, run_recipe):
    server.retry_after = "0"
    server.script("rate-limit", "malformed", "malformed")
    strategy = {**SELF_INSTRUCT, "count": 6, "pairs_per_request": 1}
    result = run_recipe(generate_recipe(strategy, max_requests=3, malformed_attempts=2,
                                        concurrency=1), files=files)
    assert_complete(result)
    assert server.count == 3 and len(result.rejected("generate")) == 1
    assert ("2 requests (0 answered from the cache)" in result.output
            and "1 malformed answers, 1 sent again after 429/5xx/timeouts (not counted in"
                " max_requests); stopped at max_requests = 3 (1 left; one more request may need"
                " malformed_attempts = 2): 1 of 6 planned requests done, 5 not sent"
            in result.output)


def test_a_token_budget_stops_after_the_answer_that_reaches_it(server, generate_recipe, files,
                                                               run_recipe):
    strategy = {**SELF_INSTRUCT, "count": 6, "pairs_per_request": 1}
    result = run_recipe(generate_recipe(strategy, max_tokens=1, concurrency=1), files=files)
    assert_complete(result)
    assert server.count == 1 and len(generated(result)) == 1
    assert "stopped at max_tokens = 1: 1 of 6 planned requests done" in result.output


# ---- the example recipe and a third-party strategy -----------------------------------------

def test_the_example_recipe_runs_against_a_local_server(server, repo, tmp_path):
    recipe = repo / "recipes" / "generate.toml"
    (tmp_path / "data").mkdir()
    data = repo / "recipes" / "data" / "support_chats.jsonl"
    (tmp_path / "data" / data.name).write_bytes(data.read_bytes())
    text = recipe.read_text().replace("http://127.0.0.1:8000/v1", server.base_url)
    (tmp_path / recipe.name).write_text(text)
    server.models.append("Qwen/Qwen2.5-1.5B-Instruct")
    server.api_key = None  # the recipe's local server needs no key
    run = ["run", str(tmp_path / recipe.name), "--run-dir", str(tmp_path / "run")]
    code, output = invoke_cli(run)
    assert code == EXIT_REVIEW_PENDING and "records wait for review" in output, output
    assert not (tmp_path / "run" / "dataset" / "train.jsonl").exists()
    code, output = invoke_cli(["review", "approve", str(tmp_path / recipe.name), "--all",
                               "--run-dir", str(tmp_path / "run")])
    assert code == 0, output
    code, output = invoke_cli(run)
    assert code == 0, output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    final = manifest["final"]
    assert final["added"] == 20 and final["accounted"] == final["input"] + 20
    assert server.count == 20


def test_the_example_recipe_checks_what_reviewers_edit(server, repo, tmp_path):
    recipe = tmp_path / "generate.toml"
    (tmp_path / "data").mkdir()
    data = repo / "recipes" / "data" / "support_chats.jsonl"
    (tmp_path / "data" / data.name).write_bytes(data.read_bytes())
    recipe.write_text((repo / "recipes" / "generate.toml").read_text()
                      .replace("http://127.0.0.1:8000/v1", server.base_url)
                      .replace("count = 20", "count = 4"))
    server.models.append("Qwen/Qwen2.5-1.5B-Instruct")
    server.api_key = None
    where = [str(recipe), "--run-dir", str(tmp_path / "run")]
    assert invoke_cli(["run", *where])[0] == EXIT_REVIEW_PENDING
    import pyarrow.parquet as pq

    human = pq.read_table(tmp_path / "run" / "stages" / "00-read" / "kept.parquet").to_pylist()[0]
    exported = tmp_path / "candidates.jsonl"
    assert invoke_cli(["review", "export", *where[:1], "-o", str(exported), *where[1:]])[0] == 0
    candidates = [json.loads(line) for line in exported.read_text().splitlines()]
    edits = [[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "k"}],
             [{"role": m["role"], "content": m["content"]} for m in human["messages"]],
             [{"role": "user", "content": "Tell me all."}, {"role": "assistant",
                                                            "content": "blah " * 1000}]]
    for candidate, edited in zip(candidates, edits):
        candidate.update(status="edited", edited=edited)
    candidates[3]["status"] = "approved"
    exported.write_text("".join(json.dumps(c) + "\n" for c in candidates))
    assert invoke_cli(["review", "import", *where[:1], str(exported), *where[1:]])[0] == 0
    code, output = invoke_cli(["run", *where])
    assert code == 0, output
    rows = [json.loads(line) for name in ("train", "eval")
            for line in (tmp_path / "run" / "dataset" / f"{name}.jsonl").read_text().splitlines()]
    answers = [row["messages"][-1]["content"] for row in rows]
    assert "k" not in answers and not any(a.startswith("blah") for a in answers)
    assert answers.count(human["messages"][-1]["content"]) == 1
    assert [row["origin"] for row in rows].count("generated") == 1


class HarderQuestions(GenerationStrategy):
    """A third-party strategy."""

    name = "harder"

    def requests(self, records, rng):
        for record in records[:2]:
            yield GenerationRequest([{"role": "user", "content": f"Harder: {record.prompt}"}],
                                    schema=object_schema(prompt="string", response="string"),
                                    seeds=(record.id,), context={"source": record.source})

    def parse(self, answer, request):
        return [Draft.pair(answer["prompt"], answer["response"], request.context["source"])]


class HarderPlugin:
    """Registers it, the way an installed plugin would."""

    @staticmethod
    @hookimpl
    def register_generation_strategies(register):
        register(HarderQuestions)


def test_a_plugin_adds_a_strategy(server, generate_recipe, files, run_recipe, curate_plugin):
    curate_plugin(HarderPlugin, name="harder_questions")
    result = run_recipe(generate_recipe({"use": "harder"}), files=files)
    assert_complete(result)
    made = generated(result)
    assert [meta(row)["generation"]["strategy"] for row in made] == ["harder", "harder"]
    assert made[0]["messages"][0]["content"].startswith("prompt ")
