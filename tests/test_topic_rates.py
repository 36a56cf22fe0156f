"""Per-user topic and format rates shrunk by evidence (recsys.training.topic_rates) and their features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from push_city import END, engine_config, tables

from recsys.ranking import features as F
from recsys.ranking.state import build_state
from recsys.ranking.users import resolve
from recsys.schema import validate_tables
from recsys.taxonomy import load_taxonomy
from recsys.training import train_model
from recsys.training.model import TrainedModel
from recsys.training.topic_rates import (
    KAPPA_GRID,
    fit_strength,
    fit_topic_rates,
    shrunk_lift,
)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_prior_strength_is_fitted_from_the_spread_of_the_rates():
    rng = np.random.default_rng(0)
    mu, n = 0.3, 20
    for kappa in (5.0, 50.0):
        rates = rng.beta(kappa * mu, kappa * (1 - mu), 4000)
        engaged = rng.binomial(n, rates)
        got = fit_strength(engaged, np.full(4000, n), np.full(4000, mu))
        assert kappa / 2 < got < kappa * 2
    # rates that do not differ beyond chance: the prior wins (a strength of hundreds of showings or more)
    engaged = rng.binomial(n, mu, 4000)
    assert fit_strength(engaged, np.full(4000, n), np.full(4000, mu)) > 200


def test_few_showings_stay_near_the_prior_many_reach_the_users_rate():
    prior, kappa = 0.3, 10.0
    few = shrunk_lift(np.array([2.0]), np.array([2.0]), np.array([prior]), kappa)[0]
    many = shrunk_lift(np.array([160.0]), np.array([200.0]), np.array([prior]), kappa)[0]
    raw = _logit(0.8) - _logit(prior)
    assert 0 < few < 0.25 * raw  # 2 of 2 engaged: says little
    assert abs(many - raw) < 0.15  # 160 of 200: close to the user's own rate
    assert shrunk_lift(np.array([0.0]), np.array([0.0]), np.array([prior]), kappa)[0] == 0.0


def _hand_log(rng: np.random.Generator):
    """60 users of one segment with their own topic-0 rates (topic 1 at 0.3 for all), plus two users
    at a topic-0 rate of 0.9: one shown 2 topic-0 items, one shown 200."""
    n_items = 400  # items 0..199 list topic 0, 200..399 topic 1
    users, items, labels = [], [], []
    rates = rng.beta(3.0, 5.0, 60)
    for u in range(60):
        for topic, rate in ((0, rates[u]), (1, 0.3)):
            shown = rng.choice(200, 30, replace=False) + 200 * topic
            users += [u] * 30
            items += shown.tolist()
            labels += (rng.random(30) < rate).tolist()
    for u, n in ((60, 2), (61, 200)):
        for topic, rate, m in ((0, 0.9, n), (1, 0.3, 30)):
            shown = rng.choice(200, m, replace=False) + 200 * topic
            users += [u] * m
            items += shown.tolist()
            labels += (rng.random(m) < rate).tolist()
    topics = sp.csr_matrix((np.ones(n_items), (np.arange(n_items), np.arange(n_items) // 200)), shape=(n_items, 2))
    return np.array(users), np.array(items), np.array(labels, float), topics


def test_a_users_topic_lift_grows_with_evidence():
    users, items, labels, topics = _hand_log(np.random.default_rng(1))
    fmt = np.zeros(topics.shape[0], np.int64)
    rates = fit_topic_rates(users, items, labels, topics, fmt, np.zeros(62, np.int64), 62, 1)
    assert rates.report["kappa_topic"] < KAPPA_GRID[-1]  # the users' topic-0 rates differ: a finite strength
    dense = rates.topic_rows(np.array([60, 61, -1]), 2)
    assert dense.shape == (3, 3) and np.all(dense[2] == 0) and np.all(dense[:, 2] == 0)
    # within a user (what a ranking compares): how much more topic 0 appeals than topic 1
    few, many = dense[0, 0] - dense[0, 1], dense[1, 0] - dense[1, 1]
    assert many > 1.0 and many > 3 * abs(few)
    # one format for everyone: nothing to tell users apart by it beyond their propensity
    assert rates.format_lift.shape == (62, 1)


@pytest.fixture(scope="module")
def city_model():
    taxonomy = load_taxonomy()
    users, items, events = tables()
    clean = validate_tables(users, items, events, taxonomy=taxonomy, end=END)
    config = engine_config()
    config = dataclasses.replace(config, ranker=dataclasses.replace(config.ranker, topic_rates=True))
    return train_model(clean.users, clean.items, clean.events, config=config, taxonomy=taxonomy)


def test_topic_rates_are_opt_in():
    # off by default ([ranker] topic_rates): the step is skipped, the model has no component
    taxonomy = load_taxonomy()
    users, items, events = tables(n_users=120, n_items=60)
    clean = validate_tables(users, items, events, taxonomy=taxonomy, end=END)
    model = train_model(clean.users, clean.items, clean.events, config=engine_config(), taxonomy=taxonomy)
    assert model.topic_rates is None


def _block(model: TrainedModel, n: int = 20):
    state = build_state(model, None, model.config.ranking)
    ids = [u for u in state.user_ids.astype(str)[:n]] + ["no-such-user"]
    tax = state.taxonomy
    users = resolve(state, ids, [None] * n + [(next(iter(tax.groups)), None, next(iter(tax.regions)))])
    cand = np.tile(np.arange(min(12, state.catalog.n_items)), (len(ids), 1))
    return F.Block(state, users, cand, int(pd.Timestamp(END).as_unit("ns").value))


def test_features_gather_the_users_lifts_at_the_items_topics(city_model):
    rates = city_model.topic_rates
    assert rates is not None and rates.n_users == len(city_model.users)
    block = _block(city_model)
    got = F._topic_rate(block)
    cat = block.state.catalog
    n_t = cat.topic_bool.shape[1]
    for r, row in enumerate(block.users.rows[:-1]):
        lifts = np.zeros(n_t + 1)
        lo, hi = rates.topic_indptr[row], rates.topic_indptr[row + 1]
        lifts[rates.topic_index[lo:hi]] = rates.topic_lift[lo:hi]
        want = (lifts[cat.topic_idx[block.cand[r]]] * cat.topic_weight[block.cand[r]]).sum(axis=1)
        np.testing.assert_allclose(got[r], want, rtol=1e-5, atol=1e-7)
    assert np.all(got[-1] == 0)  # a user the bundle does not know
    fmt = F._format_rate(block)
    code = cat.format_code[block.cand[0]]
    np.testing.assert_allclose(fmt[0], np.where(code >= 0, rates.format_lift[block.users.rows[0]][code], 0), rtol=1e-6)


def test_bundle_with_and_without_the_component_loads(city_model, tmp_path):
    path = city_model.save(tmp_path / "with")
    loaded = TrainedModel.load(path)
    for name in loaded.topic_rates.ARRAYS:
        np.testing.assert_array_equal(getattr(loaded.topic_rates, name), getattr(city_model.topic_rates, name))
    assert loaded.topic_rates.report == city_model.topic_rates.report
    # a bundle written before the component (no topic_rates/ part) loads, and the features read 0
    city_model.topic_rates, kept = None, city_model.topic_rates
    try:
        old = TrainedModel.load(city_model.save(tmp_path / "without"))
    finally:
        city_model.topic_rates = kept
    assert old.topic_rates is None
    assert not (old.path / "topic_rates").exists()
    block = _block(old)
    assert not F._topic_rate(block).any() and not F._format_rate(block).any()
