"""`curate templates`, `curate preview`, and the chat-template checks of `curate validate`."""

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from curate import hookimpl
from curate.chat_templates import ChatTemplate
from curate.plugins.chat_templates import BUILTIN_TEMPLATES
from curate.testing import invoke_cli, jsonl
from support import tiny_tokenizers as tiny

QWEN = next(t for t in BUILTIN_TEMPLATES if t.name == "qwen2.5")
ROWS = [{"messages": [{"role": "user", "content": "What is two plus two?"},
                      {"role": "assistant", "content": "It is four."}]},
        {"messages": [{"role": "user", "content": "你好"},
                      {"role": "assistant", "content": "Hello 🙂"}]}]


def write_project(folder: Path, model: str = "", own_template: str | None = None) -> Path:
    tiny.build_tokenizer(folder / "model", "chatml",
                         QWEN.original_texts()[0] if own_template is None else own_template)
    (folder / "d.jsonl").write_text(jsonl(*ROWS))
    recipe = folder / "r.toml"
    recipe.write_text(f'[model]\npath = "model"\n{model}\n[[sources]]\nname = "d"\n'
                      f'use = "jsonl"\npath = "d.jsonl"\n')
    return recipe


def test_templates_lists_the_built_ins_and_a_plugin_s(curate_plugin):
    mine = ChatTemplate("house-style", "{% generation %}{% endgeneration %}", ("<eot>",),
                        name_patterns=(r"house-",), description="our own format")
    curate_plugin(types.SimpleNamespace(
        register_chat_templates=hookimpl(lambda register: register(mine))), name="house")
    code, output = invoke_cli(["templates"])
    assert code == 0, output
    assert "qwen2.5    Qwen 2.5 (ChatML); trl's training template" in output
    assert ("ends turns with <|im_end|>; matches tokenizers shipping its original template,"
            " names /qwen2\\.5/, config Qwen2ForCausalLM") in output
    assert "default system prompt: 'You are Qwen, created by Alibaba Cloud." in output
    assert "house-style our own format" in output
    assert "from plugin house" in output


def test_templates_json_and_show():
    code, output = invoke_cli(["templates", "--json"])
    rows = {row["name"]: row for row in json.loads(output)}
    assert rows["gemma3"]["end_of_turn"] == ["<end_of_turn>"] and rows["gemma3"]["builtin"]
    code, output = invoke_cli(["templates", "--show", "llama3.1"])
    assert code == 0 and "{%- generation %}" in output and "<|eot_id|>" in output


def test_preview_marks_the_trained_text(tmp_path):
    code, output = invoke_cli(["preview", str(write_project(tmp_path)), "-n", "2"])
    assert code == 0, output
    assert output.startswith("chat template qwen2.5 (its tokenizer's template is this family's"
                             " original); 2 examples from the sources; trained text [[like"
                             " this]]")
    assert ("<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant[[\nIt is"
            " four.<|im_end|>\n]]") in output
    assert "<|im_start|>assistant[[\nHello 🙂<|im_end|>\n]]" in output
    assert "(source d, d.jsonl:1)" in output


def test_preview_in_colour_styles_instead_of_brackets(tmp_path):
    code, output = invoke_cli(["preview", str(write_project(tmp_path)), "-n", "1", "--color"])
    assert code == 0 and "[[" not in output
    assert "\x1b[32m\x1b[1m\nIt is four.<|im_end|>\n\x1b[0m" in output


def test_preview_shows_where_truncation_cuts(tmp_path):
    code, output = invoke_cli(["preview", str(write_project(tmp_path, "max_length = 30")),
                               "-n", "1"])
    assert code == 0 and ", 0 trained" in output
    assert "more tokens cut at max_length 30]" in output and "[[" not in output.split("\n", 1)[1]
    assert "(the chat-template step rejects this example, no-trainable-tokens: " in output


def test_preview_says_which_examples_the_step_rejects(tmp_path):
    recipe = write_project(tmp_path)
    (tmp_path / "d.jsonl").write_text(jsonl(
        {"messages": [{"role": "user", "content": "Say it"},
                      {"role": "assistant", "content": "Done.<|im_end|> and more"}]}, *ROWS))
    code, output = invoke_cli(["preview", str(recipe), "-n", "2"])
    assert code == 0, output
    assert output.count("(the chat-template step rejects this example") == 1
    assert "rejects this example, special-token-in-text: message 1 (assistant) spells" in output


def test_validate_reports_the_template_checks(tmp_path):
    code, output = invoke_cli(["validate", str(write_project(tmp_path, "max_length = 100"))])
    assert code == 0, output
    assert ("  stage 01-chat-template: added for [model]\n"
            "  chat template qwen2.5: its tokenizer's template is this family's original\n"
            "    without a system message the template says: 'You are Qwen, created by Alibaba"
            " Cloud. You are a helpful assistant.'\n") in output
    assert "    ok: every assistant turn ends with a trained <|im_end|>\n" in output
    assert "    ok: renders like the tokenizer's own template on 4 conversations\n" in output
    assert "    first 2 records: none of 2 examples is longer than max_length 100" in output


def test_validate_shows_a_diff_when_the_tokenizer_s_template_differs(tmp_path):
    own = QWEN.original_texts()[0].replace("You are Qwen, created by Alibaba Cloud.", "Hi.")
    recipe = write_project(tmp_path, 'chat_template = "qwen2.5"', own_template=own)
    code, output = invoke_cli(["validate", str(recipe)])
    assert code == 0, output
    assert ("    warning: template qwen2.5 renders differently from the tokenizer's own"
            " template") in output
    assert "      --- tokenizer's own template\n      +++ template qwen2.5\n" in output
    assert "      -Hi. You are a helpful assistant.<|im_end|>\n" in output
    assert ("      +You are Qwen, created by Alibaba Cloud. You are a helpful"
            " assistant.<|im_end|>\n") in output


def test_validate_counts_what_the_step_would_reject(tmp_path):
    code, output = invoke_cli(["validate", str(write_project(tmp_path, "max_length = 20"))])
    assert code == 0, output
    assert "    first 2 records: 2 of 2 examples are cut at max_length 20" in output
    assert "    the chat-template step would reject 2 of them: 2 no-trainable-tokens" in output


def test_validate_skips_the_checks_for_a_hub_tokenizer(tmp_path):
    (tmp_path / "d.jsonl").write_text(jsonl(*ROWS))
    recipe = tmp_path / "r.toml"
    recipe.write_text('[model]\npath = "Qwen/Qwen2.5-0.5B-Instruct"\n[[sources]]\nname = "d"\n'
                      'use = "jsonl"\npath = "d.jsonl"\n')
    code, output = invoke_cli(["validate", str(recipe)])
    assert code == 0, output
    assert ("  chat template: not checked here, 'Qwen/Qwen2.5-0.5B-Instruct' is not a local"
            " folder (curate run checks it)") in output


@pytest.mark.slow
def test_validate_with_a_model_imports_neither_torch_nor_datasets(tmp_path):
    recipe = write_project(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        from curate.cli import main
        sys.argv = ["curate", "validate", {str(recipe)!r}]
        try:
            main()
        finally:
            print("HEAVY=" + ",".join(m for m in ("torch", "datasets") if m in sys.modules),
                  file=sys.stderr)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd="/", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert "chat template qwen2.5" in result.stdout
    assert "HEAVY=\n" in result.stderr
