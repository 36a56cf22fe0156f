"""Serving cost of the learned ranker's defaults against the linear blend, same bundle, same process.

For each ranker setting (``[ranker] examples = "candidates"``, the default before 2026-12-01, and
the current default: ``auto`` with the exposure model), the model is trained on the data, then
served twice from the same model -- ``[ranking] ranker = "linear"`` and ``"learned"``:

* ``recommend`` with a topic filter, ``--calls`` users, p99 latency (BLAS single-threaded);
* ``recommend_many`` of every user, best of 2, users per second.

Usage::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_ranker_cost.py [--data data/synthetic/sample]

Prints one JSON line per setting (trees kept, features read, both rankers' figures, ratios).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic/sample")
    parser.add_argument("--calls", type=int, default=300, help="single filtered calls timed per ranker")
    parser.add_argument("--topics", default="ecology,earthquake", help="the filter's topics")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
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
