"""Every recipe in recipes/ runs, and its counts add up: each input row ends in one place."""

import json
from pathlib import Path

import pytest

from curate.testing import invoke_cli

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))


def test_there_are_recipes():
    assert RECIPES


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_runs_and_every_row_is_accounted_for(recipe, tmp_path):
    code, output = invoke_cli(["run", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert code == 0, output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    steps = manifest["steps"]
    for step in steps:
        assert step["in"] == step["kept"] + step["rejected"], step["name"]
    for before, after in zip(steps, steps[1:]):
        assert after["in"] == before["kept"]
    final = manifest["final"]
    assert final["accounted"] == final["input"] == steps[0]["in"]
    assert final["train"] + final["eval"] == steps[-1]["kept"]
    assert final["rejected"] == sum(step["rejected"] for step in steps)
