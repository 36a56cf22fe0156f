"""Id maps: outside string ids <-> dense 0..n-1 integer indices.

Ids are strings at every edge (files, API, output); inside, every per-user or
per-item array is indexed by a dense integer. One :class:`IdMap` per entity
translates between the two, at the edge only.

:class:`SortedIds` answers the same question with arrays alone (sorted UTF-8
ids, binary search): what serving holds for millions of users, memory-mapped
from the model bundle.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import pandas as pd

from recsys.exceptions import ConfigError, SchemaError

if TYPE_CHECKING:
    from recsys.bundle import BundleReader, BundleWriter

#: column names of the persisted frame (see :meth:`IdMap.to_frame`)
INDEX_COLUMN = "index"


class IdMap:
    """A bijection between external string ids and indices ``0..n-1``.

    Build it with :meth:`from_ids` or :meth:`from_frame`; it is immutable.
    Index ``i`` is the ``i``-th distinct id in the order given (first
    appearance), so an id map built from a table's id column follows the
    table's row order and is deterministic.

    Parameters
    ----------
    ids : ndarray of str, shape (n,)
        Distinct ids; position = index. Use :meth:`from_ids` rather than
        calling the constructor with unchecked input.
    """

    def __init__(self, ids: np.ndarray) -> None:
        self._ids = ids
        self._index = pd.Index(ids, dtype=object)

    # ---- construction ----------------------------------------------------
    @classmethod
    def from_ids(cls, ids: Iterable[str], *, sort: bool = False) -> "IdMap":
        """Build an id map from ids, repeats allowed.

        Parameters
        ----------
        ids : iterable of str
            Ids, e.g. a table's id column or the ids of an event log; later
            repeats of an id are ignored.
        sort : bool, default False
            False: index order = order of first appearance. True: ids sorted
            lexicographically.

        Returns
        -------
        IdMap

        Raises
        ------
        SchemaError
            If an id is missing (None/NaN) or not a string.
        """
        values = pd.Series(ids if isinstance(ids, (pd.Series, np.ndarray, pd.Index)) else list(ids), dtype=object)
        if values.isna().any():
            raise SchemaError(f"ids must not be missing; found {int(values.isna().sum())} missing id(s)")
        if len(values) and pd.api.types.infer_dtype(values, skipna=False) != "string":
            bad = next(v for v in values if not isinstance(v, str))
            raise SchemaError(f"ids must be strings, got {bad!r} ({type(bad).__name__})")
        unique = pd.unique(values.to_numpy(dtype=object))
        if sort:
            unique = np.sort(unique)
        return cls(np.asarray(unique, dtype=str))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, column: str = "id") -> "IdMap":
        """Rebuild an id map persisted with :meth:`to_frame`.

        Raises
        ------
        SchemaError
            If a column is missing, the indices are not ``0..n-1`` in order, or
            an id repeats.
        """
        missing = [c for c in (INDEX_COLUMN, column) if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"id map frame lacks column(s) {missing}; has {list(frame.columns)}"
            )
        index = frame[INDEX_COLUMN].to_numpy()
        if not np.array_equal(index, np.arange(len(frame))):
            raise SchemaError(f"id map column {INDEX_COLUMN!r} must be 0..n-1 in order")
        ids = frame[column]
        if ids.duplicated().any():
            raise SchemaError(f"id map has duplicate id {ids[ids.duplicated()].iloc[0]!r}")
        return cls.from_ids(ids)

    # ---- lookups ---------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        """The ids, ndarray of str, shape (n,); ``ids[i]`` has index ``i``."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self._ids, other._ids)

    __hash__ = None  # equal by value; not meant as a dict key

    def __repr__(self) -> str:
        head = ", ".join(repr(str(i)) for i in self._ids[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"IdMap(n={len(self)}: {head}{more})"

    def index(self, ids: Iterable[str] | str, *, missing: str = "mark") -> np.ndarray:
        """Translate ids to indices.

        Parameters
        ----------
        ids : iterable of str
            Ids to look up (a single str is treated as one id).
        missing : {"mark", "raise"}, default "mark"
            "mark": an unknown id gets index -1. "raise": an unknown id is an
            error.

        Returns
        -------
        ndarray of int64, shape (len(ids),)

        Raises
        ------
        ConfigError
            If ``missing`` is not one of the valid values, or (with
            ``missing="raise"``) naming the first unknown id and how many there are.
        """
        if missing not in ("mark", "raise"):
            raise ConfigError(f"missing must be 'mark' or 'raise', got {missing!r}")
        if isinstance(ids, str):
            ids = [ids]
        query = pd.Index(ids if isinstance(ids, (pd.Series, np.ndarray, pd.Index)) else list(ids), dtype=object)
        out = self._index.get_indexer(query).astype(np.int64)
        if missing == "raise" and (out < 0).any():
            unknown = query[out < 0]
            raise ConfigError(
                f"unknown id {unknown[0]!r} ({len(unknown)} unknown of {len(query)}); "
                f"the map holds {len(self)} ids"
            )
        return out

    # ---- persistence -----------------------------------------------------
    def to_frame(self, column: str = "id") -> pd.DataFrame:
        """Return ``index`` (int64) and ``column`` (str) columns, one row per id.

        Written as Parquet, it is what :meth:`from_frame` reads back.
        """
        return pd.DataFrame(
            {INDEX_COLUMN: np.arange(len(self), dtype=np.int64), column: pd.Series(self._ids, dtype=str)}
        )


class SortedIds:
    """Id -> row lookups over arrays alone: no Python object per id.

    What serving holds for the bundle's users (millions of them) instead of a
    ``dict``: the ids as fixed-width UTF-8 bytes in row order, the same ids
    sorted, and each sorted id's row. A lookup encodes the asked ids and
    binary-searches the sorted array (``np.searchsorted``); from a bundle,
    the three arrays are memory-mapped, so a worker's load reads nothing per
    user and its memory does not grow with the users.

    Parameters
    ----------
    ids : ndarray of bytes (``S<w>``), shape (n,)
        UTF-8 ids in row order (``ids[i]`` has row ``i``); distinct.
    sorted_ids : ndarray of bytes, shape (n,)
        ``ids`` sorted.
    order : ndarray of int64, shape (n,)
        ``ids[order[k]] == sorted_ids[k]``.

    Build it with :meth:`from_ids` (or load it from a bundle).
    """

    #: the bundle's array names (the component protocol of :mod:`recsys.bundle`)
    ARRAYS = ("ids", "sorted_ids", "order")

    def __init__(self, ids: np.ndarray, sorted_ids: np.ndarray, order: np.ndarray) -> None:
        # plain ndarray views (still over a bundle's memory maps, which a save still hard-links):
        # indexing a numpy.memmap goes through its Python subclass on every probe (~9 us a
        # lookup against ~1.6 us), and every lookup, one id or many, reads these
        self._ids = np.asarray(ids)
        self._sorted = np.asarray(sorted_ids)
        self._order = np.asarray(order)

    @classmethod
    def from_ids(cls, ids: Iterable[str]) -> "SortedIds":
        """Index distinct string ids (row ``i`` = the ``i``-th id).

        Raises
        ------
        SchemaError
            If an id is not a string, repeats, or ends in a NUL character (a
            fixed-width bytes array cannot keep a trailing NUL).
        """
        values = ids if isinstance(ids, (pd.Series, np.ndarray, pd.Index)) else list(ids)
        strings = np.asarray(values, dtype=object)
        if len(strings) and pd.api.types.infer_dtype(strings, skipna=False) != "string":
            bad = next(v for v in strings if not isinstance(v, str))
            raise SchemaError(f"ids must be strings, got {bad!r} ({type(bad).__name__})")
        encoded = _encode(strings)
        if any(s.endswith("\x00") for s in strings):
            raise SchemaError("an id ends in a NUL character ('\\x00'); ids are stored as fixed-width bytes")
        order = np.argsort(encoded, kind="stable")
        sorted_ids = encoded[order]
        if len(sorted_ids) > 1 and (sorted_ids[1:] == sorted_ids[:-1]).any():
            k = int(np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])[0])
            raise SchemaError(f"ids must be distinct; {sorted_ids[k].decode('utf-8')!r} repeats")
        return cls(encoded, sorted_ids, order.astype(np.int64))

    # ---- lookups ---------------------------------------------------------
    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def positions(self, ids: Iterable[str] | np.ndarray) -> np.ndarray:
        """Row of each id, -1 for an id not held (or not a string).

        Parameters
        ----------
        ids : sequence or ndarray of str

        Returns
        -------
        ndarray of int64, shape (len(ids),)
        """
        values = ids if isinstance(ids, (np.ndarray, pd.Series, pd.Index)) else list(ids)
        if len(values) == 1:
            # one id (a platform call): a binary search in Python beats building arrays for it
            return np.array([self.position(next(iter(values)))], dtype=np.int64)
        query = _encode(np.asarray(values, dtype=object))
        out = np.full(len(query), -1, dtype=np.int64)
        n = len(self)
        if n == 0 or len(query) == 0:
            return out
        # sorted queries walk the sorted ids in one direction (numpy narrows each search by the last)
        qorder = np.argsort(query, kind="stable")
        q = query[qorder]
        at = np.minimum(np.searchsorted(self._sorted, q), n - 1)
        # equality at full width: a query longer than the stored width never matches a prefix
        hit = self._sorted[at] == q
        out[qorder[hit]] = self._order[at[hit]]
        return out

    def position(self, user_id: object) -> int:
        """Row of one id, -1 if not held."""
        if not isinstance(user_id, str):
            return -1
        key = user_id.encode("utf-8")
        # numpy's fixed-width bytes sort in the order of Python's bytes (no id ends in NUL)
        at = bisect.bisect_left(self._sorted, key)
        if at < len(self) and self._sorted[at] == key:
            return int(self._order[at])
        return -1

    def get(self, user_id: object, default: int | None = None) -> int | None:
        """Row of ``user_id``, ``default`` if not held (the ``dict.get`` of the old per-user map)."""
        row = self.position(user_id)
        return default if row < 0 else row

    def __contains__(self, user_id: object) -> bool:
        return self.position(user_id) >= 0

    def __getitem__(self, user_id: str) -> int:
        row = self.position(user_id)
        if row < 0:
            raise KeyError(user_id)
        return row

    def ids_at(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """The ids of ``rows``, ndarray of object (str)."""
        raw = self._ids[np.asarray(rows, dtype=np.int64)]
        return np.array([b.decode("utf-8") for b in raw.tolist()], dtype=object)

    # ---- the bundle component protocol (recsys.bundle) -------------------
    def save(self, writer: "BundleWriter") -> None:
        """Write the three arrays by name."""
        writer.array("ids", self._ids)
        writer.array("sorted_ids", self._sorted)
        writer.array("order", np.asarray(self._order, dtype=np.int64))

    @classmethod
    def load(cls, reader: "BundleReader") -> "SortedIds":
        """Read what :meth:`save` wrote (memory-mapped when the reader is).

        Raises
        ------
        ArtifactError
            If the arrays do not fit each other.
        """
        ids, sorted_ids, order = (reader.array(name) for name in cls.ARRAYS)
        if not (ids.ndim == sorted_ids.ndim == order.ndim == 1 and len(ids) == len(sorted_ids) == len(order)):
            raise reader.error(
                "order.npy", f"shapes {ids.shape}, {sorted_ids.shape}, {order.shape} of ids, sorted_ids and order "
                "differ: the files were replaced or come from another bundle"
            )
        if ids.dtype.kind != "S" or sorted_ids.dtype != ids.dtype:
            raise reader.error("ids.npy", f"dtype {ids.dtype} / {sorted_ids.dtype}: expected fixed-width bytes")
        return cls(ids, sorted_ids, order)


def _encode(strings: np.ndarray) -> np.ndarray:
    """UTF-8 fixed-width bytes of an object array of str (non-strings become b"", never found)."""
    if len(strings) == 0:
        return np.zeros(0, dtype="S1")
    try:
        # the fast path: numpy encodes ASCII itself
        return strings.astype("S")
    except (UnicodeEncodeError, TypeError, ValueError):
        return np.array([s.encode("utf-8") if isinstance(s, str) else b"" for s in strings.tolist()], dtype="S")
