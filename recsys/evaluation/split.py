"""Train/test splits of an engagement log, and the relevant set each user is judged on.

Two modes:

* **temporal** (the default, what a nightly push faces): train on events strictly
  before the split time ``T``, test on events at or after ``T``. ``T`` is given, or
  put at the ``q``-quantile of event timestamps.
* **leave-last-n**: per user, the events from the user's ``n``-th last positive
  engagement on are held out; everything else trains. Lists are made at the end
  of the data.

Definitions (also in the report): a *positive engagement* is ``click`` or
stronger (:data:`recsys.columns.EVENT_TYPES_POSITIVE`). The *relevant items* of a
user are the items with a positive engagement in the test window, minus items the
user engaged with positively in training (those are never pushed again, so they
are excluded from the user's list as well).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.config import is_int, is_number
from recsys.exceptions import ConfigError, SchemaError
from recsys.timeutil import aware_timestamp

#: split modes
TEMPORAL = "temporal"
LEAVE_LAST_N = "leave_last_n"

_EVENT_COLUMNS = (C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP)


@dataclass(frozen=True)
class Split:
    """A train/test split of the events table.

    Attributes
    ----------
    train, test : DataFrame
        Disjoint row subsets of the events table (all columns kept).
    time : Timestamp
        The list time ``T`` (tz-aware UTC): the model is trained as of ``T`` and
        every user's list is made at ``T``.
    mode : str
        ``"temporal"`` or ``"leave_last_n"``.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    time: pd.Timestamp
    mode: str

    def describe(self) -> dict:
        """Return ``{"mode", "time" (ISO), "train_events", "test_events"}``."""
        return {
            "mode": self.mode,
            "time": self.time.isoformat(),
            "train_events": int(len(self.train)),
            "test_events": int(len(self.test)),
        }


def _check_events(events: pd.DataFrame) -> None:
    missing = [c for c in _EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise SchemaError(f"events table lacks column(s) {', '.join(missing)}; required: {', '.join(_EVENT_COLUMNS)}")
    if len(events) == 0:
        raise ConfigError("events table is empty: nothing to split")
    ts = events[C.TIMESTAMP]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise SchemaError(f"events column {C.TIMESTAMP!r} must be tz-aware timestamps, got dtype {ts.dtype}")


def to_utc(time: str | pd.Timestamp, *, name: str = "split time") -> pd.Timestamp:
    """Parse ``time`` as a tz-aware timestamp in UTC.

    Raises
    ------
    ConfigError
        If it cannot be parsed or carries no time zone offset.
    """
    return aware_timestamp(time, name=name)


def quantile_time(events: pd.DataFrame, quantile: float) -> pd.Timestamp:
    """Return the ``quantile``-quantile of the event timestamps (an actual event time).

    Parameters
    ----------
    events : DataFrame
        Needs a tz-aware ``timestamp`` column.
    quantile : float
        In the open interval (0, 1).

    Raises
    ------
    ConfigError
        If ``quantile`` is outside (0, 1).
    """
    if not is_number(quantile) or not 0.0 < float(quantile) < 1.0:
        raise ConfigError(f"split quantile must be a number in (0, 1), got {quantile!r}")
    _check_events(events)
    micros = events[C.TIMESTAMP].dt.tz_convert("UTC").astype("int64").to_numpy()
    # "higher" picks a real event time, so the events at exactly T go to test
    value = np.quantile(micros, float(quantile), method="higher")
    unit = np.datetime_data(events[C.TIMESTAMP].dtype.base)[0]
    return pd.Timestamp(int(value), unit=unit, tz="UTC")


def temporal_split(
    events: pd.DataFrame, *, time: str | pd.Timestamp | None = None, quantile: float | None = None
) -> Split:
    """Split events at a time ``T``: train strictly before ``T``, test at or after.

    Parameters
    ----------
    events : DataFrame
        Clean events table (contract columns; ``timestamp`` tz-aware).
    time : str or Timestamp, optional
        The split time ``T`` (ISO 8601 with an offset, or a tz-aware Timestamp).
    quantile : float, optional
        Put ``T`` at this quantile of the event timestamps instead. Exactly one
        of ``time`` and ``quantile`` must be given.

    Returns
    -------
    Split

    Raises
    ------
    ConfigError
        If both or neither of ``time``/``quantile`` are given, ``time`` is naive
        or unparsable, or either side of the split would be empty.
    SchemaError
        If the events table lacks a required column.
    """
    if (time is None) == (quantile is None):
        raise ConfigError("give exactly one of split time (--split-time) and split quantile (--split-quantile)")
    _check_events(events)
    t = to_utc(time) if time is not None else quantile_time(events, quantile)  # type: ignore[arg-type]
    ts = events[C.TIMESTAMP]
    before = (ts < t).to_numpy()
    if before.all() or not before.any():
        raise ConfigError(
            f"split time {t.isoformat()} leaves an empty {'test' if before.all() else 'training'} window; "
            f"events span {ts.min().isoformat()} .. {ts.max().isoformat()}"
        )
    return Split(train=events[before], test=events[~before], time=t, mode=TEMPORAL)


def leave_last_n_split(events: pd.DataFrame, n: int = 1) -> Split:
    """Hold out each user's last ``n`` positive engagements (and what follows them).

    For each user with a positive engagement, the cut is the timestamp of the
    user's ``n``-th last positive event (the first one if the user has fewer);
    the user's events at or after the cut are test, earlier ones train. Users
    without a positive engagement keep all their events in training. Lists are
    made at ``T`` = one microsecond after the last event.

    Raises
    ------
    ConfigError
        If ``n`` is not a positive int, or no user has a positive engagement.
    """
    if not is_int(n) or n < 1:
        raise ConfigError(f"leave-last-n needs n >= 1, got {n!r}")
    _check_events(events)
    ts = events[C.TIMESTAMP]
    pos = events[events[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE)]
    if pos.empty:
        raise ConfigError("leave-last-n split: no positive engagement (click or stronger) in the events")
    # the n-th largest positive timestamp per user (the smallest, with fewer than n)
    ranked = pos[[C.USER_ID, C.TIMESTAMP]].sort_values([C.USER_ID, C.TIMESTAMP], ascending=[True, False])
    order = ranked.groupby(C.USER_ID, sort=False).cumcount().to_numpy()
    count = ranked.groupby(C.USER_ID, sort=False)[C.TIMESTAMP].transform("size").to_numpy()
    at_cut = order == np.minimum(int(n), count) - 1
    cuts = ranked.loc[at_cut].set_index(C.USER_ID)[C.TIMESTAMP]
    user_cut = events[C.USER_ID].map(cuts)
    is_test = (ts >= user_cut).fillna(False).to_numpy(dtype=bool)
    t = ts.max() + pd.Timedelta(microseconds=1)
    return Split(train=events[~is_test], test=events[is_test], time=t.tz_convert("UTC"), mode=LEAVE_LAST_N)


def positive_pairs(events: pd.DataFrame) -> pd.DataFrame:
    """Return the distinct ``(user_id, item_id)`` pairs with a positive engagement.

    Sorted by user then item; ids as strings.
    """
    pos = events.loc[events[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE), [C.USER_ID, C.ITEM_ID]]
    pairs = pos.drop_duplicates().astype({C.USER_ID: "str", C.ITEM_ID: "str"})
    return pairs.sort_values([C.USER_ID, C.ITEM_ID], kind="stable").reset_index(drop=True)


def relevant_pairs(split: Split) -> pd.DataFrame:
    """Return each user's relevant items: test positives minus training positives.

    Returns
    -------
    DataFrame
        Columns ``user_id, item_id`` (strings), one row per relevant pair,
        sorted by user then item.
    """
    test = positive_pairs(split.test)
    train = positive_pairs(split.train)
    merged = test.merge(train, on=[C.USER_ID, C.ITEM_ID], how="left", indicator=True)
    keep = merged["_merge"].to_numpy() == "left_only"
    return merged.loc[keep, [C.USER_ID, C.ITEM_ID]].reset_index(drop=True)
