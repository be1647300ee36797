"""Progress lines on stderr while the benchmark runs (the report goes to stdout)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from loguru import logger


class Progress:
    """`[bench  12.3s] section: message`, flushed at once; `quiet` silences it (tests)."""

    def __init__(
        self, stream: TextIO | None = None, *, quiet: bool = False, origin: float | None = None
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._quiet = quiet
        # `origin`: another process's start (perf_counter is system-wide on Linux), so worker
        # processes count time from the same zero as the main one.
        self._start = time.perf_counter() if origin is None else origin

    @property
    def origin(self) -> float:
        return self._start

    @property
    def quiet(self) -> bool:
        return self._quiet

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._start

    def say(self, section: str, message: str) -> None:
        if self._quiet:
            return
        print(f"[bench {self.elapsed_s:6.1f}s] {section}: {message}", file=self._stream, flush=True)

    def counter(self, section: str, what: str, total: int, every: int = 0) -> Counter:
        return Counter(self, section, what, total, every or max(1, total // 10))


class Counter:
    """Reports `done/total` every `every` items and at the end."""

    def __init__(self, progress: Progress, section: str, what: str, total: int, every: int) -> None:
        self._progress, self._section, self._what = progress, section, what
        self.total, self.done, self._every = total, 0, every
        self._next = every

    def tick(self, n: int = 1) -> None:
        self.done += n
        if self.done >= self._next or self.done == self.total:
            self._next = self.done + self._every
            self._progress.say(self._section, f"{self.done}/{self.total} {self._what}")


def quiet_logs() -> None:
    """The app logs every action; while benchmarking only its errors are shown."""
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
