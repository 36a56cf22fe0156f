"""The engagement model: shown pairs from events, rates per impression, hand-checked terms."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recsys import columns as C
from recsys.config import EngagementConfig
from recsys.exceptions import ConfigError, NotFittedError, SchemaError
from recsys.idmap import IdMap
from recsys.taxonomy import load_taxonomy
from recsys.training.engagement import (
    EngagementModel,
    Exposures,
    LatentTaste,
    build_exposures,
    fit_latent_taste,
    shown_logit,
    timeliness,
)

TAX = load_taxonomy()
TOPIC = {code: i for i, code in enumerate(TAX.topics)}
END = pd.Timestamp("2026-06-30T00:00:00Z")


def _events(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP, C.CHANNEL])
    frame[C.TIMESTAMP] = pd.to_datetime(frame[C.TIMESTAMP], utc=True)
    return frame


def _items(topics, *, formats=None, authority=None, published=None) -> pd.DataFrame:
    n = len(topics)
    return pd.DataFrame(
        {
            C.ITEM_ID: [f"i{j}" for j in range(n)],
            C.TOPICS: [list(t) for t in topics],
            C.FORMAT: formats or ["article"] * n,
            C.AUTHORITY: authority or ["other"] * n,
            C.PUBLISHED_AT: pd.to_datetime(published if published is not None else [END - pd.Timedelta(days=100)] * n, utc=True),
        }
    )


def _users(groups, regions, sub_groups=None) -> pd.DataFrame:
    n = len(groups)
    return pd.DataFrame(
        {
            C.USER_ID: [f"u{i}" for i in range(n)],
            C.GROUP: groups,
            C.REGION: regions,
            C.SUB_GROUP: sub_groups or [""] * n,
        }
    )


def _exposures(user, item, label, *, age=None, channel=None, recent=None) -> Exposures:
    n = len(user)
    return Exposures(
        user=np.asarray(user, np.int64),
        item=np.asarray(item, np.int64),
        label=np.asarray(label, np.float64),
        age_days=np.full(n, np.nan) if age is None else np.asarray(age, np.float64),
        channel=np.full(n, -1, np.int64) if channel is None else np.asarray(channel, np.int64),
        recent=np.zeros(n, bool) if recent is None else np.asarray(recent, bool),
    )


# ---- shown pairs ---------------------------------------------------------------


def test_build_exposures_counts_each_pair_once_at_its_first_showing():
    t0 = END - pd.Timedelta(days=10)
    events = _events(
        [
            ("u0", "i0", "impression", t0, "wechat"),
            ("u0", "i0", "click", t0 + pd.Timedelta(minutes=5), "wechat"),
            ("u0", "i0", "impression", t0 + pd.Timedelta(days=2), "app_push"),  # a second showing: ignored
            ("u0", "i1", "impression", END - pd.Timedelta(days=1), "app_push"),  # recent, not engaged
            ("u1", "i1", "read", END - pd.Timedelta(days=3), ""),  # engaged, never logged as shown
            ("u1", "i0", "dismiss", t0, "wechat"),  # negative only: not a showing
            ("u1", "i0", "impression", END + pd.Timedelta(days=1), "wechat"),  # after the end
            ("ghost", "i0", "impression", t0, "wechat"),  # unknown user
        ]
    )
    items = _items([["ecology"], ["earthquake"]], published=[END - pd.Timedelta(days=12), None])
    ex = build_exposures(
        events, IdMap.from_ids(["u0", "u1"]), IdMap.from_ids(["i0", "i1"]), items, TAX, end=END, trend_days=2.0
    )
    got = sorted(zip(ex.user.tolist(), ex.item.tolist(), ex.label.tolist(), ex.channel.tolist(), ex.recent.tolist()))
    wechat, app = list(TAX.channels).index("wechat"), list(TAX.channels).index("app_push")
    assert got == [(0, 0, 1.0, wechat, False), (0, 1, 0.0, app, True), (1, 1, 1.0, -1, False)]
    first = int(np.flatnonzero((ex.user == 0) & (ex.item == 0))[0])
    assert ex.age_days[first] == pytest.approx(2.0)
    assert np.isnan(ex.age_days[ex.item == 1]).all()  # i1 has no publish time


def test_first_showings_from_given_codes_equal_a_pandas_reference():
    """The array path (codes looked up once by the job) keeps the rule: first showing per pair,
    impressions before positives at equal times, unknown ids and events after the end dropped."""
    rng = np.random.default_rng(7)
    n = 4000
    kinds = np.array(["impression", "click", "read", "dismiss", "share", "impression"])
    times = END - pd.to_timedelta(rng.integers(-2, 30 * 24, n), unit="h")
    events = _events(
        list(
            zip(
                [f"u{k}" for k in rng.integers(0, 60, n)],  # u50..u59 unknown
                [f"i{k}" for k in rng.integers(0, 45, n)],  # i40..i44 unknown
                kinds[rng.integers(0, len(kinds), n)],
                times,
                np.array(["wechat", "app_push", "", "tv"])[rng.integers(0, 4, n)],
            )
        )
    )
    users, items = IdMap.from_ids([f"u{k}" for k in range(50)]), IdMap.from_ids([f"i{k}" for k in range(40)])
    item_df = _items([["ecology"]] * 40)
    from recsys.training.interactions import event_codes, type_codes

    given = build_exposures(
        events, users, items, item_df, TAX, end=END, trend_days=3.0,
        codes=event_codes(events, users, items), types=type_codes(events[C.EVENT_TYPE]),
    )
    looked_up = build_exposures(events, users, items, item_df, TAX, end=END, trend_days=3.0)
    for field in dataclasses.fields(Exposures):
        np.testing.assert_array_equal(getattr(given, field.name), getattr(looked_up, field.name))
    # the reference: pandas over the rows, the rule written out
    ref = events[events[C.TIMESTAMP] <= END].copy()
    ref["u"], ref["i"] = users.index(ref[C.USER_ID].to_numpy()), items.index(ref[C.ITEM_ID].to_numpy())
    ref["pos"] = ref[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE)
    ref = ref[(ref["u"] >= 0) & (ref["i"] >= 0) & (ref["pos"] | (ref[C.EVENT_TYPE] == "impression"))]
    engaged = set(zip(ref.loc[ref["pos"], "u"], ref.loc[ref["pos"], "i"]))
    first = ref.sort_values(["u", "i", C.TIMESTAMP, "pos"], kind="stable").drop_duplicates(["u", "i"])
    chan = {c: k for k, c in enumerate(TAX.channels)}
    want = sorted(
        (u, i, float((u, i) in engaged), chan.get(c, -1))
        for u, i, c in zip(first["u"], first["i"], first[C.CHANNEL])
    )
    got = sorted(zip(given.user.tolist(), given.item.tolist(), given.label.tolist(), given.channel.tolist()))
    assert len(got) > 500 and got == want


def test_build_exposures_needs_the_event_columns():
    events = pd.DataFrame({C.USER_ID: ["u0"], C.ITEM_ID: ["i0"]})
    with pytest.raises(SchemaError, match=r"events lack required column\(s\) \['event_type', 'timestamp'\]"):
        build_exposures(events, IdMap.from_ids(["u0"]), IdMap.from_ids(["i0"]), _items([["ecology"]]), TAX, end=END, trend_days=7)


# ---- fitting ---------------------------------------------------------------------


def test_rates_not_counts_decide_quality():
    # item 0 is shown 100 times and engaged with 10 times, item 1 shown 10 times and engaged with 5:
    # by counts item 0 looks better, by rate item 1 is
    users = _users(["farmer"] * 100, ["qinglong"] * 100)
    items = _items([["ecology"], ["ecology"]])
    user = list(range(100)) + list(range(10))
    item = [0] * 100 + [1] * 10
    label = [1] * 10 + [0] * 90 + [1] * 5 + [0] * 5
    model = EngagementModel(EngagementConfig(), TAX).fit(_exposures(user, item, label), users, items)
    assert model.item_quality_[1] > model.item_quality_[0] + 0.5
    assert model.n_exposures_ == 110 and model.n_sweeps_ >= 1
    assert np.isfinite(model.log_loss_)


def test_recovers_simulated_effects():
    # a known logistic world: item quality, a segment that likes one topic, one user who loves another
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 30
    topics = ["ecology", "earthquake", "astronomy_space"]
    item_topic = np.arange(n_items) % 3
    quality = rng.normal(0, 0.8, n_items)
    groups = np.where(np.arange(n_users) < 150, "farmer", "youth")
    users = _users(list(groups), ["qinglong"] * n_users)
    items = _items([[topics[t]] for t in item_topic])
    seg_like = np.where((groups == "farmer")[:, None] & (item_topic == 0)[None, :], 1.2, 0.0)
    fan = np.zeros((n_users, n_items))
    fan[7, item_topic == 2] = 2.5  # user 7 loves astronomy
    logit = -1.5 + quality[None, :] + seg_like + fan
    user, item = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    label = rng.random(logit.shape) < 1 / (1 + np.exp(-logit))
    model = EngagementModel(EngagementConfig(), TAX).fit(
        _exposures(user.ravel(), item.ravel(), label.ravel()), users, items
    )
    # within a topic (the topic effect takes each topic's mean quality)
    per_topic = pd.Series(quality).groupby(item_topic).transform("mean").to_numpy()
    learned = pd.Series(model.item_quality_).groupby(item_topic).transform("mean").to_numpy()
    assert np.corrcoef(model.item_quality_ - learned, quality - per_topic)[0, 1] > 0.95
    farmer_row = list(TAX.groups).index("farmer") * len(TAX.regions) + list(TAX.regions).index("qinglong")
    youth_row = list(TAX.groups).index("youth") * len(TAX.regions) + list(TAX.regions).index("qinglong")
    lift = model.segment_interest_[farmer_row, TOPIC["ecology"]] - model.segment_interest_[youth_row, TOPIC["ecology"]]
    assert lift == pytest.approx(1.2, abs=0.3)
    # the fan's own interest stands out from their segment's; another youth's does not
    own = model.user_interest_[:, TOPIC["astronomy_space"]] - model.segment_interest_[youth_row, TOPIC["astronomy_space"]]
    # (shrunk: ten impressions of the topic against the l2_user_topic prior)
    assert own[7] > 0.5 and abs(own[8]) < 0.1
    # the population row is the topic effect alone, the same for every segment
    assert model.segment_interest_.shape == (len(TAX.groups) * len(TAX.regions) + 1, len(TAX.topics))


def test_freshness_and_trend_are_learned_per_topic():
    rng = np.random.default_rng(1)
    n = 40_000
    users = _users(["resident"] * 200, ["haigang"] * 200)
    items = _items([["weather_climate"], ["health_literacy"], ["work_safety"]])
    item = rng.integers(0, 3, n)
    age = rng.uniform(0, 30, n)
    recent = rng.random(n) < 0.2
    # weather notices are engaging only when new; work safety is in a campaign lately
    logit = -2.0 + 1.5 * (item == 0) * np.exp(-age / 1.0) + 1.0 * (item == 2) * recent
    label = rng.random(n) < 1 / (1 + np.exp(-logit))
    cfg = EngagementConfig()
    model = EngagementModel(cfg, TAX).fit(
        _exposures(rng.integers(0, 200, n), item, label, age=age, recent=recent), users, items
    )
    idx = np.array([[TOPIC["weather_climate"]], [TOPIC["health_literacy"]], [TOPIC["work_safety"]]])
    w = np.ones((3, 1), np.float32)
    taus = np.asarray(cfg.freshness_taus_days)
    args = (idx, w, model.topic_freshness_, model.topic_trend_, taus)
    new, old = timeliness(np.zeros(3), *args), timeliness(np.full(3, 30.0), *args)
    assert new[0] - old[0] > 1.0  # weather: fresh beats old by about the simulated 1.5
    assert abs(new[1] - old[1]) < (new[0] - old[0]) / 3  # health: age does not matter (up to noise)
    assert model.topic_trend_[TOPIC["work_safety"]] > 0.6
    assert abs(model.topic_trend_[TOPIC["health_literacy"]]) < 0.2


def test_nothing_to_learn_leaves_every_effect_at_zero():
    users = _users(["farmer"] * 2, ["qinglong"] * 2)
    items = _items([["ecology"], ["earthquake"]])
    for ex in (_exposures([], [], []), _exposures([0, 1], [0, 1], [1, 1])):  # no impressions; only engagements
        model = EngagementModel(EngagementConfig(), TAX).fit(ex, users, items)
        assert model.n_exposures_ == 0
        for name in ("item_quality_", "user_interest_", "user_format_", "topic_freshness_", "topic_trend_"):
            assert not getattr(model, name).any(), name
        assert model.user_interest_.shape == (2, len(TAX.topics))


def test_timeliness_hand_computed():
    taus = np.array([1.0, 10.0])
    fresh = np.zeros((len(TAX.topics), 2), np.float32)
    fresh[0] = [1.0, 0.5]
    fresh[1] = [0.0, 2.0]
    trend = np.zeros(len(TAX.topics), np.float32)
    trend[1] = 0.3
    pad = len(TAX.topics)
    idx = np.array([[0, 1], [0, pad], [1, pad]])
    w = np.array([[0.5, 0.5], [1.0, 0.0], [1.0, 0.0]], np.float32)
    got = timeliness(np.array([2.0, np.nan, -5.0]), idx, w, fresh, trend, taus)
    first = 0.5 * (np.exp(-2) + 0.5 * np.exp(-0.2)) + 0.5 * (2.0 * np.exp(-0.2) + 0.3)
    # no publish time: no freshness; a future publish time counts as age 0
    np.testing.assert_allclose(got, [first, 0.0, 2.0 + 0.3], rtol=1e-5)


def test_logit_adds_up_the_terms():
    users = _users(["farmer", "youth"], ["qinglong", "haigang"])
    items = _items([["ecology"], ["earthquake", "ecology"]], formats=["video", "article"])
    rng = np.random.default_rng(2)
    ex = _exposures(rng.integers(0, 2, 200), rng.integers(0, 2, 200), rng.random(200) < 0.3, age=rng.uniform(0, 9, 200))
    model = EngagementModel(EngagementConfig(), TAX).fit(ex, users, items)
    got = model.logit(np.array([0, 1]), np.array([1, 0]), np.array([3.0, np.nan]), items)
    fmt = list(TAX.formats)
    idx = np.array([[TOPIC["earthquake"], TOPIC["ecology"]], [TOPIC["ecology"], len(TAX.topics)]])
    w = np.array([[0.5, 0.5], [1.0, 0.0]], np.float32)
    timely = timeliness(np.array([3.0, np.nan]), idx, w, model.topic_freshness_, model.topic_trend_,
                        np.asarray(EngagementConfig().freshness_taus_days))
    want = [
        model.intercept_ + model.user_bias_[0] + model.item_quality_[1]
        + 0.5 * (model.user_interest_[0, TOPIC["earthquake"]] + model.user_interest_[0, TOPIC["ecology"]])
        + model.user_format_[0, fmt.index("article")] + timely[0],
        model.intercept_ + model.user_bias_[1] + model.item_quality_[0] + model.user_interest_[1, TOPIC["ecology"]]
        + model.user_format_[1, fmt.index("video")] + timely[1],
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5)


# ---- errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"l2_item": 0.0}, r"\[engagement\] l2_item = 0.0 is out of range; valid: > 0 and <= 1000000"),
        ({"l2_user_topic": float("nan")}, r"\[engagement\] l2_user_topic = nan is out of range"),
        ({"max_sweeps": -1}, r"\[engagement\] max_sweeps = -1 is out of range; valid: 0..1000"),
        ({"tol": -1.0}, r"\[engagement\] tol = -1.0 is out of range; valid: 0..1"),
        ({"freshness_taus_days": []}, r"freshness_taus_days = \[\] is empty; valid: at least one value, each 0.01..3650"),
        ({"freshness_taus_days": [1.0, 0.0]}, r"freshness_taus_days\[1\] = 0.0 is out of range; valid: 0.01..3650"),
        ({"trend_days": 0}, r"\[engagement\] trend_days = 0 is out of range; valid: > 0 and <= 365"),
    ],
)
def test_config_errors(change, message):
    cfg = dataclasses.replace(EngagementConfig(), **change)
    with pytest.raises(ConfigError, match=message):
        EngagementModel(cfg, TAX).fit(_exposures([0], [0], [1]), _users(["farmer"], ["qinglong"]), _items([["ecology"]]))


def test_input_errors():
    users, items = _users(["farmer"], ["qinglong"]), _items([["ecology"]])
    model = EngagementModel(EngagementConfig(), TAX)
    with pytest.raises(SchemaError, match=r"users table lacks column\(s\) \['region'\]"):
        model.fit(_exposures([0], [0], [1]), users.drop(columns=[C.REGION]), items)
    with pytest.raises(SchemaError, match=r"exposures index users/items beyond the tables \(1 users, 1 items\)"):
        model.fit(_exposures([0], [3], [1]), users, items)
    with pytest.raises(NotFittedError, match=r"EngagementModel is not fitted; call fit\(\) first"):
        EngagementModel(EngagementConfig(), TAX).logit(np.array([0]), np.array([0]), np.array([1.0]), items)


def test_exposure_sample_bounds_the_fit_and_is_seeded():
    from recsys.training.engagement import Exposures

    n = 50
    ex = Exposures(
        user=np.arange(n), item=np.arange(n) % 7, label=(np.arange(n) % 3 == 0).astype(float),
        age_days=np.linspace(0, 10, n), channel=np.zeros(n, np.int64), recent=np.arange(n) > 40,
    )
    a, b = ex.sample(20, seed=1), ex.sample(20, seed=1)
    assert len(a) == 20 and np.array_equal(a.user, b.user)
    assert np.all(np.diff(a.user) > 0)  # original order kept
    assert np.array_equal(a.item, a.user % 7)  # rows stay aligned across fields
    assert ex.sample(0, seed=1) is ex and ex.sample(n, seed=1) is ex


def test_max_exposures_must_be_a_non_negative_integer():
    from recsys.config import EngagementConfig, check_section

    with pytest.raises(ConfigError, match=r"\[engagement\] max_exposures = -1 is out of range; valid: 0..1000000000"):
        check_section(EngagementConfig(max_exposures=-1))


# ---- latent taste ------------------------------------------------------------------


def test_shown_logit_is_the_fitted_models_log_odds_of_each_pair():
    users = _users(["farmer", "youth"], ["qinglong", "haigang"])
    items = _items([["ecology"], ["earthquake", "ecology"]], formats=["video", "article"])
    rng = np.random.default_rng(2)
    ex = _exposures(rng.integers(0, 2, 200), rng.integers(0, 2, 200), rng.random(200) < 0.3,
                    age=rng.uniform(0, 9, 200), recent=np.ones(200, bool))
    model = EngagementModel(EngagementConfig(), TAX).fit(ex, users, items)
    tables = SimpleNamespace(
        engagement_intercept=model.intercept_, user_bias=model.user_bias_, item_quality=model.item_quality_,
        user_interest=model.user_interest_, user_format=model.user_format_,
        topic_freshness=model.topic_freshness_, topic_trend=model.topic_trend_,
    )
    got = shown_logit(tables, ex, items, TAX, EngagementConfig().freshness_taus_days)
    # ``logit`` applies the trend in full, as for pairs in the window's recent part (all of them here)
    np.testing.assert_allclose(got, model.logit(ex.user, ex.item, ex.age_days, items), rtol=1e-5, atol=1e-6)
    not_recent = dataclasses.replace(ex, recent=np.zeros(200, bool))
    gap = got - shown_logit(tables, not_recent, items, TAX, EngagementConfig().freshness_taus_days)
    trend = np.where(ex.item == 0, model.topic_trend_[TOPIC["ecology"]],
                     0.5 * (model.topic_trend_[TOPIC["earthquake"]] + model.topic_trend_[TOPIC["ecology"]]))
    np.testing.assert_allclose(gap, trend, rtol=1e-5, atol=1e-6)


def _planted_taste(seed: int, n_users: int = 300, n_items: int = 60, per_user: int = 40):
    """Impressions whose engagement is an offset plus a planted rank-2 taste."""
    rng = np.random.default_rng(seed)
    u_true, v_true = rng.normal(0, 1.2, (n_users, 2)), rng.normal(0, 1.2, (n_items, 2))
    user = np.repeat(np.arange(n_users), per_user)
    item = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    offset = rng.normal(-1.0, 0.5, len(user))
    taste = np.einsum("nk,nk->n", u_true[user], v_true[item])
    label = rng.random(len(user)) < 1 / (1 + np.exp(-(offset + taste)))
    return _exposures(user, item, label), offset, taste, n_users, n_items


def test_latent_taste_recovers_a_planted_taste_on_held_out_pairs():
    ex, offset, taste, n_users, n_items = _planted_taste(0)
    rng = np.random.default_rng(1)
    held = rng.random(len(ex)) < 0.2
    train = Exposures(*(getattr(ex, f.name)[~held] for f in dataclasses.fields(ex)))
    fitted = fit_latent_taste(train, offset[~held], n_users, n_items, dim=2, l2=1.0, sweeps=40, seed=0)
    got = fitted.pair(ex.user[held], ex.item[held])
    # the pairs it never saw: the fitted term orders them as the planted one does
    assert np.corrcoef(got, taste[held])[0, 1] > 0.6
    assert fitted.report["log_loss"] < fitted.report["log_loss_offset"]

    def held_out_loss(logit: np.ndarray) -> float:
        y = ex.label[held]
        return float(np.mean(np.logaddexp(0.0, -np.where(y > 0.5, logit, -logit))))

    # and predicts their engagement better than the offset alone
    assert held_out_loss(offset[held] + got) < held_out_loss(offset[held]) - 0.02


def test_latent_taste_is_seeded_and_zero_for_users_without_pairs():
    ex, offset, _, n_users, n_items = _planted_taste(3, n_users=50)
    a = fit_latent_taste(ex, offset, n_users + 5, n_items, dim=3, l2=2.0, sweeps=5, seed=7)
    b = fit_latent_taste(ex, offset, n_users + 5, n_items, dim=3, l2=2.0, sweeps=5, seed=7)
    np.testing.assert_array_equal(a.user_taste, b.user_taste)
    assert not a.user_taste[n_users:].any() and a.user_taste[:n_users].any()
    empty = fit_latent_taste(ex, offset, n_users, n_items, dim=0, l2=2.0, sweeps=5, seed=7)
    assert empty.user_taste.shape == (n_users, 0) and not empty.pair(ex.user, ex.item).any()


def test_latent_taste_saves_and_loads_through_a_bundle_part(tmp_path):
    from recsys.bundle import BundleReader, BundleWriter

    ex, offset, _, n_users, n_items = _planted_taste(4, n_users=40)
    taste = fit_latent_taste(ex, offset, n_users, n_items, dim=2, l2=2.0, sweeps=5, seed=0)
    BundleWriter(tmp_path).component("taste", taste)
    back = LatentTaste.load(BundleReader(tmp_path).part("taste"))
    np.testing.assert_array_equal(back.pair(ex.user, ex.item), taste.pair(ex.user, ex.item))
    assert back.report == taste.report
    assert LatentTaste.load(BundleReader(tmp_path).part("elsewhere")) is None


def test_a_warm_started_night_predicts_held_out_pairs_like_a_full_refit():
    from push_city import tables

    from recsys.schema import validate
    from recsys.training.engagement import EngagementStart, _log_loss

    users, items, events = tables(n_users=1500, n_items=200, seed=11)
    res = validate(tables=(users, items, events), end="2026-07-02T00:00:00Z")
    ev = res.events.sort_values(C.TIMESTAMP, kind="stable").reset_index(drop=True)
    u_map = IdMap.from_ids(res.users[C.USER_ID].to_numpy())
    i_map = IdMap.from_ids(res.items[C.ITEM_ID].to_numpy())
    end = ev[C.TIMESTAMP].max()
    cfg = EngagementConfig()
    ex = build_exposures(ev, u_map, i_map, res.items, TAX, end=end, trend_days=cfg.trend_days)
    held = np.random.default_rng(5).random(len(ex)) < 0.2
    fit_ex, test_ex = (Exposures(*(getattr(ex, f.name)[m] for f in dataclasses.fields(ex))) for m in (~held, held))
    # yesterday: fitted on the pairs first shown before the last two days (showing = publish time + age)
    published = pd.to_datetime(res.items[C.PUBLISHED_AT], utc=True).dt.as_unit("s").astype("int64").to_numpy()
    old = published[fit_ex.item] + fit_ex.age_days * 86400.0 < (end - pd.Timedelta(days=2)).timestamp()
    yesterday = EngagementModel(cfg, TAX).fit(
        Exposures(*(getattr(fit_ex, f.name)[old] for f in dataclasses.fields(fit_ex))), res.users, res.items
    )
    start = EngagementStart(
        intercept=yesterday.intercept_, authority_quality=yesterday.authority_quality_,
        item_quality=yesterday.item_quality_, segment_interest=yesterday.segment_interest_,
        user_interest=yesterday.user_interest_, segment_format=yesterday.segment_format_,
        user_format=yesterday.user_format_, topic_freshness=yesterday.topic_freshness_,
        topic_trend=yesterday.topic_trend_, user_bias=yesterday.user_bias_,
        user_rows=np.arange(len(res.users)), item_rows=np.arange(len(res.items)),
    )
    refit = EngagementModel(cfg, TAX).fit(fit_ex, res.users, res.items)
    # the night: at most warm_sweeps sweeps from yesterday's effects, on the same pairs as the refit
    warm = EngagementModel(cfg, TAX).fit(fit_ex, res.users, res.items, warm_start=start)
    assert 1 <= warm.n_sweeps_ <= cfg.warm_sweeps

    def held_out(model: EngagementModel) -> np.ndarray:
        tables_ = SimpleNamespace(
            engagement_intercept=model.intercept_, user_bias=model.user_bias_, item_quality=model.item_quality_,
            user_interest=model.user_interest_, user_format=model.user_format_,
            topic_freshness=model.topic_freshness_, topic_trend=model.topic_trend_,
        )
        return shown_logit(tables_, test_ex, res.items, TAX, cfg.freshness_taus_days)

    lw, lr, ly = held_out(warm), held_out(refit), held_out(yesterday)
    assert np.corrcoef(lw, lr)[0, 1] > 0.99
    assert _log_loss(test_ex.label, lw) < _log_loss(test_ex.label, lr) * 1.005
    # it did learn from the night: closer to the refit than yesterday's model
    assert np.abs(lw - lr).mean() < 0.5 * np.abs(ly - lr).mean()
    # on a smaller sample, a user without a sampled pair keeps yesterday's bias (not the prior's 0)
    half = dataclasses.replace(cfg, warm_exposures=len(fit_ex) // 2)
    thin = EngagementModel(half, TAX).fit(fit_ex, res.users, res.items, warm_start=start)
    unsampled = np.setdiff1d(np.arange(len(res.users)), fit_ex.sample(len(fit_ex) // 2, cfg.seed).user)
    assert len(unsampled) and (yesterday.user_bias_[unsampled] != 0).any()
    np.testing.assert_allclose(thin.user_bias_[unsampled], yesterday.user_bias_[unsampled], rtol=1e-6)
