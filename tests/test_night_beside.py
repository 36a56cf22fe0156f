"""A night's engagement model on a thread beside the other steps, and the content reuse's item comparison."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from push_city import SMALL_LINEAR, tables
from recsys import columns as C
from recsys.config import load_config
from recsys.exceptions import DataError
from recsys.schema import validate
from recsys.training import job, train
from recsys.training.engagement import EngagementModel
from recsys.training.incremental import HistoryStore
from recsys.training.model import TrainedModel

CONFIG = SMALL_LINEAR
#: the bundle arrays a night writes (every one compared)
ARRAYS = (
    "user_factors", "item_factors", "user_topics", "segment_popularity", "popularity_recent", "item_quality",
    "authority_quality", "user_interest", "segment_interest", "user_format", "segment_format", "topic_freshness",
    "topic_trend", "user_bias", "user_channel_counts", "content_vectors",
)


@pytest.fixture(scope="module")
def world():
    users, items, events = tables()
    local = pd.to_datetime(events[C.TIMESTAMP]).dt.tz_convert("Asia/Shanghai").dt.date
    return users, items, events, local, sorted(local.unique())


def _night_folder(base: Path, world) -> Path:
    """A data folder of daily files, trained in full on all days but the last, the last day then delivered."""
    users, items, events, local, days = world
    data = base / "data"
    (data / "events").mkdir(parents=True)
    users.to_parquet(data / "users.parquet", index=False)
    items.to_parquet(data / "items.parquet", index=False)
    for d in days[:-1]:
        events[local == d].to_parquet(data / "events" / f"{d}.parquet", index=False)
    (base / "c.toml").write_text(CONFIG, encoding="utf-8")
    assert train(data, base / "models", config_path=base / "c.toml", stream=None)["mode"] == "full"
    events[local == days[-1]].to_parquet(data / "events" / f"{days[-1]}.parquet", index=False)
    return data


_BESIDE = job._beside


def _in_line(fn, *args, name: str) -> Future:
    """The night's engagement step run in line (the reference: no second thread); other work as shipped."""
    if fn is not job._night_engagement:
        return _BESIDE(fn, *args, name=name)
    done: Future = Future()
    done.set_result(fn(*args))
    return done


def test_the_night_engagement_thread_gives_the_in_line_bundle(tmp_path, world, monkeypatch):
    data = _night_folder(tmp_path, world)
    # the same night twice from the same state: once as shipped (the fit on its own thread), once in line
    twin = tmp_path / "twin"
    import shutil

    shutil.copytree(tmp_path / "models", twin / "models", symlinks=True)
    threads = []
    real_fit = EngagementModel.fit

    def fit(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(EngagementModel, "fit", fit)
    shipped = train(data, tmp_path / "models", config_path=tmp_path / "c.toml", stream=None)
    assert shipped["mode"] == "incremental"
    assert threads == [threads[0]] and threads[0].startswith("recsys-engagement")
    monkeypatch.setattr(job, "_beside", _in_line)
    monkeypatch.setattr(job, "threadpool_limits", lambda **kw: contextlib.nullcontext())  # BLAS as it was
    threads.clear()
    in_line = train(data, twin / "models", config_path=tmp_path / "c.toml", stream=None)
    assert threads == [threading.main_thread().name]
    a, b = TrainedModel.load(shipped["bundle"]), TrainedModel.load(in_line["bundle"])
    for name in ARRAYS:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.engagement_intercept == b.engagement_intercept
    assert (a.seen != b.seen).nnz == 0
    assert a.info["counts"] == b.info["counts"] and a.info["index"] == b.info["index"]
    # the fit's own time is reported beside the step's wait for it
    assert a.info["timings_s"]["engagement model (thread)"] > 0


def test_an_error_in_the_engagement_thread_is_the_nights_error(tmp_path, world, monkeypatch):
    data = _night_folder(tmp_path, world)
    latest = (tmp_path / "models" / "latest").resolve()
    store = HistoryStore.open(tmp_path / "models").doc

    def broken(self, *args, **kwargs):
        raise DataError("engagement: no shown pair to fit")

    monkeypatch.setattr(EngagementModel, "fit", broken)
    with pytest.raises(DataError, match="no shown pair"):
        train(data, tmp_path / "models", config_path=tmp_path / "c.toml", stream=None)
    # nothing moved: the same bundle is latest, the store names what it named
    assert (tmp_path / "models" / "latest").resolve() == latest
    assert HistoryStore.open(tmp_path / "models").doc == store
    monkeypatch.undo()

    # a step of the main thread failing while the fit runs: its error, not the thread's result
    finished = threading.Event()
    real_fit = EngagementModel.fit

    def slow_fit(self, *args, **kwargs):
        out = real_fit(self, *args, **kwargs)
        finished.set()
        return out

    def broken_profiles(self, *args, **kwargs):
        raise DataError("profiles: a topic code the taxonomy lacks")

    monkeypatch.setattr(EngagementModel, "fit", slow_fit)
    monkeypatch.setattr(job.TopicProfiles, "fit", broken_profiles)
    with pytest.raises(DataError, match="taxonomy lacks"):
        train(data, tmp_path / "models", config_path=tmp_path / "c.toml", stream=None)
    assert (tmp_path / "models" / "latest").resolve() == latest
    assert HistoryStore.open(tmp_path / "models").doc == store
    # the abandoned fit ends by itself (it writes nothing)
    assert finished.wait(timeout=60)


def _joined_key_same(previous: TrainedModel, items: pd.DataFrame) -> np.ndarray:
    """The reference rule: an item is unchanged when its title, summary, tags, topics and format read the same."""
    before = previous.items.set_index(C.ITEM_ID)
    out = np.zeros(len(items), dtype=bool)
    for n, row in enumerate(items.itertuples(index=False)):
        item = row._asdict()
        if item[C.ITEM_ID] not in before.index:
            continue
        old = before.loc[item[C.ITEM_ID]]
        out[n] = all(
            [str(v) for v in item[c]] == [str(v) for v in old[c]] if c in (C.TAGS, C.TOPICS) else str(item[c]) == str(old[c])
            for c in (C.TITLE, C.SUMMARY, C.TAGS, C.TOPICS, C.FORMAT)
        )
    return out


def test_reuse_content_keeps_unchanged_items_and_embeds_changed_ones(tmp_path, world):
    data = _night_folder(tmp_path, world)
    previous = TrainedModel.load(tmp_path / "models" / "latest")
    config = load_config(tmp_path / "c.toml", command="train")
    items = validate(data=data).items.reset_index(drop=True)
    # one title edited, one tag list grown, one item new, and the catalogue's rows in another order
    edited = items.loc[0, C.ITEM_ID]
    items.loc[0, [C.TITLE, C.SUMMARY]] = items.loc[5, [C.TITLE, C.SUMMARY]].to_numpy()  # words the embedder knows
    items.at[1, C.TAGS] = [*items.loc[1, C.TAGS], "new-tag"]
    new_item = items.iloc[[2]].assign(**{C.ITEM_ID: "brand-new-item"})
    items = pd.concat([items.iloc[::-1], new_item], ignore_index=True)
    embedder, vectors = job.reuse_content(previous, items, config)
    same = _joined_key_same(previous, items)
    assert (~same).sum() == 3
    rows = pd.Index(previous.items[C.ITEM_ID]).get_indexer(items[C.ITEM_ID])
    stored = np.asarray(previous.content_vectors)
    np.testing.assert_array_equal(vectors[same], stored[rows[same]])
    np.testing.assert_array_equal(vectors[~same], embedder.transform(items[~same]))
    # the edited item reads differently now
    at = int(np.flatnonzero(items[C.ITEM_ID].to_numpy() == edited)[0])
    assert not np.array_equal(vectors[at], stored[rows[at]])


def test_reuse_content_of_a_catalogue_that_lost_its_last_items_has_its_own_rows(tmp_path, world):
    data = _night_folder(tmp_path, world)
    previous = TrainedModel.load(tmp_path / "models" / "latest")
    config = load_config(tmp_path / "c.toml", command="train")
    items = validate(data=data).items.reset_index(drop=True)
    shorter = items.iloc[:-2].reset_index(drop=True)  # yesterday's rows, the last two gone
    rows = pd.Index(previous.items[C.ITEM_ID]).get_indexer(shorter[C.ITEM_ID])
    assert (rows == np.arange(len(shorter))).all()  # the case: today's rows are a prefix of yesterday's
    _, vectors = job.reuse_content(previous, shorter, config)
    assert len(vectors) == len(shorter)
    np.testing.assert_array_equal(vectors, np.asarray(previous.content_vectors)[rows])
