"""Two versions of the engine, and ``implicit``, timed over the same single calls, interleaved.

A shared machine's load drifts by 2x within minutes, so two runs of
``bench_recommend.py`` one after the other can read a code change backwards.
This script starts one process per (code version, ranker) and one for
``implicit``'s own ``recommend`` on the same factors, loads the bundle in each,
and then hands them the same filtered calls (channel ``e_reader``, two random
topics, three excluded items: the calls of ``bench_recommend.py``) ``--chunk`` at
a time, in turn, with ``recommend_many`` over ``--many-chunk`` users after each
chunk: every process sees the same load, and the ratios hold.

A code version is a folder holding a ``recsys`` package, e.g. one commit's::

    mkdir -p /tmp/before && git archive dd49b29 recsys | tar -x -C /tmp/before
    python benchmarks/bench_recommend_ab.py benchmarks/out/ranking/models/latest \\
        --code before=/tmp/before --code after=. --calls 2000

Prints one JSON object and a Markdown table (wall-clock p50 / p99 per call, the
calling thread's processor time, ``recommend_many`` users/s).

``--check N`` first compares what the code versions return, per ranker: the first ``N``
filtered calls and ``recommend_many`` of the first ``N`` users (items, scores, reasons) must be
identical, or the script stops before timing anything (a speed-up that changes lists is not one).
With ``--reasons-may-differ`` (a change of how reasons are computed) the items and scores must
still be identical, and the share of listed items whose reasons are identical is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
KINDS = ("learned", "linear")


def worker(bundle: str, kind: str, n: int, seed: int, base_feature: str | None = None) -> None:
    """Serve commands from stdin: ``c N`` times the next N calls, ``m N`` recommend_many of the next N users."""
    # imported here, in the worker: its PYTHONPATH picks the code version (the driver needs no engine)
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, str(HERE))
    from bench_recommend import F, K, _with_rescore

    from recsys.config import RankerConfig
    from recsys.ranking import Recommender

    base = Recommender.load(bundle)
    model = _with_rescore(base.state.model, RankerConfig().rescore)
    if base_feature and model.ranker is not None:
        # a ranker without a base feature ties every candidate in the first pass's second half, so
        # all of them are rescored; a trained ranker always has one and rescores ``rescore`` rows
        model.ranker.base_feature = base_feature
    state = base.state
    rng = np.random.default_rng(seed + 1)  # bench_recommend.py's draw
    ids = state.user_ids[rng.choice(model.n_users, size=n, replace=False)].tolist()
    topics, item_ids = list(model.taxonomy.topics), state.catalog.item_ids
    calls = [(u, list(rng.choice(topics, 2, replace=False)), list(rng.choice(item_ids, 3, replace=False))) for u in ids]
    many = state.user_ids[np.random.default_rng(seed + 2).choice(model.n_users, size=min(20_000, model.n_users), replace=False)]
    threadpool_limits(1, "blas")  # one request is one query, for both sides
    if kind == "implicit":
        import scipy.sparse as sp
        from implicit.cpu.als import AlternatingLeastSquares

        peer = AlternatingLeastSquares(factors=F, num_threads=1, random_state=0)
        peer.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        peer.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        user_items = sp.csr_matrix((model.seen > 0).astype(np.float32))

        def one(call: tuple) -> None:
            row = state.user_pos[call[0]]
            peer.recommend(row, user_items[row], N=K)

        def batch(users: list) -> None:
            return None

        def dump(count: int) -> list:
            return []
    else:
        rec = Recommender.from_model(model, config=dataclasses.replace(model.config.ranking, ranker=kind))

        def one(call: tuple) -> None:
            rec.recommend(call[0], k=K, channel="e_reader", topics=call[1], exclude=call[2])

        def batch(users: list) -> None:
            rec.recommend_many(users, k=K)

        def dump(count: int) -> list:
            """What the first ``count`` calls and ``recommend_many`` users get: items, exact scores, reasons."""
            single = [
                [(r.item_id, repr(r.score), r.reasons) for r in rec.recommend(u, k=K, channel="e_reader", topics=t, exclude=e)]
                for u, t, e in calls[:count]
            ]
            frame = rec.recommend_many(many[:count].tolist(), k=K)
            return [single, frame["user_id"].tolist(), frame["item_id"].tolist(), [repr(float(v)) for v in frame["score"]],
                    [list(r) for r in frame["reasons"]]]

    for call in calls[:30]:  # warm-up
        one(call)
    batch(many[:200].tolist())
    print("ready", flush=True)
    done_calls = done_users = 0
    for line in sys.stdin:
        cmd, count = line.split()
        count = int(count)
        if cmd == "stop":
            break
        if cmd == "d":
            print(json.dumps(dump(count)), flush=True)
            continue
        if cmd == "c":
            wall, cpu = [], []
            for call in calls[done_calls : done_calls + count]:
                t, tc = time.perf_counter(), time.thread_time()
                one(call)
                cpu.append(time.thread_time() - tc)
                wall.append(time.perf_counter() - t)
            done_calls += count
            print(json.dumps([wall, cpu]), flush=True)
        else:
            t = time.perf_counter()
            batch(many[done_users : done_users + count].tolist())
            done_users += count
            print(json.dumps(time.perf_counter() - t), flush=True)


def _without_reasons(dump: list) -> list:
    """A worker's ``d`` answer with the reasons left out: the single calls' (item, score), the batch's columns."""
    single, users, items, scores, _ = dump
    return [[[entry[:2] for entry in call] for call in single], users, items, scores]


def _reasons(dump: list) -> list:
    """Every listed item's reasons, single calls first, then the batch's rows."""
    return [entry[2] for call in dump[0] for entry in call] + list(dump[4])


def run(
    bundle: str, codes: dict[str, str], n: int, chunk: int, many_chunk: int, seed: int, check: int = 0,
    base_feature: str | None = None, reasons_may_differ: bool = False,
) -> dict:
    """Start the processes, check that the code versions agree (``check`` calls and users), interleave
    the timed calls, and summarise each."""
    sides = {f"{name}_{kind}": (path, kind) for name, path in codes.items() for kind in KINDS}
    sides["implicit"] = (next(iter(codes.values())), "implicit")
    procs = {}
    for name, (path, kind) in sides.items():
        env = dict(os.environ, PYTHONPATH=str(Path(path).resolve()))
        cmd = [sys.executable, __file__, bundle, "--worker", kind, "--calls", str(n), "--seed", str(seed)]
        if base_feature:
            cmd += ["--base-feature", base_feature]
        procs[name] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        if procs[name].stdout.readline().strip() != "ready":  # loaded one after the other
            raise SystemExit(f"{name}: worker did not start")
    if check and len(codes) > 1:
        for kind in KINDS:
            got = {}
            for name in codes:
                proc = procs[f"{name}_{kind}"]
                proc.stdin.write(f"d {check}\n")
                proc.stdin.flush()
                got[name] = json.loads(proc.stdout.readline())
            first, *others = got
            same = _without_reasons if reasons_may_differ else (lambda d: d)
            for other in others:
                if same(got[other]) != same(got[first]):
                    for proc in procs.values():
                        proc.kill()
                    raise SystemExit(f"{kind}: {other} returns other lists, scores or reasons than {first} ({check} calls and users)")
            what = "lists and scores" if reasons_may_differ else "lists, scores and reasons"
            print(f"check: {kind} {what} identical across {', '.join(codes)} ({check} calls + {check} recommend_many users)", flush=True)
            if reasons_may_differ:
                ref = _reasons(got[first])
                for other in others:
                    equal = sum(a == b for a, b in zip(ref, _reasons(got[other])))
                    print(f"check: {kind} {other} vs {first}: reasons identical for {equal:,} of {len(ref):,} listed items "
                          f"({equal / max(len(ref), 1):.1%})", flush=True)
    wall: dict[str, list] = {k: [] for k in procs}
    cpu: dict[str, list] = {k: [] for k in procs}
    many_s = dict.fromkeys(procs, 0.0)
    rounds = n // chunk
    for _ in range(rounds):
        for name, proc in procs.items():
            proc.stdin.write(f"c {chunk}\n")
            proc.stdin.flush()
            w, c = json.loads(proc.stdout.readline())
            wall[name] += w
            cpu[name] += c
            if name != "implicit":
                proc.stdin.write(f"m {many_chunk}\n")
                proc.stdin.flush()
                many_s[name] += json.loads(proc.stdout.readline())
    for proc in procs.values():
        proc.stdin.write("stop 0\n")
        proc.stdin.flush()
        proc.wait()
    out: dict = {}
    for name in procs:
        w, c = np.asarray(wall[name]) * 1e3, np.asarray(cpu[name]) * 1e3
        out[name] = {
            "calls": int(w.size),
            "p50_ms": float(np.percentile(w, 50)),
            "p99_ms": float(np.percentile(w, 99)),
            "cpu_p50_ms": float(np.percentile(c, 50)),
            "cpu_p99_ms": float(np.percentile(c, 99)),
        }
        if name != "implicit":
            out[name]["recommend_many_users_per_s"] = rounds * many_chunk / many_s[name]
    return out


def markdown(out: dict) -> str:
    """The per-process table and, per code version, the ratios the targets read."""
    lines = [
        "| process | `recommend` with filters p50 ms | p99 ms | processor p50 / p99 ms | `recommend_many` users/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in out.items():
        many = f"{r['recommend_many_users_per_s']:,.0f}" if "recommend_many_users_per_s" in r else "-"
        lines.append(f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_p50_ms']:.2f} / {r['cpu_p99_ms']:.2f} | {many} |")
    peer = out["implicit"]["p99_ms"]
    for code in sorted({n.rsplit("_", 1)[0] for n in out if n != "implicit"}):
        learned, linear = out[f"{code}_learned"], out[f"{code}_linear"]
        lines.append(
            f"\n{code}: learned p99 / implicit p99 {learned['p99_ms'] / peer:.2f}x; learned / linear p99 "
            f"{learned['p99_ms'] / linear['p99_ms']:.2f}x, `recommend_many` "
            f"{linear['recommend_many_users_per_s'] / learned['recommend_many_users_per_s']:.2f}x the time"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments; run as the driver, or as one worker (``--worker``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="a bundle folder (e.g. benchmarks/out/ranking/models/latest)")
    parser.add_argument("--code", action="append", default=[], metavar="NAME=DIR", help="a code version: DIR holds its recsys package")
    parser.add_argument("--calls", type=int, default=2000, help="filtered calls per process")
    parser.add_argument("--chunk", type=int, default=50, help="calls per process per turn")
    parser.add_argument("--many-chunk", type=int, default=150, help="recommend_many users per process per turn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--base-feature", metavar="NAME",
        help="give the bundle's ranker this base feature (a random benchmark ranker has none, so it rescores every candidate)",
    )
    parser.add_argument("--check", type=int, default=0, metavar="N", help="first assert the code versions return the same N calls and users")
    parser.add_argument(
        "--reasons-may-differ", action="store_true",
        help="with --check: items and scores must be identical, reasons may differ (their share of identical ones is printed)",
    )
    parser.add_argument("--worker", choices=(*KINDS, "implicit"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.bundle, args.worker, args.calls, args.seed, args.base_feature)
        return 0
    codes = dict(c.split("=", 1) for c in args.code) or {"current": str(HERE.parent)}
    if args.check and len(codes) < 2:
        parser.error("--check compares code versions: give two or more --code NAME=PATH")
    out = run(args.bundle, codes, args.calls, args.chunk, args.many_chunk, args.seed, args.check, args.base_feature, args.reasons_may_differ)
    print(json.dumps(out, indent=2))
    print(markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
