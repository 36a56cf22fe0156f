"""The popularity features read by the compiled feature pass from the bundle's table at each pair
(``recsys.ranking.compiled_features``, code ``LEVEL``): the registry's bits, 0 at items new to the
catalogue, and the registry's own function when the table does not have the taxonomy's rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recsys.ranking import compiled_features
from recsys.ranking import features as F
from test_compiled_features import _bits, _block
from test_compiled_features import state as state  # noqa: F401  (the module's fixture)


def _pop_columns(feats: tuple[F.Feature, ...]) -> list[int]:
    return [j for j, f in enumerate(feats) if f.name.startswith("pop_")]


def _plan(state, feats):
    return F._plan(state, feats, None)


def test_every_popularity_column_is_read_from_the_table_in_the_kernel(state):
    feats = F.registry(state.model.config.ranker)
    plan = _plan(state, feats)
    cols = _pop_columns(feats)
    assert len(cols) == 16 and np.all(plan.fixed.code[cols] == compiled_features.LEVEL) and plan.reads_levels
    # the plan reads a copy of the bundle's table laid out as (level row, item, half-life): a pair's sixteen
    # values in four cache lines; made once per state and feature set (the plan is cached), never written
    table = np.asarray(state.signals.popularity_levels)
    assert plan.fixed.levels.shape == (table.shape[1], table.shape[2], table.shape[0])
    assert np.array_equal(plan.fixed.levels, table.transpose(1, 2, 0)) and not plan.fixed.levels.flags.writeable
    assert not np.shares_memory(plan.fixed.levels, table)
    assert list(plan.fixed.level_cols) == list(cols)
    block = _block(state)
    m, c = block.cand.shape
    got = F.compute_rows(feats, block, np.arange(m * c, dtype=np.int64)).reshape(m, c, -1)
    levels = np.asarray(state.signals.popularity_levels)
    rows = F.Block(state, block.users, block.cand, block.now_ns).level_rows
    for j in cols:
        w, at = feats[j].compute.w, feats[j].compute.at
        want = levels[w, rows[at][:, None], np.maximum(block.cand, 0)] * np.float32(1000)
        assert np.array_equal(_bits(got[..., j]), _bits(want)), feats[j].name


def test_items_new_to_the_catalogue_read_zero_as_the_registry_does(state):
    n_bundle = state.catalog.n_bundle - 6  # the last six items came after the bundle
    other = dataclasses.replace(state, catalog=dataclasses.replace(state.catalog, n_bundle=n_bundle))
    feats = F.registry(state.model.config.ranker)
    block = _block(other)
    m, c = block.cand.shape
    assert (block.cand >= n_bundle).any()
    pos = np.arange(m * c, dtype=np.int64)
    got = F.compute_rows(feats, block, pos)
    reference = F.Block(other, block.users, block.cand, block.now_ns)
    new = (block.cand.reshape(-1) >= n_bundle)
    for j in _pop_columns(feats):
        want = np.asarray(feats[j].compute(reference), np.float32).reshape(-1)
        assert np.array_equal(_bits(got[:, j]), _bits(want)), feats[j].name
        assert np.all(got[new, j] == 0) and np.any(got[~new, j] > 0)


@pytest.mark.parametrize("change", ["rows", "dtype"])
def test_a_table_the_kernel_cannot_read_unchecked_is_read_by_the_registry_function(state, change):
    table = np.asarray(state.signals.popularity_levels)
    # a table with one level row too few (it belongs to another taxonomy), or of float64 shares
    odd = table[:, :-1] if change == "rows" else table.astype(np.float64)
    other = dataclasses.replace(state, signals=dataclasses.replace(state.signals, popularity_levels=np.ascontiguousarray(odd)))
    feats = F.registry(state.model.config.ranker)
    plan = _plan(other, feats)
    cols = _pop_columns(feats)
    assert not plan.reads_levels and np.all(plan.fixed.code[cols] == compiled_features.PLANE)
    if change == "dtype":
        block = _block(other)
        pos = np.arange(block.cand.size, dtype=np.int64)
        got = F.compute_rows(feats, block, pos)
        reference = F.Block(other, block.users, block.cand, block.now_ns)
        for j in cols:
            want = np.asarray(feats[j].compute(reference), np.float32).reshape(-1)
            assert np.array_equal(_bits(got[:, j]), _bits(want)), feats[j].name


def test_a_half_life_the_table_lacks_is_left_to_the_registry_function(state):
    table = np.asarray(state.signals.popularity_levels)
    fewer = np.ascontiguousarray(table[:-1])  # a bundle with one half-life fewer than its config
    other = dataclasses.replace(state, signals=dataclasses.replace(state.signals, popularity_levels=fewer))
    feats = F.registry(state.model.config.ranker)
    plan = _plan(other, feats)
    for j in _pop_columns(feats):
        want = compiled_features.LEVEL if feats[j].compute.w < fewer.shape[0] else compiled_features.PLANE
        assert plan.fixed.code[j] == want, feats[j].name


def test_a_learned_state_builds_its_feature_plan_while_it_loads(state):
    """The plan (the catalogue's item table, the popularity table's copy) is made with the state, so no
    request pays for it; the requests find that one plan."""
    from recsys import Recommender
    from recsys.training.ranker import LearnedRanker

    model = dataclasses.replace(state.model)
    names = [f.name for f in F.registry(model.config.ranker)]
    rng = np.random.default_rng(3)
    x = rng.random((400, len(names))).astype(np.float32)
    y = (x[:, names.index("pop_city_h7d")] > 0.7).astype(np.int32)
    model.ranker = LearnedRanker.fit(x, y, np.full(20, 20), names, n_estimators=5, num_leaves=4, early_stopping_rounds=0,
                                     base_feature="pop_city_h7d", objective="binary")
    rec = Recommender.from_model(model, config=dataclasses.replace(model.config.ranking, ranker="learned"))
    learned = rec.state
    assert learned.ranker is not None and len(learned._features) == 1
    plan = next(iter(learned._features.values()))
    assert F.plan_for(learned, learned.features, learned.used_features) is plan
    assert len(rec.recommend("u0", k=5)) == 5
    assert len(learned._features) == 1 and next(iter(learned._features.values())) is plan
    # the linear blend builds none
    assert len(Recommender.from_model(model, config=dataclasses.replace(model.config.ranking, ranker="linear")).state._features) == 0
