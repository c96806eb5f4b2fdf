"""Interrupted trainings: a rerun resumes from the newest complete checkpoint, never from one a
kill left half-written, never trains past the end, and its metrics and log cover the whole run
once."""

import json
import shutil
from pathlib import Path

import pytest

from curate.train import session, sft

from .conftest import Killed, memorisation_rows, run_in, run_killed_at_step, training_recipe

RECIPE_OPTIONS = dict(max_steps=8, eval_steps=4, logging_steps=2, save_total_limit=1)


def tensorboard_steps(run_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "train" / "tensorboard"))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())["train"]["metrics"]


def logged_steps(run_dir: Path, key: str) -> list[int]:
    lines = (run_dir / "train" / "log.jsonl").read_text().splitlines()
    return [entry["step"] for entry in map(json.loads, lines) if key in entry]


def adapter_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, tmp_path_factory) -> dict:
    """The metrics of the same training run start to finish without a kill."""
    code, output, run_dir = run_in(tmp_path_factory.mktemp("whole"), training_recipe(
        tiny_model, **RECIPE_OPTIONS), memorisation_rows())
    assert code == 0, output
    return metrics_of(run_dir)


def test_a_checkpoint_cut_short_is_removed_and_the_last_complete_one_resumed(
        tiny_model, tmp_path, monkeypatch, uninterrupted):
    recipe = training_recipe(tiny_model, **RECIPE_OPTIONS)
    run_killed_at_step(monkeypatch, tmp_path, recipe, memorisation_rows(), 7)
    checkpoints = tmp_path / "run" / "train" / "checkpoints"
    complete = checkpoints / "checkpoint-4"
    # what a kill while saving leaves: everything but the trainer state, the adapter only,
    # or a trainer state cut short
    shutil.copytree(complete, checkpoints / "checkpoint-5")
    (checkpoints / "checkpoint-5" / "trainer_state.json").unlink()
    (checkpoints / "checkpoint-6").mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy(complete / name, checkpoints / "checkpoint-6" / name)
    shutil.copytree(complete, checkpoints / "checkpoint-7")
    state = checkpoints / "checkpoint-7" / "trainer_state.json"
    state.write_text(state.read_text()[:100])

    code, output, run_dir = run_in(tmp_path, recipe, memorisation_rows())
    assert code == 0, output
    for name in ("checkpoint-5", "checkpoint-6", "checkpoint-7"):
        assert f"removing {name}: an interrupted save left it incomplete" in output
    assert "resuming from" in output and output.count("checkpoint-4") == 1, output
    assert "Traceback" not in output
    metrics = metrics_of(run_dir)
    assert metrics["resumed_from"] == "checkpoint-4" and metrics["steps"] == 8
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert logged_steps(run_dir, "loss") == [2, 4, 6, 8]  # step 6 logged once, not twice
    assert logged_steps(run_dir, "eval_loss") == [4, 8]
    assert tensorboard_steps(run_dir, "train/loss") == [2, 4, 6, 8]  # the killed 6 purged
    # the metrics cover the whole run, as if it had never been killed
    assert metrics["train_tokens"] == uninterrupted["train_tokens"]
    assert metrics["train_loss"] == pytest.approx(uninterrupted["train_loss"], rel=1e-3)
    assert "train_loss_steps" not in metrics


def test_a_run_killed_after_saving_its_adapter_finishes_without_another_step(
        tiny_model, tmp_path, monkeypatch, uninterrupted):
    real_save = session._save

    def save_then_die(trainer, *args):
        real_save(trainer, *args)
        raise Killed("killed before the checkpoints were removed")

    monkeypatch.setattr(session, "_save", save_then_die)
    recipe = training_recipe(tiny_model, **RECIPE_OPTIONS)
    with pytest.raises(Killed):
        run_in(tmp_path, recipe, memorisation_rows())
    checkpoints = tmp_path / "run" / "train" / "checkpoints"
    final = adapter_weights(checkpoints / "checkpoint-8")

    monkeypatch.setattr(session, "_save", real_save)
    code, output, run_dir = run_in(tmp_path, recipe, memorisation_rows())
    assert code == 0, output
    assert "checkpoint-8 is the end of training: nothing left to train" in output
    assert "step 9" not in output
    metrics = metrics_of(run_dir)
    assert metrics["steps"] == 8 and metrics["resumed_from"] == "checkpoint-8"
    assert metrics["train_tokens"] == uninterrupted["train_tokens"]
    assert metrics["train_loss"] == pytest.approx(uninterrupted["train_loss"], rel=1e-6)
    assert max(logged_steps(run_dir, "eval_loss")) == 8
    saved = adapter_weights(run_dir / "adapter")
    assert saved.keys() == final.keys()
    assert all((saved[key] == final[key]).all() for key in final)
    assert not checkpoints.exists()


def test_a_train_loss_missing_some_steps_says_which_it_covers(tiny_model, tmp_path,
                                                              monkeypatch):
    recipe = training_recipe(tiny_model, max_steps=8, eval_steps=3, logging_steps=2)
    run_killed_at_step(monkeypatch, tmp_path, recipe, memorisation_rows(), 5)
    checkpoint = tmp_path / "run" / "train" / "checkpoints" / "checkpoint-3"
    killed_seconds = json.loads((checkpoint / "curate_elapsed.json").read_text())["seconds"]
    code, output, run_dir = run_in(tmp_path, recipe, memorisation_rows())
    assert code == 0, output
    metrics = metrics_of(run_dir)
    # checkpoint-3 logged the loss up to step 2 only; steps 4-8 are this run's
    assert metrics["resumed_from"] == "checkpoint-3" and metrics["train_loss_steps"] == 7
    # the time covers the killed run's 3 steps too, not this process's 5 alone
    runtime = [json.loads(line) for line in (run_dir / "train" / "log.jsonl").read_text()
               .splitlines() if "train_runtime" in line][-1]["train_runtime"]  # this process
    assert killed_seconds > 0 and metrics["train_seconds"] >= killed_seconds + 0.9 * runtime


def test_train_tokens_count_every_step_not_only_the_logged_ones(tiny_model, tmp_path):
    recipe = training_recipe(tiny_model, max_steps=3, eval_steps=3, logging_steps=2)
    code, output, run_dir = run_in(tmp_path, recipe, memorisation_rows())
    assert code == 0, output
    last_logged = [json.loads(line) for line in
                   (run_dir / "train" / "log.jsonl").read_text().splitlines()
                   if '"num_tokens"' in line and '"loss"' in line][-1]
    assert last_logged["step"] == 2
    assert metrics_of(run_dir)["train_tokens"] > last_logged["num_tokens"]


def test_the_whole_run_loss_weighs_each_logged_loss_by_its_steps():
    history = [{"step": 2, "loss": 4.0}, {"step": 4, "eval_loss": 9.0},
               {"step": 4, "loss": 2.0}, {"step": 6, "loss": 7.0}]
    resumed = session.TrainCall(start=4, steps=4, loss=1.0)
    assert session.whole_run_loss(history, resumed) == (pytest.approx(2.0), 8)
    fresh = session.TrainCall(start=0, steps=6, loss=3.0)
    assert session.whole_run_loss(history, fresh) == (3.0, 6)
    # resumed at step 5: step 5 has no loss on record, so the loss covers 4 + 3 steps
    assert session.whole_run_loss(history, session.TrainCall(5, 3, 1.0)) == (
        pytest.approx((4 * 3 + 3) / 7), 7)


def test_a_resumed_log_keeps_the_steps_up_to_its_checkpoint(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 2, "loss": 1}\n{"step": 4, "loss": 1}\n{"step": 6, "loss": 1}\n'
                   '{"step": 8, "lo')
    sft.keep_log_up_to(log, 4)
    assert log.read_text() == '{"step": 2, "loss": 1}\n{"step": 4, "loss": 1}\n'
    sft.keep_log_up_to(log, 0)
    assert not log.exists()
