"""Benchmark ``recsys monitor``: an hour of city events, a day's backlog, memory, and the false-alarm rate.

Speed (``--items``, ``--rate``): a synthetic city's stream (``recsys.synthetic.stream``)
is written as one Parquet file per hour under ``benchmarks/out/monitor/``, then

1. the backlog: one run over ``--backlog-hours`` hourly files (the outage case), in a
   fresh process, timed end to end, with its peak resident memory (``VmHWM``: ``ru_maxrss``
   would carry the forking parent's peak across ``exec``);
2. the hourly runs: ``--hours`` further runs, each over the one new hour, each in a
   fresh process: wall time of the process and of the run itself, and peak memory
   (flat = the same for every run, whatever the number of hours behind it);
3. the floor, in the same run: a bare ``pandas.read_parquet`` of the same file(s) and
   a ``groupby(["item_id", "event_type"]).size()`` -- the least any counter must do.

False alarms (``--quiet-windows N``): a small city with ``--quiet-baseline-days`` of quiet
stream, then N quiet hourly runs: the share of runs raising any alarm (the
configured ``alpha`` bounds it), alarms per test, and the detection of planted
items: ``--trials`` hours each with one bad item (reports at 5% per non-click
impression, from the hour's start) and one viral item (x6), counted as caught
when the first run over that hour holds / alerts them (holds reported by the size of the
burst: the reports the bad item drew in that hour).

Usage::

    python benchmarks/bench_monitor.py --items 20000 --rate 250000 --backlog-hours 24 --hours 4
    python benchmarks/bench_monitor.py --quiet-windows 120 --trials 10

Prints JSON lines; figures go in benchmarks/README.md ("Monitor").
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "out" / "monitor"
ROOT = Path(__file__).resolve().parent.parent
START = pd.Timestamp("2026-06-01T00:00:00Z")
NOW = "2026-07-01T00:00:00+00:00"

# one monitor run in a fresh process; prints its report's figures and the process's peak memory
_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from recsys.config import MonitorConfig
from recsys.monitor import run_monitor
r = run_monitor(sys.argv[1], sys.argv[2], catalog=sys.argv[3], now=pd.Timestamp(sys.argv[4]),
                config=MonitorConfig(baseline_days=int(sys.argv[5])))
# the high-water mark of this process image (ru_maxrss would include the forking parent's)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"run_s": round(r.seconds, 3), "process_s": round(time.perf_counter() - t0, 3),
                  "rows": r.rows_counted, "files": len(r.files_read), "tests": r.tests, "alerts": len(r.alerts),
                  "peak_rss_mib": round(hwm / 1024, 1)}))
"""


def _child(events: Path, state: Path, catalog: Path, baseline_days: int) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(events),
            str(state),
            str(catalog),
            NOW,
            str(baseline_days),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _floor(paths: list[Path]) -> float:
    t0 = time.perf_counter()
    frame = pd.concat(
        [
            pd.read_parquet(p, columns=["item_id", "event_type", "timestamp"])
            for p in paths
        ]
    )
    frame.groupby(["item_id", "event_type"]).size()
    return round(time.perf_counter() - t0, 3)


def speed(args: argparse.Namespace) -> None:
    from recsys.synthetic import generate_city
    from recsys.synthetic.stream import make_stream, write_stream

    case = OUT / f"{args.items}x{args.rate}"
    events, staged = case / "events", case / "staged"
    total = args.backlog_hours + args.hours
    city = generate_city(args.users, args.items, days=7, seed=1)
    catalog = case / "items.parquet"
    if not (
        staged
        / f"events-{(START + pd.Timedelta(hours=total - 1)).strftime('%Y%m%dT%H')}.parquet"
    ).exists():
        shutil.rmtree(case, ignore_errors=True)
        staged.mkdir(parents=True)
        t0 = time.perf_counter()
        write_stream(
            make_stream(
                city.truth,
                start=START,
                hours=total,
                impressions_per_hour=args.rate,
                seed=1,
            ),
            staged,
        )
        print(
            json.dumps(
                {
                    "generated_hours": total,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            ),
            flush=True,
        )
    city.items.to_parquet(catalog)
    shutil.rmtree(events, ignore_errors=True)
    shutil.rmtree(case / "state", ignore_errors=True)
    events.mkdir()
    files = sorted(staged.glob("events-*.parquet"))
    for f in files[: args.backlog_hours]:
        shutil.copy(f, events / f.name)
    backlog = _child(events, case / "state", catalog, args.baseline_days)
    print(
        json.dumps(
            {
                "case": "backlog",
                "hours": args.backlog_hours,
                **backlog,
                "floor_read_groupby_s": _floor(files[: args.backlog_hours]),
            }
        ),
        flush=True,
    )
    for f in files[args.backlog_hours :]:
        shutil.copy(f, events / f.name)
        hourly = _child(events, case / "state", catalog, args.baseline_days)
        print(
            json.dumps(
                {
                    "case": "hour",
                    "file": f.name,
                    **hourly,
                    "floor_read_groupby_s": _floor([f]),
                }
            ),
            flush=True,
        )


def false_alarms(args: argparse.Namespace) -> None:
    from recsys.config import MonitorConfig
    from recsys.holds import held_items
    from recsys.monitor import run_monitor
    from recsys.synthetic import generate_city
    from recsys.synthetic.stream import Plant, make_stream, write_stream

    city = generate_city(args.quiet_users, args.quiet_items, days=7, seed=5)
    cfg = MonitorConfig(baseline_days=args.quiet_baseline_days)
    root = Path(tempfile.mkdtemp(prefix="bench_monitor_"))
    catalog = root / "items.parquet"
    city.items.to_parquet(catalog)
    warm = 24 * (args.quiet_baseline_days + 1)
    now = pd.Timestamp(NOW)

    def hours(first: int, n: int, plants=()):
        return make_stream(
            city.truth,
            start=START,
            hours=n,
            first_hour=first,
            impressions_per_hour=args.quiet_rate,
            seed=5,
            plants=plants,
        )

    frames = list(hours(0, warm))
    shown = (
        pd.concat(f for _, f in frames)
        .query("event_type == 'impression'")["item_id"]
        .value_counts()
    )
    write_stream(iter(frames), root / "ev")
    run_monitor(root / "ev", root / "state", catalog=catalog, config=cfg, now=now)
    shutil.copytree(root / "state", root / "state0")
    shutil.copytree(root / "ev", root / "ev0")
    runs_alarmed = alarms = tests = holds = 0
    kinds: dict[str, int] = {}
    t0 = time.perf_counter()
    for h in range(warm, warm + args.quiet_windows):
        write_stream(hours(h, 1), root / "ev")
        r = run_monitor(
            root / "ev", root / "state", catalog=catalog, config=cfg, now=now
        )
        runs_alarmed += bool(r.alerts)
        alarms += len(r.alerts)
        # a false hold is the costly error: an item taken out for nothing
        holds += len(r.held)
        tests += r.tests
        for a in r.alerts:
            kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
    print(
        json.dumps(
            {
                "case": "quiet",
                "items": args.quiet_items,
                "impressions_per_hour": args.quiet_rate,
                "windows": args.quiet_windows,
                "alpha": cfg.alpha,
                "runs_with_alarm": runs_alarmed,
                "alarms": alarms,
                "holds": holds,
                "tests": tests,
                "alarms_by_kind": kinds,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        ),
        flush=True,
    )
    # detection: each trial starts from the warm state, plants one bad and one viral item, one run
    rng = np.random.default_rng(7)
    upper = list(shown.index[: len(shown) // 2])
    viral_first = 0
    # held in the first run, by the size of the burst (reports in the planted hour)
    by_burst: dict[str, list[int]] = {"<5": [0, 0], "5-9": [0, 0], "10+": [0, 0]}
    for trial in range(args.trials):
        bad, viral = rng.choice(upper, 2, replace=False)
        ev, state = root / f"t{trial}ev", root / f"t{trial}state"
        shutil.copytree(root / "ev0", ev)
        shutil.copytree(root / "state0", state)
        begin = START + pd.Timedelta(hours=warm)
        plants = [Plant(str(bad), "bad", begin), Plant(str(viral), "viral", begin)]
        hour = list(hours(warm, 1, plants))
        frame = hour[0][1]
        reports = int(
            ((frame["item_id"] == bad) & (frame["event_type"] == "report")).sum()
        )
        write_stream(iter(hour), ev)
        r = run_monitor(ev, state, catalog=catalog, config=cfg, now=now)
        bucket = "<5" if reports < 5 else "5-9" if reports < 10 else "10+"
        by_burst[bucket][0] += str(bad) in held_items(state)
        by_burst[bucket][1] += 1
        viral_first += any(
            a["kind"] == "spread_spike" and a["item_id"] == str(viral) for a in r.alerts
        )
    print(
        json.dumps(
            {
                "case": "planted",
                "trials": args.trials,
                "bad_held_in_first_run_by_reports_in_hour": {
                    k: f"{held}/{n}" for k, (held, n) in by_burst.items()
                },
                "viral_alerted_in_first_run": viral_first,
                "items_from": "the better-shown half",
            }
        ),
        flush=True,
    )
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--users", type=int, default=100000)
    parser.add_argument(
        "--rate",
        type=int,
        default=250000,
        help="impressions per hour (events are ~1.1x)",
    )
    parser.add_argument("--backlog-hours", type=int, default=24)
    parser.add_argument("--hours", type=int, default=4)
    parser.add_argument(
        "--baseline-days",
        type=int,
        default=28,
        help="[monitor] baseline_days of the speed runs",
    )
    parser.add_argument(
        "--quiet-baseline-days",
        type=int,
        default=2,
        help="baseline days of the false-alarm runs",
    )
    parser.add_argument("--quiet-windows", type=int, default=0)
    parser.add_argument("--quiet-items", type=int, default=300)
    parser.add_argument("--quiet-users", type=int, default=2000)
    parser.add_argument("--quiet-rate", type=int, default=30000)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()
    if not args.no_speed:
        speed(args)
    if args.quiet_windows:
        false_alarms(args)


if __name__ == "__main__":
    main()
