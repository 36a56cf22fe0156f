"""Replay a night's push in the synthetic city: the next days' events, drawn from the truth.

``recsys lift`` compares pushed users with the holdout; to test it end to end
the city must react to the push the way the ground truth says. This
simulator takes a push output folder, one night, and the city's truth, and
draws what happens over the next ``days`` local days:

* **background** exposures, the same process for every user whichever arm
  they are in: the old system and organic browsing, a Poisson number per day
  (``background_per_day``) of items drawn uniformly from the catalogue's
  approved items, on one of the user's subscribed personal channels (none for a
  user without one, as in the generated log);
* **the push**: each row of the night (every kind) is an impression at a
  moment drawn uniformly in the row's send window, on the row's channel.

A user sees an item at most once (as in the generated log): a background
exposure of an item the push sends the same user is dropped. Each exposure is
engaged with probability :meth:`GroundTruth.engagement_prob_pairs` at its
moment and channel; an engagement logs a ``click`` (some minutes later) and,
half the time, a ``read``. So a user's expected number of distinct engaged
items is the sum of the probabilities of the items they were exposed to, and
the simulator can say what each user would have done with and without the
push (:attr:`Replay.expected`): the truth the lift estimate is checked against.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.config import is_int
from recsys.exceptions import ConfigError, DataError
from recsys.push.plan import parse_day
from recsys.push.writer import read_pushes
from recsys.seeds import check_random_state
from recsys.synthetic.truth import GroundTruth
from recsys.taxonomy import load_taxonomy

#: the columns of :attr:`Replay.expected`
EXPECTED_COLUMNS = ("user_id", "pushed", "y0_items", "y1_items", "y0_pushed_items", "y1_pushed_items")
CLICK_DELAY_MINUTES = 20.0


@dataclass(frozen=True)
class Replay:
    """The replayed days.

    Attributes
    ----------
    events : DataFrame
        Contract events (``event_id, user_id, item_id, event_type, timestamp,
        channel``) sorted by time: impressions, clicks and reads.
    expected : DataFrame
        Per user of the users table (:data:`EXPECTED_COLUMNS`): whether the
        push sent them anything, and the expected distinct engaged items
        without (``y0_*``) and with (``y1_*``) the push, over all items and
        over the items pushed to anyone that night.
    pushes : DataFrame
        The night's push rows replayed (``user_id, item_id, channel, rank``)
        with ``prob``, the truth's probability that the row is engaged with
        (0 for every row when the push was not applied).
    """

    events: pd.DataFrame
    expected: pd.DataFrame
    pushes: pd.DataFrame

    def expected_lift(self, user_ids: Sequence[str] | None = None, outcome: str = "items") -> float:
        """The truth's mean of ``y1 - y0`` over ``user_ids`` (default: every pushed user).

        Parameters
        ----------
        user_ids : sequence of str, optional
        outcome : {"items", "pushed_items"}
        """
        if outcome not in ("items", "pushed_items"):
            raise ConfigError(f"outcome must be 'items' or 'pushed_items', got {outcome!r}")
        frame = self.expected
        if user_ids is None:
            frame = frame[frame["pushed"]]
        else:
            frame = frame[frame["user_id"].isin(pd.Index(list(user_ids)))]
        if not len(frame):
            raise DataError("expected_lift: none of the given users is in the replay")
        return float((frame[f"y1_{outcome}"] - frame[f"y0_{outcome}"]).mean())


def _local_day_start(day: dt.date, timezone: str) -> int:
    return int(pd.Timestamp(day).tz_localize(timezone).tz_convert("UTC").value // 10**9)


def replay_pushes(
    truth: GroundTruth,
    users: pd.DataFrame,
    items: pd.DataFrame,
    pushes: str | Path,
    date: str | dt.date,
    *,
    days: int = 3,
    background_per_day: float = 0.5,
    seed: int | np.random.Generator | None = 0,
    personal: Sequence[str] | None = None,
    apply_push: bool = True,
) -> Replay:
    """Draw the ``days`` days after night ``date`` for every user of ``users``.

    Parameters
    ----------
    truth : GroundTruth
        The city's truth (``City.truth`` or ``GroundTruth.load``).
    users, items : DataFrame
        The city's users (``user_id, channels``) and items (``item_id``,
        ``review_status`` if present): who lives there and what background
        exposure can show.
    pushes : path
        The push output folder.
    date : str (YYYY-MM-DD) or datetime.date
        The night to replay.
    days : int, default 3
        Local days from ``date``.
    background_per_day : float, default 0.5
        Mean background exposures per user and day (>= 0).
    seed : int, Generator or None
        Everything random derives from it.
    personal : sequence of str, optional
        The personal channels (background exposures use them); default the
        bundled taxonomy's.
    apply_push : bool, default True
        False replays the same days as if nobody had been pushed (an A/A
        check: the true lift is then 0 for everyone).

    Returns
    -------
    Replay

    Raises
    ------
    ConfigError
        On a bad parameter or an id the truth does not know.
    DataError
        If the night has no push rows.
    """
    day = parse_day(date)
    if not is_int(days) or not 1 <= days <= 60:
        raise ConfigError(f"days must be a whole number in 1..60, got {days!r}")
    if not np.isfinite(background_per_day) or background_per_day < 0:
        raise ConfigError(f"background_per_day must be >= 0, got {background_per_day!r}")
    rng = check_random_state(seed)
    tz = truth.params["timezone"]
    start = _local_day_start(day, tz)
    end = _local_day_start(day + dt.timedelta(days=int(days)), tz)

    user_ids = users[C.USER_ID].astype(str).to_numpy()
    n_users = len(user_ids)
    user_pos = pd.Index(user_ids)
    if personal is None:
        personal = load_taxonomy().personal_channels
    subscribed = [
        [c for c in (list(v) if v is not None else []) if c in personal]
        for v in users.get(C.CHANNELS, [personal] * n_users)
    ]

    rows = read_pushes(pushes, day)
    if not len(rows):
        raise DataError(f"{pushes}: no push rows for {day}; nothing to replay")
    rows = rows.drop_duplicates([C.USER_ID, C.ITEM_ID], keep="first")
    p_user = user_pos.get_indexer(rows[C.USER_ID].astype(str))
    if (p_user < 0).any():
        raise ConfigError(f"{int((p_user < 0).sum())} push rows for users not in the users table")
    send_after = pd.to_datetime(rows["send_after"], utc=True).astype("int64").to_numpy() // 10**9
    send_before = pd.to_datetime(rows["send_before"], utc=True).astype("int64").to_numpy() // 10**9
    lo = np.clip(send_after, start, end - 1)
    hi = np.clip(np.maximum(send_before, lo + 1), lo + 1, end)
    p_time = lo + (rng.random(len(rows)) * (hi - lo)).astype(np.int64)
    p_item = rows[C.ITEM_ID].astype(str).to_numpy()
    p_channel = rows[C.CHANNEL].astype(str).to_numpy()

    # background: the same process whichever arm a user is in
    catalogue = items
    if C.REVIEW_STATUS in items.columns:
        catalogue = items[items[C.REVIEW_STATUS].astype(str) == "approved"]
    pool = catalogue[C.ITEM_ID].astype(str).to_numpy()
    has_channel = np.array([len(s) > 0 for s in subscribed])
    counts = rng.poisson(float(background_per_day) * int(days), n_users) * has_channel
    b_user = np.repeat(np.arange(n_users), counts)
    b_item = pool[rng.integers(0, len(pool), len(b_user))] if len(pool) else np.array([], dtype=object)
    b_channel = np.array([subscribed[u][rng.integers(0, len(subscribed[u]))] for u in b_user], dtype=object)
    b_time = rng.integers(start, end, len(b_user))
    # an item at most once per user: the push wins, then the earliest background exposure
    p_rank = rows[C.RANK].to_numpy()
    b_key = pd.Series(user_ids[b_user].astype(object) + "\x1f" + b_item.astype(object))
    p_key = set(user_ids[p_user].astype(object) + "\x1f" + p_item.astype(object))
    order = np.argsort(b_time, kind="stable")
    first = ~b_key.iloc[order].duplicated().to_numpy()
    keep = np.zeros(len(b_user), dtype=bool)
    keep[order[first]] = True
    displaced = keep & b_key.isin(p_key).to_numpy()

    def probs(u: np.ndarray, i: np.ndarray, c: np.ndarray, t: np.ndarray) -> np.ndarray:
        if not len(u):
            return np.zeros(0)
        at = pd.DatetimeIndex(pd.to_datetime(t, unit="s", utc=True))
        return truth.engagement_prob_pairs(user_ids[u], i, list(c), at=at)

    b_prob = probs(b_user[keep], b_item[keep], b_channel[keep], b_time[keep])
    p_prob = probs(p_user, p_item, p_channel, p_time)
    # the items pushed to anyone that night, whether or not the push is applied (lift measures on this set)
    pushed_set = set(p_item.tolist())
    if not apply_push:
        p_user, p_item, p_channel, p_time, p_prob = (x[:0] for x in (p_user, p_item, p_channel, p_time, p_prob))
        displaced = np.zeros_like(displaced)

    b_pushed_item = np.array([i in pushed_set for i in b_item[keep]], dtype=bool)
    kept_displaced = displaced[keep]
    bu = b_user[keep]

    def per_user(u: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.bincount(u, weights=w, minlength=n_users)

    y0 = per_user(bu, b_prob)
    y0_p = per_user(bu, b_prob * b_pushed_item)
    from_push = per_user(p_user, p_prob)
    y1 = y0 - per_user(bu, b_prob * kept_displaced) + from_push
    y1_p = y0_p - per_user(bu, b_prob * (kept_displaced & b_pushed_item)) + from_push
    pushed = np.bincount(p_user, minlength=n_users) > 0
    expected = pd.DataFrame(
        {
            "user_id": user_ids,
            "pushed": pushed,
            "y0_items": y0,
            "y1_items": np.where(pushed, y1, y0),
            "y0_pushed_items": y0_p,
            "y1_pushed_items": np.where(pushed, y1_p, y0_p),
        }
    )

    # what actually happens: the displaced background exposures never occur
    live = ~kept_displaced
    e_user = np.concatenate([bu[live], p_user])
    e_item = np.concatenate([b_item[keep][live], p_item])
    e_channel = np.concatenate([b_channel[keep][live], p_channel])
    e_time = np.concatenate([b_time[keep][live], p_time])
    e_prob = np.concatenate([b_prob[live], p_prob])
    click = rng.random(len(e_prob)) < e_prob
    k = np.flatnonzero(click)
    t_click = np.minimum(e_time[k] + rng.exponential(CLICK_DELAY_MINUTES * 60, len(k)).astype(np.int64), end - 1)
    read = rng.random(len(k)) < 0.5
    t_read = np.minimum(t_click[read] + rng.integers(2, 30, int(read.sum())), end - 1)
    parts = [
        (np.arange(len(e_user)), "impression", e_time),
        (k, "click", t_click),
        (k[read], "read", t_read),
    ]
    idx = np.concatenate([p[0] for p in parts])
    frame = pd.DataFrame(
        {
            C.USER_ID: user_ids[e_user[idx]],
            C.ITEM_ID: e_item[idx].astype(str),
            C.EVENT_TYPE: np.concatenate([np.full(len(p[0]), p[1], dtype=object) for p in parts]),
            C.TIMESTAMP: pd.to_datetime(np.concatenate([p[2] for p in parts]), unit="s", utc=True),
            C.CHANNEL: e_channel[idx].astype(str),
        }
    )
    frame = frame.sort_values([C.TIMESTAMP, C.USER_ID], kind="stable").reset_index(drop=True)
    frame.insert(0, C.EVENT_ID, [f"r{day:%Y%m%d}-{n:08d}" for n in range(len(frame))])
    frame[C.TIMESTAMP] = frame[C.TIMESTAMP].astype("datetime64[us, UTC]")
    replayed = pd.DataFrame(
        {
            C.USER_ID: user_ids[p_user],
            C.ITEM_ID: p_item.astype(str),
            C.CHANNEL: p_channel.astype(str),
            C.RANK: p_rank[: len(p_user)],
            "prob": p_prob,
        }
    )
    return Replay(frame, expected, replayed)
