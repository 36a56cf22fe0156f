"""What a ``recommend_many`` call costs by its size, and whether one call or two callers use two threads.

Loads a bundle once and, in one process with one BLAS thread, alternates round
by round (so that a shared machine's drifting load falls on every variant):

* ``sizes``: calls of each ``--sizes`` users, one thread; prints ms a call and
  the fit ``fixed ms + µs a user`` over the sizes from 10 to 150 (a call's
  fixed part: its blocks' searches, frame and glue, whatever its size);
* ``threads``: ``--size``-user calls on one thread, the same calls split in
  halves on two threads (``[ranking] threads = 2``, ``batch_size`` half the
  call), and two caller threads each sending its own calls, the frames of
  the first two compared equal first.

Usage::

    python benchmarks/bench_many_calls.py benchmarks/out/ranking/models/latest --rounds 6

Prints one JSON object and two Markdown tables (wall users/s, the rounds'
ratios to one thread, process CPU µs a user).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, time both parts, print the JSON and the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="a bundle folder")
    parser.add_argument("--kinds", default="linear,learned", help="rankers, comma-separated")
    parser.add_argument("--sizes", default="1,10,50,150,512", help="users a call for the size sweep")
    parser.add_argument("--size", type=int, default=150, help="users a call for the threads part")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--round-users", type=int, default=1500, help="users each variant ranks a round")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, str(HERE))
    from bench_recommend import _with_rescore

    from recsys.config import RankerConfig
    from recsys.ranking import Recommender

    threadpool_limits(1, "blas")
    base = Recommender.load(args.bundle)
    model = _with_rescore(base.state.model, RankerConfig().rescore)
    state = base.state
    pool = state.user_ids[np.random.default_rng(2).choice(model.n_users, size=min(20_000, model.n_users), replace=False)].tolist()
    kinds = args.kinds.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    half = -(-args.size // 2)

    def rec(kind: str, **change: int) -> Recommender:
        return Recommender.from_model(model, config=dataclasses.replace(model.config.ranking, ranker=kind, **change))

    one = {k: rec(k, threads=1) for k in kinds}
    halves = {k: rec(k, threads=2, batch_size=half) for k in kinds}
    warm = min(300, len(pool) // 2)  # users ranked once before timing (kernels, caches)
    at = [warm]

    def take(n: int) -> list[str]:
        n = min(n, len(pool) - warm)
        if at[0] + n > len(pool):
            at[0] = warm
        at[0] += n
        return pool[at[0] - n : at[0]]

    for k in kinds:  # warm every kernel, then check that the halves give the one thread's frame
        one[k].recommend_many(pool[:warm], k=10)
        halves[k].recommend_many(pool[:warm], k=10)
        pd.testing.assert_frame_equal(one[k].recommend_many(pool[:args.size], k=10), halves[k].recommend_many(pool[:args.size], k=10))

    def calls(r: Recommender, users: list[str], size: int) -> None:
        for lo in range(0, len(users), size):
            r.recommend_many(users[lo : lo + size], k=10)

    def two_callers(r: Recommender, users: list[str], size: int) -> None:
        workers = [threading.Thread(target=calls, args=(r, users[i::2], size)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    out: dict = {"sizes": {}, "threads": {}}
    ms: dict = {}
    wall: dict = {}
    cpu: dict = {}
    variants = {"one thread": lambda k, u: calls(one[k], u, args.size), "halves on two threads": lambda k, u: calls(halves[k], u, args.size),
                "two callers": lambda k, u: two_callers(one[k], u, args.size)}
    for rnd in range(args.rounds):
        for k in kinds:
            for size in sizes if rnd % 2 == 0 else sizes[::-1]:
                n = max(3, args.round_users // size) if size > 1 else 100
                t = time.thread_time()
                for _ in range(n):
                    one[k].recommend_many(take(size), k=10)
                ms.setdefault((k, size), []).append((time.thread_time() - t) / n * 1e3)
            names = list(variants) if rnd % 2 == 0 else list(variants)[::-1]
            users = take(args.round_users)
            for name in names:
                c0, w0 = os.times(), time.perf_counter()
                variants[name](k, users)
                w, c1 = time.perf_counter() - w0, os.times()
                wall.setdefault((k, name), []).append(len(users) / w)
                cpu.setdefault((k, name), []).append((c1.user - c0.user + c1.system - c0.system) / len(users) * 1e6)
    lines = ["| ranker | " + " | ".join(f"{s} users" for s in sizes) + " | fit over 10-150 users |", "|---|" + "---:|" * (len(sizes) + 1)]
    for k in kinds:
        med = {s: float(np.median(ms[(k, s)])) for s in sizes}
        fit = [s for s in sizes if 10 <= s <= 150]
        slope, fixed = np.polyfit(fit, [med[s] for s in fit], 1) if len(fit) > 1 else (float("nan"), float("nan"))
        out["sizes"][k] = {"ms_a_call": med, "fixed_ms": fixed, "us_a_user": slope * 1e3}
        lines.append(f"| {k} | " + " | ".join(f"{med[s]:.2f} ms" for s in sizes) + f" | {fixed:.2f} ms + {slope * 1e3:.0f} µs a user |")
    lines += ["", f"| ranker, {args.size} users a call | variant | users/s (wall, median) | / one thread, per round | CPU µs a user |", "|---|---|---:|---|---:|"]
    for k in kinds:
        for name in variants:
            ratio = [a / b for a, b in zip(wall[(k, name)], wall[(k, "one thread")])]
            out["threads"][f"{k} {name}"] = {"users_per_s": wall[(k, name)], "cpu_us_a_user": cpu[(k, name)]}
            lines.append(f"| {k} | {name} | {np.median(wall[(k, name)]):,.0f} | {min(ratio):.2f}-{max(ratio):.2f} (median {np.median(ratio):.2f}) | "
                         f"{np.median(cpu[(k, name)]):.0f} |")
    print(json.dumps(out, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
