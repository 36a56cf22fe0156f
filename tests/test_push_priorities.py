"""priorities.toml in the push: checked on load, the ranking feature `priority`, the manifest's reach counts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w

sys.path.insert(0, str(Path(__file__).parent))
import push_city

from recsys.cli import main as cli_main
from recsys.exceptions import ConfigError
from recsys.push import run_nightly
from recsys.push.priorities import load_priorities, parse_priorities
from recsys.push.writer import read_pushes
from recsys.ranking import Recommender
from recsys.taxonomy import load_taxonomy

TAX = load_taxonomy()
TOPIC = "modern_agriculture"
NOW = pd.Timestamp("2026-07-01T08:00:00+08:00")


def doc(**audience) -> dict:
    entry = {
        "group": "farmer",
        "region": "qinglong",
        "weight": 1.0,
        "expires": "2026-07-15",
        "topics": [{"topic": TOPIC, "weight": 2.0}],
        **audience,
    }
    return {"version": 1, "as_of": "2026-07-01", "audience": [entry]}


def write(path: Path, document: dict) -> Path:
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = push_city.trained_city(tmp_path_factory)
    users, items, _ = push_city.tables()
    return {"bundle": root / "models" / "latest", "users": users.set_index("user_id"), "items": items.set_index("item_id")}


@pytest.fixture(scope="module")
def recommender(city):
    return Recommender.load(city["bundle"])


def _topic_count(lists: pd.DataFrame, items: pd.DataFrame) -> pd.Series:
    on_topic = lists["item_id"].map(lambda i: TOPIC in list(items.loc[i, "topics"]))
    return on_topic.groupby(lists["user_id"]).sum()


def test_boost_table_follows_audience_region_and_expiry():
    prio = parse_priorities(doc(), TAX)
    table = prio.boost_table(TAX, NOW)
    g, r, t = list(TAX.groups).index("farmer"), list(TAX.regions).index("qinglong"), list(TAX.topics).index(TOPIC)
    assert table[g, r, t] == pytest.approx(2.0)
    assert np.count_nonzero(table) == 1
    # a group-wide entry covers every region; the larger weight wins where both apply
    both = parse_priorities({"audience": [doc()["audience"][0], {**doc()["audience"][0], "region": "", "weight": 0.5}]}, TAX)
    wide = both.boost_table(TAX, NOW)
    assert np.count_nonzero(wide[g, :, t]) == len(TAX.regions)
    assert wide[g, r, t] == pytest.approx(2.0) and wide[g, 0, t] == pytest.approx(1.0)
    # past its expiry the entry is gone
    assert not prio.boost_table(TAX, pd.Timestamp("2026-07-16T00:00:00+08:00")).any()


@pytest.mark.parametrize(
    "change, match",
    [
        ({"group": "pilots"}, "group 'pilots' unknown; valid: youth"),
        ({"region": "atlantis"}, "region 'atlantis' unknown"),
        ({"weight": 0}, "weight must be a number > 0"),
        ({"weight": 11}, "weight must be a number > 0 and <= 10"),
        ({"expires": "soon"}, "expires 'soon' is not a date"),
        ({"topics": []}, r"needs at least one \[\[audience.topics\]\]"),
        ({"topics": [{"topic": "knitting", "weight": 1}]}, "topic 'knitting' unknown"),
    ],
)
def test_bad_entries_are_named(change, match):
    with pytest.raises(ConfigError, match=match):
        parse_priorities(doc(**change), TAX, origin="p.toml")


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="priorities file not found"):
        load_priorities(tmp_path / "missing.toml", TAX)
    (tmp_path / "bad.toml").write_text("audience = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_priorities(tmp_path / "bad.toml", TAX)
    with pytest.raises(ConfigError, match="version 9 unsupported"):
        parse_priorities({**doc(), "version": 9}, TAX)
    # no audience this week: valid, and it changes nothing
    assert not parse_priorities({"version": 1, "audience": []}, TAX).boost_table(TAX, NOW).any()


def test_without_priorities_the_rankings_are_unchanged(recommender, city):
    ids = list(city["users"].index[:120])
    plain = recommender.recommend_many(ids, k=5, now=NOW)
    zeros = np.zeros((len(TAX.groups), len(TAX.regions), len(TAX.topics)), np.float32)
    for other in (recommender.with_topic_boost(None), recommender.with_topic_boost(zeros)):
        pd.testing.assert_frame_equal(other.recommend_many(ids, k=5, now=NOW), plain)


def test_priority_topic_rises_for_its_audience_only(recommender, city):
    users, items = city["users"], city["items"]
    ids = list(users.index)
    table = parse_priorities(doc(), TAX).boost_table(TAX, NOW)
    plain = recommender.recommend_many(ids, k=5, now=NOW)
    boosted = recommender.with_topic_boost(table).recommend_many(ids, k=5, now=NOW)
    audience = users[(users["group"] == "farmer") & (users["region"] == "qinglong")].index
    before = _topic_count(plain, items).reindex(audience, fill_value=0)
    after = _topic_count(boosted, items).reindex(audience, fill_value=0)
    assert (after >= before).all()
    assert after.sum() > before.sum()
    # a raised item says why, first among its reasons; nobody else's reasons mention priorities
    mine = boosted[boosted["user_id"].isin(audience)]
    on_topic = mine["item_id"].map(lambda i: TOPIC in list(items.loc[i, "topics"]))
    assert mine[on_topic]["reasons"].map(lambda r: r[0] == "重点推送:现代农业技术").all()
    assert not mine[~on_topic]["reasons"].map(lambda r: any("重点推送" in x for x in r)).any()
    assert not boosted[~boosted["user_id"].isin(audience)]["reasons"].map(lambda r: any("重点推送" in x for x in r)).any()
    # everyone else gets exactly the lists they had
    others = ~plain["user_id"].isin(audience)
    pd.testing.assert_frame_equal(
        boosted[~boosted["user_id"].isin(audience)][["user_id", "item_id"]].reset_index(drop=True),
        plain[others][["user_id", "item_id"]].reset_index(drop=True),
    )


def test_push_manifest_counts_priority_reach(city, tmp_path):
    path = write(tmp_path / "priorities.toml", doc())
    plain = run_nightly(city["bundle"], push_city.DAY, tmp_path / "plain", stream=None)
    report = run_nightly(city["bundle"], push_city.DAY, tmp_path / "prio", priorities=path, stream=None)
    assert "priorities" not in plain
    block = report["priorities"]["audiences"]["farmer/qinglong"]
    rows = read_pushes(tmp_path / "prio", push_city.DAY)
    users, items = city["users"], city["items"]
    mine = rows[rows["user_id"].map(lambda u: users.loc[u, "group"] == "farmer" and users.loc[u, "region"] == "qinglong")]
    on_topic = mine["item_id"].map(lambda i: TOPIC in list(items.loc[i, "topics"]))
    assert block["pushed"] == mine["user_id"].nunique()
    assert block["reached"] == mine[on_topic]["user_id"].nunique()
    assert block["priority_items"] == int(on_topic.sum())
    assert block["reached"] > 0 and block["topics"] == [TOPIC]
    from recsys.push.report import summary_table

    assert any(line.split()[:2] == ["farmer/qinglong", str(block["reached"])] for line in summary_table(report).splitlines())
    # without the file fewer of them got the topic
    base = read_pushes(tmp_path / "plain", push_city.DAY)
    base_mine = base[base["user_id"].isin(mine["user_id"].unique())]
    base_hits = base_mine[base_mine["item_id"].map(lambda i: TOPIC in list(items.loc[i, "topics"]))]["user_id"].nunique()
    assert block["reached"] >= base_hits


def test_cli_priorities_option_refuses_a_bad_file(city, tmp_path, capsys):
    bad = write(tmp_path / "bad.toml", doc(group="pilots"))
    code = cli_main(["push", "--model", str(city["bundle"]), "--date", str(push_city.DAY), "--out", str(tmp_path / "o"),
                     "--priorities", str(bad), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "group 'pilots' unknown" in err and "Traceback" not in err


def test_a_file_with_nothing_in_force_leaves_the_push_rows_identical(city, tmp_path):
    """An empty week's file and an expired one rank exactly as no file: the same rows, value for value
    (only the run's id differs)."""
    plain = run_nightly(city["bundle"], push_city.DAY, tmp_path / "plain", stream=None)
    base = read_pushes(tmp_path / "plain", push_city.DAY)
    empty = write(tmp_path / "empty.toml", {"version": 1, "audience": []})
    expired = write(tmp_path / "expired.toml", doc(expires="2026-01-01", topics=[{"topic": TOPIC, "weight": 2.0}]))
    for name, path in (("empty", empty), ("expired", expired)):
        report = run_nightly(city["bundle"], push_city.DAY, tmp_path / name, priorities=path, stream=None)
        assert report["rows"] == plain["rows"] and report["priorities"]["audiences"] == {}
        rows = read_pushes(tmp_path / name, push_city.DAY)
        pd.testing.assert_frame_equal(rows.drop(columns="run_id"), base.drop(columns="run_id"), check_exact=True)


def test_config_priorities_act_like_the_option(city, tmp_path):
    """`[push] priorities = FILE` in the config: the same lists and the same manifest block as --priorities."""
    path = write(tmp_path / "priorities.toml", doc())
    config = tmp_path / "engine.toml"
    config.write_text(f"[push]\npriorities = {str(path)!r}\n", encoding="utf-8")
    by_option = run_nightly(city["bundle"], push_city.DAY, tmp_path / "option", priorities=path, stream=None)
    by_config = run_nightly(city["bundle"], push_city.DAY, tmp_path / "config", config_path=config, stream=None)
    assert by_config["priorities"]["audiences"] == by_option["priorities"]["audiences"]
    assert by_config["priorities"]["audiences"]["farmer/qinglong"]["reached"] > 0
    pd.testing.assert_frame_equal(
        read_pushes(tmp_path / "config", push_city.DAY).drop(columns="run_id"),
        read_pushes(tmp_path / "option", push_city.DAY).drop(columns="run_id"),
    )
