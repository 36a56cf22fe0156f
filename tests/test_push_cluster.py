"""The push on a dask.distributed cluster the way an operator runs it, and what a cluster can do wrong.

The scheduler here is an in-process ``LocalCluster`` (processes=False: a real
scheduler and workers over TCP, without the seconds a process cluster needs
to start on a shared machine); ``benchmarks/bench_cluster.py`` runs the same
command against ``dask scheduler`` and ``dask worker`` processes.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import push_city  # noqa: E402

from recsys.cli import main  # noqa: E402
from recsys.push import executors as E  # noqa: E402
from recsys.push import nightly  # noqa: E402
from recsys.push import run_nightly  # noqa: E402
from recsys.push.writer import read_pushes  # noqa: E402

D1 = push_city.DAY

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    return push_city.trained_city(tmp_path_factory)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=":0"
    ) as local:
        yield local


def _tasks(n: int, run_id: str) -> list[SimpleNamespace]:
    """Stand-ins for ChunkTask: the executor reads only ``spec.run_id`` and ``chunk``."""
    return [SimpleNamespace(spec=SimpleNamespace(run_id=run_id), chunk=i) for i in range(n)]


#: holds the later chunks of a run while a test takes its cluster apart (in-process workers share it)
_RELEASE = threading.Event()


def _held_chunk(task: SimpleNamespace) -> dict:
    """The first chunk finishes at once; the others run until the test releases them (or 5 s)."""
    if task.chunk > 0:
        _RELEASE.wait(5)
    return {"chunk": task.chunk}


def test_cli_push_on_a_cluster_with_a_relative_bundle_path(city, cluster, tmp_path, monkeypatch, capsys):
    """`recsys push --model models/VERSION --scheduler tcp://…`: the rows of a local run, and the workers
    are sent the bundle as an absolute path (a worker started in another folder opens the same one)."""
    version = (city / "models" / "latest").resolve().name
    expected_dir = tmp_path / "local"
    run_nightly(city / "models" / "latest", D1, expected_dir, workers=1, stream=None)

    sent: list[str] = []
    real = nightly.execute

    def spy(fn, tasks, **kwargs):
        def recorded():
            for task in tasks:
                sent.append(task.spec.bundle)
                yield task

        return real(fn, recorded(), **kwargs)

    monkeypatch.setattr(nightly, "execute", spy)
    monkeypatch.chdir(city)
    out = tmp_path / "cluster"
    rc = main(["push", "--model", f"models/{version}", "--date", D1.isoformat(), "--out", str(out),
               "--scheduler", cluster.scheduler_address, "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert sent and set(sent) == {str((city / "models" / version).resolve())}
    rows, expected = read_pushes(out, D1), read_pushes(expected_dir, D1)
    assert len(rows) > 0
    pd.testing.assert_frame_equal(rows.drop(columns="run_id"), expected.drop(columns="run_id"))


def test_scheduler_without_workers_is_one_line(city, tmp_path, capsys):
    """A scheduler nobody started workers for: the push would wait forever; it stops within the timeout."""
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address=":0") as empty:
        start = time.perf_counter()
        rc = main(["push", "--model", str(city / "models" / "latest"), "--date", D1.isoformat(),
                   "--out", str(tmp_path / "out"), "--scheduler", empty.scheduler_address,
                   "--connect-timeout", "1", "--quiet"])  # fmt: skip
        elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"error: Dask scheduler {empty.scheduler_address} has no workers (waited 1s)")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert elapsed < 30


def test_a_worker_that_cannot_see_the_bundle_is_named(cluster, tmp_path):
    missing = str(tmp_path / "not-shared" / "bundle")
    with pytest.raises(E.SchedulerError, match=r"Dask worker tcp://\S+ cannot see .*not-shared/bundle"):
        E.execute(lambda t: {}, _tasks(2, "blind"), scheduler=cluster.scheduler_address, shared_paths=[missing])


def test_a_cluster_that_loses_every_worker_mid_run_stops(monkeypatch):
    """Workers gone mid-run (shut down, not restarted): chunks would wait forever; the run ends in one line."""
    monkeypatch.setattr(E, "POLL_S", 0.1)
    monkeypatch.setattr(E, "WORKERLESS_GRACE_S", 0.5)
    _RELEASE.clear()
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=":0"
    ) as c:
        seen = []

        def on_result(task, stats):
            seen.append(stats["chunk"])
            c.scale(0)  # the operator stops the only worker

        start = time.perf_counter()
        with pytest.raises(E.WorkerLostError, match="has had no workers for 0.5s mid-run"):
            E.execute(_held_chunk, _tasks(4, "gone"), scheduler=c.scheduler_address, on_result=on_result)
        _RELEASE.set()
    assert seen == [0]
    assert time.perf_counter() - start < 20


def test_a_lost_scheduler_mid_run_is_one_line():
    """The scheduler goes away while chunks run: a SchedulerError naming it, not the client's traceback."""
    _RELEASE.clear()
    c = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=":0"
    )
    address = c.scheduler_address
    try:
        with pytest.raises(E.SchedulerError, match=f"lost the Dask scheduler {address} mid-run"):
            E.execute(_held_chunk, _tasks(4, "lost"), scheduler=address, on_result=lambda t, s: c.close())
    finally:
        _RELEASE.set()
        c.close()


def _killing_chunk(task: SimpleNamespace) -> dict:
    """What the client sees when a chunk killed every worker that ran it (the scheduler's verdict)."""
    last = SimpleNamespace(address="tcp://127.0.0.1:1")
    raise distributed.KilledWorker(f"push-{task.spec.run_id}-chunk-{task.chunk:05d}", last, 3)


def test_a_chunk_that_kills_its_workers_is_one_line(cluster):
    with pytest.raises(E.WorkerLostError, match=r"push chunk 0 killed every Dask worker that ran it \(out of memory\?\)"):
        E.execute(_killing_chunk, _tasks(1, "oom"), scheduler=cluster.scheduler_address)
