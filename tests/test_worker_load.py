"""A push worker's start: the run's driver checks the bundle once, workers open it unchecked.

The checksums of a bundle are checked once per run, by the driver, before any chunk runs; a
worker (or a chunk run in the driver's process) opens the Recommender without hashing every
file again. A modified file still stops the run, named, before any list is written.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import push_city  # noqa: E402

from recsys import bundle as bundle_io  # noqa: E402
from recsys.exceptions import ArtifactError  # noqa: E402
from recsys.push import run_nightly  # noqa: E402
from recsys.push import chunk as chunk_module  # noqa: E402
from recsys.ranking import Recommender  # noqa: E402


@pytest.fixture()
def hashed(monkeypatch):
    """Every file the bundle code hashes, in order."""
    seen: list[str] = []
    real = bundle_io.sha256_files

    def counting(paths, *args, **kwargs):
        paths = list(paths)
        seen.extend(Path(p).name for p in paths)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(bundle_io, "sha256_files", counting)
    return seen


def test_a_load_without_verification_hashes_nothing(tmp_path_factory, hashed):
    bundle = push_city.trained_city(tmp_path_factory) / "models" / "latest"
    hashed.clear()  # training the city (once per session) hashed its files
    Recommender.load(bundle, verify=False)
    assert hashed == []
    Recommender.load(bundle)
    assert "user_factors.npy" in hashed and "indptr.npy" in hashed


def test_the_push_hashes_the_bundle_once_and_workers_not_again(tmp_path_factory, tmp_path, hashed):
    bundle = push_city.trained_city(tmp_path_factory) / "models" / "latest"
    hashed.clear()
    chunk_module._served.cache_clear()  # a worker process opens the bundle afresh
    run_nightly(bundle, "2026-07-01", tmp_path / "out", workers=1, stream=None, warn_stream=None)
    files = len(bundle_io.read_manifest(bundle.resolve())["files"])
    assert hashed.count("user_factors.npy") == 1 and hashed.count("indptr.npy") == 1
    assert len(hashed) == files  # each listed file once, by the driver


def test_a_modified_bundle_stops_the_push_before_any_list(tmp_path_factory, tmp_path):
    bundle = push_city.trained_city(tmp_path_factory) / "models" / "latest"
    copy = shutil.copytree(bundle.resolve(), tmp_path / "models" / bundle.resolve().name)
    with (copy / "near_duplicates" / "indices.npy").open("ab") as f:
        f.write(b"\0")
    chunk_module._served.cache_clear()
    with pytest.raises(ArtifactError, match=r"near_duplicates/indices\.npy: checksum mismatch"):
        run_nightly(copy, "2026-07-01", tmp_path / "out", workers=1, stream=None, warn_stream=None)
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_a_parallel_worker_ranks_on_one_thread_with_the_bundles_other_settings(tmp_path_factory):
    """A worker of a parallel push (threads 1) has one core: no thread pool inside recommend_many."""
    import dataclasses

    bundle = push_city.trained_city(tmp_path_factory) / "models" / "latest"
    trained = Recommender.load(bundle, verify=False).state.config
    chunk_module._served.cache_clear()
    one, _ = chunk_module._served(str(bundle), None, "", 1)
    assert one.state.config == dataclasses.replace(trained, threads=1)
    many, _ = chunk_module._served(str(bundle), None, "", trained.threads + 2)
    assert many.state.config == trained  # never more threads than the bundle's setting
    chunk_module._served.cache_clear()
