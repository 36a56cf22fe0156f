"""Expected engagement as a probability: the intercept and user bias in the bundle, the
Recommender's ``expected_engagement``, and the coverage swaps' cost in expected engagements."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from recsys import columns as C
from recsys.engagement import EngagementModel, build_exposures
from recsys.exceptions import ConfigError
from recsys.idmap import IdMap
from recsys.model import TrainedModel
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
