"""recsys monitor: counters, the watermark over arriving files, crash consistency, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.cli import main
from recsys.config import MonitorConfig
from recsys.exceptions import ConfigError
from recsys.monitor import run_monitor
from recsys.monitor.state import check_state_dir
from recsys.monitor.counters import K_CLICK, K_IMP, Counters
from recsys.push.lock import LockedError, hold

NOW = pd.Timestamp("2026-07-01T00:00:00Z")
START = pd.Timestamp("2026-06-01T00:00:00Z")
CFG = MonitorConfig(baseline_days=2, min_impressions=100)


# ---- counters ---------------------------------------------------------------------------------
def test_counters_do_not_depend_on_the_order_or_split_of_batches():
    rng = np.random.default_rng(0)
    n = 5000
    items = np.array([f"i{k}" for k in rng.integers(0, 40, n)], dtype=object)
    kinds = rng.integers(0, 5, n)
    hours = 1000 + rng.integers(
        0, 24 * 6, n
    )  # six days: some fall out of the hourly ring
    whole = Counters.empty(24, 4)
    whole.add(whole.index_items(items), kinds, hours)
    split = Counters.empty(24, 4)
    split.index_items(
        np.array(sorted(set(items)), dtype=object)
    )  # another index order is fine
    order = rng.permutation(n)
    for part in np.array_split(order, 7):
        split.add(split.index_items(items[part]), kinds[part], hours[part])
    for w in (1, 6, 24):
        a = pd.DataFrame(whole.window(w).T, index=whole.item_ids).sort_index()
        b = pd.DataFrame(split.window(w).T, index=split.item_ids).sort_index()
        pd.testing.assert_frame_equal(a, b)
    # the hourly window counts exactly the events of its hours
    last = hours.max()
    mask = hours > last - 6
    expected = pd.Series(items[mask & (kinds == K_IMP)]).value_counts()
    got = pd.Series(whole.window(6)[K_IMP], index=whole.item_ids)
    assert got[got > 0].sort_index().equals(expected.sort_index().astype(np.int64))


def test_counters_days_and_too_old_events():
    c = Counters.empty(2, 3)
    assert (
        c.add(
            c.index_items(np.array(["a", "a"], dtype=object)),
            np.array([0, 3]),
            np.array([24 * 10, 24 * 10 + 5]),
        )
        == 0
    )
    assert c.days_sum(10, 10)[:, 0].tolist() == [1, 0, 0, 1, 0]
    # day 7 is older than the 3-day ring (days 8..10): not counted, reported
    assert (
        c.add(
            c.index_items(np.array(["b"], dtype=object)),
            np.array([0]),
            np.array([24 * 7]),
        )
        == 1
    )
    assert c.days_sum(0, 100)[:, 1].sum() == 0
    assert c.oldest_hour() == 24 * 8


def test_the_baseline_is_the_configured_days_right_before_the_windows():
    """baseline_days = 2, a 24 h window starting on day 10: the baseline is days 8 and 9, exactly."""
    from recsys.monitor.alarms import Subjects, baseline

    c = Counters.empty(24, 6)
    per_day = {6: 1, 7: 10, 8: 100, 9: 1000, 10: 10000}
    for day, n in per_day.items():
        c.add(
            c.index_items(np.array(["a"] * n, dtype=object)),
            np.full(n, K_IMP),
            np.full(n, 24 * day + 3),
        )
    # newest hour: the last of day 10, so the 24 h window is day 10 alone
    c.add(
        c.index_items(np.array(["a"], dtype=object)),
        np.array([K_CLICK]),
        np.array([24 * 10 + 23]),
    )
    config = MonitorConfig(windows_hours=[1, 24], baseline_days=2, min_impressions=1)
    base = baseline(
        c, Subjects(np.full(c.n_items, -1, dtype=np.int64), ["some_topic"]), config
    )
    assert base.source == "baseline"
    assert base.counts[K_IMP].tolist() == [per_day[8] + per_day[9]]
    # a window reaching back into day 9 moves the baseline back a day: it never overlaps a window
    config = MonitorConfig(windows_hours=[1, 30], baseline_days=2, min_impressions=1)
    base = baseline(
        c, Subjects(np.full(c.n_items, -1, dtype=np.int64), ["some_topic"]), config
    )
    assert base.counts[K_IMP].tolist() == [per_day[7] + per_day[8]]


def test_counters_save_load_and_resize(tmp_path):
    c = Counters.empty(24, 5)
    ids = np.array(["x", "y", "x", "z"], dtype=object)
    c.add(c.index_items(ids), np.array([0, 1, 4, 0]), np.array([100, 101, 110, 120]))
    doc = c.save(tmp_path)
    back = Counters.load(tmp_path, json.loads(json.dumps(doc)))
    assert back.item_ids == ["x", "y", "z"]
    np.testing.assert_array_equal(back.window(24), c.window(24))
    small = back.resized(6, 5)
    np.testing.assert_array_equal(small.window(6), c.window(6))
    assert small.window(6)[0].tolist() == [
        0,
        0,
        1,
    ]  # only z's impression at hour 120 is in the last 6 h


# ---- event files --------------------------------------------------------------------------------
def _events(
    n: int, hour: int, *, item: str = "i1", etype: str = "impression", prefix: str = "e"
) -> pd.DataFrame:
    t = START + pd.Timedelta(hours=hour)
    return pd.DataFrame(
        {
            "event_id": [f"{prefix}{hour}-{k}" for k in range(n)],
            "user_id": [f"u{k}" for k in range(n)],
            "item_id": item,
            "event_type": etype,
            "timestamp": pd.to_datetime(
                [t + pd.Timedelta(seconds=k) for k in range(n)], utc=True
            ),
        }
    )


def _state_counts(state: Path) -> pd.DataFrame:
    name = (state / "CURRENT").read_text().strip()
    doc = json.loads((state / name / "state.json").read_text())
    hourly = np.load(state / name / "hourly.npy")
    return pd.DataFrame(
        hourly.sum(axis=0).T, index=doc["counters"]["item_ids"]
    ).sort_index()


def test_rerun_counts_nothing_and_a_copied_file_is_skipped(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    _events(50, 1).to_parquet(ev / "a.parquet")
    first = run_monitor(ev, tmp_path / "st", config=CFG, now=NOW)
    assert first.rows_counted == 50 and first.run == 1
    again = run_monitor(ev, tmp_path / "st", config=CFG, now=NOW)
    assert again.run == 0 and again.rows_counted == 0
    (ev / "copy-of-a.parquet").write_bytes((ev / "a.parquet").read_bytes())
    copy = run_monitor(ev, tmp_path / "st", config=CFG, now=NOW)
    assert copy.rows_counted == 0
    assert any("copy-of-a.parquet: same content as a.parquet" in n for n in copy.notes)
    assert _state_counts(tmp_path / "st").loc["i1", K_IMP] == 50
    # a writer's temporary file is never read
    _events(9, 2).to_parquet(ev / ".b.parquet.tmp-1-abcdef12")
    _events(9, 2).to_parquet(ev / "b.parquet.part")
    assert run_monitor(ev, tmp_path / "st", config=CFG, now=NOW).rows_counted == 0


def test_a_growing_csv_is_counted_up_to_its_last_complete_line(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    frame = _events(30, 3, etype="click")
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    text = frame.to_csv(index=False)
    lines = text.splitlines(keepends=True)
    path = ev / "live.csv"
    # header + 10 rows + half of the 11th: the writer is still appending
    path.write_text("".join(lines[:11]) + lines[11][:7])
    r1 = run_monitor(ev, tmp_path / "st", config=CFG, now=NOW)
    assert r1.rows_counted == 10
    path.write_text("".join(lines[:21]))
    r2 = run_monitor(ev, tmp_path / "st", config=CFG, now=NOW)
    assert r2.rows_counted == 10
    path.write_text("".join(lines))
    assert run_monitor(ev, tmp_path / "st", config=CFG, now=NOW).rows_counted == 10
    assert _state_counts(tmp_path / "st").loc["i1", K_CLICK] == 30
    # rewriting what was counted is reported, not counted again
    path.write_text("".join(lines[:5]))
    r4 = run_monitor(ev, tmp_path / "st", config=CFG, now=NOW)
    assert r4.rows_counted == 0 and any(
        "live.csv: changed after 30 row(s)" in n for n in r4.notes
    )
    assert _state_counts(tmp_path / "st").loc["i1", K_CLICK] == 30


def test_a_parquet_file_still_being_written_waits_for_the_next_run(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    full = tmp_path / "full.parquet"
    _events(40, 1).to_parquet(full)
    data = full.read_bytes()
    (ev / "x.parquet").write_bytes(data[: len(data) // 2])  # no footer yet
    r1 = run_monitor(ev, tmp_path / "st", config=CFG, now=NOW)
    assert r1.rows_counted == 0 and any(
        "x.parquet: not readable yet" in n for n in r1.notes
    )
    (ev / "x.parquet").write_bytes(data)
    assert run_monitor(ev, tmp_path / "st", config=CFG, now=NOW).rows_counted == 40


def test_bad_rows_are_reported_not_counted(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    catalog = pd.DataFrame(
        {"item_id": ["i1"], "title": ["t"], "topics": [["earthquake"]]}
    )
    catalog.to_parquet(tmp_path / "items.parquet")
    good = _events(20, 5)
    unknown = _events(3, 5, item="ghost", prefix="g")
    future = _events(2, 5, prefix="f")
    future["timestamp"] = NOW + pd.Timedelta(days=1)
    weird = _events(4, 5, etype="teleport", prefix="w")
    dup = good.head(2)
    nulls = _events(2, 5, prefix="z")
    nulls["item_id"] = [None, "i1"]
    nulls["event_type"] = ["click", None]
    out_of_order = _events(6, 2, prefix="o")  # older than what was already counted
    pd.concat([good, unknown, future, weird, dup, nulls]).to_parquet(ev / "a.parquet")
    r = run_monitor(
        ev, tmp_path / "st", catalog=tmp_path / "items.parquet", config=CFG, now=NOW
    )
    assert r.rows_counted == 20
    assert r.skipped == {
        "unknown item": 3,
        "future timestamp": 2,
        "unknown event type": 4,
        "duplicate id": 2,
        "missing required field": 2,
    }
    out_of_order.to_parquet(ev / "b.parquet")
    naive = _events(3, 5, prefix="n")
    naive["timestamp"] = (
        naive["timestamp"].dt.tz_localize(None).map(lambda t: t.isoformat())
    )
    naive.to_csv(ev / "c.csv", index=False)
    r2 = run_monitor(
        ev, tmp_path / "st", catalog=tmp_path / "items.parquet", config=CFG, now=NOW
    )
    assert r2.rows_counted == 6 and r2.late_rows == 6
    assert r2.skipped == {"naive timestamp": 3}
    lines = "\n".join(r2.lines())
    assert (
        "6 counted event(s) arrived out of time order" in lines
        and "naive timestamp" in lines
    )
    # a file without a required column is refused once, then left alone
    pd.DataFrame({"item_id": ["i1"], "event_type": ["click"]}).to_parquet(
        ev / "d.parquet"
    )
    r3 = run_monitor(ev, tmp_path / "st", config=CFG, now=NOW)
    assert any("d.parquet: required column timestamp absent" in n for n in r3.notes)
    assert run_monitor(ev, tmp_path / "st", config=CFG, now=NOW).run == 0
    # events older than the counters keep are not counted, and so not "arrived late" either
    ancient, recent = _events(4, -24 * 30, prefix="a"), _events(5, 3, prefix="r")
    pd.concat([ancient, recent]).to_parquet(ev / "e.parquet")
    r4 = run_monitor(ev, tmp_path / "st", config=CFG, now=NOW)
    assert r4.rows_counted == 5 and r4.late_rows == 5
    assert r4.skipped == {"older than the counters": 4}


def test_bad_folders_and_a_second_run_at_once_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--events .*folder not found"):
        run_monitor(tmp_path / "missing", tmp_path / "st", config=CFG)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    (tmp_path / "ev").mkdir()
    with pytest.raises(ConfigError, match="--state .*holds other files"):
        run_monitor(tmp_path / "ev", other, config=CFG)
    check_state_dir(tmp_path / "st")  # what a first run does before it takes the lock
    with (
        hold(tmp_path / "st", what="monitor state", run="another"),
        pytest.raises(LockedError, match="monitor state .* is in use"),
    ):
        run_monitor(tmp_path / "ev", tmp_path / "st", config=CFG)


def test_cli_monitor_runs_and_refuses_bad_input(tmp_path, capsys):
    ev = tmp_path / "ev"
    ev.mkdir()
    _events(30, 1).to_parquet(ev / "a.parquet")
    args = [
        "monitor",
        "--events",
        str(ev),
        "--state",
        str(tmp_path / "st"),
        "--now",
        NOW.isoformat(),
    ]
    assert main(args) == 0
    assert "run 1: 30 event(s) counted from 1 file(s)" in capsys.readouterr().out
    assert main(args) == 0
    assert "no new events since the last run" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[monitor]\nalpha = 2.0\n")
    assert main(args + ["--config", str(bad)]) == 2
    assert "[monitor] alpha = 2.0 is out of range" in capsys.readouterr().err
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[push]\nk = {app_push = 2}\n")
    assert main(args + ["--config", str(wrong)]) == 2
    assert "recsys monitor does not use [push]" in capsys.readouterr().err
    assert (
        main(
            [
                "monitor",
                "--events",
                str(ev),
                "--state",
                str(tmp_path / "st"),
                "--now",
                "yesterday",
            ]
        )
        == 2
    )


# ---- crash consistency --------------------------------------------------------------------------
def _bursty_folder(root: Path) -> Path:
    """Three days of quiet impressions/clicks on 30 items, then an hour with a burst of reports on i3."""
    ev = root / "ev"
    ev.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for h in range(73):
        n = 1000
        items = np.array([f"i{k}" for k in rng.integers(0, 30, n)], dtype=object)
        types = np.where(rng.random(n) < 0.1, "click", "impression").astype(object)
        types[(rng.random(n) < 0.002)] = "report"
        if h == 72:
            burst = np.flatnonzero(items == "i3")[:25]
            types[burst] = "report"
        t = (
            START
            + pd.Timedelta(hours=h)
            + pd.to_timedelta(rng.integers(0, 3600, n), unit="s")
        )
        pd.DataFrame(
            {
                "event_id": [f"h{h}-{k}" for k in range(n)],
                "user_id": "u",
                "item_id": items,
                "event_type": types,
                "timestamp": pd.to_datetime(t, utc=True),
            }
        ).to_parquet(ev / f"events-{h:03d}.parquet")
    return ev


_KILLER = textwrap.dedent(
    """
    import os, sys
    import pandas as pd
    from recsys.config import MonitorConfig
    from recsys.monitor import run as R
    from recsys.monitor import state as S
    where = sys.argv[3]
    original = R.commit
    def dying_commit(*args, **kwargs):
        if where == "before-commit":
            os._exit(9)
        out = original(*args, **kwargs)
        os._exit(9)  # after the commit, before alerts and holds are published
    def dying_pointer(*args, **kwargs):
        os._exit(9)  # the new version folder is in place, CURRENT not switched yet
    def dying_hold(*args, **kwargs):
        os._exit(9)  # alerts.jsonl appended, the hold not placed yet
    if where == "mid-commit":
        S.atomic_path = dying_pointer
    elif where == "mid-publish":
        R.H.add_hold = dying_hold
    else:
        R.commit = dying_commit
    R.run_monitor(sys.argv[1], sys.argv[2], config=MonitorConfig(baseline_days=1, min_impressions=100),
                  now=pd.Timestamp("2026-07-01T00:00:00Z"))
    """
)


@pytest.fixture(scope="module")
def bursty(tmp_path_factory) -> tuple[Path, Path]:
    """The bursty event folder and the state of one uninterrupted run over it."""
    root = tmp_path_factory.mktemp("bursty")
    ev = _bursty_folder(root)
    ref = run_monitor(
        ev,
        root / "ref",
        config=MonitorConfig(baseline_days=1, min_impressions=100),
        now=NOW,
    )
    assert ref.held == ["i3"]  # the burst is caught
    return ev, root / "ref"


@pytest.mark.parametrize(
    "where", ["before-commit", "mid-commit", "after-commit", "mid-publish"]
)
def test_a_killed_run_then_a_rerun_equals_an_uninterrupted_run(tmp_path, where, bursty):
    ev, ref = bursty
    cfg = MonitorConfig(baseline_days=1, min_impressions=100)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, str(ev), str(tmp_path / "st"), where],
        env=env,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 9, proc.stderr.decode()
    rerun = run_monitor(ev, tmp_path / "st", config=cfg, now=NOW)
    pd.testing.assert_frame_equal(_state_counts(tmp_path / "st"), _state_counts(ref))

    def alerts(folder: Path) -> list[dict]:
        return [
            json.loads(x) for x in (folder / "alerts.jsonl").read_text().splitlines()
        ]

    assert alerts(tmp_path / "st") == alerts(ref)
    from recsys.holds import load_holds

    assert load_holds(tmp_path / "st")["item_id"].tolist() == ["i3"]
    # a run killed before CURRENT switched is redone; after it, the rerun only finishes publishing
    assert rerun.run == (1 if where in ("before-commit", "mid-commit") else 0)
    # no temporary folder of the killed run is left behind
    assert not [p for p in (tmp_path / "st").iterdir() if p.name.startswith(".")]
    assert run_monitor(ev, tmp_path / "st", config=cfg, now=NOW).run == 0


def test_without_a_baseline_a_burst_is_alerted_but_not_held(tmp_path, bursty):
    ev, _ = bursty
    # only the last day and the burst hour: no day before the windows to serve as a baseline
    recent = tmp_path / "recent"
    recent.mkdir()
    for f in sorted(ev.glob("events-*.parquet"))[-25:]:
        (recent / f.name).write_bytes(f.read_bytes())
    cfg = MonitorConfig(baseline_days=1, min_impressions=100)
    report = run_monitor(recent, tmp_path / "st", config=cfg, now=NOW)
    burst = [
        a for a in report.alerts if a["item_id"] == "i3" and a["event"] == "report"
    ]
    assert burst and burst[0]["baseline"] == "window" and burst[0]["action"] is None
    assert report.held == []


def test_impossible_times_and_an_empty_window_list_are_refused_in_one_line(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    frame = _events(4, 1)
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    frame.loc[0, "timestamp"] = (
        "2500-01-01T00:00:00+00:00"  # past pandas' nanosecond range
    )
    frame.loc[1, "timestamp"] = "not a time"
    frame.to_csv(ev / "a.csv", index=False)
    r = run_monitor(ev, tmp_path / "st", config=CFG, now=NOW)
    assert r.rows_counted == 2
    assert r.skipped == {"unparsable timestamp": 1, "future timestamp": 1}
    with pytest.raises(ConfigError, match=r"\[monitor\] windows_hours is empty"):
        run_monitor(ev, tmp_path / "st2", config=MonitorConfig(windows_hours=[]))
    assert not (tmp_path / "st2").exists()
    with pytest.raises(ConfigError, match="has no time zone"):
        run_monitor(ev, tmp_path / "st3", now=pd.Timestamp("2026-07-01 08:00"))


def test_alerts_go_to_out_and_a_foreign_folder_needs_force(tmp_path, bursty, capsys):
    ev, ref = bursty
    out = tmp_path / "alerts"
    out.mkdir()
    (out / "keep.txt").write_text("an editor's notes", encoding="utf-8")
    toml = tmp_path / "monitor.toml"
    toml.write_text("[monitor]\nbaseline_days = 1\nmin_impressions = 100\n")
    args = [
        "monitor",
        "--events",
        str(ev),
        "--state",
        str(tmp_path / "st"),
        "--out",
        str(out),
        "--config",
        str(toml),
        "--now",
        NOW.isoformat(),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "keep.txt" in err and "--force" in err
    assert not (tmp_path / "st" / "CURRENT").exists()  # refused before any counting
    assert main([*args, "--force"]) == 0
    assert "-> hold" in capsys.readouterr().out
    assert (out / "keep.txt").read_text(encoding="utf-8") == "an editor's notes"
    assert (out / "alerts.jsonl").read_text() == (ref / "alerts.jsonl").read_text()
    assert not (tmp_path / "st" / "alerts.jsonl").exists()
    from recsys.holds import held_items

    assert held_items(tmp_path / "st") == frozenset({"i3"})
    # the folder is the monitor's now: later runs need no --force and append nothing twice
    assert main(args) == 0
    assert (out / "alerts.jsonl").read_text() == (ref / "alerts.jsonl").read_text()
