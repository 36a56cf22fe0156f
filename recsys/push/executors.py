"""Where the chunks run: in this process, in local worker processes, or on a Dask cluster.

:func:`execute` feeds tasks to the workers only as they free up, so the
driver never holds every chunk's users at once. Local workers watch the
driver (:func:`watch_driver`) and end themselves when it dies.

On a Dask cluster (``--scheduler tcp://HOST:8786``: ``dask scheduler`` and
``dask worker`` processes an operator started) the driver first waits for a
worker and checks that every worker sees the bundle and the run's folders at
the same paths; while chunks wait it watches that the cluster still has
workers, so a cluster that lost them all, or its scheduler, ends the run
with one line instead of waiting forever. Finished chunks keep their
checkpoints either way: the same command resumes.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import threading
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
    shared_paths: Iterable[str] = (),
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
        Seconds to wait for the scheduler, and for its first worker, before giving up.
    on_result : callable, optional
        Called in this process with (task, stats) as each chunk finishes.
    shared_paths : iterable of str
        Absolute paths every Dask worker must see (the bundle, the run's
        folders), checked on each worker before the first chunk is sent.

    Returns
    -------
    list of dict
        The stats, in completion order.

    Raises
    ------
    ConfigError
        If ``workers`` is not a positive integer.
    SchedulerError
        If the Dask scheduler cannot be reached, or has no worker, within
        ``connect_timeout``; if a worker cannot see a shared path; if the
        scheduler is lost mid-run.
    WorkerLostError
        If a worker process died (a local one, or a chunk that killed every
        Dask worker that ran it), or a Dask cluster had no workers for
        :data:`WORKERLESS_GRACE_S` mid-run.
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
        _on_dask(fn, queue, scheduler, finish, connect_timeout, shared_paths)
    elif workers == 1:
        for task in queue:
            finish(task, fn(task))
    else:
        _on_processes(fn, queue, workers, finish)
    return done


def _on_processes(fn: Callable, queue: Iterator[ChunkTask], workers: int, finish: Callable) -> None:
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
    """A worker process died mid-run (killed, out of memory), or a Dask cluster lost all its workers."""


class SchedulerError(RecsysError):
    """The Dask scheduler cannot be reached, has no workers, or was lost mid-run."""


#: seconds beyond --connect-timeout a connection may take to answer before it is given up on
CONNECT_GRACE_S = 5.0


def _connect(scheduler: str, timeout: float) -> Any:
    """A Dask client of ``scheduler``, or a one-line error within ``timeout`` (+ a few) seconds.

    The client is made on a helper thread and waited for: Dask's own timeout bounds the TCP
    connect, not the handshake after it, so a listener that accepts and never answers (another
    server on the port) would hang the push; one that answers with other bytes is no scheduler.
    """
    from dask.distributed import Client  # heavy: dask loads only for a run on a cluster

    hint = "check the address (tcp://HOST:8786) and that the scheduler runs, or raise --connect-timeout"
    made: dict[str, Any] = {}

    def attempt() -> None:
        try:
            made["client"] = Client(scheduler, timeout=f"{float(timeout)}s")
        except BaseException as exc:  # handed to the caller's thread below
            made["error"] = exc

    thread = threading.Thread(target=attempt, name="push-dask-connect", daemon=True)
    thread.start()
    thread.join(float(timeout) + CONNECT_GRACE_S)
    if thread.is_alive():
        raise SchedulerError(
            f"{scheduler} accepted the connection but did not answer as a Dask scheduler within "
            f"{float(timeout) + CONNECT_GRACE_S:g}s; is another server listening there? {hint}"
        )
    exc = made.get("error")
    if exc is None:
        return made["client"]
    if isinstance(exc, (OSError, TimeoutError, ValueError, TypeError)):
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchedulerError(f"cannot reach Dask scheduler {scheduler} within {float(timeout):g}s ({detail}); {hint}")
    if isinstance(exc, (MemoryError, EOFError)) or type(exc).__module__.startswith("distributed"):
        # another protocol's bytes read as a Dask frame (an HTTP reply: a frame of exabytes)
        raise SchedulerError(f"{scheduler} answered, but not as a Dask scheduler ({type(exc).__name__}); {hint}")
    raise exc


#: seconds between checks that a Dask cluster still has workers while chunks wait
POLL_S = 2.0
#: a cluster left without workers this long mid-run is given up on (a nanny restarts a
#: killed worker within seconds; nobody restarts a worker that was shut down)
WORKERLESS_GRACE_S = 60.0


def _workers(client: Any, scheduler: str) -> dict[str, int]:
    """The scheduler's workers now (address -> threads); a lost scheduler is a one-line error."""
    try:
        return dict(client.nthreads())
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(f"lost the Dask scheduler {scheduler} ({type(exc).__name__}); {_RESUME}") from None


def _await_workers(client: Any, scheduler: str, timeout: float) -> dict[str, int]:
    """Wait up to ``timeout`` seconds for the scheduler's first worker: tasks sent to a
    scheduler without workers would wait forever."""
    try:
        client.wait_for_workers(1, timeout=float(timeout))
    except TimeoutError:
        raise SchedulerError(
            f"Dask scheduler {scheduler} has no workers (waited {float(timeout):g}s); start some with "
            f"`dask worker {scheduler} --nthreads 1`, or raise --connect-timeout"
        ) from None
    return _workers(client, scheduler)


def _check_shared(client: Any, scheduler: str, shared_paths: Iterable[str]) -> None:
    """Every worker must see ``shared_paths`` (the bundle, the run's folders) at the same paths."""
    for path in shared_paths:
        seen = client.run(os.path.exists, path)
        blind = sorted(address for address, ok in seen.items() if not ok)
        if blind:
            raise SchedulerError(
                f"Dask worker {blind[0]}{f' (and {len(blind) - 1} more)' if len(blind) > 1 else ''} cannot see "
                f"{path}: the workers must read the bundle and write the output folder at the same paths as "
                "this machine (a shared file system)"
            )


_RESUME = "the finished chunks are kept: run the same command again to resume"


@contextlib.contextmanager
def _quiet_client_logs() -> Iterator[None]:
    """Silence the Dask client's own log records while the driver runs.

    A lost scheduler makes ``distributed.client`` log its reconnect attempts
    with full tracebacks; the run reports the loss itself as one line
    (:class:`SchedulerError`), and the scheduler's and workers' own logs keep
    the details for the operator.
    """
    # dask's logging config gives some child loggers (distributed.client) their own level
    names = ["distributed"] + [n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _on_dask(
    fn: Callable,
    queue: Iterator[ChunkTask],
    scheduler: str,
    finish: Callable,
    timeout: float,
    shared_paths: Iterable[str] = (),
) -> None:
    from dask.distributed import CancelledError, KilledWorker, wait  # heavy: dask only on a cluster

    with _quiet_client_logs(), _connect(scheduler, timeout) as client:
        workers = _await_workers(client, scheduler, timeout)
        _check_shared(client, scheduler, shared_paths)
        # a worker's threads each take a chunk; a second chunk per thread waits ready behind it
        slots = 2 * max(1, sum(workers.values()))
        running: dict[str, tuple[Any, ChunkTask]] = {}

        def submit(task: ChunkTask) -> None:
            future = client.submit(fn, task, key=f"push-{task.spec.run_id}-chunk-{task.chunk:05d}", pure=False)
            running[future.key] = (future, task)

        for task in itertools.islice(queue, slots):
            submit(task)
        workerless_since: float | None = None
        try:
            while running:
                try:
                    finished, _ = wait([f for f, _ in running.values()], timeout=POLL_S, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    # chunks take longer than a poll: normal; chunks with no worker to run them: not
                    if _workers(client, scheduler):
                        workerless_since = None
                    elif workerless_since is None:
                        workerless_since = time.monotonic()
                    elif time.monotonic() - workerless_since > WORKERLESS_GRACE_S:
                        raise WorkerLostError(
                            f"Dask scheduler {scheduler} has had no workers for {WORKERLESS_GRACE_S:g}s mid-run; "
                            f"{_RESUME} once workers are back"
                        ) from None
                    continue
                for future in finished:
                    _, task = running.pop(future.key)
                    try:
                        stats = future.result()
                    except KilledWorker:
                        raise WorkerLostError(
                            f"push chunk {task.chunk} killed every Dask worker that ran it (out of memory?); "
                            f"{_RESUME}, with more memory per worker or a smaller [push] chunk_size"
                        ) from None
                    finish(task, stats)
                    for nxt in itertools.islice(queue, 1):
                        submit(nxt)
        except CancelledError:
            # the scheduler went away (or restarted) and took the run's tasks with it
            raise SchedulerError(f"lost the Dask scheduler {scheduler} mid-run; {_RESUME}") from None
        except SchedulerError:
            raise  # no scheduler to cancel the chunks with
        except BaseException:
            client.cancel([f for f, _ in running.values()])
            raise
