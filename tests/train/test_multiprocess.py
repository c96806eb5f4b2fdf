"""`curate train` under torchrun: two processes (CPU, gloo) share one run folder; the main one
curates, both train (DDP), and the run ends as `curate run` would."""

import json
import os
import subprocess
import sys

from .conftest import jsonl_text, memorisation_rows, training_recipe


def test_two_processes_train_one_run_together(tiny_model, tmp_path):
    (tmp_path / "d.jsonl").write_text(jsonl_text(memorisation_rows()))
    (tmp_path / "r.toml").write_text(training_recipe(tiny_model, max_steps=2, eval_steps=2))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "-m", "curate", "train", str(tmp_path / "r.toml"), "--run-dir",
               str(tmp_path / "run")]
    done = subprocess.run(command, capture_output=True, text=True, cwd="/",
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "x 2 devices" in done.stdout  # the advisor counts both processes
    # Each step is reported once: the final pass finds them done and says nothing of them.
    assert done.stdout.count("00-read ") == 1 and done.stdout.count("dataset ") == 1
    assert "train                    ran" in done.stdout and "cached" not in done.stdout
    assert (tmp_path / "run" / "report.html").is_file()
    assert "done: trained on 10 examples" in done.stdout
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["train"]["metrics"]["steps"] == 2
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
