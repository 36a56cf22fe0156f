"""The scripts in pipelines/ run as a scheduler runs them, and answer bad input like the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("module", ["pipelines.train", "pipelines.night"])
def test_a_missing_data_folder_is_one_line_and_exit_2(module, tmp_path):
    args = ["--data", str(tmp_path / "nope")]
    if module == "pipelines.night":
        args += ["--date", "2026-06-30", "--work", str(tmp_path / "work")]
    else:
        args += ["--out", str(tmp_path / "models")]
    done = _script(module, *args)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, done.stderr
    assert errors == [f"error: {tmp_path / 'nope'}: data folder not found"]
    assert "Traceback" not in done.stderr


def test_the_night_refuses_a_bad_date_before_any_work(tmp_path):
    done = _script("pipelines.night", "--data", str(tmp_path), "--date", "2026-13-40", "--work", str(tmp_path / "w"))
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error:") and "2026-13-40" in done.stderr
    assert not (tmp_path / "w").exists()


def test_the_night_takes_a_config_of_every_section(tmp_path):
    """Train reads the whole file; demand and broadcast read theirs from the same one (no refusal)."""
    config = tmp_path / "recsys.toml"
    config.write_text("[collaborative]\niterations = 5\n[broadcast]\nrepeat_days = 3\n", encoding="utf-8")
    done = _script("pipelines.night", "--data", str(tmp_path / "nope"), "--date", "2026-06-30",
                   "--work", str(tmp_path / "w"), "--config", str(config))
    assert done.returncode == 2
    assert [x for x in done.stderr.splitlines() if x.startswith("error:")] == [
        f"error: {tmp_path / 'nope'}: data folder not found"
    ]


def test_the_night_checks_the_later_steps_inputs_before_training(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "users.parquet").write_text("not read: the night stops first")
    cases = [
        (["--places", str(tmp_path / "nonexist.parquet")], "--places"),
        (["--holds", str(data)], "is not a monitor or holds state folder"),
    ]
    for extra, message in cases:
        done = _script("pipelines.night", "--data", str(data), "--date", "2026-06-30", "--work", str(tmp_path / "w"), *extra)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2 and len(errors) == 1 and message in errors[0], done.stderr
        assert not (tmp_path / "w").exists()  # no bundle trained, no folder made
