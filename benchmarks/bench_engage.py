"""What ``Recommender.expected_engagement`` costs, beside the ranking it prices.

The committed sample city is trained once (kept under ``benchmarks/out/engage/``),
or ``--model`` names a bundle. Then, on the same Recommender:

* **expected_engagement**: ``--pairs`` random (known user, catalogue item)
  pairs priced in one call (what the push's coverage does for its swaps, and
  what a caller pricing a list does);
* **peer**: ``recommend_many`` for ``--pairs / 10`` of those users at k = 10,
  i.e. the same number of (user, item) rows in the output -- the call whose
  lists the coverage prices.

Each is timed ``--repeat`` times (best and median reported, after one warm-up).

Usage::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_engage.py --pairs 100000

Prints one JSON document; figures go in benchmarks/README.md ("Expected engagement").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "synthetic" / "sample"
OUT = ROOT / "benchmarks" / "out" / "engage"


def _bundle(model: str | None) -> Path:
    """The bundle to serve: ``--model``, or the sample trained once under ``OUT``."""
    if model:
        return Path(model)
    latest = OUT / "models" / "latest"
    if not latest.exists():
        from recsys.training import train

        train(SAMPLE, OUT / "models", stream=None)
    return latest


def _timed(fn, repeat: int) -> dict[str, float]:
    fn()  # warm-up: caches of the serving state (timeliness, freshness) are filled once per `now`
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"best_s": round(min(times), 4), "median_s": round(statistics.median(times), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a bundle (default: the sample, trained once)")
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from recsys.ranking import Recommender

    rec = Recommender.load(_bundle(args.model))
    state = rec.state
    rng = np.random.default_rng(args.seed)
    users = state.user_ids[rng.integers(0, len(state.user_ids), args.pairs)].tolist()
    items = state.catalog.item_ids[rng.integers(0, state.catalog.n_items, args.pairs)].tolist()
    list_users = list(dict.fromkeys(users))[: max(1, args.pairs // 10)]

    probs = rec.expected_engagement(users, items)
    engage = _timed(lambda: rec.expected_engagement(users, items), args.repeat)
    peer = _timed(lambda: rec.recommend_many(list_users, k=10), max(1, args.repeat // 2))
    print(
        json.dumps(
            {
                "bundle_users": len(state.user_ids),
                "catalogue_items": int(state.catalog.n_items),
                "pairs": args.pairs,
                "expected_engagement": {
                    **engage,
                    "us_per_pair": round(engage["best_s"] / args.pairs * 1e6, 3),
                    "mean_probability": round(float(probs.mean()), 4),
                },
                "peer_recommend_many": {
                    **peer,
                    "users": len(list_users),
                    "rows": 10 * len(list_users),
                    "us_per_row": round(peer["best_s"] / (10 * len(list_users)) * 1e6, 3),
                },
                "ratio_engage_to_peer": round(engage["best_s"] / peer["best_s"], 4),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
