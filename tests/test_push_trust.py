"""Push trust: outputs readable as they are, runs that never clobber each other, locks, clean errors.

Each test attacks one way a push or campaign could lose, hide or misreport
data (issue 10) on the tiny test city.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import push_city  # noqa: E402

from pipelines.push import campaign, run  # noqa: E402
from recsys.cli import main as cli_main  # noqa: E402
from recsys.push import writer as W  # noqa: E402

D1 = push_city.DAY
D2 = D1 + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = push_city.trained_city(tmp_path_factory)
    users, items, _ = push_city.tables()
    return {
        "root": root,
        "bundle": root / "models" / "latest",
        "users": users,
        "items": items.set_index("item_id"),
    }


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _key(frame: pd.DataFrame) -> list[tuple]:
    """Rows as comparable tuples (date and kind and channel as plain text)."""
    cols = ["date", "kind", "channel", "user_id", "rank", "item_id"]
    return sorted(tuple(str(v) for v in row) for row in frame[cols].itertuples(index=False))


# ---- readable output ---------------------------------------------------------


@pytest.fixture(scope="module")
def two_nights(city, tmp_path_factory):
    """Two nights and a campaign in one output folder, history inside it (the default)."""
    out = tmp_path_factory.mktemp("readable")
    run(city["bundle"], D1, out, stream=None)
    run(city["bundle"], D2, out, stream=None)
    campaign(city["bundle"], D1, out, name="heat", topic="ecology", budget=20, stream=None)
    return out, W.read_pushes(out)


def test_pandas_reads_the_whole_output_folder(two_nights):
    out, expected = two_nights
    frame = pd.read_parquet(out)
    assert len(frame) == len(expected) > 0
    assert _key(frame) == _key(expected)
    assert set(frame["kind"].astype(str)) == {"nightly", "heat"}


def test_pyarrow_dataset_reads_the_whole_output_folder(two_nights):
    out, expected = two_nights
    table = pads.dataset(out, partitioning="hive").to_table()
    assert table.num_rows == len(expected)
    assert _key(table.to_pandas()) == _key(expected)


def test_duckdb_reads_the_whole_output_folder(two_nights):
    out, expected = two_nights
    query = f"SELECT * FROM read_parquet('{out}/**/*.parquet', hive_partitioning=true)"
    frame = duckdb.sql(query).df()
    assert len(frame) == len(expected)
    frame["date"] = frame["date"].astype(str).str[:10]
    assert _key(frame) == _key(expected)


def test_a_killed_run_leaves_nothing_a_reader_picks_up(city, two_nights, tmp_path):
    """Staged chunk parts of an unfinished run are invisible to a ``**/*.parquet`` glob."""
    out, expected = two_nights
    work = W.Workspace.for_run(out, dt.date(2026, 7, 5), W.NIGHTLY)
    try:
        work.start({"x": 1}, "r-killed")
        rows = expected[expected["kind"] == "nightly"].head(3).drop(columns=["date", "kind"])
        work.write_chunk(0, rows, W.output_schema("Asia/Shanghai"), range(16), [0] * len(rows), {"chunk": 0})
        assert any(work.out_dir.rglob(f"*{W.STAGED_SUFFIX}"))
        count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning=true)")
        assert count.fetchall()[0][0] == len(expected)
        assert len(pd.read_parquet(out)) == len(expected)
    finally:
        import shutil

        shutil.rmtree(work.root)


def test_no_parquet_file_under_out_but_push_rows(two_nights):
    out, _ = two_nights
    for path in out.rglob("*.parquet"):
        rel = path.relative_to(out).parts
        assert rel[0].startswith("date=") and rel[1].startswith("kind=") and rel[2].startswith("channel=")
