"""The synthetic city: determinism, contract, priors, calendar, truth, dirty rows, sample."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys import columns as C
from recsys.cli import main
from recsys.exceptions import ArtifactError, ConfigError, SchemaError, UnknownCodeError
from recsys.synthetic import DEFAULT_END, SAMPLE, GroundTruth, generate_city, write_city
from recsys.synthetic.spec import load_spec
from recsys.taxonomy import load_taxonomy, parse_taxonomy

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "synthetic" / "sample"
TZ = "Asia/Shanghai"


@pytest.fixture(scope="module")
def city():
    """A small clean city with a full 60-day log (drawn once for the module)."""
    c = generate_city(4000, 1200, days=60, seed=11)
    c.events  # draw the log once
    return c


@pytest.fixture(scope="module")
def positives(city):
    """Positive events joined with the user's segment and the item's topics."""
    ev = city.events[city.events[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE)]
    users = city.users[[C.USER_ID, C.GROUP, C.SUB_GROUP, C.REGION]]
    return ev.merge(users, on=C.USER_ID).merge(city.items[[C.ITEM_ID, C.TOPICS]], on=C.ITEM_ID)


def _share(frame: pd.DataFrame, topic: str) -> float:
    return float(frame[C.TOPICS].map(lambda t: topic in t).mean())


# ---- determinism ----------------------------------------------------------------
def test_same_seed_same_city_other_seed_other_city():
    a = generate_city(300, 120, days=14, seed=5)
    b = generate_city(300, 120, days=14, seed=5)
    pd.testing.assert_frame_equal(a.users, b.users)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.events, b.events)
    for name, array in a.truth.arrays.items():
        np.testing.assert_array_equal(array, b.truth.arrays[name])
    c = generate_city(300, 120, days=14, seed=6)
    assert not a.events[C.ITEM_ID].equals(c.events[C.ITEM_ID])
    assert not a.users[C.GROUP].equals(c.users[C.GROUP])


def test_streamed_log_equals_in_memory_log(tmp_path):
    c = generate_city(200, 80, days=10, seed=2)
    write_city(c, tmp_path / "city")
    on_disk = pd.read_parquet(tmp_path / "city" / "events.parquet")
    pd.testing.assert_frame_equal(on_disk, c.events)


# ---- the contract -----------------------------------------------------------------
def test_tables_follow_the_contract(city):
    tax = load_taxonomy()
    users, items, ev = city.users, city.items, city.events
    for frame, column in ((users, C.USER_ID), (items, C.ITEM_ID), (ev, C.EVENT_ID)):
        assert frame[column].dtype == "str"
        assert frame[column].is_unique
    for frame, column in ((users, C.REGISTERED_AT), (items, C.PUBLISHED_AT), (items, C.EXPIRES_AT), (ev, C.TIMESTAMP)):
        assert str(frame[column].dtype) == "datetime64[us, UTC]"
    assert users[C.PUSH_OPT_OUT].dtype == bool
    assert 0 < users[C.PUSH_OPT_OUT].mean() < 0.1
    assert ev[C.DWELL_SECONDS].dtype == np.float64
    for frame, column in ((users, C.CHANNELS), (items, C.TOPICS), (items, C.TAGS), (items, C.TARGET_GROUPS)):
        assert all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in frame[column])
    assert set(users[C.GROUP]) <= set(tax.groups)
    assert set(users[C.REGION]) <= set(tax.regions)
    assert set(users[C.AGE_BAND]) <= set(C.AGE_BANDS) | {""}
    subs = users[users[C.SUB_GROUP] != ""]
    assert all(tax.sub_groups[s] == g for s, g in zip(subs[C.SUB_GROUP], subs[C.GROUP]))
    n_channels = users[C.CHANNELS].map(len)
    assert n_channels.between(1, 3).all() and set(n_channels) == {1, 2, 3}
    assert all(set(ch) <= set(tax.personal_channels) for ch in users[C.CHANNELS])
    assert items[C.TOPICS].map(len).min() >= 1
    assert {t for ts in items[C.TOPICS] for t in ts} <= set(tax.topics)
    assert set(items[C.FORMAT]) <= set(tax.formats)
    assert set(items[C.REVIEW_STATUS]) == set(C.REVIEW_STATUSES)
    assert items[C.TITLE].str.len().min() > 0
    assert set(ev[C.EVENT_TYPE]) == set(C.EVENT_TYPES)
    assert set(ev[C.USER_ID]) <= set(users[C.USER_ID])
    assert set(ev[C.ITEM_ID]) <= set(items[C.ITEM_ID])
    assert ev[C.TIMESTAMP].max() < city.end
    assert city.end == pd.Timestamp("2026-06-30T00:00:00+08:00")
    dwell = ev[C.DWELL_SECONDS].notna()
    assert set(ev.loc[dwell, C.EVENT_TYPE]) == set(C.DWELL_EVENT_TYPES)
    assert (ev.loc[dwell, C.DWELL_SECONDS] >= 0).all()
    assert not ev.duplicated([C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP]).any()


def test_default_workload(city):
    ev = city.events
    n = len(city.users)
    assert 17 <= (ev[C.EVENT_TYPE] == "impression").sum() / n <= 23
    assert 6.5 <= ev[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE).sum() / n <= 9.5
    assert 0 < (ev[C.EVENT_TYPE] == "report").sum() < (ev[C.EVENT_TYPE] == "dismiss").sum()


def test_impressions_respect_eligibility(city):
    tax = load_taxonomy()
    ev = city.events
    imp = ev[ev[C.EVENT_TYPE] == "impression"]
    j = imp.merge(city.items, on=C.ITEM_ID).merge(
        city.users[[C.USER_ID, C.GROUP, C.REGION, C.CHANNELS, C.REGISTERED_AT]], on=C.USER_ID
    )
    assert set(j[C.REVIEW_STATUS]) <= {"approved", "retracted"}  # retracted ones only before retraction
    assert (j[C.PUBLISHED_AT] <= j[C.TIMESTAMP]).all()
    assert (j[C.EXPIRES_AT].isna() | (j[C.TIMESTAMP] < j[C.EXPIRES_AT])).all()
    assert (j[C.REGISTERED_AT] <= j[C.TIMESTAMP]).all()
    assert all(c in chs for c, chs in zip(j[C.CHANNEL], j[C.CHANNELS]))
    assert all(f in tax.channel_formats[c] for c, f in zip(j[C.CHANNEL], j[C.FORMAT]))
    assert all(not tg or g in tg for g, tg in zip(j[C.GROUP], j[C.TARGET_GROUPS]))
    assert all(not tr or r in tr for r, tr in zip(j[C.REGION], j[C.TARGET_REGIONS]))
    # the policy pushes a user an item at most once, and every response follows a push
    assert not imp.duplicated([C.USER_ID, C.ITEM_ID]).any()
    pushed = set(zip(imp[C.USER_ID], imp[C.ITEM_ID]))
    assert set(zip(ev[C.USER_ID], ev[C.ITEM_ID])) == pushed


# ---- the world reflects its priors ---------------------------------------------------
def test_engagement_reflects_group_priors(positives):
    farmers = positives[positives[C.GROUP] == "farmer"]
    pupils = positives[positives[C.SUB_GROUP] == "pupil"]
    elderly = positives[positives[C.SUB_GROUP] == "elderly"]
    assert _share(farmers, "modern_agriculture") > 3 * _share(pupils, "modern_agriculture")
    assert _share(pupils, "robotics_youth") > 3 * _share(farmers, "robotics_youth")
    assert _share(elderly, "health_literacy") > 1.5 * _share(pupils, "health_literacy")


def test_engagement_reflects_region_priors(positives):
    qinglong = positives[(positives[C.GROUP] == "farmer") & (positives[C.REGION] == "qinglong")]
    haigang = positives[(positives[C.GROUP] == "urban_worker") & (positives[C.REGION] == "haigang")]
    assert _share(qinglong, "rural_ecommerce") > 2 * _share(haigang, "rural_ecommerce")


def test_group_mix_follows_region(city):
    farmers = city.users.groupby(C.REGION)[C.GROUP].apply(lambda g: (g == "farmer").mean())
    assert farmers["qinglong"] > 0.4 > 0.1 > farmers["haigang"]
    workers = city.users.groupby(C.REGION)[C.GROUP].apply(lambda g: (g == "urban_worker").mean())
    assert workers["etdz"] == workers.max()


def test_campaign_days_surge(city):
    ev = city.events
    imp = ev[ev[C.EVENT_TYPE] == "impression"].merge(city.items[[C.ITEM_ID, C.TOPICS]], on=C.ITEM_ID)
    imp = imp.assign(
        date=imp[C.TIMESTAMP].dt.tz_convert(TZ).dt.date, drug=imp[C.TOPICS].map(lambda t: "drug_prevention" in t)
    )
    daily = imp.groupby("date").agg(n=("drug", "size"), drug=("drug", "mean"))
    anti_drug_day = dt.date(2026, 6, 26)
    others = daily.drop(index=[anti_drug_day, dt.date(2026, 6, 5), dt.date(2026, 5, 12)])
    assert daily.loc[anti_drug_day, "n"] > 1.4 * others["n"].median()
    assert daily.loc[anti_drug_day, "drug"] > 2.5 * others["drug"].median()


def test_weekends_push_more(city):
    imp = city.events[city.events[C.EVENT_TYPE] == "impression"]
    local = imp[C.TIMESTAMP].dt.tz_convert(TZ)
    per_day = local.dt.date.value_counts()
    weekday = pd.Series([d.weekday() for d in per_day.index], index=per_day.index)
    assert per_day[weekday >= 5].median() > per_day[weekday < 5].median()


def test_near_duplicates_share_words_and_factors(city):
    items = city.items.reset_index(drop=True)
    key = items[C.TAGS].map(lambda t: tuple(sorted(t))) + items[C.TOPICS].map(tuple)
    groups = [idx for idx in items.groupby(key).indices.values() if len(idx) > 1]
    assert len(groups) > 20
    factors = city.truth.arrays["item_factors"]
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    dup_cos = np.mean([unit[g[0]] @ unit[g[1]] for g in groups])
    rng = np.random.default_rng(0)
    a, b = rng.integers(len(items), size=(2, 500))
    assert dup_cos > 0.8 > 0.2 > abs(np.mean(np.sum(unit[a] * unit[b], axis=1)))
    assert any(items.loc[g[0], C.TITLE] != items.loc[g[1], C.TITLE] for g in groups)


# ---- the truth ------------------------------------------------------------------------
def test_truth_replays_the_log(city):
    ev = city.events
    imp = ev[ev[C.EVENT_TYPE] == "impression"]
    p = city.truth.engagement_prob_pairs(imp[C.USER_ID], imp[C.ITEM_ID], imp[C.CHANNEL], at=imp[C.TIMESTAMP])
    clicked = set(zip(ev.loc[ev[C.EVENT_TYPE] == "click", C.USER_ID], ev.loc[ev[C.EVENT_TYPE] == "click", C.ITEM_ID]))
    y = np.fromiter(((u, i) in clicked for u, i in zip(imp[C.USER_ID], imp[C.ITEM_ID])), dtype=bool, count=len(imp))
    assert abs(y.sum() - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum())
    assert p[y].mean() > 1.5 * p[~y].mean()


def test_truth_matrix_equals_pairs_and_survives_save_load(city, tmp_path):
    users = city.users[C.USER_ID].to_numpy()[:40]
    items = city.items[C.ITEM_ID].to_numpy()[:30]
    at = "2026-06-26T20:00:00+08:00"
    m = city.truth.engagement_prob(users, items, "e_reader", at=at)
    assert m.shape == (40, 30) and m.dtype == np.float64
    assert ((m >= 0) & (m <= 1)).all()
    pairs = city.truth.engagement_prob_pairs(np.repeat(users, 30), np.tile(items, 40), "e_reader", at=at)
    np.testing.assert_allclose(m.ravel(), pairs, atol=1e-6)
    # e_reader carries articles, e-books and animations only: nothing else can be pushed there
    carried = np.isin(city.items[C.FORMAT].to_numpy()[:30], load_taxonomy().channel_formats["e_reader"])
    assert 0 < carried.sum() < 30 and (m[:, ~carried] == 0).all() and (m[:, carried] > 0).all()
    city.truth.save(tmp_path / "truth")
    loaded = GroundTruth.load(tmp_path / "truth")
    np.testing.assert_array_equal(loaded.engagement_prob(users, items, "e_reader", at=at), m)
    np.testing.assert_array_equal(loaded.engagement_prob(users, items), city.truth.engagement_prob(users, items))
    mapped = GroundTruth.load(tmp_path / "truth", mmap=True)
    np.testing.assert_array_equal(
        mapped.engagement_prob_pairs(users, items[:1].repeat(40)),
        loaded.engagement_prob_pairs(users, items[:1].repeat(40)),
    )


def test_truth_sees_campaigns_and_freshness(city):
    drug = city.items[city.items[C.TOPICS].map(lambda t: t == ["drug_prevention"])][C.ITEM_ID].to_numpy()[:5]
    users = city.users[C.USER_ID].to_numpy()[:50]
    on = city.truth.engagement_prob(users, drug, at="2026-06-26T10:00:00+08:00")
    off = city.truth.engagement_prob(users, drug, at="2026-06-24T10:00:00+08:00")
    assert (on > off).all()
    # half a year later (a Thursday like the 24th of June, no campaign) the fresh ones have gone stale
    later = city.truth.engagement_prob(users, drug, at="2026-12-24T10:00:00+08:00")
    assert (later <= off + 1e-12).all() and (later < off).any()


def test_truth_simulates_responses(city):
    users = np.repeat(city.users[C.USER_ID].to_numpy()[:200], 20)
    items = np.tile(city.items[C.ITEM_ID].to_numpy()[:20], 200)
    a = city.truth.sample_responses(users, items, seed=3)
    assert a.dtype == bool and (a == city.truth.sample_responses(users, items, seed=3)).all()
    p = city.truth.engagement_prob_pairs(users, items)
    assert abs(a.sum() - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum())


def test_truth_is_fast_enough():
    c = generate_city(10_000, 2_000, days=7, seed=1)
    users, items = c.users[C.USER_ID].to_numpy(), c.items[C.ITEM_ID].to_numpy()
    c.truth.engagement_prob(users[:5], items[:5])
    start = time.perf_counter()
    c.truth.engagement_prob(users, items, "wechat")
    assert time.perf_counter() - start < 2.0


def test_truth_rejects_bad_input(city, tmp_path):
    t = city.truth
    users = city.users[C.USER_ID].to_numpy()[:3]
    items = city.items[C.ITEM_ID].to_numpy()[:3]
    with pytest.raises(ConfigError, match=r"user_ids: unknown id\(s\) \['nobody'\]"):
        t.engagement_prob(["nobody"], items)
    with pytest.raises(ConfigError, match=r"item_ids: unknown id"):
        t.engagement_prob_pairs(users, ["x", "y", "z"])
    with pytest.raises(UnknownCodeError, match=r"unknown channel 'fax'; valid: app_push"):
        t.engagement_prob(users, items, "fax")
    with pytest.raises(UnknownCodeError, match=r"unknown channel 'fax'"):
        t.engagement_prob_pairs(users, items, ["wechat", "fax", "wechat"])
    with pytest.raises(ConfigError, match="no time zone"):
        t.engagement_prob(users, items, at="2026-06-01 10:00")
    with pytest.raises(ConfigError, match="not a timestamp"):
        t.engagement_prob(users, items, at="someday")
    with pytest.raises(ConfigError, match="must be aligned; got lengths 3 and 2"):
        t.engagement_prob_pairs(users, items[:2])
    with pytest.raises(ConfigError, match=r"one per pair \(3\); got 2"):
        t.engagement_prob_pairs(users, items, ["wechat", "wechat"])
    with pytest.raises(ConfigError, match=r"at must be one moment or one per pair \(3\); got 2"):
        t.engagement_prob_pairs(users, items, at=[city.end, city.end])
    t.save(tmp_path / "t")
    params = json.loads((tmp_path / "t" / "params.json").read_text())
    (tmp_path / "t" / "params.json").write_text(json.dumps({**params, "version": 99}))
    with pytest.raises(ArtifactError, match="truth version 99 unsupported"):
        GroundTruth.load(tmp_path / "t")
    t.save(tmp_path / "t")
    (tmp_path / "t" / "user_taste.npy").unlink()
    with pytest.raises(ArtifactError, match="cannot read truth array user_taste.npy"):
        GroundTruth.load(tmp_path / "t")
    t.save(tmp_path / "t")
    np.save(tmp_path / "t" / "user_bias.npy", np.zeros(2, dtype=np.float32))
    with pytest.raises(ArtifactError, match=r"\['user_bias'\] do not have 4000 rows"):
        GroundTruth.load(tmp_path / "t")
    with pytest.raises(ArtifactError, match="cannot read truth params.json"):
        GroundTruth.load(tmp_path / "missing")


# ---- dirty rows ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dirty_city():
    c = generate_city(600, 200, days=20, seed=4, dirty=True)
    c.events
    return c


def test_dirty_counts_name_every_reason(dirty_city):
    counts = dirty_city.dirty_counts
    assert list(counts) == [r for r in C.QUARANTINE_REASONS if r in counts]
    assert set(counts) == set(C.QUARANTINE_REASONS)
    assert all(v > 0 for v in counts.values())


def _timestamp_kinds(ts: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(unparsable, naive, parsed UTC) of ISO 8601 strings; missing values are neither."""
    has_offset = ts.str.contains(r"(?:[+-]\d\d:\d\d|Z)$", regex=True, na=False)
    parsed = pd.to_datetime(ts.where(has_offset), errors="coerce", format="ISO8601", utc=True)
    naive = pd.to_datetime(ts.where(~has_offset), errors="coerce", format="ISO8601").notna()
    unparsable = ts.notna() & ~naive & parsed.isna()
    return unparsable, naive, parsed


def test_dirty_counts_match_the_rows(dirty_city):
    ev, users, items = dirty_city.events, dirty_city.users, dirty_city.items
    counts = dirty_city.dirty_counts
    kinds = [
        _timestamp_kinds(col)
        for col in (users[C.REGISTERED_AT], items[C.PUBLISHED_AT], items[C.EXPIRES_AT], ev[C.TIMESTAMP])
    ]
    assert sum(k[0].sum() for k in kinds) == counts[C.R_UNPARSABLE_TS]
    assert sum(k[1].sum() for k in kinds) == counts[C.R_NAIVE_TS]
    assert (kinds[-1][2] >= dirty_city.end).sum() == counts[C.R_FUTURE_TS]
    missing = (
        users[[C.USER_ID, C.GROUP, C.REGION]].isna().any(axis=1).sum()
        + items[[C.ITEM_ID, C.TITLE]].isna().any(axis=1).sum()
    )
    missing += ev[[C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP]].isna().any(axis=1).sum()
    assert missing == counts[C.R_MISSING]
    known_type = ev[C.EVENT_TYPE].isin(C.EVENT_TYPES)
    assert (~known_type & ev[C.EVENT_TYPE].notna()).sum() == counts[C.R_UNKNOWN_EVENT_TYPE]
    assert (ev[C.DWELL_SECONDS] < 0).sum() == counts[C.R_NEGATIVE_DWELL]
    dwell_off = (ev[C.DWELL_SECONDS] >= 0) & known_type & ~ev[C.EVENT_TYPE].isin(C.DWELL_EVENT_TYPES)
    assert dwell_off.sum() == counts[C.R_DWELL_TYPE]
    unknown = (
        (ev[C.CHANNEL] == "pager").sum() + (users[C.REGION] == "atlantis").sum() + (items[C.FORMAT] == "hologram").sum()
    )
    unknown += users[C.CHANNELS].map(lambda c: "pager" in c).sum() + items[C.TOPICS].map(lambda t: "alchemy" in t).sum()
    assert unknown == counts[C.R_UNKNOWN_CODE]
    dup_ids = (
        ev[C.EVENT_ID].duplicated().sum() + users[C.USER_ID].duplicated().sum() + items[C.ITEM_ID].duplicated().sum()
    )
    assert dup_ids == counts[C.R_DUPLICATE_ID]
    tax = load_taxonomy()
    known = users[C.SUB_GROUP].isin(list(tax.sub_groups))
    assert (known & (users[C.SUB_GROUP].map(tax.sub_groups) != users[C.GROUP])).sum() == counts[C.R_SUB_GROUP]
    # ghosts, plus the events of bad user rows
    ghosts = ev[C.USER_ID].notna() & ~ev[C.USER_ID].isin(set(users[C.USER_ID]))
    assert 0 < ghosts.sum() < counts[C.R_UNKNOWN_USER]


def test_clean_city_has_none_of_it(city):
    assert city.dirty_counts == {}
    assert not city.dirty


def test_write_city_files(dirty_city, tmp_path):
    out = tmp_path / "city"
    manifest = write_city(dirty_city, out)
    assert {p.name for p in out.iterdir()} == {
        "users.parquet",
        "items.parquet",
        "places.parquet",
        "events.parquet",
        "truth",
        "manifest.json",
        "dirty_counts.json",
    }
    assert json.loads((out / "dirty_counts.json").read_text(encoding="utf-8")) == dirty_city.dirty_counts
    on_disk = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["end"] == "2026-06-30T00:00:00+08:00"
    assert on_disk["counts"]["events"] == len(dirty_city.events) == pq.read_metadata(out / "events.parquet").num_rows
    assert str(pq.read_schema(out / "events.parquet").field(C.TIMESTAMP).type) == "string"
    assert set(on_disk["files"]) >= {"users.parquet", "events.parquet", "truth/params.json"}


def test_clean_parquet_types(tmp_path):
    c = generate_city(100, 50, days=7, seed=1)
    write_city(c, tmp_path / "c")
    assert str(pq.read_schema(tmp_path / "c" / "events.parquet").field(C.TIMESTAMP).type) == "timestamp[us, tz=UTC]"
    channels = pq.read_schema(tmp_path / "c" / "users.parquet").field(C.CHANNELS).type
    assert pa.types.is_list(channels) and channels.value_type == pa.string()
    assert not (tmp_path / "c" / "dirty_counts.json").exists()


# ---- parameters, spec, taxonomy ---------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_users": 0}, r"n_users must be an integer >= 1, got 0"),
        ({"n_items": 2.5}, r"n_items must be an integer >= 1, got 2.5"),
        ({"days": 0}, r"days must be an integer >= 1"),
        ({"days": 5000}, r"days must be at most 3660"),
        ({"end": "2026-02-30"}, r"end must be a date YYYY-MM-DD, got '2026-02-30'"),
        ({"end": dt.datetime(2026, 1, 1)}, r"end must be a date"),
        ({"dirty": "yes"}, r"dirty must be true or false"),
        ({"dirty": True, "n_users": 10}, r"a dirty city needs n_users >= 50"),
        ({"seed": -1}, r"seed must be a non-negative int"),
    ],
)
def test_generate_city_rejects_bad_parameters(kwargs, message):
    args = {"n_users": 60, "n_items": 30, "days": 7, **kwargs}
    with pytest.raises(ConfigError, match=message):
        generate_city(**args)


def test_end_moves_the_window():
    c = generate_city(200, 60, days=10, seed=1, end="2026-01-10")
    local = c.events[C.TIMESTAMP].dt.tz_convert(TZ)
    assert local.min() >= pd.Timestamp("2025-12-31T00:00:00+08:00")
    assert local.max() < pd.Timestamp("2026-01-10T00:00:00+08:00")
    assert DEFAULT_END == dt.date(2026, 6, 30)


TINY_TAXONOMY = """
name = "tiny"
timezone = "Europe/Berlin"
[groups.kids]
zh = "孩子"
sub_groups = { small = "小", big = "大" }
[groups.adults]
zh = "成人"
[regions.north]
zh = "北"
population_share = 0.7
[regions.south]
zh = "南"
population_share = 0.3
[topics]
stars = { zh = "星星" }
seeds = { zh = "种子" }
[formats]
article = { zh = "图文" }
clip = { zh = "短片" }
[channels.phone]
zh = "手机"
personal = true
formats = ["article", "clip"]
[channels.screen]
zh = "屏幕"
personal = false
formats = ["clip"]
"""


def test_any_taxonomy_generates_a_world(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TAXONOMY, encoding="utf-8")
    c = generate_city(120, 40, days=7, seed=1, taxonomy=path)
    assert set(c.users[C.GROUP]) == {"kids", "adults"}
    assert set(c.users[C.SUB_GROUP]) <= {"small", "big", ""}
    assert {t for ts in c.items[C.TOPICS] for t in ts} <= {"stars", "seeds"}
    assert set(c.events[C.CHANNEL]) == {"phone"}
    assert c.events[C.TIMESTAMP].max() < pd.Timestamp("2026-06-30T00:00:00+02:00")
    d = generate_city(120, 40, days=7, seed=1, taxonomy=path, dirty=True)
    assert set(d.dirty_counts) == set(C.QUARANTINE_REASONS)


def test_spec_errors(tmp_path):
    tax = load_taxonomy()
    with pytest.raises(SchemaError, match="cannot read synthetic spec file"):
        load_spec(tax, tmp_path)
    for name in ("population.toml", "model.toml", "vocab.toml"):
        (tmp_path / name).write_text("", encoding="utf-8")
    (tmp_path / "model.toml").write_text(
        "[[campaign]]\nname = 'x'\nmonth = 1\ntopics = ['earthquake']\nrule = 'full_moon'\n", encoding="utf-8"
    )
    with pytest.raises(SchemaError, match="campaign 'x' has unknown rule 'full_moon'; valid: third_weekend"):
        load_spec(tax, tmp_path)
    (tmp_path / "model.toml").write_text("not = [valid", encoding="utf-8")
    with pytest.raises(SchemaError, match="model.toml: not valid TOML"):
        load_spec(tax, tmp_path)
    broadcast_only = parse_taxonomy(TINY_TAXONOMY.replace("personal = true", "personal = false"))
    with pytest.raises(SchemaError, match="needs at least one personal channel"):
        load_spec(broadcast_only)


# ---- the committed sample and the CLI -------------------------------------------------------
def test_committed_sample_regenerates_identically(tmp_path):
    assert SAMPLE_DIR.is_dir(), "data/synthetic/sample is missing: run `recsys generate --sample`"
    out = tmp_path / "sample"
    assert main(["generate", "--sample", "--out", str(out)]) == 0
    for name in ("users.parquet", "items.parquet", "events.parquet"):
        assert pq.read_table(out / name).equals(pq.read_table(SAMPLE_DIR / name)), name
    fresh, committed = GroundTruth.load(out / "truth"), GroundTruth.load(SAMPLE_DIR / "truth")
    assert fresh.params == committed.params
    for name, array in fresh.arrays.items():
        np.testing.assert_array_equal(array, committed.arrays[name], err_msg=name)
    manifest = json.loads((SAMPLE_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["params"] == {**SAMPLE, "end": "2026-06-30", "dirty": False, "taxonomy": "qinhuangdao"}
    assert sum(p.stat().st_size for p in SAMPLE_DIR.rglob("*") if p.is_file()) < 3 * 2**20


def test_cli_generate(tmp_path, capsys):
    assert (
        main(
            [
                "generate",
                "--users",
                "60",
                "--items",
                "30",
                "--days",
                "5",
                "--seed",
                "2",
                "--out",
                str(tmp_path / "c"),
                "--dirty",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "users.parquet   61 rows" in printed  # one duplicate row appended and "dirty_counts.json" in printed
    places = pd.read_parquet(tmp_path / "c" / "places.parquet")  # every file written is named in the summary
    assert f"places.parquet  {len(places):,} broadcast places" in printed
    assert main(["generate", "--users", "60", "--out", str(tmp_path / "d")]) == 2
    assert "needs --items" in capsys.readouterr().err
    assert main(["generate", "--sample", "--seed", "3"]) == 2
    assert "--sample fixes every setting; drop --seed" in capsys.readouterr().err
    assert main(["generate", "--users", "60", "--items", "30", "--end", "June", "--out", str(tmp_path / "e")]) == 2
    assert "end must be a date YYYY-MM-DD, got 'June'" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


# ---- the valid time range, an empty log, the seed option --------------------------------------
def _one_line_refusal(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_the_city_reaches_no_further_than_time_reach(city):
    from recsys.synthetic.city import time_reach

    before, after = time_reach(load_spec(load_taxonomy()))
    start, end = city.start.timestamp(), city.end.timestamp()
    earliest = min(city.users[C.REGISTERED_AT].min(), city.items[C.PUBLISHED_AT].min()).timestamp()
    assert start - before <= earliest < start - 0.8 * before  # the reach is used, and not exceeded
    assert city.items[C.EXPIRES_AT].max().timestamp() < end + after
    assert city.events[C.TIMESTAMP].min().timestamp() >= start


def test_an_end_whose_city_leaves_the_valid_times_is_refused(tmp_path, capsys):
    # a log ending 1990-01-05 starts in 1989 (and its users register years before): recsys validate
    # would quarantine every row as "impossible timestamp"
    from recsys.schema import MAX_TIME, MIN_TIME, validate
    from recsys.synthetic.city import end_range

    tax = load_taxonomy()
    first, last = end_range(60, load_spec(tax), tax.timezone)
    for end in ("1990-01-05", (first - dt.timedelta(days=1)).isoformat(), (last + dt.timedelta(days=1)).isoformat()):
        err = _one_line_refusal(
            capsys, ["generate", "--users", "200", "--items", "100", "--days", "60", "--end", end, "--out", str(tmp_path / "x")]
        )
        for name in ("--end", end, "--days 60", MIN_TIME[:10] if end < "2000" else MAX_TIME[:10],
                     f"valid --end: {first.isoformat()} .. {last.isoformat()}"):
            assert name in err, (name, err)
        assert not (tmp_path / "x").exists()
        with pytest.raises(ConfigError, match=rf"end {end} with days 60: .*valid end: {first}"):
            generate_city(200, 100, days=60, end=end)
    # more days move the first valid end later
    err = _one_line_refusal(capsys, ["generate", "--users", "20", "--items", "10", "--days", "3650",
                                     "--end", first.isoformat(), "--out", str(tmp_path / "x")])
    assert "--days 3650" in err and "valid --end: " in err
    # the first and the last valid ends give cities that validate with no impossible timestamp
    for end in (first, last):
        c = generate_city(300, 150, days=60, seed=2, end=end)
        result = validate(tables=(c.users, c.items, c.events), end=c.end)
        assert result.counts() == {}, (end, result.counts())


def test_a_city_without_events_is_refused_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "new" / "g3"
    err = _one_line_refusal(capsys, ["generate", "--users", "1", "--items", "1", "--days", "1", "--out", str(out)])
    assert "drew no events" in err and "raise --users or --days" in err
    assert list(tmp_path.iterdir()) == []  # not --out, not the folder made above it, no staging folder
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_refusal(capsys, ["generate", "--users", "1", "--items", "1", "--days", "1", "--out", str(empty)])
    assert list(empty.iterdir()) == []


def test_a_negative_seed_names_the_option(tmp_path, capsys):
    err = _one_line_refusal(capsys, ["generate", "--users", "20", "--items", "10", "--seed", "-1", "--out", str(tmp_path / "s")])
    assert "--seed -1" in err and "must be a non-negative integer" in err
    assert not (tmp_path / "s").exists()
