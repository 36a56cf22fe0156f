"""Per-feature path contributions of a LightGBM model's trees (Saabas' method), for the ranker's reasons.

A row's raw score is the sum of one leaf value per tree. Walking a tree from
its root to the row's leaf, every split moves the value from the parent
node's (the mean the training saw at that node, LightGBM's
``internal_value``) to the child's; the method credits that change to the
parent's split feature. Per tree the changes add up to ``leaf - root``, so a
row's contributions plus the model's *expected value* (the sum of the roots'
values) equal its raw score. A feature no split on the row's path reads
contributes exactly 0: the reasons' rule "no reason that did not contribute".
Exact TreeSHAP values (LightGBM's ``pred_contrib``) cost ~10x more.

A row's credits depend only on the leaf it reaches in each tree, so the work
is split in two:

* **Which leaf.** The model's trees compiled once more (:mod:`recsys.training.compiled_trees`,
  ``lleaves``, cached like the ranker's own) with each leaf's value replaced by
  its number shifted into the tree's own bits: a model of several outputs,
  each the exact float64 sum of up to ``52 // bits`` trees' shifted numbers
  (integers below 2**52), from which the leaves are read back. The compiled
  splits are LightGBM's own (its float64 thresholds and missing-value rules;
  the tests compare the leaves with ``pred_leaf``). A walk of flat node arrays
  cost 4-5 us a row of 80 trees -- one shared, data-dependent branch per
  node, which the processor mispredicts -- where the compiled trees have one
  branch per split and find the 80 leaves in ~0.4 us.
* **The credits.** Each leaf's path, root to leaf, is kept as (feature,
  change) pairs in path order (:func:`parse_trees`), and a compiled loop
  (numba, ``cache=True``) adds them tree by tree: the same float64 additions
  in the same order as a walk, so the same bits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numba
import numpy as np

from recsys.exceptions import ArtifactError
from recsys.training.compiled_trees import CompiledTrees, compile_trees

#: ``decision_type`` bits (LightGBM's ``kCategoricalMask``)
_CATEGORICAL = 1
#: bits of a float64's mantissa an output's shifted leaf numbers may fill (their sum stays exact)
_EXACT_BITS = 52
#: a tree of one leaf (value 0), padding an output of the leaf-number model to its count of trees
_PAD_TREE = (
    "num_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\ndecision_type=\nleft_child=\n"
    "right_child=\nleaf_value=0\nleaf_weight=\nleaf_count=\ninternal_value=\ninternal_weight=\n"
    "internal_count=\nis_linear=0\nshrinkage=1\n"
)


@numba.njit(cache=True, nogil=True)
def _replay(
    codes: np.ndarray, bits: int, per_output: int, leaf_start: np.ndarray, path_start: np.ndarray,
    path_feature: np.ndarray, path_delta: np.ndarray, out: np.ndarray,
) -> None:
    """Add each row's path credits into ``out`` (n, n_features), trees in model order, each path root
    to leaf: tree ``t``'s leaf is bits ``bits * (t % per_output)`` of output ``t // per_output``."""
    mask = (np.int64(1) << bits) - 1
    n_trees = leaf_start.shape[0]
    for r in range(codes.shape[0]):
        t = 0
        for c in range(codes.shape[1]):
            v = np.int64(codes[r, c])
            for _ in range(per_output):
                if t == n_trees:
                    break
                leaf = leaf_start[t] + (v & mask)
                v >>= bits
                t += 1
                for k in range(path_start[leaf], path_start[leaf + 1]):
                    out[r, path_feature[k]] += path_delta[k]


@dataclass(frozen=True)
class TreePaths:
    """A model's trees as leaf paths; :meth:`contributions` adds them up.

    Leaves of all trees are numbered globally: tree ``t``'s leaves are
    ``leaf_start[t]`` onwards, in the model text's order.

    Attributes
    ----------
    n_features : int
    expected_value : float
        The sum of the trees' root values: a row's raw score minus the sum
        of its contributions.
    leaf_start : ndarray of int32, shape (n_trees,)
    path_start : ndarray of int64, shape (n_leaves + 1,)
        Leaf ``l``'s path is entries ``path_start[l]:path_start[l + 1]``, root first.
    path_feature : ndarray of int32
        The split feature of each step of a path.
    path_delta : ndarray of float64
        The node value's change at that step (child minus parent).
    leaf_text : str
        The leaf-number model (see the module docstring) in LightGBM's text format.
    bits, per_output : int
        Bits of a leaf number, and trees per output of the leaf-number model.
    """

    n_features: int
    expected_value: float
    leaf_start: np.ndarray
    path_start: np.ndarray
    path_feature: np.ndarray
    path_delta: np.ndarray
    leaf_text: str
    bits: int
    per_output: int

    @property
    def n_trees(self) -> int:
        """How many trees the model has."""
        return len(self.leaf_start)

    @cached_property
    def _leaf_model(self) -> CompiledTrees:
        """The leaf-number model, compiled (once, through the cache)."""
        return compile_trees(self.leaf_text, raw_score=True)

    def prepare(self) -> None:
        """Compile the leaf-number model now (or read it from the cache) and load the credits' loop, so
        that no request pays either."""
        self.contributions(np.zeros((1, self.n_features), np.float32))

    def __getstate__(self) -> dict[str, Any]:
        # native code does not pickle (e.g. to a Dask worker): the receiver compiles, or reads the cache
        state = dict(self.__dict__)
        state.pop("_leaf_model", None)
        return state

    def _codes(self, x: np.ndarray) -> np.ndarray:
        """The leaf-number model's outputs of the rows of ``x``, float64 (n, outputs)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"tree paths need (n, {self.n_features}) rows, got shape {x.shape}")
        # float32 features are what the ranker reads; float64 holds them exactly
        codes = self._leaf_model.predict(np.asarray(x, np.float32))
        return codes.reshape(len(x), -1)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-feature path contributions of the rows of ``x`` (n, n_features), float64 (n, n_features).

        Each row's sum plus :attr:`expected_value` is its raw score (``Booster.predict(raw_score=True)``).
        """
        out = np.zeros((len(x), self.n_features), np.float64)
        if len(x) and self.n_trees:
            _replay(self._codes(x), self.bits, self.per_output, self.leaf_start, self.path_start,
                    self.path_feature, self.path_delta, out)
        return out

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf each row reaches in each tree, int32 (n, n_trees) (``Booster.predict(pred_leaf=True)``)."""
        if not (len(x) and self.n_trees):
            return np.zeros((len(x), self.n_trees), np.int32)
        # not on a request's path (the credits' loop reads the leaves itself): plain NumPy
        codes = self._codes(x).astype(np.int64)
        shifts = np.int64(self.bits) * np.arange(self.per_output, dtype=np.int64)
        leaves = (codes[:, :, None] >> shifts) & ((np.int64(1) << self.bits) - 1)
        return leaves.reshape(len(x), -1)[:, : self.n_trees].astype(np.int32)


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
    body = body.partition("\nend of trees")[0]
    blocks = ["Tree=" + b for b in body.split("\nTree=") if b.strip()]
    leaf_start, sizes = [], []
    # per leaf (global number): its path's (feature, change) steps, root first
    steps: list[list[tuple[int, float]]] = []
    expected = 0.0
    for t, block in enumerate(blocks):
        tree = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        try:
            leaves = int(tree["num_leaves"])
        except (KeyError, ValueError):
            raise ArtifactError(f"LightGBM model text: tree {t} has no readable num_leaves") from None
        if int(tree.get("num_cat", "0")) > 0 or int(tree.get("is_linear", "0")) != 0:
            raise ArtifactError(f"LightGBM model text: tree {t} has categorical splits or linear leaves, which path contributions do not read")
        leaf_value = _numbers(tree, "leaf_value", np.float64, leaves, t)
        leaf_start.append(len(steps))
        sizes.append(leaves)
        tree_steps: list[list[tuple[int, float]]] = [[] for _ in range(leaves)]
        if leaves == 1:
            expected += float(leaf_value[0])
        else:
            splits = leaves - 1
            decision = _numbers(tree, "decision_type", np.int64, splits, t)
            if np.any(decision & _CATEGORICAL):
                raise ArtifactError(f"LightGBM model text: tree {t} has categorical splits, which path contributions do not read")
            feature = _numbers(tree, "split_feature", np.int64, splits, t)
            if feature.min() < 0 or feature.max() >= n_features:
                raise ArtifactError(f"LightGBM model text: tree {t} splits on a feature outside 0..{n_features - 1}")
            node_value = _numbers(tree, "internal_value", np.float64, splits, t)
            children = [_numbers(tree, f"{side}_child", np.int64, splits, t) for side in ("left", "right")]
            expected += float(node_value[0])
            # depth first from the root (node 0), each child's path = its parent's + the parent's step
            stack: list[tuple[int, list[tuple[int, float]]]] = [(0, [])]
            seen = 0
            while stack:
                node, path = stack.pop()
                seen += 1
                if seen > splits:
                    raise ArtifactError(f"LightGBM model text: tree {t}'s children do not form a tree")
                for child in (int(children[0][node]), int(children[1][node])):
                    after = node_value[child] if child >= 0 else leaf_value[~child]
                    step = [*path, (int(feature[node]), float(after - node_value[node]))]
                    if child >= 0:
                        stack.append((child, step))
                    elif ~child < leaves:
                        tree_steps[~child] = step
                    else:
                        raise ArtifactError(f"LightGBM model text: tree {t} points at leaf {~child} of {leaves}")
        steps.extend(tree_steps)
    counts = np.array([len(p) for p in steps], np.int64)
    path_start = np.zeros(len(steps) + 1, np.int64)
    np.cumsum(counts, out=path_start[1:])
    flat = [step for p in steps for step in p]
    bits = max(1, int(np.ceil(np.log2(max(sizes, default=1)))))
    per_output = _EXACT_BITS // bits
    return TreePaths(
        n_features=n_features,
        expected_value=expected,
        leaf_start=np.asarray(leaf_start, np.int32),
        path_start=path_start,
        path_feature=np.array([f for f, _ in flat], np.int32),
        path_delta=np.array([d for _, d in flat], np.float64),
        leaf_text=_leaf_text(header, blocks, sizes, bits, per_output),
        bits=bits,
        per_output=per_output,
    )


def _leaf_text(header: str, blocks: list[str], sizes: list[int], bits: int, per_output: int) -> str:
    """The leaf-number model: output ``c`` sums trees ``c * per_output ...``, tree ``t``'s leaf ``l``
    valued ``l * 2 ** (bits * (t % per_output))`` (exact in float64: below 2 ** 52 in all)."""
    n_out = max(1, -(-len(blocks) // per_output))
    trees = []
    # LightGBM's order is iteration by iteration, one tree per output each: the j-th tree of output c
    for j in range(per_output):
        for c in range(n_out):
            t = c * per_output + j
            if t < len(blocks):
                values = " ".join(repr(float(leaf << (bits * j))) for leaf in range(sizes[t]))
                text = re.sub(r"^leaf_value=.*$", lambda _: "leaf_value=" + values, blocks[t], count=1, flags=re.M)
                text = re.sub(r"^Tree=\d+", f"Tree={len(trees)}", text, count=1)
            else:
                text = f"Tree={len(trees)}\n{_PAD_TREE}"
            trees.append(text.strip("\n") + "\n")
    # several outputs, no transform of them (``average_output`` would divide the first by the trees)
    lines = {"num_class": str(n_out), "num_tree_per_iteration": str(n_out), "objective": "custom",
             "tree_sizes": " ".join(str(len(tree) + 1) for tree in trees)}
    head = [
        f"{line.split('=', 1)[0]}={lines.pop(line.split('=', 1)[0])}" if line.split("=", 1)[0] in lines else line
        for line in header.splitlines()
        if not line.startswith("average_output")
    ]
    head += [f"{key}={value}" for key, value in lines.items()]
    # lleaves reads the text up to "end of trees", then its last line (no categorical features: null)
    return "\n".join(head) + "\n\n" + "\n".join(trees) + "\nend of trees\n\npandas_categorical:null\n"
