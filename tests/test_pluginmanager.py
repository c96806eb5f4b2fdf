"""Loading plugins: built-ins like third parties, replacement, clashes, failures, switches."""

import types
from dataclasses import dataclass

import pytest

from curate import hookimpl
from curate.errors import CurateError
from curate.pluginmanager import BUILTIN_PLUGINS, build_host
from curate.stages import Filter, Reject


def stage_plugin(stage_name: str, reason: str = "custom"):
    @dataclass
    class Options:
        pass

    class CustomStage(Filter):
        name = stage_name

        def check(self, record):
            return Reject(reason, "rejected by a test plugin")

    CustomStage.Options = Options
    module = types.ModuleType(f"plugin_{stage_name}_{reason}")

    @hookimpl
    def register_stages(register):
        register(CustomStage)

    module.register_stages = register_stages
    return module


def write_entry_point(root, name, module_name, module_source):
    (root / f"{module_name}.py").write_text(module_source)
    dist = root / f"{module_name}-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module_name}\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(f"[curate]\n{name} = {module_name}\n")


def test_every_builtin_is_a_registered_plugin():
    host = build_host()
    assert [name for name, info in host.plugins.items() if info.builtin] == list(BUILTIN_PLUGINS)
    assert host.pm.get_plugin("curate.plugins.length") is not None
    assert host.registry("stage").entries["length"].plugin == "curate.plugins.length"
    assert {"jsonl", "json", "csv", "parquet", "datasets"} <= set(host.registry("source").names())
    assert set(host.registry("format").names()) == {"alpaca", "sharegpt", "messages",
                                                    "prompt-completion"}
    assert not host.failed


def test_a_third_party_plugin_replaces_a_builtin_of_the_same_name(curate_plugin, run_recipe):
    curate_plugin(stage_plugin("length", "replaced"), name="better-length")
    result = run_recipe('[[sources]]\nname = "d"\nuse = "jsonl"\npath = "d.jsonl"\n'
                        '[[stages]]\nuse = "length"\n',
                        files={"d.jsonl": '{"prompt": "a", "completion": "bbbbbbbbbbbb"}\n'})
    assert result.exit_code == 0, result.output
    assert [r["reason"] for r in result.rejected("length")] == ["replaced"]


def test_two_third_party_plugins_with_one_name_are_reported_with_both_names():
    host = build_host(extra_plugins=(("first", stage_plugin("dedupe", "a")),
                                     ("second", stage_plugin("dedupe", "b"))))
    with pytest.raises(CurateError, match="stage 'dedupe' is registered by plugins 'first' and"
                                          " 'second'"):
        host.get("stage", "dedupe")


def test_disabling_a_builtin_by_its_short_name(monkeypatch):
    monkeypatch.setenv("CURATE_DISABLE_PLUGINS", "length")
    host = build_host()
    assert "length" not in host.registry("stage").names()
    with pytest.raises(CurateError, match="unknown stage 'length'"):
        host.get("stage", "length")


def test_entry_points_load_and_can_be_restricted(tmp_path, monkeypatch):
    write_entry_point(tmp_path, "hello", "curate_hello_plugin",
                      "from curate import hookimpl\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CURATE_LOAD_PLUGINS")
    host = build_host()
    assert host.plugins["hello"].version == "1.2.3"
    assert host.plugins["hello"].distribution == "curate_hello_plugin"
    monkeypatch.setenv("CURATE_LOAD_PLUGINS", "someone-else")
    assert "hello" not in build_host().plugins
    monkeypatch.setenv("CURATE_LOAD_PLUGINS", "hello")
    assert "hello" in build_host().plugins
    monkeypatch.setenv("CURATE_DISABLE_PLUGINS", "hello")
    assert "hello" not in build_host().plugins


def test_a_plugin_that_fails_to_import_is_reported_and_the_host_carries_on(tmp_path, monkeypatch):
    write_entry_point(tmp_path, "broken", "curate_broken_plugin",
                      "import a_module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CURATE_LOAD_PLUGINS", "broken")
    host = build_host()
    assert "ModuleNotFoundError" in host.failed["broken"]
    assert "length" in host.registry("stage").names()


def test_a_misspelt_hook_is_a_load_failure_with_a_suggestion():
    module = types.ModuleType("typo_plugin")

    @hookimpl
    def register_stage(register):
        pass

    module.register_stage = register_stage
    host = build_host(extra_plugins=(("typo", module),))
    assert "unknown hook 'register_stage': did you mean 'register_stages'?" in host.failed["typo"]


def test_registering_something_that_is_not_a_stage_fails_that_plugin_only():
    module = types.ModuleType("wrong_plugin")

    @hookimpl
    def register_stages(register):
        register(type("NotAStage", (), {"name": "nope"}))

    module.register_stages = register_stages
    host = build_host(extra_plugins=(("wrong", module),))
    assert "is not a subclass of curate.stages.Stage" in host.failed["wrong"]
    assert "length" in host.registry("stage").names()


def test_tracing_prints_hook_calls_and_registrations(monkeypatch, capsys):
    monkeypatch.setenv("CURATE_TRACE_PLUGINS", "1")
    build_host()
    err = capsys.readouterr().err
    assert "curate-trace: curate.plugins.length registered stage 'length'" in err
    assert "curate-trace: calling register_stages of curate.plugins.length" in err


def test_a_replacement_called_before_the_builtin_still_replaces_it():
    module = stage_plugin("length", "replaced-first")
    module.register_stages = hookimpl(trylast=True)(module.register_stages)
    host = build_host(extra_plugins=(("early", module),))
    entry = host.registry("stage").entries["length"]
    assert entry.plugin == "early" and entry.replaces == "curate.plugins.length"
    assert not host.registry("stage").clashes


def test_a_plugin_given_directly_wins_over_its_installed_entry_point(tmp_path, monkeypatch):
    write_entry_point(tmp_path, "hello", "curate_hello_plugin", "from curate import hookimpl\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CURATE_LOAD_PLUGINS", "hello")
    host = build_host(extra_plugins=(("hello", stage_plugin("greeting")),))
    assert not host.failed
    assert host.registry("stage").entries["greeting"].plugin == "hello"


def test_a_module_given_directly_under_another_name_is_not_registered_twice(tmp_path, monkeypatch):
    write_entry_point(tmp_path, "hello", "curate_hello_plugin", "from curate import hookimpl\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CURATE_LOAD_PLUGINS", "hello")
    import importlib

    module = importlib.import_module("curate_hello_plugin")
    host = build_host(extra_plugins=(("curate_hello_plugin", module),))
    assert not host.failed and "hello" not in host.plugins


def test_a_source_option_that_shadows_a_host_key_fails_the_plugin():
    from curate.sources import Source

    @dataclass
    class Options:
        path: str = ""
        format: str = "markdown"

    class Shadowing(Source):
        name = "shadowing"

    Shadowing.Options = Options
    module = types.ModuleType("shadowing")
    module.register_sources = hookimpl(lambda register: register(Shadowing))
    host = build_host(extra_plugins=(("shadowing", module),))
    assert ("source 'shadowing': option 'format' clashes with the host's own key"
            in host.failed["shadowing"])


def command_plugin(command_name: str, text: str):
    import click

    @click.command(name=command_name)
    def command():
        click.echo(text)

    module = types.ModuleType(f"commands_{text}")
    module.register_commands = hookimpl(lambda register: register(command))
    return module


def test_commands_replace_builtins_and_clashes_name_both_plugins(curate_plugin, capsys):
    from curate.testing import invoke_cli

    curate_plugin(command_plugin("why", "my why"), name="my-why")
    curate_plugin(command_plugin("hello", "first"), name="first")
    curate_plugin(command_plugin("hello", "second"), name="second")
    assert invoke_cli(["why"]) == (0, "my why\n")
    assert invoke_cli(["hello"]) == (0, "first\n")
    assert ("warning: command 'hello' is registered by plugins first and second; using first's"
            in capsys.readouterr().err)


def test_a_switch_naming_no_plugin_is_warned_about(monkeypatch):
    monkeypatch.setenv("CURATE_DISABLE_PLUGINS", "lenght,files")
    host = build_host()
    assert host.warnings == ["CURATE_DISABLE_PLUGINS names 'lenght', which is no plugin: did you"
                             " mean 'length'?"]
    assert "jsonl" not in host.registry("source").names()
