"""Generation strategies: how the `generate` stage turns curated records into requests for an
LLM, and the LLM's JSON answers into new records.

    class Questions(GenerationStrategy):
        name = "questions"
        Options = QuestionOptions

        def requests(self, records, rng):
            for record in rng.sample(records, self.options.count):
                yield GenerationRequest(
                    [{"role": "user", "content": f"Ask a new question like: {record.prompt}"}],
                    schema=object_schema(question="string", answer="string"),
                    seeds=(record.id,))

        def parse(self, answer, request):
            return [Draft.pair(answer["question"], answer["answer"], source="questions")]

The host sends each request (with an instruction to answer in JSON that follows `schema`),
caches the answer, checks it against the schema, and passes only a valid answer to `parse`.
An answer that is not valid JSON, does not fit the schema, or that `parse` refuses by raising
`GenerationError`, becomes a rejected record with the raw text.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from curate.options import Configurable
from curate.records import Record


class GenerationError(ValueError):
    """Raised by `parse` for an answer that makes no usable record; the message says why."""


@dataclass(frozen=True)
class GenerationRequest:
    """One request to the model. `messages` are chat turns; `schema` is the JSON schema of the
    answer; `seeds` the ids of the records it was built from (provenance); `replaces` the id of
    an input record a valid answer stands in for (it is then rejected as "answered");
    `temperature` overrides the stage's. `context` is anything `parse` needs back: it is not
    sent and not part of the cache key."""

    messages: list[dict]
    schema: dict
    seeds: tuple[str, ...] = ()
    replaces: str | None = None
    temperature: float | None = None
    context: dict = field(default_factory=dict, compare=False)


@dataclass
class Draft:
    """A record a strategy makes of an answer; the host adds id, origin and provenance."""

    messages: list[dict]
    source: str

    @classmethod
    def pair(cls, prompt: str, response: str, source: str, system: str = "") -> "Draft":
        messages = [{"role": "system", "content": system}] if system.strip() else []
        return cls(messages + [{"role": "user", "content": prompt},
                               {"role": "assistant", "content": response}], source)


class GenerationStrategy(Configurable):
    """Base class of generation strategies; `self.options` holds the strategy's options and
    `self.stage_name` the name of the stage running it."""

    def __init__(self, options: Any, stage_name: str = "generate"):
        self.options = options
        self.stage_name = stage_name

    def requests(self, records: list[Record], rng: random.Random) -> Iterator[GenerationRequest]:
        """The requests to send, in order, built from the stage's input records."""
        raise NotImplementedError

    def parse(self, answer: Any, request: GenerationRequest) -> list[Draft]:
        """The records a schema-valid answer makes; raise GenerationError to reject it."""
        raise NotImplementedError


def object_schema(**properties: str | dict) -> dict:
    """A JSON schema for an object whose keys are all required: `object_schema(prompt="string")`;
    a value may also be a whole schema."""
    shaped = {key: {"type": value} if isinstance(value, str) else value
              for key, value in properties.items()}
    return {"type": "object", "properties": shaped, "required": list(shaped),
            "additionalProperties": False}


def schema_error(value: Any, schema: dict, path: str = "$") -> str | None:
    """Why `value` does not fit `schema`, or None. Checks type, enum, required, properties,
    additionalProperties, items, minItems, maxItems and minLength: what strategies use."""
    kind = schema.get("type")
    if kind is not None and not _has_type(value, kind):
        return f"{path}: expected {kind}, found {_json_type(value)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: expected one of {schema['enum']}, found {value!r}"
    if isinstance(value, str) and len(value.strip()) < schema.get("minLength", 0):
        return f"{path}: text is empty" if not value.strip() else f"{path}: text too short"
    if isinstance(value, dict):
        return _object_error(value, schema, path)
    if isinstance(value, list):
        return _array_error(value, schema, path)
    return None


def _object_error(value: dict, schema: dict, path: str) -> str | None:
    for key in schema.get("required", []):
        if key not in value:
            return f"{path}: missing key '{key}'"
    properties = schema.get("properties", {})
    if schema.get("additionalProperties") is False:
        extra = sorted(set(value) - set(properties))
        if extra:
            return f"{path}: unexpected key '{extra[0]}'"
    for key, sub in properties.items():
        if key in value and (error := schema_error(value[key], sub, f"{path}.{key}")):
            return error
    return None


def _array_error(value: list, schema: dict, path: str) -> str | None:
    if len(value) < schema.get("minItems", 0):
        return f"{path}: expected at least {schema['minItems']} items, found {len(value)}"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"{path}: expected at most {schema['maxItems']} items, found {len(value)}"
    for index, item in enumerate(value):
        if error := schema_error(item, schema.get("items", {}), f"{path}[{index}]"):
            return error
    return None


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _has_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "number"):
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        return numeric and (kind == "number" or float(value).is_integer())
    return isinstance(value, _TYPES.get(kind, object))


def _json_type(value: Any) -> str:
    for name, kind in _TYPES.items():
        if isinstance(value, kind):
            return name
    return "number" if isinstance(value, (int, float)) else type(value).__name__
