"""Bundle files: atomic write, checksums on load, latest, pruning and rollback."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys import bundle
from recsys.exceptions import ArtifactError


def _fill(values: np.ndarray):
    def fill(writer: bundle.BundleWriter) -> None:
        writer.array("vectors", values)
        writer.table("ids", pd.DataFrame({"item_id": [f"i{i}" for i in range(len(values))]}))
        writer.json("meta", {"n": len(values)})
        (writer.subdir("index") / "blob.bin").write_bytes(b"\x00\x01\x02")

    return fill


def _write(models, n, version):
    return bundle.write_bundle(models, _fill(np.arange(n, dtype=np.float32)), manifest={"counts": {"n": n}}, version=version)


def test_round_trip_and_manifest(tmp_path):
    path = _write(tmp_path, 4, "20260101T000000Z")
    manifest = bundle.verify_bundle(path)
    assert manifest["version"] == "20260101T000000Z"
    assert set(manifest["files"]) == {"vectors.npy", "ids.parquet", "meta.json", "index/blob.bin"}
    assert "numpy" in manifest["libraries"]
    arr = bundle.load_array(path, "vectors")
    assert isinstance(arr, np.memmap)
    np.testing.assert_array_equal(arr, np.arange(4, dtype=np.float32))
    assert bundle.load_table(path, "ids")["item_id"].tolist() == ["i0", "i1", "i2", "i3"]
    assert bundle.load_json(path, "meta") == {"n": 4}
    assert bundle.latest_version(tmp_path) == "20260101T000000Z"
    assert bundle.resolve(tmp_path / "latest") == path.resolve()
    assert bundle.resolve(tmp_path) == path.resolve()


def test_corrupted_file_is_named(tmp_path):
    path = _write(tmp_path, 4, "20260101T000000Z")
    (path / "index" / "blob.bin").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match=r"blob\.bin: checksum mismatch"):
        bundle.verify_bundle(path)


def test_missing_file_is_named(tmp_path):
    path = _write(tmp_path, 4, "20260101T000000Z")
    (path / "vectors.npy").unlink()
    with pytest.raises(ArtifactError, match=r"vectors\.npy: missing"):
        bundle.verify_bundle(path)
    with pytest.raises(ArtifactError, match=r"vectors\.npy: missing"):
        bundle.load_array(path, "vectors")


def test_missing_manifest_and_wrong_format(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        bundle.read_manifest(tmp_path / "nope")
    path = _write(tmp_path, 2, "20260101T000000Z")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = "99"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version '99'"):
        bundle.read_manifest(path)


def test_object_arrays_are_refused(tmp_path):
    def fill(writer):
        writer.array("bad", np.array([{"a": 1}], dtype=object))

    with pytest.raises(ArtifactError, match="without pickle"):
        bundle.write_bundle(tmp_path, fill, manifest={}, version="20260101T000000Z")
    # the failed build left no version folder and no latest
    assert bundle.list_versions(tmp_path) == []
    assert bundle.latest_version(tmp_path) is None


def test_failed_verification_keeps_previous_latest(tmp_path):
    _write(tmp_path, 2, "20260101T000000Z")

    def reject(path):
        raise ArtifactError("verification failed")

    with pytest.raises(ArtifactError, match="verification failed"):
        bundle.write_bundle(
            tmp_path, _fill(np.zeros(3, np.float32)), manifest={}, version="20260102T000000Z", verify=reject
        )
    assert bundle.latest_version(tmp_path) == "20260101T000000Z"
    assert bundle.list_versions(tmp_path) == ["20260101T000000Z"]


def test_prune_keeps_newest_and_rollback(tmp_path):
    for day in range(1, 5):
        bundle.write_bundle(
            tmp_path, _fill(np.zeros(day, np.float32)), manifest={}, version=f"2026010{day}T000000Z", keep=3
        )
    assert bundle.list_versions(tmp_path) == ["20260102T000000Z", "20260103T000000Z", "20260104T000000Z"]
    assert bundle.latest_version(tmp_path) == "20260104T000000Z"
    bundle.rollback(tmp_path, "20260102T000000Z")
    assert bundle.latest_version(tmp_path) == "20260102T000000Z"
    with pytest.raises(ArtifactError, match="no such model version"):
        bundle.set_latest(tmp_path, "19990101T000000Z")


def test_existing_version_is_not_overwritten(tmp_path):
    _write(tmp_path, 2, "20260101T000000Z")
    with pytest.raises(ArtifactError, match="already exists"):
        _write(tmp_path, 3, "20260101T000000Z")
    assert len(bundle.load_array(tmp_path / "20260101T000000Z", "vectors")) == 2
