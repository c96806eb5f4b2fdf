"""Named things that plugins register (sources, stages, ...), with clash and typo reporting."""

from __future__ import annotations

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
    entries: dict[str, Entry] = field(default_factory=dict)
    clashes: dict[str, list[str]] = field(default_factory=dict)

    def add(self, obj: Any, plugin: str, builtin: bool) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"registered {self.kind} {obj!r} has no `name` string")
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise TypeError(f"registered {self.kind} {obj!r} is not a subclass of "
                            f"{self.base.__module__}.{self.base.__qualname__}")
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
