"""Benchmark the nightly push end to end: users/s, peak memory, and the bare floor.

Cases (``--users``): a synthetic city is generated and trained once per size
(kept under ``benchmarks/out/push/<users>x<items>/``; 30 days of log), then:

1. the floor: faiss exact batched top-k over the bundle's own user and item
   vectors (``IndexFlatIP``, 2 threads, k = 10), no eligibility, caps or
   writing -- the least any push must do (``--no-floor`` skips it);
2. the push: ``python -m pipelines.push`` in a fresh process (load bundle ->
   lists for every user -> Parquet + manifest), timed end to end, its process
   tree's resident memory sampled every 0.2 s from ``/proc``: anonymous
   memory (what the run allocates) and file-backed memory (the memory-mapped
   bundle and the libraries) are reported apart;
3. with ``--night``, instead of 2.: the whole night -- a warm-started training on the same
   data (``recsys train --warm-start``) followed by the push, end to end;
4. a worker's start: ``Recommender.load`` of the bundle in a fresh process (what each push
   worker does first), its seconds and the anonymous memory it adds (``worker_load``); the
   push's peak anonymous memory per user (``anon_bytes_per_user``): memory that grows with the
   users, beyond the memory-mapped bundle.

``--case DIR`` measures a case folder made elsewhere (a ``models/latest`` bundle, e.g.
``benchmarks/out/cluster/cases/100000x50000-linear``, bench_cluster's linear-blend city) instead
of generating one; its pushes are written to ``DIR/pushes``.

``--index-share S`` (``auto`` or a number) measures the case's bundle with its item index's
``[index] pruned_max_share`` chosen anew as ``recsys train`` now chooses it (for ``auto``: the
smallest capped share whose recall@50 on the training's seeded user sample reaches ``min_recall``):
a copy of the bundle (hard links; only ``item_index/index.json`` and the manifest rewritten),
``<case>-share-<S>``. The floor is the same exact top-k over the same vectors.

``--tile F`` measures a city F times larger without generating and training it: the
``--users`` case's bundle with every user repeated F times (ids suffixed; items, factors and
histories copied), saved as a bundle of its own (``<users*F>x<items>-tiled``). A load's and a
push's cost per user depend on the arrays' shapes, not their values, so the tiled city
measures how they scale with the users; its lists are not a quality figure.

Usage::

    python benchmarks/bench_push.py --users 100000
    python benchmarks/bench_push.py --users 1000000
    python benchmarks/bench_push.py --users 3100000 --no-floor --night   # the whole city's night
    python benchmarks/bench_push.py --users 100000 --tile 10 --index-share auto

Prints a JSON line per case; figures go in benchmarks/README.md ("Push").
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.taxonomy import load_taxonomy

OUT = Path(__file__).resolve().parent / "out" / "push"
ROOT = Path(__file__).resolve().parent.parent


def _tree(pid: int) -> list[int]:
    """The process and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _rss(pids: list[int]) -> tuple[int, int]:
    """Summed RssAnon and RssFile (KiB) of ``pids``."""
    anon = file = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    anon += int(line.split()[1])
                elif line.startswith("RssFile:"):
                    file += int(line.split()[1])
        except OSError:
            continue
    return anon, file


def measured(cmd: list[str]) -> dict:
    """Run ``cmd``; return wall seconds and the peak anonymous / file-backed RSS of its tree (MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"anon": 0, "file": 0, "total": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            anon, file = _rss(_tree(proc.pid))
            peak["anon"] = max(peak["anon"], anon)
            peak["file"] = max(peak["file"], file)
            peak["total"] = max(peak["total"], anon + file)
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "peak_anon_mib": round(peak["anon"] / 1024, 1),
        "peak_file_mib": round(peak["file"] / 1024, 1),
        "peak_rss_mib": round(peak["total"] / 1024, 1),
    }


def build(n_users: int, n_items: int, days: int) -> Path:
    """Generate and train the case once; return its folder."""
    case = OUT / f"{n_users}x{n_items}"
    if (case / "models" / "latest").exists():
        return case
    from recsys.synthetic import generate_city, write_city

    t0 = time.perf_counter()
    write_city(generate_city(n_users, n_items, days=days, seed=0), case / "data")
    gen = time.perf_counter() - t0
    train = measured(
        [sys.executable, "-m", "pipelines.train", "--data", str(case / "data"), "--out", str(case / "models")]
    )
    (case / "setup.json").write_text(json.dumps({"generate_s": round(gen, 1), "train": train}), encoding="utf-8")
    return case


def tile(case: Path, factor: int) -> Path:
    """The case's bundle with every user repeated ``factor`` times, saved once as a case of its own."""
    import dataclasses

    import scipy.sparse as sp

    from recsys.training.model import TrainedModel

    model = TrainedModel.load(case / "models" / "latest")
    n = model.n_users
    big = case.parent / f"{n * factor}x{model.n_items}-tiled"
    if (big / "models" / "latest").exists():
        return big

    def grown(value):
        # every per-user array (first axis = users) repeated; item-side arrays kept
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == n:
            return np.concatenate([np.asarray(value)] * factor)
        return value

    users = pd.concat(
        [model.users.assign(user_id=model.users["user_id"].astype(str) + (f"-{r}" if r else "")) for r in range(factor)],
        ignore_index=True,
    )
    changes = {"users": users, "seen": sp.vstack([model.seen] * factor, format="csr"), "user_lookup": None}
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        if f.name in changes or f.name.startswith("_"):
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            inner = {g.name: grown(getattr(value, g.name)) for g in dataclasses.fields(value)}
            changes[f.name] = dataclasses.replace(value, **inner)
        else:
            changes[f.name] = grown(value)
    dataclasses.replace(model, **changes).save(big / "models")
    return big


def reshare(case: Path, share: str) -> tuple[Path, dict]:
    """The case's bundle with its index's ``pruned_max_share`` chosen anew, as a case of its own.

    Every file is hard-linked from the case's bundle but ``item_index/index.json`` and
    ``manifest.json``, written new (their links replaced, the originals untouched).
    Returns the new case and the index's manifest entry.
    """
    import dataclasses
    import os

    from recsys.bundle import load_array
    from recsys.config import config_from_dict
    from recsys.io import atomic_dir, sha256_file
    from recsys.training.index import FORMAT_VERSION, VectorIndex
    from recsys.training.job import _recall_queries

    src = (case / "models" / "latest").resolve()
    out = case.parent / f"{case.name}-share-{share}"
    if (out / "models" / "latest").exists():
        manifest = json.loads(((out / "models" / "latest").resolve() / "manifest.json").read_text(encoding="utf-8"))
        return out, manifest["index"]
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    config = config_from_dict({"index": manifest["config"]["index"] | {"pruned_max_share": share}}).index
    config = dataclasses.replace(config, recall_sample=max(config.recall_sample, 2000))
    users = load_array(src, "user_factors")
    queries = _recall_queries(users, config.recall_sample, config.seed)
    index = VectorIndex.build(load_array(src, "item_factors"), config=config, seed=config.seed, queries=queries)
    # the same rows in the same order as the stored index: only its settings change
    if not np.array_equal(np.asarray(index.vectors_), load_array(src / "item_index", "vectors")):
        raise SystemExit(f"{src}: the item index's vectors are not its item factors in norm order")
    entry = {
        "kind": index.kind,
        "recall_at_k": float(index.recall_),
        "k": config.recall_k,
        "max_share": index.config_.pruned_max_share,
        "share_recalls": index.share_recalls_,
    }
    (out / "models").mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / "models" / src.name) as tmp:
        for path in src.rglob("*"):
            rel = path.relative_to(src)
            if path.is_dir():
                (tmp / rel).mkdir(parents=True, exist_ok=True)
            elif rel.as_posix() not in ("manifest.json", "item_index/index.json"):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(path, tmp / rel)
        (tmp / "item_index" / "index.json").write_text(
            json.dumps({"format_version": FORMAT_VERSION, **index.info()}, indent=2), encoding="utf-8"
        )
        manifest["config"]["index"] = dataclasses.asdict(index.config_)
        manifest["index"] = entry
        manifest["files"]["item_index/index.json"] = sha256_file(tmp / "item_index" / "index.json")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (out / "models" / "latest").symlink_to(src.name)
    return out, entry


def floor(case: Path, k: int = 10, threads: int = 2) -> dict:
    """faiss exact batched top-k over the bundle's user and item vectors."""
    import faiss

    bundle = (case / "models" / "latest").resolve()
    users = np.load(bundle / "user_factors.npy", mmap_mode="r")
    items = np.ascontiguousarray(np.load(bundle / "item_factors.npy"), dtype=np.float32)
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    start = time.perf_counter()
    for lo in range(0, len(users), 65536):
        index.search(np.ascontiguousarray(users[lo : lo + 65536], dtype=np.float32), k)
    seconds = time.perf_counter() - start
    return {"floor_seconds": round(seconds, 2), "floor_users_per_s": round(len(users) / seconds)}


def _anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def probe_load(bundle: str) -> dict:
    """In this (fresh) process: ``Recommender.load`` of ``bundle``, timed, and the anonymous memory it adds."""
    import importlib

    start = time.perf_counter()
    from recsys.ranking import Recommender
    from recsys.training.model import COMPONENTS

    # the libraries a load needs (sklearn for the content model, LightGBM for the ranker, ...):
    # a one-time cost of any Python process, reported apart from the load itself
    for component in COMPONENTS:
        importlib.import_module(component.kind.partition(":")[0])
    imports = time.perf_counter() - start
    before = _anon_kib()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        # as a push worker opens it: the run's driver checked the files' sha256 once
        recommender = Recommender.load(bundle, verify=False)
    except TypeError:  # an engine from before that change: each worker checked them itself
        recommender = Recommender.load(bundle)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    added = _anon_kib() - before
    n_users = recommender.state.model.n_users
    return {
        "imports_s": round(imports, 2),
        "seconds": round(seconds, 2),
        # CPU seconds of every thread: what the load costs on a machine shared with other work
        "cpu_s": round(cpu, 2),
        "anon_added_mib": round(added / 1024, 1),
        "anon_added_bytes_per_user": round(added * 1024 / max(n_users, 1), 1),
    }


def worker_load(case: Path) -> dict:
    """What a push worker does first, in a fresh process: :func:`probe_load`."""
    bundle = str((case / "models" / "latest").resolve())
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--probe-load", bundle],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def push(case: Path, day: str, workers: int) -> dict:
    """The nightly push in a fresh process; returns its timings, throughput and memory."""
    out = case / "pushes"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "pipelines.push",
        "--model",
        str(case / "models" / "latest"),
        "--date",
        day,
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--quiet",
    ]
    result = measured(cmd)
    manifest = json.loads((out / f"date={day}" / "kind=nightly" / "_manifest.json").read_text(encoding="utf-8"))
    bundle_mib = sum(p.stat().st_size for p in (case / "models" / "latest").resolve().rglob("*") if p.is_file()) / 2**20
    return {
        **result,
        "users": manifest["users"]["computed"],
        "rows": manifest["rows"],
        "users_per_s": round(manifest["users"]["computed"] / result["seconds"]),
        "anon_bytes_per_user": round(result["peak_anon_mib"] * 2**20 / max(manifest["users"]["computed"], 1)),
        "users_per_s_chunks": round(manifest["users"]["computed"] / manifest["timings_s"]["chunks"]),
        "timings_s": manifest["timings_s"],
        "bundle_mib": round(bundle_mib, 1),
    }


def night(case: Path, day: str, workers: int) -> dict:
    """Warm-started training on the case's data, then the push: the whole night."""
    models = case / "models"
    train = measured(
        [
            sys.executable,
            "-m",
            "pipelines.train",
            "--data",
            str(case / "data"),
            "--out",
            str(models),
            "--warm-start",
            str(models / "latest"),
        ]
    )
    lists = push(case, day, workers)
    return {"train_warm": train, "push": lists, "night_seconds": round(train["seconds"] + lists["seconds"], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-floor", action="store_true", help="skip the faiss floor (it takes minutes for the city)")
    parser.add_argument(
        "--night", action="store_true", help="time warm-started training + push instead of the push alone"
    )
    parser.add_argument("--no-load", action="store_true", help="skip the worker-load probe")
    parser.add_argument("--tile", type=int, default=1, help="repeat the case's users this many times (see above)")
    parser.add_argument(
        "--index-share", metavar="S", help='push with the index share chosen anew ("auto" or 0..1; see above)'
    )
    parser.add_argument("--load-only", action="store_true", help="only the worker-load probe (no floor, no push)")
    parser.add_argument("--probe-load", metavar="BUNDLE", help=argparse.SUPPRESS)  # the probe's own process
    parser.add_argument(
        "--case", metavar="DIR", help="measure an existing case folder (its models/latest) instead of --users' city"
    )
    args = parser.parse_args(argv)
    if args.probe_load:
        print(json.dumps(probe_load(args.probe_load)))
        return 0

    # --case: a bundle trained elsewhere (e.g. bench_cluster's linear-blend city); its pushes go to DIR/pushes
    case = Path(args.case) if args.case else build(args.users, args.items, args.days)
    if not (case / "models" / "latest").exists():
        parser.error(f"--case {case}: no models/latest bundle in it")
    if args.tile > 1:
        case = tile(case, args.tile)
    index_entry = None
    if args.index_share:
        case, index_entry = reshare(case, args.index_share)
    manifest = json.loads(((case / "models" / "latest").resolve() / "manifest.json").read_text(encoding="utf-8"))
    # tomorrow's lists: the local day after the last day of data
    last = pd.Timestamp(manifest["data_window"]["end"]).tz_convert(load_taxonomy().tz) - pd.Timedelta(microseconds=1)
    day = (last.date() + pd.Timedelta(days=1)).isoformat()
    result = {"users": args.users * args.tile, "items": args.items, "days": args.days, "date": day, "workers": args.workers}
    if args.tile > 1:
        result["tiled_from"] = args.users
    if args.case or index_entry:
        result["case"] = str(case)
    if index_entry:
        result["index"] = index_entry
    if not args.no_load:
        result["worker_load"] = worker_load(case)
    if args.load_only:
        print(json.dumps(result))
        return 0
    if not args.no_floor:
        result.update(floor(case))
    if args.night:
        result["night"] = night(case, day, args.workers)
        result["push"] = result["night"]["push"]
    else:
        result["push"] = push(case, day, args.workers)
    if "floor_users_per_s" in result:
        result["push_vs_floor"] = round(result["floor_users_per_s"] / result["push"]["users_per_s"], 2)
    setup = case / "setup.json"
    if setup.exists():
        result["setup"] = json.loads(setup.read_text(encoding="utf-8"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
