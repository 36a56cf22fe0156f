"""What ``recsys lift`` reads: the nights' pushes and holdouts, the users, the events.

Each reader checks its input where it comes in and says, in one line, which
file or option is wrong and what would be valid. Big columns stay Arrow
arrays until they are turned into integer codes, so a night of millions of
users costs a few hash look-ups, not a Python object per row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from recsys import columns as C
from recsys import schema
from recsys.config import is_int
from recsys.exceptions import ArtifactError, ConfigError, DataError, SchemaError
from recsys.push.channels import subscriptions
from recsys.push.writer import HOLDOUT_FILE, MANIFEST_FILE, NIGHTLY, partition_dir
from recsys.taxonomy import Taxonomy
from recsys.training.serving import users_table_path

#: the columns lift needs from each input (anything else is ignored)
USER_COLUMNS = (C.USER_ID, C.GROUP, C.REGION, C.CHANNELS, C.PUSH_OPT_OUT)
EVENT_COLUMNS = (C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP)
ROW_COLUMNS = (C.USER_ID, C.ITEM_ID, C.RANK)
#: most nights one run may pool (a year); a guard against a mistyped year
MAX_NIGHTS = 366
MAX_DAYS = 60


def check_days(days: Any) -> int:
    """Validate the window length ``--days`` (1 .. 60)."""
    if not is_int(days) or not 1 <= int(days) <= MAX_DAYS:
        raise ConfigError(f"--days must be a whole number of days in 1..{MAX_DAYS}, got {days!r}")
    return int(days)


def night_dates(first: dt.date, last: dt.date | None) -> list[dt.date]:
    """The nights ``first .. last`` (inclusive; ``last`` None = ``first`` alone)."""
    last = first if last is None else last
    if last < first:
        raise ConfigError(f"--until {last} is before --date {first}; give a range that runs forward")
    n = (last - first).days + 1
    if n > MAX_NIGHTS:
        raise ConfigError(f"--date {first} --until {last} spans {n} nights; at most {MAX_NIGHTS} per run")
    return [first + dt.timedelta(days=k) for k in range(n)]


def local_midnight(day: dt.date, timezone: str) -> pd.Timestamp:
    """The moment local ``day`` starts, in UTC."""
    return pd.Timestamp(day).tz_localize(timezone).tz_convert("UTC")


@dataclass(frozen=True)
class Night:
    """One night's push as lift needs it.

    Attributes
    ----------
    day : datetime.date
    manifest : dict
        The nightly run's manifest.
    holdout : pyarrow.Array of string
        The users the nightly run held out.
    rows : pyarrow.Table
        Every push row of the date, all kinds: ``user_id, item_id, rank,
        channel, kind``.
    """

    day: dt.date
    manifest: dict[str, Any]
    holdout: pa.Array
    rows: pa.Table


def _dates_in(pushes: Path) -> list[str]:
    return sorted(p.name.split("=", 1)[1] for p in pushes.glob("date=*") if p.is_dir())


def _pushes_root(pushes: str | Path) -> Path:
    root = Path(pushes)
    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        raise ConfigError(f"--pushes {root}: {what}; give the push output folder (recsys push --out)")
    return root


def nights_with_push(pushes: str | Path, nights: Sequence[dt.date]) -> tuple[list[dt.date], list[dt.date]]:
    """Split a range of nights into those with a nightly push and those without.

    A range (``--until``) measures the nights the push ran and leaves out the
    others (a night the scheduler skipped is no reason to refuse a month);
    a single night without a push is refused by :func:`read_night`.

    Raises
    ------
    ConfigError
        If ``pushes`` is not a folder.
    DataError
        If no night of the range has a nightly push.
    """
    root = _pushes_root(pushes)
    present = [day for day in nights if (partition_dir(root, day, NIGHTLY) / MANIFEST_FILE).is_file()]
    missing = [day for day in nights if day not in present]
    if not present and len(nights) > 1:
        have = _dates_in(root)
        listed = ", ".join(have[-5:]) if have else "none"
        raise DataError(f"--pushes {root}: no nightly push from {nights[0]} to {nights[-1]} (dates there: {listed})")
    return (present, missing) if present else (list(nights), [])


def read_night(pushes: str | Path, day: dt.date) -> Night:
    """Read the pushes of ``day``: the nightly manifest and holdout, and every kind's rows.

    Raises
    ------
    ConfigError
        If ``pushes`` is not a folder.
    DataError
        If there is no nightly push for ``day``, it held nobody out, or its
        holdout file is missing.
    SchemaError
        If a rows file lacks a needed column.
    """
    root = _pushes_root(pushes)
    nightly = partition_dir(root, day, NIGHTLY)
    if not (nightly / MANIFEST_FILE).is_file():
        have = _dates_in(root)
        listed = ", ".join(have[-5:]) if have else "none"
        raise DataError(f"--pushes {root}: no nightly push for {day} (dates there: {listed})")
    try:
        manifest = json.loads((nightly / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{nightly / MANIFEST_FILE}: unreadable manifest ({exc})") from None
    path = nightly / HOLDOUT_FILE
    if not path.is_file():
        raise DataError(f"{path}: the push of {day} wrote no holdout; lift compares pushed users with it")
    try:
        held = pq.read_table(path, columns=[C.USER_ID]).column(C.USER_ID)
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise SchemaError(f"{path}: cannot read column {C.USER_ID!r} of the holdout ({exc})") from None
    if len(held) == 0:
        share = manifest.get("config", {}).get("holdout_share")
        raise DataError(
            f"{path}: the push of {day} held out nobody (holdout_share {share}); "
            "there is no one to compare with: set [push] holdout_share > 0"
        )
    return Night(day, manifest, held.combine_chunks().cast(pa.string()), _read_rows(root, day))


def _read_rows(root: Path, day: dt.date) -> pa.Table:
    parts = []
    for path in sorted(root.glob(f"date={day.isoformat()}/kind=*/channel=*/part-*.parquet")):
        kind, channel = (part.split("=", 1)[1] for part in path.parts[-3:-1])
        try:
            table = pq.read_table(path, columns=list(ROW_COLUMNS))
        except (OSError, pa.ArrowInvalid) as exc:
            raise SchemaError(f"{path}: cannot read push rows {', '.join(ROW_COLUMNS)} ({exc})") from None
        n = table.num_rows
        parts.append(
            pa.table(
                {
                    C.USER_ID: table.column(C.USER_ID).cast(pa.string()),
                    C.ITEM_ID: table.column(C.ITEM_ID).cast(pa.string()),
                    C.RANK: table.column(C.RANK).cast(pa.int16()),
                    C.CHANNEL: pa.repeat(pa.scalar(channel), n).dictionary_encode(),
                    "kind": pa.repeat(pa.scalar(kind), n).dictionary_encode(),
                }
            )
        )
    if not parts:
        schema = pa.schema(
            [
                (C.USER_ID, pa.string()),
                (C.ITEM_ID, pa.string()),
                (C.RANK, pa.int16()),
                (C.CHANNEL, pa.dictionary(pa.int32(), pa.string())),
                ("kind", pa.dictionary(pa.int32(), pa.string())),
            ]
        )
        return schema.empty_table()
    return pa.concat_tables(parts, promote_options="permissive").combine_chunks()


def users_source(manifest: dict[str, Any], explicit: str | Path | None) -> Path:
    """The users table that decides who was eligible: ``--users``, else the push's own.

    The push read its users from ``push --users`` or ``[push] users`` when
    given (the manifest's ``users_path``), else from its model bundle's
    ``users.parquet``; lift reads the same by default.
    """
    if explicit is not None:
        return Path(explicit)
    configured = str(manifest.get("users_path") or manifest.get("config", {}).get("users") or "")
    if configured:
        return Path(configured)
    return users_table_path(str(manifest.get("model", "")))


@dataclass(frozen=True)
class Users:
    """The users table as integer codes.

    Attributes
    ----------
    ids : pyarrow.Array of string (n,)
    group, region : ndarray int (n,)
        Codes into ``groups`` / ``regions``.
    groups, regions : tuple of str
    opted_out : ndarray bool (n,)
    subscribed : ndarray bool (n, P)
        Personal channels, columns in ``channels`` order.
    channels : tuple of str
    registered : ndarray int64 (n,) or None
        Registration time, epoch microseconds UTC (``int64`` min when unknown).
    source : Path
    """

    ids: pa.Array
    group: np.ndarray
    region: np.ndarray
    groups: tuple[str, ...]
    regions: tuple[str, ...]
    opted_out: np.ndarray
    subscribed: np.ndarray
    channels: tuple[str, ...]
    registered: np.ndarray | None
    source: Path


def _codes(column: pa.ChunkedArray | pa.Array, valid: Sequence[str], path: Path, name: str) -> np.ndarray:
    codes = pc.index_in(column, value_set=pa.array(list(valid), type=pa.string()))
    if codes.null_count:
        bad = pc.filter(column, pc.is_null(codes))
        example = bad[0].as_py() if len(bad) else None
        raise SchemaError(
            f"{path}: column {name!r} has {codes.null_count} value(s) outside the taxonomy, e.g. {example!r}; "
            f"valid: {', '.join(valid)}"
        )
    return codes.to_numpy(zero_copy_only=False).astype(np.int16)


def read_users(path: str | Path, taxonomy: Taxonomy) -> Users:
    """Read the users lift needs (``user_id, group, region, channels, push_opt_out``; ``registered_at`` if present).

    Raises
    ------
    SchemaError
        If the file is missing or unreadable, lacks a needed column, has a
        code outside the taxonomy, or repeats a user id.
    """
    p = Path(path)
    if not p.is_file():
        raise SchemaError(f"--users {p}: no such file; give the users table the push used (.parquet or .csv)")
    if p.suffix.lower() in (".parquet", ".pq"):
        try:
            names = pq.read_schema(p).names
        except (OSError, pa.ArrowInvalid) as exc:
            raise SchemaError(f"{p}: not a readable Parquet file ({exc})") from None
        missing = [c for c in (C.USER_ID, C.GROUP, C.REGION) if c not in names]
        if missing:
            raise SchemaError(
                f"{p}: users table lacks column(s) {', '.join(missing)}; has {', '.join(names[:8])}; "
                f"lift needs {', '.join(USER_COLUMNS)}"
            )
        wanted = [c for c in (*USER_COLUMNS, C.REGISTERED_AT) if c in names]
        table = pq.read_table(p, columns=wanted)
    else:
        frame = schema.read_table(p, "users")
        if C.CHANNELS in frame.columns:
            frame[C.CHANNELS] = [
                [c for c in str(v).split("|") if c] if isinstance(v, str) else v for v in frame[C.CHANNELS]
            ]
        if C.PUSH_OPT_OUT in frame.columns:
            frame[C.PUSH_OPT_OUT] = frame[C.PUSH_OPT_OUT].astype(str).str.lower().isin(("true", "1", "yes"))
        if C.REGISTERED_AT in frame.columns:
            frame[C.REGISTERED_AT] = pd.to_datetime(frame[C.REGISTERED_AT], utc=True, errors="coerce")
        table = pa.Table.from_pandas(
            frame[[c for c in (*USER_COLUMNS, C.REGISTERED_AT) if c in frame.columns]], preserve_index=False
        )
    ids = table.column(C.USER_ID).cast(pa.string()).combine_chunks()
    if pc.count_distinct(ids).as_py() != len(ids):
        raise SchemaError(f"{p}: column {C.USER_ID!r} repeats user ids; each user must appear once")
    n = len(ids)
    groups, regions = tuple(taxonomy.groups), tuple(taxonomy.regions)
    personal = tuple(taxonomy.personal_channels)
    group = _codes(table.column(C.GROUP).cast(pa.string()), groups, p, C.GROUP)
    region = _codes(table.column(C.REGION).cast(pa.string()), regions, p, C.REGION)
    if C.PUSH_OPT_OUT in table.column_names:
        opted = table.column(C.PUSH_OPT_OUT).cast(pa.bool_()).fill_null(False).to_numpy(zero_copy_only=False)
    else:
        opted = np.zeros(n, dtype=bool)
    if C.CHANNELS in table.column_names:
        subscribed = subscriptions(table.column(C.CHANNELS), personal)
    else:
        # the contract's default: every personal channel
        subscribed = np.ones((n, len(personal)), dtype=bool)
    registered = None
    if C.REGISTERED_AT in table.column_names:
        stamps = table.column(C.REGISTERED_AT)
        if pa.types.is_timestamp(stamps.type):
            registered = (
                stamps.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).fill_null(np.iinfo(np.int64).min)
            ).to_numpy()
    return Users(
        ids, group, region, groups, regions, np.asarray(opted, dtype=bool), subscribed, personal, registered, p
    )


@dataclass(frozen=True)
class Events:
    """Positive engagements in the windows, as codes.

    Attributes
    ----------
    user : ndarray int64 (n,)
        Row in the users table (events of users it does not know are dropped
        and counted in ``unknown_users``).
    item : ndarray int64 (n,)
        Code into ``items``.
    channel : ndarray int64 (n,)
        Code into the users' personal channels; -1 for any other or none.
    t : ndarray int64 (n,)
        Epoch microseconds, UTC.
    items : pyarrow.Array of string
    unknown_users : int
    has_channel : bool
        Whether the events name a channel at all; without one there are no
        per-channel rows (zeros there would read as "no effect").
    """

    user: np.ndarray
    item: np.ndarray
    channel: np.ndarray
    t: np.ndarray
    items: pa.Array
    unknown_users: int
    has_channel: bool = True


def _event_dataset(path: Path) -> ds.Dataset:
    if not path.exists():
        raise SchemaError(f"--events {path}: no such file or folder; give the events (Parquet file or folder)")
    if path.is_file() and path.suffix.lower() == ".csv":
        frame = schema.read_table(path, "events")
        text = frame[C.TIMESTAMP].astype(str).str.strip()
        seconds = text.str.fullmatch(r"-?\d+")
        # a time without an offset would be a guess about its zone: the contract refuses it
        naive = ~seconds & ~text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
        if naive.any():
            raise SchemaError(
                f"{path}: column {C.TIMESTAMP!r} has {int(naive.sum())} time(s) without a UTC offset, "
                f"e.g. {text[naive].iloc[0]!r}; give ISO 8601 with an offset or Unix seconds"
            )
        stamps = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
        stamps[seconds] = pd.to_datetime(text[seconds].astype("int64"), unit="s", utc=True)
        stamps[~seconds] = pd.to_datetime(text[~seconds], utc=True, errors="coerce", format="ISO8601")
        if stamps.isna().any():
            bad = int(stamps.isna().sum())
            raise SchemaError(
                f"{path}: column {C.TIMESTAMP!r} has {bad} unparsable time(s); give ISO 8601 with an offset"
            )
        frame[C.TIMESTAMP] = stamps
        keep = [c for c in (*EVENT_COLUMNS, C.CHANNEL) if c in frame.columns]
        return ds.dataset(pa.Table.from_pandas(frame[keep], preserve_index=False))
    try:
        if path.is_dir():
            files = sorted(
                str(f)
                for f in path.rglob("*.parquet")
                if not any(part.startswith((".", "_")) for part in f.relative_to(path).parts)
            )
            if not files:
                raise SchemaError(f"--events {path}: the folder holds no .parquet file")
            return ds.dataset(files, format="parquet")
        return ds.dataset(str(path), format="parquet")
    except (OSError, pa.ArrowInvalid) as exc:
        raise SchemaError(f"--events {path}: not readable as Parquet ({exc})") from None


def read_events(
    path: str | Path,
    users: Users,
    start: pd.Timestamp,
    end: pd.Timestamp,
    last_day: pd.Timestamp,
    timezone: str = "UTC",
) -> Events:
    """Read the positive engagements between ``start`` and ``end`` (UTC, end exclusive).

    Parameters
    ----------
    path : path
        A Parquet file, a folder of Parquet files (read recursively; names
        starting with ``.`` or ``_`` skipped) or a CSV file of the events table.
    users : Users
    start, end : pandas.Timestamp
    last_day : pandas.Timestamp
        The start of the windows' last local day: the events must reach it.
    timezone : str
        The city's zone, for the times in messages.

    Raises
    ------
    SchemaError
        If the events lack a needed column or its timestamps have no zone.
    DataError
        If the events do not cover the windows ("not enough data for ...").
    """
    p = Path(path)
    data = _event_dataset(p)
    names = data.schema.names
    missing = [c for c in EVENT_COLUMNS if c not in names]
    if missing:
        raise SchemaError(
            f"--events {p}: column(s) {', '.join(map(repr, missing))} absent; has {', '.join(names[:10])}; "
            f"lift needs {', '.join(EVENT_COLUMNS)} (and {C.CHANNEL!r} for the per-channel rows)"
        )
    ts_type = data.schema.field(C.TIMESTAMP).type
    if not pa.types.is_timestamp(ts_type) or ts_type.tz is None:
        raise SchemaError(
            f"--events {p}: column {C.TIMESTAMP!r} is {ts_type}, expected a timezone-aware timestamp "
            "(the contract stores UTC); run `recsys validate` on the events first"
        )
    try:
        return _scan(p, data, users, start, end, last_day, timezone)
    except (OSError, pa.ArrowInvalid) as exc:
        # e.g. a file the writer is still appending to: say which input, never a traceback
        raise SchemaError(f"--events {p}: cannot read the events ({exc}); is a file still being written?") from None


def _scan(
    p: Path,
    data: ds.Dataset,
    users: Users,
    start: pd.Timestamp,
    end: pd.Timestamp,
    last_day: pd.Timestamp,
    timezone: str,
) -> Events:
    names = data.schema.names
    ts = ds.field(C.TIMESTAMP)
    lo, hi, reach = (pa.scalar(x.to_pydatetime(), type=pa.timestamp("us", tz="UTC")) for x in (start, end, last_day))
    first_day_end = pa.scalar((start + pd.Timedelta(days=1)).to_pydatetime(), type=pa.timestamp("us", tz="UTC"))
    if data.count_rows(filter=(ts >= reach)) == 0:
        latest = pc.max(data.to_table(columns=[C.TIMESTAMP]).column(C.TIMESTAMP)).as_py()
        latest_text = "nowhere (no event)" if latest is None else pd.Timestamp(latest).tz_convert(timezone).isoformat()
        raise DataError(
            f"not enough data for the lift windows: the events in {p} end at {latest_text}, "
            f"but the windows run until {end.tz_convert(timezone).isoformat()} "
            f"(need events on the last day, from {last_day.tz_convert(timezone).isoformat()}); "
            "wait for more events or use a smaller --days"
        )
    if data.count_rows(filter=(ts >= lo) & (ts < first_day_end)) == 0:
        raise DataError(
            f"not enough data for the lift windows: the events in {p} have nothing on the first day, "
            f"from {start.tz_convert(timezone).isoformat()}; give the events that follow the night"
        )
    positive = pa.array(list(C.EVENT_TYPES_POSITIVE), type=pa.string())
    columns = [*EVENT_COLUMNS, *([C.CHANNEL] if C.CHANNEL in names else [])]
    table = data.to_table(
        columns=columns,
        filter=(ts >= lo) & (ts < hi) & ds.field(C.EVENT_TYPE).cast(pa.string()).isin(positive),
    )
    user = pc.index_in(table.column(C.USER_ID).cast(pa.string()), value_set=users.ids)
    known = pc.is_valid(user)
    unknown = len(user) - pc.sum(known.cast(pa.int64())).as_py() if len(user) else 0
    if unknown:
        table, user = table.filter(known), pc.filter(user, known)
    item_text = table.column(C.ITEM_ID).cast(pa.string())
    items = pc.unique(item_text)
    item = pc.index_in(item_text, value_set=items)
    if C.CHANNEL in table.column_names:
        chan = pc.index_in(table.column(C.CHANNEL).cast(pa.string()), value_set=pa.array(list(users.channels)))
        channel = chan.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        channel = np.full(table.num_rows, -1, dtype=np.int64)
    t = table.column(C.TIMESTAMP).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return Events(
        user=user.to_numpy(zero_copy_only=False).astype(np.int64),
        item=item.to_numpy(zero_copy_only=False).astype(np.int64),
        channel=channel,
        t=t.to_numpy(zero_copy_only=False).astype(np.int64),
        items=items.combine_chunks() if isinstance(items, pa.ChunkedArray) else items,
        unknown_users=int(unknown),
        has_channel=C.CHANNEL in table.column_names,
    )
