"""Daily counts per topic x segment, and who was reached, straight from the Parquet tables.

The log can be city-sized (tens of millions of events), so this step is one
columnar query: DuckDB reads only the columns it needs from ``events.parquet``,
joins each event to its user's segment and its item's topics, and returns
counts per (day, group, sub-group, region, topic) -- a table of at most
``days x segments x topics`` rows whatever the size of the log. Nothing is
loaded row by row into Python. ``benchmarks/bench_demand.py`` measures it
beside a plain pandas group-by of the same counts.

An event on an item with several topics counts once for each of its topics
(the item speaks to each of them). A positive engagement is a ``click`` (the
contract's "click or stronger" begins with one); a view is a ``read``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.exceptions import ConfigError, DataError, SchemaError
from recsys.schema import SUFFIXES, event_files
from recsys.taxonomy import Taxonomy

#: what each count column counts
COUNTED = {"impressions": "impression", "positives": "click", "reads": "read"}
#: the columns read from each table, no more
NEEDED = {
    "users": (C.USER_ID, C.GROUP, C.REGION),
    "items": (C.ITEM_ID, C.TOPICS),
    "events": (C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP),
}
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Window:
    """The analysed weeks: ``weeks`` whole weeks ending at ``as_of`` (exclusive).

    Attributes
    ----------
    start, as_of : pandas.Timestamp (UTC)
    weeks : int
    timezone : str
    """

    start: pd.Timestamp
    as_of: pd.Timestamp
    weeks: int
    timezone: str

    @property
    def days(self) -> int:
        """Days in the window."""
        return 7 * self.weeks

    def dates(self) -> list[dt.date]:
        """The local date of each window day, oldest first."""
        local = self.start.tz_convert(self.timezone)
        return [(local + pd.Timedelta(days=d)).date() for d in range(self.days)]

    def week_starts(self) -> list[pd.Timestamp]:
        """The first moment of each week (UTC)."""
        return [self.start + pd.Timedelta(days=7 * w) for w in range(self.weeks)]


def table_path(data_dir: str | Path, kind: str) -> Path:
    """``kind.parquet`` in ``data_dir`` with the columns demand tracking reads.

    A log delivered day by day (an ``events/`` folder of Parquet files, as
    incremental training reads it) is returned as one glob over its files.

    Raises
    ------
    SchemaError
        If the folder or the file is missing, the table is CSV (validate it
        into Parquet first), a needed column is absent, or the folder holds
        both ``events.parquet`` and ``events/``.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise SchemaError(f"{folder}: {'is not a folder' if folder.exists() else 'data folder not found'}")
    path = folder / f"{kind}.parquet"
    if kind == "events" and (folder / kind).is_dir():
        if path.exists():
            # which log was meant would be a guess: refuse as validation and training do
            raise SchemaError(f"{folder}: both {path.name} and {kind}/; keep only one")
        return _events_folder(folder / kind)
    if not path.exists():
        csv = folder / f"{kind}.csv"
        if csv.exists():
            raise SchemaError(
                f"{csv}: recsys demand reads Parquet; convert it with `recsys validate --data {folder} --out DIR` "
                "and pass that folder"
            )
        raise SchemaError(f"{folder}: no {kind} table; expected {kind}.parquet")
    try:
        names = pq.read_schema(path).names
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in NEEDED[kind] if c not in names]
    if missing:
        raise SchemaError(f"{path}: column {', '.join(map(repr, missing))} absent; demand tracking needs {', '.join(NEEDED[kind])}")
    return path


def has_sub_group(users_path: Path) -> bool:
    """Whether the users table at ``users_path`` (from :func:`table_path`) has the optional ``sub_group``."""
    try:
        return C.SUB_GROUP in pq.read_schema(users_path).names
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{users_path}: not a readable Parquet file ({exc})") from None


def _events_folder(folder: Path) -> Path:
    """A log delivered day by day (``events/``, one file per day) as one DuckDB glob.

    Raises
    ------
    SchemaError
        If a file is CSV, the Parquet files do not share one suffix (the glob
        must match them all and nothing else), or one lacks a needed column.
    """
    files = event_files(folder)
    suffixes = {f.suffix for f in files}
    if any(SUFFIXES[f.suffix.lower()] == "csv" for f in files):
        raise SchemaError(
            f"{folder}: recsys demand reads Parquet; convert the CSV event files with `recsys validate` first"
        )
    if len(suffixes) > 1:
        raise SchemaError(f"{folder}: event files end in {' and '.join(sorted(suffixes))}; give them one suffix")
    for file in files:
        try:
            names = pq.read_schema(file).names
        except (OSError, ValueError) as exc:
            raise SchemaError(f"{file}: not a readable Parquet file ({exc})") from None
        missing = [c for c in NEEDED["events"] if c not in names]
        if missing:
            raise SchemaError(
                f"{file}: column {', '.join(map(repr, missing))} absent; demand tracking needs {', '.join(NEEDED['events'])}"
            )
    return folder / f"*{suffixes.pop()}"


def _literal(path: Path) -> str:
    """A path as a SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def _connect(threads: int | None, memory_limit: str):
    try:  # heavy: duckdb is optional and loads only for a demand analysis
        import duckdb
    except ImportError:
        raise ConfigError("recsys demand needs the duckdb package: pip install 'duckdb>=1.0'") from None

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET enable_progress_bar = false")  # a long query would draw one on stdout
    return con


def log_span(events: Path, threads: int | None = None, memory_limit: str = "4GB") -> tuple[pd.Timestamp, pd.Timestamp, int]:
    """First and last event time (UTC) and the number of events.

    Raises
    ------
    DataError
        If the log has no events, or its timestamps are not tz-aware timestamps.
    """
    con = _connect(threads, memory_limit)
    try:
        kind = con.execute(f"SELECT typeof({C.TIMESTAMP}) FROM read_parquet(?) LIMIT 1", [str(events)]).fetchone()
        if kind is None:
            raise DataError(f"{events}: not enough data: the log has no events")
        if "TIME ZONE" not in kind[0].upper():
            raise SchemaError(
                f"{events}: column {C.TIMESTAMP!r} is {kind[0]}, not a tz-aware timestamp; "
                "validate the data first (recsys validate)"
            )
        lo, hi, n = con.execute(
            f"SELECT epoch_us(min({C.TIMESTAMP})), epoch_us(max({C.TIMESTAMP})), count(*) FROM read_parquet(?)",
            [str(events)],
        ).fetchone()
    finally:
        con.close()
    if not n:
        raise DataError(f"{events}: not enough data: the log has no events")
    return pd.Timestamp(lo, unit="us", tz="UTC"), pd.Timestamp(hi, unit="us", tz="UTC"), int(n)


def daily_counts(
    data_dir: str | Path, window: Window, *, threads: int | None = None, memory_limit: str = "4GB"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Count the window's events per day x segment x topic, and each user's reach.

    Parameters
    ----------
    data_dir : path
        A folder with ``users.parquet``, ``items.parquet``, ``events.parquet``.
    window : Window
    threads : int, optional
        DuckDB threads (default: its own, one per core).
    memory_limit : str
        DuckDB's memory limit; past it, it spills to disk.

    Returns
    -------
    counts : DataFrame
        ``day`` (0 = the window's first), ``group``, ``sub_group`` ("" = none),
        ``region``, ``topic`` and the :data:`COUNTED` columns (int64).
    reach : DataFrame
        Per ``group`` x ``region``: ``residents``, ``reached`` (got an
        impression in the window), ``engaged`` (a positive one) and
        ``impressions`` (each counted once, whatever its item's topics).
    """
    # DuckDB views take no parameters: the paths go in as quoted SQL literals
    users_path = table_path(data_dir, "users")
    # sub_group is optional in the contract: a table without it is users of no sub-group
    sub_group = f"coalesce({C.SUB_GROUP}, '')" if has_sub_group(users_path) else "''"
    users, items, events = (_literal(p) for p in (users_path, table_path(data_dir, "items"), table_path(data_dir, "events")))
    start_s = int(window.start.timestamp())
    end_s = int(window.as_of.timestamp())
    wanted = ", ".join(f"'{v}'" for v in COUNTED.values())
    sums = ",\n".join(f"count(*) FILTER (WHERE e.{C.EVENT_TYPE} = '{v}')::BIGINT AS {k}" for k, v in COUNTED.items())
    con = _connect(threads, memory_limit)
    try:
        con.execute(
            f"""CREATE TEMP VIEW u AS SELECT {C.USER_ID} AS uid, "{C.GROUP}" AS g,
                {sub_group} AS s, {C.REGION} AS r FROM read_parquet({users})"""
        )
        con.execute(
            f"""CREATE TEMP VIEW t AS SELECT DISTINCT {C.ITEM_ID} AS iid, unnest({C.TOPICS}) AS topic
                FROM read_parquet({items})"""
        )
        con.execute(
            f"""CREATE TEMP VIEW e AS SELECT {C.USER_ID} AS uid, {C.ITEM_ID} AS iid, {C.EVENT_TYPE},
                CAST(floor((epoch({C.TIMESTAMP}) - {start_s}) / {SECONDS_PER_DAY}) AS INTEGER) AS day
                FROM read_parquet({events})
                WHERE epoch({C.TIMESTAMP}) >= {start_s} AND epoch({C.TIMESTAMP}) < {end_s}
                  AND {C.EVENT_TYPE} IN ({wanted})"""
        )
        counts = con.execute(
            f"""SELECT e.day, u.g AS "group", u.s AS sub_group, u.r AS region, t.topic, {sums}
                FROM e JOIN u ON e.uid = u.uid JOIN t ON e.iid = t.iid
                GROUP BY ALL ORDER BY ALL"""
        ).df()
        reach = con.execute(
            f"""WITH per_user AS (
                    SELECT uid, bool_or({C.EVENT_TYPE} = 'impression') AS reached,
                           bool_or({C.EVENT_TYPE} = 'click') AS engaged,
                           count(*) FILTER (WHERE {C.EVENT_TYPE} = 'impression') AS shown
                    FROM e GROUP BY uid)
                SELECT u.g AS "group", u.r AS region, count(*)::BIGINT AS residents,
                       count(*) FILTER (WHERE p.reached)::BIGINT AS reached,
                       count(*) FILTER (WHERE p.engaged)::BIGINT AS engaged,
                       coalesce(sum(p.shown), 0)::BIGINT AS impressions
                FROM u LEFT JOIN per_user p ON u.uid = p.uid
                GROUP BY ALL ORDER BY ALL"""
        ).df()
    finally:
        con.close()
    for name in COUNTED:
        counts[name] = counts[name].astype("int64")
    counts["day"] = counts["day"].astype("int64")
    return counts, reach


def residents(data_dir: str | Path, taxonomy: Taxonomy) -> pd.DataFrame:
    """Users per group x sub-group x region (``sub_group`` "" = none).

    Raises
    ------
    DataError
        If the users table has no users of the taxonomy's groups and regions.
    """
    path = table_path(data_dir, "users")
    if has_sub_group(path):
        frame = pq.read_table(path, columns=[C.GROUP, C.SUB_GROUP, C.REGION]).to_pandas()
        frame[C.SUB_GROUP] = frame[C.SUB_GROUP].fillna("").astype(str)
    else:  # the optional column absent: no user has a sub-group
        frame = pq.read_table(path, columns=[C.GROUP, C.REGION]).to_pandas()
        frame[C.SUB_GROUP] = ""
    known = frame[C.GROUP].isin(list(taxonomy.groups)) & frame[C.REGION].isin(list(taxonomy.regions))
    if not known.any():
        raise DataError(
            f"{path}: not enough data: no user belongs to the taxonomy's groups ({', '.join(taxonomy.groups)}) "
            f"and regions; is --taxonomy the data set's own?"
        )
    return frame[known].groupby([C.GROUP, C.SUB_GROUP, C.REGION], as_index=False).size().rename(columns={"size": "residents"})
