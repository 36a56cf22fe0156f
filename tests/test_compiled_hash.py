"""The compiled keyed BLAKE2b equals hashlib's digests; the holdout and buckets it decides do not move."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recsys.push.compiled_hash import MAX_KEY, blake2b_64
from recsys.push.hashing import stable_hash, user_buckets
from recsys.push.holdout import holdout_mask, holdout_summary


def _hashlib(values: list[bytes], key: bytes) -> np.ndarray:
    return np.array(
        [int.from_bytes(hashlib.blake2b(v, digest_size=8, key=key).digest(), "little") for v in values], dtype=np.uint64
    )


def _buffer(values: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    data = np.frombuffer(b"".join(values), dtype=np.uint8)
    return data, np.concatenate(([0], np.cumsum([len(v) for v in values]))).astype(np.int64)


def test_digests_equal_hashlib_for_every_length_class_and_key() -> None:
    rng = np.random.default_rng(7)
    # empty, short, one block exactly, a byte over, several blocks, non-ASCII bytes
    values = [b"", b"a", b"u00001", "用户-42é".encode(), bytes(127), bytes(128), bytes(129), bytes(256), bytes(257)]
    values += [rng.bytes(int(n)) for n in rng.integers(0, 400, 200)]
    data, offsets = _buffer(values)
    for key in (b"", b"k", b"push-history-bucket", rng.bytes(33), bytes(range(MAX_KEY))):
        np.testing.assert_array_equal(blake2b_64(data, offsets, key), _hashlib(values, key))


def test_strings_inside_a_larger_buffer_and_no_strings() -> None:
    values = [b"xx", b"user-1", b"user-22", b"yy"]
    data, offsets = _buffer(values)
    # the middle two only: offsets need not start at 0 nor end at the buffer's end
    np.testing.assert_array_equal(blake2b_64(data, offsets[1:3], b"s"), _hashlib(values[1:2], b"s"))
    assert blake2b_64(data, offsets[:1], b"s").shape == (0,)


def test_bad_keys_and_offsets_are_refused() -> None:
    data, offsets = _buffer([b"abc"])
    with pytest.raises(ValueError, match="at most 64 bytes"):
        blake2b_64(data, offsets, bytes(MAX_KEY + 1))
    with pytest.raises(ValueError, match="must rise"):
        blake2b_64(data, np.array([0, 4]), b"")  # past the buffer's end
    with pytest.raises(ValueError, match="must rise"):
        blake2b_64(data, np.array([0, 2, 1]), b"")


def test_stable_hash_of_any_input_equals_hashlib_of_its_str() -> None:
    ids = ["u1", "用户-7", "", "x" * 300, "u1"]
    want = _hashlib([s.encode() for s in ids], b"salt")
    arrow = pa.array(ids, type=pa.string())  # int32 offsets
    for given in (ids, np.asarray(ids, dtype=object), np.asarray(ids), pd.Series(ids, dtype="string[pyarrow]"),
                  pd.Series(ids, dtype=object, index=range(5, 0, -1)), arrow.slice(0), pd.Series(arrow.slice(0))):
        np.testing.assert_array_equal(stable_hash(given, "salt"), want)
    # a sliced Arrow array reads its own window of the shared offsets
    np.testing.assert_array_equal(stable_hash(pd.Series(ids, dtype="string[pyarrow]").iloc[[3, 1]], "salt"), want[[3, 1]])
    # values that are not strings (numbers, bytes, missing) are hashed as their str(), as always
    odd = [42, 4.0, b"b", None, "u1"]
    np.testing.assert_array_equal(stable_hash(odd, "salt"), _hashlib([str(v).encode() for v in odd], b"salt"))
    np.testing.assert_array_equal(stable_hash(np.array([7, 8]), "salt"), _hashlib([b"7", b"8"], b"salt"))
    column = pd.Series(["u1", None], dtype="string[pyarrow]")
    np.testing.assert_array_equal(stable_hash(column, "salt"), _hashlib([str(v).encode() for v in column.tolist()], b"salt"))


def _reference_holdout(users: pd.DataFrame, share: float, salt: str) -> np.ndarray:
    """Per group x region: the users ordered by (hashlib digest, row) and the first round(share * n) held out."""
    digests = _hashlib([u.encode() for u in users["user_id"]], salt.encode())
    held = np.zeros(len(users), dtype=bool)
    for rows in users.groupby(["group", "region"]).groups.values():
        rows = np.asarray(rows)
        ranked = sorted(rows, key=lambda r: (int(digests[r]), r))
        held[ranked[: int(np.floor(len(rows) * share + 0.5))]] = True
    return held


def test_holdout_membership_and_buckets_equal_those_from_hashlib() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    users = pd.DataFrame(
        {
            "user_id": pd.Series([f"u{i:06d}" for i in rng.permutation(n)], dtype="string[pyarrow]"),
            "group": rng.choice(["farmer", "student", "elderly"], n),
            "region": rng.choice(["qinglong", "funing"], n),
        }
    )
    held = holdout_mask(users, share=0.1, salt="holdout-2026")
    np.testing.assert_array_equal(held, _reference_holdout(users, 0.1, "holdout-2026"))
    want = _hashlib([u.encode() for u in users["user_id"]], b"push-history-bucket") % np.uint64(64)
    np.testing.assert_array_equal(user_buckets(users["user_id"], 64), want.astype(np.int32))


def test_holdout_ties_and_tiny_strata_follow_the_row_order() -> None:
    # duplicated ids hash alike: the tie goes to the lower row, as ordering by (hash, row) says
    ids = ["a", "b", "a", "c", "a", "b", "d", "e", "f", "a"]
    users = pd.DataFrame({"user_id": ids, "group": ["g"] * 9 + ["h"], "region": ["r"] * 10})
    for share in (0.05, 0.2, 0.35, 0.5, 0.99):
        np.testing.assert_array_equal(holdout_mask(users, share=share, salt="s"), _reference_holdout(users, share, "s"))


def test_block_edges_and_salt_lengths_equal_hashlib() -> None:
    ids = ["", "é", "用户", "x" * 63, "x" * 64, "x" * 65, "y" * 127, "y" * 128, "y" * 129, "z" * 300, "ü" * 64]
    for salt in ("", "s", "k" * 64, "k" * 65, "ß" * 40):  # 0, 1, 64 and 65 bytes; 80 bytes of UTF-8
        raw = salt.encode()
        key = raw if len(raw) <= MAX_KEY else hashlib.blake2b(raw).digest()
        np.testing.assert_array_equal(stable_hash(ids, salt), _hashlib([i.encode() for i in ids], key))


def test_holdout_summary_equals_a_groupby_of_the_strata() -> None:
    rng = np.random.default_rng(8)
    users = pd.DataFrame(
        {
            "group": pd.Series(rng.choice(["student", "farmer", "elderly"], 700), dtype="string[pyarrow]"),
            "region": rng.choice(["qinglong", "beidaihe", "funing", "changli"], 700),
        }
    )
    held = rng.random(700) < 0.15
    grouped = pd.DataFrame({"g": users["group"].astype(object), "r": users["region"], "h": held}).groupby(["g", "r"])["h"]
    want = {f"{g}/{r}": {"users": int(n), "holdout": int(m), "share": round(m / n, 4)}
            for (g, r), n, m in zip(grouped.size().index, grouped.size(), grouped.sum())}
    got = holdout_summary(users, held)
    assert got["by_stratum"] == want and list(got["by_stratum"]) == sorted(want)
    assert (got["size"], got["users"], got["share"]) == (int(held.sum()), 700, round(held.sum() / 700, 4))


def test_a_bytes_id_after_text_ids_is_hashed_as_its_str_as_always():
    """Arrow's type guess would take a bytes id after a str id as its text; such ids go through str()."""
    ids = ["u1", b"u2", bytearray(b"u3")]
    want = [int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8, key=b"s").digest(), "little") for v in ids]
    assert stable_hash(ids, salt="s").tolist() == want
    assert stable_hash(np.array(ids, dtype=object), salt="s").tolist() == want
