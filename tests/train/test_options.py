"""`[train]` options of the qlora trainer, as `curate validate` checks them: impossible
combinations are one clear line; questionable ones are advice, and nothing is changed."""

import os
import subprocess
import sys
import textwrap

import pytest

from curate.testing import invoke_cli

RECIPE = """
[model]
path = "meta-llama/Llama-3.1-8B-Instruct"

[[sources]]
name = "d"
use = "jsonl"
path = "d.jsonl"

[train]
use = "qlora"
"""


def validate(tmp_path, extra="", recipe=RECIPE):
    (tmp_path / "r.toml").write_text(recipe + textwrap.dedent(extra))
    (tmp_path / "d.jsonl").write_text("")
    return invoke_cli(["validate", str(tmp_path / "r.toml")])


@pytest.mark.parametrize("extra,message", [
    ('quantization = "nf4"\ninit_lora_weights = "pissa"',
     'train.init_lora_weights: pissa moves part of each full-precision weight into the adapter,'
     ' which is saved as plain LoRA on the original weights; on a nf4 base no such adapter'
     ' reproduces the trained model: set quantization = "none", or use "default"'),
    ('quantization = "8bit"\ninit_lora_weights = "olora"',
     'train.init_lora_weights: olora moves part of each full-precision weight'),
    ('quantization = "none"\ninit_lora_weights = "pissa_niter_2"\nuse_dora = true',
     'train.use_dora: DoRA cannot start from init_lora_weights = "pissa_niter_2"'),
    ('quantization = "fp4"\ninit_lora_weights = "loftq"',
     'train.init_lora_weights: LoftQ initialises against an NF4 base'),
    ('init_lora_weights = "pisa"', "train.init_lora_weights: unknown initialisation 'pisa'"),
    ('target_modules = "q_proj"', 'train.target_modules: expected "all-linear" or a list of'
                                  ' module names, found "q_proj": write ["q_proj"]'),
    ('init_lora_weights = "orthogonal"\nlora_r = 7', "train.lora_r: the orthogonal"
                                                      " initialisation needs an even rank"),
    ('quantization = "int4"', "train.quantization: expected one of 'nf4', 'fp4', '8bit', 'none'"),
    ('lora_rank = 8', "train.lora_rank: unknown key 'lora_rank' for trainer 'qlora': did you mean"
                      " 'lora_r'?"),
    ('optimizer = "adamw_nope"', "train.optimizer: unknown optimizer 'adamw_nope': did you mean"
                                 " 'adamw_torch'?"),
    ('optimizer = "paged_adamw32bit"', "did you mean 'paged_adamw_32bit'?"),
])
def test_impossible_options_are_one_clear_line(tmp_path, extra, message):
    code, output = validate(tmp_path, extra)
    assert code == 2, output
    assert output.startswith("error: ") and output.count("\n") == 1, output
    assert message in output, output


def test_options_peft_supports_for_the_quantisation_pass(tmp_path):
    for extra in ('quantization = "none"\ninit_lora_weights = "pissa_niter_4"',
                  'quantization = "none"\ninit_lora_weights = "olora"',
                  'quantization = "8bit"\nuse_dora = true', 'use_rslora = true\nlora_alpha = 8',
                  'target_modules = ["q_proj", "v_proj"]\nmodules_to_save = ["lm_head"]'):
        code, output = validate(tmp_path, extra)
        assert code == 0, (extra, output)


def test_loftq_is_refused_at_validate_without_a_cuda_gpu(tmp_path, monkeypatch):
    from curate.train import options

    monkeypatch.setattr(options, "cuda_driver_present", lambda: False)
    code, output = validate(tmp_path, 'init_lora_weights = "loftq"')
    assert code == 2 and output.count("\n") == 1, output
    assert "train.init_lora_weights: LoftQ (peft's replace_lora_weights_loftq) computes on a CUDA"\
           " GPU and this machine has none" in output
    monkeypatch.setattr(options, "cuda_driver_present", lambda: True)
    assert validate(tmp_path, 'init_lora_weights = "loftq"')[0] == 0


def test_the_unsloth_trainer_refuses_what_unsloth_cannot_do(tmp_path):
    code, output = validate(tmp_path, 'quantization = "fp4"',
                            RECIPE.replace('"qlora"', '"unsloth"'))
    assert code == 2 and "train.quantization: unsloth loads nf4, 8bit or none" in output


def test_validate_prints_the_advice_and_changes_nothing(tmp_path):
    code, output = validate(tmp_path, """
        learning_rate = 1e-3
        lora_r = 64
        lora_alpha = 16
        batch_size = 2
        gradient_accumulation = 2
        """ + "\n[split]\neval_size = 0\n")
    assert code == 0, output
    advice = [line.strip() for line in output.splitlines() if "advice:" in line]
    assert advice == [
        "advice: learning_rate 0.001 is outside 0.0001 to 0.0003, the usual range for LoRA",
        'advice: lora_r 64 is high for task = "general" (usually 8; 4 simple, 8 general, 16'
        " complex or style, 64 near full fine-tuning)",
        "advice: lora_alpha 16 is 0.25x lora_r; alpha = r to 2r is usual (a larger alpha acts"
        " like a larger learning rate)",
        "advice: effective batch 4 (batch_size 2 x gradient_accumulation 2 x 1 device) is"
        " outside 16-32",
        "advice: early_stopping_patience is 3 but there is no eval split to stop on: set [split]"
        " eval_fraction, or early_stopping_patience = 0"]


def test_the_defaults_draw_no_advice(tmp_path):
    code, output = validate(tmp_path)
    assert code == 0 and "advice:" not in output, output


def test_validate_and_estimate_never_import_torch(tmp_path):
    (tmp_path / "r.toml").write_text(RECIPE)
    (tmp_path / "d.jsonl").write_text("")
    code = textwrap.dedent(f"""
        import sys
        from curate.cli import main
        for args in (["validate", {str(tmp_path / "r.toml")!r}],
                     ["estimate", {str(tmp_path / "r.toml")!r}], ["--help"]):
            sys.argv = ["curate", *args]
            try:
                main()
            except SystemExit as exit:
                assert not exit.code, exit.code
        print("HEAVY=" + ",".join(m for m in ("torch", "transformers", "datasets", "peft", "trl")
                                  if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd="/", env=os.environ)
    assert result.returncode == 0, result.stderr
    assert "HEAVY=\n" in result.stdout and "base linear layers, NF4" in result.stdout


def test_validate_refuses_a_training_without_a_model(tmp_path):
    code, output = validate(tmp_path, recipe=RECIPE.replace(
        '[model]\npath = "meta-llama/Llama-3.1-8B-Instruct"\n', ""))
    assert code == 2 and output.count("\n") == 1, output
    assert output.startswith("error: ") and output.endswith(
        'r.toml: model.path: [train] fine-tunes a base model and [model] names none: add'
        ' [model] path = "MODEL" (a local folder or a hub id)\n'), output


def test_the_optimizer_names_are_those_of_the_installed_transformers():
    from transformers.training_args import OptimizerNames

    from curate.train.options import optimizer_names

    assert sorted(optimizer_names()) == sorted(name.value for name in OptimizerNames)


def test_a_known_optimizer_name_passes_validate(tmp_path):
    code, output = validate(tmp_path, 'optimizer = "paged_adamw_8bit"')
    assert code == 0, output


REHEARSAL_STAGE = """
[[stages]]
use = "rehearsal"
ratio = 0.15
[stages.source]
use = "jsonl"
path = "general.jsonl"
"""


def test_validate_judges_epochs_and_rehearsal_from_the_sources_rows(tmp_path):
    rows = "".join(f'{{"instruction": "q{n}", "output": "a{n}"}}\n' for n in range(200))
    (tmp_path / "general.jsonl").write_text(rows)
    recipe = RECIPE.replace("[train]", "[train]\nepochs = 1")
    (tmp_path / "r.toml").write_text(recipe)
    (tmp_path / "d.jsonl").write_text(rows)
    code, output = invoke_cli(["validate", str(tmp_path / "r.toml")])
    assert code == 0, output
    advice = [line.strip() for line in output.splitlines() if "advice:" in line]
    assert advice == [
        "advice: epochs 1 with at most 200 examples (the sources' rows, before curation): 3-5 is"
        " usual for this size (under 1k: 3-5, 1k-10k: 1-3, over 10k: 1)",
        "advice: no rehearsal data among at most 200 examples (the sources' rows, before"
        " curation): mixing in 10-20% general data limits catastrophic forgetting (add"
        ' [[stages]] use = "rehearsal" with ratio = 0.15 and a [stages.source] of general data)']
    (tmp_path / "r.toml").write_text(recipe.replace("[train]", REHEARSAL_STAGE + "\n[train]"))
    code, output = invoke_cli(["validate", str(tmp_path / "r.toml")])
    assert code == 0 and "advice: no rehearsal data" not in output, output
    assert ("advice: epochs 1 with at most 236 examples (the sources' rows, before curation, with"
            " 15% rehearsal data on top)") in output  # 200 task rows are 85% of 236
    by_tokens = REHEARSAL_STAGE.replace("ratio = 0.15", "ratio = 0.15\ncount = \"tokens\"")
    (tmp_path / "r.toml").write_text(recipe.replace("[train]", by_tokens + "\n[train]"))
    code, output = invoke_cli(["validate", str(tmp_path / "r.toml")])
    assert ("advice: epochs 1 with at most 200 examples (the sources' rows, before curation,"
            " without the general rows the rehearsal stage adds)") in output, output
    mixes_nothing = REHEARSAL_STAGE.replace("ratio = 0.15", "ratio = 0.0\nheld_out = 10")
    (tmp_path / "r.toml").write_text(recipe.replace("[train]", mixes_nothing + "\n[train]"))
    code, output = invoke_cli(["validate", str(tmp_path / "r.toml")])
    assert code == 0 and "advice: no rehearsal data among" in output, output
