"""Each population's own starting feature (``ranker_training.population_bases``)."""

from __future__ import annotations

import numpy as np

from recsys.bundle import read_part, write_part
from recsys.training.ranker import COLD_FEATURE, LearnedRanker
from recsys.training.ranker_training import MIN_POPULATION_QUERIES, _ndcg_at, population_bases

NAMES = ["pop", "collab", COLD_FEATURE]


class _F:
    def __init__(self, name: str) -> None:
        self.name = name


FEATS = tuple(_F(n) for n in NAMES)


def _log(seed: int, n_warm: int, n_cold: int, warm_signal: bool, per: int = 20):
    """Queries of ``per`` rows. Cold users (``user_history`` 0, ``collab`` 0): the label is the top
    quarter of ``pop``. Warm users: the top quarter of ``collab`` when ``warm_signal``, else of
    ``pop`` too (and ``collab`` is noise)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for q in range(n_warm + n_cold):
        warm = q < n_warm
        pop = rng.gamma(2.0, 1.0, per)
        collab = rng.random(per) if warm else np.zeros(per)
        signal = collab if warm and warm_signal else pop
        y = (signal >= np.quantile(signal, 0.75)).astype(np.int32)
        history = np.full(per, rng.uniform(0.5, 3.0) if warm else 0.0)
        xs.append(np.stack([pop, collab, history], axis=1))
        ys.append(y)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys), np.full(n_warm + n_cold, per, np.int64)


def test_warm_users_start_from_their_own_best_feature_when_their_held_out_queries_confirm_it():
    # mostly cold users: the pooled best feature is popularity, the warm users' own is collab
    train, valid = _log(0, 40, 120, True), _log(1, 15, 40, True)
    base, warm, report = population_bases(train, valid, FEATS, "pop")
    assert (base, warm) == ("pop", "collab")
    assert report["warm"]["adopted"] and report["warm"]["valid_ndcg_at_10"] > report["warm"]["pooled_valid_ndcg_at_10"]
    assert report["cold"] == {"feature": "pop", "adopted": False}
    # the ranker starts warm rows from collab and cold rows from pop, and keeps it through save and load
    x, y, g = train
    ranker = LearnedRanker.fit(x, y, g, NAMES, base_feature=base, base_feature_warm=warm, n_estimators=3)
    start = ranker.base(x)
    is_warm = x[:, 2] > 0
    np.testing.assert_allclose(start[is_warm], np.log1p(x[is_warm, 1]), rtol=1e-6)
    np.testing.assert_allclose(start[~is_warm], np.log1p(x[~is_warm, 0]), rtol=1e-6)
    assert _ndcg_at(start, y, g) > _ndcg_at(np.log1p(x[:, 0]), y, g) + 0.1
    # the serving's first pass still reads the one base feature's column for everyone
    np.testing.assert_allclose(ranker.base(x[:, [0]], column=0), np.log1p(x[:, 0]), rtol=1e-6)
    assert ranker.used_features.all()


def test_a_population_keeps_the_pooled_feature_without_held_out_evidence(tmp_path):
    # warm users' best training feature is noise here: their held-out queries refuse it
    train, valid = _log(2, 40, 120, False), _log(3, 15, 40, False)
    base, warm, report = population_bases(train, valid, FEATS, "pop")
    assert (base, warm) == ("pop", None)
    assert not report["warm"]["adopted"]
    # too few held-out queries of a population: it is not even tried
    small = _log(4, MIN_POPULATION_QUERIES - 1, 40, True)
    assert population_bases(_log(0, 40, 120, True), small, FEATS, "pop")[1] is None
    # without the history feature nothing can tell the populations apart at serving
    assert population_bases(train, valid, FEATS[:2], "pop") == ("pop", None, {})
    # a ranker without a warm feature (every bundle written before it) starts from its one feature
    x, y, g = train
    ranker = LearnedRanker.fit(x, y, g, NAMES, base_feature="pop", n_estimators=2)
    assert "base_feature_warm" not in ranker.report
    np.testing.assert_allclose(ranker.base(x), np.log1p(x[:, 0]), rtol=1e-6)
    loaded = read_part(write_part(tmp_path / "ranker", ranker), LearnedRanker)
    np.testing.assert_array_equal(loaded.predict(x), ranker.predict(x))


def test_save_and_load_keep_the_warm_start(tmp_path):
    x, y, g = _log(5, 40, 60, True)
    ranker = LearnedRanker.fit(x, y, g, NAMES, base_feature="pop", base_feature_warm="collab", n_estimators=3)
    loaded = read_part(write_part(tmp_path / "ranker", ranker), LearnedRanker)
    assert loaded.report["base_feature_warm"] == "collab"
    np.testing.assert_array_equal(loaded.predict(x), ranker.predict(x))


def test_no_held_out_queries_keeps_the_pooled_feature():
    # [ranker] valid_share = 0, or a small log's draw that held out nobody: nothing to choose on
    train = _log(0, 40, 120, True)
    x, y, g = train
    empty = (x[:0], y[:0], g[:0])
    assert population_bases(train, empty, FEATS, "pop") == ("pop", None, {})
