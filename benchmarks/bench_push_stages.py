"""Where a pushed list's CPU goes: a one-worker push with the time of each ranking step.

Runs ``recsys push`` in this process (``--workers 1``, one ranking thread) with
``time.process_time`` wrapped around the step functions of the ranking and the
push (no profiler: a profiler inflates the Python steps), and prints one JSON
line: total CPU and wall time, and per step its CPU seconds and calls.

Usage::

    python benchmarks/bench_push_stages.py push --workers 1 --region qinglong \\
        --date 2026-06-30 --model benchmarks/out/train/models_100000_linear/latest --out /tmp/p --quiet

An A/B of two checkouts: run it once per checkout (``PYTHONPATH=<checkout>``)
into two output folders, alternately, and compare the pushed rows (they must be
identical) and the steps' times. Nested steps overlap (``core.rank`` holds
``candidates.gather``, which holds ``candidates._ann``).
"""

from __future__ import annotations

import collections
import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import recsys
import recsys.push.chunk as chunk
import recsys.push.hashing as hashing
import recsys.push.history as history
import recsys.push.holdout as holdout
import recsys.push.job as job
import recsys.push.writer as writer
import recsys.ranking.candidates as candidates
import recsys.ranking.core as core
import recsys.ranking.diversity as diversity
import recsys.ranking.eligibility as eligibility
import recsys.ranking.recommender as recommender
import recsys.ranking.scoring as scoring
from recsys.cli import main as cli

CPU: collections.Counter = collections.Counter()
CALLS: collections.Counter = collections.Counter()

#: (module or class, function name, label) of every timed step
STEPS: list[tuple[Any, str, str]] = [
    (job, "plan_users", "plan.plan_users"),
    (holdout, "stable_hash", "holdout.stable_hash"),
    (hashing, "stable_hash", "hashing.stable_hash"),
    (chunk, "compute_chunk", "chunk.compute_chunk"),
    (chunk, "fetch_lists", "chunk.fetch_lists"),
    (history, "read_window", "history.read_window"),
    (writer.Workspace, "write_chunk", "writer.write_chunk"),
    (recommender.Recommender, "recommend_many", "recommend_many"),
    (recommender, "resolve", "users.resolve"),
    (recommender, "_frame", "recommender._frame"),
    (recommender, "explain", "reasons.explain"),
    (recommender, "_exclude_indices", "recommender._exclude_indices"),
    (core, "rank", "core.rank"),
    (core, "_score_and_pick", "core._score_and_pick"),
    *[(candidates, n, f"candidates.{n}") for n in ("gather", "_ann", "_new_items", "_topics", "_popular", "_coengaged", "merge")],
    *[(eligibility, n, f"eligibility.{n}") for n in ("candidate_mask", "history_keys", "history_mask")],
    *[(scoring, n, f"scoring.{n}") for n in ("components", "blend", "engagement_inputs")],
    (diversity, "select_scored", "diversity.select_scored"),
]


def _timed(fn: Callable, label: str) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            CPU[label] += time.process_time() - start
            CALLS[label] += 1

    return wrapper


def main(argv: list[str]) -> int:
    for owner, name, label in STEPS:
        if hasattr(owner, name):  # an older checkout may lack a step
            setattr(owner, name, _timed(getattr(owner, name), label))
    served = chunk._served
    # one ranking thread: CPU per list without the block thread pool's switching
    chunk._served = lambda bundle, catalog, sha, threads: served(bundle, catalog, sha, 1)
    cpu, wall = time.process_time(), time.perf_counter()
    rc = cli(argv)
    out = {
        "recsys": recsys.__file__,
        "rc": rc,
        "cpu_s": round(time.process_time() - cpu, 3),
        "wall_s": round(time.perf_counter() - wall, 3),
        "steps": {label: {"cpu_s": round(s, 4), "calls": CALLS[label]} for label, s in CPU.most_common()},
    }
    print(json.dumps(out))
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
