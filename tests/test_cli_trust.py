"""Trust: train's guards, --out safety, bundle hygiene, no tracebacks (issue 10).

Each case runs the real command line (``recsys.cli.main``) and asserts exit
code 2, a one-line ``error:`` naming the culprit, no traceback, and that what
was on disk before is byte for byte unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from push_city import SMALL_TOML

from recsys import bundle
from recsys.cli import main
from recsys.exceptions import ArtifactError, ConfigError, DataError
from recsys.io import OUTPUT_MARKER, clean_stale_temps, prepare_output_dir, publish_dir
from recsys.synthetic import generate_city, write_city

ROOT = Path(__file__).resolve().parents[1]
SMALL = SMALL_TOML


def tree(folder: Path) -> dict[str, str]:
    """Every file's sha256 and every link's target under ``folder`` (what must not change)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(capsys, argv: list[str], *names: str, code: int = 2) -> str:
    """Run ``recsys argv``; assert exit ``code`` and one ``error:`` line naming each of ``names``."""
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    lines = [line for line in err.splitlines() if not line.startswith("[") and not line.startswith("      ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny synthetic city, a small config and a trained models folder."""
    base = tmp_path_factory.mktemp("trust")
    write_city(generate_city(n_users=300, n_items=120, days=20, seed=1), base / "city")
    (base / "small.toml").write_text(SMALL)
    assert main(["train", "--data", str(base / "city"), "--out", str(base / "models"),
                 "--config", str(base / "small.toml")]) == 0
    return base


@pytest.fixture()
def models(world, tmp_path):
    """A private copy of the trained models folder (tests may damage it)."""
    import shutil

    dest = tmp_path / "models"
    shutil.copytree(world / "models", dest, symlinks=True)
    return dest


def _train(world, data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), "--config", str(world / "small.toml"), *extra]


# ---- 1. train refuses nothing to train on, and never moves latest to a useless bundle -------------


def test_train_on_all_quarantined_events_is_refused_and_latest_stays(world, models, tmp_path, capsys):
    data = tmp_path / "naive"
    data.mkdir()
    for name in ("users", "items"):
        (data / f"{name}.parquet").write_bytes((world / "city" / f"{name}.parquet").read_bytes())
    events = pd.read_parquet(world / "city" / "events.parquet")
    events["timestamp"] = events["timestamp"].dt.tz_localize(None).dt.strftime("%Y-%m-%dT%H:%M:%S")
    events.to_csv(data / "events.csv", index=False)  # every timestamp without an offset
    before = tree(models)
    line = refused(capsys, _train(world, data, models), "events")
    assert "naive" in line or "time zone" in line or "min_events" in line
    assert tree(models) == before


def test_train_as_of_before_the_first_event_names_both_times(world, models, capsys):
    before = tree(models)
    line = refused(capsys, _train(world, world / "city", models, "--as-of", "2020-01-01"), "--as-of", "first event")
    assert "2019-12-31T16:00:00+00:00" in line and "2026-06-" in line
    refused(capsys, _train(world, world / "city", models, "--as-of", "9999-12-31"), "--as-of", "supported range")
    refused(capsys, _train(world, world / "city", models, "--as-of", "2099-01-01"), "after the data's last event")
    assert tree(models) == before


def test_train_min_events_is_configurable(world, models, tmp_path, capsys):
    config = tmp_path / "strict.toml"
    config.write_text(SMALL + "[training]\nmin_events = 1000000\n")
    before = tree(models)
    refused(capsys, ["train", "--data", str(world / "city"), "--out", str(models), "--config", str(config)],
            "[training] min_events = 1,000,000", "clean events")
    assert tree(models) == before


def test_a_bundle_that_could_serve_nothing_is_kept_out_of_latest(world, models, tmp_path, capsys):
    data = tmp_path / "retracted"
    data.mkdir()
    for name in ("users", "events"):
        (data / f"{name}.parquet").write_bytes((world / "city" / f"{name}.parquet").read_bytes())
    items = pd.read_parquet(world / "city" / "items.parquet")
    items["review_status"] = "retracted"  # the whole catalogue withdrawn: nothing eligible to serve
    items.to_parquet(data / "items.parquet", index=False)
    latest = bundle.latest_version(models)
    versions = bundle.list_versions(models)
    line = refused(capsys, _train(world, data, models), "not made latest", "no item is approved", latest)
    assert bundle.latest_version(models) == latest
    new = sorted(set(bundle.list_versions(models)) - set(versions))
    assert len(new) == 1 and new[0] in line  # kept for inspection, named in the message


def test_sanity_failure_keeps_latest_in_write_bundle(tmp_path):
    def fill(writer):
        writer.array("x", np.zeros(2, np.float32))

    bundle.write_bundle(tmp_path, fill, manifest={}, version="20260101T000000Z")

    def useless(path):
        raise DataError("no warm user")

    with pytest.raises(DataError, match=r"20260102T000000Z: bundle written but not made latest: no warm user; "
                                        r"latest still points to 20260101T000000Z"):
        bundle.write_bundle(tmp_path, fill, manifest={}, version="20260102T000000Z", sanity=useless)
    assert bundle.latest_version(tmp_path) == "20260101T000000Z"


# ---- 2. --out: new, empty or our own folder; never delete what we did not write ------------------


def test_generate_out_refuses_a_foreign_folder_and_force_keeps_its_files(tmp_path, capsys):
    out = tmp_path / "D"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["generate", "--users", "40", "--items", "20", "--days", "3", "--out", str(out)]
    refused(capsys, argv, str(out), "notes.txt", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main([*argv, "--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "events.parquet").is_file()
    assert main(argv) == 0  # now recognised as generate's own folder (its marker)
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / OUTPUT_MARKER).read_text())["kind"] == "generate"
    capsys.readouterr()


@pytest.mark.parametrize("target", [".", "~", "/"])
def test_out_never_targets_cwd_home_or_root(tmp_path, monkeypatch, capsys, target):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    before = tree(tmp_path)
    path = os.path.expanduser(target)
    refused(capsys, ["generate", "--users", "40", "--items", "20", "--out", path, "--force"], "refusing to write into")
    assert tree(tmp_path) == before


def test_out_pointing_at_a_file(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    refused(capsys, ["generate", "--users", "40", "--items", "20", "--out", str(f)], "is a file, not a folder")
    refused(capsys, ["generate", "--users", "40", "--items", "20", "--out", str(f / "sub")], "is a file, not a folder")
    assert f.read_text() == "x"


def test_evaluate_tune_train_and_demo_refuse_foreign_folders_before_any_work(world, tmp_path, capsys):
    out = tmp_path / "D"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    city = str(world / "city")
    t0 = time.perf_counter()
    refused(capsys, ["evaluate", "--data", city, "--split-quantile", "0.8", "--out", str(out)], "notes.txt")
    refused(capsys, ["train", "--data", city, "--out", str(out)], "recsys models")
    refused(capsys, ["demo", "--data", city, "--out", str(out)], "notes.txt")
    refused(capsys, ["tune", "--data", city, "--out", str(out / "notes.txt")], "not written by recsys tune")
    refused(capsys, ["tune", "--data", city, "--out", str(out)], "is a folder")
    assert time.perf_counter() - t0 < 20  # refused up front, not after the work
    assert tree(out) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}


def test_publish_replaces_only_our_own_entries(tmp_path):
    dest = tmp_path / "out"

    def staged(*names):
        s = tmp_path / f"s{len(list(tmp_path.iterdir()))}"
        s.mkdir()
        for n in names:
            (s / n).write_text(n)
        return s

    publish_dir(staged("a.txt", "b.txt"), dest, "evaluate")
    (dest / "notes.txt").write_text("user's")
    publish_dir(staged("a.txt", "c.txt"), dest, "evaluate")  # b.txt was ours and is gone; notes.txt stays
    assert sorted(p.name for p in dest.iterdir()) == [OUTPUT_MARKER, "a.txt", "c.txt", "notes.txt"]
    assert (dest / "notes.txt").read_text() == "user's"
    assert prepare_output_dir(dest, "evaluate").path == dest  # ours, though it holds a foreign file
    # another command's folder: refused, --force included (its marker would become ours, locking it out)
    for force in (False, True):
        with pytest.raises(ConfigError, match=r"written by recsys evaluate \(\.recsys-output\.json\); recsys generate never"):
            prepare_output_dir(dest, "generate", force=force)
    assert json.loads((dest / OUTPUT_MARKER).read_text())["kind"] == "evaluate"


# ---- 3. bundle hygiene ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["../elsewhere/20260101T000000Z", "..", "/tmp", "latest", "a/b"])
def test_rollback_targets_must_be_version_names_of_the_folder(models, capsys, version):
    before = tree(models)
    refused(capsys, ["models", "rollback", version, "--dir", str(models)], "not a bundle version", "not a path")
    assert tree(models) == before


def test_rollback_never_replaces_a_file_named_latest(models, capsys):
    version = os.readlink(models / "latest")
    (models / "latest").unlink()
    (models / "latest").write_text("my notes")
    refused(capsys, ["models", "rollback", version, "--dir", str(models)], "a file, not the link")
    assert (models / "latest").read_text() == "my notes"


def test_models_list_shows_a_corrupt_bundle_and_the_good_ones(world, models, capsys):
    good = bundle.latest_version(models)
    bad = "20200101T000000Z"
    (models / bad).mkdir()
    (models / bad / "manifest.json").write_text("{not json")
    assert main(["models", "list", "--dir", str(models)]) == 0
    out = capsys.readouterr().out
    assert good in out and f"{bad}" in out and "corrupt:" in out and "manifest.json: unreadable" in out
    # a copy of the good bundle with one file cut short: corrupt too (what a rollback to it would find)
    cut = "20200102T000000Z"
    shutil.copytree(models / good, models / cut)
    victim = next(p for p in sorted((models / cut).rglob("*.npy")))
    victim.write_bytes(victim.read_bytes()[:100])
    assert main(["models", "list", "--dir", str(models)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith(cut))
    assert "corrupt:" in line and "checksum mismatch" in line and "2 corrupt bundle(s)" in out
    good_line = next(x for x in out.splitlines() if x.startswith(good))
    assert "corrupt" not in good_line
    shutil.rmtree(models / cut)


def test_stale_temp_folders_of_a_killed_write_are_cleaned_and_nothing_else(world, models, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = models / f".20260101T000000Z.tmp-{dead_pid}-0123abcd"
    live = models / f".20260101T000001Z.tmp-{os.getpid()}-0123abcd"
    other = models / f".notes.txt.tmp-{dead_pid}-0123abcd"
    for p in (stale, live, other):
        p.mkdir()
        (p / "f").write_text("x")
    assert main(_train(world, world / "city", models)) == 0
    capsys.readouterr()
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert clean_stale_temps(models, lambda n: n.startswith("2026")) == []


def test_latest_loop_dangling_and_missing_files_are_one_line_errors(models, tmp_path, capsys):
    version = bundle.latest_version(models)
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "latest").symlink_to("latest")
    refused(capsys, ["recommend", "u001", "--model", str(loop / "latest")], "loops")
    refused(capsys, ["profile", "u001", "--model", str(loop)], "loops")
    (models / "latest").unlink()
    (models / "latest").symlink_to("20000101T000000Z")
    refused(capsys, ["recommend", "u001", "--model", str(models / "latest")], "does not exist", "models rollback")
    (models / "latest").unlink()
    (models / "latest").symlink_to(version)
    (models / version / "taxonomy.toml").unlink()
    refused(capsys, ["recommend", "u001", "--model", str(models / "latest")], "taxonomy.toml")


def test_write_bundle_refuses_keep_below_one(tmp_path):
    with pytest.raises(ConfigError, match=r"\[bundle\] keep = 0 is out of range; valid: 1\.\.1000"):
        bundle.write_bundle(tmp_path, lambda w: None, manifest={}, keep=0)


# ---- 5. tracebacks: bad options, a swapped array, the last line of defence ----------------------


@pytest.mark.parametrize(
    "extra, names",
    [
        (["--k", "0"], ["--k 0", "1..1000"]),
        (["--k", "-1"], ["--k -1"]),
        (["--k", "100000"], ["--k 100000"]),
        (["--now", "9999-12-31T00:00:00+00:00"], ["--now", "supported range"]),
        (["--now", "1970-01-01T00:00:00+00:00"], ["--now", "supported range"]),
    ],
)
def test_recommend_bad_options(models, capsys, extra, names):
    user = pd.read_parquet(models / "latest" / "users.parquet")["user_id"].iloc[0]
    refused(capsys, ["recommend", user, "--model", str(models / "latest"), *extra], *names)


def test_recommend_unknown_user_says_what_to_pass(models, capsys):
    refused(capsys, ["recommend", "nobody", "--model", str(models / "latest")], "'nobody'", "--group", "--region")


def test_a_swapped_array_is_named(models, capsys):
    root = models / bundle.latest_version(models)
    np.save(root / "user_factors.npy", np.zeros((5, 64), np.float32))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["user_factors.npy"] = hashlib.sha256((root / "user_factors.npy").read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest))  # swapped and re-signed: checksums pass
    refused(capsys, ["recommend", "u001", "--model", str(root)], "user_factors.npy", "shape (5, 64)")


def test_recommend_after_demo_points_at_the_demo_bundle(models, tmp_path, monkeypatch, capsys):
    repo = tmp_path / "clone"  # a fresh clone after `make demo`: no models/, a bundle under out/demo
    (repo / "out" / "demo").mkdir(parents=True)
    (repo / "out" / "demo" / "models").symlink_to(models, target_is_directory=True)
    monkeypatch.chdir(repo)
    refused(capsys, ["recommend", "u0042"], "models/latest", "make demo", "--model out/demo/models/latest")


def test_central_handler_is_the_last_line_of_defence(monkeypatch, capsys):
    import recsys.cli.models as models_cmd

    def boom(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(models_cmd, "run", boom)
    refused(capsys, ["models", "list"], "internal error: RuntimeError: boom second line (please report)", code=1)

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/x.parquet")

    monkeypatch.setattr(models_cmd, "run", full)
    refused(capsys, ["models", "list"], "/data/out/x.parquet", "no space left")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(models_cmd, "run", interrupted)
    assert main(["models", "list"]) == 130
    assert capsys.readouterr().err == ""


def test_bad_config_files_through_the_command_line(world, tmp_path, capsys):
    city, out = str(world / "city"), str(tmp_path / "m")
    gbk = tmp_path / "gbk.toml"
    gbk.write_bytes("[content]\nstopwords = \"停用词\"\n".encode("gbk"))
    refused(capsys, ["train", "--data", city, "--out", out, "--config", str(gbk)], "gbk.toml", "UTF-8")
    refused(capsys, ["train", "--data", city, "--out", out, "--config", str(tmp_path)], "is a folder")
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 50_000 + "]" * 50_000 + "\n")
    refused(capsys, ["train", "--data", city, "--out", out, "--config", str(deep)], "deep.toml")
    huge = tmp_path / "huge.toml"
    huge.write_text("[collaborative]\niterations = 1000000000000000\n")
    refused(capsys, ["train", "--data", city, "--out", out, "--config", str(huge)],
            "[collaborative] iterations = 1000000000000000 is out of range; valid: 1..1000")
    push_only = tmp_path / "p.toml"
    push_only.write_text("[push]\ndedup_days = 30\n")
    refused(capsys, ["evaluate", "--data", city, "--split-quantile", "0.8", "--out", out, "--config", str(push_only)],
            "evaluate does not use [push]")
    assert not Path(out).exists()


def test_no_traceback_reaches_a_real_process(world, tmp_path):
    """The same refusals from a real process: stderr is one line, exit 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "train", "--data", str(world / "city"), "--out", str(tmp_path / "m"),
         "--as-of", "2020-01-01", "--config", str(world / "small.toml")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --as-of")
    assert not (tmp_path / "m" / "latest").exists()


def test_artifact_error_for_a_directory_in_place_of_a_manifest(tmp_path):
    (tmp_path / "20260101T000000Z" / "manifest.json").mkdir(parents=True)
    with pytest.raises(ArtifactError, match=r"manifest\.json: unreadable"):
        bundle.read_manifest(tmp_path / "20260101T000000Z")


def test_a_killed_generate_leaves_nothing_behind_the_next_run(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".D.tmp-{int(dead.stdout)}-0123abcd"
    stale.mkdir()
    (stale / "users.parquet").write_text("half")
    foreign = tmp_path / f".E.tmp-{int(dead.stdout)}-0123abcd"
    foreign.mkdir()
    assert main(["generate", "--users", "40", "--items", "20", "--days", "3", "--out", str(tmp_path / "D")]) == 0
    capsys.readouterr()
    assert not stale.exists() and foreign.exists()
