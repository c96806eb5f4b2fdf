"""`curate plugins`: what is installed and what it registers."""

import json
import types

from curate import hookimpl
from curate.stages import Filter
from curate.testing import invoke_cli


def test_without_third_party_plugins_it_says_so():
    code, output = invoke_cli(["plugins"])
    assert code == 0
    assert output.startswith("no third-party plugins installed")


def test_all_lists_builtins_and_what_they_register():
    code, output = invoke_cli(["plugins", "--all"])
    assert code == 0
    assert "curate.plugins.length (built-in)\n  stage: length\n" in output
    assert "  source: jsonl\n" in output and "  format: sharegpt\n" in output


def test_a_replacement_is_shown_on_both_sides(curate_plugin):
    class Length(Filter):
        name = "length"

        def check(self, record):
            return None

    module = types.ModuleType("my_length")
    module.register_stages = hookimpl(lambda register: register(Length))
    curate_plugin(module, name="my-length")
    code, output = invoke_cli(["plugins", "--all", "--json"])
    rows = {row["name"]: row for row in json.loads(output)["plugins"]}
    assert rows["my-length"]["registers"] == [["stage", "length",
                                               " (replaces built-in curate.plugins.length)"]]
    assert rows["curate.plugins.length"]["registers"] == [["stage", "length",
                                                           " (replaced by my-length)"]]
