"""The declared response format of the `consistency` stage: strict JSON meeting a minimal schema
(type, required keys, property types), a regex matching the whole response, or one of a list of
labels. Also how user regexes are compiled, naming the option on a mistake."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from curate.options import OptionError
from curate.stages import Reject

from curate.plugins.consistency_text import snippet

JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
              "number": (int, float), "integer": int}
SCHEMA_KEYS = ("type", "required", "properties")


def compile_pattern(pattern: str, key: str, flags: int = 0) -> re.Pattern:
    try:
        return re.compile(pattern, flags)
    except re.error as error:
        raise OptionError(key, f"{pattern!r} is not a valid regular expression: {error}") from None


def check_json_schema(schema: dict[str, Any]) -> None:
    unknown = sorted(set(schema) - set(SCHEMA_KEYS))
    if unknown:
        raise OptionError("json_schema", f"unsupported key(s) {', '.join(unknown)}: only"
                          f" {', '.join(SCHEMA_KEYS)} are checked")
    types = [schema.get("type")] + [p.get("type") for p in _properties(schema).values()]
    for kind in types:
        if kind is not None and kind not in JSON_TYPES:
            raise OptionError("json_schema", f"unknown type {kind!r} (one of"
                              f" {', '.join(JSON_TYPES)})")
    if not all(isinstance(k, str) for k in schema.get("required", [])):
        raise OptionError("json_schema", "required must be a list of key names")


def _properties(schema: dict[str, Any]) -> dict[str, dict]:
    properties = schema.get("properties", {})
    if not isinstance(properties, dict) or not all(isinstance(p, dict)
                                                   for p in properties.values()):
        raise OptionError("json_schema", "properties must be a table of {type = \"...\"} tables")
    return properties


def schema_errors(value: Any, schema: dict[str, Any]) -> str | None:
    """Why `value` breaks the minimal schema (type, required keys, property types), or None."""
    if not _is_type(value, schema.get("type")):
        return f"expected a JSON {schema['type']}, found {_json_type(value)}"
    required = schema.get("required", [])
    if required and not isinstance(value, dict):
        return f"expected a JSON object with keys {', '.join(required)}, found {_json_type(value)}"
    missing = [key for key in required if key not in value]
    if missing:
        return f"missing required key(s) {', '.join(missing)}"
    for key, rule in schema.get("properties", {}).items():
        if isinstance(value, dict) and key in value and not _is_type(value[key], rule.get("type")):
            return f"key {key!r} should be a JSON {rule['type']}, found {_json_type(value[key])}"
    return None


def _is_type(value: Any, kind: str | None) -> bool:
    if kind is None:
        return True
    if isinstance(value, bool) and kind in ("number", "integer"):
        return False
    return isinstance(value, JSON_TYPES[kind])


def _json_type(value: Any) -> str:
    return next((name for name, kind in JSON_TYPES.items() if type(value) is kind
                 or (isinstance(kind, tuple) and type(value) in kind)), type(value).__name__)


class ResponseFormat:
    """Checks a trimmed response against `response_format`; `label` is the answer_pattern's
    label reader, or None when answers have no pattern."""

    def __init__(self, options: Any, label: Callable[[str], str | None] | None):
        self.options, self.label = options, label
        self.response_regex = options.response_regex and compile_pattern(options.response_regex,
                                                                        "response_regex")

    def check(self, text: str) -> Reject | None:
        kind = self.options.response_format
        problem = {"json": self._json_problem, "regex": self._regex_problem,
                   "labels": self._label_problem}[kind](text)
        if problem is None:
            return None
        return Reject("format-violation", problem, {"rule": "format-violation", "format": kind,
                                                    "response": snippet(text, 200)})

    def _json_problem(self, text: str) -> str | None:
        try:
            value = json.loads(text, parse_constant=_not_json)
        except (ValueError, RecursionError) as error:
            return f"response is not valid JSON ({error}): {snippet(text)!r}"
        problem = schema_errors(value, self.options.json_schema or {})
        return problem and f"response JSON breaks json_schema: {problem}"

    def _regex_problem(self, text: str) -> str | None:
        if self.response_regex.fullmatch(text):
            return None
        return (f"response does not fully match response_regex {self.options.response_regex!r}:"
                f" {snippet(text)!r}")

    def _label_problem(self, text: str) -> str | None:
        label = self.label(text) if self.label else text
        if label is None:
            return f"answer_pattern finds no label in the response: {snippet(text)!r}"
        if label.strip() in self.options.labels:
            return None
        return (f"label {snippet(label, 40)!r} is not one of the allowed labels"
                f" ({', '.join(self.options.labels)})")


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")
