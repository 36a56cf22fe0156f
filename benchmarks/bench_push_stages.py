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

``ab`` mode: the steps from the candidates to the scores (the eligibility and
history masks, the blend's terms and sum, the picks' terms), the start code's
``scoring``/``eligibility`` modules (``--base``, a checkout) and this tree's
alternated block by block in one process, one thread, with every mask, score
and picked term compared (``np.array_equal``; any difference stops it)::

    python benchmarks/bench_push_stages.py ab --model benchmarks/out/train/models_100000_linear/latest \
        --users benchmarks/out/train/city_100000_50000_60/users.parquet --base /tmp/ab/base7 --n 4096

``rows`` mode: a list's reasons and the writer. One push (``--workers 1``) runs in
this process and keeps each block's reasons inputs and each chunk's rows; then
the start code's ``reasons.explain`` (``--base``: texts, one Python list per row,
an object column as its ``recommend_many`` built) and this tree's (codes, one
Arrow list column) alternate on every block, and the start code's
``Workspace.write_chunk`` (rows with list reasons) and this tree's (rows with
Arrow reasons) alternate on every chunk; the reasons must be equal and every
written file byte-identical (sha256), else it stops::

    python benchmarks/bench_push_stages.py rows --model benchmarks/out/train/models_100000_linear/latest \
        --base /tmp/ab/base8 --region qinglong --date 2026-06-30 --out /tmp/rows_ab
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import importlib.util
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from threadpoolctl import threadpool_limits

import recsys
import recsys.push.chunk as chunk
import recsys.push.hashing as hashing
import recsys.push.history as history
import recsys.push.holdout as holdout
import recsys.push.job as job
import recsys.push.plan as plan
import recsys.push.writer as writer
import recsys.ranking.candidates as candidates
import recsys.ranking.core as core
import recsys.ranking.diversity as diversity
import recsys.ranking.eligibility as eligibility
import recsys.ranking.recommender as recommender
import recsys.ranking.scoring as scoring
import recsys.training.index as index
from recsys import columns as C
from recsys.cli import main as cli
from recsys.ranking import Recommender
from recsys.ranking.eligibility import ItemFilter
from recsys.ranking.state import RankingState
from recsys.ranking.users import UserBatch
from recsys.training.model import TrainedModel

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
    *[(scoring, n, f"scoring.{n}") for n in ("score_block", "components", "blend", "engagement_inputs")],
    (diversity, "select_scored", "diversity.select_scored"),
    # the plan's parts (the driver, before any chunk) and the chunk's own glue around its lists
    (job.bundle_io, "verify_bundle", "plan.verify_bundle"),
    (job, "read_bundle_users", "plan.read_bundle_users"),
    (plan, "holdout_mask", "plan.holdout_mask"),
    (plan, "user_buckets", "plan.user_buckets"),
    (chunk, "chunk_stats", "chunk.chunk_stats"),
    (chunk, "_rows", "chunk._rows"),
    (index, "top_k_rows", "index.top_k_rows"),
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


def _load_module(name: str, path: str) -> Any:
    """A module of another checkout, loaded under its own name (its imports resolve to this tree)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def ab(argv: list[str]) -> int:
    """Old and new masks + scores alternated block by block; prints one JSON line of µs per list."""
    parser = argparse.ArgumentParser(prog="bench_push_stages.py ab")
    parser.add_argument("--model", required=True)
    parser.add_argument("--users", required=True, help="a users.parquet of the model's city")
    parser.add_argument("--base", required=True, help="checkout of the old code")
    parser.add_argument("--n", type=int, default=4096, help="users ranked (blocks of the config's batch size)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3, help="old/new alternations per block")
    parser.add_argument(
        "--exclude", type=int, default=0,
        help="one shared exclude list of this many items for every user (the push's tonight-expiring list)",
    )
    args = parser.parse_args(argv)
    threadpool_limits(1)
    old_scoring = _load_module("old_scoring", f"{args.base}/recsys/ranking/scoring.py")
    old_elig = _load_module("old_eligibility", f"{args.base}/recsys/ranking/eligibility.py")
    model = TrainedModel.load(args.model)
    rec = Recommender.from_model(model, config=replace(model.config.ranking, threads=1))
    ids = pd.read_parquet(args.users, columns=["user_id"])["user_id"].astype(str)
    ids = list(ids.sample(min(args.n, len(ids)), random_state=0))
    blocks = []
    real = core.rank

    def grab(
        state: RankingState, users: UserBatch, k: int, filt: ItemFilter, now_ns: int, excludes: list | None = None
    ) -> core.Ranked:
        blocks.append((state, users, k, filt, now_ns, excludes))
        return real(state, users, k, filt, now_ns, excludes)

    core.rank = grab
    try:
        items = rec.state.catalog.item_ids
        shared = [str(i) for i in items[np.random.default_rng(1).choice(len(items), args.exclude, replace=False)]]
        rec.recommend_many(ids, k=args.k, channel="app_push", exclude=dict.fromkeys(ids, shared) if shared else None)
    finally:
        core.rank = real

    def old_steps(
        state: RankingState, users: UserBatch, filt: ItemFilter, now_ns: int, excludes: list | None,
        cand: np.ndarray, picked: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cat, n_items = state.catalog, state.catalog.n_items
        ok = old_elig.candidate_mask(cat, filt, cand, now_ns, users.groups, users.regions)
        keys = old_elig.history_keys(state.seen, users.rows, n_items, excludes)
        ok &= ~old_elig.history_mask(keys, cand, n_items)
        eng = old_scoring.engagement_inputs(state, users, now_ns)
        parts = old_scoring.components(
            cat, cand, users.vectors, users.topics, users.segments, state.freshness(now_ns), engagement=eng
        )
        score = np.where(ok, old_scoring.blend(parts, state.config), -np.inf)
        rows, got = np.arange(cand.shape[0])[:, None], picked >= 0
        p = np.where(got, picked, 0)
        part_rows = np.stack([term[rows, p] for term in parts.terms()], axis=-1) * got[..., None]
        return ok, score, part_rows

    def new_steps(
        state: RankingState, users: UserBatch, filt: ItemFilter, now_ns: int, excludes: list | None,
        cand: np.ndarray, picked: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cat, n_items = state.catalog, state.catalog.n_items
        keys = eligibility.history_keys(state.seen, users.rows, n_items, excludes)
        ok = eligibility.candidate_mask(cat, filt, cand, now_ns, users.groups, users.regions, history=keys)
        eng = scoring.engagement_inputs(state, users, now_ns)
        fresh, w = state.freshness(now_ns), scoring.weights(state.config)
        score, _ = scoring.score_block(
            cat, cand, ok, users.vectors, users.topics, users.segments, fresh, w, engagement=eng, keep_terms=False
        )
        rows, got = np.arange(cand.shape[0])[:, None], picked >= 0
        _, parts = scoring.score_block(
            cat, cand[rows, np.where(got, picked, 0)], None, users.vectors, users.topics, users.segments, fresh, w,
            engagement=eng,
        )
        return ok, score, np.stack(parts.terms(), axis=-1) * got[..., None]

    first = time.process_time()
    prepared = []
    for state, users, k, filt, now_ns, excludes in blocks:
        share = state.filtered(filt)
        cand = candidates.gather(state, users, k, filt, share, now_ns)
        _, score, _ = new_steps(state, users, filt, now_ns, excludes, cand, np.zeros((len(users), k), np.int64))
        picked, _, _ = diversity.select_scored(
            cand, score, state.catalog.primary_topic, k, cap=diversity.topic_cap(k, state.config.max_topic_share),
            neighbours=state.catalog.neighbours, n_topics=state.catalog.topic_bool.shape[1],
        )
        prepared.append((state, users, filt, now_ns, excludes, cand, picked))
    first = time.process_time() - first  # includes the kernels' first calls (compile or cache load)
    times: dict[str, list[float]] = {"old": [], "new": []}
    lists = 0
    for block in prepared:
        lists += len(block[1])
        for rep in range(args.reps):
            order = ("old", "new") if rep % 2 == 0 else ("new", "old")
            out = {}
            for side in order:
                fn = old_steps if side == "old" else new_steps
                start = time.process_time()
                out[side] = fn(*block)
                times[side].append(time.process_time() - start)
            for a, b, what in zip(out["old"], out["new"], ("mask", "score", "picked terms")):
                if not np.array_equal(a, b):
                    print(json.dumps({"error": f"{what} differ", "cells": int((a != b).sum())}))
                    return 1
    per = {side: np.array(v).reshape(len(prepared), args.reps) for side, v in times.items()}
    ratio = per["new"] / per["old"]
    out = {
        "recsys": recsys.__file__,
        "base": args.base,
        "blocks": len(prepared),
        "lists": lists,
        "width": round(float(np.mean([b[5].shape[1] for b in prepared])), 1),
        "first_pass_s": round(first, 3),
        "identical": True,
        "shared_exclude": args.exclude,
        "old_us_per_list": round(float(per["old"].sum() / args.reps / lists * 1e6), 2),
        "new_us_per_list": round(float(per["new"].sum() / args.reps / lists * 1e6), 2),
        "paired_new_over_old_median": round(float(np.median(ratio)), 3),
        "paired_iqr": [round(float(np.percentile(ratio, q)), 3) for q in (25, 75)],
    }
    print(json.dumps(out))
    return 0


def rows_ab(argv: list[str]) -> int:
    """Old and new reasons + writer alternated on one push's own blocks; prints one JSON line of µs per list."""
    parser = argparse.ArgumentParser(prog="bench_push_stages.py rows")
    parser.add_argument("--model", required=True)
    parser.add_argument("--base", required=True, help="checkout of the old code")
    parser.add_argument("--region", default="qinglong")
    parser.add_argument("--date", default="2026-06-30")
    parser.add_argument("--out", required=True, help="a scratch folder (the push's output, then the writes)")
    parser.add_argument("--reps", type=int, default=4, help="old/new alternations")
    args = parser.parse_args(argv)
    threadpool_limits(1)
    old_reasons = _load_module("old_reasons", f"{args.base}/recsys/ranking/reasons.py")
    old_writer = _load_module("old_writer", f"{args.base}/recsys/push/writer.py")
    explained, written = [], []
    real_explain, real_write = recommender.explain, writer.Workspace.write_chunk

    def grab_explain(*a: Any, **k: Any) -> Any:
        explained.append((a, k))
        return real_explain(*a, **k)

    def grab_write(self: Any, *a: Any, **k: Any) -> None:
        written.append((a, k))
        return real_write(self, *a, **k)

    recommender.explain, writer.Workspace.write_chunk = grab_explain, grab_write
    served = chunk._served
    chunk._served = lambda bundle, catalog, sha, threads: served(bundle, catalog, sha, 1)
    out = Path(args.out)
    try:
        rc = cli(["push", "--workers", "1", "--region", args.region, "--date", args.date, "--model", args.model,
                  "--out", str(out / "push"), "--quiet"])
    finally:
        recommender.explain, writer.Workspace.write_chunk, chunk._served = real_explain, real_write, served
    if rc or not explained or not written:
        print(json.dumps({"error": f"push rc {rc}, {len(explained)} blocks, {len(written)} chunks"}))
        return 1
    tables = explained[0][0][0]
    old_tables = old_reasons.ReasonTables(
        tables.relevance, tables.topic, tables.popularity, tables.fresh_authority, tables.authority_named,
        tables.group_popular, tables.region_popular,
    )

    def old_side() -> list:
        # the start code: texts per block, one Python list per row, an object column (its _frame)
        return [
            pd.Series([row for user in old_reasons.explain(old_tables, *a[1:]) for row in user], dtype=object)
            for a, k in explained
        ]

    def new_side() -> list:
        return [pd.Series(pd.arrays.ArrowExtensionArray(real_explain(*a, **k).arrow())) for a, k in explained]

    def digests(root: Path) -> dict[str, str]:
        return {
            str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file() and f.suffix != ".json"
        }

    def write(module: Any, rows_of: Callable, tag: str) -> tuple[float, dict[str, str]]:
        root = out / f"w_{tag}"
        spent = 0.0
        for i, (a, k) in enumerate(written):
            chunk_no, rows, *rest = a
            rows = rows_of(rows)
            ws = module.Workspace(root / str(i))
            start = time.process_time()
            ws.write_chunk(chunk_no, rows, *rest, **k)
            spent += time.process_time() - start
        files = digests(root)
        shutil.rmtree(root)
        return spent, files

    def as_lists(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.assign(**{C.REASONS: pd.Series(rows[C.REASONS].tolist(), index=rows.index, dtype=object)})

    def as_arrow(rows: pd.DataFrame) -> pd.DataFrame:
        column = pa.array(rows[C.REASONS].tolist(), pa.list_(pa.string()))
        return rows.assign(**{C.REASONS: pd.arrays.ArrowExtensionArray(column)})

    lists_rows = [as_lists(a[1]) for a, _ in written]
    arrow_rows = [as_arrow(a[1]) for a, _ in written]
    by_id = {id(a[1]): i for i, (a, _) in enumerate(written)}
    old_write = lambda: write(old_writer, lambda r: lists_rows[by_id[id(r)]], "old")  # noqa: E731
    new_write = lambda: write(writer, lambda r: arrow_rows[by_id[id(r)]], "new")  # noqa: E731
    if [x.tolist() for x in old_side()] != [x.tolist() for x in new_side()]:
        print(json.dumps({"error": "reasons differ"}))
        return 1
    if old_write()[1] != new_write()[1]:
        print(json.dumps({"error": "written files differ"}))
        return 1
    n_lists = sum(int((a[3] > 0).sum()) for a, _ in explained)
    times: dict[str, list[float]] = {"reasons_old": [], "reasons_new": [], "writer_old": [], "writer_new": []}
    for rep in range(args.reps):
        for side in ("old", "new") if rep % 2 == 0 else ("new", "old"):
            start = time.process_time()
            (old_side if side == "old" else new_side)()
            times[f"reasons_{side}"].append(time.process_time() - start)
            times[f"writer_{side}"].append((old_write if side == "old" else new_write)()[0])
    per = {key: [round(v / n_lists * 1e6, 2) for v in values] for key, values in times.items()}
    print(json.dumps({
        "recsys": recsys.__file__, "base": args.base, "blocks": len(explained), "chunks": len(written),
        "lists": n_lists, "rows": int(sum(len(a[1]) for a, _ in written)), "identical": True,
        "us_per_list": per,
        "median_us_per_list": {key: round(float(np.median(v)), 2) for key, v in per.items()},
    }))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["ab"]:
        return ab(argv[1:])
    if argv[:1] == ["rows"]:
        return rows_ab(argv[1:])
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
