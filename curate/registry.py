"""Named things that plugins register (sources, stages, ...), with clash and typo reporting."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from curate.errors import CurateError, did_you_mean


@dataclass
class Entry:
    name: str
    obj: Any
    plugin: str
    builtin: bool
    replaces: str | None = None
    """The built-in plugin whose entry of the same name this one replaced."""


@dataclass
class Registry:
    """The registered things of one kind, e.g. every stage, by name."""

    kind: str
    base: type | None = None
    reserved_options: frozenset[str] = frozenset()
    """Keys the host reads from the recipe table, which the plugin's Options must not use."""
    instances: bool = False
    """Registered things are instances of `base` (commands) rather than subclasses."""
    entries: dict[str, Entry] = field(default_factory=dict)
    clashes: dict[str, list[str]] = field(default_factory=dict)

    def name_of(self, obj: Any) -> str:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"registered {self.kind} {obj!r} has no `name` string")
        return name

    def check(self, obj: Any) -> None:
        """Raise TypeError unless obj is what this registry holds."""
        if self.base is not None:
            fits = isinstance(obj, self.base) if self.instances else (
                isinstance(obj, type) and issubclass(obj, self.base))
            if not fits:
                what = "an instance" if self.instances else "a subclass"
                raise TypeError(f"registered {self.kind} {obj!r} is not {what} of "
                                f"{self.base.__module__}.{self.base.__qualname__}")
        options = getattr(obj, "Options", None)
        if options is not None and not self.instances:
            if not dataclasses.is_dataclass(options):
                raise TypeError(f"{self.kind} '{obj.name}': Options must be a dataclass")
            clashing = sorted(set(options.__dataclass_fields__) & self.reserved_options)
            if clashing:
                raise TypeError(f"{self.kind} '{obj.name}': option '{clashing[0]}' clashes with"
                                f" the host's own key of that name in the recipe table; rename"
                                f" it")

    def add(self, obj: Any, plugin: str, builtin: bool) -> None:
        name = self.name_of(obj)
        self.check(obj)
        existing = self.entries.get(name)
        if existing is None:
            self.entries[name] = Entry(name, obj, plugin, builtin)
        elif existing.builtin and not builtin:
            self.entries[name] = Entry(name, obj, plugin, builtin, replaces=existing.plugin)
        elif builtin and not existing.builtin:
            existing.replaces = plugin
        elif existing.plugin != plugin:
            self.clashes.setdefault(name, [existing.plugin]).append(plugin)

    def get(self, name: str, *, failed_plugins: dict[str, str] | None = None) -> Any:
        """The object registered as `name`, or a CurateError that helps find the right name."""
        if name in self.clashes:
            plugins = " and ".join(f"'{p}'" for p in self.clashes[name])
            raise CurateError(f"{self.kind} '{name}' is registered by plugins {plugins}: disable"
                              f" all but one with CURATE_DISABLE_PLUGINS")
        if name in self.entries:
            return self.entries[name].obj
        message = f"unknown {self.kind} '{name}'{did_you_mean(name, self.entries)}"
        if not did_you_mean(name, self.entries):
            message += f" (available: {', '.join(sorted(self.entries)) or 'none'})"
        if failed_plugins:
            message += "; plugins that failed to load: " + ", ".join(
                f"{p} ({error})" for p, error in failed_plugins.items())
        raise CurateError(message)

    def names(self) -> list[str]:
        return sorted(self.entries)
