"""Id maps: outside string ids <-> dense 0..n-1 integer indices.

Ids are strings at every edge (files, API, output); inside, every per-user or
per-item array is indexed by a dense integer. One :class:`IdMap` per entity
translates between the two, at the edge only.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from recsys.exceptions import ConfigError, SchemaError

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
