"""The fork pool behind parallel stages: workers die on SIGTERM whatever the parent's handler."""

import signal

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
