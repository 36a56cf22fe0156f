"""The push's measured lift over the holdout, and its own click-through.

For each night, the users the push could reach (not opted out, with a
subscribed personal channel, inside the run's segment, registered before the
night) fall in two arms by the salted-hash holdout the push itself used: the
**pushed arm** (everyone the push served, including the few it computed but
found nothing for: an intent-to-treat comparison, so nothing the push decided
after the coin toss can bias it) and the **holdout**. Over the ``days`` local
days from the night's date, each user's outcomes are counted from the events:

``engaged_items``
    distinct items the user positively engaged with (``click`` or stronger),
    anywhere;
``engaged_pushed_items``
    the same, counting only items the push sent to *anyone* that night (the
    holdout has no list of its own, so both arms are measured on one set);
``any_engagement``
    1 if the user engaged with anything at all (reach).

The lift is the pushed arm's mean minus the holdout's, with a 95% interval
(:mod:`recsys.lift.stats`), for everyone and per group, region and channel;
for a channel, the users are those subscribed to it and only engagements on
that channel count. The click-through of the push rows is the share of rows
whose user engaged with the row's item within the window, per channel and rank.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys import columns as C
from recsys.exceptions import DataError, SchemaError
from recsys.lift import inputs as I
from recsys.lift.stats import ArmMoments, arm_moments, cluster_moments, difference, distinct, mean_interval
from recsys.push.plan import parse_day
from recsys.taxonomy import Taxonomy, load_taxonomy

OUTCOMES = ("engaged_items", "engaged_pushed_items", "any_engagement")
DIMENSIONS = ("all", "group", "region", "channel")
#: below this many users in either arm a cell gets no interval
MIN_USERS = 30
#: the pushed arm's or the holdout's size may drift from the push's own count
#: (a users table that changed since); beyond this share lift says so
COUNT_TOLERANCE = 0.01

LIFT_COLUMNS = (
    "date_from",
    "date_to",
    "days",
    "dimension",
    "value",
    "outcome",
    "treated_users",
    "holdout_users",
    "treated_mean",
    "holdout_mean",
    "lift",
    "lift_low",
    "lift_high",
    "relative_lift",
    "p_value",
)
CTR_COLUMNS = (
    "date_from",
    "date_to",
    "days",
    C.CHANNEL,
    C.RANK,
    "rows",
    "users",
    "engaged_rows",
    "ctr",
    "ctr_low",
    "ctr_high",
)


@dataclass
class LiftResult:
    """What :func:`measure_lift` found.

    Attributes
    ----------
    lift : DataFrame
        :data:`LIFT_COLUMNS`, one row per (dimension, value, outcome).
    ctr : DataFrame
        :data:`CTR_COLUMNS`, one row per channel and rank (rank 0 = all ranks).
    summary : dict
        JSON-ready: the nights, windows, arm sizes, sources and warnings.
    """

    lift: pd.DataFrame
    ctr: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def _night_outcomes(
    ev: I.Events, mask: np.ndarray, pushed_item: np.ndarray, n_users: int, n_channels: int
) -> np.ndarray:
    """Outcome columns per user of the table: OUTCOMES overall, then OUTCOMES per channel.

    One sort of the (user, item, channel) keys serves every column: the
    distinct pairs overall are the runs of the sorted keys without their
    channel, and a channel's distinct pairs are its keys.
    """
    n_items, slots = max(len(ev.items), 1), n_channels + 1
    pair = ev.user[mask] * n_items + ev.item[mask]
    keys = distinct(pair * slots + (ev.channel[mask] + 1))
    pairs = keys // slots
    first = np.concatenate(([True], pairs[1:] != pairs[:-1])) if len(pairs) else np.zeros(0, dtype=bool)
    on_pushed = pushed_item[pairs % n_items] if len(pairs) else np.zeros(0, dtype=bool)
    user = pairs // n_items
    columns = []
    for keep in [first] + [keys % slots == k + 1 for k in range(n_channels)]:
        items = np.bincount(user[keep], minlength=n_users).astype(np.float64)
        pushed = np.bincount(user[keep & on_pushed], minlength=n_users).astype(np.float64)
        columns += [items, pushed, (items > 0).astype(np.float64)]
    return np.column_stack(columns)


def _eligible(users: I.Users, manifest: dict[str, Any], night_start: pd.Timestamp) -> np.ndarray:
    """Who the night's push could reach, by the push's own rules."""
    ok = ~users.opted_out & users.subscribed.any(axis=1)
    segment = manifest.get("segment") or {}
    if segment.get("group"):
        ok &= np.asarray(users.groups)[users.group] == segment["group"]
    if segment.get("region"):
        ok &= np.asarray(users.regions)[users.region] == segment["region"]
    if users.registered is not None:
        ok &= users.registered < night_start.value // 1000
    return ok


def _count_warning(day: dt.date, what: str, ours: int, theirs: Any, source: Path) -> str | None:
    if not isinstance(theirs, int) or abs(ours - theirs) <= COUNT_TOLERANCE * max(theirs, 1):
        return None
    return (
        f"{day}: {ours} users in the {what} by {source}, but the push counted {theirs}: "
        "the users table changed since that night (give the one it used with --users)"
    )


def measure_lift(
    pushes: str | Path,
    events: str | Path,
    date: str | dt.date,
    *,
    until: str | dt.date | None = None,
    days: int = 3,
    users: str | Path | None = None,
    taxonomy: Taxonomy | None = None,
    min_users: int = MIN_USERS,
) -> LiftResult:
    """Measure the push's lift over the holdout for the nights ``date .. until``.

    Parameters
    ----------
    pushes : path
        The push output folder (``recsys push --out``).
    events : path
        The events after the nights: a Parquet file, a folder of Parquet
        files, or a CSV file (contract ``events`` columns).
    date : str (YYYY-MM-DD) or datetime.date
        The (first) night.
    until : str or datetime.date, optional
        The last night of a range (inclusive); nights are pooled, users
        counted once per night, intervals clustered by user. Nights of the
        range without a nightly push are left out (said in the warnings).
    days : int, default 3
        Length of each night's window in local days, from the night's date.
    users : path, optional
        The users table that decides eligibility, groups and regions;
        default: the one the push read (``[push] users`` or its bundle's).
    taxonomy : Taxonomy, optional
        Codes and time zone; default the bundled city's.
    min_users : int, default 30
        Fewest users per arm for a cell's interval.

    Returns
    -------
    LiftResult

    Raises
    ------
    ConfigError
        On a bad option (days, dates, folders).
    DataError
        No nightly push or holdout for a night, or events that do not cover
        the windows ("not enough data for ...").
    SchemaError
        An input lacking a needed column or holding codes outside the taxonomy.
    """
    taxonomy = taxonomy if taxonomy is not None else load_taxonomy()
    days = I.check_days(days)
    first = parse_day(date)
    asked = I.night_dates(first, None if until is None else parse_day(until))
    tz = taxonomy.timezone
    nights, skipped = I.nights_with_push(pushes, asked)
    read = [I.read_night(pushes, day) for day in nights]
    source = I.users_source(read[0].manifest, users)
    warnings: list[str] = []
    if skipped:
        warnings.append(
            f"no nightly push on {len(skipped)} night(s) of the range ({', '.join(d.isoformat() for d in skipped)}); "
            "they are left out"
        )
    for night in read[1:]:
        other = I.users_source(night.manifest, users)
        if other != source:
            warnings.append(f"{night.day}: the push read users from {other}; lift uses {source} for every night")
    if users is None and not source.is_file():
        raise SchemaError(
            f"the users table the push of {nights[0]} read ({source}, from its manifest) is not there any more; "
            "give the users table with --users PATH"
        )
    table = I.read_users(source, taxonomy)
    n_users, n_channels = len(table.ids), len(table.channels)
    start = I.local_midnight(nights[0], tz)
    end = I.local_midnight(nights[-1] + dt.timedelta(days=days), tz)
    last_day = I.local_midnight(nights[-1] + dt.timedelta(days=days - 1), tz)
    ev = I.read_events(events, table, start, end, last_day, tz)
    if not len(ev.user) and ev.unknown_users:
        # a lift of 0 measured on no one's events is not a measurement: the events are another city's
        raise DataError(
            f"{events}: none of the {ev.unknown_users:,} positive events between {start.tz_convert(tz).date()} and "
            f"{last_day.tz_convert(tz).date()} is by a user in {source}; are these events of the city the push ran for?"
        )

    # per user and arm (0 holdout, 1 pushed): outcome totals over the nights, and nights counted;
    # a user is one cluster, so this is all the intervals need, whatever the number of nights
    n_cols = len(OUTCOMES) * (1 + n_channels)
    totals = np.zeros((2, n_users, n_cols), dtype=np.float64)
    counted = np.zeros((2, n_users), dtype=np.float64)
    ctr_parts: list[pd.DataFrame] = []
    night_info = []
    for night in read:
        s = I.local_midnight(night.day, tz)
        e = I.local_midnight(night.day + dt.timedelta(days=days), tz)
        eligible = _eligible(table, night.manifest, s)
        held = pc.is_in(table.ids, value_set=night.holdout).to_numpy(zero_copy_only=False)
        treated, control = eligible & ~held, eligible & held
        rows = night.rows
        row_item = pc.index_in(rows.column(C.ITEM_ID), value_set=ev.items).fill_null(-1).to_numpy(zero_copy_only=False)
        pushed_item = np.zeros(len(ev.items), dtype=bool)
        pushed_item[row_item[row_item >= 0]] = True
        in_window = (ev.t >= s.value // 1000) & (ev.t < e.value // 1000)
        y = _night_outcomes(ev, in_window, pushed_item, n_users, n_channels)
        for a, members in ((0, control), (1, treated)):
            totals[a, members] += y[members]
            counted[a, members] += 1
        del y

        row_user = pc.index_in(rows.column(C.USER_ID), value_set=table.ids).fill_null(-1).to_numpy(zero_copy_only=False)
        known = row_user >= 0
        to_holdout = int((known & held[np.maximum(row_user, 0)]).sum())
        if to_holdout:
            warnings.append(
                f"{night.day}: {to_holdout} push rows went to held-out users; they count in the pushed rows' click-through only"
            )
        if (~known).any():
            warnings.append(f"{night.day}: {int((~known).sum())} push rows for users not in {source}; left out")
        n_items = max(len(ev.items), 1)
        engaged_pairs = distinct(ev.user[in_window] * n_items + ev.item[in_window])
        key = row_user * n_items + row_item
        hit = np.zeros(len(key), dtype=bool)
        ok = known & (row_item >= 0)
        if len(engaged_pairs):
            pos = np.minimum(np.searchsorted(engaged_pairs, key[ok]), len(engaged_pairs) - 1)
            hit[ok] = engaged_pairs[pos] == key[ok]
        # channel codes, not a Python string per row: a city's night has millions of rows
        channel = pc.dictionary_encode(rows.column(C.CHANNEL).cast(pa.string()).combine_chunks())
        names = np.asarray(channel.dictionary.to_pylist(), dtype=object)
        codes = channel.indices.to_numpy(zero_copy_only=False)
        channel_code = pd.Index(table.channels).get_indexer(names)[codes] if len(codes) else codes
        ctr_parts.append(
            pd.DataFrame(
                {
                    "user": row_user[known],
                    "channel_code": np.asarray(channel_code, dtype=np.int64)[known],
                    C.RANK: rows.column(C.RANK).to_numpy(zero_copy_only=False)[known],
                    "hit": hit[known].astype(np.float64),
                }
            )
        )
        man_users = night.manifest.get("users", {})
        for what, ours, theirs in (
            ("pushed arm", int(treated.sum()), man_users.get("computed")),
            ("holdout", int(control.sum()), man_users.get("skipped", {}).get("holdout")),
        ):
            note = _count_warning(night.day, what, ours, theirs, source)
            if note:
                warnings.append(note)
        night_info.append(
            {
                "date": night.day.isoformat(),
                "window": [s.tz_convert(tz).isoformat(), e.tz_convert(tz).isoformat()],
                "treated_users": int(treated.sum()),
                "holdout_users": int(control.sum()),
                "pushed_users": len(np.unique(row_user[known & treated[np.maximum(row_user, 0)]])),
                "rows": int(rows.num_rows),
                "push_counted": {
                    "computed": man_users.get("computed"),
                    "holdout": man_users.get("skipped", {}).get("holdout"),
                },
                "holdout_file_users": len(night.holdout),
            }
        )
        if not treated.any() or not control.any():
            empty = "pushed arm" if not treated.any() else "holdout"
            raise DataError(
                f"not enough data for lift on {night.day}: the {empty} has no eligible user in {source} "
                "(opted out, no personal channel, or outside the run's segment)"
            )

    span = {"date_from": asked[0].isoformat(), "date_to": asked[-1].isoformat(), "days": days}
    lift = _lift_table(table, totals, counted, span, min_users, by_channel=ev.has_channel)
    if not ev.has_channel:
        warnings.append(
            f"the events have no {C.CHANNEL!r} column: no per-channel rows (the click-through is still per push channel)"
        )
    ctr = _ctr_table(pd.concat(ctr_parts, ignore_index=True), table.channels, span, min_users)
    if ev.unknown_users:
        warnings.append(f"{ev.unknown_users} positive events by users not in {source}; left out")
    summary = {
        **span,
        "nights": night_info,
        "skipped_nights": [d.isoformat() for d in skipped],
        "users_source": str(source),
        "events": {"positive_in_windows": len(ev.user), "unknown_users": ev.unknown_users},
        "min_users": int(min_users),
        "outcomes": list(OUTCOMES),
        "warnings": warnings,
    }
    return LiftResult(lift, ctr, summary)


def _lift_table(
    users: I.Users,
    totals: np.ndarray,
    counted: np.ndarray,
    span: dict[str, Any],
    min_users: int,
    *,
    by_channel: bool = True,
) -> pd.DataFrame:
    """One row per (dimension, value, outcome) from the per-user, per-arm totals.

    ``by_channel`` False (events without a channel) leaves out the channel rows.
    """
    k = len(OUTCOMES)
    everyone = np.ones(len(users.ids), dtype=bool)
    # (dimension, the values, each user's cell, who belongs, first outcome column)
    breakdowns = [
        ("all", ("all",), np.zeros(len(users.ids), dtype=np.int64), everyone, 0),
        ("group", users.groups, users.group.astype(np.int64), everyone, 0),
        ("region", users.regions, users.region.astype(np.int64), everyone, 0),
    ]
    breakdowns += [
        ("channel", (channel,), np.zeros(len(users.ids), dtype=np.int64), users.subscribed[:, c], k * (1 + c))
        for c, channel in enumerate(users.channels)
        if by_channel
    ]
    frames = []
    for dimension, values, cell, belongs, column in breakdowns:
        for o, outcome in enumerate(OUTCOMES):
            moments = [
                cluster_moments(totals[a, belongs, column + o], counted[a, belongs], cell[belongs], len(values))
                for a in (1, 0)
            ]
            frames.append(_cells(dimension, values, outcome, *moments, min_users))
    table = pd.concat(frames, ignore_index=True)
    for key, value in reversed(list(span.items())):
        table.insert(0, key, value)
    return table[list(LIFT_COLUMNS)]


def _cells(
    dimension: str, values: tuple[str, ...], outcome: str, m1: ArmMoments, m0: ArmMoments, min_users: int
) -> pd.DataFrame:
    d = difference(m1, m0, min_users=min_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(d.holdout_mean > 0, d.diff / d.holdout_mean, np.nan)
    frame = pd.DataFrame(
        {
            "dimension": dimension,
            "value": list(values),
            "outcome": outcome,
            "treated_users": m1.clusters.astype(np.int64),
            "holdout_users": m0.clusters.astype(np.int64),
            "treated_mean": d.treated_mean,
            "holdout_mean": d.holdout_mean,
            "lift": d.diff,
            "lift_low": d.low,
            "lift_high": d.high,
            "relative_lift": relative,
            "p_value": d.p_value,
        }
    )
    # a value with nobody in either arm says nothing
    return frame[(frame["treated_users"] > 0) | (frame["holdout_users"] > 0)]


def _ctr_table(rows: pd.DataFrame, channels: tuple[str, ...], span: dict[str, Any], min_users: int) -> pd.DataFrame:
    out = []
    for code, part in rows.groupby("channel_code", sort=True):
        # a row on a channel outside the users' personal channels keeps no name here
        channel = channels[code] if code >= 0 else "(other)"
        ranks = part[C.RANK].to_numpy().astype(np.int64)
        values = np.unique(ranks)
        cell = np.searchsorted(values, ranks)
        user = part["user"].to_numpy()
        hit = part["hit"].to_numpy()
        # a user's rows of one channel are clustered either way (one list per night)
        for cells, labels in ((np.zeros(len(part), dtype=np.int64), [0]), (cell, values.tolist())):
            m = arm_moments(hit, cells, user, len(labels))
            mean, low, high = mean_interval(m, min_users=min_users)
            out.append(
                pd.DataFrame(
                    {
                        C.CHANNEL: channel,
                        C.RANK: np.asarray(labels, dtype=np.int16),
                        "rows": m.n.astype(np.int64),
                        "users": m.clusters.astype(np.int64),
                        "engaged_rows": m.sum_y.astype(np.int64),
                        "ctr": mean,
                        "ctr_low": low,
                        "ctr_high": high,
                    }
                )
            )
    if not out:
        table = pd.DataFrame({c: pd.Series(dtype=float) for c in CTR_COLUMNS[3:]})
    else:
        table = pd.concat(out, ignore_index=True)
    for key, value in reversed(list(span.items())):
        table.insert(0, key, value)
    return table[list(CTR_COLUMNS)]
