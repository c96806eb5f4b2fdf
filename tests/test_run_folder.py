"""The run folder over time: a damaged cached step, leftovers of a killed run, and what
`curate why` and `curate report` say about a run that never finished."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curate.testing import assert_complete, invoke_cli, output_digests

SLOW_PLUGIN = Path(__file__).parent / "support" / "slow_stage.py"

DATA = "".join(f'{{"instruction": "Question {i}?", "output": "A long enough answer {i}."}}\n'
               for i in range(20)) + '{"instruction": "Short?", "output": " "}\n'

RECIPE = """
[[sources]]
name = "qa"
use = "jsonl"
path = "data.jsonl"

[[stages]]
use = "length"

[split]
eval_fraction = 0.2
"""


def truncate_kept(step: Path) -> str:
    with open(step / "kept.parquet", "r+b") as handle:
        handle.truncate(100)
    return "kept.parquet is not a readable parquet file"


def delete_rejected(step: Path) -> str:
    (step / "rejected.parquet").unlink()
    return "rejected.parquet is missing"


def swap_kept(step: Path) -> str:
    shutil.copy(step.parent / "00-read" / "kept.parquet", step / "kept.parquet")
    return "kept.parquet holds 21 rows, step.json says 20"


@pytest.mark.parametrize("damage", [truncate_kept, delete_rejected, swap_kept])
def test_a_damaged_cached_step_is_said_and_run_again(run_recipe, damage):
    first = run_recipe(RECIPE, files={"data.jsonl": DATA})
    assert_complete(first)
    written = output_digests(first.run_dir)
    what = damage(first.run_dir / "stages" / "01-length")
    again = run_recipe(RECIPE)
    assert_complete(again)
    assert (f"warning: step 01-length: its output is damaged ({what}), running it again"
            in again.output.splitlines())
    assert {s["name"]: s["cached"] for s in again.manifest["steps"]} == {
        "read": True, "length": False}
    assert output_digests(again.run_dir) == written


def test_a_rerun_removes_what_a_killed_run_left_half_written(run_recipe):
    first = run_recipe(RECIPE, files={"data.jsonl": DATA})
    leftovers = [first.run_dir / "dataset" / ".train.jsonl.tmp-999999",
                 first.run_dir / "dataset" / ".eval.jsonl.tmp-999999",
                 first.run_dir / ".manifest.json.tmp-999999"]
    for path in leftovers:
        path.write_text('{"id":"half a line')
    again = run_recipe(RECIPE)
    assert_complete(again)
    assert not [path for path in leftovers if path.exists()]
    assert sorted(p.name for p in (again.run_dir / "dataset").iterdir()) == [
        "eval.jsonl", "train.jsonl"]


def slow_run(tmp_path: Path, stage: str = "slow") -> tuple[subprocess.Popen, Path]:
    """A run whose stage takes long enough to stop it midway, once its read step is done. It
    leads a process group of its own, with Ctrl-C's default action (Python's
    KeyboardInterrupt) whatever the test runner's is."""
    (tmp_path / "data.jsonl").write_text(DATA)
    recipe_file = tmp_path / "slow.toml"
    recipe_file.write_text("[run]\nworkers = 2\n" + RECIPE.replace(
        'use = "length"', f'use = "{stage}"\nseconds_per_record = 0.5'))
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, str(SLOW_PLUGIN), "run", str(recipe_file),
                                "--run-dir", str(run_dir)], start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not (run_dir / "stages" / "00-read" / "step.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.01)
    return process, run_dir


def stop(process: subprocess.Popen, how: int) -> None:
    os.kill(process.pid, how)
    process.wait()


def test_a_killed_run_is_told_from_a_running_one(tmp_path):
    process, run_dir = slow_run(tmp_path)
    try:
        code, output = invoke_cli(["why", str(run_dir), "ffffffff"])
        assert code == 2
        assert "a run is going on in this folder now" in output
    finally:
        stop(process, signal.SIGKILL)
    assert '"status": "running"' in (run_dir / "manifest.json").read_text()
    code, output = invoke_cli(["why", str(run_dir), "ffffffff"])
    assert code == 2
    assert output == (f"error: no record whose id starts with 'ffffffff' in {run_dir}: its last"
                      f" run was killed before it finished: run the recipe again to finish it\n")
    code, output = invoke_cli(["report", str(run_dir)])
    assert code == 2
    assert "the run was interrupted (Ctrl-C or kill): run the recipe again" in output


def test_ctrl_c_in_a_parallel_stage_stops_the_workers_with_one_line(tmp_path):
    process, run_dir = slow_run(tmp_path, "slow-parallel")
    time.sleep(1)  # the workers are judging
    os.killpg(process.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert output.splitlines()[-1] == ("interrupted: run it again and it goes on from the last"
                                       f" finished step ({run_dir})")
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    left = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True)
    assert left.stdout == ""  # no worker outlives the run
    again = subprocess.run([sys.executable, str(SLOW_PLUGIN), "run", str(tmp_path / "slow.toml"),
                            "--run-dir", str(run_dir)], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert "done: 21 input rows -> 15 train + 4 eval, 2 rejected" in again.stdout


def test_why_on_an_interrupted_run_says_where_records_stopped(tmp_path):
    process, run_dir = slow_run(tmp_path)
    stop(process, signal.SIGTERM)
    code, output = invoke_cli(["why", str(run_dir), "data.jsonl:3"])
    assert code == 0, output
    assert ("  kept through step 'read', where the last run was interrupted or killed, before its"
            " dataset was written: run the recipe again to finish it") in output.splitlines()
    code, output = invoke_cli(["why", str(run_dir), "ffffffff"])
    assert code == 2
    assert "its last run was interrupted after step 'read': run the recipe again" in output
