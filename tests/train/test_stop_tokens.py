"""A trained model stops where it was trained to: a base whose end of sequence is not the end of
turn its template trains (a Qwen2.5 base: <|endoftext|>, trained on <|im_end|>) gets a
generation_config.json that stops at both, in the adapter and in the merged model, and the
evaluations stop at the same ids."""

import json
import shutil

import pytest

from curate.testing import invoke_cli
from curate.train.inference_template import TRAINING_TEMPLATE_FILE
from curate.train.stop_tokens import saved_stop_ids, trained_end_ids
from curate.train.tiny_model import CHATML_TRAINING_TEMPLATE

from .conftest import memorisation_rows, run_in, training_recipe

ADDED_LINE = "generation_config.json: eos_token_id now"


def stopping_at_end_of_text(tiny_model, folder):
    """A copy of the tiny model whose tokenizer and generation config end a sequence with
    <|endoftext|>, not with <|im_end|>, the end of turn its (own, ChatML) template trains; its
    generation config sets a temperature without sampling, as many published ones do."""
    shutil.copytree(tiny_model, folder)
    for name, key, value in (("tokenizer_config.json", "eos_token", "<|endoftext|>"),
                             ("config.json", "eos_token_id", 2),
                             ("generation_config.json", "eos_token_id", 2),
                             ("generation_config.json", "temperature", 0.6)):
        settings = json.loads((folder / name).read_text())
        settings[key] = value
        (folder / name).write_text(json.dumps(settings))
    return folder


@pytest.fixture(scope="module")
def base_run(tiny_model, tmp_path_factory):
    """(output, run dir, tokenizer) of a short training of that model, merged."""
    from transformers import AutoTokenizer

    model = stopping_at_end_of_text(tiny_model, tmp_path_factory.mktemp("base") / "model")
    recipe = training_recipe(model, quantization="none", max_steps=2)
    code, output, run_dir = run_in(tmp_path_factory.mktemp("stops"), recipe, memorisation_rows(4))
    assert code == 0, output
    code, merged = invoke_cli(["merge", str(run_dir)])
    assert code == 0, merged
    return output, run_dir, AutoTokenizer.from_pretrained(model)


def test_the_adapter_stops_at_the_end_of_turn_trained_and_the_end_of_sequence(base_run):
    _, run_dir, tokenizer = base_run
    assert saved_stop_ids(run_dir / "adapter") == [tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                                   tokenizer.eos_token_id]


def test_training_says_in_one_line_that_it_added_the_end_of_turn(base_run):
    output, _, _ = base_run
    added = [line for line in output.splitlines() if line.startswith(ADDED_LINE)]
    assert len(added) == 1 and "added <|im_end|>" in added[0], output


def test_nothing_is_said_when_the_base_stops_at_the_end_of_turn_already(trained_run):
    output, run_dir = trained_run
    assert ADDED_LINE not in output
    assert saved_stop_ids(run_dir / "adapter") == [4]  # the tiny model's <|im_end|>


def test_the_merged_model_stops_where_the_adapter_does(base_run):
    from transformers import GenerationConfig

    _, run_dir, _ = base_run
    merged = GenerationConfig.from_pretrained(run_dir / "merged")
    assert merged.eos_token_id == saved_stop_ids(run_dir / "adapter")
    assert (run_dir / "merged" / TRAINING_TEMPLATE_FILE).read_text() == CHATML_TRAINING_TEMPLATE


def test_the_evaluations_stop_at_the_saved_ids(base_run):
    from curate.evals.model import load_tuned

    _, run_dir, _ = base_run
    tuned = load_tuned(run_dir)
    assert tuned.stop_ids == saved_stop_ids(run_dir / "adapter")
    assert tuned.template == CHATML_TRAINING_TEMPLATE


def test_a_template_declaring_no_end_of_turn_stops_at_the_one_ending_its_trained_turns(
        base_run):
    _, _, tokenizer = base_run
    found = trained_end_ids(tokenizer, CHATML_TRAINING_TEMPLATE, (), "of the tokenizer")
    assert found == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
