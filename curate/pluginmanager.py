"""Loads built-in and installed plugins and collects what they register.

Built-ins are listed in BUILTIN_PLUGINS and registered with the same `pm.register` call a
third-party plugin gets. Installed plugins come from the `curate` entry-point group.

Environment switches:
  CURATE_LOAD_PLUGINS=a,b     load only these installed plugins ("" loads none)
  CURATE_DISABLE_PLUGINS=a,b  skip these plugins, built-ins included (e.g. `length`, or a module path)
  CURATE_TRACE_PLUGINS=1      print every hook call and registration to stderr
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from curate import hookspecs
from curate.errors import did_you_mean
from curate.registry import Registry

BUILTIN_PLUGINS = (
    "curate.cli.run",
    "curate.cli.inspect",
    "curate.cli.plugins",
    "curate.cli.review",
    "curate.cli.templates",
    "curate.plugins.formats",
    "curate.plugins.sources.files",
    "curate.plugins.sources.hf",
    "curate.plugins.length",
    "curate.plugins.language",
    "curate.plugins.dedupe",
    "curate.plugins.consistency",
    "curate.plugins.generate",
    "curate.plugins.review",
    "curate.plugins.rehearsal",
    "curate.plugins.chat_templates",
    "curate.plugins.chat_template_step",
    "curate.plugins.report",
    "curate.train.trainer",
    "curate.train.commands",
    "curate.evals.evaluations",
    "curate.evals.eval_command",
)

REGISTRY_HOOKS = {
    "register_sources": "source",
    "register_formats": "format",
    "register_stages": "stage",
    "register_chat_templates": "chat template",
    "register_trainers": "trainer",
    "register_evals": "evaluation",
    "register_language_detectors": "language detector",
    "register_generation_strategies": "generation strategy",
    "register_commands": "command",
}


@dataclass
class PluginInfo:
    name: str
    builtin: bool
    distribution: str = ""
    version: str = ""
    registered: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name) pairs this plugin registered."""


@dataclass
class PluginHost:
    """The plugin manager plus everything the plugins registered."""

    pm: pluggy.PluginManager
    registries: dict[str, Registry]
    plugins: dict[str, PluginInfo]
    failed: dict[str, str]
    """Plugin name -> one-line reason it could not be loaded."""
    warnings: list[str] = field(default_factory=list)

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def get(self, kind: str, name: str) -> Any:
        return self.registries[kind].get(name, failed_plugins=self.failed)

    def after_run(self, run_dir: Path, manifest: dict) -> None:
        """Each plugin's after_run on its own, in pluggy's order: one that raises is a one-line
        warning, and the others (the built-in report among them) still run."""
        for impl in reversed(self.pm.hook.after_run.get_hookimpls()):
            _trace(f"calling after_run of {impl.plugin_name}")
            try:
                self._hook_of(impl.plugin_name, "after_run")(run_dir=run_dir, manifest=manifest)
            except Exception as error:
                if os.environ.get("CURATE_TRACEBACK"):
                    traceback.print_exc()
                print(f"warning: plugin '{impl.plugin_name}': after_run failed:"
                      f" {_one_line(error)}", file=sys.stderr, flush=True)

    def _hook_of(self, plugin_name: str, hook_name: str) -> pluggy.HookCaller:
        """A caller of `hook_name` that runs only this plugin's implementation."""
        others = [plugin for name, plugin in self.pm.list_name_plugin() if name != plugin_name]
        return self.pm.subset_hook_caller(hook_name, remove_plugins=others)

    def identity(self, kind: str, name: str) -> list[str]:
        """What code a registered name resolves to: the plugin, its distribution's version,
        the class and the class's `version`. Part of cache fingerprints."""
        entry = self.registries[kind].entries[name]
        info = self.plugins[entry.plugin]
        obj = entry.obj
        return [entry.plugin, info.version, f"{obj.__module__}.{obj.__qualname__}",
                str(getattr(obj, "version", ""))]


def _registries() -> dict[str, Registry]:
    """An empty registry per kind, knowing what a registered thing must be."""
    import click

    from curate.chat_templates import ChatTemplate
    from curate.formats import Format
    from curate.generation import GenerationStrategy
    from curate.language import LanguageDetector
    from curate.sources import Source, SourceHostOptions
    from curate.stages import Stage
    from curate.training import Evaluation, Trainer

    table_keys = frozenset({"name", "use"})
    return {
        "source": Registry("source", Source, frozenset(SourceHostOptions.__dataclass_fields__)),
        "format": Registry("format", Format),
        "stage": Registry("stage", Stage, table_keys),
        "chat template": Registry("chat template", ChatTemplate, instances=True),
        "trainer": Registry("trainer", Trainer, table_keys),
        "evaluation": Registry("evaluation", Evaluation, table_keys),
        "language detector": Registry("language detector", LanguageDetector),
        "generation strategy": Registry("generation strategy", GenerationStrategy,
                                        frozenset({"use"})),
        "command": Registry("command", click.Command, instances=True),
    }


def _env_names(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _short_name(module_path: str) -> str:
    return module_path.rsplit(".", 1)[-1]


def _trace(message: str) -> None:
    if os.environ.get("CURATE_TRACE_PLUGINS"):
        print(f"curate-trace: {message}", file=sys.stderr)


def build_host(extra_plugins: tuple[tuple[str, Any], ...] = ()) -> PluginHost:
    """A fresh plugin host: built-ins, then installed entry points, then `extra_plugins`."""
    pm = pluggy.PluginManager("curate")
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm, {}, {}, {})
    disabled = _env_names("CURATE_DISABLE_PLUGINS") or set()
    for module_path in BUILTIN_PLUGINS:
        if module_path in disabled or _short_name(module_path) in disabled:
            continue
        _register(host, module_path, lambda m=module_path: importlib.import_module(m), builtin=True)
    given = {name for name, _ in extra_plugins} | {
        getattr(plugin, "__name__", "") for _, plugin in extra_plugins}
    installed = _load_entry_points(host, disabled, given)
    for name, plugin in extra_plugins:
        _register(host, name, lambda p=plugin: p, builtin=False)
    _collect_registrations(host)
    known = {*BUILTIN_PLUGINS, *map(_short_name, BUILTIN_PLUGINS), *installed, *given}
    host.warnings += _unknown_switch_names(known)
    return host


def _unknown_switch_names(known: set[str]) -> list[str]:
    """A warning for each name in a switch that matches no plugin: likely a typo."""
    warnings = []
    for variable in ("CURATE_DISABLE_PLUGINS", "CURATE_LOAD_PLUGINS"):
        for name in sorted((_env_names(variable) or set()) - known):
            warnings.append(f"{variable} names '{name}', which is no plugin"
                            f"{did_you_mean(name, known)}")
    return warnings


def _load_entry_points(host: PluginHost, disabled: set[str], given: set[str]) -> set[str]:
    """Register installed plugins, except disabled ones and those also given directly (by name
    or module), which would otherwise be registered twice. Returns every installed name."""
    only = _env_names("CURATE_LOAD_PLUGINS")
    entry_points = sorted(metadata.entry_points(group="curate"), key=lambda e: e.name)
    for entry_point in entry_points:
        if entry_point.name in disabled or (only is not None and entry_point.name not in only):
            continue
        if entry_point.name in given or entry_point.value in given:
            continue
        dist = entry_point.dist
        _register(host, entry_point.name, entry_point.load, builtin=False,
                  distribution=dist.name if dist else "", version=dist.version if dist else "")
    return {entry_point.name for entry_point in entry_points}


def _register(host: PluginHost, name: str, load, builtin: bool, **info: str) -> None:
    try:
        plugin = load()
        _check_hooks(host.pm, plugin)
        _register_all_or_nothing(host.pm, plugin, name)
    except Exception as error:  # a broken plugin must not take the host down
        host.failed[name] = _one_line(error)
        _trace(f"plugin {name} failed: {host.failed[name]}")
        return
    host.plugins[name] = PluginInfo(name, builtin, **info)


def _register_all_or_nothing(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    """pm.register adds a plugin's hooks one by one and can fail halfway: take back what it
    added, so that no hook calls a plugin the host does not know."""
    name_was_taken = pm.has_plugin(name)
    try:
        pm.register(plugin, name=name)
    except Exception:
        if not name_was_taken and pm.has_plugin(name):
            pm.unregister(name=name)
        raise


def _one_line(error: Exception) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _check_hooks(pm: pluggy.PluginManager, plugin: Any) -> None:
    """Each hookimpl names a hook of curate and only that hook's arguments."""
    for attribute in dir(plugin):
        options = pm.parse_hookimpl_opts(plugin, attribute)
        if options is None:
            continue
        hook_name = options.get("specname") or attribute
        spec = getattr(hookspecs, hook_name, None)
        if not hasattr(spec, "curate_spec"):
            raise AttributeError(f"implements unknown hook '{hook_name}'"
                                 f"{did_you_mean(hook_name, REGISTRY_HOOKS)}")
        _check_arguments(hook_name, getattr(plugin, attribute), spec)


def _check_arguments(hook_name: str, function: Any, spec: Any) -> None:
    """What pluggy would refuse halfway through registering, said in one line."""
    expected = list(inspect.signature(spec).parameters)
    for argument in _required_arguments(function):
        if argument not in expected and argument != "self":
            raise TypeError(f"{hook_name}({argument}): the hook has no argument '{argument}';"
                            f" its arguments are ({', '.join(expected)})")


def _required_arguments(function: Any) -> list[str]:
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [name for name, parameter in inspect.signature(function).parameters.items()
            if parameter.kind in positional and parameter.default is parameter.empty]


def _collect_registrations(host: PluginHost) -> None:
    """Every plugin's registrations, all or nothing: when a plugin's registry hook fails, the
    registrations are collected again without it, so nothing it registered before failing
    (nor a built-in it replaced) is left half-changed."""
    failed = set(host.failed)
    _register_everything(host)
    if set(host.failed) != failed:
        warnings = list(host.warnings)
        _register_everything(host)
        host.warnings = warnings


def _register_everything(host: PluginHost) -> None:
    host.registries = _registries()
    for info in host.plugins.values():
        info.registered.clear()
    for hook_name, kind in REGISTRY_HOOKS.items():
        for impl in getattr(host.pm.hook, hook_name).get_hookimpls():
            # a plugin that failed to load, or to register, says why in host.failed
            if impl.plugin_name in host.plugins and impl.plugin_name not in host.failed:
                _call_registry_hook(host, impl, hook_name, host.registries[kind])


def _call_registry_hook(host: PluginHost, impl: pluggy.HookImpl, hook_name: str,
                        registry: Registry) -> None:
    info = host.plugins[impl.plugin_name]

    def register(obj: Any) -> None:
        registry.add(obj, impl.plugin_name, info.builtin)
        info.registered.append((registry.kind, registry.name_of(obj)))
        _trace(f"{impl.plugin_name} registered {registry.kind} '{registry.name_of(obj)}'")

    _trace(f"calling {hook_name} of {impl.plugin_name}")
    try:
        returned = impl.function(**{arg: register for arg in impl.argnames})
    except Exception as error:
        host.failed[impl.plugin_name] = f"{hook_name}: {_one_line(error)}"
        return
    if returned is not None:
        host.warnings.append(f"plugin '{impl.plugin_name}': {hook_name} returned a value, which"
                             f" is ignored; call register(...) instead")


_extra_plugins: list[tuple[str, Any]] = []


@cache
def get_host() -> PluginHost:
    """The process-wide plugin host, built on first use."""
    return build_host(tuple(_extra_plugins))


@contextmanager
def plugins_registered(*plugins: tuple[str, Any]) -> Iterator[PluginHost]:
    """Within the block, the process-wide host also has these (name, plugin) pairs registered,
    the way an installed third-party plugin would be. For tests."""
    _extra_plugins.extend(plugins)
    get_host.cache_clear()
    try:
        yield get_host()
    finally:
        for pair in plugins:
            _extra_plugins.remove(pair)
        get_host.cache_clear()
