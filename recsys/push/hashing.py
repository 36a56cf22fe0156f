"""Stable hashes of user ids: the same id gives the same number on any machine, any day.

The holdout and the push-history buckets both hash user ids. Python's own
``hash`` is salted per process and pandas' hashing is an implementation detail
that may change between versions; BLAKE2b is fixed by its specification
(RFC 7693), so a user stays in the same bucket (and in or out of the holdout)
for as long as the salt stays the same. The digests are computed by a compiled
kernel (:mod:`recsys.push.compiled_hash`) and equal those of :mod:`hashlib`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys.config import is_int
from recsys.exceptions import ConfigError
from recsys.push.compiled_hash import MAX_KEY, blake2b_64

#: ids converted to Python strings at a time (ids that are not Arrow strings)
_BATCH = 65_536


def _key(salt: str) -> bytes:
    raw = salt.encode("utf-8")
    # BLAKE2b takes a key of at most 64 bytes; a longer salt is hashed down first
    return raw if len(raw) <= MAX_KEY else hashlib.blake2b(raw).digest()


def stable_hash(ids: Iterable[str], salt: str = "") -> np.ndarray:
    """Return a 64-bit BLAKE2b hash of each id, keyed by ``salt``.

    Parameters
    ----------
    ids : iterable of str
        User (or item) ids; a value that is not a string is hashed as ``str(value)``.
    salt : str
        Key of the hash; another salt gives independent numbers.

    Returns
    -------
    ndarray, uint64 (n,)
        The first 8 digest bytes read little-endian: ``hashlib.blake2b(id, digest_size=8,
        key=salt)`` (a salt over 64 bytes is hashed down to its BLAKE2b digest first).

    Raises
    ------
    ConfigError
        If ``salt`` is not a string.
    """
    if not isinstance(salt, str):
        raise ConfigError(f"salt must be a string, got {salt!r}")
    data, offsets = _utf8(ids)
    # one compiled loop over the ids' bytes: ~0.5 us an id where hashlib's call per id took ~3
    return blake2b_64(data, offsets, _key(salt))


def _utf8(ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ids as one UTF-8 byte buffer and ``n + 1`` offsets (an Arrow string array's own buffers).

    An Arrow-backed column is read as it is; strings in a list or an object array are
    converted by Arrow in bulk. Anything else (numbers, bytes, missing values) goes
    through ``str`` id by id, as the ids were always hashed.
    """
    if not hasattr(ids, "__len__"):
        ids = list(ids)
    strings = _as_arrow_strings(ids)
    if strings is None:
        strings = pa.array([str(v) for v in _values(ids)], type=pa.large_string())
    _, offsets, data = strings.buffers()
    wide = pa.types.is_large_string(strings.type)
    offsets = np.frombuffer(offsets, dtype=np.int64 if wide else np.int32)[strings.offset : strings.offset + len(strings) + 1]
    return (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)), offsets


def _as_arrow_strings(ids: Iterable[str]) -> pa.Array | None:
    """``ids`` as one Arrow string array when every id is a string (None otherwise)."""
    if isinstance(ids, np.ndarray) and ids.dtype.kind not in "OU":
        return None  # numbers: hashed as their str(), which Arrow's cast does not always equal
    if isinstance(ids, (list, tuple)) or getattr(ids, "dtype", None) == object:
        # untyped values: Arrow's type guess stops at the first text value and would then take a
        # later bytes id as its text (str() of bytes is "b'...'", as such ids were always hashed)
        if pd.api.types.infer_dtype(ids, skipna=False) != "string":
            return None
    try:
        strings = pa.array(ids)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    if not (pa.types.is_string(strings.type) or pa.types.is_large_string(strings.type)) or strings.null_count:
        return None
    return strings


def _values(ids: Iterable[str]) -> Iterator[str]:
    """The ids one by one (the path of ids that are not all strings); an array or pandas
    column as Python lists of ``_BATCH`` ids (``tolist`` of a slice converts in bulk, where
    iterating a column goes through pandas once per id).
    """
    tolist = getattr(ids, "tolist", None)
    if tolist is None:
        yield from ids
        return
    rows = getattr(ids, "iloc", ids)  # positional slices of a Series; arrays and indexes slice so
    for lo in range(0, len(ids), _BATCH):
        yield from rows[lo : lo + _BATCH].tolist()


def unit_interval(hashes: np.ndarray) -> np.ndarray:
    """Map uint64 hashes to floats in [0, 1) (top 53 bits, exact in float64)."""
    return (np.asarray(hashes, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def user_buckets(user_ids: Iterable[str], n_buckets: int) -> np.ndarray:
    """Return each user's push-history bucket, ``hash(user_id) % n_buckets``.

    The bucket hash has a fixed key of its own, independent of the holdout
    salt, so changing the salt never moves a user's history.

    Returns
    -------
    ndarray, int32 (n,)
        Values in ``0 .. n_buckets - 1``.

    Raises
    ------
    ConfigError
        If ``n_buckets`` is not a positive int.
    """
    if not is_int(n_buckets) or n_buckets < 1:
        raise ConfigError(f"history_buckets must be a positive integer, got {n_buckets!r}")
    return (stable_hash(user_ids, salt="push-history-bucket") % np.uint64(n_buckets)).astype(np.int32)
