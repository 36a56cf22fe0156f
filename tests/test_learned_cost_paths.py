"""The reasons' path credits from compiled leaves (``recsys.training.tree_paths``): each row's leaves read
back from the leaf-number model, and the credits replayed from the leaves' paths, bit for bit what a
plain walk of the model text adds up, for models whose leaf numbers fill several outputs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from recsys.training.tree_paths import parse_trees

lgb = pytest.importorskip("lightgbm")


def _trees(text: str) -> list[dict[str, list[float]]]:
    """The model text's trees as lists of numbers (the fields a walk reads), parsed plainly."""
    trees = []
    for block in text.split("\nTree=")[1:]:
        block = block.split("\nend of trees")[0]
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        trees.append({k: [float(v) for v in fields[k].split()] for k in
                      ("split_feature", "threshold", "decision_type", "left_child", "right_child", "internal_value", "leaf_value")})
    return trees


def _walk(tree: dict[str, list[float]], row: np.ndarray, out: np.ndarray) -> int:
    """One tree, node by node, by LightGBM's numerical split rule; each step's change of the node value
    (child minus parent, float64) added to the split feature's credit. Returns the leaf."""
    if not tree["split_feature"]:
        return 0
    node = 0
    while True:
        f, decision = int(tree["split_feature"][node]), int(tree["decision_type"][node])
        missing, default_left = (decision >> 2) & 3, bool(decision & 2)
        v = float(row[f])
        if np.isnan(v) and missing != 2:
            v = 0.0
        if (missing == 1 and abs(v) <= float(np.float32(1e-35))) or (missing == 2 and np.isnan(v)):
            left = default_left
        else:
            left = v <= tree["threshold"][node]
        child = int(tree["left_child" if left else "right_child"][node])
        after = tree["internal_value"][child] if child >= 0 else tree["leaf_value"][~child]
        out[f] += after - tree["internal_value"][node]
        if child < 0:
            return ~child
        node = child


def _fit(n_trees: int, num_leaves: int, seed: int) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    n = 1200
    x = np.stack([rng.random(n), rng.gamma(2.0, 3.0, n), rng.normal(size=n), rng.random(n)], axis=1).astype(np.float32)
    x[rng.random(n) < 0.2, 0] = 0.0
    x[rng.random(n) < 0.15, 2] = np.nan
    y = ((x[:, 0] + 0.1 * x[:, 1] + 0.3 * np.nan_to_num(x[:, 2]) + rng.random(n)) > 1.3).astype(np.int32)
    params = {"objective": "lambdarank", "num_leaves": num_leaves, "min_child_samples": 3, "learning_rate": 0.2,
              "verbose": -1, "num_threads": 1, "seed": seed}
    return lgb.train(params, lgb.Dataset(x, y, group=np.full(n // 20, 20)), num_boost_round=n_trees)


def _rows(seed: int, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.stack([rng.random(n), rng.gamma(2.0, 3.0, n), rng.normal(size=n), rng.random(n)], axis=1).astype(np.float32)
    x[: n // 6] *= 40.0  # beyond the thresholds
    x[n // 6 : n // 3, 2] = np.nan
    x[n // 3 : n // 2, 0] = 0.0
    return x


@pytest.mark.parametrize(("n_trees", "num_leaves"), [(30, 15), (23, 40)])
def test_credits_are_a_plain_walks_bit_for_bit_over_several_outputs(n_trees, num_leaves):
    booster = _fit(n_trees, num_leaves, seed=n_trees)
    text = booster.model_to_string()
    paths = parse_trees(text)
    trees = _trees(text)
    assert paths.n_trees == n_trees
    # leaf numbers of up to 15 (40) leaves take 4 (6) bits: 13 (8) trees an output, the last one padded
    assert paths.bits == int(np.ceil(np.log2(max(len(t["leaf_value"]) for t in trees))))
    assert paths.per_output == 52 // paths.bits and n_trees % paths.per_output != 0
    x = _rows(n_trees)
    want = np.zeros((len(x), paths.n_features))
    leaves = np.array([[_walk(tree, row, want[r]) for tree in trees] for r, row in enumerate(x)])
    got = paths.contributions(x)
    assert np.array_equal(got, want)  # the same float64 additions in the same order
    np.testing.assert_array_equal(paths.leaves(x), leaves)
    np.testing.assert_array_equal(paths.leaves(x), booster.predict(x, pred_leaf=True))
    np.testing.assert_allclose(got.sum(axis=1) + paths.expected_value, booster.predict(x, raw_score=True), atol=1e-9)


def test_a_tree_of_one_leaf_credits_nothing_and_counts_in_the_expected_value():
    booster = _fit(6, 7, seed=3)
    text = booster.model_to_string()
    one_leaf = (
        "Tree=6\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\ndecision_type=\nleft_child=\n"
        "right_child=\nleaf_value=0.125\nleaf_weight=\nleaf_count=\ninternal_value=\ninternal_weight=\n"
        "internal_count=\nis_linear=0\nshrinkage=1\n\n\n"
    )
    with_one = text.replace("end of trees", one_leaf + "end of trees", 1)
    before, after = parse_trees(text), parse_trees(with_one)
    assert after.n_trees == 7 and after.expected_value == before.expected_value + 0.125
    x = _rows(4, n=60)
    assert np.array_equal(after.contributions(x), before.contributions(x))
    assert np.all(after.leaves(x)[:, 6] == 0)


def test_tree_paths_pickle_without_their_machine_code_and_compile_again():
    paths = parse_trees(_fit(5, 7, seed=5).model_to_string())
    x = _rows(5, n=40)
    want = paths.contributions(x)  # compiles the leaf-number model
    copy = pickle.loads(pickle.dumps(paths))
    assert "_leaf_model" not in copy.__dict__
    assert np.array_equal(copy.contributions(x), want)
