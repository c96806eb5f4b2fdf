"""`curate train` on a recipe whose records wait for review: it stops as `curate run` does,
saying how many wait and how to review them, with `curate run`'s exit status."""

from curate.cli.run import EXIT_REVIEW_PENDING
from curate.testing import invoke_cli

from .conftest import jsonl_text, memorisation_rows, training_recipe


def test_train_says_how_many_records_wait_and_how_to_review_them(tiny_model, tmp_path):
    (tmp_path / "d.jsonl").write_text(jsonl_text(memorisation_rows()))
    recipe = training_recipe(tiny_model, max_steps=2).replace(
        'format = "messages"\n', 'format = "messages"\norigin = "generated"\n\n'
                                 '[[stages]]\nuse = "review"\n')
    (tmp_path / "r.toml").write_text(recipe)
    run_dir = tmp_path / "run"
    code, output = invoke_cli(["train", str(tmp_path / "r.toml"), "--run-dir", str(run_dir)])
    assert code == EXIT_REVIEW_PENDING, output
    assert output.splitlines()[-1] == (
        f"error: {run_dir}: 12 records wait for review: curate review {tmp_path / 'r.toml'}"
        f" --run-dir {run_dir} (then run this again; nothing was trained)")
    assert not (run_dir / "adapter").exists()
