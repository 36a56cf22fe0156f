"""Serving qualities: bundles on disk, reload while calls continue, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from recsys import Recommender

from ranking_world import cluster_vectors, hand_model, items_frame, users_frame

N_ITEMS = 20


def _model(sign: float):
    rng = np.random.default_rng(2)
    users = users_frame(["farmer", "youth"], ["qinglong", "haigang"])
    items = items_frame(N_ITEMS, topics=[[("earthquake", "ocean_coast", "ecology")[j % 3]] for j in range(N_ITEMS)])
    return hand_model(
        users,
        items,
        rng.normal(size=(2, 6)),
        sign * rng.normal(size=(N_ITEMS, 6)),
        content_vectors=cluster_vectors(range(N_ITEMS)),
    )


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    a = _model(1.0).save(models, version="20260601T000000Z")
    b = _model(-1.0).save(models, version="20260602T000000Z")
    return models, a, b


def _lists(rec: Recommender) -> tuple:
    return tuple((r.item_id, r.score, tuple(r.reasons)) for r in rec.recommend("u0", k=5))


def test_save_load_gives_the_same_lists(bundles):
    models, a, _ = bundles
    in_memory = Recommender.from_model(_model(1.0))
    assert _lists(Recommender.load(a)) == _lists(in_memory)


def test_reload_follows_latest(bundles, tmp_path):
    models, a, b = bundles
    rec = Recommender.load(models)  # the models folder: its latest (b)
    assert rec.version == b.name
    rec.reload(a)
    assert rec.version == a.name
    rec.reload(models / "latest")
    assert rec.version == b.name
    before = _lists(rec)
    assert _lists(Recommender.load(a)) != before  # the two versions do rank differently


def test_reload_under_concurrent_calls_never_raises_or_mixes_versions(bundles):
    _, a, b = bundles
    expected = {_lists(Recommender.load(a)), _lists(Recommender.load(b))}
    assert len(expected) == 2
    rec = Recommender.load(a)
    seen: list[tuple] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def caller() -> None:
        try:
            while not stop.is_set():
                seen.append(_lists(rec))
                frame = rec.recommend_many(["u0", "u1"], k=5)
                seen.append(tuple(zip(frame["item_id"][:5], frame["score"][:5], map(tuple, frame["reasons"][:5]))))
        except BaseException as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(8):
            rec.reload(b if i % 2 == 0 else a)
            rec.set_catalog(rec.state.model.items)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[0]
    assert set(seen) == expected  # calls ran under both versions, and only whole versions
    assert rec.version == a.name
