"""Where the chunks run: in this process, in local worker processes, or on a Dask cluster.

:func:`execute` feeds tasks to the workers only as they free up, so the
driver never holds every chunk's users at once. Local workers watch the
driver (:func:`watch_driver`) and end themselves when it dies.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import psutil

from recsys.config import is_int
from recsys.exceptions import ConfigError, RecsysError

if TYPE_CHECKING:
    from recsys.push.chunk import ChunkTask


def execute(
    fn: Callable[[ChunkTask], dict[str, Any]],
    tasks: Iterable[ChunkTask],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    connect_timeout: float = 5.0,
    on_result: Callable[[ChunkTask, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``fn`` over ``tasks``: here, in local worker processes, or on a Dask cluster.

    Tasks are taken from the iterable only as workers free up (at most two
    per worker in flight), so the driver never holds every chunk's users at once.

    Parameters
    ----------
    fn : callable
        The chunk function (must be importable by name in a worker).
    tasks : iterable of ChunkTask
    workers : int
        Local worker processes; 1 runs the chunks in this process.
    scheduler : str, optional
        A ``dask.distributed`` scheduler address (``tcp://host:8786``); its
        workers must see the bundle and the output folder at the same paths.
    connect_timeout : float
        Seconds to wait for the scheduler before giving up.
    on_result : callable, optional
        Called in this process with (task, stats) as each chunk finishes.

    Returns
    -------
    list of dict
        The stats, in completion order.

    Raises
    ------
    ConfigError
        If ``workers`` is not a positive integer.
    SchedulerError
        If the Dask scheduler cannot be reached within ``connect_timeout``.
    Exception
        The first error a chunk raised (finished chunks keep their checkpoints).
    """
    if not is_int(workers) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    done: list[dict[str, Any]] = []

    def finish(task: ChunkTask, stats: dict[str, Any]) -> None:
        done.append(stats)
        if on_result is not None:
            on_result(task, stats)

    queue = iter(tasks)
    if scheduler is not None:
        _on_dask(fn, queue, scheduler, finish, connect_timeout)
    elif workers == 1:
        for task in queue:
            finish(task, fn(task))
    else:
        _on_processes(fn, queue, workers, finish)
    return done


def _on_processes(fn: Callable, queue: Iterator[ChunkTask], workers: int, finish: Callable) -> None:
    import concurrent.futures as cf
    import multiprocessing

    # forkserver: workers fork from a clean server process, never from a parent
    # whose OpenMP (faiss) threads are already running
    context = multiprocessing.get_context("forkserver")
    driver = psutil.Process()
    with cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=watch_driver,
        initargs=(driver.pid, driver.create_time()),
    ) as pool:
        running: dict[cf.Future, ChunkTask] = {}
        try:
            for task in itertools.islice(queue, 2 * workers):
                running[pool.submit(fn, task)] = task
            while running:
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    finish(task, future.result())
                    for nxt in itertools.islice(queue, 1):
                        running[pool.submit(fn, nxt)] = nxt
        except cf.process.BrokenProcessPool:
            for future in running:
                future.cancel()
            raise WorkerLostError(
                "a push worker process died (killed, or out of memory?); the finished chunks are kept: "
                "run the same command again to resume, with fewer --workers or a smaller [push] chunk_size "
                "if memory is short"
            ) from None
        except BaseException:
            for future in running:
                future.cancel()
            raise


#: how often a worker process checks that its driver still runs
WATCH_INTERVAL_S = 0.5


def watch_driver(pid: int, create_time: float, interval: float = WATCH_INTERVAL_S) -> None:
    """Worker initializer: kill this worker as soon as the driver process is gone.

    A killed driver (SIGKILL, OOM killer) runs no cleanup, and its worker
    processes would go on computing and writing checkpoints for a run that
    no longer exists. Each worker watches the driver from a daemon thread
    (pid and start time, so a reused pid is not mistaken for it) and ends
    itself within ``interval`` seconds of the driver's death; the forkserver
    and resource-tracker helpers exit by themselves once their last client
    is gone.
    """
    import threading

    def alive() -> bool:
        try:
            driver = psutil.Process(pid)
            # a dead driver stays a zombie until its parent reaps it: that is dead too
            return abs(driver.create_time() - create_time) < 1e-3 and driver.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def watch() -> None:
        while alive():
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="push-driver-watch", daemon=True).start()


class WorkerLostError(RecsysError):
    """A local worker process died mid-run (killed, out of memory)."""


class SchedulerError(RecsysError):
    """The Dask scheduler cannot be reached."""


def _connect(scheduler: str, timeout: float) -> Any:
    """A Dask client of ``scheduler``, or a one-line error within ``timeout`` seconds."""
    from dask.distributed import Client

    try:
        return Client(scheduler, timeout=f"{float(timeout)}s")
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchedulerError(
            f"cannot reach Dask scheduler {scheduler} within {float(timeout):g}s ({detail}); "
            f"check the address (tcp://HOST:8786) and that the scheduler runs, or raise --connect-timeout"
        ) from None


def _on_dask(fn: Callable, queue: Iterator[ChunkTask], scheduler: str, finish: Callable, timeout: float) -> None:
    from dask.distributed import as_completed

    with _connect(scheduler, timeout) as client:
        slots = 2 * max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
        running: dict[str, tuple[Any, ChunkTask]] = {}

        def submit(task: ChunkTask) -> Any:
            future = client.submit(fn, task, key=f"push-{task.spec.run_id}-chunk-{task.chunk:05d}", pure=False)
            running[future.key] = (future, task)
            return future

        pending = as_completed([submit(t) for t in itertools.islice(queue, slots)])
        try:
            for future in pending:
                _, task = running.pop(future.key)
                finish(task, future.result())
                for nxt in itertools.islice(queue, 1):
                    pending.add(submit(nxt))
        except BaseException:
            client.cancel([f for f, _ in running.values()])
            raise
