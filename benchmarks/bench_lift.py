"""Benchmark ``recsys lift`` on a night of a whole city, beside a bare pandas/pyarrow floor.

A night's inputs are made synthetically at ``--users`` (default 3,000,000)
and kept under ``benchmarks/out/lift/<users>/``:

* ``users.parquet``: group, region, 1-3 personal channels, 3% opted out;
* ``pushes/``: the nightly partition -- one list per user on one channel
  (3 or 5 items), a 5% holdout (``_holdout.pq``, opted-out users included as
  the push writes it) and a manifest; push rows carry ``user_id, rank,
  item_id, score`` (lift reads only the first three);
* ``events/``: three days of events, 3 files (one a day): an impression per
  pushed row and about one background impression per user, a click on ~20%
  of pushed rows (less in the holdout's background), a read after half the
  clicks; 50,000 items.

Then, in the same run:

1. **lift**: ``recsys lift`` in a fresh process (read, arms, outcomes per
   group/region/channel, intervals, click-through, Parquet + report), timed end
   to end, with its peak resident memory (``ru_maxrss`` of the child);
2. **floor**: the least any such measure must do -- pyarrow reads the same
   columns, pandas keeps the positive events, counts distinct engaged items
   per user with one ``groupby``, joins users, the holdout and the pushed rows,
   and takes the two arms' means (no per-group cells, intervals, channels,
   click-through or report).

Usage::

    flock /tmp/heavy.lock python benchmarks/bench_lift.py --users 3000000

Prints one JSON line; figures go in benchmarks/README.md ("Lift").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.taxonomy import load_taxonomy

OUT = Path(__file__).resolve().parent / "out" / "lift"
DAY = dt.date(2026, 7, 1)
N_ITEMS = 50_000
SEED = 0


def _ids(prefix: str, n: int) -> pa.Array:
    return pa.array([f"{prefix}{i:07d}" for i in range(n)], type=pa.string())


def make_night(n_users: int, folder: Path) -> None:
    """Write the synthetic night (users, pushes, events) into ``folder``."""
    tax = load_taxonomy()
    rng = np.random.default_rng(SEED)
    groups, regions, personal = list(tax.groups), list(tax.regions), list(tax.personal_channels)
    folder.mkdir(parents=True, exist_ok=True)
    users = _ids("u", n_users)
    items = _ids("i", N_ITEMS)
    # channels: a random non-empty subset of the personal channels
    mask = rng.random((n_users, len(personal))) < 0.5
    mask[~mask.any(axis=1), 0] = True
    offsets = np.concatenate(([0], np.cumsum(mask.sum(axis=1)))).astype(np.int32)
    flat = pa.array(np.array(personal, dtype=object)[np.nonzero(mask)[1]], type=pa.string())
    opted = rng.random(n_users) < 0.03
    pq.write_table(
        pa.table(
            {
                "user_id": users,
                "group": pa.array(np.array(groups, dtype=object)[rng.integers(0, len(groups), n_users)]),
                "region": pa.array(np.array(regions, dtype=object)[rng.integers(0, len(regions), n_users)]),
                "channels": pa.ListArray.from_arrays(pa.array(offsets), flat),
                "push_opt_out": pa.array(opted),
            }
        ),
        folder / "users.parquet",
    )
    held = rng.random(n_users) < 0.05
    treated = ~held & ~opted
    first_channel = np.argmax(mask, axis=1)
    part = folder / "pushes" / f"date={DAY}" / "kind=nightly"
    tz = tax.timezone
    start = pd.Timestamp(DAY).tz_localize(tz).tz_convert("UTC").value // 1000  # microseconds
    day_us = 86_400 * 10**6
    ev_user, ev_item, ev_type, ev_t, ev_chan = [], [], [], [], []
    for c, channel in enumerate(personal):
        who = np.flatnonzero(treated & (first_channel == c))
        k = 3 if channel == "app_push" else 5
        row_user = np.repeat(who, k)
        row_item = rng.integers(0, N_ITEMS, len(row_user))
        rank = np.tile(np.arange(1, k + 1, dtype=np.int16), len(who))
        (part / f"channel={channel}").mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.table(
                {
                    "user_id": users.take(pa.array(row_user)),
                    "rank": pa.array(rank),
                    "item_id": items.take(pa.array(row_item)),
                    "score": pa.array(rng.random(len(row_user)).astype(np.float32)),
                }
            ),
            part / f"channel={channel}" / "part-00000.parquet",
        )
        t = start + rng.integers(8 * 3600, 21 * 3600, len(row_user)) * 10**6
        click = rng.random(len(row_user)) < 0.2
        ev_user += [row_user, row_user[click]]
        ev_item += [row_item, row_item[click]]
        ev_type += [np.zeros(len(row_user), np.int8), np.ones(int(click.sum()), np.int8)]
        ev_t += [t, t[click] + 600 * 10**6]
        ev_chan += [np.full(len(row_user), c, np.int8), np.full(int(click.sum()), c, np.int8)]
    # background: about one impression a user over the three days, 8% clicked
    bg_user = np.flatnonzero(rng.random(n_users) < 1.0)
    bg_user = np.repeat(bg_user, rng.poisson(1.0, len(bg_user)))
    bg_item = rng.integers(0, N_ITEMS, len(bg_user))
    bg_t = start + rng.integers(0, 3 * day_us, len(bg_user))
    bg_c = first_channel[bg_user].astype(np.int8)
    bg_click = rng.random(len(bg_user)) < 0.08
    ev_user += [bg_user, bg_user[bg_click]]
    ev_item += [bg_item, bg_item[bg_click]]
    ev_type += [np.zeros(len(bg_user), np.int8), np.ones(int(bg_click.sum()), np.int8)]
    ev_t += [bg_t, bg_t[bg_click] + 300 * 10**6]
    ev_chan += [bg_c, bg_c[bg_click]]
    u, i, ty, t, ch = (np.concatenate(x) for x in (ev_user, ev_item, ev_type, ev_t, ev_chan))
    # half the clicks get a read
    clicks = np.flatnonzero(ty == 1)
    reads = clicks[rng.random(len(clicks)) < 0.5]
    u, i, t, ch = (np.concatenate([x, x[reads]]) for x in (u, i, t, ch))
    ty = np.concatenate([ty, np.full(len(reads), 2, np.int8)])
    t = np.minimum(t, start + 3 * day_us - 1)
    types = pa.array(["impression", "click", "read"])
    (folder / "events").mkdir(exist_ok=True)
    day = (t - start) // day_us
    for d in range(3):
        sel = np.flatnonzero(day == d)
        sel = sel[np.argsort(t[sel], kind="stable")]
        pq.write_table(
            pa.table(
                {
                    "user_id": users.take(pa.array(u[sel])),
                    "item_id": items.take(pa.array(i[sel])),
                    "event_type": types.take(pa.array(ty[sel])),
                    "timestamp": pa.array(t[sel], type=pa.timestamp("us", tz="UTC")),
                    "channel": pa.array(np.array(personal, dtype=object)[ch[sel]]),
                }
            ),
            folder / "events" / f"events-{d}.parquet",
        )
    pq.write_table(
        pa.table(
            {
                "user_id": users.filter(pa.array(held)),
                "group": pa.array(np.array(groups, dtype=object)[np.zeros(int(held.sum()), dtype=int)]),
                "region": pa.array(np.array(regions, dtype=object)[np.zeros(int(held.sum()), dtype=int)]),
            }
        ),
        part / "_holdout.pq",
    )
    manifest = {
        "date": DAY.isoformat(),
        "kind": "nightly",
        "model": "",
        "segment": {"group": None, "region": None, "channel": None, "topic": None},
        "config": {"users": str(folder / "users.parquet"), "holdout_share": 0.05},
        "users": {"computed": int(treated.sum()), "skipped": {"holdout": int((held & ~opted).sum())}},
    }
    (part / "_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "done").write_text("ok", encoding="utf-8")


def floor(folder: Path) -> dict[str, float]:
    """The bare measure: both arms' mean distinct engaged items, pandas/pyarrow only."""
    t0 = time.perf_counter()
    ev = pq.read_table(folder / "events", columns=["user_id", "item_id", "event_type"])
    ev = ev.filter(pc.is_in(ev.column("event_type"), value_set=pa.array(["click", "read"])))
    frame = ev.select(["user_id", "item_id"]).to_pandas()
    per_user = frame.drop_duplicates().groupby("user_id").size().rename("y")
    users = pq.read_table(folder / "users.parquet", columns=["user_id", "push_opt_out"]).to_pandas()
    held = pq.read_table(folder / "pushes" / f"date={DAY}" / "kind=nightly" / "_holdout.pq", columns=["user_id"]).to_pandas()
    pushed = pq.read_table(folder / "pushes", columns=["user_id"]).to_pandas().drop_duplicates()
    users = users[~users["push_opt_out"]].merge(per_user, left_on="user_id", right_index=True, how="left")
    users["y"] = users["y"].fillna(0)
    users["arm"] = np.where(users["user_id"].isin(held["user_id"]), "holdout",
                            np.where(users["user_id"].isin(pushed["user_id"]), "pushed", "other"))
    means = users.groupby("arm")["y"].mean()
    return {"seconds": time.perf_counter() - t0, "lift": float(means["pushed"] - means["holdout"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3_000_000)
    args = parser.parse_args()
    folder = OUT / str(args.users)
    t0 = time.perf_counter()
    if not (folder / "done").exists():
        make_night(args.users, folder)
    made = time.perf_counter() - t0
    rows = sum(pq.read_metadata(p).num_rows for p in (folder / "pushes").rglob("part-*.parquet"))
    events = sum(pq.read_metadata(p).num_rows for p in (folder / "events").glob("*.parquet"))
    out = folder / "lift_out"
    cmd = [sys.executable, "-m", "recsys.cli", "lift", "--pushes", str(folder / "pushes"), "--events",
           str(folder / "events"), "--date", DAY.isoformat(), "--out", str(out)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lift_s = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    bare = floor(folder)
    table = pd.read_parquet(out / "lift.parquet")
    overall = table[(table["dimension"] == "all") & (table["outcome"] == "engaged_items")].iloc[0]
    print(json.dumps({
        "users": args.users, "push_rows": rows, "events": events, "make_s": round(made, 1),
        "lift_s": round(lift_s, 1), "lift_peak_gib": round(peak_gib, 2), "floor_s": round(bare["seconds"], 1),
        "ratio": round(lift_s / bare["seconds"], 2), "lift": round(float(overall["lift"]), 4),
        "floor_lift": round(bare["lift"], 4),
    }))


if __name__ == "__main__":
    main()
