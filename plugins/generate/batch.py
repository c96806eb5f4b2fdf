"""Sends a stage's requests: at most `concurrency` at a time, each answer cached as it arrives,
results taken in request order (so the output does not depend on timing), until the plan or a
budget runs out. A malformed answer is asked again, as a new request, up to
`malformed_attempts` times in all; each of those requests counts against `max_requests`. A
request the server could not answer (RequestFailed) ends as an error of its own exchange and is
not cached, so the next run asks again."""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from curate.generation import GenerationRequest, schema_error
from curate.plugins.generate.cache import Answer, ResponseCache
from curate.plugins.generate.endpoint import FORMATS, Endpoint, RequestFailed
from curate.runstore import dumps

_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class Planned:
    """A strategy's request as it is sent: final messages, parameters, and what keys it."""

    request: GenerationRequest
    messages: list[dict]
    params: dict
    keyed: dict
    """Everything the answer depends on (base_url, model, messages, schema, parameters, the
    response_format when a server refused json_schema): the cache key is its sha256. Never the
    API key."""

    def attempt(self, number: int, format_: str = FORMATS[0]) -> tuple[str, str, dict]:
        """(key, canonical request, parameters) of attempt `number` (0 first) sent with
        `format_`: a retry after a malformed answer asks with another seed, so it is another
        request. The default format stays out of the key, which is what keys had before."""
        params = {**self.params, "seed": self.params["seed"] + number}
        fallback = {} if format_ == FORMATS[0] else {"response_format": format_}
        canonical = dumps({**self.keyed, "params": params, **fallback})
        return hashlib.sha256(canonical.encode()).hexdigest(), canonical, params

    @property
    def key(self) -> str:
        return self.attempt(0)[0]


@dataclass
class Exchange:
    """A planned request's attempts and what came of the last one."""

    planned: Planned
    attempts: list[tuple[str, Answer]] = field(default_factory=list)
    value: Any = None
    error: str | None = None
    """Why the last answer is unusable (not JSON, not fitting the schema, a refusal, none at
    all); None when valid."""
    cached: int = 0
    failed: bool = False
    """The last attempt got no answer (RequestFailed): not cached, asked again next run."""

    @property
    def answer(self) -> Answer:
        return self.attempts[-1][1]

    @property
    def tokens(self) -> int:
        return sum(answer.tokens for _, answer in self.attempts)


class Budget:
    """Requests and tokens spent, counted in request order, cache hits included: the output of a
    recipe depends only on the answers, not on what the cache held. Every request sent counts,
    the retries after a malformed answer too; a planned request starts only when the budget can
    pay for all its `tries_per_request` (malformed_attempts) tries, so `max_requests` is never
    passed. Retries after a 429, a 5xx or a dropped connection do not count: they bring no
    answer and no tokens, and counting them would make what a recipe produces depend on the
    server's load (`max_attempts` bounds them)."""

    def __init__(self, max_requests: int | None, max_tokens: int | None,
                 tries_per_request: int = 1):
        self.max_requests, self.max_tokens = max_requests, max_tokens
        self.tries_per_request = tries_per_request
        self.requests = self.tokens = 0

    def spend(self, exchange: Exchange) -> None:
        self.requests += len(exchange.attempts)
        self.tokens += exchange.tokens

    def allows(self, in_flight: int) -> bool:
        """Whether one more planned request may start beside `in_flight` started ones, each
        counted at its most tries."""
        return not self.reached() and (
            self.max_requests is None
            or self.requests + (in_flight + 1) * self.tries_per_request <= self.max_requests)

    def reached(self) -> str | None:
        """Which budget is used up, as its recipe key, or None."""
        if (self.max_requests is not None
                and self.requests + self.tries_per_request > self.max_requests):
            spare = self.max_requests - self.requests
            return f"max_requests = {self.max_requests}" + (
                f" ({spare} left; one more request may need malformed_attempts ="
                f" {self.tries_per_request})" if spare else "")
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            return f"max_tokens = {self.max_tokens}"
        return None


class RequestBatch:
    def __init__(self, endpoint: Endpoint, cache: ResponseCache, budget: Budget,
                 concurrency: int, malformed_attempts: int):
        self.endpoint, self.cache, self.budget = endpoint, cache, budget
        self.concurrency, self.malformed_attempts = concurrency, malformed_attempts

    def run(self, planned: list[Planned]) -> list[Exchange]:
        """The exchanges, in plan order, until the plan or a budget ends. A CurateError (the
        server gone, a refused key) stops everything; answers already received stay cached."""
        done: list[Exchange] = []
        queue = iter(planned)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="generate") as pool:
            window: deque = deque()
            try:
                while True:
                    while len(window) < self.concurrency and self.budget.allows(len(window)):
                        if (next_planned := next(queue, None)) is None:
                            break
                        window.append(pool.submit(self._exchange, next_planned))
                    if not window:
                        return done
                    done.append(window.popleft().result())
                    self.budget.spend(done[-1])
                    if self.budget.reached():
                        return done
            except BaseException:
                self.endpoint.stop.set()  # in-flight requests give up instead of retrying
                raise
            finally:
                for future in window:
                    future.cancel()

    def _exchange(self, planned: Planned) -> Exchange:
        exchange = Exchange(planned)
        for number in range(self.malformed_attempts):
            key, answer = self._cached(planned, number)
            if answer is None:
                _, _, params = planned.attempt(number)
                try:
                    answer = self.endpoint.ask(key, planned.messages, planned.request.schema,
                                               params)
                except RequestFailed as failure:
                    return _failed(exchange, key, failure)
                key, canonical, _ = planned.attempt(number, answer.response_format)
                self.cache.put(key, canonical, answer)
            else:
                exchange.cached += 1
            exchange.attempts.append((key, answer))
            exchange.value, exchange.error = read_answer(answer, planned.request.schema)
            if exchange.error is None:
                break
        return exchange

    def _cached(self, planned: Planned, number: int) -> tuple[str, Answer | None]:
        """(key, answer) of attempt `number` from the cache, under whichever response_format
        it was answered with; (the default format's key, None) when it is not there."""
        for format_ in FORMATS:
            key = planned.attempt(number, format_)[0]
            answer = self.cache.get(key)
            if answer is not None and not answer.refused and not answer.content.strip():
                self.cache.forget(key)  # a non-answer, cached before they were refused
            elif answer is not None:
                return key, answer
        return planned.attempt(number)[0], None


def _failed(exchange: Exchange, key: str, failure: RequestFailed) -> Exchange:
    seeds = ", ".join(exchange.planned.request.seeds) or "none"
    exchange.attempts.append((key, Answer("", "", 0, 0, "", "")))
    exchange.value, exchange.failed = None, True
    exchange.error = (f"no answer: {failure} (seed records: {seeds}; not cached: the next run"
                      f" asks again)")
    return exchange


def read_answer(answer: Answer, schema: dict) -> tuple[Any, str | None]:
    """(the JSON value, None) for an answer that fits the schema, else (None, why not)."""
    if answer.refused:
        return None, "the model refused"
    text = answer.content.strip()
    fenced = _FENCE.match(text)  # many models wrap JSON in a Markdown code fence
    if fenced:
        text = fenced.group(1).strip()
    cut = (" (cut off: the answer reached max_answer_tokens)"
           if answer.finish_reason == "length" else "")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"the answer is not JSON ({error}){cut}"
    if (problem := schema_error(value, schema)) is not None:
        return None, f"the answer does not fit the schema: {problem}{cut}"
    return value, None
