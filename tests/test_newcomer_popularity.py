"""Newcomer popularity (``[ranker] newcomer_days``): what users engage with in their first days.

A tiny hand-made log where one item is what every user engages with on arrival and another what
long-time users engage with later: the signal, the registry feature (also for a user the bundle
never saw) and the optional bundle array (a bundle without it loads; the feature is 0 then).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from recsys.bundle import read_part, write_part
from recsys.config import EngineConfig, RankerConfig
from recsys.ranking import features as F
from recsys.ranking.state import build_state
from recsys.ranking.users import resolve
from recsys.training.signals import (
    Signals,
    compute_signals,
    level_offsets,
    newcomer_pairs,
)
from tests.ranking_world import TAX, hand_model, items_frame, users_frame

END = pd.Timestamp("2026-06-01T00:00:00Z")
DAY = 86_400.0


def test_newcomer_pairs_are_the_pairs_of_each_users_first_days():
    user = np.array([0, 0, 0, 0, 1, 1, 1])
    seconds = np.array([0.0, 0.5, 3.0, 10.0, 100.0, 107.0, 130.0]) * DAY
    got = newcomer_pairs(user, seconds, n_users=3, days=7.0)
    # counted from each user's own earliest pair (user 1 arrives on day 100); 7 days inclusive
    assert got.tolist() == [True, True, True, False, True, True, False]
    assert newcomer_pairs(user[:0], seconds[:0], 3, 7.0).shape == (0,)


def _log() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame]:
    """Six users arrive on different days; each clicks item 0 on arrival, and the first four
    click item 1 a month later: item 1 is engaged by as many users, item 0 by newcomers only."""
    rows = []
    for u in range(6):
        arrive = 50 - 5 * u  # days before END
        rows.append((u, 0, arrive))
        if u < 4:
            rows.append((u, 1, arrive - 30))
    u, i, days = (np.array(c) for c in zip(*rows))
    events = pd.DataFrame({
        "event_type": ["click"] * len(rows),
        "timestamp": END - pd.to_timedelta(days, unit="D"),
    })
    users = pd.DataFrame({"group": ["farmer"] * 6, "region": ["haigang"] * 6})
    return events, u.astype(np.int64), i.astype(np.int64), users


def test_the_signal_counts_what_users_engaged_with_in_their_first_days():
    events, u, i, users = _log()
    on = compute_signals(events, u, i, users, 3, END, TAX, RankerConfig(newcomer_days=7.0))
    nc = np.asarray(on.newcomer_levels)
    assert nc.shape == np.asarray(on.popularity_levels).shape
    # every row (city, group, region, segment): item 0 carries all the newcomer share, item 1 none
    assert (nc[:, :, 0] > 0).all() and (nc[:, :, 2] == 0).all()
    city = nc[:, 0]
    np.testing.assert_allclose(city[:, 1], 0.0, atol=1e-7)
    np.testing.assert_allclose(city[:, 0], 1.0, rtol=1e-6)
    # the whole population's popularity ranks item 1 close to item 0 at a long half-life
    pop = np.asarray(on.popularity_levels)[-1, 0]
    assert pop[1] > 0.3 * pop[0]
    # off by default: no array, no feature
    off = compute_signals(events, u, i, users, 3, END, TAX, RankerConfig())
    assert off.newcomer_levels is None
    assert not [f for f in F.registry(RankerConfig()) if f.name.startswith("newcomer")]
    names = [f.name for f in F.registry(RankerConfig(newcomer_days=7.0))]
    assert [n for n in names if n.startswith("newcomer")] == [
        f"newcomer_h{h:g}d" for h in RankerConfig().popularity_half_lives_days
    ]


def _model_with(newcomer: np.ndarray | None):
    config = EngineConfig()
    config = dataclasses.replace(config, ranker=dataclasses.replace(config.ranker, newcomer_days=7.0))
    users = users_frame(["farmer", "farmer", "urban_worker"], ["haigang", "haigang", "beidaihe"])
    items = items_frame(5)
    rng = np.random.default_rng(0)
    model = hand_model(users, items, rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), config=config)
    signals = dataclasses.replace(model.signals, newcomer_levels=newcomer)
    return dataclasses.replace(model, signals=signals)


def test_the_feature_is_the_users_segment_share_and_exists_for_a_user_never_seen(tmp_path):
    n_h = len(RankerConfig().popularity_half_lives_days)
    probe = _model_with(None)
    n_rows, n_items = np.asarray(probe.signals.popularity_levels).shape[1:]
    levels = np.random.default_rng(1).random((n_h, n_rows, n_items)).astype(np.float32) / 100
    model = _model_with(levels)
    state = build_state(model, None, model.config.ranking)
    feats = [f for f in F.registry(model.config.ranker) if f.name.startswith("newcomer")]
    assert all(f.cold and f.reason == "popularity" and f.level == "segment" for f in feats)
    ids = [str(model.users["user_id"][0]), str(model.users["user_id"][2]), "never_seen"]
    attrs = [None, None, ("urban_worker", None, "beidaihe")]
    cand = np.tile(np.arange(n_items, dtype=np.int64), (3, 1))
    block = F.Block(state, resolve(state, ids, attrs), cand, state.default_now_ns)
    got = F.compute(tuple(feats), block)
    _, _, first_segment = level_offsets(TAX)
    n_r = len(TAX.regions)
    for r, (g, reg) in enumerate([("farmer", "haigang"), ("urban_worker", "beidaihe"), ("urban_worker", "beidaihe")]):
        row = first_segment + list(TAX.groups).index(g) * n_r + list(TAX.regions).index(reg)
        np.testing.assert_allclose(got[r], (levels[:, row, :] * 1000.0).T, rtol=1e-6)
    # the new user (cold) reads the same share as a known user of that segment
    assert got[2].any()
    np.testing.assert_array_equal(got[1], got[2])

    # the bundle keeps the array; a component written without it (an older bundle) loads with
    # none, and the feature is 0 there
    loaded = read_part(write_part(tmp_path / "with", model.signals), Signals)
    np.testing.assert_array_equal(np.asarray(loaded.newcomer_levels), levels)
    older = read_part(write_part(tmp_path / "without", dataclasses.replace(model.signals, newcomer_levels=None)), Signals)
    assert older.newcomer_levels is None and not (tmp_path / "without" / "newcomer_levels.npy").exists()
    old_state = build_state(dataclasses.replace(model, signals=older), None, model.config.ranking)
    old_block = F.Block(old_state, resolve(old_state, ids, attrs), cand, old_state.default_now_ns)
    assert not F.compute(tuple(feats), old_block).any()
