"""Requests the server does not answer, through real `curate run`s: one refused request (a
prompt past the model's context) or one response without an answer costs that request, not the
stage, is never cached, and the next run asks it again; a refusal is the model's answer; a body
that is not a chat completion, or no answer to any request, stops the stage with one line; and
reviewers, and a rerun whose answers are all cached, need no API key."""

import json

from curate.testing import assert_clear_error, assert_complete, invoke_cli
from support.misbehaviours import CONTEXT_TOO_LONG, completion, misbehave

SELF_INSTRUCT = {"use": "self-instruct", "count": 4, "pairs_per_request": 1,
                 "seeds_per_request": 2}
"""Four requests, whose prompts say "(set 1)" to "(set 4)"."""


def asked(server, text: str) -> int:
    return sum(text in message["content"] for body in server.requests
               for message in body["messages"] if message["role"] == "user")


def formats(server) -> set:
    return {(body.get("response_format") or {}).get("type") for body in server.requests}


def generated(result) -> list[dict]:
    return [row for row in result.kept("generate") if row["origin"] == "generated"]


def test_one_refused_request_is_one_rejection_and_the_next_run_asks_it_again(
        server, generate_recipe, files, run_recipe):
    undo = misbehave(server, "(set 2)", 400, CONTEXT_TOO_LONG)
    text = generate_recipe(SELF_INSTRUCT)
    result = run_recipe(text, files=files)
    assert_complete(result)
    [rejected] = result.rejected("generate")
    assert rejected["reason"] == "malformed-generation"
    seeds = json.loads(rejected["meta"])["generation"]["seeds"]
    assert rejected["detail"].startswith("no answer: the server refused the request (HTTP 400:"
                                         " This model's maximum context length is 4096 tokens.")
    assert f"seed records: {', '.join(seeds)}; not cached: the next run asks again" in (
        rejected["detail"])
    assert len(generated(result)) == 3 and formats(server) == {"json_schema"}
    assert "1 unanswered (rejected, not cached: the next run asks again)" in result.output
    # run_recipe ran twice (before and after the approval): each run asked it again, and only it
    assert asked(server, "(set 2)") == 2 and server.count == 3 + 2
    undo()
    again = run_recipe(text)
    assert_complete(again)
    assert asked(server, "(set 2)") == 3 and server.count == 3 + 3
    assert len(generated(again)) == 4 and not again.rejected("generate")


def test_a_response_without_an_answer_is_retried_never_cached_and_asked_next_run(
        server, generate_recipe, files, run_recipe):
    undo = misbehave(server, "(set 1)", payload=completion(content=None))
    text = generate_recipe(SELF_INSTRUCT, max_attempts=2)
    result = run_recipe(text, files=files)
    assert_complete(result)
    [rejected] = result.rejected("generate")
    assert rejected["detail"].startswith("no answer: the server sent an empty answer"
                                         " (finish_reason stop) after 2 attempts")
    assert asked(server, "(set 1)") == 2 * 2  # two runs (before and after the approval)
    rerun = run_recipe(text, args=["--force"])  # --force too: nothing replays the non-answer
    assert asked(server, "(set 1)") == 3 * 2 and server.count == 3 + 3 * 2
    assert len(rerun.rejected("generate")) == 1
    undo()
    answered = run_recipe(text)
    assert_complete(answered)
    assert asked(server, "(set 1)") == 3 * 2 + 1 and len(generated(answered)) == 4


def test_a_refusal_is_cached_and_rejected_with_the_models_words(server, generate_recipe, files,
                                                                run_recipe):
    misbehave(server, "(set 3)", payload=completion(content=None,
                                                    refusal="I can't help with that."))
    text = generate_recipe(SELF_INSTRUCT)
    result = run_recipe(text, files=files)
    [rejected] = result.rejected("generate")
    assert rejected["detail"] == "the model refused: \"I can't help with that.\""
    assert rejected["raw"] == "I can't help with that."
    run_recipe(text, args=["--force"])
    assert server.count == 4


def test_no_answer_to_any_request_stops_the_stage(server, generate_recipe, files, run_recipe):
    misbehave(server, "Here are examples", payload={"object": "error",
                                                    "message": "model overloaded"})
    result = run_recipe(generate_recipe(SELF_INSTRUCT, max_attempts=2), files=files, args=["-q"])
    assert_clear_error(result, "stage 'generate': every request failed; the first: no answer:",
                       "(model overloaded) after 2 attempts")


def test_a_body_that_is_not_a_chat_completion_stops_the_stage_with_a_hint(
        server, generate_recipe, files, run_recipe):
    misbehave(server, "Here are examples", body=b"<html>oops</html>", content_type="text/html")
    result = run_recipe(generate_recipe(SELF_INSTRUCT), files=files, args=["-q"])
    assert_clear_error(result, f"{server.base_url}: the server answered with something other"
                       f" than a chat completion", "does it end in /v1?")


def test_reviewers_and_a_rerun_from_the_cache_need_no_api_key(server, generate_recipe, files,
                                                              run_recipe, monkeypatch):
    result = run_recipe(generate_recipe(SELF_INSTRUCT), files=files)
    assert_complete(result)
    monkeypatch.delenv("CURATE_TEST_OPENAI_KEY")
    where = [str(result.recipe), "--run-dir", str(result.run_dir)]
    code, output = invoke_cli(["review", "list", *where])
    assert code == 0, output
    code, output = invoke_cli(["validate", str(result.recipe)])
    assert code == 0, output
    code, output = invoke_cli(["run", *where, "--force"])
    assert code == 0, output
    assert "4 requests (4 answered from the cache)" in output and server.count == 4
