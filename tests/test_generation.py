"""curate.generation: the JSON schema check every generated answer passes, and the helpers a
strategy plugin uses."""

import pytest

from curate.generation import Draft, object_schema, schema_error

PAIRS = object_schema(pairs={"type": "array", "minItems": 1, "maxItems": 2,
                             "items": object_schema(prompt={"type": "string", "minLength": 1},
                                                    score="integer")})


def test_object_schema_requires_every_key_and_nothing_else():
    assert object_schema(a="string", b={"type": "number"}) == {
        "type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}},
        "required": ["a", "b"], "additionalProperties": False}


@pytest.mark.parametrize("value, error", [
    ({"pairs": [{"prompt": "p", "score": 3}]}, None),
    ({"pairs": [{"prompt": "p", "score": 3.0}]}, None),
    ([], "$: expected object, found array"),
    ({}, "$: missing key 'pairs'"),
    ({"pairs": []}, "$.pairs: expected at least 1 items, found 0"),
    ({"pairs": [{"prompt": "p", "score": 1}] * 3}, "$.pairs: expected at most 2 items, found 3"),
    ({"pairs": [{"prompt": "p", "score": 1.5}]}, "$.pairs[0].score: expected integer, found"
                                                  " number"),
    ({"pairs": [{"prompt": "p", "score": True}]}, "$.pairs[0].score: expected integer, found"
                                                   " boolean"),
    ({"pairs": [{"prompt": " ", "score": 1}]}, "$.pairs[0].prompt: text is empty"),
    ({"pairs": [{"prompt": "p", "score": 1, "x": 0}]}, "$.pairs[0]: unexpected key 'x'"),
    ({"pairs": [{"prompt": None, "score": 1}]}, "$.pairs[0].prompt: expected string, found null"),
])
def test_schema_error(value, error):
    assert schema_error(value, PAIRS) == error


def test_enum():
    assert schema_error("b", {"type": "string", "enum": ["a"]}) == (
        "$: expected one of ['a'], found 'b'")


def test_draft_pair_with_and_without_a_system_prompt():
    assert Draft.pair("p", "r", "s").messages == [{"role": "user", "content": "p"},
                                                  {"role": "assistant", "content": "r"}]
    assert Draft.pair("p", "r", "s", system="sys").messages[0] == {"role": "system",
                                                                   "content": "sys"}
