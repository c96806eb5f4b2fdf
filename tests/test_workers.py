"""The forked workers behind parallel stages: answers in input order, errors raised in the
parent with the worker's traceback, and stopping them never waits on anything a killed worker
held."""

import os
import signal
import subprocess
import sys
import time

import pytest

from curate.errors import CurateError
from curate.workers import WorkerTraceback, ordered_map


def _worker_signal_state(_job):
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    return (signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.SIGTERM in blocked)


def test_workers_take_the_default_sigterm_and_leave_ctrl_c_to_the_parent():
    def parent_handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, parent_handler)
    try:
        states = list(ordered_map(_worker_signal_state, range(8), workers=2))
        assert states == [(True, True, False)] * 8  # default action, not blocked
        assert signal.getsignal(signal.SIGTERM) is parent_handler
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    finally:
        signal.signal(signal.SIGTERM, previous)


def _slow_for_small(number):
    time.sleep(0.05 if number % 3 == 0 else 0)
    return number * number, os.getpid()


def test_answers_come_back_in_input_order_from_every_worker():
    answers = list(ordered_map(_slow_for_small, range(40), workers=3))
    assert [square for square, _ in answers] == [n * n for n in range(40)]
    assert len({pid for _, pid in answers}) == 3
    assert os.getpid() not in {pid for _, pid in answers}


def _slow_first(number):
    time.sleep(1.5 if number == 0 else 0)
    return os.getpid()


def test_jobs_go_to_an_idle_worker_not_behind_a_slow_one():
    pids = list(ordered_map(_slow_first, range(4), workers=2))
    assert pids[1] == pids[2] == pids[3] != pids[0]


def _raise_on_five(number):
    if number == 5:
        raise KeyError(f"bad job {number}")
    return number


def test_an_error_in_a_worker_is_raised_in_the_parent_with_the_worker_traceback():
    with pytest.raises(KeyError) as raised:
        list(ordered_map(_raise_on_five, range(20), workers=2))
    assert raised.value.args == ("bad job 5",)
    assert isinstance(raised.value.__cause__, WorkerTraceback)
    assert "_raise_on_five" in str(raised.value.__cause__)


def _curate_error(number):
    raise CurateError("stage 'x' (plugin y): check() returned bool")


def test_a_user_mistake_found_in_a_worker_keeps_its_one_line():
    with pytest.raises(CurateError, match=r"^stage 'x' \(plugin y\): check\(\) returned bool$"):
        list(ordered_map(_curate_error, range(4), workers=2))


class Unpicklable(Exception):
    def __init__(self, handle, message):
        super().__init__(message)
        self.handle = handle

    def __reduce__(self):
        raise TypeError("cannot pickle")


def _raise_unpicklable(number):
    raise Unpicklable(object(), "the real problem")


def test_an_error_that_cannot_cross_is_named_instead():
    with pytest.raises(RuntimeError, match="Unpicklable: the real problem"):
        list(ordered_map(_raise_unpicklable, range(2), workers=2))


def _die_on_three(number):
    if number == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return number


def test_a_worker_killed_outright_is_one_line_not_a_hang():
    started = time.monotonic()
    with pytest.raises(CurateError, match="a worker process was killed by signal SIGKILL"
                                          r" \(the kernel does that when memory runs out\)"):
        list(ordered_map(_die_on_three, range(10), workers=2))
    assert time.monotonic() - started < 20


def _echo_big(job):
    return job * 2


def test_large_jobs_and_large_answers_both_ways_do_not_deadlock():
    jobs = ["x" * 3_000_000 for _ in range(8)]  # far beyond a pipe's buffer
    assert [len(answer) for answer in ordered_map(_echo_big, jobs, workers=2)] == [6_000_000] * 8


STOPPED_MID_ANSWER = """
from curate.workers import ordered_map

def big_or_bad(number):
    if number % 7 == 6:
        raise ValueError("stop")
    return "x" * 10_000_000

for attempt in range(20):
    try:
        list(ordered_map(big_or_bad, range(12), 3))
    except ValueError:
        pass
print("done")
"""


def test_stopping_workers_in_the_middle_of_an_answer_does_not_hang():
    # Workers are killed while sending answers larger than a pipe holds. multiprocessing.Pool
    # shares one result queue under one lock: a worker killed holding it hung the stop, in
    # the first few attempts of this script every time it was tried.
    done = subprocess.run([sys.executable, "-c", STOPPED_MID_ANSWER], capture_output=True,
                          text=True, cwd="/", timeout=120)
    assert done.stdout == "done\n", done.stderr


KILLED_PARENT = """
import os, signal, threading, time
from curate.workers import ordered_map

def slow(n):
    time.sleep(1)
    return "x" * n

threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
list(ordered_map(slow, [10] * 8, 2))
"""


def test_workers_die_with_a_parent_killed_outright():
    # Left alone they finish their jobs and each print a BrokenPipeError traceback; the
    # captured stderr closes only once every worker holding it has exited.
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", KILLED_PARENT], capture_output=True, text=True,
                          cwd="/", timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert "Traceback" not in done.stderr, done.stderr
    assert time.monotonic() - started < 30
