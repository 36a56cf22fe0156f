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
import scipy.sparse as sp

from recsys.columns import (
    DWELL_SECONDS,
    EVENT_TYPE,
    EVENT_TYPES,
    EVENT_TYPES_NEGATIVE,
    EVENT_TYPES_POSITIVE,
    ITEM_ID,
    TIMESTAMP,
    USER_ID,
)
from recsys.config import InteractionConfig, check_section
from recsys.exceptions import ConfigError, SchemaError, UnknownCodeError
from recsys.idmap import IdMap
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
        0 for impressions, > 0 for positive engagement, < 0 for negatives.
    """
    table = dict(config.weights)
    table["impression"] = 0.0
    weights = event_types.map(table).to_numpy(dtype=np.float64, na_value=np.nan)
    if dwell_seconds is not None:
        dwell = np.nan_to_num(pd.to_numeric(dwell_seconds).to_numpy(dtype=np.float64, na_value=np.nan), nan=0.0)
        factor = np.minimum(1.0 + dwell / config.dwell_unit_seconds, config.dwell_max_factor)
        weights = np.where(event_types.to_numpy() == "read", weights * factor, weights)
    return weights


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


def _check_events(events: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in events.columns]
    if missing:
        raise SchemaError(f"events lack required column(s) {missing}; have {list(events.columns)}")
    ts = events[TIMESTAMP]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise SchemaError(f"events column {TIMESTAMP!r} must be tz-aware datetimes (UTC), got dtype {ts.dtype}")
    bad = ~events[EVENT_TYPE].isin(EVENT_TYPES)
    if bad.any():
        raise UnknownCodeError(
            f"events column {EVENT_TYPE!r} has unknown event type {events[EVENT_TYPE][bad].iloc[0]!r}; "
            f"valid: {', '.join(EVENT_TYPES)}"
        )


def _as_of_timestamp(as_of: object) -> pd.Timestamp | None:
    return None if as_of is None else aware_timestamp(as_of, name="as_of")


def _lookup(idmap: IdMap, ids: pd.Series, what: str, on_unknown: str) -> np.ndarray:
    idx = idmap.index(ids.to_numpy(dtype=object))
    if on_unknown == "raise" and (idx < 0).any():
        unknown = ids[idx < 0]
        raise SchemaError(
            f"events column {what!r} has {unknown.nunique()} id(s) not in the id map, e.g. {unknown.iloc[0]!r}; "
            f"pass on_unknown='drop' to ignore their events"
        )
    return idx


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    # coo -> csr sums duplicate (user, item) entries, which is the aggregation we want
    m = sp.coo_matrix((values.astype(np.float64), (rows, cols)), shape=shape).tocsr()
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    return m.astype(np.float32)


def build_interactions(
    events: pd.DataFrame,
    users: IdMap,
    items: IdMap,
    config: InteractionConfig,
    as_of: object = None,
    *,
    on_unknown: str = "raise",
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
        ``as_of`` is naive or unparsable, or ``on_unknown`` is not valid.
    """
    check_section(config)
    if on_unknown not in ("raise", "drop"):
        raise ConfigError(f"on_unknown must be 'raise' or 'drop', got {on_unknown!r}")
    _check_events(events)
    end = _as_of_timestamp(as_of)

    if end is not None:
        events = events[events[TIMESTAMP] < end]
    uidx = _lookup(users, events[USER_ID], USER_ID, on_unknown)
    iidx = _lookup(items, events[ITEM_ID], ITEM_ID, on_unknown)
    known = (uidx >= 0) & (iidx >= 0)
    events, uidx, iidx = events[known], uidx[known], iidx[known]
    if end is None and len(events):
        end = events[TIMESTAMP].max().tz_convert("UTC")

    shape = (len(users), len(items))
    types = events[EVENT_TYPE]
    dwell = events[DWELL_SECONDS] if DWELL_SECONDS in events.columns else None
    weights = event_weights(types, dwell, config)
    if len(events):
        weights = weights * decay_factors(events[TIMESTAMP], end, config.half_life_days)
    # masks by type, not by sign: a very old event's decayed weight may underflow to 0
    pos = types.isin(EVENT_TYPES_POSITIVE).to_numpy()
    neg = types.isin(EVENT_TYPES_NEGATIVE).to_numpy()
    impression = (types == "impression").to_numpy()
    ones = np.ones(len(events))
    return Interactions(
        users=users,
        items=items,
        matrix=_csr(uidx, iidx, weights, shape),
        positives=_csr(uidx[pos], iidx[pos], weights[pos], shape),
        negative_weight=_csr(uidx[neg], iidx[neg], -weights[neg], shape),
        negatives=_binary(_csr(uidx[neg], iidx[neg], ones[neg], shape)),
        exposure=_csr(uidx[impression], iidx[impression], ones[impression], shape),
        engaged=_binary(_csr(uidx[pos], iidx[pos], ones[pos], shape)),
        end=end,
        n_events=int(len(events)),
    )


def _binary(m: sp.csr_matrix) -> sp.csr_matrix:
    m = m.copy()
    m.data[:] = 1.0
    return m
