"""What the night's training holds: warm starts by precomputed rows, pages of mapped inputs released."""

from __future__ import annotations

import mmap

import numpy as np
import pandas as pd
import pytest

from recsys.config import CollaborativeConfig, InteractionConfig
from recsys.exceptions import ConfigError
from recsys.idmap import IdMap
from recsys.training.collaborative import CollaborativeModel, WarmStart, _copy_rows
from recsys.training.interactions import build_interactions
from recsys.training.memory import release_pages

END = pd.Timestamp("2024-06-30T00:00:00Z")
CFG = CollaborativeConfig(factors=4, iterations=8, regularization=0.1, alpha=10.0, threads=1, seed=3)


def _events(users: list[str], items: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        (u, i, "click", END - pd.Timedelta(hours=int(rng.integers(1, 100))))
        for u in users for i in items if rng.random() < 0.3
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])


@pytest.mark.skipif(not hasattr(mmap, "MADV_DONTNEED"), reason="no madvise(MADV_DONTNEED) on this platform")
def test_release_pages_keeps_a_mapped_array_readable(tmp_path):
    values = np.arange(3 * 1024, dtype=np.float32).reshape(-1, 4)
    np.save(tmp_path / "a.npy", values)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert float(mapped.sum()) == float(values.sum())  # pages read in
    # a view (what np.asarray of a bundle array is) reaches its mapping
    assert release_pages(np.asarray(mapped)[1:]) is True
    np.testing.assert_array_equal(mapped, values)  # read again from the page cache
    assert release_pages(values) is False  # not mapped: nothing to do
    assert release_pages(None) is False
    writable = np.load(tmp_path / "a.npy", mmap_mode="r+")
    assert release_pages(writable) is False  # only read-only mappings are touched


@pytest.mark.parametrize("case", ["same order", "reordered", "grown"])
def test_copy_rows_equals_a_fancy_indexed_copy(case, monkeypatch):
    monkeypatch.setattr("recsys.training.collaborative._COPY_BLOCK", 7)  # several blocks
    rng = np.random.default_rng(0)
    values = rng.random((40, 3), dtype=np.float32)
    rows = {
        "same order": np.arange(40),
        "reordered": rng.permutation(np.r_[np.arange(35), [-1] * 10]),
        "grown": np.r_[np.arange(40), [-1] * 5],
    }[case]
    out = rng.random((len(rows), 3), dtype=np.float32)
    want = out.copy()
    want[rows >= 0] = values[rows[rows >= 0]]
    _copy_rows(out, values, rows)
    np.testing.assert_array_equal(out, want)


def test_warm_start_by_rows_equals_warm_start_by_ids():
    users = [f"u{k}" for k in range(50)]
    items = [f"i{k}" for k in range(20)]
    first = CollaborativeModel(CFG).fit(
        build_interactions(_events(users, items, 0), IdMap.from_ids(users), IdMap.from_ids(items), InteractionConfig())
    )
    # today: a new user first, yesterday's users reversed, one user gone, a new item
    users2 = IdMap.from_ids(["new", *users[:0:-1]])
    items2 = IdMap.from_ids([*items, "j"])
    inter = build_interactions(
        _events(list(users2.ids), list(items2.ids), 1), users2, items2, InteractionConfig()
    )
    by_ids = first.warm_start()
    by_rows = WarmStart(
        None, first.user_factors_, None, first.item_factors_,
        first.users_.index(users2.ids), first.items_.index(items2.ids),
    )
    changed = np.arange(0, len(users2), 2)
    a = CollaborativeModel(CFG).update(inter, by_ids, changed, sweeps=1)
    b = CollaborativeModel(CFG).update(inter, by_rows, changed, sweeps=1)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    with pytest.raises(ConfigError, match="warm_start user_rows must hold one row below 50"):
        CollaborativeModel(CFG).update(inter, by_rows._replace(user_rows=np.full(len(users2), 50)), changed)
    with pytest.raises(ConfigError, match="needs the previous item ids or today's item rows"):
        CollaborativeModel(CFG).update(inter, by_rows._replace(item_rows=None), changed)


def test_profiles_read_a_table_in_id_map_order_as_they_read_a_shuffled_one():
    from recsys.config import ProfileConfig
    from recsys.taxonomy import load_taxonomy
    from recsys.training.profiles import TopicProfiles

    tax = load_taxonomy()
    groups, regions, topics = list(tax.groups), list(tax.regions), list(tax.topics)
    users = pd.DataFrame({
        "user_id": [f"u{k}" for k in range(12)],
        "group": [groups[k % 3] for k in range(12)],
        "region": [regions[k % 4] for k in range(12)],
    })
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(6)], "topics": [[topics[k % 5]] for k in range(6)]})
    inter = build_interactions(
        _events(list(users["user_id"]), list(items["item_id"]), 2),
        IdMap.from_ids(users["user_id"]), IdMap.from_ids(items["item_id"]), InteractionConfig(),
    )
    in_order = TopicProfiles(ProfileConfig(), tax).fit(inter, users, items)  # the table's own order
    shuffled = users.sample(frac=1.0, random_state=0)  # rows matched by id
    again = TopicProfiles(ProfileConfig(), tax).fit(inter, shuffled, items)
    np.testing.assert_array_equal(in_order.user_topics_, again.user_topics_)
    np.testing.assert_array_equal(in_order.user_segment_, again.user_segment_)


def test_night_refuses_decayed_matrices_of_other_ids():
    from recsys.training.job import _check_same_ids

    users = pd.DataFrame({"user_id": ["a", "b"]})
    items = pd.DataFrame({"item_id": ["x"]})
    inter = build_interactions(
        _events(["a", "b"], ["x"], 0), IdMap.from_ids(["a", "b"]), IdMap.from_ids(["x"]), InteractionConfig()
    )
    _check_same_ids(inter, users, items)  # the same ids in the same order
    with pytest.raises(ConfigError, match="other user ids than the users table"):
        _check_same_ids(inter, users.iloc[::-1], items)
    with pytest.raises(ConfigError, match="other item ids than the items table"):
        _check_same_ids(inter, users, pd.DataFrame({"item_id": ["x", "y"]}))


def test_collection_paused_restores_the_collector():
    import gc

    from recsys.training.memory import collection_paused

    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
        built = [[k] for k in range(1000)]
    assert gc.isenabled() and len(built) == 1000
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("an error inside")
    assert gc.isenabled()  # restored on the way out
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()  # a collector the caller had off stays off
    finally:
        gc.enable()


def test_rank_within_is_a_groupby_cumcount():
    from recsys.training.signals import _rank_within

    keys = np.random.default_rng(1).integers(0, 40, 5000)
    want = pd.Series(keys).groupby(keys, sort=False).cumcount().to_numpy()
    np.testing.assert_array_equal(_rank_within(keys), want)
