"""The README's demo, end to end on the committed sample, as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_every_job_on_the_sample(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "demo", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    # each stage said where its output went, and the headline table closes the run
    assert "== 5. offline evaluation" in text
    assert "engine / oracle" in text
    assert (out / "models" / "latest" / "manifest.json").is_file()
    assert (out / "evaluation" / "report.html").is_file()
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert {"engine", "segment_popular", "oracle"} <= set(metrics["policies"])
    manifests = list((out / "pushes").glob("date=*/kind=nightly/_manifest.json"))
    assert len(manifests) == 1
    assert json.loads(manifests[0].read_text())["rows"] > 0


def test_demo_without_data_is_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "demo", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert "recsys generate --sample" in proc.stderr
