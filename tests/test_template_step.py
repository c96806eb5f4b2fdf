"""Which chat template a [model] trains with: one choice for validate, preview, the
chat-template step and the trainer, on names that say something about the model, and a
registered template never silently beating the tokenizer's own (on tokenizers built here)."""

import hashlib

from curate.plugins.chat_templates import BUILTIN_TEMPLATES
from curate.recipe import ModelOptions
from curate.testing import assert_clear_error, assert_complete, invoke_cli, jsonl
from curate.train.tiny_model import CHATML_TRAINING_TEMPLATE
from support import tiny_tokenizers as tiny

QWEN = next(t for t in BUILTIN_TEMPLATES if t.name == "qwen2.5")
ROWS = [{"messages": [{"role": "user", "content": "What is two plus two?"},
                      {"role": "assistant", "content": "It is four."}]}]


def project(folder, model_name, own_template=CHATML_TRAINING_TEMPLATE, architectures=None,
            model_line=""):
    """recipes/r.toml with [model] path = "../models/<model_name>", whose tokenizer has
    `own_template` (ChatML without Qwen's system prompt, by default)."""
    tiny.build_tokenizer(folder / "models" / model_name, "chatml", own_template, architectures)
    (folder / "recipes").mkdir(parents=True)
    (folder / "recipes" / "d.jsonl").write_text(jsonl(*ROWS))
    recipe = folder / "recipes" / "r.toml"
    recipe.write_text(f'[model]\npath = "../models/{model_name}"\n{model_line}\n[[sources]]\n'
                      f'name = "d"\nuse = "jsonl"\npath = "d.jsonl"\n')
    return recipe


def validate(recipe):
    return invoke_cli(["validate", str(recipe)])


def test_patterns_match_a_local_folder_s_own_name_and_a_hub_id(tmp_path):
    from curate.template_step import model_names

    model = tmp_path / "qwen2.5-experiments" / "models" / "tiny"
    (model / "tok").mkdir(parents=True)
    (model / "tok" / "tokenizer.json").write_text("{}")
    assert model_names(ModelOptions(path=str(model)), tmp_path) == ["tiny"]
    assert model_names(ModelOptions(path="qwen2.5-experiments/models/tiny",
                                    tokenizer="qwen2.5-experiments/models/tiny/tok/tokenizer.json"),
                       tmp_path) == ["tiny", "tok"]
    assert model_names(ModelOptions(path="Qwen/Qwen2.5-7B-Instruct"), tmp_path) == [
        "Qwen/Qwen2.5-7B-Instruct"]
    (tmp_path / "Llama-3.1-8B").symlink_to(model)  # a link into a cache keeps its own name
    assert model_names(ModelOptions(path="Llama-3.1-8B"), tmp_path) == ["Llama-3.1-8B"]
    assert model_names(ModelOptions(path="qwen2.5-experiments/models/../models/tiny"),
                       tmp_path) == ["tiny"]


def test_a_family_name_in_the_folders_around_the_model_chooses_nothing(tmp_path):
    recipe = project(tmp_path / "qwen2.5-experiments", "tiny")
    absolute = recipe.read_text().replace('"../models/tiny"',
                                          f'"{tmp_path / "qwen2.5-experiments/models/tiny"}"')
    recipe.write_text(absolute)
    code, output = validate(recipe)
    assert code == 0, output
    assert "  chat template of the tokenizer: no registered template matches" in output


def test_a_name_s_guess_rendering_unlike_the_tokenizer_s_own_template_is_an_error(tmp_path):
    code, output = validate(project(tmp_path, "Qwen2.5-7B-distilled"))
    assert code == 2 and output.count("\n") == 1, output
    assert output.startswith(
        "error: chat template qwen2.5 was chosen because the model name 'Qwen2.5-7B-distilled'"
        " matches, but the tokenizer has its own template and they render curate's test"
        " conversations differently (line 1: own '<|im_start|>user', qwen2.5"
        " '<|im_start|>system'): to train with the tokenizer's own template, save a copy with"
        " {% generation %} markers as a .jinja file and name it in [model] chat_template ="
        ' "FILE.jinja"; to use qwen2.5 anyway, [model] chat_template = "qwen2.5"'), output


def test_a_run_refuses_the_guess_before_any_step(tmp_path):
    from curate.testing import RunResult

    recipe = project(tmp_path, "Qwen2.5-7B-distilled")
    code, output = invoke_cli(["run", str(recipe), "-q", "--run-dir", str(tmp_path / "run")])
    assert_clear_error(RunResult(code, output, tmp_path / "run", recipe),
                       "chat template qwen2.5 was chosen because the model name")


def test_naming_the_registered_template_uses_it_with_a_warning(tmp_path):
    code, output = validate(project(tmp_path, "Qwen2.5-7B-distilled",
                                    model_line='chat_template = "qwen2.5"'))
    assert code == 0, output
    assert "  chat template qwen2.5: named in the recipe" in output
    assert "    warning: template qwen2.5 renders differently from the tokenizer's own" in output


def test_a_name_s_guess_rendering_like_the_tokenizer_s_own_template_is_used(tmp_path):
    revised = "{#- a later revision of the same template -#}\n" + QWEN.original_texts()[0]
    code, output = validate(project(tmp_path, "Qwen2.5-7B-Instruct", revised))
    assert code == 0, output
    assert ("  chat template qwen2.5: the model name 'Qwen2.5-7B-Instruct' matches\n") in output
    assert "    ok: renders like the tokenizer's own template" in output


def test_an_architecture_never_overrides_the_tokenizer_s_own_training_template(tmp_path):
    # DeepSeek-R1-Distill-Qwen is a Qwen2ForCausalLM with a template of its own
    code, output = validate(project(tmp_path, "my-distill", architectures=["Qwen2ForCausalLM"]))
    assert code == 0, output
    assert "  chat template of the tokenizer: no registered template matches" in output


def test_an_architecture_s_guess_must_render_like_a_template_that_cannot_train(tmp_path):
    untrainable = CHATML_TRAINING_TEMPLATE.replace("{% generation %}", "").replace(
        "{% endgeneration %}", "")
    code, output = validate(project(tmp_path, "my-distill", untrainable, ["Qwen2ForCausalLM"]))
    assert code == 2 and output.count("\n") == 1, output
    assert output.startswith("error: chat template qwen2.5 was chosen because config.json says"
                             " Qwen2ForCausalLM, but the tokenizer has its own template"), output
    same = QWEN.original_texts()[0] + "\n"  # no markers, not the original byte for byte
    code, output = validate(project(tmp_path / "same", "my-finetune", same, ["Qwen2ForCausalLM"]))
    assert code == 0 and "  chat template qwen2.5: config.json says Qwen2ForCausalLM" in output


def test_the_step_records_the_template_and_tokenizer_it_checked_with(run_recipe, tmp_path):
    tiny.build_tokenizer(tmp_path / "model", "chatml", CHATML_TRAINING_TEMPLATE)
    result = run_recipe('[model]\npath = "model"\n[[sources]]\nname = "d"\nuse = "jsonl"\n'
                        'path = "d.jsonl"\n', files={"d.jsonl": jsonl(*ROWS)})
    step = assert_complete(result)["steps"][-1]
    assert step["stats"]["template"] == {
        "label": "of the tokenizer", "tokenizer": "TokenizersBackend",
        "sha256": hashlib.sha256(CHATML_TRAINING_TEMPLATE.encode()).hexdigest()}
