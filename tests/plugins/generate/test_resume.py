"""The response cache across runs that stop: a failure midway and a killed run lose no answer
already received, and the run after them asks only for what is missing."""

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from curate.cli.run import EXIT_REVIEW_PENDING
from curate.testing import assert_clear_error, assert_complete, invoke_cli

SELF_INSTRUCT = {"use": "self-instruct", "count": 6, "pairs_per_request": 1,
                 "seeds_per_request": 2}


def cache_rows(run_dir: Path) -> int:
    with sqlite3.connect(run_dir / "cache" / "generate.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def test_a_failure_midway_loses_nothing_already_answered(server, generate_recipe, files,
                                                         run_recipe):
    text = generate_recipe(SELF_INSTRUCT, concurrency=1, max_attempts=1)
    server.script("ok", "ok", "server-error")
    failed = run_recipe(text, files=files, args=["-q"])
    assert_clear_error(failed, "HTTP 500", "after 1 attempt:", "(2 answers are cached in")
    assert cache_rows(failed.run_dir) == 2
    resumed = run_recipe(text)
    assert_complete(resumed)
    assert server.count == 3 + 4  # the failed one is asked again, the 2 answered ones never
    steps = [line for line in resumed.output.splitlines() if not line.startswith("warning:")]
    assert "00-read" in resumed.output and "cached" in steps[1]


def test_a_killed_run_never_pays_twice_for_an_answer(server, generate_recipe, files, tmp_path):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    strategy = {**SELF_INSTRUCT, "count": 8}
    (tmp_path / "recipe.toml").write_text(generate_recipe(strategy, concurrency=1))
    server.rules["Here are examples"] = "slow"
    server.slow_seconds = 0.3
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "curate", "run", str(tmp_path / "recipe.toml"),
               "--run-dir", str(run_dir), "-q"]
    process = subprocess.Popen(command, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while server.count < 4 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < (cached := cache_rows(run_dir)) < 8
    sent_before = server.count
    server.rules.clear()
    code, output = invoke_cli(["run", str(tmp_path / "recipe.toml"), "--run-dir", str(run_dir)])
    assert code == EXIT_REVIEW_PENDING and "8 records wait for review" in output, output
    assert server.count - sent_before == 8 - cached
    assert cache_rows(run_dir) == 8
