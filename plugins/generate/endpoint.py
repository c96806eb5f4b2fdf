"""One OpenAI-compatible endpoint, through the `openai` client: sends a chat request and returns
its answer, retrying 429s, 5xx, timeouts and dropped connections with exponential backoff and
jitter (honouring Retry-After), and falling back from `json_schema` to `json_object` to no
`response_format` when the server refuses one. A request the server cannot answer (a 400 about
the request itself, a response without an answer) is a RequestFailed, which costs that request
only; everything else becomes one clear CurateError. The API key is read from the environment
here, when a request must be sent, and never leaves this module: messages are scrubbed of it."""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from curate.errors import CurateError
from curate.options import option
from curate.plugins.generate.cache import Answer


FORMATS = ("json_schema", "json_object", "none")
NO_KEY = "no-key"  # local servers (vLLM, Ollama, llama.cpp) want some bearer, any will do


class Stopped(Exception):
    """The batch was stopped (another request failed): give up without retrying."""


class RequestFailed(Exception):
    """This request got no answer (the server refused it, or kept sending responses without
    one) while others may: it costs that request, not the stage, and is never cached."""


class _NoAnswer(Exception):
    """A response without an answer: no choices, or neither content nor a refusal."""


_ABOUT_FORMAT = re.compile(r"response_format|json_schema|json_object|structured output",
                           re.IGNORECASE)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    backoff: float = 1.0
    max_wait: float = 60.0

    def wait(self, attempt: int, key: str, retry_after: float | None) -> float:
        """Seconds before attempt `attempt + 1`: the server's Retry-After when it sent one,
        else exponential backoff with jitter seeded by the request key (deterministic)."""
        if retry_after is not None:
            return min(retry_after, self.max_wait)
        jitter = random.Random(f"{key}:{attempt}").uniform(0.5, 1.5)
        return min(self.backoff * 2 ** (attempt - 1) * jitter, self.max_wait)


class Endpoint:
    def __init__(self, base_url: str, model: str, api_key_env: str, timeout: float,
                 retry: RetryPolicy, stop: threading.Event | None = None):
        import openai  # ~0.5 s to import: only when a generate stage runs

        self.base_url, self.model, self.retry = base_url, model, retry
        self.stop = stop or threading.Event()
        self.api_key_env = api_key_env
        self._key = os.environ.get(api_key_env, "") if api_key_env else ""
        self._client = openai.OpenAI(base_url=base_url, api_key=self._key or NO_KEY,
                                     max_retries=0, timeout=timeout)
        self._format = FORMATS[0]
        self._format_lock = threading.Lock()
        self.resent = 0
        """Requests sent again after a 429, a 5xx, a timeout or a dropped connection."""
        self._resent_lock = threading.Lock()

    def ask(self, key: str, messages: list[dict], schema: dict, params: dict) -> Answer:
        """The answer to one request, after retries; raises RequestFailed when this request
        has none, CurateError when no request can have one."""
        import openai

        self._require_key()
        for attempt in range(1, self.retry.max_attempts + 1):
            if self.stop.is_set():
                raise Stopped()
            try:
                return self._send(messages, schema, params)
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError,
                    openai.APITimeoutError) as error:
                if attempt == self.retry.max_attempts:
                    raise CurateError(self._transient_message(error)) from None
                self._wait(attempt, key, _retry_after(error))
            except _NoAnswer as error:
                if attempt == self.retry.max_attempts:
                    raise RequestFailed(f"{error} {_tries(attempt)}") from None
                self._wait(attempt, key, None)
            except openai.APIStatusError as error:
                raise CurateError(self._status_message(error)) from None
        raise AssertionError("unreachable")

    @property
    def response_format(self) -> str:
        """The response_format requests are sent with now: weaker after the server refused one."""
        return self._format

    def _require_key(self) -> None:
        if self.api_key_env and not self._key:
            raise CurateError(f"environment variable {self.api_key_env} (api_key_env) is not"
                              f" set, and a request must be sent: export the API key there, or"
                              f" set api_key_env = \"\" for a server that needs none")

    def _wait(self, attempt: int, key: str, retry_after: float | None) -> None:
        with self._resent_lock:
            self.resent += 1
        if self.stop.wait(self.retry.wait(attempt, key, retry_after)):
            raise Stopped() from None

    def _send(self, messages: list[dict], schema: dict, params: dict) -> Answer:
        import openai
        from openai.types.chat import ChatCompletion

        while True:
            format_ = self._format
            try:
                response = self._client.chat.completions.create(
                    model=self.model, messages=messages, **params,
                    **_response_format(format_, schema))
            except openai.BadRequestError as error:
                if _ABOUT_FORMAT.search(self._server_says(error)) and self._fall_back(format_):
                    continue
                raise RequestFailed(f"the server refused the request (HTTP 400:"
                                    f" {self._server_says(error)})") from None
            except (json.JSONDecodeError, openai.APIResponseValidationError) as error:
                raise self._not_chat(f"{type(error).__name__}: {error}") from None
            if not isinstance(response, ChatCompletion):
                raise self._not_chat(f"a body starting {str(response)[:60]!r}")
            return _answer(response, messages, format_)

    def _not_chat(self, what: str) -> CurateError:
        return CurateError(f"{self.base_url}: the server answered with something other than a"
                           f" chat completion ({self._scrub(what)}): is base_url the"
                           f" OpenAI-compatible API (does it end in /v1?)")

    def _fall_back(self, refused: str) -> bool:
        """After a 400, try the next weaker response_format; False when none is left."""
        with self._format_lock:
            if self._format != refused:
                return True  # another thread already moved on; retry with its choice
            if refused == FORMATS[-1]:
                return False
            self._format = FORMATS[FORMATS.index(refused) + 1]
            return True

    def _transient_message(self, error: Exception) -> str:
        import openai

        tries = _tries(self.retry.max_attempts)
        if isinstance(error, openai.APITimeoutError):
            return (f"{self.base_url}: no answer within the timeout {tries}: raise `timeout`,"
                    f" or lower `concurrency` if the server is overloaded")
        if isinstance(error, openai.APIConnectionError):
            cause = self._scrub(str(error.__cause__ or error))
            return (f"{self.base_url}: cannot reach the server ({cause}) {tries}: is it running,"
                    f" and is base_url right?")
        status = getattr(error, "status_code", "?")
        advice = ("lower `concurrency` or raise `max_attempts`" if status == 429 else
                  "the server keeps failing; see its logs")
        return f"{self.base_url}: HTTP {status} ({self._server_says(error)}) {tries}: {advice}"

    def _status_message(self, error) -> str:
        status, says = error.status_code, self._server_says(error)
        if status in (401, 403):
            return (f"{self.base_url}: the server refused the API key (HTTP {status}: {says}):"
                    f" check the key in the environment variable named by api_key_env")
        if status == 404:
            return f"{self.base_url}: HTTP 404 ({says}){self._models_hint()}"
        return f"{self.base_url}: HTTP {status}: {says}"

    def _models_hint(self) -> str:
        """Which models the server has, to tell a wrong `model` from a wrong `base_url`."""
        try:
            served = sorted(model.id for model in self._client.models.list())
        except Exception:  # the hint is a courtesy: never let it hide the real error
            return ": check base_url (it usually ends in /v1) and model"
        if self.model in served:
            return ": check base_url"
        return f": model '{self.model}' is not served there (models: {', '.join(served)})"

    def _server_says(self, error) -> str:
        body = getattr(error, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        return self._scrub(str(message or getattr(error, "message", error)))[:300]

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _response_format(format_: str, schema: dict) -> dict:
    if format_ == "json_schema":
        return {"response_format": {"type": "json_schema", "json_schema": {
            "name": "answer", "schema": schema, "strict": False}}}
    if format_ == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {}


def _answer(response, messages: list[dict], format_: str) -> Answer:
    choice = response.choices[0] if response.choices else None
    message = choice.message if choice else None
    refusal = (getattr(message, "refusal", None) or "") if message else ""
    content = (message.content or "") if message else ""
    if not content.strip() and not refusal.strip():
        raise _NoAnswer(_why_no_answer(response, choice))
    usage = response.usage
    if usage is not None:
        prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
    else:  # a server that reports no usage: about four characters a token
        prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4
        completion = len(content or refusal) // 4
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # A refusal is the model's real answer: kept (and cached) with its text as the content.
    return Answer(content if content.strip() else refusal, choice.finish_reason or "", prompt,
                  completion, response.model or "", now, refused=not content.strip(),
                  response_format=format_)


def _why_no_answer(response, choice) -> str:
    said = getattr(response, "message", None) or getattr(response, "error", None)
    if said:
        return f"the server sent a response without an answer ({str(said)[:200]})"
    if choice is None:
        return "the server sent a response without choices"
    return (f"the server sent an empty answer (finish_reason"
            f" {choice.finish_reason or 'unset'})")


def _tries(attempts: int) -> str:
    return f"after {attempts} attempt{'s' if attempts != 1 else ''}"


def _retry_after(error: Exception) -> float | None:
    """Seconds from the Retry-After (or retry-after-ms) header of an error response."""
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:  # the other form: an HTTP date
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return max((parsed - datetime.now(timezone.utc)).total_seconds(), 0.0)


@dataclass(kw_only=True)
class EndpointOptions:
    """An OpenAI-compatible endpoint and how to talk to it: the options the generate stage and
    the judge share."""

    base_url: str = option(help="the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1")
    model: str = option(help="the model's name on that server")
    api_key_env: str = option("OPENAI_API_KEY", help="the environment variable holding the API"
                                                     " key; \"\" for a server that needs none")
    timeout: float = option(120.0, min=0.1, help="seconds to wait for one answer")
    concurrency: int = option(4, min=1, max=256, help="requests in flight at once")
    max_attempts: int = option(4, min=1, max=20, help="tries per request on 429, 5xx, timeouts,"
                                                      " dropped connections and responses"
                                                      " without an answer")
    backoff_seconds: float = option(1.0, min=0.0, help="first wait before a retry; doubles"
                                                       " each time, with jitter")
    max_wait_seconds: float = option(60.0, min=0.0, help="longest wait before a retry, a"
                                                         " server's Retry-After included")

    def check(self) -> None:
        """The checks `curate validate` makes, without touching the network."""
        self.check_address()
        self.check_key()

    def check_address(self) -> None:
        """base_url and model: what every use of the endpoint needs."""
        from curate.options import OptionError

        if not self.base_url.startswith(("http://", "https://")):
            raise OptionError("base_url", f"expected an http:// or https:// URL, found"
                                          f" {self.base_url!r}")
        if not self.model.strip():
            raise OptionError("model", "name the model the server should use")
        if self.api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            # Not echoed: it is most likely the key itself, pasted where its variable's name goes.
            raise OptionError("api_key_env", "expected the NAME of the environment variable"
                                             " holding the key (e.g. OPENAI_API_KEY), not the"
                                             " key itself: export the key in a variable and"
                                             " name that variable here")

    def check_key(self) -> None:
        """The API key's variable is set: only what sends a request on every run needs it."""
        from curate.options import OptionError

        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise OptionError("api_key_env", f"environment variable {self.api_key_env} is"
                                             f" not set: export the API key in it, or set"
                                             f" api_key_env = \"\" for a server that needs none")

    def endpoint(self) -> Endpoint:
        retry = RetryPolicy(self.max_attempts, self.backoff_seconds, self.max_wait_seconds)
        return Endpoint(self.base_url, self.model, self.api_key_env, self.timeout, retry)
