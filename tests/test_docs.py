"""docs/plugins.md cannot drift from the hooks: every hookspec is documented there with its
exact signature, and every hookspec's docstring says since which version it exists."""

import inspect
import re
from pathlib import Path

import pytest

from curate import hookspecs
from curate.pluginmanager import __doc__ as PLUGINMANAGER_DOC

HOOKS = {name: function for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
         if hasattr(function, "curate_spec")}


def signature(function) -> str:
    return f"{function.__name__}({', '.join(inspect.signature(function).parameters)})"


GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def test_hookspecs_are_found():
    assert {"register_sources", "register_stages", "register_commands"} <= set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_has_a_docstring_saying_since_when(name):
    docstring = inspect.getdoc(HOOKS[name])
    assert docstring, f"hook {name} has no docstring"
    assert re.search(r"\bSince \d+(\.\d+)*\b", docstring), f"hook {name}: no 'Since X.Y'"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_has_a_section_with_its_signature(name, guide):
    headings = [line for line in guide.splitlines() if line.startswith("#")]
    expected = f"`{signature(HOOKS[name])}`"
    assert any(expected in heading for heading in headings), (
        f"docs/plugins.md needs a section headed {expected}")


def test_every_hook_section_names_a_real_hook(guide):
    documented = re.findall(r"^#+ .*`(\w+)\(", guide, flags=re.MULTILINE)
    assert set(documented) <= set(HOOKS), set(documented) - set(HOOKS)


def test_every_environment_switch_is_documented(guide):
    switches = set(re.findall(r"CURATE_[A-Z_]+", PLUGINMANAGER_DOC))
    assert switches and all(f"`{switch}" in guide for switch in switches)


def test_python_examples_compile(guide):
    blocks = re.findall(r"^```python\n(.*?)^```", guide, flags=re.MULTILINE | re.DOTALL)
    assert blocks
    for block in blocks:
        compile(block, "docs/plugins.md", "exec")


def section_example(guide: str, heading: str) -> str:
    """The first python example after the heading."""
    section = guide.split(heading, 1)[1]
    return re.search(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)[1]


def test_the_chat_template_example_trains_each_answer_and_its_end_of_turn(guide, tmp_path):
    from curate.chat_templates import Selection, render
    from curate.template_checks import PROBES, template_findings
    from curate.train.template import TrainingTemplate, check_stop_token_trained
    from support import tiny_tokenizers as tiny

    example = {}
    exec(section_example(guide, "### `register_chat_templates(register)`"), example)
    registered = []
    example["register_chat_templates"](registered.append)
    [template] = registered
    tokenizer = tiny.build_tokenizer(tmp_path / "model", "chatml", template.original_texts()[0])
    selection = Selection(template.text(), template.name, "test", template)
    assert [(f.level, f.message) for f in template_findings(tokenizer, selection)] == [
        ("ok", "every assistant turn ends with a trained <|im_end|>"),
        ("ok", "renders like the tokenizer's own template on 2 conversations")]
    check_stop_token_trained(tokenizer, TrainingTemplate(
        template.text(), template.name, "test", template.end_of_turn), PROBES[0])
    rendered = render(tokenizer, template.text(), PROBES[0])
    assert [tokenizer.decode(rendered.input_ids[start:end])
            for start, end in rendered.trained_runs()] == ["It is four.<|im_end|>",
                                                           "Six.<|im_end|>"]
