"""The trainer's end-of-turn check is the one `curate validate` and the chat-template step make:
a template passes or fails both, with the same message (on the tiny model's tokenizer)."""

import types

import pytest

from curate import hookimpl
from curate.chat_templates import ChatTemplate, Selection
from curate.errors import CurateError
from curate.template_checks import PROBES, template_findings
from curate.train.template import TrainingTemplate, check_stop_token_trained
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
    assert (run_dir / "adapter" / "chat_template.jinja").read_text() == NEWLINE_TRAINED
