"""Every recipe in recipes/ runs, and its counts add up: each input row ends in one place."""

import json
from pathlib import Path

import pytest

from curate.testing import invoke_cli

ALL_RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))
RECIPES = [recipe for recipe in ALL_RECIPES if 'use = "generate"' not in recipe.read_text()]
"""The recipes that run here as they are: generate.toml needs an LLM server, and
tests/plugins/generate/test_stage.py runs it against the test server instead."""


def test_there_are_recipes():
    assert RECIPES


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_runs_and_every_row_is_accounted_for(recipe, tmp_path):
    code, output = invoke_cli(["run", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert code == 0, output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    steps = manifest["steps"]
    for step in steps:
        assert step["in"] + step.get("added", 0) == step["kept"] + step["rejected"], step["name"]
    for before, after in zip(steps, steps[1:]):
        assert after["in"] == before["kept"]
    final = manifest["final"]
    assert final["input"] == steps[0]["in"]
    assert final["accounted"] == final["input"] + final["added"]
    assert final["added"] == sum(step.get("added", 0) for step in steps)
    assert final["train"] + final["eval"] + final.get("general_eval", 0) == steps[-1]["kept"]
    assert final["rejected"] == sum(step["rejected"] for step in steps)


def test_the_readme_why_example_matches_the_quickstart(tmp_path):
    import re

    readme = (RECIPES[0].parents[1] / "README.md").read_text()
    shown_id, first_line = re.search(r"\$ curate why runs/quickstart (\w+)\n(.+)\n", readme).groups()
    quickstart = RECIPES[0].parent / "quickstart.toml"
    invoke_cli(["run", str(quickstart), "--run-dir", str(tmp_path / "run"), "-q"])
    code, output = invoke_cli(["why", str(tmp_path / "run"), shown_id])
    assert code == 0 and output.splitlines()[0] == first_line


def test_the_recipes_that_need_a_server_are_run_elsewhere():
    assert [recipe.name for recipe in ALL_RECIPES if recipe not in RECIPES] == ["generate.toml"]
