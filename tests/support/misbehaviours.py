"""Misbehaviours of real OpenAI-compatible servers that the scripted server
(support/openai_server.py) has no name for: a body that is not a chat completion, a 200 without
an answer, a refusal, a 400 about one request."""

from __future__ import annotations

import json

from support import openai_server

MODEL = "test-model"


def misbehave(server, text: str, status: int = 200, payload=None, body: bytes | None = None,
              content_type: str = "application/json"):
    """Make `server` answer every chat request whose last user message contains `text` with
    this raw response (`payload` as JSON, or `body` as it is); other requests are answered as
    usual. Returns a function that makes the server behave again."""
    data = body if body is not None else json.dumps(payload).encode()
    usual = server._http.RequestHandlerClass

    class Misbehaving(usual):
        def _behave(self, behaviour, request):
            if text not in openai_server.last_user_text(request):
                return super()._behave(behaviour, request)
            self._left()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server._http.RequestHandlerClass = Misbehaving
    return lambda: setattr(server._http, "RequestHandlerClass", usual)


def completion(**message) -> dict:
    """A chat completion whose one choice has this message (content, refusal)."""
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", **message}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


CONTEXT_TOO_LONG = {"error": {"message": "This model's maximum context length is 4096 tokens."
                                         " However, you requested 9000 tokens.",
                              "type": "invalid_request_error", "code": None}}
"""The 400 vLLM and OpenAI send for a prompt past the model's context."""
