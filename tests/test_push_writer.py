"""Partitioned output, chunk checkpoints, resume and atomic commit."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from recsys.exceptions import ArtifactError, RecsysError
from recsys.push import history as H
from recsys.push import writer as W

D = dt.date(2026, 7, 1)
TZ = "Asia/Shanghai"


def _rows(users, channel="app_push", run_id="r1"):
    n = len(users)
    start = pd.Timestamp("2026-07-01 08:00", tz=TZ)
    return pd.DataFrame(
        {
            "user_id": users,
            "channel": [channel] * n,
            "rank": np.ones(n, dtype=np.int16),
            "item_id": [f"i-{u}" for u in users],
            "score": np.linspace(1, 0, n).astype(np.float32),
            "reasons": [["兴趣:生态环保 0.4"]] * n,
            "campaign": [""] * n,
            "send_after": [start] * n,
            "send_before": [start + pd.Timedelta(hours=13)] * n,
            "model_version": ["v1"] * n,
            "run_id": [run_id] * n,
        }
    )


def _run(out, kind, chunks, fingerprint=None, run_id="r1"):
    store = H.HistoryStore.open(out / W.HISTORY_DIR, 4)
    ws = W.Workspace.for_run(out, D, kind)
    rid, resumed = ws.start(fingerprint or {"x": 1}, run_id)
    for i, users in enumerate(chunks):
        # chunk i owns bucket i (chunks own disjoint buckets)
        bucket = np.full(len(users), i)
        ws.write_chunk(i, _rows(users, run_id=rid), W.output_schema(TZ), range(i, i + 1), bucket, {"chunk": i})
    return ws, store, rid, resumed


def test_workspace_resumes_only_with_the_same_inputs(tmp_path):
    ws, _, rid, resumed = _run(tmp_path, "nightly", [["u1"], ["u2"]])
    assert (rid, resumed) == ("r1", False) and ws.done_chunks() == {0, 1}
    rid2, resumed2 = ws.start({"x": 1}, "r2")
    assert (rid2, resumed2) == ("r1", True) and ws.done_chunks() == {0, 1}
    rid3, resumed3 = ws.start({"x": 2}, "r3")
    assert (rid3, resumed3) == ("r3", False) and ws.done_chunks() == set()


def test_commit_publishes_rows_manifest_and_history(tmp_path):
    ws, store, rid, _ = _run(tmp_path, "nightly", [["u1", "u2"], ["u3"]])
    assert not W.partition_dir(tmp_path, D, "nightly").exists()  # nothing visible before commit
    holdout = pd.DataFrame({"user_id": ["h1"], "group": ["farmer"], "region": ["lulong"]})
    ws.commit(store, D, "nightly", tmp_path, {"run_id": rid, "rows": 3}, holdout)
    rows = W.read_pushes(tmp_path, D)
    assert rows["user_id"].tolist() == ["u1", "u2", "u3"]
    assert rows["send_after"].iloc[0] == pd.Timestamp("2026-07-01 08:00", tz=TZ)
    assert rows["reasons"].iloc[0].tolist() == ["兴趣:生态环保 0.4"]
    assert W.read_manifest(tmp_path, D) == {"run_id": rid, "rows": 3}
    assert pd.read_parquet(W.partition_dir(tmp_path, D, "nightly") / W.HOLDOUT_FILE)["user_id"].tolist() == ["h1"]
    assert sorted(store.read(range(4), first=D, last=D)["user_id"]) == ["u1", "u2", "u3"]
    assert not ws.root.exists()


def test_rerun_replaces_its_own_kind_only(tmp_path):
    ws, store, _, _ = _run(tmp_path, "nightly", [["u1", "u2"]])
    ws.commit(store, D, "nightly", tmp_path, {})
    ws, store, _, _ = _run(tmp_path, "heat", [["u9"]])
    ws.commit(store, D, "heat", tmp_path, {})
    ws, store, _, _ = _run(tmp_path, "nightly", [["u5"]], fingerprint={"x": 9})
    ws.commit(store, D, "nightly", tmp_path, {})
    rows = W.read_pushes(tmp_path, D)
    assert list(zip(rows.kind, rows.user_id)) == [("heat", "u9"), ("nightly", "u5")]
    assert sorted(store.read(range(4), first=D, last=D)["user_id"]) == ["u5", "u9"]
    assert W.read_pushes(tmp_path, D, kind="heat")["user_id"].tolist() == ["u9"]
    assert len(W.read_pushes(tmp_path, D, channel="wechat")) == 0


def test_interrupted_commit_finishes_on_rerun(tmp_path):
    ws, store, _, _ = _run(tmp_path, "nightly", [["u1"]])
    store.commit(D, "nightly", ws.history_dir)  # the process died right after this rename
    ws2, store2, _, resumed = _run(tmp_path, "nightly", [])
    assert resumed and ws2.done_chunks() == {0}
    ws2.commit(store2, D, "nightly", tmp_path, {})
    assert W.read_pushes(tmp_path, D)["user_id"].tolist() == ["u1"]
    assert store.read(range(4), first=D, last=D)["user_id"].tolist() == ["u1"]


def test_empty_rerun_clears_old_history(tmp_path):
    ws, store, _, _ = _run(tmp_path, "nightly", [["u1"]])
    ws.commit(store, D, "nightly", tmp_path, {})
    ws, store, _, _ = _run(tmp_path, "nightly", [[]], fingerprint={"x": 5})
    ws.commit(store, D, "nightly", tmp_path, {})
    assert len(store.read(range(4), first=D, last=D)) == 0
    assert len(W.read_pushes(tmp_path, D)) == 0


def test_chunk_row_outside_its_buckets(tmp_path):
    ws = W.Workspace.for_run(tmp_path, D, "nightly")
    ws.start({}, "r")
    with pytest.raises(ArtifactError, match="row of bucket 5, outside its buckets range\\(0, 2\\)"):
        ws.write_chunk(0, _rows(["u1"]), W.output_schema(TZ), range(0, 2), np.array([5]), {})


def test_lock_refuses_a_second_run(tmp_path):
    with W.run_lock(tmp_path):
        with pytest.raises(RecsysError, match="push output .* is in use by run push"):
            with W.run_lock(tmp_path):
                pass
    with W.run_lock(tmp_path):  # released after the first
        pass


def test_read_manifest_missing(tmp_path):
    with pytest.raises(ArtifactError, match="no such push run"):
        W.read_manifest(tmp_path, D)


def test_a_chunk_writes_each_bucket_its_rows_in_chunk_order(tmp_path):
    """Rows of several buckets interleaved in a chunk: each bucket file holds exactly its rows, in order."""
    import pyarrow.parquet as pq

    users = [f"u{i}" for i in range(40)]
    rows = pd.concat([_rows(users), _rows(users, channel="wechat")], ignore_index=True)
    bucket = np.tile(np.arange(40) % 3 + 1, 2)  # buckets 1..3 interleaved, bucket 0 empty
    ws = W.Workspace.for_run(tmp_path, D, "nightly")
    ws.start({"x": 1}, "r1")
    ws.write_chunk(0, rows, W.output_schema(TZ), range(4), bucket, {"chunk": 0})
    files = sorted(p.name for p in ws.history_dir.iterdir())
    assert files == [H.bucket_file(b) for b in (1, 2, 3)]
    for b in (1, 2, 3):
        got = pq.read_table(ws.history_dir / H.bucket_file(b)).to_pandas()
        want = rows.loc[bucket == b, ["user_id", "item_id", "channel"]].astype(str).reset_index(drop=True)
        pd.testing.assert_frame_equal(got.astype(str), want)
