"""The command line as a person meets it: help, one-line errors, exit codes, no heavy imports."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass

import pytest

from curate import hookimpl
from curate.stages import Filter
from curate.runstore import RUN_FORMAT
from curate.testing import invoke_cli

HEAVY = ("torch", "transformers", "datasets")
RECIPE = '[[sources]]\nname = "d"\nuse = "jsonl"\npath = "d.jsonl"\n[[stages]]\nuse = "length"\n'
DATA = '{"prompt": "What is 2 + 2?", "completion": "It is four, of course."}\n' * 3


def curate_subprocess(*args, cwd="/", env=None):
    """`curate` in a fresh interpreter, run outside the checkout so the installed curate is used."""
    code = textwrap.dedent(f"""
        import sys
        from curate.cli import main
        sys.argv = ["curate", *{list(args)!r}]
        try:
            main()
        finally:
            print("HEAVY=" + ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})})


def write(tmp_path, recipe=RECIPE, data=DATA):
    (tmp_path / "d.jsonl").write_text(data)
    (tmp_path / "r.toml").write_text(recipe)
    return tmp_path / "r.toml"


def test_help_lists_commands_with_examples_without_heavy_imports():
    result = curate_subprocess("--help")
    assert result.returncode == 0
    for command in ("run", "validate", "why", "plugins"):
        assert command in result.stdout
    assert "Examples:" in result.stdout
    assert "HEAVY=\n" in result.stderr


def test_validate_is_fast_and_light(tmp_path):
    result = curate_subprocess("validate", str(write(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and "stage 01-length: length" in result.stdout
    assert "HEAVY=\n" in result.stderr


def test_a_user_mistake_is_one_line_and_exit_2_without_traceback(tmp_path):
    recipe = write(tmp_path, recipe=RECIPE.replace('"length"', '"lenght"'))
    result = curate_subprocess("run", str(recipe))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"error: {recipe}: stages[0].use: unknown stage 'lenght': did you mean 'length'?")
    assert "Traceback" not in result.stderr


def test_curate_traceback_shows_the_traceback_of_user_mistakes(tmp_path):
    recipe = write(tmp_path, recipe=RECIPE.replace('"length"', '"lenght"'))
    result = curate_subprocess("run", str(recipe), env={"CURATE_TRACEBACK": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_an_unexpected_error_keeps_its_traceback(tmp_path, curate_plugin):
    @dataclass
    class Options:
        pass

    class Crashing(Filter):
        name = "crashing"

        def check(self, record):
            raise ZeroDivisionError("a bug in a stage")

    Crashing.Options = Options
    module = types.ModuleType("crashing_plugin")
    module.register_stages = hookimpl(lambda register: register(Crashing))
    curate_plugin(module, name="crashing")
    recipe = write(tmp_path, recipe=RECIPE.replace('"length"', '"crashing"'))
    try:
        invoke_cli(["run", str(recipe), "--run-dir", str(tmp_path / "run")])
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("the bug was swallowed")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"] == "ZeroDivisionError('a bug in a stage')"


def test_a_reader_that_leaves_early_does_not_stop_the_run(tmp_path):
    """`curate run r.toml | head -1`: the pipe closes after one line; the run still ends."""
    recipe = write(tmp_path, recipe=RECIPE + '[[stages]]\nuse = "exact-dedupe"\n')
    done = subprocess.run(f"curate run {recipe} --run-dir {tmp_path / 'run'} | head -1",
                          shell=True, capture_output=True, text=True, cwd="/", timeout=120)
    assert done.stdout.startswith("run r -> ")
    assert done.stderr == ""
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert (tmp_path / "run" / "dataset" / "train.jsonl").is_file()


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_says_so_in_its_manifest(tmp_path, signal_number):
    data = "".join(json.dumps({"prompt": f"Question {i} " * 8, "completion": f"Answer {i} " * 8})
                   + "\n" for i in range(60_000))
    recipe = write(tmp_path, recipe=RECIPE + '[[stages]]\nuse = "near-dedupe"\n', data=data)
    process = subprocess.Popen(["curate", "run", str(recipe), "--run-dir", str(tmp_path / "run")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    for line in process.stdout:
        if "01-length" in line:
            break
    process.send_signal(signal_number)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signal_number]
    assert errors.startswith("interrupted: run it again and it goes on from the last finished"
                             " step") and "Traceback" not in errors
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"


def test_a_run_that_keeps_nothing_for_training_warns_with_the_top_reasons(tmp_path):
    recipe = write(tmp_path, recipe=RECIPE + "min_chars = 500\n")
    code, output = invoke_cli(["run", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert code == 0
    assert ("warning: the train split is empty: no record was kept for training; most rejected"
            " by length: response-too-short (3)") in output


def test_a_train_split_emptied_by_the_eval_split_says_so(tmp_path):
    recipe = write(tmp_path, recipe=RECIPE + "[split]\neval_size = 3\n")
    code, output = invoke_cli(["run", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert code == 0
    assert ("warning: the train split is empty: all 3 kept records went to the eval split;"
            " lower [split] eval_size or eval_fraction") in output


def test_quiet_prints_nothing(tmp_path):
    code, output = invoke_cli(["run", str(write(tmp_path)), "--run-dir", str(tmp_path / "run"),
                               "--quiet"])
    assert code == 0 and output == ""


def test_run_prints_a_line_per_step_and_a_summary(tmp_path):
    code, output = invoke_cli(["run", str(write(tmp_path)), "--run-dir", str(tmp_path / "run")])
    assert code == 0, output
    assert "00-read" in output and "01-length" in output
    assert "done: 3 input rows -> 3 train + 0 eval, 0 rejected" in output


def test_a_folder_that_is_not_a_run_folder_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "precious.txt").write_text("keep me")
    code, output = invoke_cli(["run", str(write(tmp_path)), "--run-dir", str(tmp_path / "run")])
    assert code == 2 and "is not a curate run folder" in output
    assert (tmp_path / "run" / "precious.txt").read_text() == "keep me"


def test_a_run_folder_of_an_incompatible_version_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text('{"run_format": 99}')
    code, output = invoke_cli(["run", str(write(tmp_path)), "--run-dir", str(tmp_path / "run")])
    assert code == 2
    assert (f"written by an incompatible curate (run format 99, this curate writes {RUN_FORMAT})"
            in output)


def test_two_recipes_of_one_file_name_do_not_share_the_default_run_folder(tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = write(tmp_path / "a")
    second = write(tmp_path / "b", recipe=RECIPE + "[run]\nseed = 7\n")
    assert invoke_cli(["run", str(first)])[0] == 0
    code, output = invoke_cli(["run", str(second)])
    assert code == 2 and output.count("\n") == 1
    assert (f"runs/r holds the run of {first.resolve()}, another recipe of the same file name:"
            f" pass --run-dir, or set [run] dir in {second}") in output
    manifest = json.loads((tmp_path / "runs" / "r" / "manifest.json").read_text())
    assert manifest["recipe"]["path"] == str(first.resolve())
    assert invoke_cli(["run", str(first)])[0] == 0
    assert invoke_cli(["run", str(second), "--run-dir", "other"])[0] == 0
    first.unlink()  # a recipe moved away leaves its folder to the next one of its name
    assert invoke_cli(["run", str(second)])[0] == 0
    (tmp_path / "c").mkdir()  # a copied project goes on with its copied run
    assert invoke_cli(["run", str(write(tmp_path / "c", recipe=second.read_text()))])[0] == 0


def test_a_failed_run_does_not_claim_success(tmp_path):
    recipe = write(tmp_path, data="")
    code, output = invoke_cli(["run", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert code == 2 and "contains no rows" in output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "contains no rows" in manifest["error"]
    assert not (tmp_path / "run" / "dataset").exists()


def test_version_option():
    code, output = invoke_cli(["--version"])
    assert code == 0 and output.startswith("curate, version ")


def test_a_plugin_whose_commands_hook_raises_does_not_take_the_cli_down(curate_plugin):
    module = types.ModuleType("bad_commands")

    def register_commands(register):
        raise RuntimeError("boom")

    module.register_commands = hookimpl(register_commands)
    curate_plugin(module, name="bad-commands")
    code, output = invoke_cli(["plugins"])
    assert code == 0
    assert "bad-commands FAILED TO LOAD: register_commands: RuntimeError: boom" in output


def test_verbose_adds_fingerprints_reasons_and_the_manifest(tmp_path):
    data = DATA + '{"prompt": "Hi", "completion": "no"}\n'
    code, output = invoke_cli(["run", str(write(tmp_path, data=data,
                                                recipe=RECIPE + "min_chars = 10\n")),
                               "--run-dir", str(tmp_path / "run"), "--verbose"])
    assert code == 0, output
    assert "01-length: fingerprint " in output
    assert "      1 response-too-short" in output
    assert f"manifest: {tmp_path / 'run' / 'manifest.json'} (complete)" in output
    code, quiet_output = invoke_cli(["run", str(write(tmp_path)), "--run-dir",
                                     str(tmp_path / "run2")])
    assert ": fingerprint " not in quiet_output


def test_progress_shows_count_rate_and_time_left_only_on_a_terminal():
    import io

    from curate.console import Console

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal, pipe = Terminal(), io.StringIO()
    from curate.console import ProgressMeter

    meter = ProgressMeter("length", 1000, terminal)
    meter.count = 250
    line = meter.line(meter.start + 5.0)
    assert line == "  length: 250/1,000 records, 50/s, 0:15 left"
    items = list(Console(progress_stream=pipe).progress(range(3), "x", 3))
    assert items == [0, 1, 2] and pipe.getvalue() == ""
    ProgressMeter.INTERVAL = 0.0
    try:
        assert list(Console(progress_stream=terminal).progress(range(3), "x", 3)) == [0, 1, 2]
    finally:
        ProgressMeter.INTERVAL = 0.2
    assert "x: 3/3 records" in terminal.getvalue()
    assert list(Console(quiet=True, progress_stream=Terminal()).progress(range(2), "x")) == [0, 1]


def test_a_run_dir_that_is_a_file_or_under_one_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    code, output = invoke_cli(["run", str(write(tmp_path)), "--run-dir",
                               str(tmp_path / "afile" / "sub")])
    assert code == 2 and output.splitlines()[-1] == (
        f"error: {tmp_path / 'afile' / 'sub'}: cannot create the run folder here (Not a"
        " directory): choose another --run-dir")
    code, output = invoke_cli(["run", str(write(tmp_path, recipe='[run]\ndir = "afile"\n' + RECIPE))])
    assert code == 2 and output.splitlines()[-1] + "\n" == f"error: {tmp_path / 'afile'}: is a file, not a run folder:" \
                                   " choose another --run-dir\n"


def test_why_on_a_damaged_run_folder_is_one_line(tmp_path):
    code, _ = invoke_cli(["run", str(write(tmp_path)), "--run-dir", str(tmp_path / "run")])
    (tmp_path / "run" / "manifest.json").write_text("{not json")
    code, output = invoke_cli(["why", str(tmp_path / "run"), "abcd"])
    assert code == 2 and "manifest.json is unreadable" in output
