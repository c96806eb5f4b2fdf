"""[train] and [[evals]] hand the final dataset to trainer and evaluation plugins."""

import json
import os
import shutil
import types
from dataclasses import dataclass

import pytest

from curate import hookimpl
from curate.errors import CurateError
from curate.options import option
from curate.training import Evaluation, Trainer


@dataclass
class CountingOptions:
    epochs: int = option(1, min=1)


class CountingTrainer(Trainer):
    """Counts what it was given, so the test can see the exact files reached it."""

    name = "counting"
    Options = CountingOptions

    def train(self, options, context):
        lines = context.train_file.read_text().splitlines()
        (context.run_dir / "adapter").mkdir(exist_ok=True)
        (context.run_dir / "adapter" / "seen.txt").write_text(str(len(lines)))
        return {"examples": len(lines), "epochs": options.epochs}


@dataclass
class EvalCounterOptions:
    fail: bool = option(False, help="raise instead of counting")


class EvalCounter(Evaluation):
    name = "eval-count"
    Options = EvalCounterOptions

    def evaluate(self, options, context):
        if options.fail:
            raise CurateError("the evaluation failed")
        return {"eval_examples": len(context.eval_file.read_text().splitlines()),
                "named": context.evaluation}


def training_plugin():
    module = types.ModuleType("counting_trainer")
    module.register_trainers = hookimpl(lambda register: register(CountingTrainer))
    module.register_evals = hookimpl(lambda register: register(EvalCounter))
    return module


DATA = "".join(f'{{"prompt": "Question {i}", "completion": "Answer number {i}."}}\n'
               for i in range(10))
RECIPE = """
[[sources]]
name = "d"
use = "jsonl"
path = "d.jsonl"

[split]
eval_size = 2

[train]
use = "counting"
epochs = 3

[[evals]]
use = "eval-count"
"""


def test_trainer_and_evals_receive_the_final_dataset(curate_plugin, run_recipe):
    curate_plugin(training_plugin(), name="counting")
    result = run_recipe(RECIPE, files={"d.jsonl": DATA})
    assert result.exit_code == 0, result.output
    train = result.manifest["train"]
    assert train["use"] == "counting"
    assert train["metrics"] == {"examples": 8, "epochs": 3}
    assert train["evals"] == {"eval-count": {"eval_examples": 2, "named": "eval-count",
                                             "cached": False}}
    results = json.loads((result.run_dir / "eval" / "results.json").read_text())
    assert results == {"eval-count": {"eval_examples": 2, "named": "eval-count"}}
    assert (result.run_dir / "adapter" / "seen.txt").read_text() == "8"


def test_trainer_options_are_validated_like_any_plugin(curate_plugin, run_recipe):
    curate_plugin(training_plugin(), name="counting")
    result = run_recipe(RECIPE.replace("epochs = 3", "epochs = 0"), files={"d.jsonl": DATA})
    assert result.exit_code == 2
    assert "train.epochs: expected a value at least 1, found 0" in result.output


def test_training_and_evals_are_cached_until_something_they_depend_on_changes(curate_plugin,
                                                                              run_recipe):
    curate_plugin(training_plugin(), name="counting")
    first = run_recipe(RECIPE, files={"d.jsonl": DATA})
    again = run_recipe(RECIPE)
    assert again.manifest["train"]["cached"] is True
    assert again.manifest["train"]["evals"]["eval-count"]["cached"] is True
    assert "train                    cached" in again.output
    more_data = run_recipe(RECIPE, files={"d.jsonl": DATA + DATA.replace("Question", "Ask")})
    assert more_data.manifest["train"]["cached"] is False
    assert more_data.manifest["train"]["metrics"]["examples"] == 18
    assert first.manifest["train"]["cached"] is False


def test_a_failed_evaluation_leaves_no_earlier_results_behind(curate_plugin, run_recipe):
    curate_plugin(training_plugin(), name="counting")
    first = run_recipe(RECIPE, files={"d.jsonl": DATA})
    assert (first.run_dir / "eval" / "results.json").exists()
    failed = run_recipe(RECIPE + "fail = true\n")
    assert failed.exit_code == 2 and "the evaluation failed" in failed.output
    assert not (failed.run_dir / "eval" / "results.json").exists()


def test_each_evaluation_is_told_its_recipe_name(curate_plugin, run_recipe):
    curate_plugin(training_plugin(), name="counting")
    twice = RECIPE + '\n[[evals]]\nname = "again"\nuse = "eval-count"\n'
    result = run_recipe(twice, files={"d.jsonl": DATA})
    assert result.exit_code == 0, result.output
    evals = result.manifest["train"]["evals"]
    assert (evals["eval-count"]["named"], evals["again"]["named"]) == ("eval-count", "again")


def test_results_and_report_keep_the_recipes_order_of_evaluations(curate_plugin, run_recipe):
    from curate.plugins.report_eval import gather_evaluation

    curate_plugin(training_plugin(), name="counting")
    two = (RECIPE.replace('use = "eval-count"', 'name = "zeta"\nuse = "eval-count"')
           + '\n[[evals]]\nname = "alpha"\nuse = "eval-count"\n')
    result = run_recipe(two, files={"d.jsonl": DATA})
    assert result.exit_code == 0, result.output
    results = json.loads((result.run_dir / "eval" / "results.json").read_text())
    assert list(results) == ["zeta", "alpha"]
    verdicts = gather_evaluation(result.run_dir).verdicts
    assert [line.split(":")[0] for line in verdicts] == ["zeta", "alpha"]


MODEL_RECIPE = RECIPE.replace("[[sources]]", '[model]\npath = "model"\n\n[[sources]]')


@pytest.fixture(scope="module")
def built_model(tmp_path_factory):
    from curate.train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def model_run(curate_plugin, run_recipe, built_model, tmp_path):
    """The counting recipe with [model] = a copy of the tiny model in the recipe's folder, run
    once: (run the recipe again, the model folder)."""
    curate_plugin(training_plugin(), name="counting")
    shutil.copytree(built_model, tmp_path / "model")
    first = run_recipe(MODEL_RECIPE, files={"d.jsonl": DATA})
    assert first.exit_code == 0 and first.manifest["train"]["cached"] is False, first.output
    return lambda: run_recipe(MODEL_RECIPE), tmp_path / "model"


def test_training_with_an_unchanged_model_folder_is_cached(model_run):
    again, _ = model_run
    assert again().manifest["train"]["cached"] is True


def test_training_reruns_when_the_tokenizers_chat_template_changes(model_run):
    again, model = model_run
    template = model / "chat_template.jinja"
    template.write_text("{# fixed #}" + template.read_text())
    train = again().manifest["train"]
    assert train["cached"] is False
    assert train["evals"]["eval-count"]["cached"] is False


def test_training_and_evals_rerun_when_the_weights_are_replaced_in_place(model_run):
    again, model = model_run
    weights = model / "model.safetensors"
    written = weights.stat().st_mtime_ns
    changed = bytearray(weights.read_bytes())
    changed[-1] ^= 1  # other weights, the same size
    weights.write_bytes(bytes(changed))
    os.utime(weights, ns=(written + 10**9, written + 10**9))  # a coarse clock may not tick
    train = again().manifest["train"]
    assert train["cached"] is False
    assert train["evals"]["eval-count"]["cached"] is False


def test_the_model_digest_leaves_out_hidden_files(model_run):
    again, model = model_run
    (model / ".cache").mkdir()
    (model / ".cache" / "download.lock").write_text("")
    assert again().manifest["train"]["cached"] is True


def test_a_template_the_run_does_not_use_retrains_nothing(model_run, curate_plugin):
    from curate.chat_templates import ChatTemplate

    again, _ = model_run
    unused = ChatTemplate("unused-family", "{% for m in messages %}{{ m.content }}{% endfor %}",
                          ("</s>",), name_patterns=("no-model-is-called-this",))
    curate_plugin(types.SimpleNamespace(register_chat_templates=hookimpl(
        lambda register: register(unused))), name="unused_templates")
    assert again().manifest["train"]["cached"] is True
