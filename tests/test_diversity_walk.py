"""diversity.select (the first few dozen positions first, the rest of a row only when needed)
gives the picks of the greedy walk over each whole row.

The reference walks each row alone over all of its valid candidates at once
(``walk_reference``, plain Python): the rule as written.
Random blocks are built so that every branch occurs: near-duplicate chains,
topics over the cap, invalid candidates, rows too short to fill, and rows
whose list needs candidates past the first few dozen positions.
"""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ranking import diversity
from tests.test_compiled_selection import walk_reference


def _random_block(rng: np.random.Generator, m: int, c: int, n_items: int, n_topics: int, dup_share: float):
    order = np.stack([rng.permutation(n_items)[:c] for _ in range(m)])
    valid = rng.random((m, c)) < 0.8
    valid[: m // 8, 3:] = False  # some rows too short to fill
    primary = rng.integers(0, n_topics + 1, n_items)  # n_topics = "no topic"
    neighbours: dict[int, set[int]] = {}
    for a in rng.choice(n_items, int(dup_share * n_items), replace=False).tolist():
        for b in rng.choice(n_items, rng.integers(1, 4), replace=False).tolist():
            if a != b:
                neighbours.setdefault(a, set()).add(b)
                neighbours.setdefault(b, set()).add(a)
    return order, valid, primary, {i: tuple(sorted(nb)) for i, nb in neighbours.items()}


def _reference(order, valid, primary, k, cap, neighbours, n_topics):
    m = order.shape[0]
    positions = np.full((m, k), -1, dtype=np.int64)
    count = np.zeros(m, dtype=np.int64)
    relaxed = np.zeros(m, dtype=bool)
    for r in range(m):
        cols = np.flatnonzero(valid[r]).tolist()
        items = order[r, cols].tolist()
        picked, relaxed[r] = walk_reference(items, primary[items].tolist(), k, cap, neighbours)
        positions[r, : len(picked)] = [cols[p] for p in picked]
        count[r] = len(picked)
    return positions, count, relaxed


@pytest.mark.parametrize("k, n_topics, dup_share", [(5, 6, 0.4), (10, 3, 0.3), (3, 12, 0.8), (1, 4, 0.5), (20, 5, 0.2)])
def test_select_equals_the_walk_over_whole_rows(k: int, n_topics: int, dup_share: float) -> None:
    rng = np.random.default_rng(k * 100 + n_topics)
    order, valid, primary, neighbours = _random_block(rng, 300, 120, 400, n_topics, dup_share)
    cap = diversity.topic_cap(k, 0.3)
    got = diversity.select(order, valid, primary, k, cap=cap, neighbours=neighbours, n_topics=n_topics)
    want = _reference(order, valid, primary, k, cap, neighbours, n_topics)
    for name, a, b in zip(("positions", "count", "relaxed"), got, want):
        np.testing.assert_array_equal(a, b, err_msg=name)

