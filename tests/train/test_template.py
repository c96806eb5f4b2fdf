"""The trainer's template is the one `curate validate` and the chat-template step chose, checked
the same way: chosen by the same names, refused when it is not what the step checked the data
with, and an end-of-turn check that passes or fails both with the same message (on the tiny
model's tokenizer)."""

import json
import shutil
import types
from pathlib import Path

import pytest

from curate import hookimpl
from curate.chat_templates import ChatTemplate, Selection
from curate.errors import CurateError
from curate.recipe import ModelOptions
from curate.template_checks import PROBES, template_findings
from curate.template_step import template_record
from curate.train.model import ModelSource, load_tokenizer
from curate.train.template import (TrainingTemplate, check_as_checked, check_stop_token_trained,
                                   training_template)
from curate.train.tiny_model import CHATML_TRAINING_TEMPLATE

from .conftest import memorisation_rows, run_in, training_recipe

SPLIT_TURN_END = "<|im_end|>{% endgeneration %}{{ '\\n' }}"
assert SPLIT_TURN_END in CHATML_TRAINING_TEMPLATE
NEWLINE_TRAINED = CHATML_TRAINING_TEMPLATE.replace(
    SPLIT_TURN_END, "<|im_end|>{{ '\\n' }}{% endgeneration %}")
"""trl's Qwen training templates train the newline after <|im_end|> too."""
END_OUTSIDE = CHATML_TRAINING_TEMPLATE.replace(
    SPLIT_TURN_END, "{% endgeneration %}<|im_end|>{{ '\\n' }}")


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def validate_error(tokenizer, text: str) -> str:
    template = ChatTemplate("chatml-test", text, ("<|im_end|>",))
    findings = template_findings(tokenizer, Selection(text, "chatml-test", "test", template))
    return next((f.message for f in findings if f.level == "error"), "")


def trainer_error(tokenizer, text: str) -> str:
    template = TrainingTemplate(text, "chatml-test", "test", ("<|im_end|>",))
    try:
        for probe in PROBES:
            check_stop_token_trained(tokenizer, template, probe)
    except CurateError as error:
        return str(error).removeprefix("[model]: ")
    return ""


@pytest.mark.parametrize("text", [CHATML_TRAINING_TEMPLATE, NEWLINE_TRAINED],
                         ids=["newline-untrained", "newline-trained"])
def test_a_trained_end_of_turn_passes_validate_and_the_trainer(tokenizer, text):
    assert validate_error(tokenizer, text) == trainer_error(tokenizer, text) == ""


def test_an_untrained_end_of_turn_fails_both_with_one_message(tokenizer):
    message = trainer_error(tokenizer, END_OUTSIDE)
    assert message == validate_error(tokenizer, END_OUTSIDE)
    assert message.startswith("chat template chatml-test: assistant turn 1 ends with '.', not"
                              " with a trained end-of-turn token: the model would never learn")


def test_a_template_declaring_no_end_of_turn_accepts_any_special_token(tokenizer):
    template = TrainingTemplate(NEWLINE_TRAINED, "of the tokenizer", "test", ())
    check_stop_token_trained(tokenizer, template, PROBES[0])


def test_a_run_trains_with_a_template_that_trains_the_newline(curate_plugin, tiny_model,
                                                              tmp_path):
    template = ChatTemplate("chatml-newline", NEWLINE_TRAINED, ("<|im_end|>",))
    curate_plugin(types.SimpleNamespace(
        register_chat_templates=hookimpl(lambda register: register(template))),
        name="newline_plugin")
    recipe = training_recipe(tiny_model, max_steps=2, eval_steps=2).replace(
        "max_length = 64\n", "max_length = 64\nchat_template = \"chatml-newline\"\n")
    code, output, run_dir = run_in(tmp_path, recipe, memorisation_rows(8))
    assert code == 0, output
    assert (run_dir / "adapter" / "chat_template.training.jinja").read_text() == NEWLINE_TRAINED


def test_the_trainer_chooses_the_template_the_checks_chose(tiny_model, tmp_path):
    """A project folder named after a family says nothing about the model inside it."""
    project = tmp_path / "qwen2.5-experiments"
    shutil.copytree(tiny_model, project / "models" / "tiny")
    recipe = training_recipe(Path("../models/tiny"), max_steps=1, eval_steps=1)
    code, output, run_dir = run_in(project / "recipes", recipe, memorisation_rows(4))
    assert code == 0, output
    trained = json.loads((run_dir / "adapter" / "training.json").read_text())["template"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    checked = manifest["steps"][-1]["stats"]["template"]
    assert trained["label"] == checked["label"] == "of the tokenizer"


def test_the_trainer_refuses_a_template_the_step_did_not_check_with(tokenizer, tmp_path):
    template = TrainingTemplate(CHATML_TRAINING_TEMPLATE, "of the tokenizer", "test", ())
    check_as_checked(template, tokenizer, tmp_path)  # no chat-template step: nothing to compare
    step = tmp_path / "stages" / "01-chat-template"
    step.mkdir(parents=True)
    for label, text in [("of the tokenizer", CHATML_TRAINING_TEMPLATE), ("qwen2.5", "{{ x }}")]:
        record = template_record(label, text, tokenizer)
        (step / "step.json").write_text(json.dumps({"stats": {"template": record}}))
    with pytest.raises(CurateError) as error:
        check_as_checked(template, tokenizer, tmp_path)
    mine = template_record(template.label, template.text, tokenizer)["sha256"][:12]
    assert str(error.value) == (
        f"[model]: training would use chat template of the tokenizer (sha256 {mine}, tokenizer"
        f" TokenizersBackend), but the chat-template step checked the data with chat template"
        f" qwen2.5 (sha256 {record['sha256'][:12]}, tokenizer TokenizersBackend): run again"
        f" with curate run --force, so that what trains is what was checked")
    (step / "step.json").write_text(json.dumps({"stats": {"template": template_record(
        template.label, template.text, tokenizer)}}))
    check_as_checked(template, tokenizer, tmp_path)


def test_a_tokenizer_with_named_templates_trains_with_its_default_one(tiny_model, tmp_path):
    """Command-R and Hermes ship "default" and "tool_use" templates, as a list."""
    folder = shutil.copytree(tiny_model, tmp_path / "model")
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "default", "template": CHATML_TRAINING_TEMPLATE},
                               {"name": "tool_use", "template": "{{ tools }}"}]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = load_tokenizer(ModelSource(str(folder), str(folder)))
    template = training_template(ModelOptions(path="model"), tmp_path, tokenizer)
    assert (template.label, template.text) == ("of the tokenizer", CHATML_TRAINING_TEMPLATE)
