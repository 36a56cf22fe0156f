"""The Recommender API on a hand-built model: eligibility, catalogue, users, audience, errors, CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from recsys import Recommendation, Recommender
from recsys.cli import main
from recsys.config import RankingConfig
from recsys.exceptions import ConfigError, NotFittedError, SchemaError, UnknownCodeError
from recsys.ranking.recommender import MANY_COLUMNS

from ranking_world import NOW, cluster_vectors, hand_model, is_eligible, items_frame, users_frame

HOUR = pd.Timedelta(hours=1)
N_ITEMS = 14


def _items() -> pd.DataFrame:
    """Items in every state; i00 plain, the rest each break (or pass) one rule."""
    items = items_frame(
        N_ITEMS,
        topics=[["earthquake"] if j == 10 else ["health_literacy"] for j in range(N_ITEMS)],
        review_status=["approved", "pending", "rejected", "retracted"] + ["approved"] * (N_ITEMS - 4),
        format=["audio" if j == 9 else "article" for j in range(N_ITEMS)],
        published_at=[
            NOW + pd.Timedelta(days=1) if j == 4 else (NOW if j == 13 else NOW - 48 * HOUR) for j in range(N_ITEMS)
        ],
        expires_at=[NOW - HOUR if j == 5 else (NOW if j == 6 else None) for j in range(N_ITEMS)],
        target_groups=[["youth"] if j == 7 else [] for j in range(N_ITEMS)],
        target_regions=[["haigang"] if j == 8 else [] for j in range(N_ITEMS)],
    )
    return items


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(11)
    users = users_frame(
        ["farmer", "youth", "resident"], ["qinglong", "haigang", "haigang"], ["rural_woman", "pupil", ""]
    )
    return hand_model(
        users,
        _items(),
        rng.normal(size=(3, 5)),
        rng.normal(size=(N_ITEMS, 5)),
        seen={(0, 11): 1, (0, 12): -1},
        popularity_recent=np.arange(N_ITEMS, dtype=np.float32),
        content_vectors=cluster_vectors(range(N_ITEMS)),
    )


@pytest.fixture()
def rec(model):
    return Recommender.from_model(model)


def ids(recs: list[Recommendation]) -> set[str]:
    return {r.item_id for r in recs}


def expected(items: pd.DataFrame, group: str, region: str, seen=(), **filters) -> set[str]:
    return {
        row["item_id"]
        for row in items.to_dict("records")
        if row["item_id"] not in seen and is_eligible(row, group=group, region=region, now=NOW, **filters)
    }


# ---- eligibility ------------------------------------------------------------------


def test_only_eligible_items_at_now(rec, model):
    got = ids(rec.recommend("u0", k=50))
    want = expected(model.items, "farmer", "qinglong", seen={"i11", "i12"})
    assert got == want == {"i00", "i09", "i10", "i13"}
    # another user: the youth-only and haigang-only items pass, no history
    assert ids(rec.recommend("u1", k=50)) == expected(model.items, "youth", "haigang") | set()
    assert {"i07", "i08", "i11", "i12"} <= ids(rec.recommend("u1", k=50))


def test_filters_channel_topics_exclude_and_now(rec, model):
    assert ids(rec.recommend("u0", k=50, channel="radio")) == {"i09"}
    assert ids(rec.recommend("u0", k=50, channel="e_reader")) == {"i00", "i10", "i13"}
    assert ids(rec.recommend("u0", k=50, topics=["earthquake"])) == {"i10"}
    assert ids(rec.recommend("u0", k=50, topics="earthquake")) == {"i10"}
    assert ids(rec.recommend("u0", k=50, exclude=["i00", "nope"])) == {"i09", "i10", "i13"}
    # any iterable of ids: a set, a tuple, an array of str
    for given in ({"i00"}, ("i00",), np.array(["i00"])):
        assert ids(rec.recommend("u0", k=50, exclude=given)) == {"i09", "i10", "i13"}
    # two days later the future item is published; an hour earlier the expiring ones were live
    later = NOW + pd.Timedelta(days=2)
    assert "i04" in ids(rec.recommend("u0", k=50, now=later))
    earlier = (NOW - 2 * HOUR).isoformat()
    assert {"i05", "i06"} <= ids(rec.recommend("u0", k=50, now=earlier))
    assert "i13" not in ids(rec.recommend("u0", k=50, now=earlier))


def test_overrides_and_cold_users(rec):
    # the platform knows the present: a farmer who moved to haigang and became youth
    got = ids(rec.recommend("u0", k=50, group="youth", region="haigang"))
    assert {"i07", "i08"} <= got and not {"i11", "i12"} & got  # history still applies
    cold = rec.recommend("stranger", k=50, group="farmer", sub_group="rural_woman", region="qinglong")
    assert ids(cold) == {"i00", "i09", "i10", "i11", "i12", "i13"}
    assert all(r.reasons for r in cold)


def test_full_list_and_score_order(rec):
    recs = rec.recommend("u1", k=5)
    assert len(recs) == 5
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    assert all(isinstance(r.item_id, str) and isinstance(r.score, float) for r in recs)


# ---- the catalogue ------------------------------------------------------------------


def test_set_catalog_retraction_is_immediate_and_missing_items_are_ineligible(model):
    rec = Recommender.from_model(model)
    assert "i00" in ids(rec.recommend("u0", k=50))
    catalog = model.items.copy()
    catalog.loc[catalog["item_id"] == "i00", "review_status"] = "retracted"
    catalog = catalog[catalog["item_id"] != "i10"]
    rec.set_catalog(catalog)
    assert ids(rec.recommend("u0", k=50)) == {"i09", "i13"}
    assert rec.state.catalog.n_items == N_ITEMS  # the bundle's index space is kept


def test_new_catalogue_item_is_recommended_the_same_night(model, tmp_path):
    fresh = items_frame(1, topics=[["earthquake"]], published_at=[NOW - HOUR], authority=["national"])
    fresh["item_id"] = ["brand-new"]
    fresh["title"] = ["新到地震科普"]
    catalog = pd.concat([model.items, fresh], ignore_index=True)
    path = tmp_path / "items.parquet"
    catalog.to_parquet(path)
    rec = Recommender.from_model(model, catalog=path)
    got = rec.recommend("u0", k=50)
    assert "brand-new" in ids(got)
    assert rec.state.catalog.n_items == N_ITEMS + 1
    # its collaborative vector came from its content through the cold-start mapping
    state = rec.state
    j = state.catalog.index_of["brand-new"]
    vec = model.item_cold_start.transform(model.content_model.transform(fresh))[0]
    np.testing.assert_allclose(state.catalog.cf[j], vec, rtol=1e-5)


def test_catalog_rows_the_validator_rejects_are_left_out(model):
    catalog = model.items.copy()
    catalog.loc[0, "topics"] = ["no_such_topic"]
    rec = Recommender.from_model(model, catalog=catalog)
    assert rec.state.catalog.rejected == 1
    assert "i00" not in ids(rec.recommend("u0", k=50))


# ---- recommend_many ------------------------------------------------------------------


def test_recommend_many_equals_recommend_and_has_the_schema(rec):
    users = pd.DataFrame({"user_id": ["x1"], "group": ["resident"], "region": ["lulong"]})
    frame = rec.recommend_many(["u0", "u1", "x1", "u2"], k=3, users=users)
    assert tuple(frame.columns) == MANY_COLUMNS
    assert frame["rank"].dtype == np.int64 and frame["score"].dtype == np.float64
    assert frame["user_id"].tolist()[:3] == ["u0"] * 3
    for user, part in frame.groupby("user_id", sort=False):
        attrs = {"group": "resident", "region": "lulong"} if user == "x1" else {}
        single = rec.recommend(user, k=3, **attrs)
        assert part["item_id"].tolist() == [r.item_id for r in single]
        assert part["rank"].tolist() == list(range(1, len(single) + 1))
        np.testing.assert_array_equal(part["score"].to_numpy(), [r.score for r in single])
        assert part["reasons"].tolist() == [r.reasons for r in single]
    empty = rec.recommend_many([], k=3)
    assert tuple(empty.columns) == MANY_COLUMNS and len(empty) == 0


# ---- audience -------------------------------------------------------------------------


def test_audience_of_an_item_ranks_eligible_users_by_score(rec, model):
    # i08 goes to haigang only: u1 and u2; u0 (qinglong) is not in its audience
    got = rec.audience(item_id="i08", k=10)
    f = np.asarray(model.user_factors)
    v = np.asarray(model.item_factors)[8]
    want = sorted(["u1", "u2"], key=lambda u: -(f[int(u[1])] @ v))
    assert got["user_id"].tolist() == want
    np.testing.assert_allclose(got["score"], [f[int(u[1])] @ v for u in want], rtol=1e-5)
    # u0 has seen i11: not in its audience
    assert "u0" not in rec.audience(item_id="i11", k=10)["user_id"].tolist()
    assert rec.audience(item_id="i11", k=10, region="haigang")["user_id"].tolist() != []
    assert set(rec.audience(item_id="i00", k=10, group=["youth", "resident"])["user_id"]) == {"u1", "u2"}
    # a retracted or expired item has no audience
    assert rec.audience(item_id="i03").empty and rec.audience(item_id="i05").empty
    assert len(rec.audience(item_id="i00", k=1)) == 1


def test_audience_of_a_topic(rec, model):
    got = rec.audience(topic="earthquake", k=3)
    v = np.asarray(model.item_factors)[10]  # the only live earthquake item
    f = np.asarray(model.user_factors)
    assert got["user_id"].tolist() == sorted(["u0", "u1", "u2"], key=lambda u: -(f[int(u[1])] @ v))
    assert rec.audience(topic="ocean_coast").empty


# ---- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, 1001, True, 2.5, "3"])
def test_bad_k_is_rejected(rec, k):
    with pytest.raises(ConfigError, match=r"k must be an integer from 1 to 1000, got"):
        rec.recommend("u0", k=k)
    with pytest.raises(ConfigError, match=r"k must be an integer from 1 to 1000"):
        rec.recommend_many(["u0"], k=k)


def test_unknown_user_needs_group_and_region(rec):
    with pytest.raises(ConfigError, match=r"unknown user 'zz'.*needs group and region.*groups: youth"):
        rec.recommend("zz")
    with pytest.raises(ConfigError, match=r"unknown user 'zz'.*needs region"):
        rec.recommend("zz", group="farmer")
    with pytest.raises(ConfigError, match=r"unknown user 'zz'.*needs group"):
        rec.recommend_many(["u0", "zz"], users=pd.DataFrame({"user_id": ["zz"], "region": ["haigang"]}))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"group": "martian"}, r"unknown group 'martian'; valid: youth, farmer"),
        ({"region": "atlantis"}, r"unknown region 'atlantis'; valid: haigang"),
        ({"sub_group": "pupil"}, r"sub_group 'pupil' is not in group 'farmer'; valid: farmer_general"),
        ({"topics": ["cooking"]}, r"unknown topic 'cooking'; valid: disaster_prevention"),
        ({"channel": "fax"}, r"unknown channel 'fax'; valid: app_push"),
    ],
)
def test_unknown_codes_list_the_valid_ones(rec, kwargs, pattern):
    with pytest.raises(UnknownCodeError, match=pattern):
        rec.recommend("u0", **kwargs)


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda r: r.recommend("u0", topics=[]), r"topics must name at least one topic code"),
        (lambda r: r.recommend("u0", now="2026-06-01T00:00:00"), r"now .* has no time zone"),
        (lambda r: r.recommend("u0", now="soon"), r"now 'soon' is not a date"),
        (lambda r: r.recommend("u0", exclude=[3]), r"exclude must hold item ids"),
        # the per-user mapping is recommend_many's form: its keys are users, never item ids
        (lambda r: r.recommend("u0", exclude={"u0": ["i00"]}), r"exclude must be an iterable of item ids, got a mapping .*recommend_many"),
        (lambda r: r.recommend("u0", exclude="i00"), r"exclude must be a list of item ids, got the single string 'i00'"),
        (lambda r: r.recommend("u0", exclude=5), r"exclude must be an iterable of item ids \(str\), got int"),
        (lambda r: r.recommend_many(["u0"], exclude=["i00"]), r"exclude must map user ids to lists of item ids.*recommend's exclude"),
        (lambda r: r.recommend_many(["u0"], exclude={"u0": "i00"}), r"exclude\['u0'\] must be a list of item ids, got the single string"),
        (lambda r: r.recommend_many(["u0"], exclude={"u0": 5}), r"exclude\['u0'\] must be an iterable of item ids"),
        (lambda r: r.recommend_many(["u0"], exclude={"u0": {"i00": 1}}), r"exclude\['u0'\] must be an iterable .*got a mapping"),
        (lambda r: r.recommend_many(["u0"], exclude={"u0": [None]}), r"exclude\['u0'\] must hold item ids \(str\), got None"),
        (lambda r: r.recommend(""), r"user_id must be a non-empty string"),
        (lambda r: r.recommend(7), r"user_id must be a non-empty string, got 7"),
        (lambda r: r.recommend("u0", channel=3), r"channel must be a channel code"),
        (lambda r: r.recommend_many("u0"), r"single string; use recommend"),
        (lambda r: r.recommend_many(["u0"], users=[1]), r"users must be a DataFrame"),
        (lambda r: r.audience(), r"exactly one of item_id= or topic="),
        (lambda r: r.audience(item_id="i00", topic="earthquake"), r"exactly one of item_id= or topic="),
        (lambda r: r.audience(item_id="i99"), r"unknown item_id 'i99'"),
        (lambda r: r.audience(item_id="i00", k=0), r"k must be an integer from 1"),
        (lambda r: r.audience(item_id="i00", group=[]), r"group must name at least one code"),
    ],
)
def test_bad_arguments_are_rejected_with_a_message(rec, call, pattern):
    with pytest.raises(ConfigError, match=pattern):
        call(rec)


def test_audience_unknown_codes(rec):
    with pytest.raises(UnknownCodeError, match=r"unknown topic 'cooking'"):
        rec.audience(topic="cooking")
    with pytest.raises(UnknownCodeError, match=r"unknown region 'atlantis'; valid"):
        rec.audience(item_id="i00", region="atlantis")


def test_users_frame_needs_user_id(rec):
    with pytest.raises(SchemaError, match=r"users frame lacks column 'user_id'"):
        rec.recommend_many(["u0"], users=pd.DataFrame({"group": ["farmer"]}))


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"weight_topic": -1.0}, r"\[ranking\] weight_topic = -1.0 is out of range; valid: 0..100"),
        ({"weight_interest": float("inf")}, r"\[ranking\] weight_interest = inf is out of range; valid: 0..100"),
        ({"best_candidates": -1}, r"\[ranking\] best_candidates = -1 is out of range; valid: 0..100000"),
        ({"ann_candidates": 0}, r"\[ranking\] ann_candidates = 0 is out of range; valid: 1..100000"),
        ({"ann_candidates": 2.5}, r"config \[ranking\] ann_candidates must be an integer, got 2.5"),
        ({"near_duplicate_threshold": 1.5}, r"\[ranking\] near_duplicate_threshold = 1.5 is out of range; valid: > 0 and <= 1"),
        ({"freshness_half_life_days": 0.0}, r"\[ranking\] freshness_half_life_days = 0.0 is out of range; valid: > 0"),
        ({"authority_levels": {"royal": 2.0}}, r"\[ranking\] authority_levels has unknown key 'royal'; valid: national"),
    ],
)
def test_bad_ranking_config_is_rejected(model, change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        Recommender.from_model(model, config=dataclasses.replace(RankingConfig(), **change))


def test_unloaded_recommender_and_reload_without_path(model):
    with pytest.raises(NotFittedError, match=r"Recommender has no model"):
        Recommender().recommend("u0")
    with pytest.raises(ConfigError, match=r"reload\(\) needs a path"):
        Recommender.from_model(model).reload()


# ---- the command line -----------------------------------------------------------------


def test_cli_prints_the_list_with_reasons(model, tmp_path, capsys):
    bundle = model.save(tmp_path / "models")
    assert main(["recommend", "u1", "--model", str(tmp_path / "models" / "latest"), "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert bundle.name in out and out.count("\n") >= 7
    first = Recommender.load(bundle).recommend("u1", k=3)[0]
    assert first.item_id in out and first.reasons[0] in out
    assert main(["recommend", "u0", "--model", str(bundle), "--channel", "radio", "--json"]) == 0
    assert '"item_id": "i09"' in capsys.readouterr().out
    assert main(["recommend", "nobody", "--model", str(bundle)]) == 2
    assert "needs group and region" in capsys.readouterr().err
    assert main(["recommend", "u0", "--model", str(bundle), "--topic", "cooking"]) == 2
    assert "unknown topic 'cooking'" in capsys.readouterr().err


def test_a_catalogue_with_no_eligible_item_gives_empty_lists_not_a_crash(model):
    rec = Recommender.from_model(model)
    catalog = model.items.assign(review_status="rejected")
    rec.set_catalog(catalog)
    for user in ("u0", "u1", "u2"):
        assert rec.recommend(user, k=5) == []
    assert len(rec.recommend_many(["u0", "u1", "u2"], k=5)) == 0
