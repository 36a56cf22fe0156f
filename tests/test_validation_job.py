"""The validate job as a library call: recsys.validation.run_validation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from recsys.exceptions import DataError
from recsys.validation import run_validation

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "synthetic" / "sample"


@pytest.fixture()
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for kind in ("users", "items", "events"):
        shutil.copy(SAMPLE / f"{kind}.parquet", folder / f"{kind}.parquet")
    return folder


def test_the_job_writes_clean_tables_and_returns_its_report(data, tmp_path):
    report = run_validation(data, tmp_path / "clean")
    for kind in ("users", "items", "events"):
        assert len(pd.read_parquet(tmp_path / "clean" / f"{kind}.parquet")) == report.result.rows_kept()[kind]
    assert report.quarantine_path == tmp_path / "clean" / "quarantine.parquet"
    assert report.quarantine_path.exists()
    assert "data end:" in report.text() and f"{report.result.rows_read['events']:,}" in report.text()


def test_a_refused_run_writes_the_quarantine_only(data, tmp_path, capsys):
    events = pd.read_parquet(data / "events.parquet")
    # a third of the events name users nobody knows: more than the 5% a table may lose
    events.loc[events.index[::3], "user_id"] = "nobody"
    events.to_parquet(data / "events.parquet", index=False)
    with pytest.raises(DataError, match="rows and reasons"):
        run_validation(data, tmp_path / "clean")
    assert sorted(p.name for p in (tmp_path / "clean").iterdir() if not p.name.startswith(".")) == ["quarantine.parquet"]
    assert "quarantine:" in capsys.readouterr().out
