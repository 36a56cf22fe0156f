"""Step-by-step progress display for long jobs, with timings kept for the summary."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator, TextIO


@dataclass
class Steps:
    """Announces numbered steps and records how long each took.

    Parameters
    ----------
    total : int
        How many steps the job has (for the ``[i/total]`` prefix).
    stream : text stream or None
        Where to print; ``None`` prints nothing (library use, tests).
    """

    total: int
    stream: TextIO | None = sys.stderr
    timings: dict[str, float] = field(default_factory=dict)
    _done: int = 0

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step; print its start and its duration."""
        self._done += 1
        if self.stream is not None:
            print(f"[{self._done}/{self.total}] {name} ...", file=self.stream, flush=True)
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        self.timings[name] = round(elapsed, 3)
        if self.stream is not None:
            print(f"      {name}: {elapsed:.1f}s", file=self.stream, flush=True)
