"""Benchmark ``recsys demand``'s aggregation beside a plain pandas group-by of the same counts.

The city (3.1M users, ~92M events) is too big to generate here in minutes, so
the log is scaled up by replication: a generated base city's users and events
are copied ``r`` times with shifted user ids (``u0000042~3``), items shared.
Each measurement runs in a fresh Python process (its peak RSS is its own):

- ``duckdb``: :func:`recsys.demand.aggregate.daily_counts` (the job's
  columnar step: reads only the needed columns, joins segments and topics,
  counts per day x segment x topic, and each user's reach);
- ``job``: the whole :func:`recsys.demand.analyse` (aggregation, trends,
  supply, gaps, audiences, priorities; no report);
- ``pandas``: the floor -- ``pd.read_parquet`` of the same columns, merge
  with users, explode item topics, ``groupby().size()`` of the same counts.

Usage::

    flock /tmp/heavy.lock python benchmarks/bench_demand.py --users 50000 --replicas 1,4,10

Prints one JSON line per (replicas, method) and a linear extrapolation to
92M events; figures go in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "demand"
CITY_EVENTS = 92_000_000

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
method, folder = sys.argv[1], Path(sys.argv[2])
start = time.perf_counter()
if method == "duckdb":
    import pandas as pd
    from recsys.demand import aggregate
    from recsys.demand.job import make_window
    from recsys.taxonomy import load_taxonomy
    tax = load_taxonomy()
    first, last, _ = aggregate.log_span(folder / "events.parquet")
    window = make_window(first, last, tax, as_of=None, weeks=None, max_weeks=12)
    counts, reach = aggregate.daily_counts(folder, window)
    rows = len(counts)
elif method == "job":
    from recsys.demand import analyse
    result = analyse(folder)
    rows = len(result.tables["demand"])
else:
    import pandas as pd
    users = pd.read_parquet(folder / "users.parquet", columns=["user_id", "group", "sub_group", "region"])
    items = pd.read_parquet(folder / "items.parquet", columns=["item_id", "topics"]).explode("topics")
    ev = pd.read_parquet(folder / "events.parquet", columns=["user_id", "item_id", "event_type", "timestamp"])
    ev = ev[ev["event_type"].isin(["impression", "click", "read"])]
    ev["day"] = (ev["timestamp"] - ev["timestamp"].min().normalize()).dt.days
    ev = ev.merge(users, on="user_id").merge(items, on="item_id")
    counts = ev.groupby(["day", "group", "sub_group", "region", "topics", "event_type"], observed=True).size()
    rows = len(counts)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mib": round(peak), "rows": rows}))
"""


def build(base: Path, replicas: int) -> tuple[Path, int, int]:
    """A folder with the base city's users and events copied ``replicas`` times (items shared)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = OUT / f"x{replicas}"
    if not folder.exists():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copy(base / "items.parquet", tmp / "items.parquet")
        users = pq.read_table(base / "users.parquet")
        events = pq.ParquetFile(base / "events.parquet")
        pq.write_table(
            pa.concat_tables(
                [users.set_column(0, "user_id", pc.binary_join_element_wise(users["user_id"], pa.scalar(f"~{k}"), "")) for k in range(replicas)]
            ),
            tmp / "users.parquet",
        )
        with pq.ParquetWriter(tmp / "events.parquet", events.schema_arrow) as writer:
            for k in range(replicas):
                for g in range(events.num_row_groups):
                    t = events.read_row_group(g)
                    uid = t.schema.get_field_index("user_id")
                    writer.write_table(t.set_column(uid, "user_id", pc.binary_join_element_wise(t["user_id"], pa.scalar(f"~{k}"), "")))
        tmp.rename(folder)
    meta = pq.ParquetFile(folder / "events.parquet").metadata
    return folder, pq.ParquetFile(folder / "users.parquet").metadata.num_rows, meta.num_rows


def measure(method: str, folder: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, method, str(folder)], capture_output=True, text=True, timeout=3600, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--replicas", default="1,4,10")
    parser.add_argument("--methods", default="duckdb,job,pandas")
    parser.add_argument("--pandas-max-events", type=int, default=20_000_000, help="skip the pandas floor above this")
    args = parser.parse_args()
    from recsys.synthetic import generate_city, write_city

    base = OUT / f"base_{args.users}"
    if not base.exists():
        t = time.perf_counter()
        write_city(generate_city(args.users, args.items, days=60, seed=0), base)
        print(f"# generated base city in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    per_event: dict[str, list[float]] = {}
    for r in (int(x) for x in args.replicas.split(",")):
        folder, n_users, n_events = build(base, r)
        for method in args.methods.split(","):
            if method == "pandas" and n_events > args.pandas_max_events:
                continue
            result = {"replicas": r, "users": n_users, "events": n_events, "method": method, **measure(method, folder)}
            print(json.dumps(result), flush=True)
            if "seconds" in result:
                per_event.setdefault(method, []).append(result["seconds"] / n_events)
    for method, values in per_event.items():
        # the largest scale's seconds per event, times the city's events (linear: one pass over the log)
        print(json.dumps({"method": method, "extrapolated_city_seconds": round(values[-1] * CITY_EVENTS, 1)}))


if __name__ == "__main__":
    main()
