"""The built-in evaluations after `curate run` trained the tiny model: results.json, samples,
the forgetting flag, caching, and the report's Evaluation section."""

import json

from curate.testing import invoke_cli



def results_of(run_dir):
    return json.loads((run_dir / "eval" / "results.json").read_text())


def test_loss_and_perplexity_fall_on_held_out_task_examples(evaluated_run):
    _, run_dir, _ = evaluated_run
    loss = results_of(run_dir)["loss"]
    assert loss["examples"] == 4 and loss["tokens"] > 20
    assert loss["tuned"]["loss"] < loss["base"]["loss"] - 0.4, loss
    assert loss["base"]["perplexity"] > 100  # random weights: about the vocabulary's size
    assert loss["perplexity_change"] < -0.3


def test_task_metrics_compare_generated_answers_of_base_and_tuned(evaluated_run):
    output, run_dir, _ = evaluated_run
    metrics = results_of(run_dir)["task-metrics"]
    assert metrics["examples"] == 4
    assert set(metrics["metrics"]) == {"exact", "contains", "regex"}
    assert metrics["metrics"]["regex"]["base"] == 0.0  # random weights never say it
    assert metrics["metrics"]["regex"]["tuned"] > 0.0, metrics
    assert "task-metrics: regex 0.0% -> " in output
    samples = [json.loads(line) for line in
               (run_dir / "eval" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    eval_ids = [json.loads(line)["id"] for line in
                (run_dir / "dataset" / "eval.jsonl").read_text().splitlines()]
    assert [sample["id"] for sample in samples] == eval_ids
    first = samples[0]
    assert first["reference"].startswith("The code word ") and first["prompt"].endswith("?")
    assert first["base"] != first["tuned"]
    assert set(first["verdicts"]["task-metrics"]) == {"exact", "contains", "regex"}


def test_forgetting_is_measured_on_the_held_out_general_slice_and_flagged(evaluated_run):
    output, run_dir, _ = evaluated_run
    forgetting = results_of(run_dir)["forgetting"]
    assert forgetting["measured"] is True and forgetting["examples"] == 4
    assert forgetting["perplexity_change"] > 0.05, forgetting
    assert forgetting["flagged"] is True
    assert "warning: forgetting: perplexity on held-out general data rose" in output


def test_results_are_in_the_manifest_and_the_report(evaluated_run):
    _, run_dir, _ = evaluated_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["train"]["evals"]) == {"loss", "task-metrics", "forgetting"}
    html = (run_dir / "report.html").read_text()
    assert '<section id="evaluation"><h2>Evaluation</h2>' in html
    assert "<td>perplexity</td>" in html and "FLAGGED" in html
    assert "<polyline" in html and "Training and eval loss by step" in html
    assert "Where base and tuned answered differently" in html
    markdown = (run_dir / "report.md").read_text()
    assert "## Evaluation" in markdown and "| loss | perplexity |" in markdown


def test_a_rerun_reuses_the_evaluations(evaluated_run, tmp_path):
    _, run_dir, recipe = evaluated_run
    code, output = invoke_cli(["run", str(recipe), "--run-dir", str(run_dir)])
    assert code == 0, output
    for name in ("loss", "task-metrics", "forgetting"):
        assert f"eval {name:<19} cached" in output


def test_the_model_is_loaded_once_for_all_evaluations_of_an_adapter(evaluated_run):
    from curate.evals.model import _loaded, load_tuned

    _, run_dir, _ = evaluated_run
    first = load_tuned(run_dir)
    assert load_tuned(run_dir) is first and len(_loaded) == 1


def test_the_eval_command_refuses_a_run_without_an_adapter(tiny_model, tmp_path):
    from .conftest import evals_recipe, write_inputs

    write_inputs(tmp_path)
    (tmp_path / "r.toml").write_text(evals_recipe(tiny_model))
    code, output = invoke_cli(["eval", str(tmp_path / "r.toml"), "--run-dir",
                               str(tmp_path / "never-run")])
    assert code == 2
    assert output.strip().splitlines()[-1].endswith(
        "adapter is missing): train first with `curate run"
        f" {tmp_path / 'r.toml'} --run-dir {tmp_path / 'never-run'}`")
    assert "Traceback" not in output


def test_the_eval_command_refuses_an_adapter_a_later_training_did_not_replace(
        evaluated_run, tmp_path):
    import shutil

    _, run_dir, recipe = evaluated_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "train" / "checkpoints" / "checkpoint-3").mkdir(parents=True)  # a killed retrain
    code, output = invoke_cli(["eval", str(recipe), "--run-dir", str(copy)])
    assert code == 2 and output.count("\n") == 1, output
    assert "a training started here did not finish" in output
    assert f"run `curate run {recipe} --run-dir {copy}` to finish it" in output


def test_the_eval_command_refuses_a_recipe_without_evals(tiny_model, tmp_path):
    from .conftest import evals_recipe, write_inputs

    write_inputs(tmp_path)
    (tmp_path / "r.toml").write_text(evals_recipe(tiny_model, evals=""))
    code, output = invoke_cli(["eval", str(tmp_path / "r.toml")])
    assert code == 2 and "the recipe has no [[evals]]: add one" in output


def test_a_report_without_evaluation_results_has_no_evaluation_section(tmp_path):
    from curate.plugins.report_eval import gather_evaluation, html_section, markdown_section

    assert gather_evaluation(tmp_path) is None
    assert html_section(None) is None and markdown_section(None) == ""


def test_forgetting_within_max_increase_is_not_flagged(evaluated_run):
    from curate.evals.forgetting import ForgettingEval, ForgettingOptions
    from curate.training import TrainContext

    _, run_dir, _ = evaluated_run
    dataset = run_dir / "dataset"
    lines: list[str] = []
    context = TrainContext(run_dir, run_dir, dataset / "train.jsonl", dataset / "eval.jsonl", 0,
                           lines.append, general_eval_file=dataset / "general_eval.jsonl")
    result = ForgettingEval().evaluate(ForgettingOptions(max_increase=1000.0), context)
    assert result["measured"] is True and result["perplexity_change"] > 0.05
    assert result["flagged"] is False
    assert not any(line.startswith("warning:") for line in lines), lines
