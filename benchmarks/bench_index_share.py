"""Benchmark ``[index] pruned_max_share = "auto"`` on trained bundles: the share it picks, its recall, its speed.

For each bundle given (a ``models/latest`` folder or a version folder), in one process:

1. the training's recall sample, rebuilt as ``recsys train`` draws it (``[index] recall_sample``
   user vectors, seeded by ``[index] seed``), and the item factors;
2. ``VectorIndex.build(..., pruned_max_share="auto", queries=sample)``: the shares tried, each
   one's recall@50 against exact search, and the share kept (the first to reach ``min_recall``);
   build seconds (norm sort + calibration);
3. recall@50 of the kept share on a second, disjoint seeded sample of users (``--check``): the
   choice is not judged on the users it was picked on;
4. the top-``k`` search (``k`` = 56, the push's collaborative fetch) over ``--time-users`` users, one
   thread, at the kept share and exact (``pruned_max_share = 1``), best of ``--repeat``: µs per user.

Usage::

    python benchmarks/bench_index_share.py benchmarks/out/train/models_100000_linear/latest \\
        benchmarks/out/train/models_1000000_linear/latest benchmarks/out/night/3100000x50000/models/latest

Prints one JSON line per bundle; figures go in benchmarks/README.md ("Push").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from recsys.bundle import load_array, read_manifest
from recsys.config import config_from_dict
from recsys.seeds import check_random_state
from recsys.training.index import VectorIndex


def _samples(n_users: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training's recall sample (``job._recall_queries``' draw) and a disjoint one of the same size."""
    rng = check_random_state(seed)
    take = min(size, n_users)
    train = np.sort(rng.choice(n_users, size=take, replace=False))
    rest = np.setdiff1d(np.arange(n_users), train)
    check = np.sort(check_random_state(seed + 1).choice(rest, size=min(take, rest.size), replace=False))
    return train, check


def _search_us(index: VectorIndex, queries: np.ndarray, k: int, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for lo in range(0, len(queries), 1024):  # the push's blocks are of this order
            index.search(queries[lo : lo + 1024], k)
        best = min(best, time.perf_counter() - start)
    return best / len(queries) * 1e6


def measure(bundle: Path, *, k: int, time_users: int, repeat: int) -> dict:
    """The figures above for one bundle."""
    manifest = read_manifest(bundle)
    stored = config_from_dict({"index": manifest["config"]["index"]}).index
    # the bundle's own index settings (head, k, seed), the share left to the calibration
    config = dataclasses.replace(stored, pruned_max_share="auto", recall_sample=max(stored.recall_sample, 2000), threads=1)
    users = load_array(bundle, "user_factors")
    items = np.ascontiguousarray(load_array(bundle, "item_factors"), dtype=np.float32)
    train_rows, check_rows = _samples(len(users), config.recall_sample, config.seed)
    sample = np.ascontiguousarray(users[train_rows], dtype=np.float32)
    start = time.perf_counter()
    index = VectorIndex.build(items, config=config, queries=sample)
    build_s = time.perf_counter() - start
    share = index.config_.pruned_max_share
    check = np.ascontiguousarray(users[check_rows], dtype=np.float32)
    check_recall = index.recall_at_k(check, config.recall_k)
    exact = VectorIndex.build(items, config=dataclasses.replace(config, pruned_max_share=1.0, recall_sample=0))
    timed = np.ascontiguousarray(
        users[np.sort(check_random_state(config.seed + 2).choice(len(users), min(time_users, len(users)), replace=False))],
        dtype=np.float32,
    )
    capped_us = _search_us(index, timed, k, repeat)
    exact_us = _search_us(exact, timed, k, repeat)
    return {
        "bundle": str(bundle),
        "users": int(len(users)),
        "items": int(len(items)),
        "recall_sample": int(len(sample)),
        "min_recall": config.min_recall,
        "share_recalls": index.share_recalls_,
        "share": share,
        "recall_at_k": round(float(index.recall_), 4),
        "check_recall_at_k": round(float(check_recall), 4),
        "scan_share": round(float(index.scan_share_), 4) if index.scan_share_ is not None else None,
        "build_s": round(build_s, 2),
        "search_k": k,
        "search_us_per_user": round(capped_us, 1),
        "exact_search_us_per_user": round(exact_us, 1),
        "speedup": round(exact_us / capped_us, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="bundle folders (models/latest or a version)")
    parser.add_argument("--k", type=int, default=56, help="results per search timed (the push's collaborative fetch)")
    parser.add_argument("--time-users", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    # one BLAS thread: per-user cost as one push worker pays it (the push runs a process per core)
    threadpool_limits(1)
    for bundle in args.bundles:
        print(json.dumps(measure(bundle.resolve(), k=args.k, time_users=args.time_users, repeat=args.repeat)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
