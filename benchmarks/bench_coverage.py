"""What coverage rules cost: simulated engagements per push with and without ``[[push.coverage]]``.

A synthetic city is generated and trained once (kept under
``benchmarks/out/coverage/<users>x<items>/``). Then the nightly push runs
``--nights`` consecutive nights twice, each run with its own push history:

* **peer**: no rules -- the push as it ranks;
* **plan**: the issue's two rules (``RULES`` below): every push-eligible
  farmer of qinglong and lulong gets an item of modern agriculture or
  disaster prevention every 7 days, and 60% of each region's elderly
  residents get a health or safety item every 7 days, a region's broadcast
  places (the city's ``places.parquet``) counting for ``broadcast_reach`` of them;
* **binding**: those two plus three rules the ranking alone does not meet
  (``BINDING`` below: the plan's topics for groups that rarely get them --
  disaster prevention for every pupil and student, health for every
  resident, health for 60% of the farmers of each region), so the swaps'
  cost is measured where there are many.

Every pushed row is scored by the generator's true engagement probability
at its send time (:meth:`recsys.synthetic.GroundTruth.engagement_prob_pairs`, the
channel included); a night's simulated engagements are their sum. The loss
per push is ``1 - rules / peer`` for the same night. Also reported: how many
members each rule reached of those it had to, the items swapped in, the
cost the push itself estimated (ranking score), and the push's run time with
and without rules.

Usage::

    flock /tmp/heavy.lock python benchmarks/bench_coverage.py --users 20000 --items 4000 --nights 7

Prints one JSON document; figures go in benchmarks/README.md ("Coverage").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

from recsys.push.coverage import EXAMPLE_RULES

OUT = Path(__file__).resolve().parent / "out" / "coverage"
ROOT = Path(__file__).resolve().parent.parent
FIRST_NIGHT = dt.date(2026, 7, 1)  # the generated log ends at midnight starting this day

#: the issue's two rules, the elderly one counting broadcast places
RULES = [dict(r) for r in EXAMPLE_RULES[:2]]
#: rules the ranking alone leaves mostly unmet on the synthetic city (under a fifth of the members
#: get such an item on a night without rules)
BINDING = [dict(r) for r in EXAMPLE_RULES[2:]]


def build(n_users: int, n_items: int, days: int) -> Path:
    """Generate and train the case once; return its folder."""
    case = OUT / f"{n_users}x{n_items}"
    if (case / "models" / "latest").exists():
        return case
    from recsys.synthetic import generate_city, write_city

    write_city(generate_city(n_users, n_items, days=days, seed=0), case / "data")
    subprocess.run(
        [str(Path(sys.executable).parent / "recsys"), "train", "--data", str(case / "data"), "--out",
         str(case / "models")],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )
    return case


def simulated(rows: pd.DataFrame, truth) -> float:
    """Sum of the rows' true engagement probabilities at their send times, on their channels."""
    if not len(rows):
        return 0.0
    prob = truth.engagement_prob_pairs(
        rows["user_id"].astype(str).to_numpy(), rows["item_id"].astype(str).to_numpy(),
        rows["channel"].astype(str).to_numpy(), at=pd.to_datetime(rows["send_after"]),
    )
    return float(np.sum(prob))


def run_nights(case: Path, name: str, rules: list, nights: int, workers: int, truth) -> list[dict]:
    """``nights`` consecutive nightly pushes into their own folder; per night: engagements, coverage, time."""
    from recsys.push import run_nightly
    from recsys.push.writer import read_pushes

    out = case / f"pushes-{name}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = case / f"{name}.toml"
    cfg.write_text(tomli_w.dumps({"push": {"workers": workers, "coverage": rules}}), encoding="utf-8")
    places = case / "data" / "places.parquet"
    result = []
    for n in range(nights):
        day = FIRST_NIGHT + dt.timedelta(days=n)
        t0 = time.perf_counter()
        report = run_nightly(case / "models" / "latest", day, out, config_path=cfg,
                             places=places if rules and places.exists() else None, stream=None, warn_stream=None)
        seconds = time.perf_counter() - t0
        rows = read_pushes(out, day)
        result.append({
            "day": day.isoformat(), "rows": int(len(rows)), "pushed_users": int(rows["user_id"].nunique()),
            "engagements": simulated(rows, truth), "seconds": round(seconds, 2),
            "coverage": (report.get("coverage") or {}).get("rules"),
        })
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=4_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--nights", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)

    from recsys.evaluation.simulate import load_truth

    t0 = time.perf_counter()
    case = build(args.users, args.items, args.days)
    setup_s = time.perf_counter() - t0
    truth = load_truth(case / "data")
    peer = run_nights(case, "peer", [], args.nights, args.workers, truth)
    arms = {
        "plan": run_nights(case, "plan", RULES, args.nights, args.workers, truth),
        "binding": run_nights(case, "binding", RULES + BINDING, args.nights, args.workers, truth),
    }
    print(json.dumps({
        "case": {"users": args.users, "items": args.items, "days": args.days, "nights": args.nights,
                 "workers": args.workers, "setup_s": round(setup_s, 1)},
        "seconds_per_push_peer": round(float(np.mean([p["seconds"] for p in peer])), 2),
        **{name: compare(peer, rules) for name, rules in arms.items()},
    }, indent=1))
    return 0


def compare(peer: list[dict], rules: list[dict]) -> dict:
    """Loss per push of one arm against the peer, night by night, with the rules' coverage."""
    nights = []
    for p, r in zip(peer, rules):
        nights.append({
            "day": p["day"],
            "engagements_peer": round(p["engagements"], 2),
            "engagements_rules": round(r["engagements"], 2),
            "loss_share": round(1.0 - r["engagements"] / p["engagements"], 4) if p["engagements"] else None,
            "rows_peer": p["rows"], "rows_rules": r["rows"],
            "seconds_peer": p["seconds"], "seconds_rules": r["seconds"],
            "rules": {
                name: {k: v[k] for k in ("users", "required", "reached_before", "reached", "shortfall",
                                          "items_added", "cost_score", "unmet")}
                for name, v in (r["coverage"] or {}).items()
            },
        })
    losses = [n["loss_share"] for n in nights if n["loss_share"] is not None]
    total_peer = sum(p["engagements"] for p in peer)
    total_rules = sum(r["engagements"] for r in rules)
    return {
        "loss_per_push": {"mean": round(float(np.mean(losses)), 4), "max": round(float(np.max(losses)), 4),
                          "over_all_nights": round(1.0 - total_rules / total_peer, 4)},
        "seconds_per_push": round(float(np.mean([r["seconds"] for r in rules])), 2),
        "nights": nights,
    }


if __name__ == "__main__":
    raise SystemExit(main())
