"""Sending a plan: answers in request order whatever the timing, the SQLite response cache,
budgets counted in order, malformed answers asked again up to the limit, and answers read
as JSON and checked against their schema."""

import json

import pytest

from curate.errors import CurateError
from curate.generation import GenerationRequest, object_schema
from curate.plugins.generate.batch import Budget, RequestBatch, read_answer
from curate.plugins.generate.cache import Answer, ResponseCache
from curate.plugins.generate.endpoint import Endpoint, RetryPolicy
from curate.plugins.generate.stage import GenerateOptions, plan_requests
from support.misbehaviours import CONTEXT_TOO_LONG, completion, misbehave

SCHEMA = object_schema(answer={"type": "string", "minLength": 1})


def plan(server, prompts, **options):
    settings = GenerateOptions(base_url=server.base_url, model="test-model",
                               strategy={"use": "answer"}, **options)
    requests = [GenerationRequest([{"role": "user", "content": p}], SCHEMA) for p in prompts]
    return plan_requests(requests, settings, seed=7)


def batch(server, cache, concurrency=4, malformed_attempts=1, budget=None):
    endpoint = Endpoint(server.base_url, "test-model", "CURATE_TEST_OPENAI_KEY", 5.0,
                        RetryPolicy(2, 0.01, 1.0))
    return RequestBatch(endpoint, cache, budget or Budget(None, None, malformed_attempts),
                        concurrency, malformed_attempts)


def answer(content, finish_reason="stop"):
    return Answer(content, finish_reason, 1, 1, "m", "2026-01-01T00:00:00+00:00")


@pytest.fixture
def cache(tmp_path):
    opened = ResponseCache(tmp_path / "cache" / "generate.sqlite")
    yield opened
    opened.close()


def test_answers_come_in_request_order_whatever_their_timing(server, cache):
    server.rules["slow"] = "slow"
    server.slow_seconds = 0.5
    prompts = ["slow one", "fast two", "fast three", "slow four", "fast five"]
    exchanges = batch(server, cache).run(plan(server, prompts))
    assert [json.loads(e.answer.content)["answer"].split(": ")[1] for e in exchanges] == prompts
    assert len(cache) == 5


def test_a_second_run_asks_nothing(server, cache, tmp_path):
    planned = plan(server, ["one", "two", "three"])
    first = batch(server, cache).run(planned)
    again = batch(server, ResponseCache(cache.path)).run(planned)
    assert server.count == 3
    assert [e.answer for e in again] == [e.answer for e in first]
    assert [e.cached for e in again] == [1, 1, 1]


def test_the_cache_keeps_the_first_answer_and_its_time(cache):
    cache.put("key", "{}", answer("first"))
    cache.put("key", "{}", Answer("second", "stop", 1, 1, "m", "2027-01-01T00:00:00+00:00"))
    assert cache.get("key") == answer("first") and cache.get("other") is None


def test_a_damaged_cache_file_is_one_clear_error(tmp_path):
    damaged = tmp_path / "generate.sqlite"
    damaged.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CurateError, match="cannot open the response cache"):
        ResponseCache(damaged)


def test_keys_cover_what_the_answer_depends_on_and_never_the_api_key(server):
    [base] = plan(server, ["same"])
    assert plan(server, ["same"])[0].key == base.key
    assert plan(server, ["other"])[0].key != base.key
    assert plan(server, ["same"], temperature=0.1)[0].key != base.key
    assert plan(server, ["same"], max_answer_tokens=9)[0].key != base.key
    assert base.attempt(1)[0] != base.key
    assert server.api_key not in base.attempt(0)[1]
    assert json.loads(base.attempt(0)[1])["base_url"] == server.base_url


def test_identical_requests_are_sent_once(server):
    assert len(plan(server, ["same", "same", "other"])) == 2


def test_a_malformed_answer_is_asked_again_with_another_seed(server, cache):
    server.script("malformed")
    [exchange] = batch(server, cache, malformed_attempts=3).run(plan(server, ["q"]))
    assert exchange.error is None and len(exchange.attempts) == 2
    assert [body["seed"] for body in server.requests] == [7, 8]


def test_malformed_attempts_are_limited(server, cache):
    server.rules["q"] = "malformed"
    [exchange] = batch(server, cache, malformed_attempts=2).run(plan(server, ["q"]))
    assert "not JSON" in exchange.error and server.count == 2


def test_the_request_budget_counts_in_order_and_stops(server, cache):
    budget = Budget(max_requests=3, max_tokens=None)
    exchanges = batch(server, cache, budget=budget).run(plan(server, list("abcdef")))
    assert len(exchanges) == 3 and server.count == 3 and budget.reached() == "max_requests = 3"


def test_every_malformed_retry_counts_and_max_requests_is_never_passed(server, cache):
    server.rules["q"] = "malformed"
    budget = Budget(max_requests=5, max_tokens=None, tries_per_request=3)
    exchanges = batch(server, cache, malformed_attempts=3, budget=budget).run(
        plan(server, [f"q{i}" for i in range(6)]))
    assert server.count == budget.requests == 3 and len(exchanges) == 1
    assert budget.reached() == ("max_requests = 5 (2 left; one more request may need"
                                " malformed_attempts = 3)")


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_requests_a_budget_pays_for_do_not_depend_on_concurrency(server, cache,
                                                                      concurrency):
    server.rules["bad"] = "malformed"
    budget = Budget(max_requests=5, max_tokens=None, tries_per_request=2)
    exchanges = batch(server, cache, concurrency, malformed_attempts=2, budget=budget).run(
        plan(server, ["bad a", "b", "c", "d", "e"]))
    assert [len(e.attempts) for e in exchanges] == [2, 1, 1]
    assert server.count == budget.requests == 4


def test_retries_after_a_rate_limit_do_not_count_against_max_requests(server, cache):
    server.retry_after = "0"
    server.script("rate-limit")
    budget = Budget(max_requests=2, max_tokens=None)
    sender = batch(server, cache, concurrency=1, budget=budget)
    exchanges = sender.run(plan(server, list("abc")))
    assert len(exchanges) == 2 and budget.requests == 2 and server.count == 3
    assert sender.endpoint.resent == 1


@pytest.mark.parametrize("concurrency", [1, 3])
def test_the_server_never_sees_more_than_concurrency_requests_at_once(server, cache,
                                                                       concurrency):
    server.rules["q"] = "slow"
    server.slow_seconds = 0.2
    server.answer = lambda body: "not json" if body["seed"] == 7 else '{"answer": "yes"}'
    exchanges = batch(server, cache, concurrency, malformed_attempts=2).run(
        plan(server, [f"q{i}" for i in range(6)]))
    assert [len(e.attempts) for e in exchanges] == [2] * 6 and server.count == 12
    assert server.peak_in_flight == concurrency


def test_the_token_budget_stops_after_the_answer_that_reaches_it(server, cache):
    budget = Budget(max_requests=None, max_tokens=40)
    exchanges = batch(server, cache, concurrency=1, budget=budget).run(plan(server, list("abcd")))
    assert [e.tokens for e in exchanges] == [36, 36] and budget.reached() == "max_tokens = 40"


def test_a_failure_stops_the_batch_with_the_answers_so_far_cached(server, cache):
    server.rules["bad"] = "server-error"
    with pytest.raises(CurateError, match="HTTP 500"):
        batch(server, cache, concurrency=1).run(plan(server, ["one", "two", "bad", "four"]))
    assert len(cache) == 2


@pytest.mark.parametrize("content, finish, expected", [
    ('{"answer": "4"}', "stop", ({"answer": "4"}, None)),
    ('```json\n{"answer": "4"}\n```', "stop", ({"answer": "4"}, None)),
    ("four", "stop", (None, "the answer is not JSON (Expecting value: line 1 column 1 (char"
                             " 0))")),
    ('{"answer": "fo', "length", (None, "the answer is not JSON (Unterminated string starting at:"
                                        " line 1 column 12 (char 11)) (cut off: the answer"
                                        " reached max_answer_tokens)")),
    ('{"answer": 4}', "stop", (None, "the answer does not fit the schema: $.answer: expected"
                                     " string, found number")),
    ('{"answer": "  "}', "stop", (None, "the answer does not fit the schema: $.answer: text is"
                                        " empty")),
    ('{"answer": "4", "why": "x"}', "stop", (None, "the answer does not fit the schema: $:"
                                                   " unexpected key 'why'")),
])
def test_reading_an_answer(content, finish, expected):
    assert read_answer(answer(content, finish), SCHEMA) == expected


# ---- requests without an answer, refusals, and the response_format in the key ---------------

def test_a_request_without_an_answer_is_its_own_error_and_is_not_cached(server, cache):
    misbehave(server, "two", 400, CONTEXT_TOO_LONG)
    planned = plan(server, ["one", "two", "three"])
    exchanges = batch(server, cache).run(planned)
    assert [e.failed for e in exchanges] == [False, True, False]
    assert exchanges[1].error.startswith("no answer: the server refused the request (HTTP 400:"
                                         " This model's maximum context length is 4096 tokens.")
    assert exchanges[1].error.endswith("not cached: the next run asks again)")
    assert len(cache) == 2
    batch(server, cache).run(planned)
    assert server.count == 4  # only the unanswered request is asked again


def test_a_non_answer_cached_by_an_older_version_is_asked_again(server, cache):
    [planned] = plan(server, ["one"])
    key, canonical, _ = planned.attempt(0)
    cache.put(key, canonical, answer(""))
    [exchange] = batch(server, cache).run([planned])
    assert server.count == 1 and exchange.error is None and exchange.answer.content


def test_a_refusal_is_cached_and_read_as_one(server, cache):
    misbehave(server, "one", payload=completion(content=None, refusal="I can't help with that."))
    planned = plan(server, ["one"])
    [exchange] = batch(server, cache).run(planned)
    assert exchange.error == "the model refused" and exchange.answer.content == (
        "I can't help with that.")
    [again] = batch(server, cache).run(planned)
    assert server.count == 1 and again.cached == 1 and again.answer.refused


def test_an_answer_asked_with_a_weaker_format_is_cached_under_a_key_naming_it(server, cache):
    server.refused_formats = {"json_schema"}
    [planned] = plan(server, ["one"])
    [exchange] = batch(server, cache).run([planned])
    key, canonical, _ = planned.attempt(0, "json_object")
    assert exchange.attempts[0][0] == key != planned.key
    assert cache.get(key).response_format == "json_object" and cache.get(planned.key) is None
    [again] = batch(server, cache).run([planned])
    assert again.cached == 1 and server.count == 2  # the 400 and the answer, nothing more


def test_a_cache_file_from_before_refusals_gets_the_new_columns(tmp_path):
    import sqlite3

    path = tmp_path / "generate.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, request TEXT NOT NULL, content TEXT"
                " NOT NULL, finish_reason TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,"
                " completion_tokens INTEGER NOT NULL, model TEXT NOT NULL, time TEXT NOT NULL)")
    old.execute("INSERT INTO answers VALUES ('k', '{}', '{\"a\": 1}', 'stop', 1, 1, 'm', 't')")
    old.commit()
    old.close()
    cache = ResponseCache(path)
    assert cache.get("k") == Answer('{"a": 1}', "stop", 1, 1, "m", "t")
    cache.close()
