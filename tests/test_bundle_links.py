"""A bundle's files hashed as they are written, and files unchanged since a verified bundle hard-linked.

A new bundle takes an array that is still the whole read-only memory map of a verified
bundle's file (and a table copied from one) as a hard link with the digest the verification
found. Anything else -- a changed file, a part of a map, a file never verified -- is written
and hashed as before; a name written twice never writes into the linked file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys import bundle
from recsys.exceptions import ArtifactError


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _first(tmp_path: Path) -> Path:
    """Yesterday's bundle: an array, a part's array, a table."""

    def fill(writer: bundle.BundleWriter) -> None:
        writer.array("vectors", np.arange(12, dtype=np.float32).reshape(4, 3))
        writer.part("lookup").array("order", np.arange(5, dtype=np.int64))
        writer.table("users", pd.DataFrame({"user_id": ["a", "b", "c"]}))

    return bundle.write_bundle(tmp_path, fill, manifest={}, version="20260101T000000Z")


def _same_inode(a: Path, b: Path) -> bool:
    return os.stat(a).st_ino == os.stat(b).st_ino


def _manifest_matches_files(path: Path) -> None:
    """Every digest of the manifest is its file's sha256, recomputed here (not by the engine)."""
    files = bundle.read_manifest(path)["files"]
    assert files and all(_sha(path / rel) == digest for rel, digest in files.items())


def test_unchanged_maps_of_a_verified_bundle_are_linked_with_their_digest(tmp_path):
    old = _first(tmp_path)
    bundle.verify_bundle(old)
    reader = bundle.BundleReader(old)
    vectors, order = reader.array("vectors"), reader.part("lookup").array("order")

    def fill(writer: bundle.BundleWriter) -> None:
        writer.array("vectors", vectors)  # the map itself
        writer.part("lookup").array("order", np.asarray(order, dtype=np.int64))  # a whole view of the map
        writer.copy("users.parquet", old / "users.parquet")
        writer.array("fresh", np.ones(3, np.float32))

    new = bundle.write_bundle(tmp_path, fill, manifest={}, version="20260102T000000Z")
    for rel in ("vectors.npy", "lookup/order.npy", "users.parquet"):
        assert _same_inode(old / rel, new / rel), rel
    assert not (new / "fresh.npy").samefile(old / "vectors.npy")
    _manifest_matches_files(new)
    old_files = bundle.read_manifest(old)["files"]
    assert {rel: bundle.read_manifest(new)["files"][rel] for rel in old_files} == old_files
    bundle.verify_bundle(new)
    # pruning yesterday's bundle unlinks its names only: the new bundle keeps the files whole
    assert bundle.prune(tmp_path, keep=1) == ["20260101T000000Z"] and not old.exists()
    bundle.verify_bundle(new)
    np.testing.assert_array_equal(bundle.load_array(new, "vectors"), np.arange(12, dtype=np.float32).reshape(4, 3))


def test_a_file_changed_since_its_verification_or_part_of_a_map_is_written_anew(tmp_path):
    old = _first(tmp_path)
    bundle.verify_bundle(old)
    vectors = bundle.load_array(old, "vectors")
    order = bundle.BundleReader(old).part("lookup").array("order")
    # changed after the verification (a write in place: its time moves), same size
    path = old / "lookup" / "order.npy"
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(-8, os.SEEK_END)
        fh.write(np.int64(99).tobytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))

    def fill(writer: bundle.BundleWriter) -> None:
        writer.array("rows", vectors[1:])  # a part of the map: not the file
        writer.part("lookup").array("order", order)
        writer.copy("users.parquet", old / "users.parquet")

    new = bundle.write_bundle(tmp_path, fill, manifest={}, version="20260102T000000Z")
    assert not _same_inode(old / "lookup" / "order.npy", new / "lookup" / "order.npy")
    assert _same_inode(old / "users.parquet", new / "users.parquet")
    _manifest_matches_files(new)  # the changed file's digest is its new content's, not the verified one
    assert bundle.load_array(new, "lookup/order")[-1] == 99
    np.testing.assert_array_equal(bundle.load_array(new, "rows"), np.arange(3, 12, dtype=np.float32).reshape(3, 3))


def test_files_never_verified_are_copied_and_hashed(tmp_path):
    old = _first(tmp_path)  # written, never verified in a load
    bundle._VERIFIED.clear()
    vectors = bundle.load_array(old, "vectors")

    def fill(writer: bundle.BundleWriter) -> None:
        writer.array("vectors", vectors)
        writer.copy("users.parquet", old / "users.parquet")

    new = bundle.write_bundle(tmp_path, fill, manifest={}, version="20260102T000000Z")
    assert not _same_inode(old / "vectors.npy", new / "vectors.npy")
    assert not _same_inode(old / "users.parquet", new / "users.parquet")
    _manifest_matches_files(new)


def test_a_name_written_again_never_writes_into_the_linked_file(tmp_path):
    old = _first(tmp_path)
    bundle.verify_bundle(old)
    vectors = bundle.load_array(old, "vectors")
    before = _sha(old / "vectors.npy")

    def fill(writer: bundle.BundleWriter) -> None:
        writer.array("vectors", vectors)  # a link ...
        writer.array("vectors", np.zeros((4, 3), np.float32))  # ... then written again under the same name

    new = bundle.write_bundle(tmp_path, fill, manifest={}, version="20260102T000000Z")
    assert _sha(old / "vectors.npy") == before
    bundle.verify_bundle(old)
    np.testing.assert_array_equal(bundle.load_array(new, "vectors"), np.zeros((4, 3), np.float32))
    _manifest_matches_files(new)


def test_verify_still_names_a_corrupted_linked_file(tmp_path):
    old = _first(tmp_path)
    bundle.verify_bundle(old)
    vectors = bundle.load_array(old, "vectors")
    new = bundle.write_bundle(
        tmp_path, lambda writer: writer.array("vectors", vectors), manifest={}, version="20260102T000000Z"
    )
    assert _same_inode(old / "vectors.npy", new / "vectors.npy")
    data = bytearray((new / "vectors.npy").read_bytes())
    data[-1] ^= 0xFF
    (new / "vectors.npy").write_bytes(bytes(data))  # one inode: both bundles hold the damage
    for path in (new, old):
        with pytest.raises(ArtifactError, match=r"vectors\.npy: checksum mismatch"):
            bundle.verify_bundle(path)
    # and a later bundle does not link the damaged file: it is no longer the verified one
    damaged = bundle.load_array(new, "vectors")
    third = bundle.write_bundle(
        tmp_path, lambda writer: writer.array("vectors", damaged), manifest={}, version="20260103T000000Z"
    )
    assert not _same_inode(new / "vectors.npy", third / "vectors.npy")
    _manifest_matches_files(third)


def test_a_night_links_what_it_took_unchanged_from_yesterdays_bundle(tmp_path):
    """Same catalogue, same users file: the night's content vectors, id lookup and users table are links."""
    from push_city import tables
    from recsys import columns as C
    from recsys.training import train

    users, items, events = tables()
    days = pd.to_datetime(events[C.TIMESTAMP]).dt.tz_convert("Asia/Shanghai").dt.date
    all_days = sorted(days.unique())
    data = tmp_path / "data"
    (data / "events").mkdir(parents=True)
    users.to_parquet(data / "users.parquet", index=False)
    items.to_parquet(data / "items.parquet", index=False)
    for d in all_days[:25]:
        events[days == d].to_parquet(data / "events" / f"{d}.parquet", index=False)
    (tmp_path / "c.toml").write_text(
        "[collaborative]\nfactors = 8\niterations = 3\nthreads = 1\n[content]\nsvd_components = 8\n"
        "[index]\nthreads = 1\n[ranking]\nranker = \"linear\"\n",
        encoding="utf-8",
    )
    first = train(data, tmp_path / "models", config_path=tmp_path / "c.toml", stream=None)
    events[days == all_days[25]].to_parquet(data / "events" / f"{all_days[25]}.parquet", index=False)
    night = train(data, tmp_path / "models", config_path=tmp_path / "c.toml", stream=None)
    assert night["mode"] == "incremental" and night["users_validated"] is False
    old, new = Path(first["bundle"]), Path(night["bundle"])
    linked = {"content_vectors.npy", "users.parquet", "user_lookup/ids.npy", "user_lookup/sorted_ids.npy",
              "user_lookup/order.npy", "near_duplicates/indptr.npy", "near_duplicates/indices.npy"}
    assert {rel for rel in linked if _same_inode(old / rel, new / rel)} == linked
    # what the night computed again is its own file (never a link into yesterday's bundle)
    assert not _same_inode(old / "user_factors.npy", new / "user_factors.npy")
    _manifest_matches_files(new)
    bundle.verify_bundle(old)
