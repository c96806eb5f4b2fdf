"""Where the base model comes from, and code in a model folder never running unasked."""

import json

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
