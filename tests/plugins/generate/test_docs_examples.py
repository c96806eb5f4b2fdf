"""The recipes the generate docs show validate as they are, with no warning: each one has a
review stage after `generate` and checks after the review, so a reviewer's edit is checked."""

import re

import pytest

from curate.pluginmanager import build_host
from curate.recipe import load_recipe
from curate.testing import source_table

PAGES = ("docs/stages/generate.md", "README.md")


def generate_examples(repo) -> list[tuple[str, str]]:
    """(page, block) for each complete TOML example with a generate stage; fragments that
    refer to an earlier block ("# [stages.strategy] as above") are left out."""
    return [(page, block) for page in PAGES
            for block in re.findall(r"```toml\n(.*?)```", (repo / page).read_text(), re.DOTALL)
            if 'use = "generate"' in block and "[stages.strategy]\n" in block]


def test_the_pages_show_complete_examples(repo):
    assert [page for page, _ in generate_examples(repo)] == [PAGES[0], PAGES[0], PAGES[1]]


@pytest.mark.parametrize("index", range(3))
def test_each_example_validates_with_checks_after_its_review(repo, tmp_path, index,
                                                             monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    page, block = generate_examples(repo)[index]
    (tmp_path / "qa.jsonl").write_text('{"prompt": "Hi?", "completion": "Hello."}\n')
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(source_table("qa", "qa.jsonl") + "\n" + block)
    loaded = load_recipe(recipe, build_host())
    assert loaded.warnings == [], page
    uses = [spec.use for spec in loaded.stages]
    assert uses.index("generate") < uses.index("review") < len(uses) - 1, page
