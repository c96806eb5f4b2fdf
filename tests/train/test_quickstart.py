"""The README's training quickstart, as written: build the tiny model, run the recipe as
shipped, and the one-line change to a real model."""

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
    code, output = invoke_cli(["run", str(recipe)])
    assert code == 0, output
    assert "advice:" not in output  # the quickstart's settings are the advised ones
    assert "step 12/12  eval loss" in output
    run = tmp_path / "runs" / "train-quickstart"
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


def test_the_two_quickstarts_never_share_a_run_folder(tmp_path):
    from curate.pluginmanager import get_host
    from curate.recipe import load_recipe

    shutil.copytree(REPO / "recipes", tmp_path / "recipes")
    (tmp_path / "models" / "tiny").mkdir(parents=True)  # what the README's first line builds
    folders = {load_recipe(tmp_path / "recipes" / name, get_host()).default_run_dir().resolve()
               for name in ("quickstart.toml", "train/quickstart.toml")}
    assert len(folders) == 2, folders


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
