"""`curate merge`: the adapter merged onto the dequantised base it was trained against, and
how faithful the merged model is to the adapter model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from curate.testing import invoke_cli
from curate.train.merge import merge_run, summary_lines


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
    saved = json.loads((tmp_path / "b" / "merge_report.json").read_text())
    assert saved["quantization"] == "nf4" and saved["dtype"] == "float32"  # the unquantised ones
    assert summary_lines(saved)[0] == f"merged model (4-bit NF4): {tmp_path / 'b'}"
    assert onto_dequantised["quantization"] == "none"
    assert summary_lines(onto_dequantised)[0].startswith("merged model (bfloat16): ")
    assert (into_quantised["max_logit_difference"]
            > 2 * onto_dequantised["max_logit_difference"])


def test_without_an_eval_split_the_merge_says_it_compared_on_training_examples(trained_run,
                                                                             tmp_path):
    import shutil

    _, run_dir = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "dataset" / "eval.jsonl").write_text("")
    report = merge_run(copy, tmp_path / "merged", False, 2, log=print)
    assert report["compared_on"] == "training examples (no eval split)"
    assert summary_lines(report)[1].startswith(
        "fidelity on 2 training examples (no eval split), ")
    held_out = merge_run(run_dir, tmp_path / "merged-held-out", False, 1, log=print)
    assert summary_lines(held_out)[1].startswith("fidelity on 1 held-out examples, ")


def test_merge_prints_the_fidelity_and_nothing_else(trained_run, tmp_path):
    # A process of its own: the libraries' notices (a FutureWarning, transformers' line about
    # the dequantised dtype) are printed once per process, so an earlier test would hide them.
    _, run_dir = trained_run
    done = subprocess.run([sys.executable, "-m", "curate", "merge", str(run_dir), "--output",
                           str(tmp_path / "m"), "--examples", "1"], capture_output=True,
                          text=True, cwd="/", timeout=240)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"merged model (bfloat16): {tmp_path / 'm'}"
    assert lines[1].startswith("fidelity on 1 held-out examples") and len(lines) == 2
    assert "top-1 agreement" in lines[1]
    assert done.stderr == ""


def test_merging_a_run_without_an_adapter_is_one_clear_line(tmp_path):
    code, output = invoke_cli(["merge", str(tmp_path)])
    assert code == 2
    assert output.startswith("error: ") and "no trained adapter" in output
    assert output.count("\n") == 1


def test_examples_below_one_are_refused_by_the_option(tmp_path):
    code, output = invoke_cli(["merge", str(tmp_path), "--examples", "0"])
    assert code == 2
    assert "Invalid value for '--examples': 0 is not in the range x>=1" in output


def comparison(reference_rows, merged_rows):
    """(reference logits, merged logits, attention mask) of one sequence, one row per token."""
    import torch

    reference = torch.tensor([reference_rows], dtype=torch.float32)
    merged = torch.tensor([merged_rows], dtype=torch.float32)
    return reference, merged, torch.ones(reference.shape[:2], dtype=torch.long)


def test_a_different_pick_at_a_near_tie_is_not_held_against_the_merge():
    from curate.train.merge import fidelity

    # token 1: the reference's top two are 0.05 apart and the merged model picks the other one
    report = fidelity(*comparison([[3.0, 1.0, 0.0], [2.0, 2.05, 0.0]],
                                  [[3.0, 1.0, 0.0], [2.06, 2.04, 0.0]]))
    assert report["top1_agreement"] == 0.5
    assert report["top1_agreement_beyond_near_ties"] == 1.0


def test_a_merge_that_is_not_the_trained_model_fails_unless_asked_into_the_quantised_one():
    from curate.errors import CurateError
    from curate.train.merge import check_fidelity, fidelity

    rows = [[3.0, 1.0, 0.0]] * 99 + [[2.0, 0.0, 0.0]]
    report = fidelity(*comparison(rows, rows[:90] + [[0.0, 3.0, 0.0]] * 10))
    assert report["top1_agreement_beyond_near_ties"] == pytest.approx(0.90)
    with pytest.raises(CurateError, match=r"^run: not merged: the merged model picks another"
                                          r" top-1 token than the adapter model on 10.0% of 100"
                                          r" tokens"):
        check_fidelity(report, Path("run"), False, print)
    said = []
    check_fidelity(report, Path("run"), True, said.append)  # asked for: the rounding is known
    assert len(said) == 1 and said[0].startswith("warning: the merged model picks another")
    check_fidelity(fidelity(*comparison(rows, rows)), Path("run"), False, said.append)
    assert len(said) == 1
    slightly_off = fidelity(*comparison(rows, rows[:98] + [[0.0, 3.0, 0.0]] * 2))
    check_fidelity(slightly_off, Path("run"), False, said.append)  # 98%: saved, with a warning
    assert len(said) == 2 and "more than the 1% a faithful merge shows" in said[1]


def test_merge_refuses_a_folder_whose_training_did_not_finish_or_is_busy(trained_run, tmp_path):
    import shutil

    from curate.runstore import RunFolder

    _, run_dir = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "train" / "checkpoints" / "checkpoint-3").mkdir(parents=True)  # a killed retrain
    code, output = invoke_cli(["merge", str(copy), "--examples", "1"])
    assert code == 2 and output.count("\n") == 1, output
    assert "a training started here did not finish" in output and "resumes from" in output
    shutil.rmtree(copy / "train" / "checkpoints")
    with RunFolder(copy).lock():  # a run training or evaluating in the folder
        code, output = invoke_cli(["merge", str(copy), "--examples", "1"])
    assert code == 2 and "another curate process is using this run folder" in output
    assert not (copy / "merged").exists()
