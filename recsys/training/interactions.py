"""Events -> weighted, time-decayed user x item matrices.

Each event gets a weight by type (``InteractionConfig.weights``): positive for
``click`` and stronger engagement, negative for ``dismiss`` and ``report``. A
``read`` weighs more the longer it was read::

    w_read = weights["read"] * min(1 + dwell_seconds / dwell_unit_seconds, dwell_max_factor)

(a missing dwell counts as 0 seconds). Every weight then decays exponentially
with the event's age, counted back from the end of the window::

    decay = 0.5 ** (age_days / half_life_days)

and weights of the same (user, item) pair add up. Impressions carry no weight:
they are counted as *exposure*, never as a positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recsys.columns import (
    CHANNEL,
    DWELL_SECONDS,
    EVENT_TYPE,
    EVENT_TYPES,
    IMPRESSION_CODE,
    ITEM_ID,
    NEGATIVE_CODES,
    POSITIVE_CODES,
    TIMESTAMP,
    USER_ID,
)
from recsys.config import InteractionConfig, check_section
from recsys.exceptions import ConfigError, SchemaError, UnknownCodeError
from recsys.idmap import IdMap
from recsys.taxonomy import Taxonomy
from recsys.timeutil import aware_timestamp

_REQUIRED = (USER_ID, ITEM_ID, EVENT_TYPE, TIMESTAMP)
_SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class Interactions:
    """The user x item matrices of one window of events.

    All matrices are ``scipy.sparse.csr_matrix`` of shape
    ``(len(users), len(items))``, float32, rows = user indices, columns = item
    indices, with sorted indices and no explicit zeros.

    Attributes
    ----------
    users, items : IdMap
        The id maps that define rows and columns.
    matrix : csr_matrix, float32
        Sum of decayed weights of every weighted event, negatives included
        (so an entry can be negative).
    positives : csr_matrix, float32
        Sum of decayed weights of positive events only (> 0): the confidence
        the collaborative model fits on.
    negative_weight : csr_matrix, float32
        Sum of the decayed magnitudes of negative events (> 0), i.e.
        ``positives - matrix``.
    negatives : csr_matrix, float32
        1.0 where the pair has at least one ``dismiss``/``report``.
    exposure : csr_matrix, float32
        Number of impressions of the pair (undecayed), engaged or not.
    engaged : csr_matrix, float32
        1.0 where the pair has at least one positive engagement.
    end : pandas.Timestamp or None
        The time decay is counted back from (UTC): ``as_of`` if given, else the
        last event's time; None when there were no events and no ``as_of``.
    n_events : int
        Number of events used (inside the window, known user and item).
    """

    users: IdMap
    items: IdMap
    matrix: sp.csr_matrix
    positives: sp.csr_matrix
    negative_weight: sp.csr_matrix
    negatives: sp.csr_matrix
    exposure: sp.csr_matrix
    engaged: sp.csr_matrix
    end: pd.Timestamp | None
    n_events: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_users, n_items)``."""
        return (len(self.users), len(self.items))


def event_weights(event_types: pd.Series, dwell_seconds: pd.Series | None, config: InteractionConfig) -> np.ndarray:
    """Return the undecayed weight of each event.

    Parameters
    ----------
    event_types : Series of str, length n
        Event type codes (``recsys.columns.EVENT_TYPES``).
    dwell_seconds : Series of float or None, length n
        Seconds read; NaN/None = 0. Only ``read`` events use it.
    config : InteractionConfig

    Returns
    -------
    ndarray of float64, shape (n,)
        0 for impressions, > 0 for positive engagement, < 0 for negatives;
        NaN for a type that is not a contract event type.
    """
    dwell = None
    if dwell_seconds is not None:
        dwell = pd.to_numeric(dwell_seconds).to_numpy(dtype=np.float64, na_value=np.nan)
    return _weights_of(type_codes(event_types), dwell, config)


def type_codes(event_types: pd.Series) -> np.ndarray:
    """Position of each event's type in ``recsys.columns.EVENT_TYPES`` (-1: not a contract type).

    Looked up in Arrow (one hash lookup per row in C++): a per-row Python
    dictionary lookup cost seconds per million events.
    """
    return positions(event_types, np.asarray(EVENT_TYPES, dtype=object))


def _weights_of(codes: np.ndarray, dwell: np.ndarray | None, config: InteractionConfig) -> np.ndarray:
    """Undecayed weights of events given by type code, ``dwell`` seconds as float64 (NaN = none)."""
    table = dict(config.weights)
    table["impression"] = 0.0
    # one weight per contract type, NaN for a type the config does not weigh; the last slot is code -1
    lookup = np.array([table.get(t, np.nan) for t in EVENT_TYPES] + [np.nan], dtype=np.float64)
    weights = lookup[codes]
    if dwell is not None:
        dwell = np.nan_to_num(dwell, nan=0.0)
        factor = np.minimum(1.0 + dwell / config.dwell_unit_seconds, config.dwell_max_factor)
        read = codes == EVENT_TYPES.index("read")
        weights[read] *= factor[read]
    return weights


def positions(values: pd.Series | np.ndarray, ids: np.ndarray | list[str] | tuple[str, ...]) -> np.ndarray:
    """Index of each value in ``ids`` (distinct strings), -1 where absent; int64.

    Arrow's ``index_in`` hashes ``ids`` once and looks every value up in C++,
    about ten times faster than ``pandas.Index.get_indexer`` over a log's
    Python strings. Values Arrow cannot read as strings (ints, mixed objects)
    take pandas' path, which gives -1 for them as for any unknown id.
    """
    try:
        array = pa.array(values, from_pandas=True)
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            raise pa.ArrowTypeError(f"not strings: {array.type}")
        found = pc.index_in(array, value_set=pa.array(np.asarray(ids, dtype=object), type=array.type))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        query = pd.Index(np.asarray(values, dtype=object), dtype=object)
        return pd.Index(np.asarray(ids, dtype=object), dtype=object).get_indexer(query).astype(np.int64)
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def channel_counts(
    events: pd.DataFrame, user_index: np.ndarray, n_users: int, taxonomy: Taxonomy, *, types: np.ndarray | None = None
) -> np.ndarray:
    """Count positive engagements per user and channel (taxonomy channel order).

    ``user_index`` is the dense index of each event's user (-1 = unknown);
    ``types`` the events' :func:`type_codes`, when the caller has them.
    """
    channels = list(taxonomy.channels)
    codes = type_codes(events[EVENT_TYPE]) if types is None else np.asarray(types)
    positive = np.isin(codes, POSITIVE_CODES)
    chan = positions(events[CHANNEL].astype(str), channels)
    keep = positive & (chan >= 0) & (user_index >= 0)
    # one bincount over (user, channel) cells: np.add.at is a slow scatter over millions of events
    cells = np.bincount(user_index[keep] * len(channels) + chan[keep], minlength=n_users * len(channels))
    return cells.reshape(n_users, len(channels)).astype(np.float32)


def event_codes(events: pd.DataFrame, users: IdMap, items: IdMap) -> tuple[np.ndarray, np.ndarray]:
    """Each event's user and item index in the id maps (-1: not in the map).

    What ``users.index(events.user_id)`` and ``items.index(events.item_id)``
    return, computed in Arrow. A training run computes them once and hands
    them to every step that needs them (:func:`build_interactions` ``codes=``,
    the ranking signals, the channel counts) instead of each step hashing
    the log's ids again.

    Parameters
    ----------
    events : DataFrame
        With ``user_id`` and ``item_id`` columns.
    users, items : IdMap

    Returns
    -------
    (ndarray of int64, ndarray of int64), each of shape (len(events),)
    """
    return positions(events[USER_ID], users.ids), positions(events[ITEM_ID], items.ids)


def decay_factors(timestamps: pd.Series, end: pd.Timestamp, half_life_days: float) -> np.ndarray:
    """Return ``0.5 ** (age_days / half_life_days)`` with age counted back from ``end``.

    Parameters
    ----------
    timestamps : Series of tz-aware datetimes, length n
    end : pandas.Timestamp, tz-aware
    half_life_days : float

    Returns
    -------
    ndarray of float64, shape (n,), in (0, 1] for events not after ``end``.
    """
    age_days = (end - timestamps).dt.total_seconds().to_numpy(dtype=np.float64) / _SECONDS_PER_DAY
    return np.exp2(-age_days / half_life_days)


def _check_events(events: pd.DataFrame, types: np.ndarray) -> None:
    """Refuse a table the matrices cannot be built from; ``types`` are its :func:`type_codes`."""
    missing = [c for c in _REQUIRED if c not in events.columns]
    if missing:
        raise SchemaError(f"events lack required column(s) {missing}; have {list(events.columns)}")
    ts = events[TIMESTAMP]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise SchemaError(f"events column {TIMESTAMP!r} must be tz-aware datetimes (UTC), got dtype {ts.dtype}")
    bad = np.flatnonzero(types < 0)
    if bad.size:
        raise UnknownCodeError(
            f"events column {EVENT_TYPE!r} has unknown event type {events[EVENT_TYPE].iloc[bad[0]]!r}; "
            f"valid: {', '.join(EVENT_TYPES)}"
        )


def _as_of_timestamp(as_of: object) -> pd.Timestamp | None:
    return None if as_of is None else aware_timestamp(as_of, name="as_of")


def _check_known(index: np.ndarray, ids: pd.Series, rows: np.ndarray, what: str) -> None:
    """Refuse events (at ``rows``) whose id is not in the map (``index`` -1)."""
    unknown = rows[index[rows] < 0]
    if unknown.size:
        names = ids.iloc[unknown]
        raise SchemaError(
            f"events column {what!r} has {names.nunique()} id(s) not in the id map, e.g. {names.iloc[0]!r}; "
            f"pass on_unknown='drop' to ignore their events"
        )


def _sum_pairs(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """float64 CSR summing the values of each (row, col) pair; sorted indices, zeros kept."""
    # coo -> csr sums duplicate (user, item) entries, which is the aggregation we want
    m = sp.coo_matrix((values.astype(np.float64, copy=False), (rows, cols)), shape=shape).tocsr()
    m.sum_duplicates()
    m.sort_indices()
    return m


def _finish(m: sp.csr_matrix) -> sp.csr_matrix:
    """The float32 matrix of float64 sums, without the pairs that summed to zero."""
    m = m.copy()
    m.eliminate_zeros()
    return m.astype(np.float32)


def _pattern(m: sp.csr_matrix) -> sp.csr_matrix:
    """1.0 (float32) on every stored pair of ``m`` (zeros included)."""
    return sp.csr_matrix((np.ones(m.nnz, np.float32), m.indices.copy(), m.indptr.copy()), shape=m.shape)


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    return _finish(_sum_pairs(rows, cols, values, shape))


def build_interactions(
    events: pd.DataFrame,
    users: IdMap,
    items: IdMap,
    config: InteractionConfig,
    as_of: object = None,
    *,
    on_unknown: str = "raise",
    codes: tuple[np.ndarray, np.ndarray] | None = None,
) -> Interactions:
    """Aggregate events into the decayed user x item matrices.

    Parameters
    ----------
    events : DataFrame
        The clean events table of the data contract: ``user_id``, ``item_id``,
        ``event_type`` (codes of ``recsys.columns.EVENT_TYPES``), ``timestamp``
        (tz-aware), optional ``dwell_seconds`` (float, NaN = none).
    users, items : IdMap
        Define the rows and columns.
    config : InteractionConfig
        Weights, dwell and half-life.
    as_of : timestamp-like, tz-aware, optional
        Only events strictly before ``as_of`` are used, and decay counts back
        from it. Default: all events, decay counted back from the last one.
    on_unknown : {"raise", "drop"}, default "raise"
        What to do with events whose user or item is not in the id maps.
    codes : (ndarray, ndarray), optional
        Each event's user and item index in ``users`` / ``items`` as
        :func:`event_codes` returns them (-1: unknown), when the caller has
        them already; looked up here otherwise.

    Returns
    -------
    Interactions

    Raises
    ------
    SchemaError
        If a required column is missing, timestamps are not tz-aware, or (with
        ``on_unknown="raise"``) an event names an unknown user or item.
    UnknownCodeError
        If an event type is not a contract event type.
    ConfigError
        If the config breaks its declared constraints (``InteractionConfig._constraints``),
        ``as_of`` is naive or unparsable, ``on_unknown`` is not valid, or
        ``codes`` do not have one entry per event.
    """
    check_section(config)
    if on_unknown not in ("raise", "drop"):
        raise ConfigError(f"on_unknown must be 'raise' or 'drop', got {on_unknown!r}")
    missing = [c for c in _REQUIRED if c not in events.columns]
    types = type_codes(events[EVENT_TYPE]) if not missing else np.zeros(0, np.int64)
    _check_events(events, types)
    end = _as_of_timestamp(as_of)
    if codes is None:
        uidx, iidx = event_codes(events, users, items)
    else:
        uidx, iidx = (np.asarray(c, dtype=np.int64) for c in codes)
        if uidx.shape != (len(events),) or iidx.shape != (len(events),):
            raise ConfigError(
                f"codes must hold one user and one item index per event ({len(events)}); "
                f"got shapes {uidx.shape} and {iidx.shape}"
            )

    # columns as arrays, never a copy of the whole table: the log is the largest thing training holds
    ts = events[TIMESTAMP]
    inside = np.ones(len(events), dtype=bool) if end is None else (ts < end).to_numpy(dtype=bool)
    rows = np.flatnonzero(inside)
    if on_unknown == "raise":
        _check_known(uidx, events[USER_ID], rows, USER_ID)
        _check_known(iidx, events[ITEM_ID], rows, ITEM_ID)
    keep = inside & (uidx >= 0) & (iidx >= 0)
    if keep.all():
        sel: slice | np.ndarray = slice(None)
        ts_kept = ts
    else:
        sel = np.flatnonzero(keep)
        ts_kept = ts.iloc[sel]
    uidx, iidx, types = uidx[sel], iidx[sel], types[sel]
    n = len(uidx)
    if end is None and n:
        end = ts_kept.max().tz_convert("UTC")

    shape = (len(users), len(items))
    dwell = None
    if DWELL_SECONDS in events.columns:
        dwell = pd.to_numeric(events[DWELL_SECONDS]).to_numpy(dtype=np.float64, na_value=np.nan)[sel]
    weights = _weights_of(types, dwell, config)
    if n:
        weights = weights * decay_factors(ts_kept, end, config.half_life_days)
    # masks by type, not by sign: a very old event's decayed weight may underflow to 0
    pos = np.isin(types, POSITIVE_CODES)
    neg = np.isin(types, NEGATIVE_CODES)
    impression = types == IMPRESSION_CODE
    # one sparse build per kind of event; the pairs' patterns (engaged, negatives) and the
    # signed sum (matrix = positives - negatives) come from those builds, not from more passes
    pos_sum = _sum_pairs(uidx[pos], iidx[pos], weights[pos], shape)
    neg_sum = _sum_pairs(uidx[neg], iidx[neg], -weights[neg], shape)
    signed = (pos_sum - neg_sum).tocsr()
    signed.sort_indices()
    return Interactions(
        users=users,
        items=items,
        matrix=_finish(signed),
        positives=_finish(pos_sum),
        negative_weight=_finish(neg_sum),
        negatives=_pattern(neg_sum),
        exposure=_csr(uidx[impression], iidx[impression], np.ones(int(impression.sum())), shape),
        engaged=_pattern(pos_sum),
        end=end,
        n_events=int(n),
    )


def _binary(m: sp.csr_matrix) -> sp.csr_matrix:
    m = m.copy()
    m.data[:] = 1.0
    return m
