"""The places table: where and when a broadcast channel shows content, and to whom.

A broadcast slot has no single recipient: it is a **place** (a TV or radio
station, a cinema's pre-show, a kiosk screen) with an **audience mix** -- the
shares of the audience by group, and by sub-group where known. The table is
optional in the data contract (README, "The data contract"); this module reads
it, checks it and returns one normalized row per place.

The contract's column types and codes are checked by the same validator as
the other tables (:func:`recsys.schema.validate_places`). A place is
configuration, not a log, so a bad row is not quarantined: the first one
stops the run with a one-line error naming the row, the value and what would
be valid.

Audience mix
------------
A JSON object (a string in CSV, a string or a struct in Parquet) mapping a
group code, or a sub-group code, to its share: ``{"farmer": 0.6,
"elderly": 0.3, "youth": 0.1}``. A sub-group key is that part of its group
(``elderly`` is part of ``resident``); a group key is the rest of the group,
sub-group unknown. Shares are >= 0 and sum to 1 within
:data:`SHARE_TOLERANCE`. An absent (null or empty) mix is the mix of the
region's registered users by (group, sub-group), which needs the users table.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys import schema
from recsys.config import is_number
from recsys.exceptions import SchemaError, UnknownCodeError
from recsys.taxonomy import Taxonomy

#: a mix may miss 1 by this much (shares rounded to two decimals, for instance)
SHARE_TOLERANCE = 0.01
#: ``HH:MM-HH:MM`` in local time; an end before the start runs past midnight
_HOURS_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")
#: where a place's mix came from
SOURCE_GIVEN, SOURCE_USERS = "given", "users"
#: output columns, in order
PLACE_COLUMNS = (
    C.PLACE_ID,
    C.CHANNEL,
    C.REGION,
    C.NAME,
    C.AUDIENCE,
    C.SLOTS_PER_DAY,
    C.SLOT_SECONDS,
    C.ACTIVE_HOURS,
    "audience_source",
)


def _where(origin: str, row: int, place_id: Any) -> str:
    return f"{origin}: places row {row} (place_id {place_id!r})"


def _parse_mix(value: Any, where: str) -> dict[str, float] | None:
    """The raw mix of one cell as {code: share}; None when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise SchemaError(
                f'{where}: audience {text[:80]!r} is not a JSON object such as {{"farmer": 0.6, "elderly": 0.4}}'
            ) from None
    if not isinstance(value, dict):
        raise SchemaError(
            f"{where}: audience must be an object of code -> share such as "
            f'{{"farmer": 0.6, "elderly": 0.4}}, got {type(value).__name__}'
        )
    # a Parquet struct lists every field of the column; None = not in this row's mix
    mix = {str(k): v for k, v in value.items() if v is not None}
    if not mix:
        return None
    out: dict[str, float] = {}
    for code, share in mix.items():
        if not is_number(share) or not math.isfinite(share) or share < 0:
            raise SchemaError(f"{where}: audience share of {code!r} is {share!r}; valid: a number >= 0")
        out[code] = float(share)
    return out


def _check_mix(mix: dict[str, float], taxonomy: Taxonomy, where: str) -> dict[str, float]:
    for code in mix:
        if code not in taxonomy.groups and code not in taxonomy.sub_groups:
            raise UnknownCodeError(
                f"{where}: unknown group {code!r} in audience; valid: the groups "
                f"{', '.join(taxonomy.groups)} or their sub-groups {', '.join(taxonomy.sub_groups)}"
            )
    total = sum(mix.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise SchemaError(f"{where}: audience shares sum to {total:.4g}; they must sum to 1 (within {SHARE_TOLERANCE})")
    return {code: share / total for code, share in mix.items() if share > 0}


def region_mixes(users: pd.DataFrame, taxonomy: Taxonomy) -> dict[str, dict[str, float]]:
    """Each region's registered users as an audience mix.

    A user with a sub-group counts under it, one without under the group.

    Parameters
    ----------
    users : pandas.DataFrame
        A clean users table (``group``, ``region``, optional ``sub_group``).
    taxonomy : Taxonomy

    Returns
    -------
    dict
        Region code -> {group or sub-group code: share}; regions without users are absent.
    """
    sub = users[C.SUB_GROUP].astype(str) if C.SUB_GROUP in users.columns else pd.Series("", index=users.index)
    key = sub.where(sub != "", users[C.GROUP].astype(str))
    counts = pd.DataFrame({C.REGION: users[C.REGION].astype(str), "key": key}).value_counts()
    out: dict[str, dict[str, float]] = {}
    for region, block in counts.groupby(level=0, sort=False):
        total = float(block.sum())
        out[str(region)] = {str(k[1]): float(v) / total for k, v in block.sort_index().items()}
    return out


def _slots(value: float, where: str) -> int:
    if math.isnan(value):
        return 1
    if value < 1 or value != math.floor(value):
        raise SchemaError(f"{where}: slots_per_day={value:g}; valid: a whole number >= 1")
    return int(value)


def _slot_seconds(value: float, where: str) -> float:
    if math.isnan(value):
        raise SchemaError(f"{where}: slot_seconds is empty; a broadcast place needs its airtime per slot (> 0 s)")
    if value <= 0 or not math.isfinite(value):
        raise SchemaError(f"{where}: slot_seconds={value:g}; valid: a number of seconds > 0")
    return float(value)


def hours_window(hours: str) -> tuple[int, int]:
    """A checked ``active_hours`` value as (start, end) minutes from the day's local midnight.

    ``""`` is the whole day, ``(0, 1440)``; an end at or before the start runs
    past midnight (``"18:00-02:00"`` is ``(1080, 1560)``).
    """
    match = _HOURS_RE.match(hours) if hours else None
    if match is None:
        return 0, 24 * 60
    h1, m1, h2, m2 = (int(x) for x in match.groups())
    start = h1 * 60 + m1
    length = ((h2 * 60 + m2) - start) % (24 * 60) or 24 * 60
    return start, start + length


def _airtime_fits(hours: str, slots: int, seconds: float, where: str) -> None:
    """Refuse more airtime a day than the place's active hours hold."""
    start, end = hours_window(hours)
    minutes = end - start
    if slots * seconds > minutes * 60 + 1e-9:
        raise SchemaError(
            f"{where}: {slots} slots of {seconds:g} s need {slots * seconds / 3600:.4g} h a day, more than its "
            f"active hours {hours or '(all day)'} hold ({minutes / 60:.4g} h)"
        )


def _hours(value: str, where: str) -> str:
    text = value.strip()
    if text and not _HOURS_RE.match(text):
        raise SchemaError(f"{where}: active_hours={text!r}; valid: empty (all day) or local HH:MM-HH:MM")
    return text


def load_places(
    path: str | Path | pd.DataFrame,
    taxonomy: Taxonomy,
    users: pd.DataFrame | None = None,
    *,
    origin: str | None = None,
) -> pd.DataFrame:
    """Read, check and normalize a places table.

    Parameters
    ----------
    path : str, Path or pandas.DataFrame
        ``places.parquet`` / ``places.csv`` (or a raw table in memory).
    taxonomy : Taxonomy
        The codes (groups, sub-groups, regions, which channels are personal).
    users : pandas.DataFrame, optional
        The clean users table; needed only when a place has no audience mix
        (its region's registered users give it).
    origin : str, optional
        What the messages call the table (default: the file's path, or
        ``places table`` for a DataFrame read elsewhere).

    Returns
    -------
    pandas.DataFrame
        One row per place, in file order, columns :data:`PLACE_COLUMNS`:
        ``audience`` is a dict {group or sub-group code: share} summing to 1,
        ``slots_per_day`` int64, ``slot_seconds`` float64, ``active_hours``
        ``""`` or ``HH:MM-HH:MM``, ``audience_source`` ``given`` or ``users``.

    Raises
    ------
    SchemaError
        If the file cannot be read or lacks a required column, or a row is
        bad: a personal channel, a slot length <= 0 or absent, more airtime
        than its active hours hold, a mix that does not sum to 1, a repeated
        ``place_id``, no mix and no users to derive it from. The message
        names the row.
    UnknownCodeError
        If a row names an unknown channel, region or group (in its mix).
    """
    if isinstance(path, pd.DataFrame):
        raw, origin = path.reset_index(drop=True), origin or "places table"
    else:
        raw, origin = schema.read_table(path, "places"), origin or str(path)
    if C.SLOT_SECONDS not in raw.columns:
        # optional for the contract's type check, but no place can be scheduled without its airtime
        raise SchemaError(f"{origin}: required column {C.SLOT_SECONDS!r} absent (each place's airtime per slot, s)")
    clean, quarantine = schema.validate_places(raw, taxonomy)
    if len(quarantine):
        first = quarantine.iloc[0]
        row = int(first[C.Q_ROW])
        pid = raw[C.PLACE_ID].iloc[row] if C.PLACE_ID in raw.columns else ""
        error = UnknownCodeError if first[C.Q_REASON] == C.R_UNKNOWN_CODE else SchemaError
        raise error(f"{_where(origin, row, pid)}: {first[C.Q_REASON]}: {first[C.Q_DETAIL]}")
    personal = set(taxonomy.personal_channels)
    broadcast = [c for c in taxonomy.channels if c not in personal]
    mixes_by_region = region_mixes(users, taxonomy) if users is not None else None
    audience = raw[C.AUDIENCE] if C.AUDIENCE in raw.columns else pd.Series([None] * len(raw))
    rows = []
    for pos, rec in enumerate(clean.itertuples(index=False)):
        rec = rec._asdict()
        where = _where(origin, pos, rec[C.PLACE_ID])
        if rec[C.CHANNEL] in personal:
            raise SchemaError(
                f"{where}: channel {rec[C.CHANNEL]!r} is a personal channel; places take a broadcast "
                f"channel: {', '.join(broadcast)}"
            )
        mix = _parse_mix(audience.iloc[pos], where)
        source = SOURCE_GIVEN
        if mix is None:
            if mixes_by_region is None:
                raise SchemaError(
                    f"{where}: no audience mix, and no users table to derive it from; give one or pass the users"
                )
            if rec[C.REGION] not in mixes_by_region:
                raise SchemaError(
                    f"{where}: no audience mix, and region {rec[C.REGION]!r} has no registered users to derive it from"
                )
            mix, source = dict(mixes_by_region[rec[C.REGION]]), SOURCE_USERS
        else:
            mix = _check_mix(mix, taxonomy, where)
        slots = _slots(rec[C.SLOTS_PER_DAY], where)
        seconds = _slot_seconds(rec[C.SLOT_SECONDS], where)
        hours = _hours(rec[C.ACTIVE_HOURS], where)
        _airtime_fits(hours, slots, seconds, where)
        rows.append(
            {
                C.PLACE_ID: rec[C.PLACE_ID],
                C.CHANNEL: rec[C.CHANNEL],
                C.REGION: rec[C.REGION],
                C.NAME: rec[C.NAME],
                C.AUDIENCE: mix,
                C.SLOTS_PER_DAY: slots,
                C.SLOT_SECONDS: seconds,
                C.ACTIVE_HOURS: hours,
                "audience_source": source,
            }
        )
    out = pd.DataFrame(rows, columns=list(PLACE_COLUMNS))
    out[C.SLOTS_PER_DAY] = out[C.SLOTS_PER_DAY].astype(np.int64)
    out[C.SLOT_SECONDS] = out[C.SLOT_SECONDS].astype(np.float64)
    return out


def mix_json(mix: dict[str, float]) -> str:
    """An audience mix as the JSON text the places table takes (sorted keys, 4 decimals)."""
    return json.dumps({k: round(float(v), 4) for k, v in sorted(mix.items())}, ensure_ascii=False)
