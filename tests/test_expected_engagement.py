"""Expected engagement as a probability: the intercept and user bias in the bundle, the
Recommender's ``expected_engagement``, and the coverage swaps' cost in expected engagements."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from recsys import columns as C
from recsys.training.engagement import EngagementModel, build_exposures
from recsys.exceptions import ConfigError
from recsys.idmap import IdMap
from recsys.training.model import TrainedModel
from recsys.push import coverage as CV
from recsys.ranking import Recommender
from recsys.schema import validate_tables
from recsys.taxonomy import load_taxonomy
from recsys.training import train_model

try:
    from tests import push_city as city
except ImportError:  # tests/ on sys.path
    import push_city as city

TAX = load_taxonomy()


@pytest.fixture(scope="module")
def clean():
    users, items, events = city.tables(n_users=200, n_items=90, seed=11)
    return validate_tables(users, items, events, taxonomy=TAX, end=city.END)


@pytest.fixture(scope="module")
def model(clean):
    return train_model(clean.users, clean.items, clean.events, config=city.engine_config(), taxonomy=TAX)


@pytest.fixture(scope="module")
def fitted(clean, model):
    """The engagement model fitted on the same window as training fits it."""
    users, items = clean.users.reset_index(drop=True), clean.items.reset_index(drop=True)
    exposures = build_exposures(
        clean.events, IdMap.from_ids(users[C.USER_ID].to_numpy()), IdMap.from_ids(items[C.ITEM_ID].to_numpy()),
        items, TAX, end=pd.Timestamp(model.window["end"]), trend_days=model.config.engagement.trend_days,
    )
    return EngagementModel(model.config.engagement, TAX).fit(exposures, users, items)


def test_training_keeps_the_intercept_and_user_bias(model, fitted):
    assert fitted.n_exposures_ > 0  # the city has unclicked impressions: there is a rate to learn
    assert model.engagement_intercept == pytest.approx(fitted.intercept_)
    assert model.engagement_intercept != 0.0
    np.testing.assert_allclose(model.user_bias, fitted.user_bias_)
    assert np.asarray(model.user_bias).std() > 0


def test_save_and_load_keep_intercept_and_bias(tmp_path, model):
    path = model.save(tmp_path / "models", version="20260630T160000Z")
    back = TrainedModel.load(path)
    assert back.engagement_intercept == model.engagement_intercept
    np.testing.assert_array_equal(back.user_bias, model.user_bias)
    assert back.user_bias.dtype == np.float32


def test_a_replaced_bias_file_is_named(tmp_path, model):
    path = model.save(tmp_path / "models", version="20260630T160000Z")
    np.save(path / "user_bias.npy", np.zeros(3, np.float32))
    with pytest.raises(Exception, match="user_bias"):
        TrainedModel.load(path)
    with pytest.raises(Exception, match=r"user_bias\.npy: shape \(3,\)"):
        TrainedModel.load(path, verify=False)


def test_expected_engagement_is_the_engagement_models_probability(model, fitted, clean):
    rec = Recommender.from_model(model)
    items = clean.items.reset_index(drop=True)
    rng = np.random.default_rng(3)
    u = rng.integers(0, len(clean.users), 60)
    i = rng.integers(0, len(items), 60)
    end = pd.Timestamp(model.window["end"])
    published = pd.to_datetime(items[C.PUBLISHED_AT], utc=True)
    age = ((end - published).dt.total_seconds() / 86_400).to_numpy()[i]
    want = 1.0 / (1.0 + np.exp(-fitted.logit(u, i, age, items)))
    got = rec.expected_engagement(
        clean.users[C.USER_ID].to_numpy()[u].tolist(), items[C.ITEM_ID].to_numpy()[i].tolist(), now=end
    )
    assert got.shape == (60,) and ((got > 0) & (got < 1)).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # the user's bias moves the probability, not only the order
    assert np.ptp(got) > 0.01


def test_a_cold_user_has_no_bias_and_their_segments_terms(model):
    rec = Recommender.from_model(model)
    warm = model.users.iloc[0]
    cold = pd.DataFrame({C.USER_ID: ["new"], C.GROUP: [warm[C.GROUP]], C.REGION: [warm[C.REGION]]})
    item = str(model.items[C.ITEM_ID].iloc[0])
    p = rec.expected_engagement(["new"], [item], users=cold)
    seg = rec.state.segment_by_pair[
        list(TAX.groups).index(warm[C.GROUP]), list(TAX.regions).index(warm[C.REGION])
    ]
    state = rec.state
    j = state.catalog.index_of[item]
    fmt = state.catalog.format_code[j]
    logit = (
        model.engagement_intercept
        + state.engagement.item_quality[j]
        + (state.engagement.segment_interest[seg][state.catalog.topic_idx[j] % len(TAX.topics)]
           * state.catalog.topic_weight[j]).sum()
        + (state.engagement.segment_format[seg, fmt] if fmt >= 0 else 0.0)
        + state.timeliness(state.default_now_ns)[j]
    )
    np.testing.assert_allclose(p, 1.0 / (1.0 + np.exp(-logit)), rtol=1e-4)


def test_bad_pairs_are_refused(model):
    rec = Recommender.from_model(model)
    user = str(model.users[C.USER_ID].iloc[0])
    with pytest.raises(ConfigError, match="1 user ids but 2 item ids"):
        rec.expected_engagement([user], ["i0000", "i0001"])
    with pytest.raises(ConfigError, match="'nope' is not in the catalogue"):
        rec.expected_engagement([user], ["nope"])


# ---- coverage: the swaps' cost in expected engagements -------------------------------------

TODAY = dt.date(2026, 7, 1)
ITEM_TOPICS = {"a": ["health_literacy"], "b": ["ecology"], "x": ["modern_agriculture"], "y": ["modern_agriculture"]}
#: the engagement probability of every item, for every user (a model with known answers)
PROB = {"a": 0.30, "b": 0.20, "x": 0.05, "y": 0.12}


def _lists(rows):
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.CHANNEL, C.ITEM_ID, C.SCORE])
    frame[C.RANK] = frame.groupby([C.USER_ID, C.CHANNEL])[C.SCORE].rank(ascending=False, method="first").astype(int)
    frame[C.REASONS] = [["r"] for _ in range(len(frame))]
    return frame


def _fetch(offers):
    def fetch(channel, user_ids, k, topics, exclude):
        out = [(u, r + 1, i, s, ["why"]) for u in user_ids for r, (i, s) in enumerate(offers.get(u, []))]
        return pd.DataFrame(out, columns=[C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE, C.REASONS])

    return fetch


def _apply(frame, offers, engagement, ids=("u1",)):
    from recsys.push.history import DAY
    from recsys.push.lists import ItemTopics

    rule = CV.parse_rules([{"name": "agri", "groups": ["farmer"], "topics": ["modern_agriculture"]}], TAX)
    index = pd.Index(list(ids), dtype=object)
    who = CV.ChunkUsers(ids=index, groups=np.array(["farmer"] * len(ids), dtype=object),
                        regions=np.array(["qinglong"] * len(ids), dtype=object), sub_groups=None,
                        capped=np.zeros(len(ids), dtype=bool))
    history = pd.DataFrame({C.USER_ID: pd.Series(dtype=object), C.ITEM_ID: pd.Series(dtype=object),
                            DAY: pd.Series(dtype="datetime64[s]")})
    return CV.apply_rules(frame, who, rule, history=history, topics=ItemTopics.build(pd.Series(ITEM_TOPICS)),
                          day=TODAY, fetch=_fetch(offers), engagement=engagement)


def _known(channel, user_ids, item_ids):
    assert len(user_ids) == len(item_ids)
    return np.array([PROB[i] for i in item_ids])


def test_swap_cost_is_the_expected_engagements_given_up():
    frame = _lists([("u1", "app_push", "a", 0.9), ("u1", "app_push", "b", 0.4)])
    out, (row,) = _apply(frame, {"u1": [("x", 0.3)]}, _known)
    assert out[C.ITEM_ID].tolist() == ["a", "x"]  # b, the lowest-scored slot, gave way
    assert row["cost_engagement"] == pytest.approx(PROB["b"] - PROB["x"])
    assert row["cost_engagement"] > 0 and row["cost_score"] == pytest.approx(0.4 - 0.3)
    table = CV.merge_stats([[row]], CV.parse_rules([{"name": "agri", "groups": ["farmer"]}], TAX))
    assert table[0]["cost_engagement"] == pytest.approx(PROB["b"] - PROB["x"])
    summary = CV.summary(table)
    assert summary["agri"]["cost_engagement"] == pytest.approx(0.15)
    line = CV.summary_lines({"rules": summary})[0]
    assert "0.150 expected engagements given up" in line


def test_a_swap_to_a_likelier_item_has_a_negative_cost():
    # the score says y is worse than b; the engagement model says it is likelier: the cost is a gain
    frame = _lists([("u1", "app_push", "a", 0.9), ("u1", "app_push", "b", 0.4)])
    _, (row,) = _apply(frame, {"u1": [("y", 0.1)]}, lambda c, u, i: np.array([{"b": 0.1}.get(j, 0.25) for j in i]))
    assert row["cost_engagement"] == pytest.approx(0.1 - 0.25)


def test_no_swap_costs_nothing_and_no_model_leaves_the_cost_unknown():
    covered = _lists([("u1", "app_push", "x", 0.9), ("u1", "app_push", "b", 0.4)])
    out, (row,) = _apply(covered, {"u1": [("y", 0.3)]}, _known)
    assert out[C.ITEM_ID].tolist() == ["x", "b"] and row["items_added"] == 0
    assert row["cost_engagement"] == 0.0
    frame = _lists([("u1", "app_push", "a", 0.9), ("u1", "app_push", "b", 0.4)])
    _, (unpriced,) = _apply(frame, {"u1": [("x", 0.3)]}, None)
    assert unpriced["cost_engagement"] is None and unpriced["items_added"] == 1
    assert np.isnan(CV.table_frame([unpriced])["cost_engagement"].iloc[0])
    assert "not priced" in CV.summary_lines({"rules": CV.summary([unpriced])})[0]


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    import tomli_w

    from recsys.push import run_nightly
    from recsys.push.writer import read_pushes

    root = city.trained_city(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("engage_nights")
    rule = {"name": "farm", "groups": ["farmer"], "regions": ["qinglong", "changli"], "topics": ["modern_agriculture"]}
    out = {"bundle": root / "models" / "latest"}
    for name, rules in (("none", []), ("farm", [rule])):
        cfg = tmp / f"{name}.toml"
        cfg.write_text(tomli_w.dumps({"push": {**city.TRAIN_CONFIG["push"], "coverage": rules}}), encoding="utf-8")
        report = run_nightly(out["bundle"], city.DAY, tmp / name, config_path=cfg, stream=None)
        out[name] = (report, read_pushes(tmp / name, city.DAY))
    return out


def test_the_push_reports_its_coverage_cost_in_expected_engagements(nights):
    base, (report, rows) = nights["none"][1], nights["farm"]
    cov = report["coverage"]
    rule = cov["rules"]["farm"]
    assert rule["items_added"] > 0 and "expected engagements" in cov["cost_unit"]
    table = CV.table_frame(cov["table"])
    assert table["cost_engagement"].notna().all()
    assert table["cost_engagement"].sum() == pytest.approx(rule["cost_engagement"], abs=1e-5)
    # recompute from the two nights: per changed list, what left it and what came in, priced at its send time
    rec = Recommender.load(nights["bundle"])
    want = 0.0
    keys = [C.USER_ID, C.CHANNEL]
    for (user, channel), after in rows.groupby(keys):
        before = base[(base[C.USER_ID] == user) & (base[C.CHANNEL] == channel)]
        removed = sorted(set(before[C.ITEM_ID]) - set(after[C.ITEM_ID]))
        added = sorted(set(after[C.ITEM_ID]) - set(before[C.ITEM_ID]))
        assert len(removed) == len(added)
        if removed:
            now = after["send_after"].iloc[0]
            want += rec.expected_engagement([user] * len(removed), removed, now=now).sum()
            want -= rec.expected_engagement([user] * len(added), added, now=now).sum()
    assert rule["cost_engagement"] == pytest.approx(want, abs=1e-4)
    # without rules the rows are the ranking's own
    assert "coverage" not in nights["none"][0]


# ---- broadcast: the audience-mixed probability ------------------------------------------


def test_broadcast_reports_the_audience_mixed_probability(model):
    from recsys.broadcast import scores

    rec = Recommender.from_model(model)
    state = rec.state
    users = model.users
    g, r = users[C.GROUP].iloc[0], users[C.REGION].iloc[0]
    members = np.flatnonzero((users[C.GROUP] == g).to_numpy() & (users[C.REGION] == r).to_numpy())
    other = next(x for x in city.GROUPS if x != g)
    places = pd.DataFrame({C.PLACE_ID: ["p"], C.REGION: [r], C.AUDIENCE: [{g: 0.7, other: 0.3}]})
    seg = scores.place_segments(places, TAX)
    now = state.default_now_ns
    odds, probs = scores.segment_scores(state, seg, now, min_users=1)
    logits = scores.segment_logits(state, seg, now, min_users=1)
    # the full log-odds carry the intercept and the segment's users' mean bias, beside the item terms
    interest, fmt, _ = scores._segment_tastes(state, seg, min_users=1)
    j = 5
    topic = np.append(interest[0], 0.0)[state.catalog.topic_idx[j]] @ state.catalog.topic_weight[j]
    f = state.catalog.format_code[j]
    terms = topic + (fmt[0, f] if f >= 0 else 0.0) + state.engagement.item_quality[j] + state.timeliness(now)[j]
    assert logits[0, j] == pytest.approx(terms, abs=1e-4)
    full = model.engagement_intercept + np.asarray(model.user_bias)[members].mean() + terms
    assert probs[0, j] == pytest.approx(1 / (1 + np.exp(-full)), rel=1e-4)
    # the choice stays on the relative odds
    assert odds[0, j] == pytest.approx(np.exp(terms), rel=1e-4)
    assert ((probs >= 0) & (probs < 1)).all()
    mixed = scores.place_values(seg, probs)[0]
    np.testing.assert_allclose(mixed, 0.7 * probs[0] + 0.3 * probs[1], rtol=1e-5)


def test_programmes_report_the_mixed_probability(tmp_path):
    from recsys.broadcast import scores
    from recsys.broadcast.places import load_places
    from recsys.broadcast.programme import day_bounds, plan_programmes
    from recsys.config import BroadcastConfig
    from recsys.synthetic.city import generate_city, write_city

    day = dt.date(2026, 6, 30)
    small = generate_city(300, 120, days=15, seed=3)
    write_city(small, tmp_path / "city")
    clean = validate_tables(small.users, small.items, small.events, end=small.end)
    trained = train_model(clean.users, clean.items, clean.events, config=city.engine_config())
    state = Recommender.from_model(trained, catalog=clean.items).state
    places = load_places(tmp_path / "city" / "places.parquet", state.taxonomy, trained.users)
    prog = plan_programmes(state, places, day, BroadcastConfig())
    rows = prog.rows
    assert len(rows)
    seg = scores.place_segments(places, state.taxonomy)
    odds, probs = scores.segment_scores(state, seg, day_bounds(day, state.taxonomy)[0], BroadcastConfig().min_segment_users)
    p = places.reset_index(drop=True).reset_index().set_index(C.PLACE_ID).loc[rows[C.PLACE_ID], "index"].to_numpy()
    j = np.array([state.catalog.index_of[i] for i in rows[C.ITEM_ID]])
    mixed = np.asarray(seg.shares[p].multiply(probs[:, j].T).sum(axis=1)).ravel()
    got = rows[C.EXPECTED_ENGAGEMENT].to_numpy()
    np.testing.assert_allclose(got, mixed, rtol=1e-4)
    assert ((got > 0) & (got < 1)).all()
    # the odds it chooses by are not the figure it reports
    chosen = np.asarray(seg.shares[p].multiply(odds[:, j].T).sum(axis=1)).ravel()
    assert not np.allclose(chosen, got)
