"""Built-in record formats: alpaca, sharegpt, messages and prompt-completion."""

from __future__ import annotations

from typing import Any

from curate import hookimpl
from curate.formats import Format, RowError, text_field
from curate.records import ROLES


@hookimpl
def register_formats(register):
    for fmt in (MessagesFormat, SharegptFormat, AlpacaFormat, PromptCompletionFormat):
        register(fmt)


def checked_messages(messages: list[dict]) -> list[dict]:
    """The messages if they make a training example: known roles, text, an assistant turn last."""
    if not messages:
        raise RowError("empty-conversation", "the conversation has no messages")
    for index, message in enumerate(messages):
        if message["role"] not in ROLES:
            raise RowError("unsupported-role", f"message {index} has role {message['role']!r};"
                           f" expected one of {', '.join(ROLES)}")
        if not isinstance(message["content"], str):
            raise RowError("bad-field", f"message {index} content should be text, found"
                           f" {type(message['content']).__name__}")
    if messages[-1]["role"] != "assistant":
        raise RowError("no-final-answer", "the last message is not from the assistant, so there"
                       " is nothing to train on at the end")
    if not any(m["role"] == "user" for m in messages):
        raise RowError("no-user-turn", "the conversation has no user message")
    return messages


def _message_list(row: dict, key: str) -> list:
    value = row.get(key)
    if value is None:
        raise RowError("missing-field", f"missing field '{key}'")
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise RowError("bad-field", f"field '{key}' should be a list of messages")
    return value


class MessagesFormat(Format):
    """`{"messages": [{"role": "user", "content": "..."}, ...]}` (OpenAI / TRL chat format)."""

    name = "messages"
    fields = required = ("messages",)

    def to_messages(self, row: dict[str, Any]) -> list[dict]:
        messages = []
        for index, message in enumerate(_message_list(row, "messages")):
            if "role" not in message or "content" not in message:
                raise RowError("bad-field", f"message {index} needs 'role' and 'content'")
            messages.append({"role": message["role"], "content": message["content"]})
        return checked_messages(messages)


class SharegptFormat(Format):
    """`{"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", ...}]}`.

    Turns written as `{"role": ..., "content": ...}` are read too: many exports keep the
    `conversations` key but use the OpenAI names inside it.
    """

    name = "sharegpt"
    fields = required = ("conversations",)
    ROLE_NAMES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "bard": "assistant",
                  "model": "assistant", "bing": "assistant"}

    def to_messages(self, row: dict[str, Any]) -> list[dict]:
        messages = []
        for index, turn in enumerate(_message_list(row, "conversations")):
            speaker, text = self._turn(turn, index)
            role = self.ROLE_NAMES.get(str(speaker).lower(), speaker)
            messages.append({"role": role, "content": text})
        return checked_messages(messages)

    @staticmethod
    def _turn(turn: dict, index: int) -> tuple[Any, Any]:
        for speaker_key, text_key in (("from", "value"), ("role", "content")):
            # Datasets that mix both spellings fill the other pair with None.
            if turn.get(speaker_key) is not None and text_key in turn:
                return turn[speaker_key], turn[text_key]
        raise RowError("bad-field", f"turn {index} needs 'from' and 'value' (or 'role' and"
                       f" 'content'), found keys {', '.join(sorted(map(str, turn))) or 'none'}")


class AlpacaFormat(Format):
    """`{"instruction": ..., "input": ..., "output": ...}`; `input` and `system` are optional."""

    name = "alpaca"
    fields = ("instruction", "input", "output", "system")
    required = ("instruction", "output")

    def to_messages(self, row: dict[str, Any]) -> list[dict]:
        instruction = text_field(row, "instruction")
        extra = text_field(row, "input", optional=True)
        output = text_field(row, "output")
        system = text_field(row, "system", optional=True)
        prompt = "\n\n".join(part for part in (instruction, extra) if part.strip()) or instruction
        messages = [{"role": "system", "content": system}] if system.strip() else []
        return messages + [{"role": "user", "content": prompt},
                           {"role": "assistant", "content": output}]


class PromptCompletionFormat(Format):
    """`{"prompt": "...", "completion": "..."}`, or TRL's conversational form with lists."""

    name = "prompt-completion"
    fields = ("prompt", "completion", "system")
    required = ("prompt", "completion")

    def to_messages(self, row: dict[str, Any]) -> list[dict]:
        prompt, completion = row.get("prompt"), row.get("completion")
        if isinstance(prompt, list) and isinstance(completion, list):
            both = _message_list(row, "prompt") + _message_list(row, "completion")
            return MessagesFormat().to_messages({"messages": both})
        system = text_field(row, "system", optional=True)
        messages = [{"role": "system", "content": system}] if system.strip() else []
        return messages + [{"role": "user", "content": text_field(row, "prompt")},
                           {"role": "assistant", "content": text_field(row, "completion")}]
