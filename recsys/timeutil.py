"""Parsing points in time given on the command line or in calls."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from recsys.exceptions import ConfigError
from recsys.taxonomy import Taxonomy

#: a point in time as callers give it: an ISO 8601 text (or a date alone), a datetime or a
#: Timestamp; :func:`parse_time` checks it and returns a UTC Timestamp
TimeLike = str | dt.datetime | pd.Timestamp


def aware_timestamp(value: object, *, name: str = "time") -> pd.Timestamp:
    """Return ``value`` as a UTC timestamp, requiring an explicit time zone.

    The one parser of points in time that must carry their offset (``as_of``,
    a split time); :func:`parse_time` adds the city-day reading of a date.

    Raises
    ------
    ConfigError
        Naming ``name`` and the bad value, for unparsable or naive values.
    """
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        ts = pd.NaT
    if ts is pd.NaT:
        raise ConfigError(
            f"{name} must be a timezone-aware timestamp; {value!r} is not an ISO 8601 timestamp"
            " (e.g. 2026-06-01T00:00:00+08:00)"
        )
    if ts.tzinfo is None:
        raise ConfigError(
            f"{name} {value!r} has no time zone offset: {name} must be timezone-aware;"
            " add an offset such as +08:00 or Z"
        )
    return ts.tz_convert("UTC")


def parse_time(value: TimeLike, taxonomy: Taxonomy, *, name: str = "time") -> pd.Timestamp:
    """Return a tz-aware UTC timestamp for ``value``.

    A date alone (``YYYY-MM-DD``) means midnight at the start of that day in
    the city's time zone; a date-time needs an offset (``+08:00`` or ``Z``).

    Raises
    ------
    ConfigError
        Naming ``name`` and the bad value, for unparsable or naive date-times.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            ts = pd.Timestamp(text)
        except (ValueError, TypeError):
            ts = pd.NaT
        if ts is pd.NaT:
            raise ConfigError(
                f"{name} {value!r} is not a date or date-time; use YYYY-MM-DD or ISO 8601 with an offset"
            )
        if ts.tzinfo is None and len(text) == 10:
            # a date alone is that day's midnight in the city's time zone
            return ts.tz_localize(taxonomy.tz).tz_convert("UTC")
        value = text
    return aware_timestamp(value, name=name)


def parse_zone(value: object, *, name: str = "time zone") -> ZoneInfo:
    """Return the IANA time zone ``value`` names (e.g. ``Asia/Shanghai``, ``UTC``).

    Raises
    ------
    ConfigError
        Naming ``name`` and the bad value, if it is not a known zone.
    """
    if isinstance(value, ZoneInfo):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError, OSError):  # ValueError: a path-like key such as "../x"
            pass
    raise ConfigError(f"{name} {value!r} is not an IANA time zone; e.g. Asia/Shanghai, Europe/Berlin, UTC")


#: times a command-line option may name: the validator's plausible range for data
#: (recsys.schema MIN_TIME / MAX_TIME); outside it a time is a typo, and past 2262 it
#: does not fit the nanosecond timestamps the engine computes with
OPTION_TIME_RANGE = ("1990-01-01T00:00:00Z", "2100-01-01T00:00:00Z")


def parse_option_time(value: str, taxonomy: Taxonomy, *, name: str) -> pd.Timestamp:
    """Parse a time option (``--now``, ``--as-of``): a date (city midnight) or ISO 8601 with an offset.

    Raises
    ------
    ConfigError
        Naming the option and value: unparsable, naive, or outside
        :data:`OPTION_TIME_RANGE`.
    """
    try:
        ts = parse_time(value, taxonomy, name=name)
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{name} {value!r} is outside the supported range {_range_text()}") from None
    lo, hi = (pd.Timestamp(x) for x in OPTION_TIME_RANGE)
    if not lo <= ts < hi:
        raise ConfigError(f"{name} {value!r} is outside the supported range {_range_text()}")
    return ts


def _range_text() -> str:
    lo, hi = (x[:10] for x in OPTION_TIME_RANGE)
    return f"{lo} .. {hi} (exclusive)"
