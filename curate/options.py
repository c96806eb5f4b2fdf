"""Typed plugin options: each plugin declares a dataclass; the host checks recipe tables against it.

    @dataclass
    class Options:
        min_chars: int = option(10, min=0, help="shortest response kept")
        compare: Literal["prompt", "response"] = "response"

Supported field types: bool, int, float, str, Literal[...], list[T], dict[str, T], and T | None.
A field without a default is required. Errors name the file and key path, what was expected and
what was found, and suggest close matches for misspelt keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

from curate.errors import RecipeError, did_you_mean

_MISSING = dataclasses.MISSING


class OptionError(ValueError):
    """Raised by a plugin's option check: `key` is the recipe key at fault."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


@dataclass
class NoOptions:
    """The options of a plugin that takes none."""


class Configurable:
    """What stages, trainers and evaluations share: a `name` for recipes, an `Options`
    dataclass, a `version` that joins cache fingerprints, and checks run at validation."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    version: ClassVar[str] = "1"

    @classmethod
    def check_options(cls, options: Any) -> None:
        """Checks beyond types and ranges, run when the recipe is validated: raise
        `curate.options.OptionError(key, message)`."""


def option(default: Any = _MISSING, *, min: float | None = None, max: float | None = None,
           help: str = "") -> Any:
    """A dataclass field with a range and a help text; mutable defaults are copied per instance."""
    metadata = {"min": min, "max": max, "help": help}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_help(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


def parse_options(schema: type, table: dict, file: str, path: str) -> Any:
    """Build a `schema` instance from a recipe table, or raise a RecipeError naming the key."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key in table:
        if key not in fields:
            raise RecipeError(file, _join(path, key),
                              f"unknown key '{key}'{did_you_mean(key, fields)}"
                              f" (known keys: {', '.join(sorted(fields)) or 'none'})")
    values = {}
    for name, field in fields.items():
        key_path = _join(path, name)
        if name in table:
            value = _check_type(table[name], hints[name], file, key_path)
            _check_range(value, field, file, key_path)
            values[name] = value
        elif field.default is _MISSING and field.default_factory is _MISSING:
            raise RecipeError(file, key_path, f"required key '{name}' is missing"
                              f" (expected {describe_type(hints[name])})")
    return schema(**values)


def options_to_dict(options: Any) -> dict:
    """The options as plain data, for fingerprints and manifests."""
    return dataclasses.asdict(options)


def describe_type(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args if a is not type(None))
    if origin is list:
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict:
        return f"a table of {_plural(args[1])}" if args else "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any) -> str:
    """What a list or table holds: "strings", not "a string"."""
    return {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}.get(
        hint, describe_type(hint))


def _check_type(value: Any, hint: Any, file: str, key_path: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        for arg in args:
            if arg is not type(None) and _fits(value, arg):
                return _check_type(value, arg, file, key_path)
    elif origin is list and isinstance(value, list):
        return [_check_type(v, args[0], file, f"{key_path}[{i}]") for i, v in enumerate(value)]
    elif origin is dict and isinstance(value, dict):
        return {k: _check_type(v, args[1], file, f"{key_path}.{k}") for k, v in value.items()}
    elif _fits(value, hint):
        return float(value) if hint is float else value
    raise RecipeError(file, key_path, f"expected {describe_type(hint)}, found {_describe_value(value)}"
                      + _literal_hint(value, hint))


def _fits(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin is Literal:
        return value in get_args(hint)
    if origin in (list, dict):
        return isinstance(value, origin)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is Any:
        return True
    return isinstance(value, hint)


def _check_range(value: Any, field: dataclasses.Field, file: str, key_path: str) -> None:
    low, high = field.metadata.get("min"), field.metadata.get("max")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if low is not None and value < low or high is not None and value > high:
        bounds = f"between {low} and {high}" if low is not None and high is not None else (
            f"at least {low}" if low is not None else f"at most {high}")
        raise RecipeError(file, key_path, f"expected a value {bounds}, found {value}")


def _literal_hint(value: Any, hint: Any) -> str:
    if get_origin(hint) is Literal and isinstance(value, str):
        return did_you_mean(value, [a for a in get_args(hint) if isinstance(a, str)])
    return ""


def _describe_value(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "table"}.get(type(value), type(value).__name__)
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"  # as TOML writes it
    return f"{kind} {value!r}" if not isinstance(value, (list, dict)) else kind


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
