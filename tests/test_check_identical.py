"""benchmarks/check_identical.py: the before/after comparison of a refactoring's outputs.

The script's ``run`` trains, pushes and evaluates (minutes); its ``compare`` is what decides
"identical", and is checked here on two small output folders laid out the way ``run`` writes
them: bundle arrays and tables, committed push partitions, ``metrics.json``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "check_identical.py"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("check_identical", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outputs(root: Path, *, run_id: str, seconds: float, factor: float = 0.5, item: str = "i2",
             ndcg: float = 0.25) -> Path:
    """One run's folder: models/latest -> a bundle, pushes/date=/kind=/channel=/part-*.parquet, evaluation/."""
    bundle = root / "models" / "20260701T000000Z"
    (bundle / "item_index").mkdir(parents=True)
    np.save(bundle / "user_factors.npy", np.array([[factor, 1.0], [np.nan, 2.0]], np.float32))
    np.save(bundle / "item_index" / "vectors.npy", np.eye(2, dtype=np.float32))
    pd.DataFrame({"item_id": ["i1", "i2"], "title": ["a", "b"]}).to_parquet(bundle / "items.parquet")
    (root / "models" / "latest").symlink_to(bundle.name)
    part = root / "pushes" / "date=2026-07-02" / "kind=nightly" / "channel=wechat"
    part.mkdir(parents=True)
    pd.DataFrame({
        "user_id": ["u1", "u1"], "rank": [1, 2], "item_id": ["i1", item],
        "reasons": [["topic:ecology"], ["popular"]], "run_id": [run_id, run_id],
    }).to_parquet(part / "part-00000.parquet")
    (root / "evaluation").mkdir()
    metrics = {"policies": {"als": {"ndcg@10": ndcg}}, "timings_s": {"train": seconds}, "train_seconds": seconds,
               "data": str(root / "data")}
    (root / "evaluation" / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return root


def test_two_runs_that_differ_only_in_run_ids_timings_and_paths_are_identical(check, tmp_path):
    ref = _outputs(tmp_path / "ref", run_id="r1", seconds=10.0)
    new = _outputs(tmp_path / "new", run_id="r2", seconds=12.5)
    assert check.compare(ref, new, {}) == []


def test_a_changed_array_push_row_and_metric_are_each_named(check, tmp_path):
    ref = _outputs(tmp_path / "ref", run_id="r1", seconds=10.0)
    new = _outputs(tmp_path / "new", run_id="r1", seconds=10.0, factor=0.75, item="i3", ndcg=0.26)
    assert check.compare(ref, new, {}) == [
        "bundle: user_factors.npy differs",
        "push: column item_id differs in 1 rows",
        "metrics: /policies/als/ndcg@10: 0.25 != 0.26",
    ]


def test_a_moved_bundle_file_is_compared_under_its_new_name(check, tmp_path):
    ref = _outputs(tmp_path / "ref", run_id="r1", seconds=1.0)
    new = _outputs(tmp_path / "new", run_id="r1", seconds=1.0)
    bundle = (new / "models" / "latest").resolve()
    (bundle / "item_index" / "vectors.npy").rename(bundle / "item_index" / "rows.npy")
    assert check.compare(ref, new, {}) == [
        "bundle: item_index/vectors.npy missing from the new bundle",
        "bundle: item_index/rows.npy is new (not in the reference)",
    ]
    assert check.compare(ref, new, {"item_index/vectors.npy": "item_index/rows.npy"}) == []
