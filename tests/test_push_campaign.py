"""Campaigns: budget, caps, opt-outs, de-duplication, emergency, and living beside the nightly run."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

sys.path.insert(0, str(Path(__file__).parent))
import push_city  # noqa: E402

from recsys.push import run_campaign as campaign, run_nightly as run  # noqa: E402
from recsys.exceptions import ConfigError, UnknownCodeError  # noqa: E402
from recsys.push.campaign import CampaignSpec  # noqa: E402
from recsys.push.writer import HOLDOUT_FILE, read_pushes  # noqa: E402
from recsys.taxonomy import load_taxonomy  # noqa: E402

D1 = push_city.DAY
D2 = D1 + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = push_city.trained_city(tmp_path_factory)
    users, items, _ = push_city.tables()
    cfg = root / "tight.toml"
    doc = {"push": dict(push_city.TRAIN_CONFIG["push"])}  # push --config takes [push] only
    caps = {"app_push": 3, "wechat": 5, "e_reader": 5}
    doc["push"] = {**doc["push"], "daily_cap": caps, "weekly_cap": {c: 9 for c in caps}}
    cfg.write_text(tomli_w.dumps(doc), encoding="utf-8")
    approved = items[(items.review_status == "approved") & (items.format == "article")]
    return {
        "bundle": root / "models" / "latest",
        "config": cfg,
        "caps": caps,
        "users": users.set_index("user_id"),
        "items": items.set_index("item_id"),
        "article": approved.item_id.iloc[0],
    }


def _holdout(out: Path, day: dt.date) -> set[str]:
    return set(pd.read_parquet(out / f"date={day}" / "kind=nightly" / HOLDOUT_FILE).user_id)


def test_item_campaign_respects_budget_and_opt_outs(city, tmp_path):
    run(city["bundle"], D1, tmp_path, config_path=city["config"], stream=None)
    report = campaign(
        city["bundle"],
        D1,
        tmp_path,
        name="space_week",
        items=[city["article"]],
        budget=25,
        config_path=city["config"],
        stream=None,
    )
    rows = read_pushes(tmp_path, D1, kind="space_week")
    assert 0 < rows.user_id.nunique() <= 25
    assert report["campaign"]["selected_users"] == rows.user_id.nunique()
    assert set(rows.item_id) == {city["article"]} and set(rows.campaign) == {"space_week"}
    users = city["users"]
    assert not users.loc[rows.user_id, "push_opt_out"].any()
    assert set(rows.user_id).isdisjoint(_holdout(tmp_path, D1))
    assert all(ch in users.loc[u, "channels"] for u, ch in zip(rows.user_id, rows.channel))
    assert rows.reasons.iloc[0][0] == "活动:space_week"
    # nightly + campaign never exceed the daily cap
    both = read_pushes(tmp_path, D1)
    per_day = both.groupby(["user_id", "channel"]).size()
    assert all(n <= city["caps"][ch] for (_, ch), n in per_day.items())


def test_campaign_survives_a_nightly_rerun_and_is_counted_by_it(city, tmp_path):
    campaign(
        city["bundle"],
        D1,
        tmp_path,
        name="weather",
        topic="weather_climate",
        budget=40,
        config_path=city["config"],
        stream=None,
    )
    before = read_pushes(tmp_path, D1, kind="weather")
    assert 0 < before.user_id.nunique() <= 40
    assert all("weather_climate" in city["items"].loc[i, "topics"] for i in before.item_id)
    run(city["bundle"], D1, tmp_path, config_path=city["config"], stream=None)
    run(city["bundle"], D1, tmp_path, config_path=city["config"], stream=None)
    after = read_pushes(tmp_path, D1, kind="weather")
    pd.testing.assert_frame_equal(before, after)
    both = read_pushes(tmp_path, D1)
    per_day = both.groupby(["user_id", "channel"]).size()
    assert all(n <= city["caps"][ch] for (_, ch), n in per_day.items())
    # the nightly run left room for the campaign's items: nothing pushed twice either
    assert not both.duplicated(["user_id", "item_id"]).any()


def test_dedup_and_emergency(city, tmp_path):
    run(city["bundle"], D1, tmp_path, config_path=city["config"], stream=None)
    nightly = read_pushes(tmp_path, D1, kind="nightly")
    item = nightly.item_id.value_counts().index[0]
    got_it = set(nightly[nightly.item_id == item].user_id)
    plain = campaign(
        city["bundle"], D2, tmp_path, name="again", items=[item], budget=300, config_path=city["config"], stream=None
    )
    again = read_pushes(tmp_path, D2, kind="again")
    assert set(again.user_id).isdisjoint(got_it)  # within the de-duplication window
    assert plain["campaign"]["selected_users"] == again.user_id.nunique()

    # fill tonight's daily caps, then only an emergency campaign gets through
    run(city["bundle"], D2, tmp_path, config_path=city["config"], stream=None)
    other = [
        i
        for i in city["items"].index
        if i != item
        and city["items"].loc[i, "review_status"] == "approved"
        and city["items"].loc[i, "format"] == "article"
        and i not in set(read_pushes(tmp_path).item_id)
    ][0]
    twin = tmp_path.parent / f"{tmp_path.name}-twin"
    shutil.copytree(tmp_path, twin)  # the same state, for the same campaign without the emergency flag
    blocked = campaign(
        city["bundle"], D2, twin, name="notice", items=[other], budget=300, config_path=city["config"], stream=None
    )
    urgent = campaign(
        city["bundle"],
        D2,
        tmp_path,
        name="storm",
        items=[other],
        budget=300,
        emergency=True,
        config_path=city["config"],
        stream=None,
    )
    assert urgent["campaign"]["selected_users"] > blocked["campaign"]["selected_users"]
    assert blocked["campaign"]["skipped"]["caps_reached"] > urgent["campaign"]["skipped"]["caps_reached"]
    rows = read_pushes(tmp_path, D2)
    day = rows[rows.kind != "storm"].groupby(["user_id", "channel"]).size()
    assert all(n <= city["caps"][ch] for (_, ch), n in day.items())
    with_storm = rows.groupby(["user_id", "channel"]).size()
    assert any(n > city["caps"][ch] for (_, ch), n in with_storm.items())  # the emergency went over
    week = read_pushes(tmp_path).groupby(["user_id", "channel"]).size()
    assert week.max() <= 9  # never over the weekly cap
    storm = read_pushes(tmp_path, D2, kind="storm")
    assert not city["users"].loc[storm.user_id, "push_opt_out"].any()
    assert storm.reasons.iloc[0][0] == "紧急活动:storm"


def test_segment_campaign(city, tmp_path):
    campaign(
        city["bundle"], D1, tmp_path, name="farm", topic="modern_agriculture", group="farmer", budget=30, stream=None
    )
    rows = read_pushes(tmp_path, D1, kind="farm")
    assert len(rows) and set(city["users"].loc[rows.user_id, "group"]) == {"farmer"}


def test_bad_campaigns(city, tmp_path):
    tax = load_taxonomy()
    with pytest.raises(ConfigError, match="'nightly' is reserved"):
        CampaignSpec(name="nightly", budget=1, topic="ecology").check(tax)
    with pytest.raises(ConfigError, match="exactly one of --item ID... or --topic T"):
        CampaignSpec(name="x", budget=1).check(tax)
    with pytest.raises(ConfigError, match="exactly one of"):
        CampaignSpec(name="x", budget=1, items=("i1",), topic="ecology").check(tax)
    with pytest.raises(ConfigError, match="'i1' is given twice"):  # it crashed in the selection's reindex
        CampaignSpec(name="x", budget=1, items=("i1", "i2", "i1")).check(tax)
    with pytest.raises(ConfigError, match="budget must be a positive integer \\(users\\), got 0"):
        CampaignSpec(name="x", budget=0, topic="ecology").check(tax)
    with pytest.raises(UnknownCodeError, match="unknown topic 'space'"):
        CampaignSpec(name="x", budget=1, topic="space").check(tax)
    with pytest.raises(ConfigError, match="campaign name 'Big Day'"):
        CampaignSpec(name="Big Day", budget=1, topic="ecology").check(tax)
    with pytest.raises(ConfigError, match="unknown item_id 'nope'"):
        campaign(city["bundle"], D1, tmp_path, name="x", items=["nope"], budget=3, stream=None)


def test_campaign_cli(city, tmp_path, capsys):
    from recsys.cli import main as cli_main

    args = ["campaign", "--model", str(city["bundle"]), "--date", "2026-07-01", "--out", str(tmp_path)]
    assert cli_main([*args, "--name", "eco", "--topic", "ecology", "--budget", "5"]) == 0
    err = capsys.readouterr().err
    assert "campaign eco 2026-07-01:" in err and "of budget 5 users" in err
    assert read_pushes(tmp_path, D1, kind="eco").user_id.nunique() <= 5
    assert cli_main([*args, "--name", "nightly", "--topic", "ecology", "--budget", "5"]) == 2
    assert "reserved for the nightly lists" in capsys.readouterr().err
