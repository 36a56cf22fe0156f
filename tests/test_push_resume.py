"""A run killed with SIGKILL after some chunks leaves the old output alone and resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import push_city  # noqa: E402

from recsys.push import run_nightly as run  # noqa: E402
from recsys.push.writer import Workspace, partition_dir, read_pushes  # noqa: E402

D1 = push_city.DAY

# a real process that SIGKILLs itself right after its second chunk checkpoint
KILLER = """
import os, signal, sys
from recsys.push import run_nightly as run
done = []
def after_chunk(stats):
    done.append(stats["chunk"])
    if len(done) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
run(sys.argv[1], sys.argv[2], sys.argv[3], workers=1, stream=None, on_chunk=after_chunk)
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return push_city.trained_city(tmp_path_factory) / "models" / "latest"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_killed_run_resumes_to_the_same_output(bundle, tmp_path):
    complete = run(bundle, D1, tmp_path, stream=None)
    before = _files(partition_dir(tmp_path, D1, "nightly"))
    expected = read_pushes(tmp_path, D1)
    assert complete["chunks"]["total"] >= 4

    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(bundle), D1.isoformat(), str(tmp_path)], capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]

    # the previous complete output is untouched, byte for byte
    assert _files(partition_dir(tmp_path, D1, "nightly")) == before
    workspace = Workspace.for_run(tmp_path, D1, "nightly")
    assert workspace.done_chunks() == {0, 1}
    killed_run_id = json.loads((workspace.root / "plan.json").read_text())["run_id"]

    computed = []
    report = run(bundle, D1, tmp_path, stream=None, on_chunk=lambda s: computed.append(s["chunk"]))
    assert report["chunks"] == {
        "total": complete["chunks"]["total"],
        "resumed": 2,
        "computed": complete["chunks"]["total"] - 2,
    }
    assert sorted(computed) == list(range(2, complete["chunks"]["total"]))
    assert report["run_id"] == killed_run_id  # a resumed run keeps its id
    assert not workspace.root.exists()  # committed and cleaned up

    resumed = read_pushes(tmp_path, D1)
    assert set(resumed.run_id) == {killed_run_id}
    pd.testing.assert_frame_equal(resumed.drop(columns="run_id"), expected.drop(columns="run_id"))
    assert report["rows"] == complete["rows"] and report["counts"] == complete["counts"]


def test_changed_inputs_do_not_resume(bundle, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(bundle), D1.isoformat(), str(tmp_path)], capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    assert not partition_dir(tmp_path, D1, "nightly").exists()  # nothing half-written is visible
    # another segment is another run: the checkpoints are discarded, not mixed in
    report = run(bundle, D1, tmp_path, stream=None, region="haigang")
    assert report["chunks"]["resumed"] == 0
    assert set(read_pushes(tmp_path, D1).user_id.str.len()) == {5}
