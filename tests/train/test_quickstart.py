"""The README's training quickstart, as written: build the tiny model, run the recipe (with a
few steps instead of three epochs), and the one-line change to a real model."""

import dataclasses
import shutil
from pathlib import Path

from curate.testing import invoke_cli
from curate.train.options import QLoRAOptions
from curate.train.tiny_model import main as tiny_model_command

REPO = Path(__file__).resolve().parents[2]


def test_the_training_quickstart_runs_as_the_readme_says(tmp_path, capsys):
    shutil.copytree(REPO / "recipes", tmp_path / "recipes")
    corpus = sorted(str(p) for p in (tmp_path / "recipes" / "data").glob("*.jsonl"))
    tiny_model_command([str(tmp_path / "models" / "tiny"), "--corpus", *corpus])
    assert "plumbing demo" in capsys.readouterr().out
    recipe = tmp_path / "recipes" / "train" / "quickstart.toml"
    text = recipe.read_text()
    assert "epochs = 3" in text
    recipe.write_text(text.replace("epochs = 3", "max_steps = 2"))
    code, output = invoke_cli(["run", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert code == 0, output
    assert "advice:" not in output  # the quickstart's settings are the advised ones
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


def test_the_readme_shows_the_one_line_change_to_a_real_model():
    readme = (REPO / "README.md").read_text()
    recipe = (REPO / "recipes" / "train" / "quickstart.toml").read_text()
    assert 'path = "../../models/tiny"' in recipe
    assert 'path = "meta-llama/Llama-3.1-8B-Instruct"   # was "../../models/tiny"' in readme
    assert "plumbing demo" in readme


def test_docs_describe_every_train_option():
    page = (REPO / "docs" / "train.md").read_text()
    for field in dataclasses.fields(QLoRAOptions):
        assert f"| `{field.name}` |" in page, f"docs/train.md lacks `{field.name}`"
