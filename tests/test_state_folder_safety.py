"""The review state folder (the monitor's ``--state``, the holds) is never someone else's folder.

The monitor deletes its old versions in that folder, and a push reads its hold
list there: a wrong path must be refused, never cleaned nor read as "no holds".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recsys import holds as H
from recsys.cli import main
from recsys.config import MonitorConfig
from recsys.exceptions import ConfigError
from recsys.monitor import run_monitor

NOW = pd.Timestamp("2026-07-01T00:00:00Z")
CFG = MonitorConfig(baseline_days=2, min_impressions=100)


def _events(n: int, hour: int, item: str = "i1", prefix: str = "e") -> pd.DataFrame:
    t = pd.Timestamp("2026-06-20T00:00:00Z") + pd.Timedelta(hours=hour)
    return pd.DataFrame(
        {
            "event_id": [f"{prefix}{hour}-{k}" for k in range(n)],
            "user_id": [f"u{k}" for k in range(n)],
            "item_id": item,
            "event_type": "impression",
            "timestamp": pd.to_datetime([t + pd.Timedelta(seconds=k) for k in range(n)], utc=True),
        }
    )


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_folder_of_versions_named_like_the_monitors_is_refused_and_left_as_it_was(tmp_path, capsys):
    mine = tmp_path / "project"
    (mine / "v1").mkdir(parents=True)
    (mine / "v1" / "data.txt").write_text("important")
    (mine / "_lock").write_text("a push output's lock")
    (mine / "alerts.jsonl").write_text("{}\n")
    before = _tree(mine)
    ev = tmp_path / "ev"
    ev.mkdir()
    _events(30, 1).to_parquet(ev / "a.parquet")
    code = main(["monitor", "--events", str(ev), "--state", str(mine), "--now", NOW.isoformat()])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --state") and "holds other files" in err
    assert _tree(mine) == before


def test_the_monitor_deletes_only_the_versions_it_wrote(tmp_path):
    ev, st = tmp_path / "ev", tmp_path / "st"
    ev.mkdir()
    _events(10, 1).to_parquet(ev / "a.parquet")
    run_monitor(ev, st, config=CFG, now=NOW)
    # someone's folder with a version-like name, inside the state folder
    (st / "v7").mkdir()
    (st / "v7" / "notes.txt").write_text("mine")
    for hour in range(2, 6):
        _events(10, hour, prefix=f"h{hour}").to_parquet(ev / f"b{hour}.parquet")
        assert run_monitor(ev, st, config=CFG, now=NOW).rows_counted == 10
    versions = sorted(p.name for p in st.iterdir() if p.name.startswith("v0"))
    assert versions == ["v00000004", "v00000005"]  # the older ones it wrote are gone
    assert (st / "v7" / "notes.txt").read_text() == "mine"
    assert (st / H.STATE_MARKER).exists()


def test_a_bad_events_folder_leaves_no_state_folder_behind(tmp_path):
    with pytest.raises(ConfigError, match="--events .*folder not found"):
        run_monitor(tmp_path / "missing", tmp_path / "new_state", config=CFG, now=NOW)
    assert not (tmp_path / "new_state").exists()


def test_holds_are_read_only_from_a_state_folder(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "items.parquet").write_text("not holds")
    with pytest.raises(ConfigError, match="not a monitor or holds state folder"):
        H.held_items(data)
    with pytest.raises(ConfigError, match="not a monitor or holds state folder"):
        H.holds_folder(data)
    assert main(["holds", "list", "--state", str(data)]) == 2
    assert "not a monitor or holds state folder" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="holds folder .* holds other files"):
        H.add_hold(data, "i1", reason="r", by="editor")
    assert sorted(p.name for p in data.iterdir()) == ["items.parquet"]
    # an empty folder holds no holds yet; the first hold marks it
    empty = tmp_path / "empty"
    empty.mkdir()
    assert H.held_items(empty) == frozenset()
    assert H.add_hold(empty, "i1", reason="burst of reports", by="monitor")
    assert H.held_items(empty) == {"i1"} and H.is_state_folder(empty)


def test_a_wrong_catalog_or_clock_counts_nothing_and_marks_nothing_read(tmp_path):
    ev, st = tmp_path / "ev", tmp_path / "st"
    ev.mkdir()
    _events(40, 1, item="i1").to_parquet(ev / "a.parquet")
    _events(20, 2, item="i2", prefix="b").to_parquet(ev / "b.parquet")
    other = pd.DataFrame({"item_id": ["x1"], "title": ["t"], "topics": [["earthquake"]]})
    other.to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ConfigError, match=r"none of the 60 new row\(s\) in 2 file\(s\) was counted \(60 unknown item\); check --catalog"):
        run_monitor(ev, st, catalog=tmp_path / "other.parquet", config=CFG, now=NOW)
    with pytest.raises(ConfigError, match="future timestamp.*check --now 2026-06-01"):
        run_monitor(ev, st, config=CFG, now=pd.Timestamp("2026-06-01T00:00:00Z"))
    right = pd.DataFrame({"item_id": ["i1", "i2"], "title": ["t", "u"], "topics": [["earthquake"], ["earthquake"]]})
    right.to_parquet(tmp_path / "items.parquet")
    report = run_monitor(ev, st, catalog=tmp_path / "items.parquet", config=CFG, now=NOW)
    assert report.run == 1 and report.rows_counted == 60
    # a run that counts some rows counts them and marks the file read, unknown items reported
    _events(5, 3, item="ghost", prefix="g").to_parquet(ev / "c.parquet")
    _events(5, 3, item="i1", prefix="h").to_parquet(ev / "d.parquet")
    again = run_monitor(ev, st, catalog=tmp_path / "items.parquet", config=CFG, now=NOW)
    assert again.rows_counted == 5 and again.skipped == {"unknown item": 5}
    assert run_monitor(ev, st, catalog=tmp_path / "items.parquet", config=CFG, now=NOW).run == 0


def test_an_older_monitors_first_folder_of_a_lock_alone_is_a_state_folder(tmp_path, capsys):
    old = tmp_path / "st_old"
    old.mkdir()
    (old / "_lock").write_text("")  # an older engine's first run, before any event
    (old / ".v00000001.tmp-123-0123abcd").mkdir()  # and a killed write
    assert H.is_state_folder(old) and H.held_items(old) == frozenset()
    ev = tmp_path / "ev"
    ev.mkdir()
    _events(10, 1).to_parquet(ev / "a.parquet")
    assert run_monitor(ev, old, config=CFG, now=NOW).rows_counted == 10
    # a marker being written (its temporary alone) is not a stranger's file for a reader
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / f".{H.STATE_MARKER}.tmp-123-0123abcd").write_text("")
    assert H.held_items(fresh) == frozenset()


def test_a_run_with_other_rows_is_not_refused_for_one_future_row(tmp_path):
    ev, st = tmp_path / "ev", tmp_path / "st"
    ev.mkdir()
    reads = _events(50, 1, prefix="r")
    reads["event_type"] = "read"  # valid, of a type no test counts
    future = _events(1, 1, prefix="f")
    future["timestamp"] = NOW + pd.Timedelta(days=2)
    pd.concat([reads, future]).to_parquet(ev / "a.parquet")
    report = run_monitor(ev, st, config=CFG, now=NOW)
    assert report.rows_counted == 0 and report.skipped == {"future timestamp": 1} and report.run == 1
    assert run_monitor(ev, st, config=CFG, now=NOW).run == 0  # the file was read
