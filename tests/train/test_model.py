"""Where the base model comes from, code in a model folder never running unasked, and a
tokenizer that trains as inference will load it."""

import json
import re

import pytest

from curate.errors import CurateError
from curate.recipe import ModelOptions
from curate.train.model import ModelSource, load_base_model
from curate.train.options import QLoRAOptions


def test_a_local_folder_is_resolved_against_the_recipe_and_a_hub_id_kept(tmp_path):
    (tmp_path / "models" / "base").mkdir(parents=True)
    local = ModelSource.from_recipe(ModelOptions(path="models/base"), tmp_path)
    assert local.path == str(tmp_path / "models" / "base") and local.is_local
    assert local.trust_remote_code is False
    hub = ModelSource.from_recipe(ModelOptions(path="org/model", revision="abc"), tmp_path)
    assert (hub.path, hub.tokenizer, hub.revision) == ("org/model", "org/model", "abc")
    with pytest.raises(CurateError, match=r"\[model\] './gone': no such folder"):
        ModelSource.from_recipe(ModelOptions(path="./gone"), tmp_path)


def test_code_in_a_model_folder_does_not_run_unless_the_recipe_trusts_it(tmp_path):
    folder = tmp_path / "remote"
    folder.mkdir()
    marker = tmp_path / "code-ran"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "remote-demo", "architectures": ["DemoForCausalLM"],
        "auto_map": {"AutoConfig": "modeling_demo.DemoConfig",
                     "AutoModelForCausalLM": "modeling_demo.DemoForCausalLM"}}))
    (folder / "modeling_demo.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig\n"
        "class DemoConfig(PretrainedConfig):\n    model_type = 'remote-demo'\n")
    source = ModelSource(str(folder), str(folder))
    with pytest.raises(CurateError) as error:
        load_base_model(source, QLoRAOptions(quantization="none"), "float32")
    assert str(error.value).startswith(f"[model] '{folder}': cannot load it:")
    assert "trust_remote_code" in str(error.value), error.value
    assert not marker.exists()


def test_loftq_without_cuda_is_one_clear_line_not_a_torch_traceback(tmp_path):
    import torch

    from curate.train.model import _loftq

    if torch.cuda.is_available():
        pytest.skip("LoftQ runs here")
    with pytest.raises(CurateError, match=r"LoftQ .* computes on a CUDA GPU and this machine has"):
        _loftq(None, ModelSource.from_recipe(ModelOptions(path=str(tmp_path)), tmp_path))


def tiny_options(**overrides) -> QLoRAOptions:
    return QLoRAOptions(**{"quantization": "none", "gradient_checkpointing": False, **overrides})


@pytest.mark.parametrize("key,names,unknown,hint", [
    ("target_modules", ["q_proj", "foo_proj"], "foo_proj", ": did you mean 'o_proj'?"),
    ("modules_to_save", ["lm_hed"], "lm_hed", ": did you mean 'lm_head'?"),
    ("target_modules", ["q_proj", "zzz"], "zzz", ""),
])
def test_a_module_name_that_matches_nothing_is_one_clear_line(tiny_model, key, names, unknown,
                                                              hint):
    from curate.train.model import load_for_training

    source = ModelSource(str(tiny_model), str(tiny_model))
    with pytest.raises(CurateError) as error:
        load_for_training(source, tiny_options(**{key: names}), "float32", seed=0)
    message = str(error.value)
    assert message.startswith(f"[train] {key}: no module of the model is named '{unknown}'"
                              f" (its modules: embed_tokens, q_proj, k_proj, v_proj, o_proj,")
    assert message.endswith(f"lm_head){hint}") and "\n" not in message


def test_module_names_match_as_peft_matches_them(tiny_model):
    from curate.train.model import load_for_training

    source = ModelSource(str(tiny_model), str(tiny_model))
    model, _ = load_for_training(source, tiny_options(
        target_modules=["self_attn.q_proj", "model.layers.1.mlp.down_proj"],
        modules_to_save=["lm_head"]), "float32", seed=0)
    adapted = {name.split(".lora_A")[0] for name, _ in model.named_parameters()
               if ".lora_A." in name}
    assert adapted == {"base_model.model.model.layers.0.self_attn.q_proj",
                       "base_model.model.model.layers.1.self_attn.q_proj",
                       "base_model.model.model.layers.1.mlp.down_proj"}


def test_a_tokenizer_class_autotokenizer_overrides_is_refused_with_the_fix(tmp_path):
    """transformers loads a Qwen2 model's tokenizer as Qwen2Tokenizer whatever class its
    tokenizer_config.json names; the checks cannot ask AutoTokenizer without importing torch."""
    from curate.train.model import check_tokenizer_as_auto, load_tokenizer
    from support.qwen2_tokenizer import DIGITS, qwen2_folder

    folder = qwen2_folder(tmp_path / "model", "TokenizersBackend")
    source = ModelSource(str(folder), str(folder))
    with pytest.raises(CurateError) as error:
        check_tokenizer_as_auto(load_tokenizer(source), source, ["Hello.", DIGITS])
    message = re.sub(r"\d+ tokens instead of \d+", "N tokens instead of M", str(error.value))
    assert message == (
        f"[model] '{folder}': its tokenizer_config.json names TokenizersBackend, which the"
        f" checks and training use, but AutoTokenizer (what inference uses) loads"
        f" Qwen2Tokenizer and splits training text 2 into N tokens instead of M: write"
        f" \"tokenizer_class\": \"Qwen2Tokenizer\" in its tokenizer_config.json so that all of"
        f" them use the same")
    qwen2_folder(folder, "Qwen2Tokenizer")
    check_tokenizer_as_auto(load_tokenizer(source), source, ["Hello.", DIGITS])
