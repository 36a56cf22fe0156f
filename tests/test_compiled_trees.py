"""The ranker's trees compiled to native code (``recsys.training.compiled_trees``): LightGBM's
scores, and a cache that is trusted only when its key and checksum match."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from recsys.training import compiled_trees
from recsys.training.compiled_trees import cache_dir, compile_trees
from recsys.training.ranker import LearnedRanker


def _data(seed: int = 0, n_q: int = 60, per: int = 20):
    """Numeric features with the values serving sends: exact zeros, missing values (NaN), counts."""
    rng = np.random.default_rng(seed)
    n = n_q * per
    x = np.stack([rng.random(n), rng.gamma(2.0, 3.0, n), rng.normal(size=n), rng.random(n)], axis=1).astype(np.float32)
    x[rng.random(n) < 0.2, 0] = 0.0
    x[rng.random(n) < 0.1, 2] = np.nan
    y = ((x[:, 0] + 0.1 * x[:, 1] + rng.random(n)) > 1.2).astype(np.int32)
    return x, y, np.full(n_q, per, np.int64)


@pytest.fixture(scope="module")
def ranker() -> LearnedRanker:
    x, y, groups = _data()
    return LearnedRanker.fit(x, y, groups, ["a", "b", "c", "d"], base_feature="b", n_estimators=12, num_leaves=7,
                             early_stopping_rounds=0, threads=1)


def test_compiled_scores_equal_lightgbms_on_zeros_missing_values_and_unseen_ranges(ranker, tmp_path):
    x, _, _ = _data(seed=1)
    x[:50] *= 100.0  # beyond every threshold the trees learned
    trees = compile_trees(ranker.booster.model_to_string(), folder=tmp_path)
    ref = ranker.booster.predict(x, num_threads=1)
    assert np.abs(trees.predict(x) - ref).max() < 1e-12
    # the ranker's own prediction: the starting score plus the same trees
    want = (ranker.base(x) + ref).astype(np.float32)
    np.testing.assert_array_equal(ranker.predict(x), want)


def test_a_binary_model_keeps_lightgbms_probability_and_only_the_best_iterations_are_compiled(tmp_path):
    x, y, groups = _data(seed=2)
    r = LearnedRanker.fit(x, y, groups, ["a", "b", "c", "d"], n_estimators=10, num_leaves=5, early_stopping_rounds=0,
                          objective="binary", threads=1)
    r.report["best_iteration"] = 4  # as early stopping or ``fewest_trees`` leave it
    got = r.predict(x)
    want = r.booster.predict(x, num_iteration=4, num_threads=1).astype(np.float32)
    assert np.all((want > 0) & (want < 1))  # a probability, as LightGBM gives it
    assert np.abs(got - want).max() < 1e-6
    assert np.abs(got - r.booster.predict(x, num_threads=1)).max() > 1e-4  # all ten trees would differ
    r.report["best_iteration"] = 10
    assert np.abs(r.predict(x) - r.booster.predict(x, num_threads=1)).max() < 1e-6  # recompiled for the new cut


def test_the_cache_is_written_beside_a_key_and_read_back_only_when_key_and_checksum_match(ranker, tmp_path):
    text = ranker.booster.model_to_string()
    x, _, _ = _data(seed=3)
    ref = ranker.booster.predict(x, num_threads=1)
    first = compile_trees(text, folder=tmp_path)
    assert not first.cached
    objects, sides = sorted(tmp_path.glob("*.o")), sorted(tmp_path.glob("*.json"))
    assert len(objects) == 1 and len(sides) == 1 and objects[0].stem == sides[0].stem
    meta = json.loads(sides[0].read_text())
    assert meta["key"]["model_sha256"] == compiled_trees.cache_key(text)["model_sha256"]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind

    again = compile_trees(text, folder=tmp_path)
    assert again.cached and np.abs(again.predict(x) - ref).max() < 1e-12

    # a damaged object is never loaded: compiled afresh (and the cache repaired)
    data = bytearray(objects[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    objects[0].write_bytes(bytes(data))
    fresh = compile_trees(text, folder=tmp_path)
    assert not fresh.cached and np.abs(fresh.predict(x) - ref).max() < 1e-12
    assert compile_trees(text, folder=tmp_path).cached

    # a sidecar written by another toolchain (its key differs) is not trusted either
    meta = json.loads(sides[0].read_text())
    meta["key"]["llvmlite"] = "0.0.0"
    sides[0].write_text(json.dumps(meta))
    assert not compile_trees(text, folder=tmp_path).cached

    # another model's text has another key, so another file
    other = LearnedRanker.fit(*_data(seed=4), ["a", "b", "c", "d"], n_estimators=3, num_leaves=4, early_stopping_rounds=0,
                              threads=1).booster.model_to_string()
    assert compiled_trees.cache_key(other)["id"] != compiled_trees.cache_key(text)["id"]


def test_an_unwritable_cache_only_costs_the_compile(ranker, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    x, _, _ = _data(seed=5)
    trees = compile_trees(ranker.booster.model_to_string(), folder=blocked)
    assert not trees.cached
    assert np.abs(trees.predict(x) - ranker.booster.predict(x, num_threads=1)).max() < 1e-12
    assert blocked.read_text().startswith("a file")  # untouched


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "compiled-trees"
    for off in ("off", "", "None"):
        monkeypatch.setenv("RECSYS_CACHE_DIR", off)
        assert cache_dir() is None
    monkeypatch.delenv("RECSYS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "recsys" / "compiled-trees"


def test_a_compiled_ranker_pickles_without_its_native_code(ranker, monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path))
    x, _, _ = _data(seed=6)
    before = ranker.predict(x)
    assert "_compiled" in ranker.__dict__
    copy = pickle.loads(pickle.dumps(ranker))
    assert "_compiled" not in copy.__dict__
    np.testing.assert_array_equal(copy.predict(x), before)
