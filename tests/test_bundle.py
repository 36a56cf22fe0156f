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
        writer.part("index").text("blob.bin", "\x00\x01\x02")

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


# ---- the component protocol ---------------------------------------------------------------------


class _Counter:
    """A toy component: what a new one needs to live in a bundle is save(writer) and load(reader)."""

    def __init__(self, counts: np.ndarray, labels: list[str]) -> None:
        self.counts, self.labels = counts, labels

    def save(self, writer: bundle.BundleWriter) -> None:
        writer.array("counts", self.counts)
        writer.json("labels", self.labels)
        writer.table("frame", pd.DataFrame({"label": self.labels}))
        writer.text("note.txt", "计数")

    @classmethod
    def load(cls, reader: bundle.BundleReader) -> "_Counter":
        assert reader.text("note.txt") == "计数" and reader.has("note.txt") and not reader.has("absent.txt")
        assert reader.table("frame", columns=["label"])["label"].tolist() == reader.json("labels")
        return cls(reader.array("counts"), reader.json("labels"))


def test_a_component_round_trips_through_its_part_of_a_bundle(tmp_path):
    import faiss

    index = faiss.IndexFlatIP(2)
    index.add(np.eye(2, dtype=np.float32))

    def fill(writer: bundle.BundleWriter) -> None:
        writer.component("counter", _Counter(np.arange(3, dtype=np.int64), ["a", "b", "c"]))
        writer.part("ann").faiss("index", index)

    path = bundle.write_bundle(tmp_path, fill, manifest={}, version="20260101T000000Z")
    manifest = bundle.verify_bundle(path)
    # the bundle named the files; one checksum per file, in the bundle's manifest only
    assert set(manifest["files"]) == {
        "counter/counts.npy", "counter/labels.json", "counter/frame.parquet", "counter/note.txt", "ann/index.faiss"
    }
    reader = bundle.BundleReader(path)
    back = _Counter.load(reader.part("counter"))
    np.testing.assert_array_equal(back.counts, np.arange(3))
    assert back.labels == ["a", "b", "c"]
    assert reader.part("ann").faiss("index").ntotal == 2
    with pytest.raises(ArtifactError, match=r"ann/other\.faiss: missing from the model bundle"):
        reader.part("ann").faiss("other")
    (path / "ann" / "index.faiss").write_bytes(b"not faiss")
    with pytest.raises(ArtifactError, match=r"index\.faiss: cannot read faiss index"):
        reader.part("ann").faiss("index")


def test_a_component_saved_alone_is_verified_once_on_read(tmp_path):
    folder = bundle.write_part(tmp_path / "part", _Counter(np.arange(4, dtype=np.int64), ["x"]))
    meta = json.loads((folder / bundle.PART_MANIFEST).read_text())
    assert meta["component"] == "_Counter" and set(meta["files"]) == {
        "counts.npy", "labels.json", "frame.parquet", "note.txt"
    }
    back = bundle.read_part(folder, _Counter, mmap=False)
    np.testing.assert_array_equal(back.counts, np.arange(4))
    (folder / "counts.npy").write_bytes((folder / "counts.npy").read_bytes()[:-1] + b"\x07")
    with pytest.raises(ArtifactError, match=r"counts\.npy: checksum mismatch"):
        bundle.read_part(folder, _Counter)
    np.testing.assert_array_equal(bundle.read_part(folder, _Counter, verify=False).counts[:3], [0, 1, 2])


def test_an_old_bundle_is_refused_with_what_to_do(tmp_path):
    path = _write(tmp_path, 2, "20260101T000000Z")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = "2"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=rf"bundle format version '2'; this engine reads version {bundle.FORMAT_VERSION} .*retrain"):
        bundle.read_manifest(path)


def test_every_model_array_has_the_shape_a_load_checks():
    # one shape table (recsys.training.model.array_shapes) serves the load's check and the tests'
    # factory: an array added to the model without a shape there would go unchecked at load
    from recsys.config import EngineConfig
    from recsys.taxonomy import load_taxonomy
    from recsys.training.model import INTERCEPT, USER_BIAS, TrainedModel, array_shapes

    taxonomy, config = load_taxonomy(), EngineConfig()
    shapes = array_shapes(7, 11, 3, taxonomy, config, factors=4)
    assert set(shapes) == {*TrainedModel._ARRAYS, USER_BIAS, INTERCEPT}
    assert shapes["user_factors"] == (7, 4) and shapes["segment_popularity"] == (3, 11)
    assert shapes["topic_freshness"] == (len(taxonomy.topics), len(config.engagement.freshness_taus_days))
    assert array_shapes(7, 11, 3, taxonomy, config)["item_factors"] == (11, None)


def test_every_registered_component_speaks_the_protocol():
    # "adding a component is its save/load and one registration line": each COMPONENTS entry names
    # a TrainedModel field and a class with save(self, writer) and the classmethod load(cls, reader)
    import dataclasses
    import importlib
    import inspect

    from recsys.training.model import COMPONENTS, TrainedModel

    fields = {f.name: f for f in dataclasses.fields(TrainedModel)}
    problems = []
    for c in COMPONENTS:
        module, _, name = c.kind.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if c.attribute not in fields:
            problems.append(f"{c.attribute}: not a TrainedModel field")
        elif name not in str(fields[c.attribute].type):
            problems.append(f"{c.attribute}: TrainedModel types it {fields[c.attribute].type}, not {name}")
        if list(inspect.signature(cls.save).parameters)[:2] != ["self", "writer"]:
            problems.append(f"{name}.save is not save(self, writer)")
        if not isinstance(inspect.getattr_static(cls, "load"), classmethod) or \
                list(inspect.signature(cls.load).parameters)[:1] != ["reader"]:
            problems.append(f"{name}.load is not the classmethod load(cls, reader)")
    parts = [c.part for c in COMPONENTS if c.part]
    assert len(parts) == len(set(parts)), f"two components share a part folder: {parts}"
    assert not problems, "; ".join(problems)
