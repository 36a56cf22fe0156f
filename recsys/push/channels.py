"""Channel rules and channel choice: which personal channel a user gets tonight, and when.

Each personal channel has its rules: the list length ``k``, the daily and
weekly frequency caps, and the quiet hours given as a send window
(``send_after`` .. ``send_before``, local time of the city). ``[push]`` in the
config sets them per channel; a channel it leaves out gets the city's default
from the taxonomy (``[channels.X] push``), else ``[push] default_*``.

A user gets ``channels_per_user`` lists per night, on the subscribed channels
they engage with most in the events (the model's per-channel counts); ties
and users without events fall back to ``channel_priority``. A channel whose
caps leave no room tonight is passed over for the next one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.config import LocalTime, PushConfig, check_section, is_int
from recsys.exceptions import ConfigError
from recsys.taxonomy import Taxonomy

_TABLES = ("k", "daily_cap", "weekly_cap", "send_after", "send_before")


@dataclass(frozen=True)
class ChannelRules:
    """The push rules of one personal channel.

    Attributes
    ----------
    channel : str
    k : int
        Items per nightly list.
    daily_cap, weekly_cap : int
        Most items per user per local day / per any 7 consecutive days.
    send_after, send_before : datetime.time
        Local send window; ``send_before <= send_after`` means it ends the next day.
    """

    channel: str
    k: int
    daily_cap: int
    weekly_cap: int
    send_after: dt.time
    send_before: dt.time

    def window(self, day: dt.date, tz: str | dt.tzinfo) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Return the send window on local ``day`` as tz-aware local timestamps."""
        start = pd.Timestamp(dt.datetime.combine(day, self.send_after)).tz_localize(tz)
        end_day = day if self.send_before > self.send_after else day + dt.timedelta(days=1)
        end = pd.Timestamp(dt.datetime.combine(end_day, self.send_before)).tz_localize(tz)
        return start, end


def _parse_hhmm(value: Any, where: str) -> dt.time:
    # a value the taxonomy gave (the config's own times met LocalTime in check_section)
    parsed = LocalTime.parse(value)
    if parsed is None:
        raise ConfigError(f"push {where} must be a local time HH:MM, got {value!r}")
    return parsed


def _check_int(value: Any, where: str, low: int) -> int:
    # a value the taxonomy gave (the config's own values met their ranges in check_section)
    if not is_int(value) or value < low:
        raise ConfigError(f"push {where} must be an integer >= {low}, got {value!r}")
    return int(value)


def _channel_table(config: PushConfig, name: str, taxonomy: Taxonomy) -> dict:
    """One setting for every personal channel: the config's, else the taxonomy's, else ``default_<name>``."""
    personal = taxonomy.personal_channels
    table = getattr(config, name)
    if not isinstance(table, dict):
        raise ConfigError(f"push {name} must be a table keyed by channel, got {table!r}")
    for key in table:
        if key not in personal:
            raise ConfigError(f"push {name} has unknown personal channel {key!r}; valid: {', '.join(personal)}")
    fallback = getattr(config, f"default_{name}")
    return {c: table.get(c, taxonomy.channel_push.get(c, {}).get(name, fallback)) for c in personal}


def channel_order(config: PushConfig, taxonomy: Taxonomy) -> tuple[str, ...]:
    """Return the personal channels in priority order (priority list first, then taxonomy order).

    Raises
    ------
    ConfigError
        If ``channel_priority`` names a channel that is not personal.
    """
    personal = taxonomy.personal_channels
    ordered: list[str] = []
    for channel in config.channel_priority:
        if channel not in personal:
            raise ConfigError(
                f"push channel_priority has {channel!r}, not a personal channel; valid: {', '.join(personal)}"
            )
        if channel not in ordered:
            ordered.append(channel)
    return tuple(ordered + [c for c in personal if c not in ordered])


def channel_rules(config: PushConfig, taxonomy: Taxonomy) -> dict[str, ChannelRules]:
    """Validate the ``[push]`` section against the taxonomy; return the rules per channel.

    Returns
    -------
    dict
        Personal channel -> :class:`ChannelRules`, in priority order.

    Raises
    ------
    ConfigError
        Naming the key and the bad value (unknown channel, missing channel,
        negative cap, unparsable time, ...).
    """
    # the section's own ranges (a PushConfig built in code, or changed by an option, included)
    check_section(config, PushConfig)
    if not taxonomy.personal_channels:
        raise ConfigError("the taxonomy has no personal channel to push to")
    tables = {name: _channel_table(config, name, taxonomy) for name in _TABLES}
    rules = {}
    for channel in channel_order(config, taxonomy):
        rules[channel] = ChannelRules(
            channel=channel,
            k=_check_int(tables["k"][channel], f"k.{channel}", 1),
            daily_cap=_check_int(tables["daily_cap"][channel], f"daily_cap.{channel}", 0),
            weekly_cap=_check_int(tables["weekly_cap"][channel], f"weekly_cap.{channel}", 0),
            send_after=_parse_hhmm(tables["send_after"][channel], f"send_after.{channel}"),
            send_before=_parse_hhmm(tables["send_before"][channel], f"send_before.{channel}"),
        )
    return rules


def subscriptions(channels: pd.Series | pa.Array | pa.ChunkedArray, order: Sequence[str]) -> np.ndarray:
    """Return which of ``order``'s channels each user subscribed to.

    Parameters
    ----------
    channels : Series of list[str], or a pyarrow list array
        The users' ``channels`` column (null or an empty list = none). An
        Arrow column is read without making a Python object per user.
    order : sequence of str
        Personal channels, one column each.

    Returns
    -------
    ndarray, bool (n_users, len(order))
    """
    if isinstance(channels, pa.ChunkedArray):
        channels = channels.combine_chunks()
    if not isinstance(channels, pa.Array):
        channels = pa.array(list(channels), type=pa.list_(pa.string()))
    n = len(channels)
    out = np.zeros((n, len(order)), dtype=bool)
    if n == 0:
        return out
    rows = pc.list_parent_indices(channels).to_numpy()
    col = pc.index_in(pc.list_flatten(channels), value_set=pa.array(list(order), type=pa.string()))
    col = col.fill_null(-1).to_numpy()
    keep = col >= 0
    out[rows[keep], col[keep]] = True
    return out


def choose_channels(
    subscribed: np.ndarray,
    engagement: np.ndarray,
    available: np.ndarray,
    n_per_user: int,
) -> np.ndarray:
    """Pick each user's channels for tonight.

    Parameters
    ----------
    subscribed : ndarray, bool (n, P)
        Columns are personal channels in priority order.
    engagement : ndarray, float (n, P)
        Positive engagements per channel (higher is preferred).
    available : ndarray, bool (n, P)
        False where the user's caps leave no room on that channel.
    n_per_user : int
        How many channels per user.

    Returns
    -------
    ndarray, int64 (n, n_per_user)
        Column indices into the P channels, most preferred first; -1 where
        the user has fewer usable channels.
    """
    ok = np.asarray(subscribed, dtype=bool) & np.asarray(available, dtype=bool)
    score = np.where(ok, np.asarray(engagement, dtype=np.float64), -np.inf)
    # a stable sort of the negated score keeps priority order (the columns) among ties
    order = np.argsort(-score, axis=1, kind="stable")[:, :n_per_user]
    picked_ok = np.take_along_axis(ok, order, axis=1)
    return np.where(picked_ok, order, -1).astype(np.int64)
