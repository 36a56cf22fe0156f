"""The averaged starting score of a ranker trained on candidates (``[ranker] base_features``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys.bundle import read_part, write_part
from recsys.config import RankerConfig
from recsys.exceptions import ArtifactError
from recsys.training.ranker import LearnedRanker, mean_base
from recsys.training.ranker_training import _ndcg_at, base_members


class _F:
    def __init__(self, name: str) -> None:
        self.name = name


def _two_signals(seed: int = 0, n_q: int = 120, per: int = 30):
    """Queries whose label is the top third of ``a + b``: each of a and b alone orders them
    imperfectly, their mean (on the log scale) much better."""
    rng = np.random.default_rng(seed)
    a = rng.gamma(2.0, 1.0, n_q * per)
    b = rng.gamma(2.0, 1.0, n_q * per) * 50.0  # another scale (counts per day vs shares)
    noise = rng.random(n_q * per)  # a feature with no signal
    score = np.log1p(a / a.mean()) + np.log1p(b / b.mean())
    y = np.zeros(n_q * per, np.int32)
    for q in range(n_q):
        s = slice(q * per, (q + 1) * per)
        y[s] = score[s] >= np.quantile(score[s], 2 / 3)
    x = np.stack([a, b, b * 2.0, noise, -a], axis=1).astype(np.float32)
    return x, y, np.full(n_q, per, np.int64)


def test_members_are_the_best_features_with_distinct_orders_and_the_mean_beats_each():
    x, y, groups = _two_signals()
    feats = tuple(_F(n) for n in ("a", "b", "b_twice", "noise", "negative"))
    names, means, ndcgs = base_members(x, y, groups, feats, 3)
    # b_twice orders exactly as b does: skipped; a negative feature is never a member
    assert "b_twice" not in names and "negative" not in names
    assert set(names[:2]) == {"a", "b"} and ndcgs == sorted(ndcgs, reverse=True)
    np.testing.assert_allclose(means, [x[:, ["a", "b", "b_twice", "noise", "negative"].index(n)].mean() for n in names], rtol=1e-5)
    cols = [["a", "b", "b_twice", "noise", "negative"].index(n) for n in names[:2]]
    mean_ndcg = _ndcg_at(mean_base(x, cols, means[:2]), y, groups)
    assert mean_ndcg > max(_ndcg_at(x[:, c], y, groups) for c in cols) + 0.05
    # one member asked for, or a single usable feature: no averaging (the single best feature starts)
    assert base_members(x, y, groups, feats, 1) == ([], [], [])
    assert base_members(x[:, [0, 4]], y, groups, (feats[0], feats[4]), 3) == ([], [], [])
    assert RankerConfig().base_features == 1  # off by default: the single best feature starts


def test_a_ranker_with_members_starts_from_their_mean_and_keeps_it_through_save_and_load(tmp_path):
    x, y, groups = _two_signals(1)
    names = ["a", "b", "b_twice", "noise", "negative"]
    members, scales, _ = base_members(x, y, groups, tuple(_F(n) for n in names), 2)
    ranker = LearnedRanker.fit(
        x, y, groups, names, base_feature=members[0], base_members=members, base_scales=scales, n_estimators=5,
    )
    cols = [names.index(n) for n in members]
    np.testing.assert_allclose(ranker.base(x), mean_base(x, cols, scales), rtol=1e-6)
    # the serving's first pass reads the single base feature's column alone
    np.testing.assert_allclose(ranker.base(x[:, [cols[0]]], column=0), np.log1p(x[:, cols[0]]), rtol=1e-6)
    assert ranker.used_features[cols].all()
    loaded = read_part(write_part(tmp_path / "ranker", ranker), LearnedRanker)
    assert loaded.report["base_members"] == members
    np.testing.assert_array_equal(loaded.predict(x), ranker.predict(x))
    # a ranker without members (every bundle written before them) starts from its one feature
    single = LearnedRanker.fit(x, y, groups, names, base_feature="a", n_estimators=5)
    np.testing.assert_allclose(single.base(x), np.log1p(x[:, 0]), rtol=1e-6)
    assert "base_members" not in single.report


def test_a_bundle_whose_members_are_not_its_features_is_refused(tmp_path):
    x, y, groups = _two_signals(2, n_q=40)
    names = ["a", "b", "b_twice", "noise", "negative"]
    ranker = LearnedRanker.fit(x, y, groups, names, base_feature="a", base_members=["a", "b"], base_scales=[1.0, 1.0], n_estimators=2)
    folder = write_part(tmp_path / "ranker", ranker)
    meta_path = next(p for p in folder.iterdir() if p.name == "ranker.json")
    meta = json.loads(meta_path.read_text())
    meta["report"]["base_members"] = ["a", "nope"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="base members"):
        read_part(folder, LearnedRanker, verify=False)
