"""Mistakes in evaluation options and data give one clear line, never a traceback."""

import json
from pathlib import Path

import pytest

from curate.errors import CurateError
from curate.evals.forgetting import ForgettingEval, ForgettingOptions
from curate.evals.loss import LossEval, LossOptions
from curate.evals.task import TaskMetricsEval, TaskMetricsOptions
from curate.options import OptionError
from curate.testing import invoke_cli
from curate.training import TrainContext

from .conftest import evals_recipe, memorisation_rows, write_inputs


def context(run_dir: Path, eval_rows: list[dict], lines: list[str]) -> TrainContext:
    run_dir.mkdir(parents=True, exist_ok=True)
    eval_file = run_dir / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(row) + "\n" for row in eval_rows))
    return TrainContext(run_dir, run_dir, run_dir / "train.jsonl", eval_file, 0, lines.append,
                        general_eval_file=run_dir / "general_eval.jsonl")


def test_an_empty_eval_split_is_one_clear_line(tmp_path):
    with pytest.raises(CurateError, match=r"eval.jsonl: no held-out examples to evaluate on:"
                                          r" give the recipe's \[split\] an eval_size"):
        LossEval().evaluate(LossOptions(), context(tmp_path, [], []))


def test_no_examples_from_the_named_sources_is_one_clear_line(tmp_path):
    rows = [{"id": "a", "source": "chats", **row} for row in memorisation_rows(2)]
    options = TaskMetricsOptions(sources=["reviews"])
    with pytest.raises(CurateError, match="no held-out example comes from sources reviews"):
        TaskMetricsEval().evaluate(options, context(tmp_path, rows, []))


def test_a_reference_that_is_no_label_names_the_line_and_the_fix(tmp_path):
    rows = [{"id": str(i), "source": "d", **row} for i, row in enumerate(memorisation_rows(2))]
    options = TaskMetricsOptions(metrics=["labels"], labels=["positive", "negative"])
    with pytest.raises(CurateError) as raised:
        TaskMetricsEval().evaluate(options, context(tmp_path, rows, []))
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'eval.jsonl'}:1: the reference answer 'The code")
    assert "is none of the labels (positive, negative): add its label" in message


def test_without_held_out_general_data_forgetting_says_to_add_a_rehearsal_stage(tmp_path):
    lines: list[str] = []
    result = ForgettingEval().evaluate(ForgettingOptions(), context(tmp_path, [], lines))
    assert result["measured"] is False
    assert lines == [f"forgetting: no held-out general data ({tmp_path / 'general_eval.jsonl'}"
                     f" is missing), so forgetting cannot be measured: add a rehearsal stage"
                     f" with held_out > 0 to the recipe (docs/stages/rehearsal.md)"]


@pytest.mark.parametrize("options, key, fragment", [
    (TaskMetricsOptions(metrics=["exactly"]), "metrics",
     "unknown metric 'exactly': did you mean 'exact'?"),
    (TaskMetricsOptions(metrics=[]), "metrics", "name at least one metric"),
    (TaskMetricsOptions(metrics=["labels"]), "labels", "the `labels` metric needs the classes"),
    (TaskMetricsOptions(metrics=["regex"]), "pattern", "needs a pattern"),
    (TaskMetricsOptions(metrics=["regex"], pattern="(unclosed"), "pattern",
     "is not a valid regular expression"),
    (TaskMetricsOptions(metrics=["json"], json_schema={"type": "strng"}), "json_schema",
     "type: unknown type 'strng': did you mean 'string'?"),
    (TaskMetricsOptions(metrics=["json"], json_schema={
        "type": "object", "properties": {"answer": {"type": "array", "items": {"type": "txt"}}}}),
     "json_schema", "properties.answer.items.type: unknown type 'txt'"),
    (TaskMetricsOptions(metrics=["json"], json_schema={"properties": ["answer"]}),
     "json_schema", "properties must be a table of key = schema"),
    (TaskMetricsOptions(metrics=["json"], json_schema={"required": "answer"}), "json_schema",
     "required must be a list of key names, found 'answer'"),
])
def test_task_metric_options_are_checked(options, key, fragment):
    with pytest.raises(OptionError) as raised:
        TaskMetricsEval.check_options(options)
    assert raised.value.key == key and fragment in str(raised.value)


def test_validate_names_the_evals_key_at_fault(tiny_model, tmp_path):
    write_inputs(tmp_path)
    recipe = evals_recipe(tiny_model, evals='[[evals]]\nuse = "task-metrics"\n'
                                            'metrics = ["labels"]\n')
    (tmp_path / "r.toml").write_text(recipe)
    code, output = invoke_cli(["validate", str(tmp_path / "r.toml")])
    assert code == 2
    assert "evals[0].labels: the `labels` metric needs the classes" in output
    assert "Traceback" not in output


def test_an_unknown_evaluation_is_refused_with_the_known_ones(tiny_model, tmp_path):
    write_inputs(tmp_path)
    (tmp_path / "r.toml").write_text(evals_recipe(tiny_model, evals='[[evals]]\nuse = "los"\n'))
    code, output = invoke_cli(["validate", str(tmp_path / "r.toml")])
    assert code == 2 and "evals[0].use" in output and "loss" in output


def test_a_well_formed_json_schema_is_accepted():
    schema = {"type": "object", "required": ["answer"],
              "properties": {"answer": {"type": "string"}, "tags": {"type": "array",
                                                                    "items": {"type": "string"}}}}
    TaskMetricsEval.check_options(TaskMetricsOptions(metrics=["json"], json_schema=schema))


def test_without_the_training_libraries_loading_says_what_to_install(tmp_path, monkeypatch):
    import sys

    from curate.evals.model import _load

    monkeypatch.setitem(sys.modules, "peft", None)  # what an install without curate[train] has
    with pytest.raises(CurateError, match=r"pip install 'curate\[train\]'"):
        _load(tmp_path, "digest")
