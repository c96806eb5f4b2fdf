"""Running recipes end to end: accounting, caching, --force/--until, kills, determinism."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from curate.testing import assert_clear_error, invoke_cli, output_digests

SLOW_PLUGIN = Path(__file__).parent / "support" / "slow_stage.py"

ALPACA = "".join(
    f'{{"instruction": "Question {i}?", "output": "A long enough answer number {i}."}}\n'
    for i in range(20)
) + '{"instruction": "Short?", "output": "no"}\n'

RECIPE = """
[run]
seed = 3

[[sources]]
name = "qa"
use = "jsonl"
path = "data.jsonl"

[[stages]]
use = "length"
min_chars = {min_chars}

[split]
eval_fraction = 0.2
"""


def recipe(min_chars=10):
    return RECIPE.replace("{min_chars}", str(min_chars))


def test_run_accounts_for_every_row(run_recipe):
    result = run_recipe(recipe(), files={"data.jsonl": ALPACA})
    assert result.exit_code == 0, result.output
    final = result.manifest["final"]
    assert final == {"input": 21, "added": 0, "rejected": 1, "train": 16, "eval": 4,
                     "accounted": 21}
    assert [r["reason"] for r in result.rejected("length")] == ["response-too-short"]
    steps = result.manifest["steps"]
    assert [(s["name"], s["in"], s["kept"], s["rejected"]) for s in steps] == [
        ("read", 21, 21, 0), ("length", 21, 20, 1)]
    assert all(len(s["fingerprint"]) == 64 and s["seconds"] >= 0 for s in steps)


def test_second_run_reuses_every_step_and_says_so(run_recipe):
    first = run_recipe(recipe(), files={"data.jsonl": ALPACA})
    second = run_recipe(recipe())
    assert first.exit_code == second.exit_code == 0
    assert "nothing changed" in second.output
    assert all(step["cached"] for step in second.manifest["steps"])
    assert second.dataset("train") == first.dataset("train")


def test_changing_a_stage_reruns_it_but_not_the_steps_before(run_recipe):
    run_recipe(recipe(), files={"data.jsonl": ALPACA})
    changed = run_recipe(recipe(min_chars=31))
    assert changed.exit_code == 0, changed.output
    cached = {s["name"]: s["cached"] for s in changed.manifest["steps"]}
    assert cached == {"read": True, "length": False}
    assert changed.manifest["final"]["rejected"] == 11  # answers 0-9 are 30 characters


def test_changing_the_data_reruns_everything(run_recipe):
    run_recipe(recipe(), files={"data.jsonl": ALPACA})
    changed = run_recipe(recipe(), files={"data.jsonl": ALPACA + ALPACA})
    assert not any(s["cached"] for s in changed.manifest["steps"])
    assert changed.manifest["final"]["input"] == 42


def test_force_reruns_every_step(run_recipe):
    run_recipe(recipe(), files={"data.jsonl": ALPACA})
    forced = run_recipe(recipe(), args=["--force"])
    assert not any(s["cached"] for s in forced.manifest["steps"])


def test_until_stops_after_the_named_step_without_a_dataset(run_recipe):
    full = run_recipe(recipe(), files={"data.jsonl": ALPACA})
    assert (full.run_dir / "dataset" / "train.jsonl").exists()
    partial = run_recipe(recipe(), args=["--until", "read"])
    assert partial.exit_code == 0, partial.output
    assert partial.manifest["status"] == "partial"
    assert [s["name"] for s in partial.manifest["steps"]] == ["read"]
    assert not (partial.run_dir / "dataset" / "train.jsonl").exists()


def test_until_an_unknown_step_names_the_steps(run_recipe):
    result = run_recipe(recipe(), files={"data.jsonl": ALPACA}, args=["--until", "lenght"])
    assert result.exit_code == 2
    assert "--until lenght: no such step" in result.output and "read, length" in result.output


def test_removed_and_renamed_stages_leave_no_stale_folders(run_recipe):
    run_recipe(recipe(), files={"data.jsonl": ALPACA})
    renamed = run_recipe(recipe().replace('use = "length"', 'use = "length"\nname = "short"'))
    folders = sorted(p.name for p in (renamed.run_dir / "stages").iterdir())
    assert folders == ["00-read", "01-short"]


def test_same_recipe_and_seed_give_byte_identical_outputs(run_recipe, tmp_path):
    first = run_recipe(recipe(), files={"data.jsonl": ALPACA}, name="a")
    second = run_recipe(recipe(), name="b")
    assert output_digests(first.run_dir) == output_digests(second.run_dir)


def test_another_seed_gives_another_split(run_recipe):
    first = run_recipe(recipe(), files={"data.jsonl": ALPACA}, name="a")
    second = run_recipe(recipe().replace("seed = 3", "seed = 4"), name="b")
    ids = [{r["id"] for r in run.dataset("eval")} for run in (first, second)]
    assert len(ids[0]) == len(ids[1]) == 4 and ids[0] != ids[1]


def test_records_with_the_same_content_stay_on_one_side_of_the_split(run_recipe):
    result = run_recipe(recipe(), files={"data.jsonl": ALPACA * 3})
    train_ids = {r["id"] for r in result.dataset("train")}
    eval_ids = {r["id"] for r in result.dataset("eval")}
    assert train_ids and eval_ids and not train_ids & eval_ids


def slow_run(recipe_file: Path, run_dir: Path) -> subprocess.Popen:
    command = [sys.executable, str(SLOW_PLUGIN), "run", str(recipe_file), "--run-dir",
               str(run_dir)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def kill_when(process: subprocess.Popen, ready, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_a_run_killed_midway_resumes_to_the_same_result(tmp_path):
    data = "".join(f'{{"prompt": "Prompt {i}", "completion": "Answer {i % 10}."}}\n'
                   for i in range(300))
    (tmp_path / "data.jsonl").write_text(data)
    recipe_file = tmp_path / "slow.toml"
    recipe_file.write_text('[[sources]]\nname = "d"\nuse = "jsonl"\npath = "data.jsonl"\n'
                           '[[stages]]\nuse = "slow"\n[[stages]]\nuse = "length"\n'
                           'min_chars = 1\n')
    reference = tmp_path / "reference"
    assert slow_run(recipe_file, reference).wait() == 0

    interrupted = tmp_path / "interrupted"
    read_done = interrupted / "stages" / "00-read" / "step.json"
    process = slow_run(recipe_file, interrupted)
    kill_when(process, lambda: read_done.exists() and time.sleep(0.3) is None)
    assert not (interrupted / "stages" / "01-slow" / "step.json").exists()
    assert '"status": "running"' in (interrupted / "manifest.json").read_text()

    resumed = slow_run(recipe_file, interrupted)
    output = resumed.communicate()[0].decode()
    assert resumed.returncode == 0, output
    assert "00-read" in output and "cached" in output.splitlines()[1]
    assert output_digests(interrupted) == output_digests(reference)
    assert not list((interrupted / "stages").glob(".*"))


def test_two_runs_on_one_folder_at_once_are_refused(tmp_path):
    (tmp_path / "data.jsonl").write_text(ALPACA * 20)
    recipe_file = tmp_path / "slow.toml"
    recipe_file.write_text('[[sources]]\nname = "d"\nuse = "jsonl"\npath = "data.jsonl"\n'
                           '[[stages]]\nuse = "slow"\n')
    plain_recipe = tmp_path / "plain.toml"
    plain_recipe.write_text('[[sources]]\nname = "d"\nuse = "jsonl"\npath = "data.jsonl"\n')
    first = slow_run(recipe_file, tmp_path / "run")
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "run" / "manifest.json").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        code, output = invoke_cli(["run", str(plain_recipe), "--run-dir", str(tmp_path / "run")])
    finally:
        first.kill()
        first.wait()
    assert code == 2
    assert "another curate process is using this run folder" in output


def test_a_failed_rerun_leaves_no_stale_dataset_and_says_failed(run_recipe):
    first = run_recipe(recipe(), files={"data.jsonl": ALPACA})
    assert (first.run_dir / "dataset" / "train.jsonl").exists()
    (first.recipe.parent / "data.jsonl").write_text("")
    failed = run_recipe(recipe())
    assert failed.exit_code == 2 and "source 'qa' contains no rows" in failed.output
    assert failed.manifest["status"] == "failed"
    assert "contains no rows" in failed.manifest["error"]
    assert not (failed.run_dir / "dataset" / "train.jsonl").exists()
    assert (failed.run_dir / "stages" / "00-read" / "step.json").exists()


def test_replacing_a_stage_plugin_invalidates_its_cache(run_recipe, curate_plugin):
    import types

    from curate import hookimpl
    from curate.stages import Filter, Reject

    from curate.plugins.length import LengthOptions

    class StrictLength(Filter):
        name = "length"
        Options = LengthOptions

        def check(self, record):
            return Reject("strict", "everything goes")

    first_rejected = run_recipe(recipe(), files={"data.jsonl": ALPACA}).manifest["final"]["rejected"]
    module = types.ModuleType("strict_length")
    module.register_stages = hookimpl(lambda register: register(StrictLength))
    curate_plugin(module, name="strict-length")
    replaced = run_recipe(recipe())
    cached = {s["name"]: s["cached"] for s in replaced.manifest["steps"]}
    assert cached == {"read": True, "length": False}
    assert replaced.manifest["final"]["rejected"] == 21 != first_rejected


def test_a_stage_that_drops_records_silently_fails_the_run(run_recipe, curate_plugin):
    import itertools
    import types

    from curate import hookimpl
    from curate.stages import Stage

    class Lossy(Stage):
        name = "lossy"

        def process(self, records):
            return itertools.islice(records, 3)

    module = types.ModuleType("lossy")
    module.register_stages = hookimpl(lambda register: register(Lossy))
    curate_plugin(module, name="lossy")
    result = run_recipe(recipe().replace('"length"', '"lossy"').replace("min_chars = 10", ""),
                        files={"data.jsonl": ALPACA}, args=["-q"])
    assert_clear_error(result, "stage 'lossy' (plugin lossy): read only 3 of its 21 input"
                               " records")


def test_a_misspelt_until_leaves_the_previous_run_alone(run_recipe):
    first = run_recipe(recipe(), files={"data.jsonl": ALPACA})
    failed = run_recipe(recipe(), args=["--until", "nope"])
    assert failed.exit_code == 2
    assert first.manifest["status"] == "complete"
    assert (first.run_dir / "dataset" / "train.jsonl").exists()
