"""Serving cost of the learned ranker's defaults against the linear blend, same bundle, same process.

For each ranker setting (``[ranker] examples = "candidates"``, the default before 2026-12-01, and
the current default: ``auto`` with the exposure model), the model is trained on the data, then
served twice from the same model -- ``[ranking] ranker = "linear"`` and ``"learned"``:

* ``recommend`` with a topic filter, ``--calls`` users, p99 latency (BLAS single-threaded);
* ``recommend_many`` of every user, best of 2, users per second.

Usage::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_ranker_cost.py [--data data/synthetic/sample]

Prints one JSON line per setting (trees kept, features read, both rankers' figures, ratios).

Tree inference alone (``--tree-inference BUNDLE``): the bundle's ranker (and its exposure model,
if any) predicting the feature rows real calls send it -- captured from filtered ``recommend``
calls (the rescored candidates; the reasons walk the trees without predicting) and from one
``recommend_many`` block -- in one thread: LightGBM's own ``Booster.predict`` (``num_threads=1``,
with and without ``predict_disable_shape_check``) against the same trees compiled by ``lleaves``
(what ``LearnedRanker.predict`` runs), interleaved over rounds, with the compile time, the time to
load the compiled trees from the cache, and the largest difference between the predictions::

    .venv/bin/python benchmarks/bench_ranker_cost.py --tree-inference benchmarks/out/push/100000x50000/models/latest
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
from threadpoolctl import threadpool_limits

from recsys.config import EngineConfig
from recsys.ranking import Recommender
from recsys.schema import validate
from recsys.training import train_model


def _settings() -> dict[str, EngineConfig]:
    default = EngineConfig()
    candidates = dataclasses.replace(default, ranker=dataclasses.replace(default.ranker, examples="candidates"))
    return {"candidates": candidates, "default": default}


def _captured_rows(bundle: str, calls: int, block: int, seed: int) -> tuple[object, dict[str, list[np.ndarray]]]:
    """The bundle's ranker and the matrices its ``predict`` received: per single call, per block."""
    from recsys.training.ranker import LearnedRanker

    rec = Recommender.load(bundle)
    ranker = rec.state.ranker
    if ranker is None:
        return None, {}
    seen: list[np.ndarray] = []
    own = LearnedRanker.predict

    def spy(self: LearnedRanker, x: np.ndarray) -> np.ndarray:
        if self is ranker:
            seen.append(np.array(x, np.float32))
        return own(self, x)

    state = rec.state
    rng = np.random.default_rng(seed)
    users = state.user_ids[rng.choice(len(state.user_ids), size=calls + block, replace=False)].tolist()
    topics = list(rec.state.model.taxonomy.topics)
    LearnedRanker.predict = spy
    try:
        single: list[np.ndarray] = []
        for u in users[:calls]:
            seen.clear()
            rec.recommend(u, k=10, topics=list(rng.choice(topics, 2, replace=False)), exclude=[])
            single += seen
        seen.clear()
        rec.recommend_many(users[calls:], k=10)
        many = list(seen)
    finally:
        LearnedRanker.predict = own
    return ranker, {"single call": single, f"recommend_many block ({block} users)": many}


def tree_inference(bundle: str, calls: int = 50, block: int = 256, rounds: int = 3, seed: int = 0) -> dict:
    """Microseconds per predict of LightGBM vs the lleaves-compiled trees over the rows real calls send."""
    import tempfile

    from recsys.training import compiled_trees

    ranker, captured = _captured_rows(bundle, calls, block, seed)
    if ranker is None:
        return {"skipped": f"{bundle} has no learned ranker"}
    out: dict = {"bundle": bundle, "features": len(ranker.feature_names)}
    models = {"ranker": ranker}
    if ranker.exposure_model is not None:
        models["exposure_model"] = ranker.exposure_model
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            best = model.report.get("best_iteration") or None
            text = model.booster.model_to_string(num_iteration=best)
            t = time.perf_counter()
            compiled_trees.compile_trees(text, folder=tmp)  # a cold cache: the compile, then the write
            compile_s = time.perf_counter() - t
            t = time.perf_counter()
            compiled = compiled_trees.compile_trees(text, folder=tmp)
            row: dict = {"trees": model.booster.num_trees() if best is None else best, "compile_s": round(compile_s, 2),
                         "cache_load_s": round(time.perf_counter() - t, 4), "cached": compiled.cached}
            booster = model.booster
            variants = {
                "lightgbm": lambda x: booster.predict(x, num_iteration=best, num_threads=1),
                "lightgbm_no_shape_check": lambda x: booster.predict(x, num_iteration=best, num_threads=1,
                                                                     predict_disable_shape_check=True),
                "lleaves": compiled.predict,
            }
            for what, mats in captured.items():
                rows = int(sum(len(m) for m in mats))
                ref = np.concatenate([variants["lightgbm"](m) for m in mats])
                got = np.concatenate([variants["lleaves"](m) for m in mats])
                timings: dict[str, list[float]] = {v: [] for v in variants}
                for _ in range(rounds):  # interleaved: the machine's load falls on all alike
                    for v, f in variants.items():
                        t = time.perf_counter()
                        for m in mats:
                            f(m)
                        timings[v].append(time.perf_counter() - t)
                us = {v: 1e6 * min(ts) / len(mats) for v, ts in timings.items()}
                row[what] = {
                    "predict_calls": len(mats),
                    "rows_per_call": round(rows / max(len(mats), 1), 1),
                    **{f"{v}_us_per_call": round(t, 1) for v, t in us.items()},
                    **{f"{v}_us_per_row": round(t * len(mats) / max(rows, 1), 3) for v, t in us.items()},
                    "speed_up": round(us["lightgbm"] / us["lleaves"], 2),
                    "max_abs_diff": float(np.abs(got - ref).max()) if rows else 0.0,
                }
            out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic/sample")
    parser.add_argument("--calls", type=int, default=300, help="single filtered calls timed per ranker")
    parser.add_argument("--topics", default="ecology,earthquake", help="the filter's topics")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tree-inference", metavar="BUNDLE", help="only LightGBM vs compiled (lleaves) prediction on a bundle's ranker")
    args = parser.parse_args()
    if args.tree_inference:
        with threadpool_limits(1):
            print(json.dumps(tree_inference(args.tree_inference), indent=2), flush=True)
        return
    data = validate(data=args.data)
    ids = data.users["user_id"].astype(str).tolist()
    single = np.random.default_rng(args.seed).choice(ids, min(args.calls, len(ids)), replace=False).tolist()
    topics = args.topics.split(",")
    for name, config in _settings().items():
        model = train_model(data.users, data.items, data.events, config=config)
        row: dict = {"setting": name, "trees": model.ranker.report.get("best_iteration"),
                     "used_features": int(model.ranker.used_features.sum())}
        for kind in ("linear", "learned"):
            rec = Recommender.from_model(model, config=dataclasses.replace(model.config.ranking, ranker=kind))
            latencies = []
            with threadpool_limits(1, "blas"):
                for u in single[:30]:  # warm-up
                    rec.recommend(u, k=10, topics=topics, exclude=[])
                for u in single:
                    t = time.perf_counter()
                    rec.recommend(u, k=10, topics=topics, exclude=[])
                    latencies.append(time.perf_counter() - t)
            rec.recommend_many(ids[:300], k=10)
            best = []
            for _ in range(2):
                t = time.perf_counter()
                rec.recommend_many(ids, k=10)
                best.append(time.perf_counter() - t)
            row[kind] = {"p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2),
                         "many_users_per_s": round(len(ids) / min(best))}
        row["p99_ratio"] = round(row["learned"]["p99_ms"] / row["linear"]["p99_ms"], 2)
        row["many_time_ratio"] = round(row["linear"]["many_users_per_s"] / row["learned"]["many_users_per_s"], 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
