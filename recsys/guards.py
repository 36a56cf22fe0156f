"""Train's guards: refuse data too thin to train on, and a bundle that could serve nothing.

``recsys train`` on nothing used to exit 0 and move ``models/latest`` to a
model that serves only filler (every event quarantined; an ``--as-of`` before
the first event). :func:`check_training_data` runs before any training, with
the thresholds of the ``[training]`` config section;
:func:`check_bundle_sanity` runs on the written bundle before ``latest``
moves to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.config import TrainingConfig
from recsys.exceptions import DataError

if TYPE_CHECKING:  # layering: the training job imports these guards, not the other way round
    from recsys.training.model import TrainedModel

#: an --as-of this far after the data's last event decays every event to nothing
MAX_AS_OF_GAP_DAYS = 366


def _day(ts: pd.Timestamp) -> str:
    return ts.isoformat()


def check_training_data(
    users: pd.DataFrame,
    items: pd.DataFrame,
    events: pd.DataFrame,
    config: TrainingConfig,
    *,
    as_of: pd.Timestamp | None = None,
    quarantined: int = 0,
) -> None:
    """Refuse clean tables too thin to train a model on.

    Parameters
    ----------
    users, items, events : DataFrame
        Clean contract tables (all events, before the ``as_of`` cut).
    config : TrainingConfig
        ``min_events``, ``min_users``, ``min_items``.
    as_of : Timestamp, optional
        Train only on events before this time.
    quarantined : int
        Rows the validator rejected (named in the message).

    Raises
    ------
    DataError
        One line naming what is missing, the threshold and its config key.
    """
    hint = f" ({quarantined:,} rows were quarantined: see `recsys validate`)" if quarantined else ""
    ts = events[C.TIMESTAMP] if len(events) else pd.Series([], dtype="datetime64[ns, UTC]")
    if as_of is not None and len(ts):
        first, last = ts.min(), ts.max()
        if as_of <= first:
            raise DataError(
                f"--as-of {_day(as_of)} is at or before the data's first event ({_day(first)}): "
                "nothing to train on; give a later --as-of"
            )
        gap = (as_of - last) / pd.Timedelta(days=1)
        if gap > MAX_AS_OF_GAP_DAYS:
            raise DataError(
                f"--as-of {_day(as_of)} is {gap:,.0f} days after the data's last event ({_day(last)}); "
                f"time decay would erase every event (at most {MAX_AS_OF_GAP_DAYS} days after it)"
            )
        events = events[ts < as_of]
    where = f" before --as-of {_day(as_of)}" if as_of is not None else ""
    if len(events) < config.min_events:
        raise DataError(
            f"{len(events):,} clean events{where} to train on, fewer than [training] min_events = "
            f"{config.min_events:,}{hint}; refusing to train a model of nothing"
        )
    positive = events[events[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE)]
    n_users = positive[C.USER_ID].nunique()
    if n_users < config.min_users:
        raise DataError(
            f"{n_users:,} users with a positive engagement{where}, fewer than [training] min_users = "
            f"{config.min_users:,}{hint}"
        )
    n_items = positive[C.ITEM_ID].nunique()
    if n_items < config.min_items:
        raise DataError(
            f"{n_items:,} items engaged with{where}, fewer than [training] min_items = {config.min_items:,}{hint}"
        )


def eligible_items_at_end(items: pd.DataFrame, window: dict[str, Any]) -> int:
    """Count items approved, published and unexpired at the end of the data window.

    The time rule is :mod:`recsys.ranking.eligibility`'s (no publish time =
    published, no expiry = never expires), applied to the bundle's catalogue.
    """
    if items.empty:
        return 0
    ok = np.ones(len(items), dtype=bool)
    if C.REVIEW_STATUS in items:
        ok &= items[C.REVIEW_STATUS].fillna("approved").astype(str).to_numpy() == "approved"
    end = window.get("end")
    if end:
        now = pd.Timestamp(end)
        now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
        if C.PUBLISHED_AT in items:
            published = pd.to_datetime(items[C.PUBLISHED_AT], utc=True)
            ok &= (published.isna() | (published <= now)).to_numpy()
        if C.EXPIRES_AT in items:
            expires = pd.to_datetime(items[C.EXPIRES_AT], utc=True)
            ok &= (expires.isna() | (expires > now)).to_numpy()
    return int(ok.sum())


def check_bundle_sanity(model: TrainedModel) -> None:
    """Refuse a trained model that could serve nothing: no warm user, or no eligible item.

    Parameters
    ----------
    model : TrainedModel
        The model as loaded back from its bundle.

    Raises
    ------
    DataError
        Naming what is missing.
    """
    counts = (model.info or {}).get("counts") or {}
    warm = counts.get("warm_users")
    if warm is not None and int(warm) == 0:
        raise DataError("no warm user (no user has a positive engagement in the training window)")
    if int(np.asarray(model.item_warm).sum()) == 0:
        raise DataError("no warm item (no item has an engagement in the training window)")
    if eligible_items_at_end(model.items, model.window or {}) == 0:
        raise DataError(
            f"no item is approved, published and unexpired at the data's end ({(model.window or {}).get('end')})"
        )
