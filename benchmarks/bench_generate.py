"""Benchmark the synthetic city generator: wall time and peak resident memory.

Cases (each runs in a fresh Python process, so its peak RSS is its own):

- ``100k``: 100,000 users x 20,000 items x 60 days
- ``city``: 3,100,000 users x 50,000 items x 60 days (the whole city; heavy)
- ``truth``: scoring 10,000 users x 2,000 items with ``GroundTruth.engagement_prob``

Usage::

    python benchmarks/bench_generate.py --case 100k
    python benchmarks/bench_generate.py --case city --keep   # keeps benchmarks/out/city

Prints one line per case; figures go in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "100k": {"n_users": 100_000, "n_items": 20_000, "days": 60},
    "city": {"n_users": 3_100_000, "n_items": 50_000, "days": 60},
}
OUT = Path(__file__).resolve().parent / "out"


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _dir_size_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def run_generate(name: str, keep: bool) -> dict:
    """Generate and write one case; return its figures."""
    from recsys.synthetic import generate_city, write_city

    out = OUT / name
    start = time.perf_counter()
    city = generate_city(**CASES[name], seed=0)
    built = time.perf_counter()
    manifest = write_city(city, out, progress=sys.stderr.isatty())
    done = time.perf_counter()
    counts = manifest["counts"]
    result = {
        "case": name,
        **CASES[name],
        "events": counts["events"],
        "impressions": counts["events_by_type"].get("impression", 0),
        "users_and_items_s": round(built - start, 1),
        "events_and_write_s": round(done - built, 1),
        "total_s": round(done - start, 1),
        "peak_rss_mib": round(_peak_rss_mib()),
        "on_disk_mib": round(_dir_size_mib(out)),
    }
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return result


def run_truth() -> dict:
    """Time one 10k x 2k engagement_prob call (after a warm-up)."""
    from recsys.synthetic import generate_city

    city = generate_city(10_000, 2_000, seed=0)
    users = city.users["user_id"].to_numpy()
    items = city.items["item_id"].to_numpy()
    city.truth.engagement_prob(users[:10], items[:10])
    times = []
    for _ in range(3):
        start = time.perf_counter()
        city.truth.engagement_prob(users, items, "wechat")
        times.append(time.perf_counter() - start)
    return {
        "case": "truth",
        "n_users": 10_000,
        "n_items": 2_000,
        "best_s": round(min(times), 3),
        "peak_rss_mib": round(_peak_rss_mib()),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cases, each in a subprocess; print one JSON line per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["100k", "city", "truth", "all"], default="100k")
    parser.add_argument("--keep", action="store_true", help="keep the generated files under benchmarks/out/")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process:
        result = run_truth() if args.case == "truth" else run_generate(args.case, args.keep)
        print(json.dumps(result))
        return 0
    cases = ["100k", "truth", "city"] if args.case == "all" else [args.case]
    for case in cases:
        cmd = [sys.executable, __file__, "--case", case, "--in-process"] + (["--keep"] if args.keep else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        print(proc.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
