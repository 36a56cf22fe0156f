"""stable_hash copies one keyed BLAKE2b state per id: the digests of a fresh keyed hash per id."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from recsys.push.hashing import stable_hash


def _reference(values: list, salt: str) -> np.ndarray:
    raw = salt.encode("utf-8")
    key = raw if len(raw) <= 64 else hashlib.blake2b(raw).digest()
    return np.array(
        [int.from_bytes(hashlib.blake2b(str(v).encode("utf-8"), digest_size=8, key=key).digest(), "little") for v in values],
        dtype=np.uint64,
    )


def test_digests_equal_a_fresh_keyed_hash_per_id() -> None:
    values = ["u1", "用户-7", "", "u1", 42, "x" * 300]
    for salt in ("", "holdout-2026", "s" * 90):  # no key, a key, a key hashed down first
        got = stable_hash(values, salt)
        assert got.dtype == np.uint64
        np.testing.assert_array_equal(got, _reference(values, salt))
    assert stable_hash(values, "a")[0] != stable_hash(values, "b")[0]


def test_a_pandas_column_and_a_generator_hash_the_same() -> None:
    ids = [f"u{i:05d}" for i in range(70_000)]  # more than one batch of the column path
    column = pd.Series(ids, dtype="string[pyarrow]")
    np.testing.assert_array_equal(stable_hash(column, "k"), stable_hash((i for i in ids), "k"))
    np.testing.assert_array_equal(stable_hash(column, "k")[-3:], _reference(ids[-3:], "k"))
