"""A trained model ships the template for inference as its chat template (no `{% generation %}`
tags, which llama-cpp-python cannot load; no date fixed for training) and keeps the training
template beside it."""

import types

import pytest

from curate import hookimpl
from curate.chat_templates import ChatTemplate, has_generation_markers, with_fixed_date
from curate.plugins.chat_template_sources import trl_file
from curate.template_checks import PROBES
from curate.train.inference_template import (TRAINING_TEMPLATE_FILE, inference_template,
                                             without_training_parts)
from curate.train.tiny_model import CHATML_TRAINING_TEMPLATE

from .conftest import memorisation_rows, run_in, training_recipe

CHATML_ORIGINAL = CHATML_TRAINING_TEMPLATE.replace("{% generation %}", "").replace(
    "{% endgeneration %}", "")
TRIMMING = ("{%- for message in messages %}\n  {%- if message['role'] == 'assistant' %}\n"
            "<|im_start|>assistant\n  {%- generation -%}\n {{ message['content'] }}<|im_end|>\n"
            "  {%- endgeneration %}\n{% else %}<|im_start|>{{ message['role'] }}\n"
            "{{ message['content'] }}<|im_end|>\n{% endif %}{% endfor %}")
"""Generation tags that trim the whitespace around them."""


def rendered(tokenizer, template: str) -> list[str]:
    return [tokenizer.apply_chat_template(probe, chat_template=template, tokenize=False)
            for probe in PROBES]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.mark.parametrize("training", [CHATML_TRAINING_TEMPLATE, TRIMMING])
def test_a_template_without_an_original_loses_its_tags_and_renders_the_same(training,
                                                                            tokenizer):
    inference = inference_template(training, "my_template.jinja")
    assert not has_generation_markers(inference)
    assert "endgeneration %}" not in inference
    assert rendered(tokenizer, inference) == rendered(tokenizer, training)


def test_the_date_fixed_for_training_is_taken_out():
    text = "{{ date_string }}{% generation %}{% endgeneration %}"
    assert without_training_parts(with_fixed_date(text, '26 "Jul" 2024')) == (
        "{{ date_string }}{# generation #}{# endgeneration #}")


def test_a_templates_own_date_line_is_kept():
    text = '{%- set date_string = "1 Jan 2025" %}{{ date_string }}'
    assert without_training_parts(with_fixed_date(text, "26 Jul 2024")) == text


def test_a_registered_template_ships_its_original():
    llama = inference_template(with_fixed_date(trl_file("llama3_2")(), "26 Jul 2024"), "llama3.2")
    assert llama == trl_file("llama3_2")()
    assert "date_string" in llama and not llama.startswith("{%- set date_string")


def chatml_plugin():
    module = types.ModuleType("tiny_chatml")
    module.register_chat_templates = hookimpl(lambda register: register(ChatTemplate(
        "tiny-chatml", CHATML_TRAINING_TEMPLATE, ("<|im_end|>",),
        originals=(CHATML_ORIGINAL,))))
    return module


@pytest.fixture(scope="module")
def registered_run(tiny_model, tmp_path_factory):
    """The run folder of a short training with a registered template that has an original."""
    from curate.pluginmanager import plugins_registered

    recipe = training_recipe(tiny_model, quantization="none", max_steps=2).replace(
        "max_length = 64", 'max_length = 64\nchat_template = "tiny-chatml"')
    with plugins_registered(("tiny-chatml", chatml_plugin())):
        code, output, run_dir = run_in(tmp_path_factory.mktemp("registered"), recipe,
                                       memorisation_rows(4))
    assert code == 0, output
    return run_dir


def test_the_adapter_ships_the_original_and_keeps_the_training_template(registered_run):
    from transformers import AutoTokenizer

    adapter = registered_run / "adapter"
    assert AutoTokenizer.from_pretrained(adapter).chat_template == CHATML_ORIGINAL
    assert (adapter / TRAINING_TEMPLATE_FILE).read_text() == CHATML_TRAINING_TEMPLATE
    assert f"`{TRAINING_TEMPLATE_FILE}` (tiny-chatml" in (adapter / "README.md").read_text()
