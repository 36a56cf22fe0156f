"""Benchmark the push on a multi-process dask.distributed cluster: the speed-up from 1 to 2 workers.

The cluster is started the way an operator would start it on a machine (or
on several that share a file system): one ``dask scheduler`` process and
``dask worker`` processes (``--nthreads 1`` each, each with its nanny), all
from the venv's ``dask`` command, each started in its own empty folder so
nothing works by accident of the current directory. Then the push runs as
a scheduler would run it, ``python -m pipelines.push --scheduler tcp://…``,
the bundle read from its path by every worker.

Per worker count (``--workers 1,2``), one cluster: the push twice -- the
first run opens the bundle in every worker (each worker keeps it open), the
second shows a long-lived cluster's steady state -- each timed end to end,
the process trees of the driver and of the cluster sampled for resident
memory (anonymous and file-backed, as in ``bench_push.py``). In the same run:
the floor (faiss exact batched top-10 over the bundle's vectors, 2 threads)
and, with ``--local``, the same push on local worker processes
(``--workers N``, no Dask). The cluster is shut down after each worker count
(SIGTERM to each process group, SIGKILL after 30 s) and the script checks
that none of its processes is left.

The data and bundle are ``bench_push.py``'s (``benchmarks/out/push/<users>x<items>/``,
generated and trained there if missing); pushes go to
``benchmarks/out/cluster/<users>x<items>/`` (replaced each run).

Usage::

    python benchmarks/bench_cluster.py --users 100000 --chunk-size 5000 --local
    python benchmarks/bench_cluster.py --users 1000000
    python benchmarks/bench_cluster.py --users 100000 --linear --chunk-size 5000 --local
    python benchmarks/bench_cluster.py --bundle benchmarks/out/night/3100000x50000/run/models/latest \\
        --region haigang --runs 1      # one district of the city's night bundle

Prints one JSON line; figures go in benchmarks/README.md ("Push").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_push  # noqa: E402  (the push benchmark's data, floor and /proc sampling)

from recsys.taxonomy import load_taxonomy  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "cluster"
DASK = Path(sys.executable).with_name("dask")


class Cluster:
    """A ``dask scheduler`` and ``n`` ``dask worker`` processes on this machine; stopped on exit.

    Each process runs in its own session (process group), so stopping one
    stops its nanny's worker child too; :meth:`stop` waits for every process
    of every group, and :meth:`leftovers` lists any that survived.
    """

    def __init__(self, workers: int, root: Path, start_timeout: float = 120.0) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.pids: set[int] = set()
        self.address = ""
        self.workers = workers
        self.start_timeout = start_timeout

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        log = open(folder / "log.txt", "w")  # noqa: SIM115 - closed with the process in stop()
        proc = subprocess.Popen(
            [str(DASK), *args],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the scheduler, then the workers; return once all workers registered."""
        from dask.distributed import Client

        info = self.root / "scheduler.json"
        self._spawn(
            "scheduler",
            ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
        )
        deadline = time.monotonic() + self.start_timeout
        while not info.exists():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise SystemExit(f"dask scheduler did not start; see {self.root / 'scheduler' / 'log.txt'}")
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written whole, but give the writer its close
        self.address = json.loads(info.read_text(encoding="utf-8"))["address"]
        for w in range(self.workers):
            # --death-timeout: a worker whose scheduler is gone ends itself (no orphan if this script dies)
            self._spawn(
                f"worker-{w}",
                ["worker", self.address, "--nthreads", "1", "--no-dashboard", "--name", f"w{w}",
                 "--death-timeout", "60"],  # fmt: skip
            )
        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(self.workers, timeout=self.start_timeout)
        self.pids = self.tree_pids()

    def tree_pids(self) -> set[int]:
        """Every process of the cluster now (scheduler, nannies, workers, their helpers)."""
        return {p for proc in self.procs for p in bench_push._tree(proc.pid)}

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM every process group (a clean Dask shutdown), SIGKILL what is left after ``grace``."""
        self.pids |= self.tree_pids()
        for proc in reversed(self.procs):  # workers first, the scheduler last
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            proc.log.close()  # type: ignore[attr-defined]
        # a nanny's worker child is in the nanny's group: wait for it too
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def leftovers(self) -> list[int]:
        """Processes of this cluster still running (zombies count as gone)."""
        alive = []
        for pid in sorted(self.pids):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        return alive


def build_linear(n_users: int, n_items: int, days: int) -> Path:
    """Generate and train a case once with ``[ranking] ranker = "linear"`` (``OUT/cases/``)."""
    case = OUT / "cases" / f"{n_users}x{n_items}-linear"
    if (case / "models" / "latest").exists():
        return case
    from recsys.synthetic import generate_city, write_city

    write_city(generate_city(n_users, n_items, days=days, seed=0), case / "data")
    config = case / "linear.toml"
    config.write_text('[ranking]\nranker = "linear"\n', encoding="utf-8")
    train = [sys.executable, "-m", "pipelines.train", "--data", str(case / "data"), "--out", str(case / "models")]
    bench_push.measured([*train, "--config", str(config)])
    return case


def push_cmd(
    bundle: Path, day: str, out: Path, *, scheduler: str | None, workers: int, config: Path | None,
    region: str | None = None,
) -> list[str]:
    """The push as a scheduler (cron) runs it."""
    cmd = [sys.executable, "-m", "pipelines.push", "--model", str(bundle), "--date", day, "--out", str(out), "--quiet"]
    cmd += ["--scheduler", scheduler] if scheduler else ["--workers", str(workers)]
    cmd += ["--region", region, "--kind", "bench"] if region else []
    return cmd + (["--config", str(config)] if config else [])


def timed_push(cmd: list[str], out: Path, day: str, cluster: Cluster | None, kind: str = "nightly") -> dict:
    """One push end to end: wall time, users/s, peak memory of the driver and of the cluster."""
    shutil.rmtree(out, ignore_errors=True)
    peak = {"anon": 0, "file": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            if cluster is not None:
                anon, file = bench_push._rss(sorted(cluster.tree_pids()))
                peak["anon"], peak["file"] = max(peak["anon"], anon), max(peak["file"], file)
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = bench_push.measured(cmd)  # the driver's own tree (and local workers, without Dask)
    finally:
        stop.set()
        sampler.join()
    manifest = json.loads((out / f"date={day}" / f"kind={kind}" / "_manifest.json").read_text(encoding="utf-8"))
    computed = manifest["users"]["computed"]
    row = {
        **result,
        "users": computed,
        "rows": manifest["rows"],
        "chunks": manifest["chunks"]["computed"],
        "users_per_s": round(computed / result["seconds"]),
        "chunks_s": manifest["timings_s"]["chunks"],
        "users_per_s_chunks": round(computed / manifest["timings_s"]["chunks"]),
    }
    if cluster is not None:
        row["cluster_peak_anon_mib"] = round(peak["anon"] / 1024, 1)
        row["cluster_peak_file_mib"] = round(peak["file"] / 1024, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, comma-separated")
    parser.add_argument("--runs", type=int, default=2, help="pushes per cluster (the first opens the bundle)")
    parser.add_argument("--chunk-size", type=int, help="[push] chunk_size for every run (default: the bundle's)")
    parser.add_argument("--local", action="store_true", help="also time local worker processes (no Dask)")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--bundle", type=Path, help="push this trained bundle instead of bench_push.py's case")
    parser.add_argument("--region", help="push only this region's users (a segment run of the same command)")
    parser.add_argument(
        "--linear",
        action="store_true",
        help="generate and train an own case with the linear blend (bench_push.py's case trains the learned "
        "ranker, minutes longer)",
    )
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]

    if args.bundle:
        bundle = args.bundle.resolve()
        case = bundle.parent.parent  # bench_push.floor reads CASE/models/latest
        if (case / "models" / "latest").resolve() != bundle:
            parser.error(f"--bundle must be MODELS/latest's bundle with MODELS in a case folder, got {bundle}")
        name = f"{case.parent.name}-{case.name}"
    elif args.linear:
        case = build_linear(args.users, args.items, args.days)
        bundle = (case / "models" / "latest").resolve()
        name = case.name
    else:
        case = bench_push.build(args.users, args.items, args.days)
        bundle = (case / "models" / "latest").resolve()
        name = case.name
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    last = pd.Timestamp(manifest["data_window"]["end"]).tz_convert(load_taxonomy().tz) - pd.Timedelta(microseconds=1)
    day = (last.date() + pd.Timedelta(days=1)).isoformat()
    work = OUT / (name + (f"-{args.region}" if args.region else ""))
    kind = "bench" if args.region else "nightly"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = None
    if args.chunk_size:
        config = work / "push.toml"
        config.write_text(f"[push]\nchunk_size = {args.chunk_size}\n", encoding="utf-8")

    result: dict = {"bundle": str(bundle), "date": day, "region": args.region, "cluster": {}}
    if args.chunk_size:
        result["chunk_size"] = args.chunk_size
    if not args.no_floor and not args.region:  # the floor covers every user of the bundle, not a region's
        result.update(bench_push.floor(case))
    for n in counts:
        root = Path(tempfile.mkdtemp(prefix=f"cluster{n}-", dir=work))
        with Cluster(n, root) as cluster:
            started = {"address": cluster.address, "processes": len(cluster.pids)}
            runs = [
                timed_push(push_cmd(bundle, day, work / "pushes", scheduler=cluster.address, workers=n, config=config,
                                    region=args.region), work / "pushes", day, cluster, kind)  # fmt: skip
                for _ in range(args.runs)
            ]
        left = cluster.leftovers()
        if left:
            raise SystemExit(f"cluster processes left running after shutdown: {left}")
        result["cluster"][n] = {**started, "runs": runs, "orphans": len(left)}
        if args.local:
            local = timed_push(
                push_cmd(bundle, day, work / "pushes", scheduler=None, workers=n, config=config, region=args.region),
                work / "pushes", day, None, kind,
            )  # fmt: skip
            result.setdefault("local", {})[n] = local
    if 1 in result["cluster"] and 2 in result["cluster"]:
        one, two = result["cluster"][1]["runs"], result["cluster"][2]["runs"]
        result["speedup_first_run"] = round(one[0]["seconds"] / two[0]["seconds"], 2)
        result["speedup_last_run"] = round(one[-1]["seconds"] / two[-1]["seconds"], 2)
        result["speedup_chunks_last_run"] = round(one[-1]["chunks_s"] / two[-1]["chunks_s"], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
