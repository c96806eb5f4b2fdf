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
