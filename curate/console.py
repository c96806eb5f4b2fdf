"""What a run tells the person watching: step summaries, and progress on a terminal only."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


class Console:
    """Prints summaries to stdout (unless quiet) and live progress to stderr on a terminal."""

    def __init__(self, quiet: bool = False, verbose: bool = False,
                 stream: TextIO | None = None, progress_stream: TextIO | None = None):
        self.quiet, self.verbose = quiet, verbose
        self.stream = stream or sys.stdout
        self.progress_stream = progress_stream or sys.stderr

    def info(self, message: str) -> None:
        if not self.quiet:
            self._say(message)

    def detail(self, message: str) -> None:
        if self.verbose and not self.quiet:
            self._say(message)

    def _say(self, message: str) -> None:
        try:
            print(message, file=self.stream, flush=True)
        except BrokenPipeError:
            # `curate run ... | head`: the reader left, but the run goes on to its end.
            self.quiet = True
            if self.stream is sys.stdout:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    def progress(self, items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
        """Yield items unchanged; on a terminal, show count, rate and time left while doing so."""
        if self.quiet or not self.progress_stream.isatty():
            yield from items
            return
        meter = ProgressMeter(label, total, self.progress_stream)
        for item in items:
            meter.tick()
            yield item
        meter.close()


class SilentConsole(Console):
    """Says nothing, warnings included: for a pass over steps that another pass reported."""

    def __init__(self):
        super().__init__(quiet=True)

    def warn(self, message: str) -> None:
        pass


class ProgressMeter:
    INTERVAL = 0.2

    def __init__(self, label: str, total: int | None, stream: TextIO):
        self.label, self.total, self.stream = label, total, stream
        self.count = 0
        self.start = self.last = time.monotonic()

    def tick(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.INTERVAL:
            self.last = now
            self.stream.write("\r" + self.line(now) + "\x1b[K")
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        text = f"  {self.label}: {self.count:,}"
        if self.total:
            text += f"/{self.total:,}"
        text += f" records, {rate:,.0f}/s"
        if self.total and rate > 0:
            text += f", {format_duration(max(self.total - self.count, 0) / rate)} left"
        return text

    def close(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
