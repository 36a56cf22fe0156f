"""A night's unchanged users file: not validated again, yesterday's table taken as the clean one.

And the checksums of a bundle / history state hashed on several threads: the same digests.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from push_city import SMALL_LINEAR, tables
from recsys import bundle as bundle_io
from recsys import columns as C
from recsys.exceptions import ArtifactError
from recsys.io import sha256_file, sha256_files
from recsys.schema import validate, validate_tables
from recsys.training import job, train
from recsys.training.incremental import HistoryError, HistoryStore, validation_fingerprint
from recsys.training.model import TrainedModel

CONFIG = SMALL_LINEAR
LOCAL = "Asia/Shanghai"


@pytest.fixture(scope="module")
def city():
    users, items, events = tables()
    # one users row the validator quarantines (an unknown region): its count must stay the night's
    users = users.copy()
    users.loc[users.index[-1], C.REGION] = "atlantis"
    days = pd.to_datetime(events[C.TIMESTAMP]).dt.tz_convert(LOCAL).dt.date
    return users, items, events, days, sorted(days.unique())


def _folder(base: Path, city, n_days: int) -> Path:
    users, items, events, days, all_days = city
    data = base / "data"
    (data / "events").mkdir(parents=True)
    users.to_parquet(data / "users.parquet", index=False)
    items.to_parquet(data / "items.parquet", index=False)
    for d in all_days[:n_days]:
        events[days == d].to_parquet(data / "events" / f"{d}.parquet", index=False)
    (base / "c.toml").write_text(CONFIG, encoding="utf-8")
    return data


def _deliver(data: Path, city, night: int) -> None:
    _, _, events, days, all_days = city
    d = all_days[night]
    events[days == d].to_parquet(data / "events" / f"{d}.parquet", index=False)


def _train(base: Path, data: Path, out: str = "models", **kw) -> dict:
    return train(data, base / out, config_path=base / "c.toml", stream=None, **kw)


def _same_bundles(a: Path, b: Path) -> None:
    """Every array and table of two bundles equal (the manifests' times and timings aside)."""
    arrays = sorted(str(p.relative_to(a)) for p in a.rglob("*.npy"))
    assert arrays == sorted(str(p.relative_to(b)) for p in b.rglob("*.npy"))
    for rel in arrays:
        np.testing.assert_array_equal(np.load(a / rel), np.load(b / rel), err_msg=rel)
    for table in ("users", "items", "segments"):
        pd.testing.assert_frame_equal(pd.read_parquet(a / f"{table}.parquet"), pd.read_parquet(b / f"{table}.parquet"))


def test_an_unchanged_users_file_is_taken_from_yesterdays_bundle_with_the_same_result(tmp_path, city, monkeypatch):
    data = _folder(tmp_path, city, 26)
    first = _train(tmp_path, data)
    record = HistoryStore.open(tmp_path / "models").doc["users"]
    assert record["sha256"] == sha256_file(data / "users.parquet") and record["quarantined"] == {C.R_UNKNOWN_CODE: 1}
    assert record["table_sha256"] == sha256_file(Path(first["bundle"]) / "users.parquet")
    _deliver(data, city, 26)
    # the same night twice from the same start: once as is, once with the store's users record removed
    shutil.copytree(tmp_path / "models", tmp_path / "forced", symlinks=True)
    store_file = tmp_path / "forced" / "history" / "store.json"
    doc = json.loads(store_file.read_text())
    del doc["users"]
    store_file.write_text(json.dumps(doc))
    read = []
    real = job.read_table
    monkeypatch.setattr(job, "read_table", lambda path, kind, **kw: (read.append(Path(path).name), real(path, kind, **kw))[1])
    kept = _train(tmp_path, data)
    assert read == ["items.parquet", f"{city[4][26]}.parquet"]  # the users file is not read
    read.clear()
    forced = _train(tmp_path, data, out="forced")
    assert read[0] == "users.parquet"
    assert kept["mode"] == forced["mode"] == "incremental"
    assert (kept["users_validated"], forced["users_validated"]) == (False, True)
    # the same bundle, array for array and table for table; the users table is yesterday's file
    _same_bundles(Path(kept["bundle"]), Path(forced["bundle"]))
    assert sha256_file(Path(kept["bundle"]) / "users.parquet") == record["table_sha256"]
    bundle_io.verify_bundle(kept["bundle"])
    # the quarantined users row still counts, and the stores agree file for file
    assert kept["quarantined_rows"] == forced["quarantined_rows"] >= 1
    a, b = (HistoryStore.open(tmp_path / out) for out in ("models", "forced"))
    assert a.doc["partitions"][-1]["quarantined"] == b.doc["partitions"][-1]["quarantined"]
    assert a.doc["partitions"][-1]["sha256"] == b.doc["partitions"][-1]["sha256"]
    assert a.doc["state"]["files"] == b.doc["state"]["files"]
    assert a.doc["users"] == b.doc["users"] == record  # the forced run recorded the same file again
    # the model's users table, read on first use from its bundle, is the validated one
    users = validate(data=data).users
    loaded = TrainedModel.load(kept["bundle"])
    assert loaded.users[C.USER_ID].tolist() == users[C.USER_ID].tolist()
    assert loaded.users[C.REGION].tolist() == users[C.REGION].tolist()


def test_a_changed_users_file_taxonomy_or_start_bundle_is_validated_again(tmp_path, city):
    users = city[0]
    data = _folder(tmp_path, city, 25)
    _train(tmp_path, data)
    # a user moved to another region: the file changed, so it is validated and the table follows it
    moved = users.copy()
    who = moved[C.USER_ID].iloc[0]
    new_region = next(r for r in moved[C.REGION].unique() if r not in (moved[C.REGION].iloc[0], "atlantis"))
    moved.loc[moved.index[0], C.REGION] = new_region
    moved.to_parquet(data / "users.parquet", index=False)
    _deliver(data, city, 25)
    night = _train(tmp_path, data)
    assert night["users_validated"] is True
    table = pd.read_parquet(Path(night["bundle"]) / "users.parquet")
    assert table.loc[table[C.USER_ID] == who, C.REGION].item() == new_region
    assert HistoryStore.open(tmp_path / "models").doc["users"]["sha256"] == sha256_file(data / "users.parquet")
    # the next night with the file as it is now: not validated
    _deliver(data, city, 26)
    assert _train(tmp_path, data)["users_validated"] is False
    # another taxonomy text (a comment more): the codes may differ, so the file is checked again
    from recsys.taxonomy import load_taxonomy

    (tmp_path / "tax.toml").write_text(load_taxonomy().source_text + "\n# a comment\n", encoding="utf-8")
    _deliver(data, city, 27)
    assert _train(tmp_path, data, taxonomy_path=tmp_path / "tax.toml")["users_validated"] is True
    # a record of other validation rules (the validator's source changed) or libraries: validated again
    store_file = tmp_path / "models" / "history" / "store.json"
    doc = json.loads(store_file.read_text())
    assert doc["users"]["columns"] == ["user_id", "group", "sub_group", "region", "age_band", "channels", "push_opt_out"]
    assert doc["users"]["validation"] == validation_fingerprint()
    doc["users"]["validation"]["rules"] = "0" * 64
    store_file.write_text(json.dumps(doc))
    _deliver(data, city, 28)
    assert _train(tmp_path, data, taxonomy_path=tmp_path / "tax.toml")["users_validated"] is True
    assert HistoryStore.open(tmp_path / "models").doc["users"]["validation"] == validation_fingerprint()
    # a start bundle other than the one made of the recorded file (--warm-start): validated again
    first = sorted(p for p in (tmp_path / "models").iterdir() if p.is_dir() and p.name[0].isdigit())[0]
    _deliver(data, city, 29)
    night = _train(tmp_path, data, taxonomy_path=tmp_path / "tax.toml", warm_start=first)
    assert night["mode"] == "incremental" and night["users_validated"] is True


def test_a_copied_users_table_that_is_not_the_trusted_one_is_not_made_latest(tmp_path, city, monkeypatch):
    data = _folder(tmp_path, city, 25)
    _train(tmp_path, data)
    _deliver(data, city, 25)
    latest = (tmp_path / "models" / "latest").resolve()
    store = (tmp_path / "models" / "history" / "store.json").read_text()
    def damaged(self, filename, source):  # the copy is a readable table, but not the file it was trusted as
        import pyarrow.parquet as pq

        pq.write_table(pq.read_table(source), self.root / filename, compression="gzip")

    monkeypatch.setattr(bundle_io.BundleWriter, "copy", damaged)
    with pytest.raises(ArtifactError, match="users.parquet: the copy of yesterday's users table"):
        _train(tmp_path, data)
    # latest stays yesterday's, the store did not move: the next run does the night again
    assert (tmp_path / "models" / "latest").resolve() == latest
    assert (tmp_path / "models" / "history" / "store.json").read_text() == store
    monkeypatch.undo()
    night = _train(tmp_path, data)
    assert night["mode"] == "incremental" and night["users_validated"] is False


def test_validated_users_are_taken_as_they_are():
    users, items, events = tables()
    full = validate(tables=(users, items, events), end="2026-07-02T00:00:00Z")
    # an event of a user the clean table lacks: still "unknown user"
    clean = full.users.iloc[1:].reset_index(drop=True)
    again = validate_tables(clean, items, events, end="2026-07-02T00:00:00Z", users_validated=True)
    assert again.users.equals(clean)
    assert (again.quarantine[C.Q_TABLE] == "users").sum() == 0 and again.counts("users") == {}
    per_table = [full.counts(t) for t in ("users", "items", "events")]
    assert {r: sum(c.get(r, 0) for c in per_table) for r in full.counts()} == full.counts()
    lost = events[C.USER_ID].astype(str) == str(full.users[C.USER_ID].iloc[0])
    unknown = again.quarantine[again.quarantine[C.Q_REASON] == C.R_UNKNOWN_USER]
    assert len(unknown) == int(lost.sum()) > 0
    assert len(again.events) == len(full.events) - int(lost.sum())


def test_files_hashed_on_threads_have_sha256_file_digests(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for n, size in enumerate((0, 1, 5000, 3 << 20, 70_000)):
        path = tmp_path / f"f{n}.bin"
        path.write_bytes(rng.bytes(size))
        paths.append(path)
    want = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert sha256_files(paths, threads=3) == want
    assert sha256_files(paths, threads=1) == want
    assert [sha256_file(p) for p in paths] == want
    with pytest.raises(FileNotFoundError):
        sha256_files([*paths, tmp_path / "missing"], threads=2)


def test_a_damaged_bundle_or_state_file_is_still_named(tmp_path, city):
    data = _folder(tmp_path, city, 25)
    s = _train(tmp_path, data)
    bundle = Path(s["bundle"])
    manifest = bundle_io.read_manifest(bundle)
    names = list(manifest["files"])
    # two damaged files: the first in the manifest's order is named
    for rel in (names[-1], names[1]):
        raw = bytearray((bundle / rel).read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (bundle / rel).write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match=f"{names[1]}: checksum mismatch"):
        bundle_io.verify_bundle(bundle)
    store = HistoryStore.open(tmp_path / "models")
    state = store.root / store.doc["state"]["folder"]
    target = state / "item_impressions.npy"
    target.write_bytes(target.read_bytes()[:-1] + b"\x01")
    with pytest.raises(HistoryError, match=r"item_impressions\.npy: does not match the checksum"):
        store.read_state()
    (state / "engaged.npz").unlink()
    with pytest.raises(HistoryError, match=r"engaged\.npz: history file missing"):
        store.read_state()
