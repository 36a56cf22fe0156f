"""``recsys demo``: the whole engine end to end on the bundled synthetic city.

validate the committed sample -> train a bundle -> a few users' lists with
reasons -> demand tracking (what to commission, whom to reach) -> tomorrow's
push lists, raising the demand analysis's priorities -> tomorrow's broadcast programmes -> the
push's lift over its holdout on 3 days replayed from the city's truth -> the
offline evaluation with its headline table. Every output goes under one folder (default ``out/demo``).
:func:`run_demo` composes the library's jobs; nothing here is a job of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from recsys.broadcast.job import BroadcastSpec, run_broadcast
from recsys.demand import run_demand
from recsys.evaluation.job import headline_text, is_evaluation_dir, run_evaluation
from recsys.evaluation.run import EvaluationSettings
from recsys.exceptions import SchemaError
from recsys.io import prepare_output_dir, write_parquet
from recsys.lift import run_lift
from recsys.push.coverage import EXAMPLE_RULES, summary_lines
from recsys.push.nightly import run_nightly
from recsys.push.priorities import summary_lines as priority_lines
from recsys.ranking.recommender import Recommender
from recsys.schema import ValidationResult, validate
from recsys.synthetic.replay import replay_pushes
from recsys.synthetic.truth import GroundTruth
from recsys.taxonomy import load_taxonomy
from recsys.training import train

#: the committed synthetic city (in a source checkout)
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "synthetic" / "sample"


def _say(stream: TextIO | None, text: str = "") -> None:
    if stream is not None:
        print(text, file=stream, flush=True)


def run_demo(
    data: str | Path = SAMPLE,
    out: str | Path = "out/demo",
    *,
    users_to_show: int = 3,
    stream: TextIO | None = sys.stdout,
    force: bool = False,
) -> dict[str, Any]:
    """Run every job on ``data``; return where each output went.

    ``out`` must be new, empty, or a folder an earlier demo wrote (``force``
    writes beside other files, leaving them alone); its ``models``,
    ``pushes`` and ``evaluation`` sub-folders are each checked by their job.
    """

    data, out = Path(data), Path(out)
    if not (data / "users.parquet").exists() and not (data / "users.csv").exists():
        raise SchemaError(
            f"{data}: no synthetic city here; regenerate the sample with `recsys generate --sample`"
        )
    target = prepare_output_dir(out, "demo", force=force, recognise=lambda p: _is_demo(p))
    outputs: dict[str, Any] = {}

    _say(stream, f"== 1. validate {data}")
    result = validate(data=data)
    for kind in ("users", "items", "events"):
        _say(stream, f"   {kind:<7} {len(getattr(result, kind)):>8} clean rows")
    _say(stream, f"   quarantined: {result.counts() or 'none'}")

    _say(stream, f"\n== 2. train a model bundle into {out / 'models'}")
    summary = train(data, out / "models", stream=sys.stderr if stream is not None else None)
    outputs["model"] = summary["bundle"]

    _say(stream, "\n== 3. in-process recommendations (Recommender.recommend)")
    rec = Recommender.load(out / "models" / "latest")
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8")) if (data / "manifest.json").exists() else {}
    warm = result.events[result.events["event_type"].isin(["click", "read", "like"])]["user_id"].drop_duplicates()
    for user_id in warm.sort_values().head(users_to_show):
        row = result.users.set_index("user_id").loc[user_id]
        _say(stream, f"   user {user_id} ({row['group']}, {row['region']}):")
        for r in rec.recommend(user_id, k=5):
            _say(stream, f"     {r.item_id:<8} {r.score:6.3f}  {' | '.join(r.reasons)}")

    # the pushes go out on the local day that starts where the log ends
    end = pd.Timestamp(manifest.get("end") or summary["data_window"]["end"])
    date = end.tz_convert(load_taxonomy().timezone).date()
    # the city's broadcast places (a sample generated before places existed has none)
    places = next((p for p in (data / "places.parquet", data / "places.csv") if p.exists()), None)
    priorities = _demand(data, out / "demand", stream)
    if priorities is not None:
        outputs["demand"] = str(out / "demand")
    _say(stream, f"\n== 4. nightly push lists for {date} into {out / 'pushes'}, meeting the plan's coverage rules"
                 + (" and raising the demand analysis's priority topics" if priorities is not None else ""))
    push_manifest = run_nightly(out / "models" / "latest", date.isoformat(), out / "pushes",
                                 places=places, coverage=EXAMPLE_RULES[:2], priorities=priorities,
                                 stream=sys.stderr if stream is not None else None)
    outputs["pushes"] = str(out / "pushes")
    outputs["push_rows"] = push_manifest.get("rows")
    for line in summary_lines(push_manifest.get("coverage") or {}):
        _say(stream, line)
    if push_manifest.get("priorities"):
        for line in priority_lines(push_manifest["priorities"]):
            _say(stream, line)
    if places is not None:
        _say(stream, f"\n== 4b. broadcast programmes (TV, radio, cinema, kiosk) for {date} into {out / 'programmes'}")
        # the demand analysis's priority topics are chosen first where their audiences watch, as in the push
        programmes = run_broadcast(
            BroadcastSpec(model=out / "models" / "latest", day=date, places=places, out=out / "programmes",
                          priorities=priorities),
            warn_stream=sys.stderr if stream is not None else None,
        )
        for channel, s in programmes["channels"].items():
            _say(stream, f"   {channel:<7} {s['places']:>5} places  {s['rows']:>6} items  {s['fill_share']:.1%} filled")
        outputs["programmes"] = str(out / "programmes")
    if (data / "truth").is_dir():
        _say(stream, "\n== 4c. replay 3 days after the push from the city's truth; measure its lift over the holdout")
        outputs["lift"] = _replay_and_lift(data / "truth", result, out, date, stream)

    _say(stream, f"\n== 5. offline evaluation into {out / 'evaluation'}")
    metrics = run_evaluation(data, out / "evaluation", settings=EvaluationSettings(split_quantile=0.8),
                               log=(lambda line: print(line, file=sys.stderr)) if stream is not None else None)
    outputs["evaluation"] = metrics["out"]
    _say(stream, "\n" + headline_text(metrics))
    _say(stream, "\noutputs:")
    for key, value in outputs.items():
        _say(stream, f"   {key:<11} {value}")
    _say(stream, f"   report      {Path(metrics['out']) / 'report.html'}")
    target.mark(list(DEMO_ENTRIES))
    return outputs


def _demand(data: Path, out: Path, stream: TextIO | None) -> Path | None:
    """``recsys demand`` on the data folder; return its ``priorities.toml`` for the push (None: not run, said why)."""
    _say(stream, f"\n== 3b. demand tracking into {out}: what to commission, whom the push leaves behind")
    if not all((data / f"{kind}.parquet").exists() for kind in ("users", "items", "events")):
        # demand reads Parquet tables in place; a CSV city is validated into memory only here
        _say(stream, "   skipped: demand tracking reads the Parquet tables; run `recsys validate` and then `recsys demand`")
        return None
    result = run_demand(data, out)
    s = result.summary
    _say(stream, f"   {s['rising']} rising, {s['falling']} falling of {s['cells_tested']:,} cells; {s['gaps']} gaps; "
                 f"{s['under_served']} under-served audiences; {s['priority_audiences']} priority audiences")
    for _, en in result.recommendations[:3]:
        _say(stream, f"   - {en}")
    _say(stream, f"   report {out / 'report.html'}")
    return out / "priorities.toml"


def _replay_and_lift(truth_dir: Path, clean: ValidationResult, out: Path, date: dt.date, stream: TextIO | None) -> str:
    """Draw the days after the push from the truth (``replayed_events/``), run ``recsys lift`` on them."""
    replay = replay_pushes(GroundTruth.load(truth_dir), clean.users, clean.items, out / "pushes", date, days=3, seed=0)
    write_parquet(replay.events, out / "replayed_events" / "events.parquet")
    summary = run_lift(out / "pushes", out / "replayed_events", date, days=3, stream=None)
    for warning in summary.get("warnings", []):
        _say(stream, f"   warning: {warning}")  # e.g. an older engine's lift output inside pushes/
    lift = pd.read_parquet(Path(summary["output"]) / "lift.parquet")
    row = lift[(lift["dimension"] == "all") & (lift["outcome"] == "engaged_items")].iloc[0]
    _say(stream, f"   items engaged per user over 3 days: pushed {row['treated_mean']:.3f}, holdout {row['holdout_mean']:.3f}")
    _say(stream, f"   lift {row['lift']:+.3f} [{row['lift_low']:.3f}, {row['lift_high']:.3f}] (95%); "
                 f"the truth's lift over the pushed users: {replay.expected_lift():+.3f}")
    return summary["output"]


#: what a demo writes in its folder
DEMO_ENTRIES = ("models", "demand", "pushes", "pushes-lift", "programmes", "replayed_events", "evaluation")


def _is_demo(folder: Path) -> bool:
    """A folder an older demo wrote (before the output marker): only its own sub-folders, and at
    least the models, the pushes and an evaluation that evaluate recognises as its own (a folder of
    someone's ``models/`` alone is not the demo's, and would be replaced as its own)."""
    names = {e.name for e in folder.iterdir()}
    return names <= set(DEMO_ENTRIES) and {"models", "pushes", "evaluation"} <= names and is_evaluation_dir(folder / "evaluation")
