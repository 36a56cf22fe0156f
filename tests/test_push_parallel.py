"""The same chunk function in local worker processes and on a Dask cluster gives the same rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import push_city  # noqa: E402

from recsys.push import run_nightly as run  # noqa: E402
from recsys.exceptions import ConfigError  # noqa: E402
from recsys.push.executors import execute  # noqa: E402
from recsys.push.writer import read_manifest, read_pushes  # noqa: E402

D1 = push_city.DAY


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    bundle = push_city.trained_city(tmp_path_factory) / "models" / "latest"
    out = tmp_path_factory.mktemp("sequential")
    run(bundle, D1, out, workers=1, stream=None)
    return bundle, read_pushes(out, D1), read_manifest(out, D1)


def _same(rows: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(rows.drop(columns="run_id"), expected.drop(columns="run_id"))


def test_local_worker_processes(reference, tmp_path):
    bundle, expected, manifest = reference
    report = run(bundle, D1, tmp_path, workers=2, stream=None)
    assert report["workers"] == 2 and report["chunks"]["computed"] == manifest["chunks"]["total"]
    _same(read_pushes(tmp_path, D1), expected)
    assert report["counts"] == manifest["counts"]


def test_dask_local_cluster_of_processes(reference, tmp_path):
    from dask.distributed import LocalCluster

    bundle, expected, manifest = reference
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        report = run(bundle, D1, tmp_path, scheduler=cluster.scheduler_address, stream=None)
    assert report["scheduler"].startswith("tcp://")
    _same(read_pushes(tmp_path, D1), expected)
    assert report["counts"] == manifest["counts"]


def test_execute_rejects_bad_workers():
    with pytest.raises(ConfigError, match="workers must be a positive integer, got 0"):
        execute(len, [], workers=0)
