"""`curate estimate`: memory from a config alone, part by part, checked against hand counts."""

import json

import pytest

from curate.testing import invoke_cli
from curate.train.estimate import (GIB, ModelShape, activation_bytes, changes, estimate, fits,
                                   trained_parameters, weight_bits)
from curate.train.options import QLoRAOptions
from curate.train.shapes import SHAPES, shape_for_name

LLAMA_8B = ModelShape.from_config(SHAPES["llama-3.1-8b"])


def test_parameter_counts_match_the_published_sizes():
    assert LLAMA_8B.linear_params() + LLAMA_8B.other_params() == 8_030_261_248
    sizes = {name: (lambda s: s.linear_params() + s.other_params())(ModelShape.from_config(c))
             for name, c in SHAPES.items()}
    assert sizes["llama-3.1-70b"] == pytest.approx(70.55e9, rel=0.01)
    assert sizes["qwen2.5-7b"] == pytest.approx(7.62e9, rel=0.01)
    assert sizes["mistral-7b"] == pytest.approx(7.25e9, rel=0.01)
    assert sizes["gemma-2-9b"] == pytest.approx(9.24e9, rel=0.01)


def test_lora_parameters_match_peft_for_llama_8b_rank_8_on_all_linear_layers():
    assert trained_parameters(LLAMA_8B, QLoRAOptions()) == (20_971_520, [])
    only_qv = QLoRAOptions(target_modules=["q_proj", "v_proj", "lm_head_typo"])
    assert trained_parameters(LLAMA_8B, only_qv) == (32 * 8 * (8192 + 5120), ["lm_head_typo"])


def test_dotted_target_modules_and_modules_to_save_count_as_peft_matches_them():
    dotted = QLoRAOptions(target_modules=["self_attn.q_proj", "mlp.down_proj"],
                          modules_to_save=["model.embed_tokens"])
    short = QLoRAOptions(target_modules=["q_proj", "down_proj"], modules_to_save=["embed_tokens"])
    expected = 32 * 8 * (4096 + 4096 + 14336 + 4096) + 128256 * 4096
    assert trained_parameters(LLAMA_8B, dotted) == trained_parameters(LLAMA_8B, short) \
        == (expected, [])


@pytest.mark.parametrize("options", [
    {"target_modules": ["self_attn.q_proj", "mlp.down_proj"]},
    {"target_modules": ["q_proj", "self_attn.q_proj", "v_proj"], "use_dora": True},
    {"modules_to_save": ["model.embed_tokens"]}])
def test_trained_parameters_agree_with_peft_on_the_tiny_model(tiny_model, options):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from curate.train.model import lora_config

    options = QLoRAOptions(quantization="none", **options)
    shape = ModelShape.from_config(json.loads((tiny_model / "config.json").read_text()))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), lora_config(options))
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trained_parameters(shape, options) == (trained, [])


def test_weights_by_quantisation_with_the_double_quantisation_saving():
    nf4, single = QLoRAOptions(), QLoRAOptions(double_quantization=False)
    assert weight_bits(single) == 4.5 and weight_bits(nf4) == pytest.approx(4.127, abs=1e-3)
    assert weight_bits(QLoRAOptions(quantization="8bit")) == 8
    assert weight_bits(QLoRAOptions(quantization="none")) == 16
    base = dict((what, size) for what, size, _ in estimate(LLAMA_8B, nf4, 2048).parts)
    assert base["base linear layers, NF4"] / GIB == pytest.approx(3.35, abs=0.01)
    saving = (weight_bits(single) - weight_bits(nf4)) * LLAMA_8B.linear_params() / 8 / GIB
    assert saving == pytest.approx(0.30, abs=0.01)  # ~0.37 bits per parameter


def test_gradient_checkpointing_keeps_a_fraction_of_the_activations():
    options = QLoRAOptions(batch_size=1)
    kept = activation_bytes(LLAMA_8B, options, 2048, checkpointing=True)
    full = activation_bytes(LLAMA_8B, options, 2048, checkpointing=False)
    assert 0.5 * GIB < kept < 2 * GIB and full > 10 * kept
    no_dropout = activation_bytes(LLAMA_8B, QLoRAOptions(lora_dropout=0.0), 2048, False)
    assert no_dropout < full


def test_lora_dropout_copies_only_the_inputs_of_the_targeted_layers():
    def dropout_bytes(**options):
        with_dropout = activation_bytes(LLAMA_8B, QLoRAOptions(**options), 1, False)
        return with_dropout - activation_bytes(LLAMA_8B, QLoRAOptions(lora_dropout=0.0,
                                                                      **options), 1, False)

    inputs = 5 * 4096 + 4096 + 14336  # q, k, v, gate, up take hidden; o takes q; down takes mlp
    assert dropout_bytes() == 32 * inputs * 2
    assert dropout_bytes(target_modules=["self_attn.q_proj", "v_proj"]) == 32 * 2 * 4096 * 2


def test_model_names_find_their_bundled_shape():
    assert shape_for_name("meta-llama/Llama-3.1-8B-Instruct") == "llama-3.1-8b"
    assert shape_for_name("meta-llama/Llama-3.3-70B-Instruct") == "llama-3.1-70b"
    assert shape_for_name("Qwen/Qwen2.5-7B-Instruct") == "qwen2.5-7b"
    assert shape_for_name("google/gemma-2-9b-it") == "gemma-2-9b"
    assert shape_for_name("gpt2") is None


RECIPE = """
[model]
path = "{path}"
[[sources]]
name = "d"
use = "jsonl"
path = "d.jsonl"
[train]
use = "qlora"
batch_size = 1
"""


def run_estimate(tmp_path, path, *args):
    (tmp_path / "r.toml").write_text(RECIPE.format(path=path))
    (tmp_path / "d.jsonl").write_text("")
    return invoke_cli(["estimate", str(tmp_path / "r.toml"), *args])


def test_estimate_prints_each_part_and_whether_it_fits(tmp_path):
    code, output = run_estimate(tmp_path, "meta-llama/Llama-3.1-8B-Instruct", "--gpu-memory", "24")
    assert code == 0, output
    assert "model: 8.03B parameters, 32 layers, hidden 4096 (bundled shape llama-3.1-8b" in output
    for part in ("base linear layers, NF4", "double quantisation saves 0.30 GiB",
                 "embeddings, lm_head, norms", "trained weights + gradients (bf16)",
                 "optimizer states", "activations, with gradient checkpointing",
                 "CUDA context and allocator", "without gradient checkpointing"):
        assert part in output, part
    assert "fits in 24 GiB with" in output
    code, output = run_estimate(tmp_path, "meta-llama/Llama-3.1-8B-Instruct", "--gpu-memory", "8")
    hint = next(line for line in output.splitlines() if "does not fit in 8 GiB" in line)
    # batch_size is 1 and checkpointing on: only a shorter max_length is left, and not enough
    assert "no change of batch, length, checkpointing, quantisation or rank fits it in 8 GiB:" \
           " the base weights alone need 7.3 GiB in NF4" in hint, hint


def test_a_model_too_big_for_the_gpu_gets_no_hint_that_cannot_work(tmp_path):
    code, output = run_estimate(tmp_path, "meta-llama/Llama-3.1-8B-Instruct", "--shape",
                                "llama-3.1-70b", "--gpu-memory", "24")
    assert code == 0, output
    hint = output.splitlines()[-1]
    assert "batch_size" not in hint and "the base weights alone need 40.7 GiB in NF4" in hint
    assert hint.endswith("use a GPU with more memory or a smaller model"), hint


@pytest.mark.parametrize("value", ["-3", "0"])
def test_the_gpu_memory_must_be_positive(tmp_path, value):
    code, output = run_estimate(tmp_path, "meta-llama/Llama-3.1-8B-Instruct", "--gpu-memory",
                                value)
    assert code == 2 and "is not in the range x>0" in output, output


def test_the_hint_says_what_each_change_saves_and_whether_one_is_enough():
    heavy = QLoRAOptions(batch_size=8, gradient_checkpointing=False, lora_r=64)
    hint = fits(LLAMA_8B, heavy, 2048, 40)
    assert hint.startswith("does not fit in 40 GiB: 96.6 GiB short; try"
                           " gradient_checkpointing = true (saves 117.1 GiB),"), hint
    assert "lora_r = 16 instead of 64 (saves 1.4 GiB)" in hint and "enough" not in hint
    hint = fits(LLAMA_8B, heavy, 2048, 12)
    assert hint.endswith("; none is enough alone: all of them, at their leanest, need 9.1 GiB")


def test_the_hint_suggests_only_what_would_lower_the_estimate():
    found = changes(QLoRAOptions(gradient_checkpointing=False, quantization="8bit", lora_r=64),
                    4096)
    assert [text for text, _, _ in found] == [
        "gradient_checkpointing = true", 'quantization = "nf4"',
        "batch_size = 2 with gradient_accumulation = 8",
        "[model] max_length = 2048 instead of 4096", "lora_r = 16 instead of 64"]
    assert all(estimate(LLAMA_8B, options, length).total < estimate(
        LLAMA_8B, QLoRAOptions(gradient_checkpointing=False, quantization="8bit", lora_r=64),
        4096).total for _, options, length in found)
    assert changes(QLoRAOptions(batch_size=1), 512) == []
    assert [text for text, _, _ in changes(QLoRAOptions(double_quantization=False, batch_size=1),
                                           512)] == ["double_quantization = true"]


def test_estimate_reads_a_local_config(tmp_path):
    config = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512}
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    code, output = run_estimate(tmp_path, "m")
    assert code == 0, output
    assert "2 layers, hidden 64" in output and "config.json" in output


@pytest.mark.parametrize("path,args,message", [
    ("someone/unknown-model", [], "no local config.json and no bundled shape matches"),
    ("someone/unknown-model", ["--shape", "llama-3.1-8"], "did you mean 'llama-3.1-8b'?"),
])
def test_estimate_without_a_known_model_is_one_clear_line(tmp_path, path, args, message):
    code, output = run_estimate(tmp_path, path, *args)
    assert code == 2 and output.startswith("error: ") and message in output, output
