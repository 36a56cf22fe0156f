"""Every metric on hand-computed tiny cases (ties, short lists, no hits, empty lists)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation import metrics as M
from recsys.exceptions import ConfigError, SchemaError


def _recs(rows):
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id"]).astype({"rank": "int64"})


@pytest.fixture
def case():
    """A: 2 hits of 3 relevant; B: list shorter than k, 1 relevant; C: no hit; D: empty list."""
    recs = _recs(
        [("A", 1, "a"), ("A", 2, "b"), ("A", 3, "c"), ("A", 4, "d"), ("B", 1, "x"), ("B", 2, "y"), ("C", 1, "p"), ("C", 2, "q")]
    )
    relevant = pd.DataFrame(
        {"user_id": ["A", "A", "A", "B", "C", "D"], "item_id": ["b", "d", "zz", "x", "z", "z"]}
    )
    users = ["A", "B", "C", "D"]
    hits = M.hit_matrix(recs, relevant, users, 4)
    return hits, np.array([3, 1, 1, 1])


def test_hit_matrix(case):
    hits, _ = case
    assert hits.tolist() == [
        [False, True, False, True],
        [True, False, False, False],
        [False] * 4,
        [False] * 4,
    ]


def test_precision(case):
    hits, _ = case
    assert M.precision_at_k(hits, 2).tolist() == [0.5, 0.5, 0.0, 0.0]
    # a list shorter than k is not rewarded: B has 1 hit in 2 items, precision@4 = 1/4
    assert M.precision_at_k(hits, 4).tolist() == [0.5, 0.25, 0.0, 0.0]


def test_recall(case):
    hits, nrel = case
    assert M.recall_at_k(hits, nrel, 2).tolist() == pytest.approx([1 / 3, 1.0, 0.0, 0.0])
    assert M.recall_at_k(hits, nrel, 4).tolist() == pytest.approx([2 / 3, 1.0, 0.0, 0.0])


def test_ndcg(case):
    hits, nrel = case
    dcg_a = 1 / math.log2(3) + 1 / math.log2(5)
    idcg_a = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # min(k=4, |R|=3) = 3 ideal hits
    assert M.ndcg_at_k(hits, nrel, 4).tolist() == pytest.approx([dcg_a / idcg_a, 1.0, 0.0, 0.0])
    # at k=2 the ideal is 2 hits: (1/log2 3) / (1 + 1/log2 3)
    assert M.ndcg_at_k(hits, nrel, 2)[0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_map(case):
    hits, nrel = case
    # A: hits at ranks 2 and 4 -> (1/2 + 2/4) / min(4, 3)
    assert M.average_precision_at_k(hits, nrel, 4).tolist() == pytest.approx([1 / 3, 1.0, 0.0, 0.0])
    # A at k=2: (1/2) / min(2, 3)
    assert M.average_precision_at_k(hits, nrel, 2)[0] == pytest.approx(0.25)


def test_hit_rate_and_mrr(case):
    hits, _ = case
    assert M.hit_rate_at_k(hits, 1).tolist() == [0.0, 1.0, 0.0, 0.0]
    assert M.hit_rate_at_k(hits, 4).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert M.reciprocal_rank_at_k(hits, 4).tolist() == [0.5, 1.0, 0.0, 0.0]
    assert M.reciprocal_rank_at_k(hits, 1).tolist() == [0.0, 1.0, 0.0, 0.0]


def test_accuracy_bundle_matches_single_functions(case):
    hits, nrel = case
    got = M.accuracy_at_k(hits, nrel, 3)
    assert list(got) == list(M.ACCURACY)
    np.testing.assert_array_equal(got["ndcg"], M.ndcg_at_k(hits, nrel, 3))


def test_ties_are_resolved_by_rank_not_score():
    # two items with the same score: the metric follows the list's rank order
    rel = pd.DataFrame({"user_id": ["u"], "item_id": ["b"]})
    first = pd.DataFrame({"user_id": ["u", "u"], "rank": [1, 2], "item_id": ["a", "b"], "score": [0.5, 0.5]})
    second = first.assign(rank=[2, 1])
    assert M.reciprocal_rank_at_k(M.hit_matrix(first, rel, ["u"], 2), 2).tolist() == [0.5]
    assert M.reciprocal_rank_at_k(M.hit_matrix(second, rel, ["u"], 2), 2).tolist() == [1.0]


def test_hit_matrix_errors():
    rel = pd.DataFrame({"user_id": ["u"], "item_id": ["a"]})
    with pytest.raises(SchemaError, match="lacks column.*rank"):
        M.hit_matrix(pd.DataFrame({"user_id": ["u"], "item_id": ["a"]}), rel, ["u"], 2)
    with pytest.raises(SchemaError, match="same \\(user_id, rank\\)"):
        M.hit_matrix(_recs([("u", 1, "a"), ("u", 1, "b")]), rel, ["u"], 2)
    with pytest.raises(SchemaError, match="same item twice"):
        M.hit_matrix(_recs([("u", 1, "a"), ("u", 2, "a")]), rel, ["u"], 2)
    with pytest.raises(SchemaError, match="integers >= 1"):
        M.hit_matrix(_recs([("u", 0, "a")]), rel, ["u"], 2)


def test_metric_argument_errors(case):
    hits, nrel = case
    with pytest.raises(ConfigError, match="k must be an int in 1..4"):
        M.precision_at_k(hits, 5)
    with pytest.raises(ConfigError, match="k must be an int in 1..4"):
        M.ndcg_at_k(hits, nrel, 0)
    with pytest.raises(ConfigError, match="n_relevant must have shape \\(4,\\)"):
        M.recall_at_k(hits, nrel[:2], 2)
    with pytest.raises(ConfigError, match="positive integers"):
        M.check_ks([10, 0])
    with pytest.raises(ConfigError, match="positive integers"):
        M.check_ks([])
    assert M.check_ks([20, 5, 10, 5]) == [5, 10, 20]


def test_list_matrix_and_unknown_item():
    recs = _recs([("u", 1, "i2"), ("u", 3, "i0"), ("v", 1, "i1")])
    got = M.list_matrix(recs, ["u", "v", "w"], ["i0", "i1", "i2"], 3)
    assert got.tolist() == [[2, -1, 0], [1, -1, -1], [-1, -1, -1]]
    with pytest.raises(SchemaError, match="'i9' is not in the catalogue"):
        M.list_matrix(_recs([("u", 1, "i9")]), ["u"], ["i0"], 2)


TOPICS = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)  # i0 {a}, i1 {a, b}, i2 {c}


def test_diversity():
    lists = np.array([[0, 1, 2], [0, -1, -1], [0, -1, 2], [-1, -1, -1]])
    # pairs of list 0: (i0,i1) 1 - 1/2, (i0,i2) 1, (i1,i2) 1 -> 2.5 / 3
    assert M.diversity_at_k(lists, TOPICS, 3).tolist() == pytest.approx([2.5 / 3, 0.0, 1.0, 0.0])
    assert M.diversity_at_k(lists, TOPICS, 2).tolist() == pytest.approx([0.5, 0.0, 0.0, 0.0])


def test_novelty_and_self_information():
    info = M.self_information(np.array([0, 3, 1]), 3)
    assert info.tolist() == pytest.approx([2.0, 0.0, 1.0])
    lists = np.array([[0, 1, -1], [-1, -1, -1], [2, 2, 2]])
    assert M.novelty_at_k(lists, info, 3).tolist() == pytest.approx([1.0, 0.0, 1.0])
    with pytest.raises(ConfigError, match="train_users counts must lie in 0..n_users=3"):
        M.self_information(np.array([4]), 3)


def test_coverage():
    lists = np.array([[0, 1], [1, -1]])
    assert M.coverage_at_k(lists, 4, 2) == 0.5
    assert M.coverage_at_k(lists, 4, 1) == 0.5  # items 0 and 1 both at rank 1
    assert M.coverage_at_k(np.full((2, 2), -1), 4, 2) == 0.0
    with pytest.raises(ConfigError, match="outside -1..2"):
        M.novelty_at_k(np.array([[7]]), np.zeros(3), 1)
    with pytest.raises(ConfigError, match="2-d int array"):
        M.coverage_at_k(np.array([0.5]), 4, 1)


def test_exposure_shares():
    targets = [[], ["r1"], ["r1", "r2"]]
    lists = np.array([[0, 1], [2, -1]])
    assert M.exposure_shares(lists, targets, 2) == pytest.approx({"*": 1 / 3, "r1": 2 / 3, "r2": 1 / 3})
    assert M.exposure_shares(np.full((1, 2), -1), targets, 2) == {}


def test_bootstrap_ci():
    rng = np.random.default_rng(3)
    values = rng.normal(1.0, 1.0, size=(400, 2))
    ci = M.bootstrap_ci(values, n_boot=300, seed=7)
    assert ci.shape == (2, 2)
    for j in range(2):
        assert ci[j, 0] < values[:, j].mean() < ci[j, 1]
        # the standard error of the mean is 0.05: a 95% interval is about 0.2 wide
        assert 0.12 < ci[j, 1] - ci[j, 0] < 0.3
    np.testing.assert_array_equal(ci, M.bootstrap_ci(values, n_boot=300, seed=7))
    assert not np.array_equal(ci, M.bootstrap_ci(values, n_boot=300, seed=8))
    assert M.bootstrap_ci(np.full(5, 0.25), n_boot=50).tolist() == [0.25, 0.25]
    assert np.isnan(M.bootstrap_ci(np.zeros(0), n_boot=50)).all()


def test_bootstrap_errors():
    with pytest.raises(ConfigError, match="n_boot must be a positive int, got 0"):
        M.bootstrap_ci(np.ones(3), n_boot=0)
    with pytest.raises(ConfigError, match="level must be a float in \\(0, 1\\)"):
        M.bootstrap_ci(np.ones(3), level=1.5)
    with pytest.raises(ConfigError, match="non-negative int"):
        M.bootstrap_ci(np.ones(3), seed=-1)
