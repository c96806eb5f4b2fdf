"""A third-party plugin's mistakes fail that plugin, reported by name, never the host: wrong hook
arguments, a half-registered plugin, a broken chat template, a registry hook that returns instead
of registering, an after_run that raises."""

import types

import pytest

from curate import hookimpl
from curate.chat_templates import ChatTemplate
from curate.pluginmanager import build_host
from curate.testing import invoke_cli

TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'assistant' %}"
            "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
            "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{% endfor %}")


def plugin_module(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, function)
    return module


def template_plugin(**template_fields) -> types.ModuleType:
    fields = {"name": "acme", "template": TEMPLATE, "end_of_turn": ("<|im_end|>",),
              **template_fields}
    return plugin_module("template_plugin", register_chat_templates=hookimpl(
        lambda register: register(ChatTemplate(**fields))))


def test_a_hook_with_a_wrong_argument_name_fails_that_plugin_in_one_line(curate_plugin,
                                                                         capsys):
    module = plugin_module("badarg", register_formats=hookimpl(lambda reg: None),
                           register_chat_templates=hookimpl(lambda register: None))
    curate_plugin(module, name="badarg")
    code, output = invoke_cli(["plugins"])
    assert code == 0, output
    assert ("warning: plugin 'badarg' failed to load: TypeError: register_formats(reg): the hook"
            " has no argument 'reg'; its arguments are (register)\n") in capsys.readouterr().err


def test_a_plugin_that_pluggy_refuses_halfway_leaves_no_hook_behind():
    @hookimpl(wrapper=True)
    def register_stages(register):  # a wrapper must be a generator: pluggy refuses it
        pass

    module = plugin_module("halfway", register_chat_templates=hookimpl(
        lambda register: register(ChatTemplate("halfway", TEMPLATE, ("<|im_end|>",)))),
        register_stages=register_stages)
    host = build_host(extra_plugins=(("halfway", module),))
    assert "not a generator function" in host.failed["halfway"]
    assert "\n" not in host.failed["halfway"]
    assert not host.pm.has_plugin("halfway")
    assert "halfway" not in host.registry("chat template").names()


def test_a_template_whose_name_pattern_is_no_regex_fails_its_plugin():
    host = build_host(extra_plugins=(("acme", template_plugin(name_patterns=(r"acme(bad",))),))
    assert ("register_chat_templates: ValueError: chat template 'acme': name_patterns entry"
            " 'acme(bad' is not a regular expression: missing )") in host.failed["acme"]
    assert "acme" not in host.registry("chat template").names()


def test_a_plugin_whose_registration_fails_registers_nothing():
    from curate.plugins.length import LengthFilter

    class Replacement(LengthFilter):
        name = "length"  # replaces the built-in, then the plugin's next registration fails

    def register_stages(register):
        register(Replacement)
        raise RuntimeError("half done")

    module = plugin_module("half", register_stages=hookimpl(register_stages))
    host = build_host(extra_plugins=(("half", module),))
    assert host.failed["half"] == "register_stages: RuntimeError: half done"
    assert host.get("stage", "length") is LengthFilter  # the built-in again
    assert host.plugins["half"].registered == []


def test_a_lone_string_is_a_one_item_tuple():
    template = ChatTemplate("acme", TEMPLATE, end_of_turn="<|im_end|>", name_patterns="acme",
                            architectures="AcmeForCausalLM", originals=TEMPLATE)
    assert template.end_of_turn == ("<|im_end|>",)
    assert template.name_patterns == ("acme",)
    assert template.architectures == ("AcmeForCausalLM",)
    assert template.original_texts() == [TEMPLATE]
    assert not template.matches_name("qwen2.5")
    assert ChatTemplate("acme", TEMPLATE, end_of_turn=None).end_of_turn == ()


def test_a_registry_hook_that_returns_instead_of_registering_is_warned_about():
    module = plugin_module("returns", register_chat_templates=hookimpl(
        lambda register: [ChatTemplate("acme", TEMPLATE, ("<|im_end|>",))]))
    host = build_host(extra_plugins=(("returns", module),))
    assert host.warnings == ["plugin 'returns': register_chat_templates returned a value, which"
                             " is ignored; call register(...) instead"]


@pytest.fixture
def failing_after_run(curate_plugin):
    def after_run(run_dir, manifest):
        raise RuntimeError("slack webhook failed")

    # Registered last, so pluggy would call it before the built-in report.
    curate_plugin(plugin_module("slack", after_run=hookimpl(after_run)), name="slack")


def test_a_failing_after_run_is_a_warning_and_the_report_is_still_written(failing_after_run,
                                                                          run_recipe):
    result = run_recipe('[[sources]]\nname = "d"\nuse = "jsonl"\npath = "d.jsonl"\n',
                        files={"d.jsonl": '{"prompt": "a", "completion": "bbbb"}\n'})
    assert result.exit_code == 0, result.output
    assert ("warning: plugin 'slack': after_run failed: RuntimeError: slack webhook failed\n"
            in result.output)
    assert (result.run_dir / "report.md").is_file()
