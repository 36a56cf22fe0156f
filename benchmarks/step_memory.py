"""Each training step's own peak resident memory, for the benchmarks that run ``recsys train``.

Before each step of :class:`recsys.progress.Steps` the kernel's high-water mark
is reset (``/proc/self/clear_refs`` ``5``) and after it ``VmHWM`` is read: the
peak of that step alone, whatever the steps before it held and freed. Where the
reset is not allowed the figure is the process's peak so far. Linux only
(``/proc``). ``bench_train.py`` and ``bench_night.py`` import it in the process
that trains (``benchmarks/`` on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from recsys import progress


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM`` ...) in KiB; 0 when absent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def track_step_peaks(
    on_step: Callable[[dict[str, int]], None] | None = None, seconds: dict[str, float] | None = None
) -> dict[str, int]:
    """Record every later step's own peak resident memory (KiB), by step name.

    Parameters
    ----------
    on_step : callable, optional
        Called with the whole mapping after each step (e.g. to write it to a
        file, so a killed run still leaves the steps it finished).
    seconds : dict, optional
        Filled with each step's wall seconds, by step name (every step, also
        those after the training's own timings were taken: the bundle's write).

    Returns
    -------
    dict
        Filled as the steps run.
    """
    peaks: dict[str, int] = {}
    real = progress.Steps.step

    @contextlib.contextmanager
    def step(self: progress.Steps, name: str) -> Iterator[None]:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # no reset: the figure is then the peak so far
        start = time.perf_counter()
        with real(self, name):
            yield
        if seconds is not None:
            seconds[name] = time.perf_counter() - start
        peaks[name] = status_kib("VmHWM")
        if on_step is not None:
            on_step(peaks)

    progress.Steps.step = step
    return peaks
