"""What a run saves in `adapter/`: PiSSA and OLoRA adapters converted to plain LoRA on the
original base weights, so whoever loads them (peft, the evaluations, merge) gets the trained
model and leaves the base as published."""

import json
import types

import pytest
import torch

from curate import hookimpl
from curate.errors import CurateError
from curate.train.model import ModelSource, load_adapter, load_base_model, load_tokenizer
from curate.train.options import QLoRAOptions
from curate.train.trainer import QLoRATrainer

from .conftest import memorisation_rows, run_in, run_killed_at_step, training_recipe

BASE_CHANGING = {"pissa_niter_2": {"modules_to_save": ["lm_head"]},
                 "olora": {"use_rslora": True}}
"""Each initialisation that rewrites the base, with an option whose conversion needs care."""


class RecordingTrainer(QLoRATrainer):
    """The qlora trainer, keeping the model it trained for the test to compare with."""

    name = "qlora-recorded"
    models = []

    @staticmethod
    def load(*args):
        model, tokenizer = QLoRATrainer.load(*args)
        RecordingTrainer.models.append(model)
        return model, tokenizer


def recording_plugin():
    module = types.ModuleType("recording_trainer")
    module.register_trainers = hookimpl(lambda register: register(RecordingTrainer))
    return module


@pytest.fixture(scope="module", params=sorted(BASE_CHANGING))
def base_changing_run(request, tiny_model, tmp_path_factory):
    """(run dir, the trained peft model, options) of `curate run` with that initialisation
    on a 16-bit base, evaluated by the `loss` evaluation."""
    from curate.pluginmanager import plugins_registered

    init = request.param
    recipe = training_recipe(tiny_model, use="qlora-recorded", quantization="none",
                             init_lora_weights=init, max_steps=8, **BASE_CHANGING[init])
    with plugins_registered(("qlora-recorded", recording_plugin())):
        code, output, run_dir = run_in(tmp_path_factory.mktemp(init), recipe + EVAL_LOSS,
                                       memorisation_rows())
    assert code == 0, output
    options = QLoRAOptions(quantization="none", init_lora_weights=init, **BASE_CHANGING[init])
    return run_dir, RecordingTrainer.models.pop(), options


EVAL_LOSS = '\n[[evals]]\nuse = "loss"\n'


def fresh_base(tiny_model):
    return load_base_model(ModelSource(str(tiny_model), str(tiny_model)),
                           QLoRAOptions(quantization="none"), "float32")


def logits_of(model, tokenizer, text="What is the code word 3? The code word 3 is"):
    model.eval()
    with torch.no_grad():
        return model(input_ids=tokenizer(text, return_tensors="pt").input_ids).logits


def test_the_saved_adapter_is_plain_lora_of_twice_the_rank(base_changing_run):
    run_dir, _, options = base_changing_run
    config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert config["init_lora_weights"] is True  # loading it initialises nothing
    assert config["r"] == 2 * options.lora_r


def test_loading_the_adapter_leaves_the_base_as_published_and_gives_the_trained_model(
        base_changing_run, tiny_model):
    from peft import PeftModel

    run_dir, trained, _ = base_changing_run
    tokenizer = load_tokenizer(ModelSource(str(tiny_model), str(tiny_model)))
    base = fresh_base(tiny_model)
    published = {name: weight.clone() for name, weight in base.state_dict().items()}
    untrained = logits_of(base, tokenizer)
    loaded = PeftModel.from_pretrained(base, run_dir / "adapter")  # as any consumer does
    for name, weight in loaded.get_base_model().state_dict().items():
        original = name.replace(".base_layer", "").replace(".original_module", "")
        if "lora_" not in name and ".modules_to_save." not in name:
            torch.testing.assert_close(weight, published[original], rtol=0, atol=0)
    expected = logits_of(trained, tokenizer)
    assert (expected - untrained).abs().max() > 0.1  # training moved the logits
    torch.testing.assert_close(logits_of(loaded, tokenizer), expected, rtol=0, atol=1e-4)


def test_the_evaluations_base_is_the_real_base(base_changing_run, tiny_model):
    from curate.evals.examples import read_examples
    from curate.evals.loss import summed_loss, trained_batches
    from curate.evals.model import load_tuned

    run_dir, _, _ = base_changing_run
    evaluated = json.loads((run_dir / "manifest.json").read_text())["train"]["evals"]["loss"]
    examples = read_examples(run_dir / "dataset" / "eval.jsonl")
    total, tokens = summed_loss(fresh_base(tiny_model),
                                trained_batches(load_tuned(run_dir), examples, 4))
    assert evaluated["base"]["loss"] == pytest.approx(total / tokens, abs=1e-5)


def test_merging_it_reproduces_the_trained_model(base_changing_run, tmp_path):
    from curate.train.merge import merge_run

    run_dir, _, _ = base_changing_run
    said = []
    report = merge_run(run_dir, tmp_path / "merged", True, 2, log=said.append)
    assert report["top1_agreement_beyond_near_ties"] == 1.0
    assert report["max_logit_difference"] < 0.05
    # a 16-bit run has no quantised base to merge into: said, and merged into its weights
    assert said == ['note: --into-quantized does nothing here: the run trained on a 16-bit base'
                    ' (quantization = "none"), so the adapter is merged into its 16-bit weights']
    assert report["into_quantized"] is False and report["dtype"] == "bfloat16"


def test_an_adapter_saved_unconverted_is_refused_on_load(base_changing_run, tiny_model,
                                                         tmp_path):
    _, trained, options = base_changing_run
    trained.save_pretrained(tmp_path / "unconverted")  # what curate saved before converting
    with pytest.raises(CurateError, match=rf"this {options.init_lora_weights} adapter fits the"
                                          r" residual base .* train it again"):
        load_adapter(fresh_base(tiny_model), tmp_path / "unconverted")


def test_a_resumed_run_saves_the_adapter_of_the_model_it_finished(tiny_model, tmp_path,
                                                                  monkeypatch):
    from peft import PeftModel

    from curate.pluginmanager import plugins_registered
    from curate.train.model import INITIAL_ADAPTER

    recipe = training_recipe(tiny_model, use="qlora-recorded", quantization="none",
                             init_lora_weights="pissa_niter_2", max_steps=8, eval_steps=4)
    with plugins_registered(("qlora-recorded", recording_plugin())):
        run_killed_at_step(monkeypatch, tmp_path, recipe, memorisation_rows(), 5)
        code, output, run_dir = run_in(tmp_path, recipe, memorisation_rows())
    assert code == 0 and "resuming from" in output, output
    resumed, crashed = RecordingTrainer.models.pop(), RecordingTrainer.models.pop()
    # the same seed initialises the same way: the base the checkpoint was trained against
    for name, initial in getattr(crashed, INITIAL_ADAPTER).items():
        torch.testing.assert_close(getattr(resumed, INITIAL_ADAPTER)[name], initial, rtol=0,
                                   atol=0)
    tokenizer = load_tokenizer(ModelSource(str(tiny_model), str(tiny_model)))
    loaded = PeftModel.from_pretrained(fresh_base(tiny_model), run_dir / "adapter")
    torch.testing.assert_close(logits_of(loaded, tokenizer), logits_of(resumed, tokenizer),
                               rtol=0, atol=1e-4)


def test_an_adapter_folder_without_its_config_is_one_line(tiny_model, tmp_path):
    (tmp_path / "adapter").mkdir()
    with pytest.raises(CurateError, match=r"adapter: no readable adapter_config.json .* the"
                                          r" adapter folder is incomplete"):
        load_adapter(None, tmp_path / "adapter")


def test_a_resume_whose_initialisation_came_out_otherwise_starts_over(tiny_model, tmp_path,
                                                                      monkeypatch):
    from safetensors.torch import load_file, save_file

    recipe = training_recipe(tiny_model, quantization="none", init_lora_weights="pissa_niter_2",
                             max_steps=8, eval_steps=4)
    run_killed_at_step(monkeypatch, tmp_path, recipe, memorisation_rows(), 5)
    saved = tmp_path / "run" / "train" / "checkpoints" / "initial_adapter.safetensors"
    tensors = load_file(saved)  # as another GPU's randomised SVD might have made it
    name = next(iter(tensors))
    save_file({**tensors, name: tensors[name] + 1.0}, saved)
    code, output, run_dir = run_in(tmp_path, recipe, memorisation_rows())
    assert code == 0, output
    assert "the PiSSA/OLoRA initialisation differs" in output and "resuming from" not in output
    metrics = json.loads((run_dir / "manifest.json").read_text())["train"]["metrics"]
    assert "resumed_from" not in metrics and metrics["steps"] == 8
