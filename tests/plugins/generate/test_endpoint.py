"""The endpoint: the real openai client against the scripted server on 127.0.0.1. Retries on
429 (honouring Retry-After), 500, timeouts, truncated bodies and dropped connections; the
response_format fallback; one clear message, without the key, for what cannot be retried."""

import re
import threading
import time

import pytest

from curate.errors import CurateError
from curate.plugins.generate.endpoint import Endpoint, RequestFailed, RetryPolicy, Stopped
from support.misbehaviours import CONTEXT_TOO_LONG, completion, misbehave

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
PARAMS = {"temperature": 0.0, "max_tokens": 64, "seed": 1}
ASK = [{"role": "user", "content": "What is 2 + 2?"}]


def endpoint(server, model="test-model", attempts=3, timeout=5.0, env="CURATE_TEST_OPENAI_KEY"):
    return Endpoint(server.base_url, model, env, timeout, RetryPolicy(attempts, 0.01, 5.0))


def test_an_answer_with_its_usage_and_time(server):
    answer = endpoint(server).ask("k", ASK, SCHEMA, PARAMS)
    assert answer.content == '{"answer": "answer 38d46ad3: What is 2 + 2?"}'
    assert (answer.prompt_tokens, answer.completion_tokens, answer.model) == (5, 8, "test-model")
    assert answer.finish_reason == "stop" and answer.time.endswith("+00:00")
    assert server.requests[0]["response_format"]["json_schema"]["schema"] == SCHEMA


@pytest.mark.parametrize("behaviour", ["server-error", "truncated", "hang-up", "rate-limit"])
def test_transient_failures_are_retried(server, behaviour):
    server.retry_after = "0"
    server.script(behaviour, behaviour)
    answer = endpoint(server).ask("k", ASK, SCHEMA, PARAMS)
    assert server.count == 3 and answer.content.startswith('{"answer"')


def test_retry_after_is_honoured(server):
    server.retry_after = "1"
    server.script("rate-limit")
    started = time.monotonic()
    endpoint(server).ask("k", ASK, SCHEMA, PARAMS)
    assert server.count == 2 and time.monotonic() - started >= 1.0


def test_a_slow_answer_past_the_timeout_is_asked_again(server):
    server.slow_seconds = 3.0
    server.script("slow")
    started = time.monotonic()
    answer = endpoint(server, timeout=0.5).ask("k", ASK, SCHEMA, PARAMS)
    assert server.count == 2 and answer.content.startswith('{"answer"')
    assert time.monotonic() - started < 2.5  # not waiting for the slow answer (margin for load)


def test_retries_run_out_with_one_clear_message(server):
    server.script("server-error", "server-error")
    with pytest.raises(CurateError) as error:
        endpoint(server, attempts=2).ask("k", ASK, SCHEMA, PARAMS)
    assert str(error.value) == (f"{server.base_url}: HTTP 500 (The server had an error) after 2"
                                f" attempts: the server keeps failing; see its logs")


def test_timeouts_run_out(server):
    server.slow_seconds = 1.0
    server.script("slow", "slow")
    with pytest.raises(CurateError, match="no answer within the timeout after 2 attempts"):
        endpoint(server, attempts=2, timeout=0.3).ask("k", ASK, SCHEMA, PARAMS)


def test_a_server_without_json_schema_gets_json_object(server):
    server.refused_formats = {"json_schema"}
    client = endpoint(server)
    client.ask("k", ASK, SCHEMA, PARAMS)
    client.ask("k2", ASK, SCHEMA, PARAMS)
    assert formats(server) == ["json_schema", "json_object", "json_object"]


def test_a_server_without_structured_output_is_asked_in_words_only(server):
    server.refused_formats = {"json_schema", "json_object"}
    assert endpoint(server).ask("k", ASK, SCHEMA, PARAMS).content.startswith('{"answer"')
    assert formats(server) == ["json_schema", "json_object", None]


def test_a_request_refused_even_without_response_format_fails_that_request(server):
    server.refused_formats = {"json_schema", "json_object", None}
    with pytest.raises(RequestFailed, match="HTTP 400: response_format None is not supported"):
        endpoint(server).ask("k", ASK, SCHEMA, PARAMS)
    assert server.count == 3


def test_a_400_about_the_request_itself_fails_it_and_keeps_the_format(server):
    misbehave(server, "2 + 2", 400, CONTEXT_TOO_LONG)
    client = endpoint(server)
    with pytest.raises(RequestFailed, match="refused the request .*maximum context length"):
        client.ask("k", ASK, SCHEMA, PARAMS)
    client.ask("k2", [{"role": "user", "content": "Another question"}], SCHEMA, PARAMS)
    assert formats(server) == ["json_schema", "json_schema"]
    assert client.response_format == "json_schema"


@pytest.mark.parametrize("content_type, body, what", [
    ("text/html", b"<html>oops</html>", "a body starting '<html>oops</html>'"),
    ("application/json", b"NOTJSON", "JSONDecodeError")])
def test_a_body_that_is_not_a_chat_completion_is_one_clear_error(server, content_type, body,
                                                                 what):
    misbehave(server, "2 + 2", body=body, content_type=content_type)
    with pytest.raises(CurateError) as error:
        endpoint(server).ask("k", ASK, SCHEMA, PARAMS)
    assert str(error.value).startswith(f"{server.base_url}: the server answered with something"
                                       f" other than a chat completion (")
    assert what in str(error.value) and "does it end in /v1?" in str(error.value)


@pytest.mark.parametrize("payload, why", [
    ({"object": "error", "message": "model overloaded"}, "without an answer (model overloaded)"),
    ({**completion(content="x"), "choices": []}, "without choices"),
    ({**completion(content="x"), "choices": None}, "without choices"),
    (completion(content=None), "an empty answer (finish_reason stop)"),
    (completion(content="  "), "an empty answer")])
def test_a_response_without_an_answer_is_asked_again_then_fails_that_request(server, payload,
                                                                             why):
    misbehave(server, "2 + 2", payload=payload)
    client = endpoint(server)
    with pytest.raises(RequestFailed, match=f"{re.escape(why)}.* after 3 attempts"):
        client.ask("k", ASK, SCHEMA, PARAMS)
    assert server.count == 3 and client.resent == 2


def test_a_refusal_is_an_answer_with_its_text(server):
    misbehave(server, "2 + 2", payload=completion(content=None, refusal="I can't help with that."))
    answer = endpoint(server).ask("k", ASK, SCHEMA, PARAMS)
    assert answer.refused and answer.content == "I can't help with that."
    assert server.count == 1


def formats(server):
    return [(body.get("response_format") or {}).get("type") for body in server.requests]


def test_an_unknown_model_lists_the_served_ones(server):
    with pytest.raises(CurateError) as error:
        endpoint(server, model="gpt-9").ask("k", ASK, SCHEMA, PARAMS)
    assert "model 'gpt-9' is not served there (models: test-model)" in str(error.value)


def test_a_refused_key_is_scrubbed_from_the_message(server, monkeypatch):
    monkeypatch.setenv("CURATE_TEST_OPENAI_KEY", "sk-leaky-123456")
    with pytest.raises(CurateError) as error:
        endpoint(server).ask("k", ASK, SCHEMA, PARAMS)
    assert "sk-leaky-123456" not in str(error.value)
    assert "Incorrect API key provided: ***" in str(error.value)


def test_a_missing_key_variable_matters_only_when_a_request_is_sent(server, monkeypatch):
    monkeypatch.delenv("CURATE_TEST_OPENAI_KEY")
    client = endpoint(server)
    with pytest.raises(CurateError, match="CURATE_TEST_OPENAI_KEY .* is not set, and a request"
                                          " must be sent"):
        client.ask("k", ASK, SCHEMA, PARAMS)
    assert server.count == 0


def test_no_key_needed_sends_a_placeholder(server):
    server.api_key = None
    endpoint(server, env="").ask("k", ASK, SCHEMA, PARAMS)
    assert server.headers[0]["authorization"] == "Bearer no-key"


def test_a_stop_ends_the_wait_between_retries(server):
    server.retry_after = "30"
    server.script("rate-limit")
    client = Endpoint(server.base_url, "test-model", "CURATE_TEST_OPENAI_KEY", 5.0,
                      RetryPolicy(3, 0.01, 60.0), stop=threading.Event())
    threading.Timer(0.3, client.stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopped):
        client.ask("k", ASK, SCHEMA, PARAMS)
    assert time.monotonic() - started < 5


def test_backoff_doubles_with_seeded_jitter_and_is_capped():
    policy = RetryPolicy(max_attempts=8, backoff=1.0, max_wait=10.0)
    waits = [policy.wait(attempt, "key", None) for attempt in range(1, 6)]
    assert waits == [policy.wait(attempt, "key", None) for attempt in range(1, 6)]
    assert all(0.5 * 2 ** i <= wait <= min(1.5 * 2 ** i, 10.0) for i, wait in enumerate(waits))
    assert waits[-1] == 10.0
    assert policy.wait(1, "key", retry_after=3.0) == 3.0
    assert policy.wait(1, "key", retry_after=120.0) == 10.0
