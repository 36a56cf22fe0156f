"""The log's window in the city's time zone, and what the calendar does to it.

Times inside the generator are int64 seconds since the Unix epoch (UTC).
The window is ``days`` whole local days ending at ``end`` (midnight at the
start of the ``end`` date in the city's zone, as :func:`recsys.timeutil.parse_time`
reads a date): every generated event time ``t`` satisfies ``start <= t < end``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence
from zoneinfo import ZoneInfo

import numpy as np

from recsys.synthetic.spec import Campaign
from recsys.taxonomy import calendar_active

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Window:
    """The log's days.

    Attributes
    ----------
    dates : tuple of datetime.date
        The local dates, oldest first (length ``D``).
    day_start : ndarray int64 (D + 1,)
        Epoch seconds of each local midnight; the last entry is ``end``.
    weekday : ndarray int64 (D,)
        Monday = 0.
    timezone : str
    """

    dates: tuple[dt.date, ...]
    day_start: np.ndarray
    weekday: np.ndarray
    timezone: str

    @property
    def start(self) -> int:
        """Epoch seconds of the window's first midnight."""
        return int(self.day_start[0])

    @property
    def end(self) -> int:
        """Epoch seconds of the window's end (exclusive)."""
        return int(self.day_start[-1])

    @property
    def n_days(self) -> int:
        """How many days the window has."""
        return len(self.dates)


def local_midnight(date: dt.date, timezone: str) -> int:
    """Epoch seconds of midnight at the start of ``date`` in ``timezone``."""
    return int(dt.datetime.combine(date, dt.time(0), tzinfo=ZoneInfo(timezone)).timestamp())


def make_window(end_date: dt.date, days: int, timezone: str) -> Window:
    """Return the ``days`` local days before ``end_date`` (which is excluded)."""
    dates = tuple(end_date - dt.timedelta(days=days - k) for k in range(days))
    starts = [local_midnight(d, timezone) for d in dates] + [local_midnight(end_date, timezone)]
    return Window(
        dates=dates,
        day_start=np.array(starts, dtype=np.int64),
        weekday=np.array([d.weekday() for d in dates], dtype=np.int64),
        timezone=timezone,
    )


def campaign_active(campaign: Campaign, date: dt.date) -> bool:
    """Whether ``campaign`` runs on local ``date`` (the taxonomy calendar's own rule)."""
    return calendar_active(campaign.month, campaign.day, campaign.length_days, campaign.rule, date)


def campaign_effects(
    campaigns: Sequence[Campaign], dates: Sequence[dt.date], n_topics: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the calendar does on each date.

    Returns
    -------
    logit : ndarray float64 (len(dates), n_topics)
        Engagement boost of each topic.
    policy : ndarray float64 (len(dates), n_topics)
        How much more the logging policy pushes each topic (0 = as usual).
    volume : ndarray float64 (len(dates),)
        Extra share of impressions that day.
    """
    logit = np.zeros((len(dates), n_topics))
    policy = np.zeros((len(dates), n_topics))
    volume = np.zeros(len(dates))
    for d, date in enumerate(dates):
        for c in campaigns:
            if campaign_active(c, date):
                topics = list(c.topics)
                logit[d, topics] += c.logit
                policy[d, topics] += c.policy
                volume[d] += c.volume
    return logit, policy, volume


def campaign_days(campaigns: Sequence[Campaign], dates: Sequence[dt.date]) -> list[tuple[int, Campaign]]:
    """Every (day index, campaign) pair of a campaign's first day in ``dates``."""
    out = []
    for d, date in enumerate(dates):
        for c in campaigns:
            if campaign_active(c, date) and (d == 0 or not campaign_active(c, dates[d - 1])):
                out.append((d, c))
    return out
