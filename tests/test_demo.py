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
    push = json.loads(manifests[0].read_text())
    assert push["rows"] > 0
    # demand tracking ran first and the push acted on its priorities (the planted under-served farmers of Lulong first)
    assert (out / "demand" / "report.html").is_file() and "== 3b. demand tracking" in text
    assert "farmer/lulong" in push["priorities"]["audiences"]
    # the push met the plan's two coverage rules and said what they cost
    assert set(push["coverage"]["rules"]) == {"farmers_agri", "elderly_health"}
    assert all(r["met"] for r in push["coverage"]["rules"].values()) and "coverage farmers_agri:" in text
    # tomorrow's programmes for every broadcast channel of the city, raising the same priority topics
    (day,) = list((out / "programmes").glob("date=*/_manifest.json"))
    programmes = json.loads(day.read_text())
    assert set(programmes["channels"]) == {"tv", "radio", "cinema", "kiosk"} and "== 4b. broadcast" in text
    assert all(c["rows"] > 0 and c["run"]["priorities"] for c in programmes["channels"].values())


def test_demo_without_data_is_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "demo", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert "recsys generate --sample" in proc.stderr
