"""The fork pool behind parallel stages: workers die on SIGTERM whatever the parent's handler."""

import signal
import subprocess
import sys
import time

from curate.stages import ordered_map


def _worker_signal_state(_job):
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    return signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.SIGTERM in blocked


def test_workers_take_the_default_sigterm_and_the_parent_keeps_its_own():
    def parent_handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, parent_handler)
    try:
        states = list(ordered_map(_worker_signal_state, range(8), workers=2))
        assert states == [(True, False)] * 8  # default action, not blocked
        assert signal.getsignal(signal.SIGTERM) is parent_handler
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    finally:
        signal.signal(signal.SIGTERM, previous)


KILLED_PARENT = """
import os, signal, time
from curate.stages import _worker_pool

def slow(n):
    time.sleep(1)
    return "x" * n

pool = _worker_pool(2)
pool.map(slow, [1, 1])
for _ in range(4):
    pool.apply_async(slow, (10,))
time.sleep(0.3)
os.kill(os.getpid(), signal.SIGKILL)
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
