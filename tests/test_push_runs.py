"""End-to-end nightly runs on the tiny city: rows, caps, de-duplication, retraction, re-runs, segments."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

sys.path.insert(0, str(Path(__file__).parent))
import push_city  # noqa: E402

from recsys.push import run_nightly as run  # noqa: E402
from recsys.cli import main as cli_main  # noqa: E402
from recsys.exceptions import ConfigError, UnknownCodeError  # noqa: E402
from recsys.push.writer import HOLDOUT_FILE, OUTPUT_COLUMNS, read_manifest, read_pushes  # noqa: E402
from recsys.taxonomy import load_taxonomy  # noqa: E402

D1 = push_city.DAY
TAX = load_taxonomy()


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = push_city.trained_city(tmp_path_factory)
    models = root / "models"
    users, items, _ = push_city.tables()
    return {
        "bundle": models / "latest",
        "root": root,
        "users": users.set_index("user_id"),
        "items": items.set_index("item_id"),
    }


def write_config(path: Path, **push) -> Path:
    doc = {"push": dict(push_city.TRAIN_CONFIG["push"])}  # push --config takes [push] only
    doc["push"] = {**doc["push"], **push}
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def first_night(city, tmp_path_factory):
    out = tmp_path_factory.mktemp("first")
    report = run(city["bundle"], D1, out, stream=None)
    return out, report, read_pushes(out, D1)


def test_rows_obey_the_rules(city, first_night):
    out, report, rows = first_night
    users, items = city["users"], city["items"]
    assert list(rows.columns[: len(OUTPUT_COLUMNS)]) == list(OUTPUT_COLUMNS)
    assert len(rows) == report["rows"] > 0
    # one personal channel per user per night, one they subscribed to
    assert rows.groupby("user_id")["channel"].nunique().max() == 1
    assert all(ch in users.loc[u, "channels"] for u, ch in zip(rows.user_id, rows.channel))
    assert not users.loc[rows.user_id.unique(), "push_opt_out"].any()
    # k per channel, ranks 1..n, no repeated item in a list
    k = {"app_push": 3, "wechat": 5, "e_reader": 5}
    sizes = rows.groupby(["user_id", "channel"]).size()
    assert all(n <= k[ch] for (_, ch), n in sizes.items())
    assert (rows.groupby("user_id")["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1)))).all()
    assert not rows.duplicated(["user_id", "item_id"]).any()
    # formats the channel carries; only approved items
    fmt = items.loc[rows.item_id, "format"].to_numpy()
    assert all(f in TAX.formats_for(ch) for f, ch in zip(fmt, rows.channel))
    assert (items.loc[rows.item_id, "review_status"] == "approved").all()
    # quiet hours as local send windows
    app = rows[rows.channel == "app_push"].iloc[0]
    assert app.send_after == pd.Timestamp("2026-07-01 08:00", tz="Asia/Shanghai")
    assert app.send_before == pd.Timestamp("2026-07-01 21:00", tz="Asia/Shanghai")
    assert set(rows.campaign) == {""} and rows.run_id.nunique() == 1
    assert set(rows.model_version) == {"20260630T160000Z"}


def test_manifest_counts_match_rows(first_night):
    out, report, rows = first_night
    manifest = read_manifest(out, D1)
    assert manifest["rows"] == len(rows)
    assert manifest["users"]["pushed"] == rows.user_id.nunique()
    assert sum(v["rows"] for v in manifest["counts"]["by_channel"].values()) == len(rows)
    assert sum(v["users"] for v in manifest["counts"]["by_group"].values()) == rows.user_id.nunique()
    assert manifest["counts"]["by_group"]["farmer"]["name"] == "农民"
    users = manifest["users"]
    assert users["segment"] == 300
    assert (
        users["computed"]
        + users["skipped"]["opted_out"]
        + users["skipped"]["no_subscribed_channel"]
        + users["skipped"]["holdout"]
        == 300
    )
    assert users["skipped"]["opted_out"] == 15  # every 20th user
    assert set(manifest["timings_s"]) >= {"plan", "chunks", "commit", "total"}
    assert manifest["chunks"]["total"] >= 3


def test_holdout_users_get_nothing_and_are_listed(city, first_night, tmp_path):
    out, report, rows = first_night
    holdout = pd.read_parquet(Path(report["output"]) / HOLDOUT_FILE)
    assert len(holdout) == report["holdout"]["size"] > 0
    assert set(holdout.user_id).isdisjoint(rows.user_id)
    # the same users night after night (same salt)
    second = run(city["bundle"], D1 + dt.timedelta(days=1), tmp_path, stream=None)
    again = pd.read_parquet(Path(second["output"]) / HOLDOUT_FILE)
    assert set(again.user_id) == set(holdout.user_id)


def test_rerun_gives_the_same_rows(city, tmp_path):
    a = run(city["bundle"], D1, tmp_path, stream=None)
    first = read_pushes(tmp_path, D1)
    b = run(city["bundle"], D1, tmp_path, stream=None)
    second = read_pushes(tmp_path, D1)
    assert a["run_id"] != b["run_id"]
    pd.testing.assert_frame_equal(first.drop(columns="run_id"), second.drop(columns="run_id"))
    # the history holds the night once, not twice
    from recsys.push.history import HistoryStore

    hist = HistoryStore.open(tmp_path / "_history", 16).read(range(16), first=D1, last=D1)
    assert len(hist) == len(second)


def test_caps_and_dedup_across_nights(city, tmp_path):
    cfg = write_config(
        tmp_path / "c.toml",
        k={"app_push": 3, "wechat": 3, "e_reader": 3},
        daily_cap={"app_push": 3, "wechat": 3, "e_reader": 3},
        weekly_cap={"app_push": 7, "wechat": 7, "e_reader": 7},
    )
    out = tmp_path / "out"
    days = [D1 + dt.timedelta(days=i) for i in range(4)]
    for day in days:
        run(city["bundle"], day, out, config_path=cfg, stream=None)
    rows = read_pushes(out)
    assert set(rows.date) == {d.isoformat() for d in days}
    per_day = rows.groupby(["user_id", "channel", "date"]).size()
    assert per_day.max() <= 3
    per_week = rows.groupby(["user_id", "channel"]).size()
    assert per_week.max() <= 7 and per_week.max() == 7  # the weekly cap bites on night 3
    assert not rows.duplicated(["user_id", "item_id"]).any()  # never the same item twice
    # 3 + 3 + 1 items fill the week: on night 4 a user whose every channel is full gets nothing
    assert read_manifest(out, days[0])["users"]["skipped"]["caps_reached"] == 0
    assert read_manifest(out, days[3])["users"]["skipped"]["caps_reached"] > 0


def test_retracted_item_is_absent_tonight(city, tmp_path):
    # the same catalogue file, edited between two runs of one process (a worker must not keep the old one)
    today = tmp_path / "items.parquet"
    catalog = pd.read_parquet(city["root"] / "items.parquet")
    catalog.to_parquet(today, index=False)
    run(city["bundle"], D1, tmp_path / "a", catalog=today, stream=None)
    before = read_pushes(tmp_path / "a", D1)
    top = before.item_id.value_counts().index[0]
    catalog.loc[catalog.item_id == top, "review_status"] = "retracted"
    catalog.to_parquet(today, index=False)
    report = run(city["bundle"], D1, tmp_path / "b", catalog=today, stream=None)
    after = read_pushes(tmp_path / "b", D1)
    assert top not in set(after.item_id)
    assert report["catalog"] == str(today)
    assert len(after) == len(before)  # the lists are refilled with other items


def test_segment_topic_and_channel_flags(city, tmp_path):
    report = run(
        city["bundle"], D1, tmp_path, group="farmer", region="qinglong", channel="wechat", topic="ecology", stream=None
    )
    rows = read_pushes(tmp_path, D1)
    users, items = city["users"], city["items"]
    assert len(rows) > 0
    assert set(users.loc[rows.user_id, "group"]) == {"farmer"}
    assert set(users.loc[rows.user_id, "region"]) == {"qinglong"}
    assert set(rows.channel) == {"wechat"}
    assert all("ecology" in items.loc[i, "topics"] for i in rows.item_id)
    expected = users[(users.group == "farmer") & (users.region == "qinglong")]
    assert report["users"]["segment"] == len(expected)


def test_bad_inputs_are_named(city, tmp_path):
    with pytest.raises(ConfigError, match="--date '2026-13-01' is not a date"):
        run(city["bundle"], "2026-13-01", tmp_path, stream=None)
    with pytest.raises(UnknownCodeError, match="unknown group 'farmers'"):
        run(city["bundle"], D1, tmp_path, group="farmers", stream=None)
    with pytest.raises(UnknownCodeError, match="unknown topic 'cooking'"):
        run(city["bundle"], D1, tmp_path, topic="cooking", stream=None)
    with pytest.raises(ConfigError, match="channel 'tv' is not a personal channel"):
        run(city["bundle"], D1, tmp_path, channel="tv", stream=None)
    bad = write_config(tmp_path / "bad.toml", daily_cap={"app-push": 1})
    # the output beside the config, not around it: a push folder holds nothing but push runs
    with pytest.raises(ConfigError, match="push daily_cap has unknown personal channel 'app-push'"):
        run(city["bundle"], D1, tmp_path / "pushes", config_path=bad, stream=None)


def test_cli_exit_codes(city, tmp_path, capsys):
    assert (
        cli_main(["push", "--model", str(city["bundle"]), "--date", "tomorrow", "--out", str(tmp_path), "--quiet"]) == 2
    )
    assert "--date 'tomorrow' is not a date" in capsys.readouterr().err
    assert cli_main(["push", "--model", str(tmp_path / "nope"), "--date", "2026-07-01", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
    code = cli_main(
        ["push", "--model", str(city["bundle"]), "--date", "2026-07-01", "--out", str(tmp_path), "--region", "haigang"]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "push 2026-07-01 segment-" in err and "users/s" in err  # a targeted run has its own partition
    assert set(read_pushes(tmp_path, D1).user_id.map(city["users"]["region"])) == {"haigang"}


def test_two_channels_per_user(city, tmp_path):
    cfg = write_config(tmp_path / "two.toml", channels_per_user=2)
    out = tmp_path / "pushes"  # a push folder holds nothing but push runs: not the config's folder
    run(city["bundle"], D1, out, config_path=cfg, stream=None)
    rows = read_pushes(out, D1)
    channels = rows.groupby("user_id")["channel"].nunique()
    subscribed = (
        city["users"].loc[channels.index, "channels"].map(lambda c: len(set(c) & {"app_push", "wechat", "e_reader"}))
    )
    assert (channels == subscribed.clip(upper=2)).all()
    assert not rows.duplicated(["user_id", "item_id"]).any()  # one item, one channel
