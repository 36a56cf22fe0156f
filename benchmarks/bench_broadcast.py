"""Benchmark ``recsys broadcast``: 10,000 places in one run, and the engine against popularity playlists.

A synthetic city is generated and trained once (kept under
``benchmarks/out/broadcast/<users>x<items>/``), its places table rebuilt
with enough kiosks for ``--places`` places in all (the generator's own kinds
and mixes), then, in this process:

1. **the floor**: the same eligibility and packing with a region popularity
   playlist (``policy="region_popular"``: no audience scores, no diversity)
   -- what any programme of these places costs;
2. **the engine**: ``plan_programmes`` (segment scores, audience mixing,
   packing by value per second with topic decay);
3. **the command** (run first): ``recsys broadcast`` in a fresh process, timed
   end to end (loading the bundle and the places, planning, writing Parquet +
   manifest), with its peak resident memory (the largest child's: run the
   benchmark once the city exists, or the training's peak is what shows);
4. with ``--quality``: the evaluation on the truth (simulated engagement of
   the engine's programmes against the region and city popularity
   playlists), on the city's own places (the generator's count for its size).

Usage::

    python benchmarks/bench_broadcast.py --users 20000 --items 3000 --places 10000 --quality

Prints one JSON line; figures go in benchmarks/README.md ("Broadcast").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "out" / "broadcast"
ROOT = Path(__file__).resolve().parent.parent
DAY = dt.date(2026, 6, 30)


def _city(users: int, items: int) -> Path:
    folder = OUT / f"{users}x{items}"
    if not (folder / "models" / "latest").exists():
        if folder.exists():
            shutil.rmtree(folder)
        recsys = [sys.executable, "-m", "recsys.cli"]
        subprocess.run(
            [
                *recsys,
                "generate",
                "--users",
                str(users),
                "--items",
                str(items),
                "--days",
                "60",
                "--out",
                str(folder / "city"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [*recsys, "train", "--data", str(folder / "city"), "--out", str(folder / "models")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return folder


def _places(folder: Path, n_places: int) -> Path:
    from recsys.synthetic.places import make_places
    from recsys.synthetic.spec import load_spec
    from recsys.taxonomy import load_taxonomy

    tax = load_taxonomy()
    spec = load_spec(tax)
    fixed = len(make_places(spec, tax, 0, np.random.default_rng(0)))
    places = make_places(spec, tax, max(n_places - fixed, 0), np.random.default_rng(1))
    path = folder / f"places_{n_places}.parquet"
    places.to_parquet(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=3_000)
    parser.add_argument("--places", type=int, default=10_000)
    parser.add_argument("--quality", action="store_true", help="also score the city's own places on the truth")
    args = parser.parse_args()

    from recsys.broadcast.evaluate import evaluate_broadcast, summarize
    from recsys.broadcast.places import load_places
    from recsys.broadcast.programme import plan_programmes
    from recsys.config import BroadcastConfig
    from recsys.ranking import Recommender

    folder = _city(args.users, args.items)
    places_path = _places(folder, args.places)
    result: dict = {"users": args.users, "items": args.items}
    out = folder / "programmes"
    if out.exists():
        shutil.rmtree(out)
    t = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys.cli",
            "broadcast",
            "--model",
            str(folder / "models" / "latest"),
            "--date",
            DAY.isoformat(),
            "--places",
            str(places_path),
            "--items",
            str(folder / "city" / "items.parquet"),
            "--out",
            str(out),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    result["command_s"] = round(time.perf_counter() - t, 2)
    # the command's own peak: it runs before this process loads anything, and a child's high-water mark
    # starts from its parent's size at fork (Linux), so the parent must still be small here
    result["command_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    result["command_rows"] = len(pd.read_parquet(out))

    rec = Recommender.load(folder / "models" / "latest", catalog=folder / "city" / "items.parquet")
    state = rec.state
    t = time.perf_counter()
    places = load_places(places_path, state.taxonomy, state.model.users)
    load_s = time.perf_counter() - t
    config = BroadcastConfig()
    result.update({"places": len(places), "load_places_s": round(load_s, 2)})
    for name, policy in (("floor_region_popular", "region_popular"), ("engine", "engine")):
        t = time.perf_counter()
        prog = plan_programmes(state, places, DAY, config, policy=policy)
        result[f"{name}_s"] = round(time.perf_counter() - t, 2)
        result[f"{name}_rows"] = len(prog.rows)
        result[f"{name}_fill"] = round(float(prog.places["filled_s"].sum() / prog.places["capacity_s"].sum()), 4)
    result["engine_over_floor"] = round(result["engine_s"] / max(result["floor_region_popular_s"], 1e-9), 2)
    # peak resident memory of this process so far (bundle + places + both plans), Linux ru_maxrss in KiB
    result["plan_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    if args.quality:
        from recsys.evaluation.simulate import load_truth

        own = load_places(folder / "city" / "places.parquet", state.taxonomy, state.model.users)
        users = pd.read_parquet(folder / "city" / "users.parquet")
        t = time.perf_counter()
        per_place = evaluate_broadcast(state, own, DAY, config, load_truth(folder / "city"), users)
        result["quality_s"] = round(time.perf_counter() - t, 2)
        total = summarize(per_place, []).iloc[0]
        result["quality_places"] = len(own)
        result["vs_region_popular"] = round(float(total["vs_region_popular"]), 3)
        result["vs_city_popular"] = round(float(total["vs_city_popular"]), 3)
        by_channel = summarize(per_place, ["channel"])
        result["vs_region_popular_by_channel"] = {
            c: round(float(v), 3) for c, v in zip(by_channel["channel"], by_channel["vs_region_popular"])
        }
        # where the gain comes from: both packed the same way (by value, then by value per second)
        from recsys.broadcast.evaluate import simulate

        truth = load_truth(folder / "city")
        for label, density in (("by_value", False), ("by_density", True)):
            sims = {}
            for policy in ("engine", "region_popular"):
                prog = plan_programmes(state, own, DAY, config, policy=policy, by_density=density)
                sims[policy] = float(simulate(prog.rows, own, truth, users, state.taxonomy, DAY).sum())
            result[f"vs_region_popular_both_{label}"] = round(sims["engine"] / sims["region_popular"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
