"""A chunk written from Arrow reasons: the same files as from lists, read back equal by pandas and pyarrow."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.push import history as H
from recsys.push import writer as W
from recsys.ranking.reasons import REASONS_TYPE

D = dt.date(2026, 7, 1)
TZ = "Asia/Shanghai"
CHANNELS = ("wechat", "app_push", "e_reader")


def _rows(n: int, seed: int = 0) -> pd.DataFrame:
    """A chunk's rows as the push builds them: users in order, channels mixed, ids as objects."""
    rng = np.random.default_rng(seed)
    texts = ["兴趣:生态环保 0.41", "青龙县农民近期热门", "新发布·国家级来源", "补充推荐", "相似用户喜欢 0.63"]
    start = pd.Timestamp("2026-07-01 08:00", tz=TZ)
    reasons = [[texts[i] for i in rng.choice(len(texts), int(rng.integers(1, 4)), replace=False)] for _ in range(n)]
    reasons[1] = []  # a row without reasons survives as an empty list
    return pd.DataFrame(
        {
            C.USER_ID: pd.Series([f"u{i // 3:04d}" for i in range(n)], dtype=object),
            C.CHANNEL: pd.Series([CHANNELS[i] for i in rng.integers(0, len(CHANNELS), n)], dtype=str),
            C.RANK: np.arange(n, dtype=np.int64) % 3 + 1,
            C.ITEM_ID: pd.Series([f"i{int(i)}" for i in rng.integers(0, 50, n)], dtype=object),
            C.SCORE: rng.random(n),
            C.REASONS: pd.Series(reasons, dtype=object),
            W.CAMPAIGN: "",
            W.SEND_AFTER: start,
            W.SEND_BEFORE: start + pd.Timedelta(hours=13),
            W.MODEL_VERSION: "v1",
            W.RUN_ID: "r1",
        }
    )


def _arrow_reasons(rows: pd.DataFrame) -> pd.DataFrame:
    column = pa.array(rows[C.REASONS].tolist(), REASONS_TYPE)
    return rows.assign(**{C.REASONS: pd.arrays.ArrowExtensionArray(column)})


def _write(root, rows, buckets):
    ws = W.Workspace(root)
    ws.write_chunk(0, rows, W.output_schema(TZ), range(4), buckets, {"chunk": 0})
    return ws


def _files(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".json"
    }


def test_arrow_reasons_write_the_same_files_as_lists(tmp_path):
    rows = _rows(60)
    buckets = np.random.default_rng(1).integers(0, 4, len(rows))
    _write(tmp_path / "lists", rows, buckets)
    _write(tmp_path / "arrow", _arrow_reasons(rows), buckets)
    lists, arrow = _files(tmp_path / "lists"), _files(tmp_path / "arrow")
    assert len(lists) == len(CHANNELS) + 4
    assert lists == arrow


def test_written_rows_read_back_equal_to_the_rows(tmp_path):
    rows = _rows(45, seed=3)
    buckets = np.arange(len(rows)) % 4
    ws = _write(tmp_path, _arrow_reasons(rows), buckets)
    schema = W.file_schema(TZ)
    for channel in CHANNELS:
        mine = rows[rows[C.CHANNEL] == channel].reset_index(drop=True)
        path = ws.out_dir / f"channel={channel}" / (W.part_file(0) + W.STAGED_SUFFIX)
        table = pq.read_table(path)
        assert table.schema.equals(schema)
        assert table.column(C.REASONS).to_pylist() == mine[C.REASONS].tolist()
        assert table.column(C.USER_ID).to_pylist() == mine[C.USER_ID].tolist()
        assert table.column(C.RANK).to_pylist() == mine[C.RANK].tolist()
        # pandas reads the reasons as it always did: an object column (one array of str per row)
        meta = json.loads(table.schema.metadata[b"pandas"])
        assert {c["name"]: c["numpy_type"] for c in meta["columns"]}[C.REASONS] == "object"
        frame = pd.read_parquet(path)
        assert frame[C.REASONS].dtype == object
        assert [list(r) for r in frame[C.REASONS]] == mine[C.REASONS].tolist()
        assert frame[C.ITEM_ID].tolist() == mine[C.ITEM_ID].tolist()
        np.testing.assert_array_equal(frame[C.SCORE].to_numpy(), mine[C.SCORE].to_numpy(np.float32))
        assert (frame[W.SEND_AFTER] == mine[W.SEND_AFTER]).all()


def test_history_files_hold_the_history_modules_table(tmp_path):
    rows = _rows(50, seed=5)
    buckets = np.random.default_rng(2).integers(0, 4, len(rows))
    ws = _write(tmp_path, _arrow_reasons(rows), buckets)
    for bucket in range(4):
        got = pq.read_table(ws.history_dir / H.bucket_file(bucket))
        want = H.history_table(rows[buckets == bucket])
        assert got.equals(want)
        assert got.schema.metadata == want.schema.metadata
