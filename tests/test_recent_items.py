"""Each user's recent positive items (``[ranker] recent_items``): a variable-length CSR in the bundle.

The seeds of the co-engagement candidates and feature are checked against a plain per-user
statement (a user's distinct positive items, newest latest engagement first, at most
``recent_items``), against the fixed -1 padded array older bundles hold (the same seeds, so the
same candidates and feature values from either), and through a bundle: a new one holds the CSR
only, an old one's fixed array loads and is read as it is.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from recsys import columns as C
from recsys.bundle import read_part, write_part
from recsys.config import EngineConfig, RankerConfig
from recsys.exceptions import ArtifactError
from recsys.ranking import candidates as CA
from recsys.ranking import features as F
from recsys.ranking.state import build_state
from recsys.ranking.users import resolve
from recsys.training.signals import Signals, compute_signals
from tests.ranking_world import TAX, hand_model, items_frame, users_frame

END = pd.Timestamp("2026-06-01T00:00:00Z")
N_USERS, N_ITEMS = 40, 30
POSITIVE = {C.EVENT_TYPES[c] for c in C.POSITIVE_CODES}


def _log(seed: int = 0, n: int = 900) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame]:
    """Events of 40 users on 30 items over 60 days: a few heavy users (20+ distinct positive
    items), many light ones, three with no event at all; repeated pairs and non-positive types."""
    rng = np.random.default_rng(seed)
    weight = 1.0 / (1.0 + np.arange(N_USERS - 3)) ** 1.2
    u = rng.choice(N_USERS - 3, size=n, p=weight / weight.sum()).astype(np.int64)
    i = rng.integers(0, N_ITEMS, n).astype(np.int64)
    u[:5] = -1  # an unknown user's events count nowhere
    types = rng.choice(["click", "read", "like", "impression", "dismiss"], size=n, p=[0.4, 0.2, 0.1, 0.2, 0.1])
    events = pd.DataFrame({
        C.EVENT_TYPE: types,
        C.TIMESTAMP: END - pd.to_timedelta(rng.uniform(0, 60, n), unit="D"),
    })
    users = users_frame(["farmer"] * N_USERS, ["haigang"] * N_USERS)
    return events, u, i, users


def _newest(events: pd.DataFrame, u: np.ndarray, i: np.ndarray, r: int) -> list[list[int]]:
    """Per user: their distinct positive items, the newest latest engagement first, at most ``r``."""
    latest: dict[tuple[int, int], pd.Timestamp] = {}
    for kind, t, uu, ii in zip(events[C.EVENT_TYPE], events[C.TIMESTAMP], u.tolist(), i.tolist()):
        if kind in POSITIVE and uu >= 0:
            latest[(uu, ii)] = max(latest.get((uu, ii), t), t)
    out: list[list[int]] = [[] for _ in range(N_USERS)]
    for (uu, ii), _ in sorted(latest.items(), key=lambda kv: kv[1], reverse=True):
        out[uu].append(ii)
    return [items[:r] for items in out]


def _fixed(lists: list[list[int]], r: int) -> np.ndarray:
    """The (n_users, r) -1 padded int32 array a bundle held before the CSR."""
    out = np.full((len(lists), r), -1, np.int32)
    for row, items in enumerate(lists):
        out[row, : len(items)] = items
    return out


def _signals(r: int) -> Signals:
    events, u, i, users = _log()
    return compute_signals(events, u, i, users, N_ITEMS, END, TAX, RankerConfig(recent_items=r))


@pytest.mark.parametrize("r", [3, 50])
def test_each_user_keeps_their_newest_positive_items_up_to_recent_items(r):
    events, u, i, _ = _log()
    want = _newest(events, u, i, r)
    sig = _signals(r)
    assert sig.user_recent_items is None  # no fixed array: the CSR alone
    got = sig.recent_items(np.arange(N_USERS))
    assert got.dtype == np.int32 and got.shape == (N_USERS, max(len(w) for w in want))
    for row in range(N_USERS):
        assert got[row][got[row] >= 0].tolist() == want[row], row
        assert (got[row][len(want[row]):] == -1).all()
    # memory follows the users' real histories: one id per kept item, not n_users x r
    assert sig.user_recent_indices.size == sum(len(w) for w in want)
    lengths = [len(w) for w in want]
    assert max(lengths) == r if r == 3 else max(lengths) < r  # r = 50 exceeds every history here
    assert min(lengths) == 0
    # a user the bundle does not know (row -1) has no seeds; a repeated row reads the same
    block = sig.recent_items(np.array([-1, 0, -1, 0]))
    assert (block[[0, 2]] == -1).all() and np.array_equal(block[1], block[3])
    assert np.array_equal(block[1][block[1] >= 0], np.array(want[0]))


def test_no_recent_items_means_no_seeds():
    sig = _signals(0)
    assert sig.user_recent_indices.size == 0 and sig.recent_items(np.arange(N_USERS)).shape == (N_USERS, 0)


def _legacy(sig: Signals, r: int) -> Signals:
    """The same signals as a bundle written before the CSR held them (the fixed array)."""
    fixed = _fixed([row[row >= 0].tolist() for row in sig.recent_items(np.arange(N_USERS))], r)
    return dataclasses.replace(sig, user_recent_indptr=None, user_recent_indices=None, user_recent_items=fixed)


@pytest.mark.parametrize("r", [3, 50])
def test_the_csr_gives_the_fixed_arrays_seeds_candidates_and_feature(r):
    sig = _signals(r)
    old = _legacy(sig, r)
    rows = np.array([5, -1, 0, 39, 0, 12, 2])
    new_block, old_block = sig.recent_items(rows), old.recent_items(rows)
    assert old_block.shape == (len(rows), r)  # the old array's width: every user padded to r
    w = new_block.shape[1]
    assert np.array_equal(new_block, old_block[:, :w]) and (old_block[:, w:] == -1).all()

    config = EngineConfig()
    config = dataclasses.replace(config, ranker=dataclasses.replace(config.ranker, recent_items=r))
    _, _, _, users = _log()
    rng = np.random.default_rng(1)
    model = hand_model(users, items_frame(N_ITEMS), rng.normal(size=(N_USERS, 4)), rng.normal(size=(N_ITEMS, 4)), config=config)
    states = [build_state(dataclasses.replace(model, signals=s), None, config.ranking) for s in (sig, old)]
    ids = ["u0", "u1", "never_seen", "u2", "u5", "u38"]
    attrs = [None, None, ("farmer", None, "haigang"), None, None, None]
    lit = 0
    for take in (ids, ids[:2]):  # a block (sparse products) and a single call's few users (row by row)
        got = []
        for state in states:
            users_b = resolve(state, take, attrs[: len(take)])
            cand = np.tile(np.arange(N_ITEMS, dtype=np.int64), (len(take), 1))
            got.append((CA._coengaged(state, users_b), F._coengagement(F.Block(state, users_b, cand, state.default_now_ns))))
        assert np.array_equal(got[0][0], got[1][0]) and np.array_equal(got[0][1], got[1][1])
        lit += int((got[0][1] > 0).sum())
    assert lit > 0  # the log has co-engagement: the comparison saw live seeds


def test_a_bundle_keeps_the_csr_and_an_old_bundles_fixed_array_loads(tmp_path):
    sig = _signals(4)
    new = read_part(write_part(tmp_path / "new", sig), Signals)
    assert (tmp_path / "new" / "user_recent_indices.npy").exists()
    assert not (tmp_path / "new" / "user_recent_items.npy").exists() and new.user_recent_items is None
    rows = np.arange(N_USERS)
    assert np.array_equal(new.recent_items(rows), sig.recent_items(rows))
    # an old bundle: the fixed array only, read as it is
    old = read_part(write_part(tmp_path / "old", _legacy(sig, 4)), Signals)
    assert old.user_recent_indptr is None and not (tmp_path / "old" / "user_recent_indptr.npy").exists()
    w = sig.recent_items(rows).shape[1]
    assert np.array_equal(old.recent_items(rows)[:, :w], sig.recent_items(rows))
    # neither form: refused with the file named, not an error deep in a ranking call
    write_part(tmp_path / "none", dataclasses.replace(sig, user_recent_indptr=None, user_recent_indices=None))
    with pytest.raises(ArtifactError, match="user_recent_indptr.npy"):
        read_part(tmp_path / "none", Signals)


def test_a_saved_old_bundle_serves_the_lists_of_a_new_one(tmp_path):
    from recsys import Recommender

    sig = _signals(50)
    config = EngineConfig()
    _, _, _, users = _log()
    rng = np.random.default_rng(2)
    model = hand_model(users, items_frame(N_ITEMS), rng.normal(size=(N_USERS, 4)), rng.normal(size=(N_ITEMS, 4)), config=config)
    new = dataclasses.replace(model, signals=sig).save(tmp_path / "new", version="20260601T000000Z")
    old = dataclasses.replace(model, signals=_legacy(sig, 50)).save(tmp_path / "old", version="20260601T000000Z")
    assert (new / "user_recent_indptr.npy").exists() and not (new / "user_recent_items.npy").exists()
    assert (old / "user_recent_items.npy").exists() and not (old / "user_recent_indptr.npy").exists()
    ids = [f"u{j}" for j in range(N_USERS)]
    recs = [Recommender.load(path) for path in (new, old)]
    # the loaded (memory-mapped) seeds give the same co-engaged candidates, and there are some
    seeded = [CA._coengaged(rec.state, resolve(rec.state, ids, None)) for rec in recs]
    assert np.array_equal(seeded[0], seeded[1]) and (seeded[0] >= 0).sum() > N_USERS
    lists = [rec.recommend_many(ids, k=8) for rec in recs]
    assert len(lists[0]) == 8 * N_USERS
    assert lists[0][["user_id", "item_id"]].equals(lists[1][["user_id", "item_id"]])
    np.testing.assert_array_equal(lists[0]["score"].to_numpy(), lists[1]["score"].to_numpy())
