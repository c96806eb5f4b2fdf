"""The `qlora` trainer through `curate run`: a tiny NF4 Llama learns a memorisation task, and
the run folder holds the adapter, its tokenizer, template, record and card."""

import json

import pytest

from curate.train.tiny_model import CHATML_TRAINING_TEMPLATE

from .conftest import memorisation_rows, run_in, run_killed_at_step, training_recipe


def logged(run_dir, key):
    lines = (run_dir / "train" / "log.jsonl").read_text().splitlines()
    return [entry[key] for entry in map(json.loads, lines) if key in entry]


def test_loss_falls_on_a_memorisation_task(trained_run):
    _, run_dir = trained_run
    losses = logged(run_dir, "loss")
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 0.3, losses
    accuracy = logged(run_dir, "mean_token_accuracy")
    assert accuracy[-1] > accuracy[0] + 0.3, accuracy


def test_training_prints_the_advice_and_its_progress(trained_run):
    output, _ = trained_run
    assert "advice: learning_rate 0.01 is outside 0.0001 to 0.0003" in output
    assert "advice: effective batch 4 (batch_size 4 x gradient_accumulation 1 x 1 device)" in output
    assert "(nf4, float32 compute, CPU) on 10 examples" in output
    assert "step 24/24  loss " in output and "step 24/24  eval loss " in output
    assert "Traceback" not in output and "it/s]" not in output


def test_the_adapter_folder_holds_everything_to_use_and_trace_it(trained_run):
    _, run_dir = trained_run
    adapter = run_dir / "adapter"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json",
                 "chat_template.jinja", "chat_template.training.jinja", "generation_config.json",
                 "training.json", "README.md"):
        assert (adapter / name).is_file(), name
    assert (adapter / "chat_template.training.jinja").read_text() == CHATML_TRAINING_TEMPLATE
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16
    record = json.loads((adapter / "training.json").read_text())
    assert record["options"]["quantization"] == "nf4"
    assert "tokenizer" in record["template"]["label"]  # its own template: none registered matches
    manifest = json.loads((run_dir / "manifest.json").read_text())
    metrics = manifest["train"]["metrics"]
    assert metrics["steps"] == 24 and metrics["eval_loss"] <= metrics["last_eval_loss"]
    assert metrics["best_checkpoint"].startswith("checkpoint-")
    assert not (run_dir / "train" / "checkpoints").exists()  # only a crash leaves them
    assert (run_dir / "train" / "log.jsonl").is_file()
    card = (adapter / "README.md").read_text()
    assert manifest["split"]["train_sha256"] in card and record["dataset_sha256"] in card
    assert 'use = "qlora"' in card and "| train_loss |" in card
    assert "base_model:" not in card  # a local folder is no Hub model id
    assert not (adapter / "training_args.bin").exists()  # no pickle in a folder to share


def test_the_training_curves_go_to_tensorboard_in_the_run_folder(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir = trained_run
    folder = run_dir / "train" / "tensorboard"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(folder))
    events.Reload()
    losses = [event.value for event in events.Scalars("train/loss")]
    assert losses == pytest.approx(logged(run_dir, "loss"), rel=1e-5)
    assert [event.step for event in events.Scalars("eval/loss")] == [8, 16, 24]
    assert not list((run_dir / "train").glob("checkpoints/**/events.out.*"))


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tiny_model, tmp_path, monkeypatch):
    recipe = training_recipe(tiny_model, max_steps=8, eval_steps=4)
    run_killed_at_step(monkeypatch, tmp_path, recipe, memorisation_rows(), 5)
    assert (tmp_path / "run" / "train" / "checkpoints" / "checkpoint-4").is_dir()
    code, output, run_dir = run_in(tmp_path, recipe, memorisation_rows())
    assert code == 0, output
    assert "resuming from" in output and "checkpoint-4" in output
    metrics = json.loads((run_dir / "manifest.json").read_text())["train"]["metrics"]
    assert metrics["resumed_from"] == "checkpoint-4" and metrics["steps"] == 8
    steps = logged(run_dir, "step")
    assert steps == sorted(steps) and max(steps) == 8  # a resumed run keeps its log going


def test_a_fresh_training_starts_a_fresh_log(tiny_model, tmp_path):
    rows = memorisation_rows(6)
    code, output, run_dir = run_in(tmp_path, training_recipe(
        tiny_model, max_steps=3, logging_steps=1, eval_steps=3), rows)
    assert code == 0, output
    assert 3 in logged(run_dir, "step")
    code, output, run_dir = run_in(tmp_path, training_recipe(
        tiny_model, max_steps=1, logging_steps=1, eval_steps=1), rows)
    assert code == 0, output
    assert set(logged(run_dir, "step")) == {1}  # the earlier training's steps are gone


def test_the_unsloth_trainer_says_in_one_line_why_it_is_not_used(tiny_model, tmp_path):
    recipe = training_recipe(tiny_model, max_steps=1, eval_steps=1).replace(
        'use = "qlora"', 'use = "unsloth"')
    code, output, run_dir = run_in(tmp_path, recipe, memorisation_rows(6))
    assert code == 0, output
    lines = [line for line in output.splitlines() if line.startswith("unsloth:")]
    assert len(lines) == 1 and "standard qlora path" in lines[0], output
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_a_recipe_without_a_model_is_one_clear_line(tmp_path):
    recipe = training_recipe(tmp_path / "nowhere").replace(
        f'path = "{tmp_path / "nowhere"}"\n', "")
    code, output, _ = run_in(tmp_path, recipe, memorisation_rows(6), "-q")
    assert code == 2 and output.count("\n") == 1, output
    assert "model.path: [train] fine-tunes a base model and [model] names none" in output
    assert not (tmp_path / "run").exists()  # refused before any step ran
