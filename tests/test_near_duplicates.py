"""The near-duplicate graph: searched once when the bundle is written, mapped at every load.

The oracle is the search the ranking ran at every load before (``diversity.near_duplicates``
at the threshold calibrated on the bundle's content): the stored graph must give the same
pairs, a load must not search again, and catalogue items the bundle never saw must still
get their near-duplicates.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from recsys import Recommender
from recsys.bundle import read_part, write_part
from recsys.exceptions import ArtifactError
from recsys.ranking import catalog as catalog_module
from recsys.ranking import diversity
from recsys.ranking.catalog import build_catalog, read_catalog
from recsys.training.duplicates import NearDuplicates
from recsys.training.model import TrainedModel

from ranking_world import TAX, content_width, hand_model, items_frame, users_frame

N_ITEMS = 120
#: (item, its near-copy) in the content vectors below
PAIRS = ((0, 1), (2, 3), (10, 40))


def _content() -> np.ndarray:
    """Random unit vectors (random pairs have a low cosine) with a few near-copies."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N_ITEMS, content_width()))
    for a, b in PAIRS:
        x[b] = x[a] + 0.05 * rng.normal(size=x.shape[1])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _model():
    rng = np.random.default_rng(3)
    users = users_frame(["farmer", "youth", "farmer"], ["qinglong", "haigang", "haigang"])
    topics = list(TAX.topics)
    items = items_frame(N_ITEMS, topics=[[topics[j % len(topics)]] for j in range(N_ITEMS)])
    return hand_model(users, items, rng.normal(size=(3, 6)), rng.normal(size=(N_ITEMS, 6)), content_vectors=_content())


def _searched(content: np.ndarray, base: float) -> dict:
    """The pairs a load used to search: the calibrated threshold, then the exact range search."""
    return diversity.near_duplicates(content, diversity.calibrated_threshold(content, base))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return _model().save(tmp_path_factory.mktemp("models"), version="20260601T000000Z")


def test_the_bundle_holds_the_pairs_a_load_used_to_search(bundle):
    loaded = TrainedModel.load(bundle)
    graph = loaded.near_duplicates
    expected = _searched(_content(), loaded.config.ranking.near_duplicate_threshold)
    assert all(expected.get(a) == (b,) and expected.get(b) == (a,) for a, b in PAIRS)
    assert graph.neighbours() == expected
    assert graph.n_items == N_ITEMS and graph.base == loaded.config.ranking.near_duplicate_threshold
    # the arrays are memory-mapped from the bundle, not read into each process
    assert isinstance(graph.indptr, np.memmap) and isinstance(graph.indices, np.memmap)
    assert (bundle / "near_duplicates" / "indptr.npy").is_file()


def test_a_load_does_not_search_the_bundle_graph_again(bundle, monkeypatch):
    in_memory = Recommender.from_model(_model())  # no graph: searched at load, as before
    users = ["u0", "u1", "u2"]
    expected = in_memory.recommend_many(users, k=8)

    def refuse(*args, **kwargs):
        raise AssertionError("the near-duplicate graph was searched at load")

    real_pairs = diversity.near_duplicate_pairs

    def new_rows_only(content, threshold, *, start=0):
        if start == 0:
            refuse()
        return real_pairs(content, threshold, start=start)

    monkeypatch.setattr(diversity, "neighbour_graph", refuse)
    monkeypatch.setattr(diversity, "near_duplicate_pairs", new_rows_only)
    monkeypatch.setattr(catalog_module, "calibrated_threshold", refuse)
    rec = Recommender.load(bundle)
    assert rec.state.catalog.neighbours == in_memory.state.catalog.neighbours
    pd.testing.assert_frame_equal(rec.recommend_many(users, k=8), expected)


def test_new_catalogue_items_get_their_near_duplicates(bundle, monkeypatch):
    loaded = TrainedModel.load(bundle)
    base = items_frame(N_ITEMS, topics=[[list(TAX.topics)[j % len(TAX.topics)]] for j in range(N_ITEMS)])
    new = items_frame(2).assign(item_id=["fresh-a", "fresh-b"], title=["新文章甲", "新文章乙"])
    items, _ = read_catalog(pd.concat([base, new], ignore_index=True), TAX)
    content = _content()
    rng = np.random.default_rng(11)
    fresh = np.vstack([content[2] + 0.03 * rng.normal(size=content.shape[1]), rng.normal(size=content.shape[1])])
    fresh = (fresh / np.linalg.norm(fresh, axis=1, keepdims=True)).astype(np.float32)

    def embed(frame):
        # the new items' content vectors: a near-copy of item 2 and an unrelated one
        assert list(frame["item_id"]) == ["fresh-a", "fresh-b"]
        return fresh, np.zeros((2, loaded.item_factors.shape[1]), np.float32)

    monkeypatch.setattr(loaded, "embed_new_items", embed)
    config = loaded.config.ranking
    cat = build_catalog(loaded, items, config)
    a, b = cat.index_of["fresh-a"], cat.index_of["fresh-b"]
    assert cat.neighbours[a] == (2, 3)
    assert a in cat.neighbours[2] and a in cat.neighbours[3]
    assert b not in cat.neighbours
    # the same as searching the whole catalogue at load, as before the graph was stored
    plain = dataclasses.replace(loaded, near_duplicates=None)
    monkeypatch.setattr(plain, "embed_new_items", embed)
    searched = build_catalog(plain, items, config)
    assert cat.neighbours == searched.neighbours
    assert cat.neighbours == _searched(np.vstack([content, fresh]), config.near_duplicate_threshold)


def test_another_threshold_searches_its_own_pairs(bundle):
    loaded = TrainedModel.load(bundle)
    config = dataclasses.replace(loaded.config.ranking, near_duplicate_threshold=0.999)
    cat = build_catalog(loaded, None, config)
    assert cat.neighbours == _searched(_content(), 0.999)
    assert cat.neighbours != loaded.near_duplicates.neighbours()  # the stored graph was not used


def test_a_graph_that_does_not_fit_its_description_is_refused(tmp_path):
    graph = NearDuplicates.build(_content(), 0.9)
    folder = write_part(tmp_path / "graph", graph)
    assert read_part(folder, NearDuplicates).neighbours() == graph.neighbours()
    np.save(folder / "indptr.npy", np.asarray(graph.indptr)[:-5])
    with pytest.raises(ArtifactError, match=r"indptr\.npy: .*replaced or comes from another bundle"):
        read_part(folder, NearDuplicates, verify=False)
    np.save(folder / "indptr.npy", np.asarray(graph.indptr))
    np.save(folder / "indices.npy", np.asarray(graph.indices) + N_ITEMS)
    with pytest.raises(ArtifactError, match=r"indices\.npy: holds items outside 0\.\.119"):
        read_part(folder, NearDuplicates, verify=False)


def test_identical_content_is_a_near_duplicate_even_when_copies_are_common():
    """A small catalogue where copies are more than 0.1% of random pairs: q = 1, yet copies pair up.

    30 items in 23 orthogonal clusters (as in the property tests): about 2% of random pairs are
    copies, so the calibration quantile is a cosine of 1. The threshold must still sit below the
    cosine of two identical vectors, and only the copies may pair.
    """
    clusters = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 6, 7, 8, 9, 9, 10, 11, 12, 13, 13, 14, 15, 16, 17, 18, 18,
                         19, 20, 21, 22])
    content = np.eye(clusters.max() + 1, dtype=np.float32)[clusters]
    threshold = diversity.calibrated_threshold(content, 0.9)
    assert threshold < 1.0
    a, b = diversity.near_duplicate_pairs(content, threshold)
    assert len(a) > 0 and (clusters[a] == clusters[b]).all()
    assert {(int(x), int(y)) for x, y in zip(a, b)} == {
        (i, j) for i in range(len(clusters)) for j in range(len(clusters)) if i != j and clusters[i] == clusters[j]
    }
