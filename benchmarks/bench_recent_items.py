"""The users' recent positive items (the co-engagement seeds): per-user lists against the fixed array.

Usage::

    python benchmarks/bench_recent_items.py                  # the city's last bundle's histories
    python benchmarks/bench_recent_items.py --bundle DIR --users 1000000 --calls 20000

A bundle stores each user's most recent positive items (at most ``[ranker]
recent_items``) as a CSR of the user's own length
(:meth:`recsys.training.signals.Signals.recent_items` reads a block of users);
bundles written before held a fixed ``users x recent_items`` array, -1 padded.
This benchmark takes the real number of distinct positive items of each user
from a bundle (``user_activity.npy``, column 0), gives every user that many
seeded random item ids, and measures in one process, alternating the two:

* the bytes of the lists at ``recent_items`` 5 and 50 beside the fixed array's;
* the time to read the seeds of one user (a single ``recommend``) and of a
  block of 512 users (``recommend_many``, the push), through the lists at 50
  and through the fixed array at 5 (the former default: the floor every call
  paid before).

Prints one table and writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.training.signals import Signals  # noqa: E402

DEFAULT_BUNDLE = ROOT / "benchmarks" / "out" / "night" / "3100000x50000" / "models" / "20261201T144307Z"


def _lists(history: np.ndarray, r: int, n_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices) of ``min(history, r)`` random item ids per user."""
    counts = np.minimum(history, r)
    indptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.random.default_rng(seed).integers(0, n_items, int(indptr[-1])).astype(np.int32)
    return indptr, indices


def _fixed(indptr: np.ndarray, indices: np.ndarray, r: int) -> np.ndarray:
    """The same lists as a -1 padded (users x r) int32 array (the bundle layout before the lists)."""
    n = len(indptr) - 1
    out = np.full((n, r), -1, np.int32)
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(n), counts)
    slot = np.arange(len(indices)) - np.repeat(indptr[:-1], counts)
    out[rows, slot] = indices
    return out


def _per_call_us(sig: Signals, blocks: list[np.ndarray]) -> float:
    """Median microseconds of one :meth:`Signals.recent_items` call over the blocks, in rounds of 50."""
    rounds = []
    for lo in range(0, len(blocks), 50):
        chunk = blocks[lo : lo + 50]
        t0 = time.perf_counter()
        for rows in chunk:
            sig.recent_items(rows)
        rounds.append((time.perf_counter() - t0) / len(chunk))
    return float(np.median(rounds) * 1e6)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (module docstring); returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="a bundle folder with user_activity.npy")
    parser.add_argument("--users", type=int, default=0, help="the bundle's first N users only (0: all)")
    parser.add_argument("--items", type=int, default=50_000, help="catalogue size for the random ids")
    parser.add_argument("--calls", type=int, default=20_000, help="single-user calls timed per layout")
    parser.add_argument("--blocks", type=int, default=400, help="512-user blocks timed per layout")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    activity = np.load(args.bundle / "user_activity.npy", mmap_mode="r")
    history = np.asarray(activity[: args.users or None, 0], np.int64)
    n = len(history)
    print(f"{args.bundle}: {n:,} users, distinct positive items per user mean {history.mean():.2f}, "
          f"p99 {np.percentile(history, 99):.0f}, max {history.max()}")
    rows = []
    for r in (5, 50):
        indptr, indices = _lists(history, r, args.items, args.seed)
        rows.append((r, (indptr.nbytes + indices.nbytes) / 1e6, 4.0 * n * r / 1e6, indptr.nbytes / 1e6, indices.nbytes / 1e6))
    print("\n| recent_items | per-user lists | of which row offsets + ids | fixed array (before) |")
    print("|---|---|---|---|")
    for r, lists_mb, fixed_mb, ptr_mb, idx_mb in rows:
        print(f"| {r} | {lists_mb:.1f} MB | {ptr_mb:.1f} + {idx_mb:.1f} MB | {fixed_mb:.1f} MB |")

    # the two layouts a serving process reads: lists at 50 (now) and the fixed array at 5 (before)
    indptr, indices = _lists(history, 50, args.items, args.seed)
    base = Signals(
        popularity_levels=np.zeros((1, 1, 1), np.float32), popularity_windows=np.zeros((1, 1), np.float32),
        shrinkage=np.zeros((1, 3), np.float32), coengagement_indptr=np.zeros(2, np.int64),
        coengagement_indices=np.zeros(0, np.int32), coengagement_data=np.zeros(0, np.float32),
        user_activity=np.zeros((0, 2), np.float32), item_exposures=np.zeros(1, np.float32),
    )
    lists = dataclasses.replace(base, user_recent_indptr=indptr, user_recent_indices=indices)
    fixed5 = dataclasses.replace(base, user_recent_items=_fixed(*_lists(history, 5, args.items, args.seed), 5))
    rng = np.random.default_rng(args.seed + 1)
    singles = [rng.integers(0, n, 1) for _ in range(args.calls)]
    blocks = [rng.integers(0, n, 512) for _ in range(args.blocks)]
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(3):  # alternated, so a change of load hits both layouts alike
        for name, sig in (("lists, 50", lists), ("fixed, 5", fixed5)):
            times.setdefault((name, "1 user"), []).append(_per_call_us(sig, singles))
            times.setdefault((name, "512 users"), []).append(_per_call_us(sig, blocks))
    print("\n| read of the seeds | lists, 50 (us per call) | fixed array, 5 (us per call) | ratio |")
    print("|---|---|---|---|")
    for size in ("1 user", "512 users"):
        a, b = min(times[("lists, 50", size)]), min(times[("fixed, 5", size)])
        print(f"| {size} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
