"""``recommend_many`` splits a call across its threads: the same frame as one thread, users in order."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from recsys.ranking import Recommender
from recsys.ranking.recommender import _THREAD_BLOCK, _blocks

import push_city


@pytest.mark.parametrize(
    "n, size, threads",
    [(0, 1024, 2), (1, 1024, 2), (100, 1024, 2), (150, 1024, 2), (150, 1024, 3), (1000, 1024, 2),
     (2048, 1024, 2), (5000, 1024, 2), (300, 50, 4), (150, 1024, 1), (129, 1024, 2)],
)
def test_blocks_cover_the_call_in_order(n, size, threads):
    blocks = _blocks(n, size, threads)
    # contiguous, in order, every user once, none larger than batch_size
    assert [lo for lo, _ in blocks] == [0, *(hi for _, hi in blocks[:-1])][: len(blocks)]
    assert (blocks[-1][1] if blocks else 0) == n
    assert all(0 < hi - lo <= size for lo, hi in blocks)
    if threads == 1 or n >= threads * size:
        assert len(blocks) == -(-n // size)  # the batch_size blocks, as before
    elif n:
        # a small call: as many blocks as threads allow, none below the floor unless the call is
        assert len(blocks) == max(1, min(threads, n // _THREAD_BLOCK))
        assert max(hi - lo for lo, hi in blocks) - min(hi - lo for lo, hi in blocks) <= 1
        assert len(blocks) == 1 or min(hi - lo for lo, hi in blocks) >= _THREAD_BLOCK


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    return Recommender.load(push_city.trained_city(tmp_path_factory) / "models" / "latest")


@pytest.mark.parametrize("ranker", ["learned", "linear"])
def test_threads_give_one_threads_frame(city, ranker):
    model = city.state.model
    base = dataclasses.replace(model.config.ranking, ranker=ranker)
    one = Recommender.from_model(model, config=dataclasses.replace(base, threads=1))
    ids = city.state.user_ids[np.random.default_rng(3).permutation(model.n_users)].tolist()
    ids = ids[:250] + ["new-1"] + ids[250:]  # a cold user among them, given by the users frame
    cold = pd.DataFrame({"user_id": ["new-1"], "group": ["farmer"], "region": ["haigang"]})
    exclude = {ids[0]: city.state.catalog.item_ids[:5].tolist(), ids[200]: city.state.catalog.item_ids[5:9].tolist()}
    want = one.recommend_many(ids, k=7, users=cold, exclude=exclude)
    assert want["user_id"].unique().tolist() == ids  # every user has a list, in the order given
    for threads, batch in ((2, 1024), (3, 1024), (2, 40)):
        rec = Recommender.from_model(model, config=dataclasses.replace(base, threads=threads, batch_size=batch))
        assert len(_blocks(len(ids), batch, threads)) > 1
        got = rec.recommend_many(ids, k=7, users=cold, exclude=exclude)
        pd.testing.assert_frame_equal(got, want)
        arrow = rec.recommend_many(ids, k=7, users=cold, exclude=exclude, arrow_reasons=True)
        assert [list(r) for r in arrow["reasons"]] == want["reasons"].tolist()
