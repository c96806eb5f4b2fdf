"""The forked worker processes behind parallel stages.

Each worker has a pipe of its own, so no lock is shared between processes: a worker killed at
any moment (on an error, Ctrl-C, or by the kernel for memory) cannot leave the others or the
parent waiting on a lock it held. multiprocessing.Pool shares one result queue under one lock,
and Pool.terminate hangs for good when it kills a worker in the middle of sending a result.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from curate.errors import CurateError

PR_SET_PDEATHSIG = 1
JOBS_PER_WORKER = 2  # sent and not yet given back: a large input is never read ahead


def ordered_map(function: Callable, jobs: Iterable, workers: int) -> Iterator:
    """function(job) for every job, in order, in `workers` forked processes, with at most two
    jobs per worker sent and not yet given back. An exception raised by `function` is raised
    here, with the worker's traceback as its cause."""
    if workers <= 1:
        yield from map(function, jobs)
        return
    group = WorkerGroup(function, workers)
    try:
        yield from group.map(jobs)
    finally:
        group.stop()


class WorkerTraceback(Exception):
    """The traceback of an exception raised in a worker process, attached as its cause."""

    def __str__(self) -> str:
        return "\n" + self.args[0]


class WorkerGroup:
    """`size` forked processes running `function`, each answering its jobs in the order it
    got them."""

    def __init__(self, function: Callable, size: int):
        context = multiprocessing.get_context("fork")
        self.connections = []
        self.processes = []
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            for _ in range(size):
                ours, theirs = context.Pipe(duplex=True)
                process = context.Process(target=_serve, args=(function, theirs, os.getpid()),
                                          daemon=True)
                process.start()
                theirs.close()
                self.connections.append(ours)
                self.processes.append(process)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        # Jobs are sent from a thread of their own: sending a large job to a worker that is
        # itself blocked sending a large answer back would otherwise wait forever.
        self.sender = threading.Thread(target=self._send_jobs, daemon=True,
                                       name="curate-worker-jobs")
        self.sender.start()

    def map(self, jobs: Iterable) -> Iterator:
        """Answers in input order. A job goes to an idle worker (one queued behind a slow job
        would wait while another worker idles), and no more than two per worker are out and
        not yet given back, so a large input is never read ahead into memory."""
        size = len(self.connections)
        holding: list[int | None] = [None] * size  # the job number each worker is on
        answers: dict[int, tuple[bool, Any]] = {}
        numbered = enumerate(jobs)
        sent = given = 0
        more = True
        while True:
            while more and sent - given < JOBS_PER_WORKER * size and None in holding:
                job = next(numbered, None)
                if job is None:
                    more = False
                    break
                worker = holding.index(None)
                self.outbox.put((worker, job[1]))
                holding[worker] = job[0]
                sent += 1
            if given in answers:
                yield _unpacked(answers.pop(given))
                given += 1
            elif given == sent:
                return
            else:
                self._collect(holding, answers)

    def _collect(self, holding: list[int | None], answers: dict[int, tuple[bool, Any]]) -> None:
        """Waits for at least one answer, and files every answer that has come."""
        busy = {self.connections[worker]: worker for worker, number in enumerate(holding)
                if number is not None}
        for connection in multiprocessing.connection.wait(list(busy)):
            worker = busy[connection]
            try:
                answer = connection.recv()
            except (EOFError, OSError):
                raise CurateError(self._death(worker)) from None
            answers[holding[worker]] = answer
            holding[worker] = None

    def stop(self) -> None:
        """Stops every worker at once, whatever it is doing: nothing of theirs is shared."""
        self.outbox.put(None)
        for process in self.processes:
            if process.exitcode is None:
                process.terminate()
        for process in self.processes:
            process.join()
        self.sender.join()  # before closing: a closed descriptor's number can be reused at once
        for connection in self.connections:
            connection.close()

    def _send_jobs(self) -> None:
        while (item := self.outbox.get()) is not None:
            worker, job = item
            try:
                self.connections[worker].send(job)
            except (OSError, ValueError):  # the worker is gone; _collect says why
                pass

    def _death(self, worker: int) -> str:
        process = self.processes[worker]
        process.join(timeout=5)
        code = process.exitcode
        if code is not None and code < 0:
            how = f"was killed by signal {signal.Signals(-code).name}"
            if code == -signal.SIGKILL:
                how += " (the kernel does that when memory runs out)"
        else:
            how = f"exited with code {code}"
        return (f"a worker process {how}; run again with fewer [run] workers, or workers = 1"
                f" to see the stage fail in this process")


def _unpacked(answer: tuple[bool, Any]) -> Any:
    succeeded, value = answer
    if succeeded:
        return value
    error, remote_traceback = value
    error.__cause__ = WorkerTraceback(remote_traceback)
    raise error


def _serve(function: Callable, connection, parent: int) -> None:
    """A worker's life: answer jobs until the parent closes the pipe."""
    _take_default_signals(parent)
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            return
        try:
            answer = (True, function(job))
        except Exception as error:  # raised again in the parent, with this traceback
            answer = _failure(error)
        try:
            connection.send(answer)
        except (OSError, ValueError):
            return
        except Exception as error:  # an answer that cannot be pickled
            connection.send(_failure(error))


def _failure(error: Exception) -> tuple[bool, tuple[Exception, str]]:
    return False, (_picklable(error), "".join(traceback.format_exception(error)))


def _take_default_signals(parent: int) -> None:
    """Workers die on SIGTERM at once, not running the parent's handler (`curate run` turns
    SIGTERM into an interrupt); Ctrl-C is the parent's to handle, which then stops them. A
    parent killed outright (SIGKILL) takes its workers with it, instead of leaving them to
    finish their job and print a BrokenPipeError each."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(parent)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _die_with(parent: int) -> None:
    """Linux's PR_SET_PDEATHSIG: SIGTERM when the parent dies (nothing elsewhere)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _picklable(error: Exception) -> Exception:
    """The error itself when it survives pickling, else a RuntimeError saying what it was."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
