"""Parsing points in time given on the command line or in calls."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from recsys.exceptions import ConfigError
from recsys.taxonomy import Taxonomy


def parse_time(value: str | dt.datetime | pd.Timestamp, taxonomy: Taxonomy, *, name: str = "time") -> pd.Timestamp:
    """Return a tz-aware UTC timestamp for ``value``.

    A date alone (``YYYY-MM-DD``) means midnight at the start of that day in
    the city's time zone; a date-time needs an offset (``+08:00`` or ``Z``).

    Raises
    ------
    ConfigError
        Naming ``name`` and the bad value, for unparsable or naive date-times.
    """
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        ts = pd.Timestamp(value)
    else:
        text = str(value).strip()
        try:
            ts = pd.Timestamp(text)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{name} {value!r} is not a date or date-time; use YYYY-MM-DD or ISO 8601 with an offset"
            ) from None
        if ts.tzinfo is None and len(text) == 10:
            ts = ts.tz_localize(taxonomy.tz)
    if ts.tzinfo is None:
        raise ConfigError(f"{name} {value!r} has no time zone; add an offset such as +08:00 or Z")
    return ts.tz_convert("UTC")
