"""Per-feature path contributions of the ranker's trees (``recsys.training.tree_paths``): LightGBM's
leaves and raw scores, a model small enough to compute by hand, and the reasons' groups."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.exceptions import ArtifactError
from recsys.training.ranker import LearnedRanker
from recsys.training.tree_paths import parse_trees

#: three trees on two features, each number chosen to be checked by hand below
#:  tree 0: f0 <= 0.5 ? leaf 0 (-1.0) : (f1 <= 0.3 ? leaf 1 (0.5) : leaf 2 (2.0)); node values 0.2, 1.0
#:  tree 1: f1 <= 0.7 ? leaf 0 (0.1) : leaf 1 (-0.3); missing type NaN (NaN goes to the default, right); node value 0.0
#:  tree 2: f0 <= -1.0 ? leaf 0 (0.25) : leaf 1 (-0.25); missing type Zero (0 goes to the default, left); node value 0.05
HAND = """tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=lambdarank
feature_names=f0 f1
feature_infos=[-2:2] [-2:2]
tree_sizes={sizes}

{trees}end of trees
"""
HAND_TREES = [
    """Tree=0
num_leaves=3
num_cat=0
split_feature=0 1
split_gain=1 1
threshold=0.5 0.29999999999999999
decision_type=2 2
left_child=-1 -2
right_child=1 -3
leaf_value=-1 0.5 2
leaf_weight=1 1 1
leaf_count=1 1 1
internal_value=0.2 1
internal_weight=3 2
internal_count=3 2
is_linear=0
shrinkage=1

""",
    """Tree=1
num_leaves=2
num_cat=0
split_feature=1
split_gain=1
threshold=0.69999999999999996
decision_type=8
left_child=-1
right_child=-2
leaf_value=0.10000000000000001 -0.29999999999999999
leaf_weight=1 1
leaf_count=1 1
internal_value=0
internal_weight=2
internal_count=2
is_linear=0
shrinkage=1

""",
    """Tree=2
num_leaves=2
num_cat=0
split_feature=0
split_gain=1
threshold=-1
decision_type=6
left_child=-1
right_child=-2
leaf_value=0.25 -0.25
leaf_weight=1 1
leaf_count=1 1
internal_value=0.05
internal_weight=2
internal_count=2
is_linear=0
shrinkage=1

""",
]


def _hand_text() -> str:
    return HAND.format(sizes=" ".join(str(len(t)) for t in HAND_TREES), trees="".join(HAND_TREES))


def test_a_hand_made_model_gives_the_contributions_worked_out_by_hand():
    paths = parse_trees(_hand_text())
    assert paths.n_trees == 3 and paths.n_features == 2
    assert paths.expected_value == pytest.approx(0.2 + 0.0 + 0.05)
    x = np.array([[0.8, 0.2], [0.1, np.nan], [0.0, 0.9]], np.float32)
    # row 0: tree 0 goes right (f0: 0.2 -> 1.0) then left (f1: 1.0 -> 0.5); tree 1 left (f1: 0 -> 0.1);
    #        tree 2 right (f0: 0.05 -> -0.25)
    # row 1: tree 0 left (f0: 0.2 -> -1.0); tree 1: NaN -> default right (f1: 0 -> -0.3);
    #        tree 2: 0.1 > -1 right (f0: 0.05 -> -0.25)
    # row 2: tree 0 left (f0: 0.2 -> -1.0); tree 1 right (f1: 0 -> -0.3); tree 2: zero -> default left (f0: 0.05 -> 0.25)
    want = np.array(
        [
            [0.8 - 0.3, -0.5 + 0.1],
            [-1.2 - 0.3, -0.3],
            [-1.2 + 0.2, -0.3],
        ]
    )
    np.testing.assert_allclose(paths.contributions(x), want, atol=1e-12)
    np.testing.assert_array_equal(paths.leaves(x), [[1, 0, 1], [0, 1, 1], [0, 1, 0]])
    # and LightGBM reads the same model the same way
    lgb = pytest.importorskip("lightgbm")
    booster = lgb.Booster(model_str=_hand_text())
    np.testing.assert_array_equal(booster.predict(x, pred_leaf=True), paths.leaves(x))
    raw = booster.predict(x, raw_score=True)
    np.testing.assert_allclose(paths.contributions(x).sum(axis=1) + paths.expected_value, raw, atol=1e-12)


def _data(seed: int, n_q: int = 50, per: int = 20):
    """Features as serving sends them: exact zeros, missing values, counts, values beyond the training range."""
    rng = np.random.default_rng(seed)
    n = n_q * per
    # the last column is constant: no tree can split on it
    x = np.stack([rng.random(n), rng.gamma(2.0, 3.0, n), rng.normal(size=n), rng.random(n), np.full(n, 0.5)], axis=1)
    x = x.astype(np.float32)
    x[rng.random(n) < 0.2, 0] = 0.0
    x[rng.random(n) < 0.15, 2] = np.nan
    y = ((x[:, 0] + 0.1 * x[:, 1] + 0.3 * np.nan_to_num(x[:, 2]) + rng.random(n)) > 1.3).astype(np.int32)
    return x, y, np.full(n_q, per, np.int64)


@pytest.fixture(scope="module")
def ranker() -> LearnedRanker:
    x, y, groups = _data(0)
    r = LearnedRanker.fit(x, y, groups, ["a", "b", "c", "d", "never"], base_feature="b", n_estimators=25, num_leaves=9,
                          min_child_samples=5, early_stopping_rounds=0, threads=1)
    r.report["feature_means"] = [float(v) for v in np.nanmean(x, axis=0)]
    return r


def _reference(tree: dict, row: np.ndarray, out: np.ndarray) -> int:
    """A plain recursive walk of one ``dump_model`` tree: LightGBM's documented split rule, node by node."""
    node = tree["tree_structure"]
    while "split_index" in node:
        v = float(row[node["split_feature"]])
        missing = node["missing_type"]
        if np.isnan(v) and missing != "NaN":
            v = 0.0
        if (missing == "Zero" and abs(v) <= float(np.float32(1e-35))) or (missing == "NaN" and np.isnan(v)):
            child = node["left_child"] if node["default_left"] else node["right_child"]
        else:
            assert node["decision_type"] == "<="
            child = node["left_child"] if v <= node["threshold"] else node["right_child"]
        after = child.get("internal_value", child.get("leaf_value"))
        out[node["split_feature"]] += after - node["internal_value"]
        node = child
    return node["leaf_index"]


def test_leaves_and_sums_equal_lightgbms_and_the_walk_equals_a_plain_reference(ranker):
    x, _, _ = _data(1, n_q=20)
    x[:40] *= 50.0  # beyond every threshold
    x[40:60, 1] = np.nan
    best = 17  # a cut model, as early stopping leaves it
    paths = parse_trees(ranker.booster.model_to_string(num_iteration=best))
    assert paths.n_trees == best
    np.testing.assert_array_equal(paths.leaves(x), ranker.booster.predict(x, pred_leaf=True, num_iteration=best))
    contrib = paths.contributions(x)
    raw = ranker.booster.predict(x, raw_score=True, num_iteration=best)
    np.testing.assert_allclose(contrib.sum(axis=1) + paths.expected_value, raw, atol=1e-9)
    dump = ranker.booster.dump_model(num_iteration=best)["tree_info"]
    ref = np.zeros_like(contrib)
    for r, row in enumerate(x):
        leaves = [_reference(tree, row, ref[r]) for tree in dump]
        assert leaves == paths.leaves(x[r : r + 1])[0].tolist()
    # the model text prints node values to 6 digits, the JSON dump to 17: the same credits to that precision
    np.testing.assert_allclose(contrib, ref, atol=1e-5)
    assert np.all(contrib[:, 4] == 0)  # a feature no split reads is credited nothing


def test_group_contributions_sum_the_features_and_add_the_starting_score_against_its_mean(ranker):
    x, _, _ = _data(2, n_q=5)
    contrib = ranker.contributions(x)
    means = np.asarray(ranker.report["feature_means"], np.float32)
    at_mean = x.copy()
    at_mean[:, 1] = means[1]
    # score = starting score + trees: the trees' credits sum to trees - expected value, the base
    # feature's starting score is credited against its value at the mean
    rebuilt = contrib.sum(axis=1) + ranker.paths().expected_value + ranker.base(at_mean)
    np.testing.assert_allclose(rebuilt, ranker.predict(x), atol=1e-5)
    groups = [np.array([0]), np.array([1, 2]), np.array([4]), np.array([], np.int64)]
    got = ranker.group_contributions(x, groups)
    assert got.dtype == np.float32 and got.shape == (len(x), 4)
    np.testing.assert_allclose(got[:, 1], contrib[:, 1] + contrib[:, 2], rtol=1e-6, atol=1e-6)
    assert np.all(got[:, 2:] == 0)  # unread feature, empty group
    assert np.abs(got[:, 0]).max() > 0


def test_a_model_with_a_categorical_split_is_refused():
    text = _hand_text().replace("decision_type=2 2", "decision_type=3 2", 1)
    with pytest.raises(ArtifactError, match="categorical"):
        parse_trees(text)
