"""The pruned search's groups of queries on several threads: the same top k, scores and work as one thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from recsys.config import IndexConfig
from recsys.training import index as index_module
from recsys.training.index import VectorIndex


def _world(seed: int = 5) -> tuple[VectorIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    # norms from 0.2 to 2 and repeated rows (exact ties): the cut differs per query, and so do the groups
    x = (rng.normal(size=(3000, 12)) * np.linspace(0.2, 2.0, 3000)[:, None]).astype(np.float32)
    x[2000:2100] = x[1000:1100]
    index = VectorIndex.build(x, np.arange(3000) * 7 + 3, config=IndexConfig(pruned_head=64, threads=1, recall_sample=0))
    q = rng.normal(size=(450, 12)).astype(np.float32) * rng.uniform(0.0, 3.0, size=(450, 1)).astype(np.float32)
    q[7] = 0  # a zero query scores 0 everywhere
    return index, q


@pytest.mark.parametrize("k", [1, 20, 130])
def test_groups_on_threads_equal_one_thread(k, monkeypatch):
    index, q = _world()
    seen = set()
    real = index_module.compiled_topk.top_at_least

    def spy(*args, **kwargs):
        seen.add(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(index_module.compiled_topk, "top_at_least", spy)
    one = index._pruned(q, k)
    assert len(seen) == 1  # one thread: the caller's
    ids = index.search(q, k)
    for threads in (2, 3):
        seen.clear()
        got = index._pruned(q, k, threads=threads)
        assert len(seen) > 1  # several groups ran on the pool's threads
        np.testing.assert_array_equal(got[0], one[0])
        np.testing.assert_array_equal(got[1], one[1])
        assert got[2] == one[2]  # the same (query, row) scores computed
        for a, b in zip(index.search(q, k, threads=threads), ids):
            np.testing.assert_array_equal(a, b)
    # and still the exact top k (a zero query ties every item at 0: any k are right)
    exact_scores, exact_ids = index.exact_search(q, k)
    np.testing.assert_allclose(ids[0], exact_scores, rtol=1e-5, atol=1e-6)
    live = np.arange(len(q)) != 7
    assert (ids[1][live] == exact_ids[live]).all()


def test_a_failing_group_raises_in_the_caller(monkeypatch):
    index, q = _world()

    def broken(*args, **kwargs):
        raise RuntimeError("kernel failed")

    monkeypatch.setattr(index_module.compiled_topk, "top_at_least", broken)
    with pytest.raises(RuntimeError, match="kernel failed"):
        index._pruned(q, 10, threads=2)
