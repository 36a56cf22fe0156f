"""Serving cost of the learned ranker's defaults against the linear blend, same bundle, same process.

For each ranker setting (``[ranker] examples = "candidates"``, the default before 2026-12-01, and
the current default: ``auto`` with the exposure model), the model is trained on the data, then
served twice from the same model -- ``[ranking] ranker = "linear"`` and ``"learned"``:

* ``recommend`` with a topic filter, ``--calls`` users, p99 latency (BLAS single-threaded);
* ``recommend_many`` of every user, best of 2, users per second.

Usage::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_ranker_cost.py [--data data/synthetic/sample]

Prints one JSON line per setting (trees kept, features read, both rankers' figures, ratios).

Tree inference alone (``--tree-inference BUNDLE``): the bundle's LightGBM ranker (and its exposure
model, if any) predicting blocks of 1, 30, 100 and 300 rows in one thread -- LightGBM's own
``Booster.predict`` against the same text model compiled to a shared library by Treelite's
``tl2cgen`` (the field's standard compiler for tree ensembles; needs ``pip install treelite
tl2cgen`` and a C compiler, neither a dependency of the engine), interleaved over rounds, with the
compile time and the largest difference between the two predictions::

    .venv/bin/python benchmarks/bench_ranker_cost.py --tree-inference benchmarks/out/ranking/models/latest
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


def tree_inference(bundle: str, rows_list: tuple[int, ...] = (1, 30, 100, 300), rounds: int = 3, reps: int = 200) -> dict:
    """Per-call microseconds of LightGBM's predict vs the tl2cgen-compiled model, same rows, one thread."""
    import tempfile
    from pathlib import Path

    from recsys.training.model import TrainedModel

    try:
        import tl2cgen  # heavy: optional, only this measurement
        import treelite  # heavy: optional, only this measurement
    except ImportError:
        return {"skipped": "treelite / tl2cgen are not installed (pip install treelite tl2cgen)"}
    ranker = TrainedModel.load(bundle, verify=False).ranker
    if ranker is None:
        return {"skipped": f"{bundle} has no learned ranker"}
    best = ranker.report.get("best_iteration") or None
    boosters = {"ranker": ranker.booster}
    if ranker.exposure_model is not None:
        boosters["exposure_model"] = ranker.exposure_model.booster
    rng = np.random.default_rng(0)
    out: dict = {"bundle": bundle, "features": len(ranker.feature_names)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, booster in boosters.items():
            text = Path(tmp) / f"{name}.txt"
            # the trees a serving call evaluates (up to the best iteration)
            text.write_text(booster.model_to_string(num_iteration=best if name == "ranker" else None), encoding="utf-8")
            t = time.perf_counter()
            model = treelite.frontend.load_lightgbm_model(str(text))
            lib = Path(tmp) / f"{name}.so"
            tl2cgen.export_lib(model, toolchain="gcc", libpath=str(lib), params={"parallel_comp": 4}, nthread=1)
            compiled = tl2cgen.Predictor(str(lib), nthread=1)
            row: dict = {"trees": booster.num_trees(), "compile_s": time.perf_counter() - t}
            for n in rows_list:
                x = rng.random((n, len(ranker.feature_names))).astype(np.float32)
                ref = booster.predict(x, num_iteration=best if name == "ranker" else None, num_threads=1)
                got = np.asarray(compiled.predict(tl2cgen.DMatrix(x))).reshape(-1)
                timings = {"lightgbm": [], "tl2cgen": []}
                for _ in range(rounds):  # interleaved: the machine's load falls on both alike
                    t = time.perf_counter()
                    for _ in range(reps):
                        booster.predict(x, num_iteration=best if name == "ranker" else None, num_threads=1)
                    timings["lightgbm"].append((time.perf_counter() - t) / reps)
                    t = time.perf_counter()
                    for _ in range(reps):
                        compiled.predict(tl2cgen.DMatrix(x))
                    timings["tl2cgen"].append((time.perf_counter() - t) / reps)
                lgb_us, tl_us = (1e6 * float(np.median(timings[k])) for k in ("lightgbm", "tl2cgen"))
                row[f"rows_{n}"] = {"lightgbm_us": round(lgb_us, 1), "tl2cgen_us": round(tl_us, 1),
                                    "speed_up": round(lgb_us / tl_us, 2), "max_abs_diff": float(np.abs(got - ref).max())}
            out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic/sample")
    parser.add_argument("--calls", type=int, default=300, help="single filtered calls timed per ranker")
    parser.add_argument("--topics", default="ecology,earthquake", help="the filter's topics")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tree-inference", metavar="BUNDLE", help="only LightGBM vs tl2cgen prediction on a bundle's ranker")
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
