"""A scripted OpenAI-compatible server on 127.0.0.1, for tests that drive the real `openai` client.

    with OpenAIServer(models=["tiny"], api_key="sk-test") as server:
        server.script("rate-limit", "server-error")   # the next two chat requests fail so
        ...                                           # then answers come from the schema
        assert server.count == 3

`server.peak_in_flight` is the most chat requests it was handling at once.
Chat answers are deterministic: a JSON instance of the request's `response_format` schema whose
strings derive from the last user message (override with `server.answer = function(body)`).
Scripted behaviours apply to chat requests in arrival order; `server.rules` maps a text to a
behaviour for every request whose last user message contains it (order-independent, for
concurrent clients). Behaviours:

    ok            200 with the answer
    rate-limit    429 with `Retry-After: server.retry_after`
    server-error  500
    slow          sleeps `server.slow_seconds`, then answers
    malformed     200 whose content is not JSON
    truncated     a body cut short of its Content-Length, then the connection closes
    hang-up       the connection closes without a response
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BEHAVIOURS = ("ok", "rate-limit", "server-error", "slow", "malformed", "truncated", "hang-up")


def schema_instance(schema: dict, text: str, name: str = "value"):
    """A value that fits the (small) JSON schema, derived deterministically from `text`."""
    kind = schema.get("type", "object")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {key: schema_instance(sub, text, key)
                for key, sub in schema.get("properties", {}).items()}
    if kind == "array":
        count = max(1, schema.get("maxItems", schema.get("minItems", 1)))
        return [schema_instance(schema.get("items", {}), f"{text}#{i}", name) for i in range(count)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{name} {digest}: {text}"


class OpenAIServer:
    def __init__(self, models=("test-model",), api_key: str | None = None):
        self.models = list(models)
        self.api_key = api_key
        self.refused_formats: set[str] = set()
        """response_format types answered with a 400, as servers without them do."""
        self.retry_after = "1"
        self.slow_seconds = 3.0
        self.answer: Callable[[dict], str] | None = None
        self.rules: dict[str, str] = {}
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = self.peak_in_flight = 0
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    @property
    def count(self) -> int:
        """Chat requests received, failed ones included."""
        return len(self.requests)

    def script(self, *behaviours: str) -> None:
        unknown = set(behaviours) - set(BEHAVIOURS)
        assert not unknown, f"unknown behaviours {unknown}"
        self._script.extend(behaviours)

    def start(self) -> "OpenAIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def next_behaviour(self, body: dict) -> str:
        with self._lock:
            self.requests.append(body)
            prompt = last_user_text(body)
            for text, behaviour in self.rules.items():
                if text in prompt:
                    return behaviour
            return self._script.popleft() if self._script else "ok"

    def content_for(self, body: dict) -> str:
        if self.answer is not None:
            return self.answer(body)
        format_ = body.get("response_format") or {}
        schema = format_.get("json_schema", {}).get("schema", {"type": "object", "properties": {
            "answer": {"type": "string"}}})
        return json.dumps(schema_instance(schema, last_user_text(body)))


def last_user_text(body: dict) -> str:
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def _handler(server: OpenAIServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                return self._error(404, f"no route {self.path}", "not_found")
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"}
                    for m in server.models]
            self._json(200, {"object": "list", "data": data})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._error(404, f"no route {self.path}", "not_found")
            server.enter()
            self.counted = True
            try:
                self._chat(body)
            finally:
                self._left()

        def _left(self) -> None:
            """Counts this request out before its answer is sent: the client may send the next
            one as soon as it has the answer, and that must not look like an overlap."""
            if getattr(self, "counted", False):
                self.counted = False
                server.leave()

        def _chat(self, body: dict) -> None:
            server.headers.append({key.lower(): value for key, value in self.headers.items()})
            behaviour = server.next_behaviour(body)
            presented = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if server.api_key and presented != server.api_key:
                # Echoes the key, as some servers do: the client must scrub it from messages.
                return self._error(401, f"Incorrect API key provided: {presented}",
                                   "invalid_api_key")
            if body.get("model") not in server.models:
                return self._error(404, f"The model `{body.get('model')}` does not exist.",
                                   "model_not_found")
            format_type = (body.get("response_format") or {}).get("type")
            if format_type in server.refused_formats:
                return self._error(400, f"response_format {format_type} is not supported",
                                   "invalid_request_error")
            self._behave(behaviour, body)

        def _behave(self, behaviour: str, body: dict) -> None:
            if behaviour == "rate-limit":
                return self._error(429, "Rate limit reached", "rate_limit_exceeded",
                                   {"Retry-After": server.retry_after})
            if behaviour == "server-error":
                return self._error(500, "The server had an error", "server_error")
            if behaviour == "hang-up":
                self.close_connection = True
                return
            if behaviour == "slow":
                time.sleep(server.slow_seconds)
            content = "Sure! Here is {not json" if behaviour == "malformed" else (
                server.content_for(body))
            payload = _completion(body, content)
            if behaviour == "truncated":
                return self._truncated(payload)
            self._json(200, payload)

        def _truncated(self, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self._left()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True

        def _error(self, status: int, message: str, code: str, headers=None) -> None:
            self._json(status, {"error": {"message": message, "type": code, "code": code}},
                       headers)

        def _json(self, status: int, payload: dict, headers=None) -> None:
            data = json.dumps(payload).encode()
            self._left()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _completion(body: dict, content: str) -> dict:
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    completion_tokens = len(content.split())
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0,
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
