"""Incremental nightly training: the history store, the decayed matrices' update, the ALS update."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from push_city import SMALL_LINEAR, tables
from recsys import columns as C
from recsys.cli import main
from recsys.config import EngineConfig, config_from_dict
from recsys.exceptions import DataError
from recsys.idmap import IdMap
from recsys.schema import validate
from recsys.training import incremental, job, train
from recsys.training.collaborative import CollaborativeModel
from recsys.training.incremental import DecayedState, HistoryError, HistoryStore, advance
from recsys.training.interactions import build_interactions
from recsys.training.model import TrainedModel

CONFIG = SMALL_LINEAR + "[interactions]\npopularity_half_life_days = 3.0\n"
MATRICES = ("matrix", "positives", "negative_weight", "negatives", "exposure", "engaged")


@pytest.fixture(scope="module")
def world():
    users, items, events = tables()
    res = validate(tables=(users, items, events), end="2026-07-02T00:00:00Z")
    day = res.events[C.TIMESTAMP].dt.tz_convert("Asia/Shanghai").dt.date
    return res, users, items, events, day


def _dense(m: sp.spmatrix) -> np.ndarray:
    return np.asarray(m.todense(), dtype=np.float64)


def test_advance_equals_a_full_rebuild(world):
    res, *_ = world
    ev = res.events.sort_values(C.TIMESTAMP, kind="stable").reset_index(drop=True)
    cfg = config_from_dict({"interactions": {"popularity_half_life_days": 3.0}}).interactions
    pop = dataclasses.replace(cfg, half_life_days=cfg.popularity_half_life_days)
    all_users = IdMap.from_ids(res.users[C.USER_ID].to_numpy())
    all_items = IdMap.from_ids(res.items[C.ITEM_ID].to_numpy())
    full = build_interactions(ev, all_users, all_items, cfg)
    full_pop = build_interactions(ev, all_users, all_items, pop).positives
    # yesterday knew fewer users and items: today's new ids must start empty, old ones keep theirs
    cuts = (int(len(ev) * 0.6), int(len(ev) * 0.8), len(ev))
    old = ev.iloc[: cuts[0]]
    y_users = IdMap.from_ids(np.sort(old[C.USER_ID].unique()))
    y_items = IdMap.from_ids(np.sort(old[C.ITEM_ID].unique()))
    state = DecayedState(
        build_interactions(old, y_users, y_items, cfg),
        build_interactions(old, y_users, y_items, pop).positives,
    )
    for lo, hi in zip(cuts, cuts[1:]):  # two nights in a row: the error must not build up
        state = advance(state, ev.iloc[lo:hi], all_users, all_items, cfg, cfg.popularity_half_life_days)
    inter = state.interactions
    assert inter.end == full.end and inter.n_events == full.n_events
    for name in MATRICES:
        np.testing.assert_allclose(_dense(getattr(inter, name)), _dense(getattr(full, name)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_dense(state.popularity), _dense(full_pop), rtol=1e-5, atol=1e-6)


def _folder(base: Path, world, days: int) -> Path:
    """A data folder whose events are one file per local day, the first ``days`` days of the log."""
    _, users, items, events, _ = world
    data = base / "data"
    (data / "events").mkdir(parents=True, exist_ok=True)
    users.to_parquet(data / "users.parquet", index=False)
    items.to_parquet(data / "items.parquet", index=False)
    _add_days(data, world, 0, days)
    (base / "c.toml").write_text(CONFIG, encoding="utf-8")
    return data


def _all_days(world) -> list:
    _, _, _, events, _ = world
    return sorted(pd.to_datetime(events[C.TIMESTAMP]).dt.tz_convert("Asia/Shanghai").dt.date.unique())


def _add_days(data: Path, world, start: int, stop: int) -> None:
    _, _, _, events, _ = world
    local = pd.to_datetime(events[C.TIMESTAMP]).dt.tz_convert("Asia/Shanghai").dt.date
    for d in _all_days(world)[start:stop]:
        events[local == d].to_parquet(data / "events" / f"{d}.parquet", index=False)


def _train(base: Path, data: Path, out: str = "models", **kw) -> dict:
    return train(data, base / out, config_path=base / "c.toml", stream=None, **kw)


def test_nights_validate_only_new_files_and_match_a_full_retrain(tmp_path, world, monkeypatch):
    data = _folder(tmp_path, world, 26)
    first = _train(tmp_path, data)
    assert first["mode"] == "full" and first["full_reason"] == "no history store yet"
    read = []
    real = job.read_table
    monkeypatch.setattr(job, "read_table", lambda path, kind, **kw: (read.append(Path(path).name), real(path, kind, **kw))[1])
    for night in (26, 27):
        _add_days(data, world, night, night + 1)
        read.clear()
        s = _train(tmp_path, data)
        assert s["mode"] == "incremental" and s["new_event_files"] == 1
        # the items table and tonight's one file; yesterday's files are not read again, nor the users
        # file, unchanged since the store recorded it (yesterday's bundle holds its validated table)
        assert read == ["items.parquet", f"{_all_days(world)[night]}.parquet"]
    inc = TrainedModel.load(tmp_path / "models" / "latest")
    full = TrainedModel.load(_train(tmp_path, data, out="full")["bundle"])
    assert inc.info["counts"]["events"] == full.info["counts"]["events"]
    assert (inc.seen != full.seen).nnz == 0
    np.testing.assert_allclose(inc.popularity_recent, full.popularity_recent, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inc.segment_popularity, full.segment_popularity, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inc.content_vectors, full.content_vectors, rtol=1e-5, atol=1e-6)
    # the stored matrices are today's: a rebuild from the stored partitions gives the same
    store = HistoryStore.open(tmp_path / "models")
    assert len(store.doc["partitions"]) == 3  # the first full night's, then one per night
    assert store.end() == pd.Timestamp(inc.window["end"])


def test_no_new_file_is_refused_and_full_retrains(tmp_path, world, capsys):
    data = _folder(tmp_path, world, 27)
    _train(tmp_path, data)
    with pytest.raises(DataError, match="no new event file since the last training"):
        _train(tmp_path, data)
    args = ["train", "--data", str(data), "--out", str(tmp_path / "models"), "--config", str(tmp_path / "c.toml")]
    assert main(args) == 2
    assert "error:" in capsys.readouterr().err
    assert main([*args, "--full"]) == 0
    assert "mode               full" in capsys.readouterr().err


def test_a_damaged_partition_or_changed_file_is_caught(tmp_path, world, capsys):
    data = _folder(tmp_path, world, 26)
    _train(tmp_path, data)
    _add_days(data, world, 26, 27)
    store = HistoryStore.open(tmp_path / "models")
    part = store.root / store.doc["partitions"][0]["file"]
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    part.write_bytes(bytes(raw))
    with pytest.raises(HistoryError, match=r"part-00001\.parquet: does not match the checksum.*--full"):
        _train(tmp_path, data)
    # --full rebuilds the history from the data folder, and the next night is incremental again
    assert _train(tmp_path, data, full=True)["mode"] == "full"
    _add_days(data, world, 27, 28)
    assert _train(tmp_path, data)["mode"] == "incremental"
    # a delivered day that changes afterwards: refused, not silently half-counted
    old = data / "events" / f"{_all_days(world)[3]}.parquet"
    frame = pd.read_parquet(old)
    frame.iloc[:-1].to_parquet(old, index=False)
    _add_days(data, world, 28, 29)
    with pytest.raises(HistoryError, match="changed since it was validated"):
        _train(tmp_path, data)


def test_the_store_survives_a_killed_run(tmp_path, world, monkeypatch):
    data = _folder(tmp_path, world, 26)
    _train(tmp_path, data)
    _add_days(data, world, 26, 27)
    before = (tmp_path / "models" / "history" / "store.json").read_text()
    calls = {"n": 0}
    real = sp.save_npz

    def dies(*args, **kw):  # the process is killed while the new state is being written
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(incremental.sp, "save_npz", dies)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, data)
    monkeypatch.undo()
    assert (tmp_path / "models" / "history" / "store.json").read_text() == before
    store = HistoryStore.open(tmp_path / "models")
    store.read_state(), store.read_events()  # every named file is whole and matches its checksum
    # the killed night is simply done again: the same file is new to the store
    s = _train(tmp_path, data)
    assert s["mode"] == "incremental" and s["new_event_files"] == 1
    full = TrainedModel.load(_train(tmp_path, data, out="full")["bundle"])
    inc = TrainedModel.load(s["bundle"])
    np.testing.assert_allclose(inc.popularity_recent, full.popularity_recent, rtol=1e-5, atol=1e-6)
    leftovers = sorted(p.name for p in (tmp_path / "models" / "history").iterdir())
    assert leftovers == ["partitions", HistoryStore.open(tmp_path / "models").doc["state"]["folder"], "store.json"]


def test_weekly_full_retrain_and_determinism(tmp_path, world):
    data = _folder(tmp_path, world, 25)
    (tmp_path / "c.toml").write_text(CONFIG + "[training]\nfull_every_days = 3\n", encoding="utf-8")
    modes = []
    for night in range(25, 30):
        _add_days(data, world, night, night + 1)
        modes.append(_train(tmp_path, data)["mode"])
    # three days of data after a full retrain, the next one is due
    assert modes == ["full", "incremental", "incremental", "full", "incremental"]
    again = tmp_path / "again"
    shutil.copytree(data, again / "data")
    (again / "c.toml").write_text((tmp_path / "c.toml").read_text())
    for name in sorted((again / "data" / "events").iterdir())[-5:]:
        name.rename(name.with_suffix(".later"))
    for later in sorted((again / "data" / "events").glob("*.later")):
        later.rename(later.with_suffix(".parquet"))
        _train(again, again / "data")
    a = TrainedModel.load(tmp_path / "models" / "latest")
    b = TrainedModel.load(again / "models" / "latest")
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)


def test_als_update_resolves_changed_users_and_lowers_the_loss(world):
    res, *_ = world
    ev = res.events.sort_values(C.TIMESTAMP, kind="stable").reset_index(drop=True)
    cfg = EngineConfig()
    coll = config_from_dict({"collaborative": {"factors": 8, "iterations": 5, "threads": 1}}).collaborative
    users = IdMap.from_ids(res.users[C.USER_ID].to_numpy())
    items = IdMap.from_ids(res.items[C.ITEM_ID].to_numpy())
    cut = int(len(ev) * 0.9)
    yesterday = CollaborativeModel(coll).fit(build_interactions(ev.iloc[:cut], users, items, cfg.interactions))
    today = build_interactions(ev, users, items, cfg.interactions)
    changed = incremental.changed_rows(ev.iloc[cut:], users)
    model = CollaborativeModel(coll).update(today, yesterday.warm_start(), changed, sweeps=2)
    unchanged = np.setdiff1d(np.arange(len(users)), changed)
    np.testing.assert_array_equal(model.user_factors_[unchanged], yesterday.user_factors_[unchanged])
    assert not np.allclose(model.user_factors_[changed], yesterday.user_factors_[changed])
    stale = CollaborativeModel(coll)
    stale.user_factors_, stale.item_factors_ = yesterday.user_factors_, yesterday.item_factors_
    stale.negatives_ = today.negatives
    assert model.loss(today) < stale.loss(today)


def test_row_codes_match_a_groupby():
    # the validator's fast duplicate key: equal codes exactly where every column is equal
    from recsys.schema import _row_codes

    rng = np.random.default_rng(3)
    n = 5000
    ts = pd.Series(pd.Timestamp("2026-06-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 50, n), unit="s"))
    ts[rng.random(n) < 0.05] = pd.NaT
    users = pd.Series(np.array(["a", "b", "c", "", None], dtype=object)[rng.integers(0, 5, n)])
    cols = [users, pd.Series(rng.integers(0, 4, n).astype(str)), ts]
    expected = pd.DataFrame({i: c for i, c in enumerate(cols)}).groupby([0, 1, 2], sort=False, dropna=False).ngroup()
    np.testing.assert_array_equal(_row_codes(cols), expected.to_numpy())


# ---- the history's aggregates: the night reads no event of the history ----------------------------

def _sorted_exposures(ex) -> pd.DataFrame:
    frame = pd.DataFrame({f.name: getattr(ex, f.name) for f in dataclasses.fields(ex)})
    return frame.sort_values(["user", "item"]).reset_index(drop=True)


def test_aggregates_moved_forward_equal_a_full_rebuild_over_several_nights(world):
    from recsys.taxonomy import load_taxonomy
    from recsys.training.engagement import build_exposures
    from recsys.training.signals import compute_signals

    res, *_ = world
    tax = load_taxonomy()
    ev = res.events.sort_values(C.TIMESTAMP, kind="stable").reset_index(drop=True)
    cfg = EngineConfig()
    all_users = IdMap.from_ids(res.users[C.USER_ID].to_numpy())
    all_items = IdMap.from_ids(res.items[C.ITEM_ID].to_numpy())
    full = incremental.day_aggregates(ev, all_users, all_items, tax)
    # yesterday knew fewer users and items, in another order: the aggregates must follow the ids
    cuts = (int(len(ev) * 0.5), int(len(ev) * 0.7), int(len(ev) * 0.85), len(ev))
    old = ev.iloc[: cuts[0]]
    y_users = IdMap.from_ids(np.sort(old[C.USER_ID].unique())[::-1])
    y_items = IdMap.from_ids(np.sort(old[C.ITEM_ID].unique())[::-1])
    state = DecayedState(
        build_interactions(old, y_users, y_items, cfg.interactions), None,
        incremental.day_aggregates(old, y_users, y_items, tax),
    )
    for lo, hi in zip(cuts, cuts[1:]):  # three nights
        state = advance(state, ev.iloc[lo:hi], all_users, all_items, cfg.interactions, None, taxonomy=tax)
    agg = state.aggregates
    for name in ("showings", "last_positive"):
        got, want = getattr(agg, name), getattr(full, name)
        np.testing.assert_array_equal(got.row, want.row)
        np.testing.assert_array_equal(got.col, want.col)
        np.testing.assert_allclose(got.seconds, want.seconds, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(agg.showings.channel, full.showings.channel)
    np.testing.assert_array_equal(agg.channel_counts, full.channel_counts)
    np.testing.assert_array_equal(agg.item_impressions, full.item_impressions)
    assert agg.start == ev[C.TIMESTAMP].min()
    # the engagement model's exposures, from the store alone, are build_exposures' over every event
    end = state.interactions.end
    got = incremental.history_exposures(state, res.items, cfg.engagement, sample=0, seed=0)
    want = build_exposures(ev, all_users, all_items, res.items, tax, end=end, trend_days=cfg.engagement.trend_days)
    pd.testing.assert_frame_equal(_sorted_exposures(got), _sorted_exposures(want), rtol=1e-9)
    # the ranking signals likewise (a user's recent items compared as sets: equal instants may swap)
    sig = incremental.history_signals(state, res.users, end, tax, cfg.ranker)
    ref = compute_signals(
        ev, all_users.index(ev[C.USER_ID].to_numpy()), all_items.index(ev[C.ITEM_ID].to_numpy()),
        res.users, len(all_items), end, tax, cfg.ranker,
    )
    for name in ("popularity_levels", "popularity_windows", "shrinkage", "user_activity", "item_exposures",
                 "coengagement_indptr", "coengagement_indices", "coengagement_data"):
        np.testing.assert_allclose(getattr(sig, name), getattr(ref, name), rtol=1e-5, atol=1e-6, err_msg=name)
    every = np.arange(len(res.users))
    for a, b in zip(sig.recent_items(every), ref.recent_items(every)):
        assert set(a[a >= 0]) == set(b[b >= 0])


def test_a_night_reads_no_history_partition_and_an_old_store_is_upgraded(tmp_path, world, monkeypatch):
    from recsys.taxonomy import load_taxonomy

    data = _folder(tmp_path, world, 25)
    _train(tmp_path, data)
    # a store of before the aggregates were kept: the next night builds them once from the partitions
    store = HistoryStore.open(tmp_path / "models")
    folder = tmp_path / "models" / "history" / store.doc["state"]["folder"]
    for name in incremental._AGGREGATE_FILES:
        (folder / name).unlink()
        del store.doc["state"]["files"][name]
    store.doc["state"].pop("start")
    (tmp_path / "models" / "history" / "store.json").write_text(json.dumps(store.doc))
    # built in small batches (a city's first partition is its whole log): the same as at once
    old = HistoryStore.open(tmp_path / "models")
    inter = old.read_state().interactions
    tax = load_taxonomy()
    batched = old.build_aggregates(inter.users, inter.items, tax, batch_rows=500)
    whole = incremental.day_aggregates(old.read_events(), inter.users, inter.items, tax)
    for name in ("showings", "last_positive"):
        for field in ("row", "col", "seconds"):
            np.testing.assert_array_equal(getattr(getattr(batched, name), field), getattr(getattr(whole, name), field))
    np.testing.assert_array_equal(batched.showings.channel, whole.showings.channel)
    np.testing.assert_array_equal(batched.channel_counts, whole.channel_counts)
    assert batched.start == whole.start
    # the same as a step of its own (an operator's upgrade), on a copy
    shutil.copytree(tmp_path / "models", tmp_path / "copy", symlinks=True)
    upgraded = HistoryStore.open(tmp_path / "copy").upgrade(tax)
    np.testing.assert_array_equal(upgraded.read_state().aggregates.channel_counts, whole.channel_counts)
    assert upgraded.doc["partitions"] == old.doc["partitions"]
    assert len(list((tmp_path / "copy" / "history").glob("state-*"))) == 1
    _add_days(data, world, 25, 26)
    assert _train(tmp_path, data)["mode"] == "incremental"
    assert HistoryStore.open(tmp_path / "models").read_state().aggregates is not None
    # from then on a night opens no partition of the history (its file's events are later than all of them)
    read = []
    real = incremental.pq.read_table
    monkeypatch.setattr(incremental.pq, "read_table", lambda path, *a, **kw: (read.append(str(path)), real(path, *a, **kw))[1])
    for night in (26, 27):
        _add_days(data, world, night, night + 1)
        assert _train(tmp_path, data)["mode"] == "incremental"
    assert not [p for p in read if "partitions" in p]
    monkeypatch.undo()
    inc = TrainedModel.load(tmp_path / "models" / "latest")
    full = TrainedModel.load(_train(tmp_path, data, out="full")["bundle"])
    assert inc.window == full.window
    assert inc.info["counts"]["events"] == full.info["counts"]["events"]
    np.testing.assert_array_equal(inc.user_channel_counts, full.user_channel_counts)
    for name in ("popularity_levels", "popularity_windows", "user_activity", "item_exposures", "coengagement_data"):
        np.testing.assert_allclose(getattr(inc.signals, name), getattr(full.signals, name), rtol=1e-5, atol=1e-6)


def test_a_repeated_day_is_still_left_out_from_the_recent_partitions_only(tmp_path, world):
    data = _folder(tmp_path, world, 26)
    _train(tmp_path, data)
    day = _all_days(world)[25]
    # yesterday's file delivered again under another name: every event is already in the history
    shutil.copy(data / "events" / f"{day}.parquet", data / "events" / f"{day}-again.parquet")
    _add_days(data, world, 26, 27)
    s = _train(tmp_path, data)
    assert s["mode"] == "incremental" and s["new_event_files"] == 2
    full = _train(tmp_path, data, out="full")  # the validator drops the copy's rows as duplicates
    assert s["new_events"] + HistoryStore.open(tmp_path / "models").doc["partitions"][0]["rows"] == full["events"]


def test_a_night_whose_prepared_files_vanished_leaves_the_store_as_it_was(tmp_path, world, monkeypatch):
    # the night writes its history files before training; another run committing into the same
    # models folder meanwhile would remove them (no store names them yet): the store must not name them
    data = _folder(tmp_path, world, 26)
    _train(tmp_path, data)
    before = (tmp_path / "models" / "history" / "store.json").read_text()
    _add_days(data, world, 26, 27)
    real = job.train_model

    def meanwhile(*args, **kw):
        for part in (tmp_path / "models" / "history" / "partitions").glob("part-*.parquet"):
            if part.name not in before:
                part.unlink()
        return real(*args, **kw)

    monkeypatch.setattr(job, "train_model", meanwhile)
    with pytest.raises(HistoryError, match="gone"):
        _train(tmp_path, data)
    assert (tmp_path / "models" / "history" / "store.json").read_text() == before
    store = HistoryStore.open(tmp_path / "models")
    store.read_state(), store.read_events()  # every named file is whole and matches its checksum


def test_a_night_that_fails_after_its_history_files_leaves_the_store_as_it_was(tmp_path, world, monkeypatch):
    data = _folder(tmp_path, world, 26)
    _train(tmp_path, data)
    history = tmp_path / "models" / "history"
    before = {p.relative_to(history): p.read_bytes() for p in history.rglob("*") if p.is_file()}
    _add_days(data, world, 26, 27)

    def fails(*args, **kwargs):  # the training dies after the store's new files were written
        raise RuntimeError("killed in training")

    monkeypatch.setattr(job, "train_model", fails)
    with pytest.raises(RuntimeError, match="killed in training"):
        _train(tmp_path, data)
    after = {p.relative_to(history): p.read_bytes() for p in history.rglob("*") if p.is_file()}
    assert after == before  # the new partition and state were removed; store.json never moved
    monkeypatch.undo()
    night = _train(tmp_path, data)  # the same file is new to the store: the night is simply done again
    assert night["mode"] == "incremental" and night["new_event_files"] == 1
