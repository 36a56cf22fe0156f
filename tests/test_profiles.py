"""Topic-interest profiles: hand-computed smoothing, shrinkage, negatives, priors, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from recsys.config import InteractionConfig, ProfileConfig
from recsys.exceptions import ConfigError, NotFittedError, SchemaError, UnknownCodeError
from recsys.idmap import IdMap
from recsys.training.interactions import build_interactions
from recsys.training.profiles import TopicProfiles, item_topic_shares
from recsys.taxonomy import load_taxonomy

TAX = load_taxonomy()
TOPICS = list(TAX.topics)
EQ, ECO, AGRI = TOPICS.index("earthquake"), TOPICS.index("ecology"), TOPICS.index("modern_agriculture")
END = pd.Timestamp("2024-06-30T00:00:00Z")


def _events(rows):
    frame = pd.DataFrame(
        [(u, i, t, END) for u, i, t in rows], columns=["user_id", "item_id", "event_type", "timestamp"]
    )
    return frame.astype({"timestamp": "datetime64[us, UTC]"})


def _fit(users_df, items_df, rows, **cfg):
    inter = build_interactions(
        _events(rows), IdMap.from_ids(users_df["user_id"]), IdMap.from_ids(items_df["item_id"]), InteractionConfig()
    )
    config = dataclasses.replace(ProfileConfig(), **cfg)
    return TopicProfiles(config, TAX).fit(inter, users_df, items_df), inter


ITEMS = pd.DataFrame(
    {
        "item_id": ["a", "b", "c", "d"],
        "topics": [["earthquake"], ["earthquake", "ecology"], ["modern_agriculture"], ["ecology"]],
    }
)


def test_hand_computed_smoothing():
    users = pd.DataFrame({"user_id": ["u0", "u1", "u2"], "group": "youth", "region": "haigang"})
    users.loc[2, "region"] = "qinglong"  # no events: gets its segment prior
    prof, _ = _fit(users, ITEMS, [("u0", "a", "click"), ("u1", "b", "click")],
                   prior_strength=2.0, segment_prior_strength=0.0)
    # own distributions: u0 = eq 1; u1 = eq .5, eco .5 -> segment (and group, global) prior = eq .75, eco .25
    np.testing.assert_allclose(prof.prior_for("youth", "haigang")[[EQ, ECO]], [0.75, 0.25], rtol=1e-6)
    # u0: (1 + 2 * .75, 0 + 2 * .25) / 3 ; u1: (.5 + 1.5, .5 + .5) / 3
    np.testing.assert_allclose(prof.user_topics_[0, [EQ, ECO]], [2.5 / 3, 0.5 / 3], rtol=1e-6)
    np.testing.assert_allclose(prof.user_topics_[1, [EQ, ECO]], [2 / 3, 1 / 3], rtol=1e-6)
    # an empty segment inherits its group's prior; an empty group the global one
    np.testing.assert_allclose(prof.user_topics_[2], prof.prior_for("youth", "haigang"), rtol=1e-6)
    np.testing.assert_allclose(prof.prior_for("farmer", "changli")[[EQ, ECO]], [0.75, 0.25], rtol=1e-6)
    np.testing.assert_allclose(prof.user_topics_.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(prof.user_evidence_, [1.0, 1.0, 0.0])
    assert prof.user_topics_.dtype == np.float32 and prof.user_topics_.shape == (3, len(TOPICS))
    assert prof.top_topics(1, 2) == [("earthquake", pytest.approx(2 / 3)), ("ecology", pytest.approx(1 / 3))]


def _farm_world(n_clicks_new_user):
    """Farmers in changli love agriculture; one new farmer clicks earthquake items n times."""
    users = pd.DataFrame({"user_id": [f"f{k}" for k in range(20)] + ["new"], "group": "farmer", "region": "changli"})
    rows = [(f"f{k}", "c", "click") for k in range(20)]
    rows += [("new", "a", "click")] * n_clicks_new_user
    return _fit(users, ITEMS, rows)[0]


def test_profile_shrinks_to_prior_with_few_events_and_to_data_with_many():
    few = _farm_world(1).user_topics_[-1]
    many = _farm_world(200).user_topics_[-1]
    prior = _farm_world(1).prior_for("farmer", "changli")
    assert prior[AGRI] > 0.9
    # one click: still mostly the segment's taste
    assert few[AGRI] > few[EQ] and np.abs(few - prior).sum() < np.abs(few - np.eye(len(TOPICS))[EQ]).sum()
    # two hundred clicks: the user's own taste
    assert many[EQ] > 0.95
    assert np.abs(many - np.eye(len(TOPICS))[EQ]).sum() < 0.1


def test_negative_feedback_pulls_a_topic_below_its_prior_share():
    users = pd.DataFrame({"user_id": ["a0", "a1", "x"], "group": "resident", "region": "lulong"})
    rows = [("a0", "d", "click"), ("a1", "a", "click"), ("x", "d", "dismiss")]
    prof, _ = _fit(users, ITEMS, rows, prior_strength=5.0)
    prior = prof.prior_for("resident", "lulong")
    assert prof.user_topics_[2, ECO] < prior[ECO] - 0.1
    assert prof.user_topics_[2, EQ] > prior[EQ]
    np.testing.assert_allclose(prof.user_topics_[2].sum(), 1.0, rtol=1e-6)
    stronger = _fit(users, ITEMS, rows, prior_strength=5.0, negative_factor=3.0)[0]
    assert stronger.user_topics_[2, ECO] < prof.user_topics_[2, ECO]


def test_segment_with_few_users_leans_on_its_group():
    users = pd.DataFrame(
        {"user_id": [f"h{k}" for k in range(30)] + ["q0"], "group": "youth", "region": ["haigang"] * 30 + ["qinglong"]}
    )
    rows = [(f"h{k}", "a", "click") for k in range(30)] + [("q0", "c", "click")]
    prof = _fit(users, ITEMS, rows, segment_prior_strength=10.0)[0]
    q = prof.prior_for("youth", "qinglong")
    # one agriculture fan in qinglong does not make qinglong's prior an agriculture one
    assert q[EQ] > q[AGRI]
    assert prof.segments_.shape == (len(TAX.groups) * len(TAX.regions), 2)
    s = prof.segment_index("youth", "qinglong")
    assert tuple(prof.segments_.iloc[s]) == ("youth", "qinglong")
    np.testing.assert_allclose(prof.segment_priors_.sum(axis=1), 1.0, rtol=1e-5)


def test_no_events_falls_back_to_catalogue_topic_shares():
    users = pd.DataFrame({"user_id": ["u0"], "group": "youth", "region": "haigang"})
    prof = _fit(users, ITEMS, [])[0]
    # shares: a eq 1; b eq .5 eco .5; c agri 1; d eco 1 -> eq 1.5, eco 1.5, agri 1 over 4
    np.testing.assert_allclose(prof.global_prior_[[EQ, ECO, AGRI]], [1.5 / 4, 1.5 / 4, 1 / 4], rtol=1e-6)
    np.testing.assert_allclose(prof.user_topics_[0], prof.global_prior_, rtol=1e-6)


def test_item_topic_shares_hand_computed():
    shares = item_topic_shares(IdMap.from_ids(["b", "a"]), ITEMS, TAX).toarray()
    assert shares[0, EQ] == pytest.approx(0.5) and shares[0, ECO] == pytest.approx(0.5)
    assert shares[1, EQ] == 1.0 and shares.sum() == pytest.approx(2.0)


def test_input_errors():
    users = pd.DataFrame({"user_id": ["u0"], "group": "youth", "region": "haigang"})
    with pytest.raises(UnknownCodeError, match="unknown region 'mars'; valid: haigang"):
        _fit(users.assign(region="mars"), ITEMS, [])
    with pytest.raises(UnknownCodeError, match="unknown group 'alien'"):
        _fit(users.assign(group="alien"), ITEMS, [])
    with pytest.raises(UnknownCodeError, match="unknown topic 'magic'; valid: disaster_prevention"):
        _fit(users, ITEMS.assign(topics=[["magic"]] * 4), [])
    with pytest.raises(SchemaError, match="must hold lists of topic codes, got 'earthquake'"):
        _fit(users, ITEMS.assign(topics="earthquake"), [])
    with pytest.raises(SchemaError, match="users table lacks column\\(s\\) \\['region'\\]"):
        _fit(users.drop(columns="region"), ITEMS, [])
    two = IdMap.from_ids(["u0", "u9"])
    inter = build_interactions(_events([]), two, IdMap.from_ids(["a", "zz"]), InteractionConfig())
    with pytest.raises(SchemaError, match="users table lacks 1 user\\(s\\) of the id map, e.g. 'u9'"):
        TopicProfiles(ProfileConfig(), TAX).fit(inter, users, ITEMS)
    inter = build_interactions(_events([]), IdMap.from_ids(["u0"]), IdMap.from_ids(["a", "zz"]), InteractionConfig())
    with pytest.raises(SchemaError, match="items table lacks 1 item\\(s\\) of the id map, e.g. 'zz'"):
        TopicProfiles(ProfileConfig(), TAX).fit(inter, users, ITEMS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prior_strength": 0.0}, r"\[profiles\] prior_strength = 0.0 is out of range; valid: > 0 and <= 1000000"),
        ({"negative_factor": -1.0}, r"\[profiles\] negative_factor = -1.0 is out of range"),
        ({"segment_prior_strength": -1.0}, r"\[profiles\] segment_prior_strength = -1.0 is out of range"),
    ],
)
def test_config_errors(change, message):
    users = pd.DataFrame({"user_id": ["u0"], "group": "youth", "region": "haigang"})
    with pytest.raises(ConfigError, match=message):
        _fit(users, ITEMS, [], **change)


def test_lookup_errors():
    prof = TopicProfiles(ProfileConfig(), TAX)
    with pytest.raises(NotFittedError, match="not fitted"):
        prof.prior_for("youth", "haigang")
    users = pd.DataFrame({"user_id": ["u0"], "group": "youth", "region": "haigang"})
    prof = _fit(users, ITEMS, [("u0", "a", "click")])[0]
    with pytest.raises(UnknownCodeError, match="unknown group 'kids'"):
        prof.prior_for("kids", "haigang")
    with pytest.raises(ConfigError, match="user_idx 1 out of range; valid: 0..0"):
        prof.top_topics(1)
    with pytest.raises(ConfigError, match="n must be an integer >= 1, got 0"):
        prof.top_topics(0, 0)


def test_blockwise_computation_equals_one_block(monkeypatch):
    import recsys.training.profiles as profiles_module

    users = pd.DataFrame({"user_id": [f"u{k}" for k in range(7)], "group": "youth", "region": "haigang"})
    users.loc[4:, "group"] = "farmer"
    rows = [("u0", "a", "click"), ("u1", "b", "like"), ("u2", "d", "dismiss"), ("u4", "c", "share"),
            ("u5", "c", "click"), ("u5", "a", "report")]
    whole = _fit(users, ITEMS, rows)[0]
    monkeypatch.setattr(profiles_module, "_CHUNK_USERS", 2)
    blocks = _fit(users, ITEMS, rows)[0]
    np.testing.assert_allclose(blocks.user_topics_, whole.user_topics_, rtol=1e-6)
    np.testing.assert_allclose(blocks.segment_priors_, whole.segment_priors_, rtol=1e-6)
    np.testing.assert_array_equal(blocks.user_evidence_, whole.user_evidence_)


def test_top_topics_of_a_profile_row_heaviest_first_ties_in_taxonomy_order():
    from recsys.training.profiles import top_topics

    assert top_topics(np.array([0.2, 0.5, 0.2, 0.1]), ["a", "b", "c", "d"], 3) == [("b", 0.5), ("a", 0.2), ("c", 0.2)]
    with pytest.raises(ConfigError, match="n must be an integer >= 1, got 0"):
        top_topics(np.zeros(2), ["a", "b"], 0)
    with pytest.raises(ConfigError, match=r"shape \(3,\) does not fit 2 topics"):
        top_topics(np.zeros(3), ["a", "b"], 1)
