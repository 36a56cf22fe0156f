"""``recsys lift`` end to end on a small synthetic city: train, push, replay the next days, measure.

The replay (``recsys.synthetic.replay``) draws the days after the push from
the city's ground truth, so each estimate is checked against the truth's
expected lift: over several independent replays the 95% intervals must cover
it about 95% of the time, and an A/A replay (nobody pushed) must find nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from recsys.cli import main as cli_main
from recsys.config import config_from_dict
from recsys.lift import CTR_COLUMNS, LIFT_COLUMNS, measure_lift
from recsys.push import read_manifest, run_nightly
from recsys.push.writer import HOLDOUT_FILE, partition_dir
from recsys.schema import validate_tables
from recsys.synthetic import generate_city
from recsys.synthetic.replay import replay_pushes
from recsys.taxonomy import load_taxonomy
from recsys.training import train_model

DAY = dt.date(2026, 7, 1)
DAY2 = dt.date(2026, 7, 2)
N_REPLAYS = 12


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 1,500-user city with a 30% holdout, trained small and pushed on two nights."""
    root = tmp_path_factory.mktemp("lift_city")
    city = generate_city(1500, 200, days=20, seed=11, end=DAY.isoformat())
    taxonomy = load_taxonomy()
    clean = validate_tables(city.users, city.items, city.events, taxonomy=taxonomy, end=city.end)
    config = config_from_dict(
        {
            "collaborative": {"factors": 8, "iterations": 3, "threads": 1},
            "content": {"svd_components": 8},
            "index": {"threads": 1},
            "push": {"chunk_size": 2000, "workers": 1, "holdout_share": 0.3},
        }
    )
    model = train_model(clean.users, clean.items, clean.events, config=config, taxonomy=taxonomy)
    model.save(root / "models", version="20260630T160000Z")
    out = root / "pushes"
    for day in (DAY, DAY2):
        run_nightly(root / "models" / "latest", day, out, stream=None, warn_stream=None)
    return {"root": root, "city": city, "pushes": out, "taxonomy": taxonomy}


def _replay(world, seed: int, *, day=DAY, apply_push: bool = True):
    city = world["city"]
    return replay_pushes(
        city.truth, city.users, city.items, world["pushes"], day, days=3, seed=seed, apply_push=apply_push
    )


def _events_dir(world, name: str, events: pd.DataFrame) -> Path:
    folder = world["root"] / "events" / name
    folder.mkdir(parents=True, exist_ok=True)
    events.to_parquet(folder / "events.parquet", index=False)
    return folder


def _treated_ids(world, day=DAY) -> pd.Series:
    """The pushed arm by the push's own rules, computed here independently of lift."""
    users = world["city"].users
    held = set(pd.read_parquet(partition_dir(world["pushes"], day, "nightly") / HOLDOUT_FILE)["user_id"])
    eligible = ~users["push_opt_out"].astype(bool) & users["channels"].map(len).gt(0)
    return users.loc[eligible & ~users["user_id"].isin(held), "user_id"]


def _row(lift: pd.DataFrame, dimension: str, value: str, outcome: str) -> pd.Series:
    hit = lift[(lift["dimension"] == dimension) & (lift["value"] == value) & (lift["outcome"] == outcome)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_intervals_cover_the_truths_lift_over_replays(world):
    treated = _treated_ids(world)
    covered = {"engaged_items": 0, "engaged_pushed_items": 0}
    estimates, truths = [], []
    # per group and per district: (cells with an interval, cells covering the truth)
    cells = {"group": [0, 0], "region": [0, 0]}
    for seed in range(N_REPLAYS):
        replay = _replay(world, seed)
        result = measure_lift(world["pushes"], _events_dir(world, f"r{seed}", replay.events), DAY, days=3)
        truth = {
            "engaged_items": replay.expected_lift(treated, "items"),
            "engaged_pushed_items": replay.expected_lift(treated, "pushed_items"),
        }
        for outcome, value in truth.items():
            row = _row(result.lift, "all", "all", outcome)
            # meaningful: the push's effect is well clear of zero at this size
            assert row["lift_low"] > 0
            covered[outcome] += row["lift_low"] <= value <= row["lift_high"]
        estimates.append(_row(result.lift, "all", "all", "engaged_items")["lift"])
        truths.append(truth["engaged_items"])
        expected = replay.expected.set_index("user_id")
        users = world["city"].users.set_index("user_id")
        for dimension, count in cells.items():
            for r in result.lift[
                (result.lift["dimension"] == dimension) & (result.lift["outcome"] == "engaged_items")
            ].itertuples():
                if np.isnan(r.lift_low):
                    continue
                ids = treated[users.loc[treated, dimension].to_numpy() == r.value]
                diff = (expected.loc[ids, "y1_items"] - expected.loc[ids, "y0_items"]).mean()
                count[0] += 1
                count[1] += r.lift_low <= diff <= r.lift_high
    # 95% intervals: at most 3 misses of 12 (a 0.2% chance for honest intervals; the interval
    # arithmetic itself is checked to the digit in test_lift_stats.py)
    assert covered["engaged_items"] >= N_REPLAYS - 3, covered
    assert covered["engaged_pushed_items"] >= N_REPLAYS - 3, covered
    # the "per group and district, matching the truth within its interval"
    assert cells["group"][0] >= 3 * N_REPLAYS and cells["region"][0] >= 3 * N_REPLAYS, cells
    assert cells["group"][1] / cells["group"][0] >= 0.85, cells
    assert cells["region"][1] / cells["region"][0] >= 0.85, cells
    # no bias beyond noise: the average estimate sits near the average truth
    spread = np.std(np.array(estimates) - np.array(truths), ddof=1)
    assert abs(np.mean(estimates) - np.mean(truths)) < 3 * spread / np.sqrt(N_REPLAYS) + 1e-9


def test_aa_replay_finds_no_lift(world):
    """Nobody pushed (same nights, same arms): the intervals cover 0 nearly always."""
    misses = 0
    for seed in range(N_REPLAYS):
        replay = _replay(world, 100 + seed, apply_push=False)
        result = measure_lift(world["pushes"], _events_dir(world, f"aa{seed}", replay.events), DAY, days=3)
        row = _row(result.lift, "all", "all", "engaged_items")
        misses += not (row["lift_low"] <= 0 <= row["lift_high"])
        # the pushed rows were never shown: no row can be engaged through the push
        assert (result.ctr["ctr"] < 0.05).all()
    assert misses <= 3


def test_arms_follow_the_push_and_leave_out_ineligible_holdout_users(world):
    replay = _replay(world, 1)
    result = measure_lift(world["pushes"], _events_dir(world, "arms", replay.events), DAY, days=3)
    manifest = read_manifest(world["pushes"], DAY)
    overall = _row(result.lift, "all", "all", "engaged_items")
    assert overall["treated_users"] == manifest["users"]["computed"] == len(_treated_ids(world))
    assert overall["holdout_users"] == manifest["users"]["skipped"]["holdout"]
    night = result.summary["nights"][0]
    # the holdout file also lists opted-out users: they never count
    assert night["holdout_file_users"] > night["holdout_users"]
    assert result.summary["warnings"] == []
    by_group = result.lift[(result.lift["dimension"] == "group") & (result.lift["outcome"] == "engaged_items")]
    assert by_group["treated_users"].sum() == overall["treated_users"]
    # the arms' means, counted independently with pandas from the events
    ev = replay.events[replay.events["event_type"] != "impression"]
    users = world["city"].users
    held = set(pd.read_parquet(partition_dir(world["pushes"], DAY, "nightly") / HOLDOUT_FILE)["user_id"])
    reachable = users[~users["push_opt_out"].astype(bool) & users["channels"].map(len).gt(0)]
    control = reachable.loc[reachable["user_id"].isin(held), "user_id"]
    items = ev[["user_id", "item_id"]].drop_duplicates().groupby("user_id").size()
    assert np.isclose(overall["treated_mean"], items.reindex(_treated_ids(world)).fillna(0).mean())
    assert np.isclose(overall["holdout_mean"], items.reindex(control).fillna(0).mean())
    wechat = reachable[reachable["channels"].map(lambda c: "wechat" in c) & ~reachable["user_id"].isin(held)]
    on_wechat = ev[ev["channel"] == "wechat"][["user_id", "item_id"]].drop_duplicates().groupby("user_id").size()
    row = _row(result.lift, "channel", "wechat", "engaged_items")
    assert np.isclose(row["treated_mean"], on_wechat.reindex(wechat["user_id"]).fillna(0).mean())


def test_click_through_matches_the_events_and_the_truth(world):
    replay = _replay(world, 2)
    result = measure_lift(world["pushes"], _events_dir(world, "ctr", replay.events), DAY, days=3)
    ctr = result.ctr
    assert list(ctr.columns) == list(CTR_COLUMNS)
    # an independent count: rows whose (user, item) has a click or stronger in the events
    ev = replay.events
    positive = ev[ev["event_type"] != "impression"][["user_id", "item_id"]].drop_duplicates()
    rows = replay.pushes.merge(positive.assign(hit=1), on=["user_id", "item_id"], how="left")
    covered = 0
    for channel, part in rows.groupby("channel"):
        row = ctr[(ctr["channel"] == channel) & (ctr["rank"] == 0)].iloc[0]
        assert row["rows"] == len(part)
        assert row["engaged_rows"] == int(part["hit"].fillna(0).sum())
        covered += row["ctr_low"] <= part["prob"].mean() <= row["ctr_high"]
        ranks = ctr[(ctr["channel"] == channel) & (ctr["rank"] > 0)]
        assert ranks["rows"].sum() == len(part)
    assert covered >= rows["channel"].nunique() - 1


def test_cli_writes_tables_and_report_readable_everywhere(world, capsys):
    replay = _replay(world, 3)
    events = _events_dir(world, "cli", replay.events)
    out = world["root"] / "lift_out"
    argv = [
        "lift",
        "--pushes",
        str(world["pushes"]),
        "--events",
        str(events),
        "--date",
        DAY.isoformat(),
        "--out",
        str(out),
    ]
    assert cli_main(argv) == 0
    assert "engaged_items" in capsys.readouterr().err
    lift = pd.read_parquet(out / "lift.parquet")
    assert list(lift.columns) == list(LIFT_COLUMNS)
    assert set(lift["dimension"]) == {"all", "group", "region", "channel"}
    assert ds.dataset(out / "ctr.parquet").count_rows() == len(pd.read_parquet(out / "ctr.parquet"))
    n = len(duckdb.sql(f"select * from read_parquet('{out / 'lift.parquet'}')").df())
    assert n == len(lift)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "对照组" in page and "holdout" in page and 'src="http' not in page
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["nights"][0]["date"] == DAY.isoformat()
    # a re-run replaces its own output
    assert cli_main(argv) == 0
    # the default output folder sits beside the pushes folder, never inside it (tests/test_lift_output_folder.py)
    assert cli_main(argv[:-2]) == 0
    default = world["root"] / "pushes-lift" / f"{DAY.isoformat()}_3d"
    assert (default / "lift.parquet").is_file() and not (world["pushes"] / "_lift").exists()
    assert pq.read_table(default / "lift.parquet").num_rows == len(lift)


def test_a_range_of_nights_is_pooled_by_user(world):
    first, second = _replay(world, 4), _replay(world, 5, day=DAY2)
    events = pd.concat([first.events, second.events], ignore_index=True)
    events["event_id"] = [f"e{i}" for i in range(len(events))]
    folder = _events_dir(world, "range", events)
    one = measure_lift(world["pushes"], folder, DAY2, days=3)
    both = measure_lift(world["pushes"], folder, DAY, until=DAY2, days=3)
    assert [n["date"] for n in both.summary["nights"]] == [DAY.isoformat(), DAY2.isoformat()]
    row = _row(both.lift, "all", "all", "engaged_items")
    single = _row(one.lift, "all", "all", "engaged_items")
    # the same users both nights: users are counted once, as clusters
    assert row["treated_users"] == single["treated_users"]
    assert row["lift_low"] > 0 and np.isfinite(row["lift_high"])
    assert both.summary["skipped_nights"] == [] and both.summary["warnings"] == []

    # "any range of dates": nights the push did not run are left out, and said so
    wider = measure_lift(world["pushes"], folder, DAY - dt.timedelta(days=1), until=DAY2, days=3)
    assert [n["date"] for n in wider.summary["nights"]] == [DAY.isoformat(), DAY2.isoformat()]
    assert wider.summary["skipped_nights"] == [(DAY - dt.timedelta(days=1)).isoformat()]
    assert any("no nightly push on 1 night" in w for w in wider.summary["warnings"])
    numbers = ["treated_users", "holdout_users", "lift", "lift_low", "lift_high"]
    pd.testing.assert_frame_equal(wider.lift[numbers], both.lift[numbers])
    assert wider.lift["date_from"].iloc[0] == (DAY - dt.timedelta(days=1)).isoformat()
    from recsys.lift.report import render

    md, _ = render(wider.lift, wider.ctr, wider.summary, world["taxonomy"])
    assert f"Nights left out (no nightly push): {(DAY - dt.timedelta(days=1)).isoformat()}" in md


def test_events_without_a_channel_give_no_channel_rows(world, tmp_path):
    """Zeros on every channel would read as "the push did nothing there": no rows, and a warning."""
    replay = _replay(world, 8)
    folder = tmp_path / "nochannel"
    folder.mkdir()
    replay.events.drop(columns=["channel"]).to_parquet(folder / "e.parquet", index=False)
    result = measure_lift(world["pushes"], folder, DAY, days=3)
    assert "channel" not in set(result.lift["dimension"])
    assert {"all", "group", "region"} <= set(result.lift["dimension"])
    assert any("no 'channel' column" in w for w in result.summary["warnings"])
    with_channel = measure_lift(world["pushes"], _events_dir(world, "withchannel", replay.events), DAY, days=3)
    assert "channel" in set(with_channel.lift["dimension"])
    same = with_channel.lift[with_channel.lift["dimension"] != "channel"].reset_index(drop=True)
    pd.testing.assert_frame_equal(result.lift, same)
    # the click-through is per push channel, from the push rows: unchanged
    pd.testing.assert_frame_equal(result.ctr, with_channel.ctr)


# ---- bad input: one line, exit 2 -------------------------------------------------------------


def _run(argv, capsys) -> tuple[int, str]:
    code = cli_main(["lift", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture(scope="module")
def events_ok(world):
    return _events_dir(world, "ok", _replay(world, 6).events)


def test_bad_input_is_one_line_exit_2(world, events_ok, tmp_path, capsys):
    pushes = world["pushes"]
    base = ["--pushes", pushes, "--events", events_ok, "--out", tmp_path / "o"]
    cases = [
        (["--date", "2026-06-20"], "no nightly push for 2026-06-20"),
        (["--date", DAY, "--days", "5"], "not enough data for the lift windows"),
        (["--date", DAY, "--days", "0"], "--days must be"),
        (["--date", DAY2, "--until", DAY], "before --date"),
        (["--date", "2026-13-01"], "2026-13-01"),
        (["--date", "2026-06-10", "--until", "2026-06-20"], "no nightly push from 2026-06-10 to 2026-06-20"),
    ]
    for extra, message in cases:
        code, err = _run([*base, *extra], capsys)
        assert code == 2 and err.startswith("error:") and message in err, (extra, err)
        assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_events_of_no_known_user_are_refused_not_measured_as_no_lift(world, events_ok, tmp_path, capsys):
    events = pd.read_parquet(events_ok / "events.parquet")
    events["user_id"] = "other-city-" + events["user_id"].astype(str)
    strangers = _events_dir(world, "strangers", events)
    code, err = _run(["--pushes", world["pushes"], "--events", strangers, "--date", DAY, "--out", tmp_path / "o"], capsys)
    assert code == 2 and err.startswith("error:") and "\n" not in err
    assert "is by a user in" in err and "are these events of the city the push ran for?" in err
    assert not (tmp_path / "o").exists()


def test_missing_or_empty_holdout_and_unknown_columns(world, events_ok, tmp_path, capsys):
    copy = tmp_path / "pushes"
    shutil.copytree(world["pushes"], copy, ignore=shutil.ignore_patterns("_lift"))
    holdout = partition_dir(copy, DAY, "nightly") / HOLDOUT_FILE
    pq.write_table(pq.read_table(holdout).slice(0, 0), holdout)
    code, err = _run(["--pushes", copy, "--events", events_ok, "--date", DAY], capsys)
    assert code == 2 and "held out nobody" in err
    holdout.unlink()
    code, err = _run(["--pushes", copy, "--events", events_ok, "--date", DAY], capsys)
    assert code == 2 and "wrote no holdout" in err

    renamed = tmp_path / "renamed"
    renamed.mkdir()
    pd.read_parquet(events_ok / "events.parquet").rename(columns={"item_id": "content"}).to_parquet(
        renamed / "e.parquet"
    )
    code, err = _run(["--pushes", world["pushes"], "--events", renamed, "--date", DAY, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "'item_id'" in err and "content" in err

    naive = tmp_path / "naive"
    naive.mkdir()
    frame = pd.read_parquet(events_ok / "events.parquet")
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)
    frame.to_parquet(naive / "e.parquet")
    code, err = _run(["--pushes", world["pushes"], "--events", naive, "--date", DAY, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "timezone-aware" in err

    users = world["city"].users.copy()
    users.loc[0, "group"] = "astronauts"
    users.to_parquet(tmp_path / "users.parquet")
    code, err = _run(
        [
            "--pushes",
            world["pushes"],
            "--events",
            events_ok,
            "--date",
            DAY,
            "--users",
            tmp_path / "users.parquet",
            "--out",
            tmp_path / "o",
        ],
        capsys,
    )
    assert code == 2 and "astronauts" in err and "'group'" in err

    code, err = _run(["--pushes", tmp_path / "nowhere", "--events", events_ok, "--date", DAY], capsys)
    assert code == 2 and "no such folder" in err
    code, err = _run(["--pushes", tmp_path / "users.parquet", "--events", events_ok, "--date", DAY], capsys)
    assert code == 2 and "not a folder" in err


def test_refuses_a_folder_it_did_not_write(world, events_ok, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    code, err = _run(["--pushes", world["pushes"], "--events", events_ok, "--date", DAY, "--out", out], capsys)
    assert code == 2 and "not empty" in err
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_replay_is_deterministic_and_checks_its_parameters(world):
    a, b = _replay(world, 9), _replay(world, 9)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert not a.events.equals(_replay(world, 10).events)
    from recsys.exceptions import ConfigError

    city = world["city"]
    with pytest.raises(ConfigError, match="days must be"):
        replay_pushes(city.truth, city.users, city.items, world["pushes"], DAY, days=0)
    with pytest.raises(ConfigError, match="background_per_day"):
        replay_pushes(city.truth, city.users, city.items, world["pushes"], DAY, background_per_day=-1.0)


def test_csv_inputs_give_the_parquet_result(world, events_ok, tmp_path, capsys):
    users = world["city"].users.copy()
    users.to_parquet(tmp_path / "users.parquet")
    csv_users = users.assign(
        channels=users["channels"].map("|".join), push_opt_out=users["push_opt_out"].map({True: "true", False: "false"})
    )
    csv_users.drop(columns=["registered_at"]).to_csv(tmp_path / "users.csv", index=False)
    events = pd.read_parquet(events_ok / "events.parquet")
    events.assign(timestamp=events["timestamp"].map(lambda t: t.isoformat())).to_csv(
        tmp_path / "events.csv", index=False
    )
    a = measure_lift(world["pushes"], events_ok, DAY, users=tmp_path / "users.parquet")
    b = measure_lift(world["pushes"], tmp_path / "events.csv", DAY, users=tmp_path / "users.csv")
    pd.testing.assert_frame_equal(a.lift, b.lift)
    pd.testing.assert_frame_equal(a.ctr, b.ctr)
    # a CSV time without an offset is refused, not guessed
    events.assign(timestamp=events["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(
        tmp_path / "naive.csv", index=False
    )
    code, err = _run(
        ["--pushes", world["pushes"], "--events", tmp_path / "naive.csv", "--date", DAY, "--out", tmp_path / "o"],
        capsys,
    )
    assert code == 2 and "without a UTC offset" in err


def test_a_half_written_event_file_is_one_line(world, events_ok, tmp_path, capsys):
    folder = tmp_path / "stream"
    folder.mkdir()
    shutil.copy(events_ok / "events.parquet", folder / "a.parquet")
    raw = (events_ok / "events.parquet").read_bytes()
    (folder / "b.parquet").write_bytes(raw[: len(raw) // 2])  # the writer is still appending
    code, err = _run(["--pushes", world["pushes"], "--events", folder, "--date", DAY, "--out", tmp_path / "o"], capsys)
    assert code == 2 and err.startswith("error: --events") and "\n" not in err


def test_a_vanished_default_users_table_asks_for_users(world, events_ok, tmp_path, capsys):
    copy = tmp_path / "pushes"
    shutil.copytree(world["pushes"], copy, ignore=shutil.ignore_patterns("_lift"))
    manifest_path = partition_dir(copy, DAY, "nightly") / "_manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["model"] = str(tmp_path / "gone")
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    code, err = _run(["--pushes", copy, "--events", events_ok, "--date", DAY, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "--users PATH" in err
    users = tmp_path / "users.parquet"
    world["city"].users.to_parquet(users)
    code, err = _run(
        ["--pushes", copy, "--events", events_ok, "--date", DAY, "--users", users, "--out", tmp_path / "o"], capsys
    )
    assert code == 0, err


def test_lift_reads_the_users_table_the_push_read(world, tmp_path):
    """A push given a current users table (here: a tenth more opted out) is measured on that table."""
    users = world["city"].users.copy()
    users.loc[users.index % 10 == 1, "push_opt_out"] = True
    path = tmp_path / "users_tonight.parquet"
    users.to_parquet(path)
    out = tmp_path / "pushes"
    manifest = run_nightly(world["root"] / "models" / "latest", DAY, out, users=path, stream=None, warn_stream=None)
    assert manifest["users_path"] == str(path.resolve())
    replay = _replay(world, 7)
    result = measure_lift(out, _events_dir(world, "tonight", replay.events), DAY, days=3)
    assert result.summary["users_source"] == str(path.resolve())
    assert result.summary["warnings"] == []
    overall = _row(result.lift, "all", "all", "engaged_items")
    assert overall["treated_users"] == manifest["users"]["computed"]
    assert overall["holdout_users"] == manifest["users"]["skipped"]["holdout"]
