"""The monitor on the synthetic stream: planted trouble is caught, a quiet city raises (almost) nothing,
and a held item leaves the next recommendations (the issue's "done when")."""

from __future__ import annotations

import json

import pandas as pd
import push_city
import pytest

from recsys import holds as H
from recsys.cli import main
from recsys.config import MonitorConfig
from recsys.exceptions import ConfigError
from recsys.monitor import run_monitor
from recsys.ranking import Recommender
from recsys.schema import validate_tables
from recsys.synthetic import generate_city
from recsys.synthetic.stream import Plant, make_stream, write_stream
from recsys.training import train_model

START = pd.Timestamp("2026-06-01T00:00:00Z")
NOW = pd.Timestamp("2026-07-01T00:00:00Z")
CFG = MonitorConfig(baseline_days=2)
BASE_HOURS = 72
RATE = 15000  # impressions per hour over 120 items


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small city, its catalogue file, three days of quiet stream and the monitor's state after them."""
    root = tmp_path_factory.mktemp("stream_world")
    city = generate_city(400, 120, days=14, seed=11)
    city.items.to_parquet(root / "items.parquet")
    frames = list(
        make_stream(
            city.truth, start=START, hours=BASE_HOURS, impressions_per_hour=RATE, seed=2
        )
    )
    shown = (
        pd.concat(f for _, f in frames)
        .query("event_type == 'impression'")["item_id"]
        .value_counts()
    )
    write_stream(iter(frames), root / "ev")
    first = run_monitor(
        root / "ev", root / "state", catalog=root / "items.parquet", config=CFG, now=NOW
    )
    assert first.rows_counted > BASE_HOURS * RATE
    return city, root, shown


def _copy_state(root, dest):
    import shutil

    shutil.copytree(root / "ev", dest / "ev")
    shutil.copytree(root / "state", dest / "state")
    return dest / "ev", dest / "state"


def _hour(city, h: int, plants=()) -> tuple:
    stream = make_stream(
        city.truth,
        start=START,
        hours=1,
        first_hour=h,
        impressions_per_hour=RATE,
        seed=2,
        plants=plants,
    )
    return next(stream)


def test_the_quiet_stream_is_stationary_and_the_plants_act(world):
    city, _, _ = world
    bad, viral = city.items["item_id"].iloc[0], city.items["item_id"].iloc[1]
    quiet = _hour(city, 80)[1]
    planted = _hour(city, 80, [Plant(bad, "bad", START), Plant(viral, "viral", START)])[
        1
    ]

    def rate(frame, item, etype):
        sub = frame[frame["item_id"] == item]
        return (sub["event_type"] == etype).sum() / max(
            (sub["event_type"] == "impression").sum(), 1
        )

    assert rate(planted, bad, "report") > 10 * max(rate(quiet, bad, "report"), 1e-3)
    assert (planted["item_id"] == viral).sum() > 3 * (quiet["item_id"] == viral).sum()
    # hour h is the same drawn alone or within the longer stream
    longer = list(
        make_stream(
            city.truth,
            start=START,
            hours=3,
            first_hour=78,
            impressions_per_hour=RATE,
            seed=2,
        )
    )
    pd.testing.assert_frame_equal(quiet, longer[2][1])
    with pytest.raises(ConfigError, match="plant item 'nope' is not an item"):
        _hour(city, 1, [Plant("nope", "bad", START)])
    with pytest.raises(ConfigError, match="plant kind 'odd' is unknown"):
        _hour(city, 1, [Plant(bad, "odd", START)])


def test_a_planted_burst_is_held_within_one_run_and_the_viral_item_alerted(
    world, tmp_path
):
    city, root, shown = world
    ev, state = _copy_state(root, tmp_path)
    # a well-shown item for the burst (a few hundred impressions an hour), a middling one goes viral
    bad, viral = shown.index[2], shown.index[len(shown) // 3]
    burst_start = START + pd.Timedelta(hours=BASE_HOURS, minutes=20)
    plants = [
        Plant(bad, "bad", burst_start),
        Plant(viral, "viral", START + pd.Timedelta(hours=BASE_HOURS)),
    ]
    write_stream(iter([_hour(city, BASE_HOURS, plants)]), ev)
    report = run_monitor(ev, state, catalog=root / "items.parquet", config=CFG, now=NOW)
    assert report.held == [bad]
    assert H.held_items(state) == frozenset({bad})
    kinds = {(a["kind"], a["item_id"]) for a in report.alerts}
    assert ("negative_feedback", bad) in kinds and ("spread_spike", viral) in kinds
    held_alert = next(a for a in report.alerts if a["item_id"] == bad)
    assert held_alert["event"] == "report" and held_alert["action"] == "hold"
    assert (
        held_alert["observed"] > 5 * held_alert["expected"]
        and held_alert["p_adjusted"] < CFG.alpha
    )
    log = H.read_log(state)
    assert log[-1]["by"] == "monitor" and log[-1]["run"] == report.run
    # a reviewer releases it; the same burst does not put it back, the next hour's fresh evidence would
    H.release_hold(
        state,
        bad,
        by="li",
        note="claim verified with the health bureau",
        at=burst_start + pd.Timedelta(hours=1),
    )
    write_stream(iter([_hour(city, BASE_HOURS + 1)]), ev)
    after = run_monitor(ev, state, catalog=root / "items.parquet", config=CFG, now=NOW)
    assert after.held == [] and H.held_items(state) == frozenset()


def test_a_quiet_city_raises_few_alarms(world, tmp_path):
    city, root, _ = world
    ev, state = _copy_state(root, tmp_path)
    runs_with_alarms = 0
    hours = 12
    for h in range(BASE_HOURS, BASE_HOURS + hours):
        write_stream(iter([_hour(city, h)]), ev)
        report = run_monitor(
            ev, state, catalog=root / "items.parquet", config=CFG, now=NOW
        )
        assert report.tests > 100
        runs_with_alarms += bool(report.alerts)
        assert not report.held
    # alpha = 0.01 per run bounds the expected number of runs with any false alarm by 0.12 here
    assert runs_with_alarms <= 1


def test_done_when_a_burst_is_held_the_next_recommend_leaves_it_out_and_a_release_is_audited(
    world, tmp_path, capsys
):
    """The issue's "done when", through the commands a scheduler and a reviewer would run."""
    city, root, shown = world
    clean = validate_tables(city.users, city.items, city.events, end=city.end)
    model = train_model(
        clean.users, clean.items, clean.events, config=push_city.engine_config()
    )
    model.save(tmp_path / "models", version="20260601T000000Z")
    bundle = str(tmp_path / "models" / "latest")
    now = city.end.isoformat()
    lists = Recommender.load(bundle).recommend_many(
        list(city.users["user_id"]), k=5, now=city.end
    )
    # the most recommended of the well-shown items gets the burst
    busy = set(shown.index[: len(shown) // 2])
    target = next(i for i in lists["item_id"].value_counts().index if i in busy)
    user = lists.loc[lists["item_id"] == target, "user_id"].iloc[0]
    ev, state = _copy_state(root, tmp_path)
    burst = Plant(target, "bad", START + pd.Timedelta(hours=BASE_HOURS), strength=0.2)
    write_stream(iter([_hour(city, BASE_HOURS, [burst])]), ev)
    cfg = tmp_path / "monitor.toml"
    cfg.write_text("[monitor]\nbaseline_days = 2\n")
    monitor = [
        "monitor",
        "--events",
        str(ev),
        "--state",
        str(state),
        "--catalog",
        str(root / "items.parquet"),
        "--config",
        str(cfg),
        "--now",
        NOW.isoformat(),
    ]
    assert main(monitor) == 0
    out = capsys.readouterr().out
    assert f"item {target}" in out and "-> hold" in out
    recommend = [
        "recommend",
        user,
        "--model",
        bundle,
        "--k",
        "5",
        "--json",
        "--now",
        now,
    ]

    def listed() -> list[str]:
        capsys.readouterr()
        assert main(recommend + ["--holds", str(state)]) == 0
        return [
            json.loads(line)["item_id"] for line in capsys.readouterr().out.splitlines()
        ]

    assert target not in listed()
    assert (
        main(
            [
                "holds",
                "release",
                target,
                "--by",
                "li",
                "--note",
                "source checked",
                "--state",
                str(state),
            ]
        )
        == 0
    )
    assert target in listed()
    log = H.read_log(state)
    assert [(e["action"], e["by"]) for e in log] == [
        ("add", "monitor"),
        ("release", "li"),
    ]
