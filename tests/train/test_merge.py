"""`curate merge`: the adapter merged onto the dequantised base it was trained against, and
how faithful the merged model is to the adapter model."""

import json

from curate.testing import invoke_cli
from curate.train.merge import merge_run


def test_merge_onto_the_dequantised_base_is_16_bit_and_reports_its_fidelity(trained_run,
                                                                         tmp_path):
    from transformers import AutoModelForCausalLM

    _, run_dir = trained_run
    report = merge_run(run_dir, tmp_path / "merged", False, 2, log=print)
    assert report["examples"] == 2 and report["tokens"] > 20
    assert report["max_logit_difference"] < 0.05
    assert report["top1_agreement"] > 0.9
    saved = json.loads((tmp_path / "merged" / "merge_report.json").read_text())
    assert saved["max_logit_difference"] == report["max_logit_difference"]
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert merged.dtype.__repr__() == "torch.bfloat16"
    assert type(merged.model.layers[0].self_attn.q_proj).__name__ == "Linear"
    assert (tmp_path / "merged" / "chat_template.jinja").is_file()


def test_merging_into_the_requantised_model_warns_and_strays_further(trained_run, tmp_path):
    _, run_dir = trained_run
    said = []
    onto_dequantised = merge_run(run_dir, tmp_path / "a", False, 2, log=said.append)
    into_quantised = merge_run(run_dir, tmp_path / "b", True, 2, log=said.append)
    assert len(said) == 1 and said[0].startswith("warning: merging into the re-quantised nf4")
    assert into_quantised["into_quantized"] is True
    assert (into_quantised["max_logit_difference"]
            > 2 * onto_dequantised["max_logit_difference"])


def test_merge_prints_the_fidelity(trained_run, tmp_path):
    _, run_dir = trained_run
    code, output = invoke_cli(["merge", str(run_dir), "--output", str(tmp_path / "m"),
                               "--examples", "1"])
    assert code == 0, output
    assert "fidelity on 1 held-out examples" in output and "top-1 agreement" in output


def test_merging_a_run_without_an_adapter_is_one_clear_line(tmp_path):
    code, output = invoke_cli(["merge", str(tmp_path)])
    assert code == 2
    assert output.startswith("error: ") and "no trained adapter" in output
    assert output.count("\n") == 1
