"""Per-feature path contributions of a LightGBM model's trees (Saabas' method), for the ranker's reasons.

A row's raw score is the sum of one leaf value per tree. Walking a tree from
its root to the row's leaf, every split moves the value from the parent
node's (the mean the training saw at that node, LightGBM's
``internal_value``) to the child's; the method credits that change to the
parent's split feature. Per tree the changes add up to ``leaf - root``, so a
row's contributions plus the model's *expected value* (the sum of the roots'
values) equal its raw score. A feature no split on the row's path reads
contributes exactly 0: the reasons' rule "no reason that did not contribute".

One walk of each tree per row: about as much work as predicting the row once,
where the occlusion it replaces predicted the row again per reason group.
Exact TreeSHAP values (LightGBM's ``pred_contrib``) cost ~10x more.

The trees come from LightGBM's text model format (``Booster.model_to_string``),
parsed once into flat arrays (:func:`parse_trees`); the walk is a compiled
kernel (numba, ``cache=True``: the machine code is kept beside this module,
so a process after the first only loads it). Splits follow LightGBM's rules
exactly (``Tree::NumericalDecision``): ``value <= threshold`` goes left; a
missing value (NaN) counts as 0 unless the split's missing type is NaN; a
split with missing type Zero (NaN) sends 0 (NaN) to its default side.
Categorical splits and linear trees are refused: the rankers are fitted on
plain float matrices, which never produce them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from recsys.exceptions import ArtifactError

#: LightGBM's ``kZeroThreshold`` (``1e-35f``): values this close to 0 are "zero" for missing type Zero
_ZERO = float(np.float32(1e-35))
#: ``decision_type`` bits (LightGBM's ``kCategoricalMask``, ``kDefaultLeftMask``; missing type in bits 2-3)
_CATEGORICAL, _DEFAULT_LEFT = 1, 2
_MISSING_ZERO, _MISSING_NAN = 1, 2


@numba.njit(cache=True, nogil=True)
def _child(node: int, value: float, threshold: np.ndarray, decision: np.ndarray, left: np.ndarray, right: np.ndarray) -> int:
    """The child a row with ``value`` in the node's split feature goes to (LightGBM's numerical decision)."""
    missing = (decision[node] >> 2) & 3
    if np.isnan(value) and missing != _MISSING_NAN:
        value = 0.0
    if (missing == _MISSING_ZERO and abs(value) <= _ZERO) or (missing == _MISSING_NAN and np.isnan(value)):
        return left[node] if decision[node] & _DEFAULT_LEFT else right[node]
    return left[node] if value <= threshold[node] else right[node]


@numba.njit(cache=True, nogil=True)
def _contributions(
    x: np.ndarray,
    roots: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    decision: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    node_value: np.ndarray,
    leaf_value: np.ndarray,
    out: np.ndarray,
) -> None:
    """Add each row's per-feature path contributions into ``out`` (n, n_features), trees in model order."""
    for r in range(x.shape[0]):
        for t in range(roots.shape[0]):
            node = roots[t]
            if node < 0:  # a single-leaf tree: a constant, all of it in the expected value
                continue
            before = node_value[node]
            while True:
                f = feature[node]
                child = _child(node, np.float64(x[r, f]), threshold, decision, left, right)
                after = node_value[child] if child >= 0 else leaf_value[~child]
                out[r, f] += after - before
                if child < 0:
                    break
                node, before = child, after


@numba.njit(cache=True, nogil=True)
def _leaves(
    x: np.ndarray,
    roots: np.ndarray,
    leaf_start: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    decision: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write each row's leaf per tree into ``out`` (n, n_trees): the leaf's index within its tree."""
    for r in range(x.shape[0]):
        for t in range(roots.shape[0]):
            node = roots[t]
            while node >= 0:
                node = _child(node, np.float64(x[r, feature[node]]), threshold, decision, left, right)
            out[r, t] = ~node - leaf_start[t]


@dataclass(frozen=True)
class TreePaths:
    """A model's trees as flat arrays; :meth:`contributions` walks them.

    Nodes of all trees are numbered globally, and so are leaves. A child
    ``>= 0`` is a node; a child ``< 0`` is the leaf ``~child``. A tree's root is
    ``roots[t]``, or ``~leaf`` for a tree of a single leaf.

    Attributes
    ----------
    n_features : int
    expected_value : float
        The sum of the trees' root values: a row's raw score minus the sum
        of its contributions.
    roots, leaf_start : ndarray of int32, shape (n_trees,)
    feature, left, right : ndarray of int32, shape (n_nodes,)
    threshold, node_value : ndarray of float64, shape (n_nodes,)
    decision : ndarray of uint8, shape (n_nodes,)
        LightGBM's ``decision_type`` (default side, missing type).
    leaf_value : ndarray of float64, shape (n_leaves,)
    """

    n_features: int
    expected_value: float
    roots: np.ndarray
    leaf_start: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    decision: np.ndarray
    left: np.ndarray
    right: np.ndarray
    node_value: np.ndarray
    leaf_value: np.ndarray

    @property
    def n_trees(self) -> int:
        """How many trees the model has."""
        return len(self.roots)

    def _rows(self, x: np.ndarray) -> np.ndarray:
        # one dtype for the kernels (one compiled signature); float32 -> float64 inside is exact,
        # as LightGBM compares float32 features with float64 thresholds
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"tree paths need (n, {self.n_features}) rows, got shape {x.shape}")
        return x

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-feature path contributions of the rows of ``x`` (n, n_features), float64 (n, n_features).

        Each row's sum plus :attr:`expected_value` is its raw score (``Booster.predict(raw_score=True)``).
        """
        x = self._rows(x)
        out = np.zeros(x.shape, np.float64)
        if len(x) and self.n_trees:
            _contributions(
                x, self.roots, self.feature, self.threshold, self.decision, self.left, self.right,
                self.node_value, self.leaf_value, out,
            )
        return out

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf each row reaches in each tree, int32 (n, n_trees) (``Booster.predict(pred_leaf=True)``)."""
        x = self._rows(x)
        out = np.zeros((len(x), self.n_trees), np.int32)
        if len(x) and self.n_trees:
            _leaves(x, self.roots, self.leaf_start, self.feature, self.threshold, self.decision, self.left, self.right, out)
        return out


def _numbers(fields: dict[str, str], key: str, dtype: type, count: int, tree: int) -> np.ndarray:
    """One per-node or per-leaf line of a tree (space-separated numbers), checked for its length."""
    try:
        values = np.array(fields[key].split(), dtype=dtype)
    except (KeyError, ValueError):
        raise ArtifactError(f"LightGBM model text: tree {tree} has no readable {key!r} line") from None
    if len(values) != count:
        raise ArtifactError(f"LightGBM model text: tree {tree} has {len(values)} {key} values, expected {count}")
    return values


def parse_trees(model_text: str) -> TreePaths:
    """Read a LightGBM text model's trees into :class:`TreePaths`.

    Parameters
    ----------
    model_text : str
        LightGBM's text format (``Booster.model_to_string``), already cut to
        the iterations that are evaluated.

    Returns
    -------
    TreePaths

    Raises
    ------
    ArtifactError
        If a tree cannot be read, or it has categorical splits or linear
        leaves (which the rankers never fit).
    """
    header, _, body = model_text.partition("\nTree=")
    fields = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
    try:
        n_features = int(fields["max_feature_idx"]) + 1
        if int(fields.get("num_tree_per_iteration", "1")) != 1:
            raise ArtifactError("LightGBM model text: path contributions need one tree per iteration (a ranker's)")
    except (KeyError, ValueError):
        raise ArtifactError("LightGBM model text: no readable max_feature_idx in its header") from None
    body = body.split("\nend of trees", 1)[0]
    blocks = [b for b in ("Tree=" + body).split("\nTree=") if b.strip()] if body.strip() else []
    roots, leaf_start = [], []
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "decision", "left", "right", "node_value", "leaf_value")}
    n_nodes = n_leaves = 0
    for t, block in enumerate(blocks):
        tree = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        try:
            leaves = int(tree["num_leaves"])
        except (KeyError, ValueError):
            raise ArtifactError(f"LightGBM model text: tree {t} has no readable num_leaves") from None
        if int(tree.get("num_cat", "0")) > 0 or int(tree.get("is_linear", "0")) != 0:
            raise ArtifactError(f"LightGBM model text: tree {t} has categorical splits or linear leaves, which path contributions do not read")
        parts["leaf_value"].append(_numbers(tree, "leaf_value", np.float64, leaves, t))
        leaf_start.append(n_leaves)
        if leaves == 1:
            roots.append(~n_leaves)
        else:
            splits = leaves - 1
            decision = _numbers(tree, "decision_type", np.int64, splits, t)
            if np.any(decision & _CATEGORICAL):
                raise ArtifactError(f"LightGBM model text: tree {t} has categorical splits, which path contributions do not read")
            feature = _numbers(tree, "split_feature", np.int64, splits, t)
            if feature.min() < 0 or feature.max() >= n_features:
                raise ArtifactError(f"LightGBM model text: tree {t} splits on a feature outside 0..{n_features - 1}")
            parts["feature"].append(feature)
            parts["threshold"].append(_numbers(tree, "threshold", np.float64, splits, t))
            parts["decision"].append(decision)
            parts["node_value"].append(_numbers(tree, "internal_value", np.float64, splits, t))
            for side in ("left", "right"):
                child = _numbers(tree, f"{side}_child", np.int64, splits, t)
                # tree-local numbers to global ones: nodes after the earlier trees' nodes, leaves likewise
                parts[side].append(np.where(child >= 0, child + n_nodes, ~(~child + n_leaves)))
            roots.append(n_nodes)
            n_nodes += splits
        n_leaves += leaves

    def flat(key: str, dtype: type) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(parts[key]) if parts[key] else np.zeros(0), dtype=dtype)

    node_value, leaf_value = flat("node_value", np.float64), flat("leaf_value", np.float64)
    roots_a = np.asarray(roots, np.int32)
    expected = float(sum(node_value[r] if r >= 0 else leaf_value[~r] for r in roots))
    return TreePaths(
        n_features=n_features,
        expected_value=expected,
        roots=roots_a,
        leaf_start=np.asarray(leaf_start, np.int32),
        feature=flat("feature", np.int32),
        threshold=flat("threshold", np.float64),
        decision=flat("decision", np.uint8),
        left=flat("left", np.int32),
        right=flat("right", np.int32),
        node_value=node_value,
        leaf_value=leaf_value,
    )
