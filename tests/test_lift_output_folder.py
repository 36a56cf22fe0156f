"""Where ``recsys lift`` writes: beside the pushes folder, never inside it.

The README promises that the only ``*.parquet`` files under a push output folder are
push rows, and shows DuckDB reading the whole folder with
``read_parquet('pushes/**/*.parquet', hive_partitioning=true)``. Lift's default output
used to be ``<pushes>/_lift/...``: pandas and pyarrow skip ``_`` folders, DuckDB's
``**`` glob does not, and the README's query failed with "Hive partition mismatch".
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import push_city

from recsys.cli import main as cli_main
from recsys.exceptions import ConfigError
from recsys.lift.run import default_out
from recsys.push import run_nightly
from recsys.push.writer import read_pushes

DAY = push_city.DAY
TZ = "Asia/Shanghai"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny push city pushed for one night, and three local days of clicks after it."""
    city = push_city.trained_city(tmp_path_factory)
    root = tmp_path_factory.mktemp("lift_out")
    pushes = root / "pushes"
    run_nightly(city / "models" / "latest", DAY, pushes, stream=None, warn_stream=None)
    users, items, _ = push_city.tables()
    rng = np.random.default_rng(3)
    rows = []
    for d in range(3):
        noon = pd.Timestamp(DAY + dt.timedelta(days=d)).tz_localize(TZ) + pd.Timedelta(hours=12)
        for user, channels in zip(users["user_id"], users["channels"]):
            rows.append((user, items["item_id"].iloc[rng.integers(len(items))], noon, channels[0] if channels else "app_push"))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "channel"])
    events["event_type"] = "click"
    events["event_id"] = [f"x{i}" for i in range(len(events))]
    events["timestamp"] = events["timestamp"].dt.tz_convert("UTC")
    (root / "events").mkdir()
    events.to_parquet(root / "events" / "events.parquet", index=False)
    return {"root": root, "pushes": pushes, "events": root / "events"}


def _lift(world, capsys, *extra) -> tuple[int, str]:
    argv = ["lift", "--pushes", str(world["pushes"]), "--events", str(world["events"]), "--date", DAY.isoformat(), *map(str, extra)]
    code = cli_main(argv)
    return code, capsys.readouterr().err


def _duckdb_channels(pushes: Path) -> pd.DataFrame:
    """The README's query, as written there."""
    return duckdb.sql(
        f"SELECT channel, count(*) AS n FROM read_parquet('{pushes}/**/*.parquet', hive_partitioning=true) GROUP BY channel"
    ).df()


def test_readme_duckdb_query_reads_the_pushes_after_lift(world, capsys):
    code, err = _lift(world, capsys)
    assert code == 0, err
    # before the fix this raised duckdb.BinderException: Hive partition mismatch (lift's tables in <pushes>/_lift)
    counts = _duckdb_channels(world["pushes"])
    rows = read_pushes(world["pushes"], DAY)
    assert int(counts["n"].sum()) == len(rows) > 0
    assert dict(zip(counts["channel"], counts["n"])) == rows["channel"].value_counts().to_dict()
    # every *.parquet under the pushes folder is a push row file inside a date= partition
    found = list(world["pushes"].glob("**/*.parquet"))
    assert found and all(f.relative_to(world["pushes"]).parts[0].startswith("date=") for f in found)
    # the lift's own output: beside the pushes folder, readable by pandas, pyarrow and DuckDB
    out = world["root"] / "pushes-lift" / f"{DAY.isoformat()}_3d"
    assert f"-> {out}" in err
    lift = pd.read_parquet(out / "lift.parquet")
    assert len(lift) > 0
    assert ds.dataset(out / "ctr.parquet").count_rows() == len(pd.read_parquet(out / "ctr.parquet"))
    assert len(duckdb.sql(f"SELECT * FROM read_parquet('{out / 'lift.parquet'}')").df()) == len(lift)
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["nights"][0]["date"] == DAY.isoformat()


def test_a_rerun_replaces_its_own_output_and_keeps_the_users_files(world, capsys):
    assert _lift(world, capsys)[0] == 0
    folder = world["root"] / "pushes-lift"
    out = folder / f"{DAY.isoformat()}_3d"
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    (folder / "README.md").write_text("lift reports", encoding="utf-8")
    before = pd.read_parquet(out / "lift.parquet")
    code, err = _lift(world, capsys)
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_parquet(out / "lift.parquet"), before)
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (folder / "README.md").read_text(encoding="utf-8") == "lift reports"
    # a window of another length goes to its own folder beside the first
    assert _lift(world, capsys, "--days", 2)[0] == 0
    assert (folder / f"{DAY.isoformat()}_2d" / "lift.parquet").is_file() and (out / "lift.parquet").is_file()


@pytest.mark.parametrize("inside", [".", "reports", "_lift/x", "date=2026-07-01/lift"])
def test_an_out_inside_the_pushes_folder_is_refused(world, capsys, inside):
    target = world["pushes"] / inside
    before = sorted(p.relative_to(world["pushes"]) for p in world["pushes"].rglob("*"))
    code, err = _lift(world, capsys, "--out", target, "--force")
    assert code == 2 and err.startswith("error: --out") and err.count("\n") == 1 and "Traceback" not in err
    assert "inside the --pushes folder" in err and "pushes-lift/" in err
    assert sorted(p.relative_to(world["pushes"]) for p in world["pushes"].rglob("*")) == before


def test_an_older_engines_lift_folder_is_kept_and_named(world, tmp_path, capsys):
    """Output an older engine left in <pushes>/_lift is the user's: not moved, not deleted, but named."""
    import shutil

    pushes = tmp_path / "pushes"
    shutil.copytree(world["pushes"], pushes)
    old = pushes / "_lift" / f"{DAY.isoformat()}_3d"
    old.mkdir(parents=True)
    pd.DataFrame({"x": [1]}).to_parquet(old / "lift.parquet")
    code = cli_main(["lift", "--pushes", str(pushes), "--events", str(world["events"]), "--date", DAY.isoformat()])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning:" in err and f"{pushes / '_lift'} holds lift output of an older engine" in err
    assert pd.read_parquet(old / "lift.parquet")["x"].tolist() == [1]
    summary = json.loads((tmp_path / "pushes-lift" / f"{DAY.isoformat()}_3d" / "summary.json").read_text(encoding="utf-8"))
    assert any("_lift" in w for w in summary["warnings"])
    # the README's DuckDB query fails on that old folder: the reason for the warning
    with pytest.raises(duckdb.Error, match="(?i)hive partition"):
        _duckdb_channels(pushes)


def test_default_out_is_a_sibling_whatever_the_spelling(tmp_path, monkeypatch):
    pushes = tmp_path / "pushes"
    pushes.mkdir()
    day, last = dt.date(2026, 6, 1), dt.date(2026, 6, 30)
    assert default_out(pushes, day, None, 3) == tmp_path / "pushes-lift" / "2026-06-01_3d"
    assert default_out(f"{pushes}/", day, last, 7) == tmp_path / "pushes-lift" / "2026-06-01..2026-06-30_7d"
    monkeypatch.chdir(pushes)
    # "." is the pushes folder itself: its output goes beside it, not into ./.-lift
    assert default_out(".", day, None, 3) == tmp_path / "pushes-lift" / "2026-06-01_3d"
    with pytest.raises(ConfigError, match="give --out DIR"):
        default_out("/", day, None, 3)
