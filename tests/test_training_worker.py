"""The content step in a worker process, and the night's reuse of yesterday's near-duplicate graph."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recsys.training import job, train_model
from recsys.training.duplicates import NearDuplicates
from recsys.training.model import TrainedModel
from test_training import small_config, tiny_world


@pytest.fixture(scope="module")
def world():
    return tiny_world(seed=3)


@pytest.fixture(scope="module")
def in_line(world):
    return train_model(*world, config=small_config())


def _same_model(a: TrainedModel, b: TrainedModel) -> None:
    for name in ("content_vectors", "item_factors", "user_factors", "user_topics", "segment_popularity",
                 "item_quality", "user_interest"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), err_msg=name)
    assert a.content_model.vectorizer_.vocabulary_ == b.content_model.vectorizer_.vocabulary_


def test_worker_gives_the_in_line_model_and_graph(world, in_line, monkeypatch):
    monkeypatch.setattr(job, "CONTENT_WORKER_MIN_ITEMS", 0)
    model = train_model(*world, config=small_config())
    figures = model.info["content_worker"]
    assert figures["peak_rss_gib"] > 0
    assert set(figures["seconds"]) == {"content embedding (worker)", "near_duplicates (worker)"}
    assert set(figures["seconds"]) <= set(model.info["timings_s"])
    _same_model(model, in_line)
    # the graph the worker searched is the one the bundle write would have searched
    assert in_line.near_duplicates is None and model.near_duplicates is not None
    base = small_config().ranking.near_duplicate_threshold
    fresh = NearDuplicates.build(in_line.content_vectors, base)
    np.testing.assert_array_equal(model.near_duplicates.indptr, fresh.indptr)
    np.testing.assert_array_equal(model.near_duplicates.indices, fresh.indices)
    assert model.near_duplicates.threshold == fresh.threshold


def test_a_failing_worker_falls_back_in_line(world, in_line, monkeypatch):
    monkeypatch.setattr(job, "CONTENT_WORKER_MIN_ITEMS", 0)
    monkeypatch.setattr(job, "_WORKER_CODE", "raise SystemExit(3)")
    model = train_model(*world, config=small_config())
    assert model.info["content_worker"] == {"failed": True, "returncode": 3}  # the manifest says so
    assert model.near_duplicates is None  # searched at the bundle write, as without a worker
    _same_model(model, in_line)


def test_night_reuses_the_graph_only_for_the_same_content(in_line, tmp_path):
    loaded = TrainedModel.load(in_line.save(tmp_path / "models"))
    config = small_config()
    graph = loaded.near_duplicates
    n = loaded.n_items
    content = np.array(loaded.content_vectors)
    assert job._same_duplicates(loaded, content, n, config) is graph
    moved = content.copy()
    moved[5, 0] += 1e-3
    assert job._same_duplicates(loaded, moved, n, config) is None
    other = dataclasses.replace(config, ranking=dataclasses.replace(config.ranking, near_duplicate_threshold=0.99))
    assert job._same_duplicates(loaded, content, n, other) is None
    assert job._same_duplicates(None, content, n, config) is None
