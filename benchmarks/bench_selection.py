"""The candidate merge, the co-engaged candidates and the diversity walk: a checkout's code
against this tree's, alternated in one process on the same inputs, outputs compared.

The inputs are captured from one ``recommend_many`` of this tree (``--n`` users of the bundle's
city, k = 5, channel ``app_push``, one thread, blocks as the push makes them): each block's
users and request (the merge: the segment-level sources gathered and everything merged, from
the users' own sources -- retrieval, topics, co-engaged -- computed once beforehand), its users
(the co-engaged candidates), and its candidates with their blended scores (the walk, at k = 5
and k = 10). The base checkout's
``candidates.py`` and ``diversity.py`` are loaded as separate modules beside this tree's; every
output is compared first (the co-engaged items as sets per user: the merge sorts them), and any
difference stops the run. Then each step runs old and new alternately (``--reps`` rounds, the
order swapped every round) and prints CPU µs per user: best, median, and the median of the
paired new/old ratios, which survives a changing load on a shared machine.

Usage::

    python benchmarks/bench_selection.py --model benchmarks/out/train/models_100000_linear/latest \\
        --users benchmarks/out/train/city_100000_50000_60/users.parquet --base /tmp/ab/base7
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from types import ModuleType

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from recsys.ranking import Recommender, candidates, compiled_selection, diversity
from recsys.training.model import TrainedModel

# a checkout's module loaded under its own name (registered, so its dataclasses resolve); this
# script's folder is on sys.path when it runs
from bench_push_stages import _load_module as _load  # noqa: E402


def _as_sets(items: np.ndarray) -> np.ndarray:
    """Each row's items sorted, padding last: the co-engaged candidates compared as sets."""
    return np.sort(np.where(items < 0, np.iinfo(np.int64).max, items), axis=1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="bundle folder")
    parser.add_argument("--users", required=True, help="the city's users.parquet (user_id column)")
    parser.add_argument("--base", required=True, help="a checkout whose recsys/ranking is the old side")
    parser.add_argument("--n", type=int, default=2048, help="users (seeded sample)")
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args(argv)
    threadpool_limits(1)
    old_candidates = _load("base_candidates", f"{args.base}/recsys/ranking/candidates.py")
    old_diversity = _load("base_diversity", f"{args.base}/recsys/ranking/diversity.py")

    model = TrainedModel.load(args.model)
    rec = Recommender.from_model(model, config=replace(model.config.ranking, threads=1))
    ids = pd.read_parquet(args.users, columns=["user_id"])["user_id"].astype(str)
    ids = ids.sample(min(args.n, len(ids)), random_state=0).tolist()
    gathered, coengaged, scored = [], [], []
    real_gather, real_coengaged, real_select = candidates.gather, candidates._coengaged, diversity.select_scored
    candidates.gather = lambda *a: gathered.append(a) or real_gather(*a)
    candidates._coengaged = lambda state, users: coengaged.append((state, users)) or real_coengaged(state, users)

    def select(cand: np.ndarray, score: np.ndarray, primary: np.ndarray, k: int, **kw: object) -> tuple:
        scored.append((cand, score, primary, kw["n_topics"]))
        return real_select(cand, score, primary, k, **kw)

    diversity.select_scored = select
    start = time.perf_counter()
    rec.recommend_many(ids[:8], k=5, channel="app_push")  # compiles the kernels or loads them from the cache
    first = time.perf_counter() - start
    gathered.clear(), coengaged.clear(), scored.clear()
    rec.recommend_many(ids, k=5, channel="app_push")
    candidates.gather, candidates._coengaged, diversity.select_scored = real_gather, real_coengaged, real_select
    # blocks only: an exact fallback's one-row call is not what the push times
    gathered = [g for g in gathered if len(g[1]) > 1]
    # each block's own sources, computed once: retrieval dominates and did not change
    merged = []
    for st, users, k, filt, share, now_ns in gathered:
        own = [
            candidates._ann(st, users, k, filt, share, now_ns),
            candidates._new_items(st, users, max(st.config.ann_candidates, st.config.ann_overfetch * k)),
            candidates._topics(st, users, filt),
            candidates._coengaged(st, users),
        ]
        merged.append((st, users, now_ns, own))

    def merge_old(st: object, users: object, now_ns: int, own: list) -> np.ndarray:
        shared = [
            old_candidates._fresh(st, len(users), now_ns),
            st.catalog.segment_top[users.segments],
            st.engagement.segment_best[users.segments],
            old_candidates._popular(st, users),
        ]
        return old_candidates.merge(np.concatenate(own + shared, axis=1))

    def merge_new(st: object, users: object, now_ns: int, own: list) -> np.ndarray:
        shared, which = candidates._shared(st, users, now_ns)
        return compiled_selection.merge_rows(np.concatenate(own, axis=1), shared, which)
    coengaged = [(s, u) for s, u in coengaged if len(u) > 1]
    scored = [s for s in scored if s[0].shape[0] > 1]
    state = rec.state
    graph, pairs = state.neighbour_graph(), state.catalog.neighbours
    share = state.config.max_topic_share
    walks = [(c, s, p, k, diversity.topic_cap(k, share), t) for c, s, p, t in scored for k in (5, 10)]

    for block in merged:
        if not np.array_equal(merge_old(*block), merge_new(*block)):
            raise SystemExit("the merge differs")
    for st, users in coengaged:
        if not np.array_equal(_as_sets(old_candidates._coengaged(st, users)), _as_sets(candidates._coengaged(st, users))):
            raise SystemExit("the co-engaged candidates differ")
    for cand, score, primary, k, cap, n_topics in walks:
        a = old_diversity.select_scored(cand, score, primary, k, cap=cap, neighbours=pairs, n_topics=n_topics)
        b = diversity.select_scored(cand, score, primary, k, cap=cap, neighbours=graph, n_topics=n_topics)
        if not all(np.array_equal(x, y) for x, y in zip(a, b)):
            raise SystemExit(f"the walk differs at k = {k}")

    def walk(module: ModuleType, neighbours: object, k: int) -> None:
        for cand, score, primary, kk, cap, n_topics in walks:
            if kk == k:
                module.select_scored(cand, score, primary, k, cap=cap, neighbours=neighbours, n_topics=n_topics)

    steps = {
        "segment sources + merge": (lambda: [merge_old(*b) for b in merged], lambda: [merge_new(*b) for b in merged]),
        "co-engaged": (
            lambda: [old_candidates._coengaged(s, u) for s, u in coengaged],
            lambda: [candidates._coengaged(s, u) for s, u in coengaged],
        ),
        "walk k=5": (lambda: walk(old_diversity, pairs, 5), lambda: walk(diversity, graph, 5)),
        "walk k=10": (lambda: walk(old_diversity, pairs, 10), lambda: walk(diversity, graph, 10)),
    }
    users = sum(len(b[1]) for b in merged)
    times: dict[str, dict[str, list[float]]] = {s: {"old": [], "new": []} for s in steps}
    for rep in range(args.reps):
        for step, (old, new) in steps.items():
            for side, run in (("old", old), ("new", new)) if rep % 2 == 0 else (("new", new), ("old", old)):
                start = time.process_time()
                run()
                times[step][side].append((time.process_time() - start) / users * 1e6)
    out = {
        "users": users,
        "blocks": len(merged),
        "identical": True,
        "first_call_s": round(first, 3),
        "steps": {
            step: {
                "old_best_us": round(min(t["old"]), 2),
                "old_median_us": round(float(np.median(t["old"])), 2),
                "new_best_us": round(min(t["new"]), 2),
                "new_median_us": round(float(np.median(t["new"])), 2),
                "paired_new_over_old": round(float(np.median(np.array(t["new"]) / np.array(t["old"]))), 3),
            }
            for step, t in times.items()
        },
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
