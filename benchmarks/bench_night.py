"""Benchmark the city's night: the incremental training of one new day, then the push.

The synthetic city (``--users`` x ``--items``, 60 days; default the whole city,
3.1M x 50k) is generated once into ``benchmarks/out/night/<users>x<items>/data``
and its event log split once into one file per local day (the layout the
incremental training reads: ``DATA/events/*.parquet``). The last day is kept
aside as the night's delivery. Once (``setup``): a full training on the first
days (``recsys train --full``), the bundle and its history store kept in
``models/``.

Each measured night starts from a copy of ``models/`` (hard links: bundles and
validated partitions are never changed in place), so a night can be rerun:

1. the day's file lands in ``base/events/`` (the folder the history store
   validated; taken out again afterwards); ``recsys train`` (incremental: only the
   new file validated, matrices moved forward, ALS swept over the changed users
   and every item, yesterday's ranker kept), in a fresh process;
2. ``python -m pipelines.push --workers 2`` for the next day, in a fresh process
   (``--no-push``: the training only);

each timed end to end (the training also per step, with each step's own peak
resident memory: ``steps_peak_rss_mib``), each with the peak resident memory of its process
tree (anonymous and file-backed, sampled every 0.2 s, as in
``bench_push.py``). In the same run, beside them: the push's floor (faiss
exact batched top-10 over the night bundle's user and item vectors, 2
threads) and the floor of reading the day (its events file read into memory).
With ``--full-night``, also a full retrain on the same data (the weekly night).
With ``--engagement-check``, the night's warm-started engagement model beside a
full refit on the same pairs (correlation, log-loss; not part of the night's time).
A history store of before the nightly aggregates were kept is upgraded once
in ``models/`` (timed apart, ``setup.upgrade_store_s``).

Usage::

    python benchmarks/bench_night.py                      # the city (3.1M x 50k)
    python benchmarks/bench_night.py --users 100000       # a quick check
    python benchmarks/bench_night.py --config night.toml  # engine settings for setup and night

Prints one JSON line; figures go in benchmarks/README.md ("Push", the city's night).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_push  # noqa: E402  (process-tree memory sampling and the push floor)

from recsys.taxonomy import load_taxonomy  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "night"
TABLES = ("users.parquet", "items.parquet", "places.parquet", "manifest.json")


def generate(case: Path, n_users: int, n_items: int, days: int) -> dict:
    """The synthetic city, once."""
    data = case / "data"
    if not (data / "manifest.json").exists():
        from recsys.synthetic import generate_city, write_city

        t0 = time.perf_counter()
        write_city(generate_city(n_users, n_items, days=days, seed=0), data)
        (case / "generate.json").write_text(json.dumps({"generate_s": round(time.perf_counter() - t0, 1)}))
    return json.loads((case / "generate.json").read_text(encoding="utf-8"))


def split_days(case: Path) -> dict:
    """The log as one file per local day (``base/events/``), the last day aside (``night/``), once.

    Streams the log by row group, so memory stays at one row group plus the
    open writers' buffers.
    """
    base, night = case / "base", case / "night"
    done = case / "split.json"
    if done.exists():
        return json.loads(done.read_text(encoding="utf-8"))
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(night, ignore_errors=True)
    tmp = case / "split.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tz = load_taxonomy().tz
    t0 = time.perf_counter()
    source = pq.ParquetFile(case / "data" / "events.parquet")
    writers: dict[str, pq.ParquetWriter] = {}
    pending: dict[str, list[pa.Table]] = {}
    rows: dict[str, int] = {}

    def flush(day: str) -> None:
        # the log is ordered by user, so every row group spans every day: buffer a day's rows and
        # write them as few large row groups (small ones compress and read badly)
        if day not in writers:
            writers[day] = pq.ParquetWriter(tmp / f"{day}.parquet", source.schema_arrow, compression="zstd")
        writers[day].write_table(pa.concat_tables(pending.pop(day)).combine_chunks())

    try:
        for g in range(source.num_row_groups):
            batch = source.read_row_group(g)
            local = pd.Series(batch.column("timestamp").to_pandas()).dt.tz_convert(tz).dt.date.astype(str).to_numpy()
            for day in np.unique(local):
                part = batch.filter(pa.array(local == day))
                pending.setdefault(day, []).append(part)
                rows[day] = rows.get(day, 0) + part.num_rows
                if sum(t.num_rows for t in pending[day]) >= 500_000:
                    flush(day)
        for day in list(pending):
            flush(day)
    finally:
        for w in writers.values():
            w.close()
    days = sorted(rows)
    (base / "events").mkdir(parents=True)
    night.mkdir(parents=True)
    for day in days[:-1]:
        (tmp / f"{day}.parquet").rename(base / "events" / f"{day}.parquet")
    (tmp / f"{days[-1]}.parquet").rename(night / f"{days[-1]}.parquet")
    tmp.rmdir()
    for name in TABLES:
        if (case / "data" / name).exists():
            os.link(case / "data" / name, base / name)
    info = {"split_s": round(time.perf_counter() - t0, 1), "days": len(days), "night_day": days[-1],
            "night_events": rows[days[-1]], "base_events": sum(rows[d] for d in days[:-1])}  # fmt: skip
    done.write_text(json.dumps(info), encoding="utf-8")
    return info


def drop_delivered(case: Path, info: dict) -> None:
    """Take back the night's day file from ``base/events`` if a killed night left it there.

    Only that file, and only when it is the night's own (the same inode as ``night/``'s):
    ``keep_days`` would otherwise count it as history and move the oldest day out.
    """
    night_file = case / "night" / f"{info['night_day']}.parquet"
    delivered = case / "base" / "events" / night_file.name
    if delivered.exists() and night_file.exists() and os.path.samefile(delivered, night_file):
        delivered.unlink()


def keep_days(case: Path, days: int | None) -> list[str]:
    """Keep the ``days - 1`` latest days before the night in ``base/events`` (the rest in ``older/``).

    A full training of all 60 days of the city holds the whole log in memory
    while validating it; ``--days`` 30 gives the night the history the earlier
    city figures used (``bench_push.py``'s 30-day city).
    """
    events, older = case / "base" / "events", case / "older"
    older.mkdir(exist_ok=True)
    every = sorted([*events.glob("*.parquet"), *older.glob("*.parquet")], key=lambda p: p.name)
    keep = every if days is None else every[-(days - 1):]
    for path in every:
        target = (events if path in keep else older) / path.name
        if path != target:
            path.rename(target)
    return [p.name for p in keep]


def train_cmd(data: Path, models: Path, config: Path | None, *, full: bool, step_memory: Path | None = None) -> list[str]:
    """``recsys train`` in a fresh process; with ``step_memory``, each step's peak RSS written there (JSON)."""
    if step_memory is None:
        cmd = [sys.executable, "-m", "pipelines.train"]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--train-with-step-memory", str(step_memory)]
    cmd += ["--data", str(data), "--out", str(models)]
    return cmd + (["--full"] if full else []) + (["--config", str(config)] if config else [])


def train_with_step_memory(out: Path, argv: list[str]) -> int:
    """``recsys train ARGV`` with the peak resident memory of each step (the process's own, MiB) written to ``out``.

    Each step's own peak (benchmarks/step_memory.py: the high-water mark reset
    before it), written after every step so a killed night still leaves them.
    """
    # step_memory: benchmarks/, this script's own folder, is on sys.path
    from step_memory import track_step_peaks

    from recsys.cli import main as cli_main

    seconds: dict[str, float] = {}

    def write(peaks: dict[str, int]) -> None:
        out.write_text(json.dumps({name: round(kib / 1024, 1) for name, kib in peaks.items()}), encoding="utf-8")
        # every step's seconds, the bundle's write and the history store's commit included (the
        # manifest's timings end before them): the rest of the night is process start and yesterday's load
        out.with_name("step_seconds.json").write_text(
            json.dumps({name: round(s, 3) for name, s in seconds.items()}), encoding="utf-8"
        )

    track_step_peaks(write, seconds=seconds)
    return cli_main(["train", *argv])


def upgrade_store(case: Path) -> dict | None:
    """Add the nightly aggregates to yesterday's history store once (a store of before they were kept).

    What the first night after the upgrade would do inside its training; done
    here once, timed on its own, so every measured night is a usual one.
    """
    from recsys.training.incremental import _AGGREGATE_FILES, HistoryStore

    store = HistoryStore.open(case / "models")
    # store.json names the state's files: the aggregates are there or not (no read of ~1 GB of
    # matrices), by the rule the engine's read_state applies (all of them, or none counts)
    if store is None or all(f in store.doc["state"]["files"] for f in _AGGREGATE_FILES):
        return None
    start = time.perf_counter()
    store.upgrade(load_taxonomy())
    return {"upgrade_store_s": round(time.perf_counter() - start, 1)}


def engagement_check(models: Path) -> dict:
    """The night's warm-started engagement model against a full refit on the same pairs.

    Both see the same seeded sample of the window's exposures (rebuilt from the
    history store); compared on another seeded sample of 1M shown pairs:
    correlation of their log-odds and the mean log-loss of each (the pairs
    are mostly in both fits' samples: an in-sample comparison of the two fits).
    """
    from types import SimpleNamespace

    from recsys.training.engagement import EngagementModel, _log_loss, shown_logit
    from recsys.training.incremental import HistoryStore, history_exposures
    from recsys.training.model import TrainedModel

    night_model = TrainedModel.load(models / "latest")
    state = HistoryStore.open(models).read_state()
    cfg = night_model.config.engagement
    exposures = history_exposures(state, night_model.items, cfg, sample=cfg.max_exposures, seed=cfg.seed)
    start = time.perf_counter()
    refit = EngagementModel(cfg, night_model.taxonomy).fit(exposures, night_model.users, night_model.items)
    refit_s = time.perf_counter() - start
    probe = history_exposures(state, night_model.items, cfg, sample=1_000_000, seed=cfg.seed + 1)
    taus = cfg.freshness_taus_days
    warm = shown_logit(night_model, probe, night_model.items, night_model.taxonomy, taus)
    full = shown_logit(
        SimpleNamespace(
            engagement_intercept=refit.intercept_, user_bias=refit.user_bias_, item_quality=refit.item_quality_,
            user_interest=refit.user_interest_, user_format=refit.user_format_,
            topic_freshness=refit.topic_freshness_, topic_trend=refit.topic_trend_,
        ),
        probe, night_model.items, night_model.taxonomy, taus,
    )
    return {
        "refit_s": round(refit_s, 1), "refit_sweeps": refit.n_sweeps_, "pairs": len(probe),
        "correlation": round(float(np.corrcoef(warm, full)[0, 1]), 4),
        "log_loss_warm": round(_log_loss(probe.label, warm), 5), "log_loss_refit": round(_log_loss(probe.label, full), 5),
        "night_sweeps_at_most": cfg.warm_sweeps,
    }


def setup(case: Path, config: Path | None, days: list[str]) -> dict:
    """The full training on the kept days but the last, once: yesterday's bundle and history store."""
    done = case / "setup.json"
    if done.exists():
        result = json.loads(done.read_text(encoding="utf-8"))
        if result.get("days") == days:
            return result
        # yesterday's bundle took ~14 minutes at the city: never thrown away because the days moved
        raise SystemExit(
            f"{case}: the kept days ({days[0]} .. {days[-1]}, {len(days)}) are not the ones yesterday's bundle was "
            f"trained on ({done}); if --history-days changed on purpose, remove {case / 'models'} and {done} to "
            "train it again, else check base/events and older/ (a killed night's delivered day?)"
        )
    models = case / "models"
    shutil.rmtree(models, ignore_errors=True)
    result = bench_push.measured(train_cmd(case / "base", models, config, full=True))
    result["config"] = config.read_text(encoding="utf-8") if config else None
    result["days"] = days
    done.write_text(json.dumps(result), encoding="utf-8")
    return result


def linked_copy(src: Path, dst: Path) -> None:
    """``src`` copied as hard links (symlinks kept as links): a night's starting state in seconds."""
    shutil.copytree(src, dst, symlinks=True, copy_function=os.link)


def record_users(models: Path, data: Path) -> dict | None:
    """Record in ``models``' history store which users file its latest bundle's users table is of, once.

    A store written before the record was kept (the case's setup): the first night
    of the engine that keeps it validates the users file and records it; every
    later night with the file unchanged reads yesterday's table instead
    (docs/training.md). Done here, timed apart, so the measured night is a usual
    one: the file validated alone and its table checked equal to the bundle's
    (else nothing is recorded and the night validates it, as before). A start
    code without the record (an A/B's old side) is left alone. Returns the
    seconds, or None when nothing was done.
    """
    try:
        from recsys.training.incremental import SourceFile, users_record
    except ImportError:  # an engine of before the record: its nights validate the users file
        return None
    from recsys.bundle import BundleWriter, read_manifest
    from recsys.io import write_json
    from recsys.schema import find_table, read_table, required_columns, validate_tables
    from recsys.training.incremental import HistoryStore
    from recsys.training.job import _user_columns
    from recsys.training.model import USER_COLUMNS

    store = HistoryStore.open(models)
    if store is None or "users" in store.doc:
        return None
    start = time.perf_counter()
    taxonomy = load_taxonomy()
    source = SourceFile.of(find_table(data, "users"))
    events = pd.DataFrame({c: pd.Series([], dtype=object) for c in required_columns("events")})
    result = validate_tables(
        read_table(find_table(data, "users"), "users"), read_table(find_table(data, "items"), "items"), events,
        taxonomy=taxonomy,
    )
    bundle = (models / "latest").resolve()
    scratch = models.parent / "users_check"
    scratch.mkdir(parents=True, exist_ok=True)
    BundleWriter(scratch).table("users", _user_columns(result.users)[list(USER_COLUMNS)])
    same = pq.read_table(scratch / "users.parquet").equals(pq.read_table(bundle / "users.parquet"))
    shutil.rmtree(scratch)
    if not same:
        print("record_users: the validated users file differs from the bundle's table; not recorded", file=sys.stderr)
        return None
    record = users_record(
        source, taxonomy, result.rows_read["users"],
        result.counts("users"),  # as the engine records it (job.py), reason order included
        read_manifest(bundle)["files"]["users.parquet"],
    )
    # a new store.json (atomic: a new file, not the hard-linked case's one changed in place)
    write_json({**store.doc, "users": record}, store.root / "store.json")
    return {"record_users_s": round(time.perf_counter() - start, 1)}


def read_floor(path: Path) -> dict:
    """Reading the night's events file into memory: the least an incremental training does."""
    start = time.perf_counter()
    table = pq.read_table(path)
    return {"read_day_s": round(time.perf_counter() - start, 2), "read_day_rows": table.num_rows}


def night(
    case: Path, config: Path | None, info: dict, workers: int, full_night: bool,
    *, push: bool = True, check: bool = False, run_name: str = "run",
) -> dict:
    """One night from yesterday's state (in ``case/run_name``): the day's file in, incremental training, push."""
    run = case / run_name
    shutil.rmtree(run, ignore_errors=True)
    linked_copy(case / "models", run / "models")
    recorded = record_users(run / "models", case / "base")
    day_file = case / "night" / f"{info['night_day']}.parquet"
    # the history store names the data folder it validated: the night delivers into the same one
    delivered = case / "base" / "events" / day_file.name
    delivered.unlink(missing_ok=True)
    os.link(day_file, delivered)
    step_memory = run / "step_memory.json"
    try:
        train = bench_push.measured(
            train_cmd(case / "base", run / "models", config, full=False, step_memory=step_memory)
        )
    finally:
        delivered.unlink()  # base/ stays yesterday's data for the next run
    manifest = json.loads(((run / "models" / "latest").resolve() / "manifest.json").read_text(encoding="utf-8"))
    train["steps_s"] = manifest.get("timings_s", {})
    train["steps_peak_rss_mib"] = json.loads(step_memory.read_text(encoding="utf-8"))
    every_step = json.loads((run / "step_seconds.json").read_text(encoding="utf-8"))
    train["every_step_s"] = every_step
    train["outside_steps_s"] = round(train["seconds"] - sum(every_step.values()), 2)
    # an incremental night writes a new history store next to the bundles; it says what it read
    store = json.loads((run / "models" / "history" / "store.json").read_text(encoding="utf-8"))
    train["sources"] = len(store.get("sources", []))
    # an incremental night leaves the last full retrain where it was (yesterday's or before)
    train["mode"] = "incremental" if store["last_full"] != store["end"] else "full"
    result: dict = {"train": train}
    if recorded:
        result.update(recorded)
    result.update(read_floor(day_file))
    if check:
        result["engagement_check"] = engagement_check(run / "models")
    if push:
        push_day = (pd.Timestamp(info["night_day"]) + pd.Timedelta(days=1)).date().isoformat()
        case_view = run  # bench_push.push reads CASE/models/latest and writes CASE/pushes
        result["push"] = bench_push.push(case_view, push_day, workers)
        result["night_s"] = round(train["seconds"] + result["push"]["seconds"], 1)
        result["peak_rss_mib"] = max(train["peak_rss_mib"], result["push"]["peak_rss_mib"])
        result.update(bench_push.floor(case_view))
    if full_night:
        os.link(day_file, delivered)
        try:
            result["full_train"] = bench_push.measured(train_cmd(case / "base", run / "models", config, full=True))
        finally:
            delivered.unlink()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3_100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=60, help="days of log generated")
    parser.add_argument("--history-days", type=int, help="days of log the night sees, its own included (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="local push worker processes")
    parser.add_argument("--config", type=Path, help="engine config TOML for the setup and the night")
    parser.add_argument(
        "--linear",
        action="store_true",
        help="rank with the linear blend ([ranking] ranker = \"linear\"; the learned ranker's full training "
        "refits the other components at each of its cuts)",
    )
    parser.add_argument("--setup-only", action="store_true", help="generate, split and train yesterday's bundle")
    parser.add_argument("--full-night", action="store_true", help="also time a full retrain on the night's data")
    parser.add_argument("--no-push", action="store_true", help="the training of the night only (no push, no floor)")
    parser.add_argument(
        "--run-name", default="run",
        help="folder of the case the night runs in (default run: last night's bundle, which the push "
        "benchmarks read; another name leaves it alone, e.g. for an A/B of two checkouts run one "
        "after the other: the night's day file is delivered into the case's shared base/)",
    )
    parser.add_argument(
        "--engagement-check", action="store_true",
        help="after the night, refit the engagement model in full on the same pairs and compare (not timed in the night)",
    )
    argv = sys.argv[1:] if argv is None else argv
    # a SIGTERM (`timeout`) ends the run through its finally blocks: the night's delivered day file is taken back
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if argv[:1] == ["--train-with-step-memory"]:
        return train_with_step_memory(Path(argv[1]), argv[2:])
    args = parser.parse_args(argv)
    # the night removes and rebuilds this folder: never one of the case's own inputs, never outside it
    if not args.run_name.startswith("run") or Path(args.run_name).name != args.run_name:
        parser.error(f"--run-name {args.run_name!r}: a folder name starting with 'run' (run, run_ab ...)")

    case = OUT / f"{args.users}x{args.items}"
    config = args.config.resolve() if args.config else None
    if args.linear:
        if config is not None:
            parser.error("--linear and --config: put ranker = \"linear\" under [ranking] in the config")
        case.mkdir(parents=True, exist_ok=True)
        config = case / "linear.toml"
        config.write_text('[ranking]\nranker = "linear"\n', encoding="utf-8")
    result: dict = {"users": args.users, "items": args.items, "days": args.days}
    result["generate"] = generate(case, args.users, args.items, args.days)
    result["split"] = split_days(case)
    drop_delivered(case, result["split"])
    kept = keep_days(case, args.history_days)
    result["history_days"] = len(kept) + 1
    result["setup"] = setup(case, config, kept)
    upgraded = upgrade_store(case)
    if upgraded:
        result["setup"].update(upgraded)
    if not args.setup_only:
        result["night"] = night(
            case, config, result["split"], args.workers, args.full_night,
            push=not args.no_push, check=args.engagement_check, run_name=args.run_name,
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
