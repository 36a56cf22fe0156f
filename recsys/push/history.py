"""The push history: what was pushed to whom, on which channel and day, by every run.

Caps and the de-duplication window are counted against it, across nightly
runs and campaigns. It is bucketed by a stable hash of the user id so that a
chunk of users (which always owns whole buckets) reads only its own users'
history, never the whole city's::

    <root>/_store.json                       {"format": 1, "buckets": 64}
    <root>/date=2026-07-01/kind=nightly/bucket-0007.pq
    <root>/date=2026-07-01/kind=heat_warning/bucket-0007.pq

Each file is Parquet holding ``user_id, item_id, channel``, named ``.pq``
so that a ``<out>/**/*.parquet`` glob over a push output folder (which holds
the history by default) finds the push rows only; files written under the
old ``.parquet`` name are renamed when the store is opened. A run's history (one date, one
kind) is staged beside the run and committed as one folder rename, so a re-run
of a date replaces its rows, never adds to them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.exceptions import ArtifactError, ConfigError
from recsys.io import write_json
from recsys.push.channels import ChannelRules

STORE_FORMAT = 1
STORE_FILE = "_store.json"
#: the day a history row belongs to (added on read, from the folder name)
DAY = "day"
HISTORY_COLUMNS = (C.USER_ID, C.ITEM_ID, C.CHANNEL)
_SCHEMA = pa.schema([(C.USER_ID, pa.string()), (C.ITEM_ID, pa.string()), (C.CHANNEL, pa.string())])
#: caps count any 7 consecutive days
WEEK_DAYS = 7


BUCKET_SUFFIX = ".pq"
_LEGACY_SUFFIX = ".parquet"


def bucket_file(bucket: int) -> str:
    """File name of one bucket inside a run's history folder."""
    return f"bucket-{int(bucket):04d}{BUCKET_SUFFIX}"


def _migrate_legacy_names(root: Path) -> int:
    """Rename bucket files of the old ``.parquet`` name to ``.pq``; return how many.

    One rename per file, idempotent: an interrupted migration finishes on the next open.
    """
    moved = 0
    for path in root.glob(f"date=*/kind=*/bucket-*{_LEGACY_SUFFIX}"):
        os.replace(path, path.with_suffix(BUCKET_SUFFIX))
        moved += 1
    return moved


def history_table(rows: pd.DataFrame) -> pa.Table:
    """The history columns (``user_id, item_id, channel``) of ``rows`` as the store's Arrow table."""
    return pa.Table.from_pandas(rows[list(HISTORY_COLUMNS)].astype(str), schema=_SCHEMA, preserve_index=False)


def history_from_columns(user_ids: pa.ChunkedArray, item_ids: pa.ChunkedArray, channels: pa.Array, rows: pd.DataFrame) -> pa.Table:
    """The table :func:`history_table` makes of ``rows``, from its three columns already in Arrow.

    The schema and its file metadata are :func:`history_table`'s own (of ``rows`` without rows),
    so a file written from either is the same.
    """
    schema = history_table(rows.iloc[:0]).schema
    return pa.Table.from_arrays([user_ids, item_ids, channels], schema=schema)


def write_bucket(folder: str | Path, bucket: int, rows: pd.DataFrame | pa.Table) -> Path:
    """Write one bucket's history rows (``user_id, item_id, channel``) into a staging folder.

    ``rows`` is a frame, or already :func:`history_table` (a chunk converts its rows once and
    hands each bucket a slice: converting per bucket cost 3.7x more).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = rows if isinstance(rows, pa.Table) else history_table(rows)
    path = folder / bucket_file(bucket)
    tmp = folder / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class HistoryStore:
    """A push-history folder.

    Use :meth:`open` (it checks or records the bucket count); the constructor
    only stores its parameters.

    Parameters
    ----------
    root : Path
        The history folder.
    n_buckets : int
        Number of user-id hash buckets; fixed for the life of the store.
    """

    root: Path
    n_buckets: int

    @classmethod
    def open(cls, root: str | Path, n_buckets: int) -> HistoryStore:
        """Open (or create) the store at ``root``.

        Raises
        ------
        ConfigError
            If the store was created with another bucket count (its rows would
            be looked up in the wrong buckets).
        ArtifactError
            If ``_store.json`` is unreadable.
        """
        root = Path(root)
        meta_path = root / STORE_FILE
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"{meta_path}: unreadable ({exc})") from None
            if int(meta.get("buckets", -1)) != int(n_buckets):
                raise ConfigError(
                    f"push history_buckets is {n_buckets} but the history at {root} has "
                    f"{meta.get('buckets')} buckets; keep history_buckets = {meta.get('buckets')} for this store"
                )
            _migrate_legacy_names(root)
        else:
            root.mkdir(parents=True, exist_ok=True)
            write_json({"format": STORE_FORMAT, "buckets": int(n_buckets)}, meta_path)
        return cls(root=root, n_buckets=int(n_buckets))

    # ---- layout ---------------------------------------------------------
    def run_dir(self, day: dt.date, kind: str) -> Path:
        """The folder of one run's history."""
        return self.root / f"date={day.isoformat()}" / f"kind={kind}"

    def days(self, first: dt.date, last: dt.date) -> list[dt.date]:
        """The days in ``[first, last]`` that have history, in order."""
        out = []
        if not self.root.is_dir():
            return out
        for entry in self.root.iterdir():
            if not entry.name.startswith("date=") or not entry.is_dir():
                continue
            try:
                day = dt.date.fromisoformat(entry.name[5:])
            except ValueError:
                continue
            if first <= day <= last:
                out.append(day)
        return sorted(out)

    # ---- reading --------------------------------------------------------
    def read(
        self,
        buckets: Iterable[int],
        *,
        first: dt.date,
        last: dt.date,
        skip: tuple[dt.date, str] | None = None,
        user_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Read the history of some buckets between two days (inclusive).

        Parameters
        ----------
        buckets : iterable of int
            Only these buckets' files are opened.
        first, last : datetime.date
            Day range.
        skip : (date, kind), optional
            A run left out: the one being (re)computed, whose old rows it replaces.
        user_ids : sequence of str, optional
            Keep only these users' rows.

        Returns
        -------
        DataFrame
            ``user_id, item_id, channel, day`` (``day`` datetime64, midnight of the local day).
        """
        wanted = sorted({int(b) for b in buckets})
        frames = []
        for day in self.days(first, last):
            for kind_dir in sorted((self.root / f"date={day.isoformat()}").glob("kind=*")):
                if skip is not None and day == skip[0] and kind_dir.name == f"kind={skip[1]}":
                    continue
                for bucket in wanted:
                    path = kind_dir / bucket_file(bucket)
                    if path.exists():
                        frame = pq.read_table(path).to_pandas()
                        frame[DAY] = np.datetime64(day, "D")
                        frames.append(frame)
        if not frames:
            return pd.DataFrame(
                {c: pd.Series(dtype=object) for c in HISTORY_COLUMNS} | {DAY: pd.Series(dtype="datetime64[s]")}
            )
        out = pd.concat(frames, ignore_index=True)
        # object ids: pandas' Arrow strings are ten times slower to look up
        out = out.astype({c: object for c in HISTORY_COLUMNS})
        if user_ids is not None:
            out = out[out[C.USER_ID].isin(pd.Index(np.asarray(user_ids, dtype=object), dtype=object))]
            out = out.reset_index(drop=True)
        return out

    def signature(self, day: dt.date, kind: str, dedup_days: int) -> list[str]:
        """The runs a computation of (``day``, ``kind``) reads, with their modification times.

        A resumed run must see the same history as the chunks it keeps; any
        other run committed meanwhile changes this list.
        """
        span = dt.timedelta(days=max(int(dedup_days), WEEK_DAYS) - 1)
        out = []
        for other in self.days(day - span, day + span):
            for kind_dir in sorted((self.root / f"date={other.isoformat()}").glob("kind=*")):
                if other == day and kind_dir.name == f"kind={kind}":
                    continue
                out.append(f"{other}/{kind_dir.name}@{kind_dir.stat().st_mtime_ns}")
        return out

    # ---- writing --------------------------------------------------------
    def commit(self, day: dt.date, kind: str, staged: str | Path) -> Path:
        """Move a staged run folder into place, replacing that run's old history.

        The old folder is moved aside first and removed after the rename, so
        the store never holds both or neither for longer than one rename.
        """
        dest = self.run_dir(day, kind)
        dest.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(dest, old)
        os.replace(Path(staged), dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return dest


def read_window(
    store: HistoryStore,
    buckets: Iterable[int],
    day: dt.date,
    dedup_days: int,
    *,
    skip: tuple[dt.date, str] | None = None,
    user_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read all history that matters for pushes on ``day``.

    That is every day less than ``dedup_days`` away on either side: a past
    push blocks the item tonight, and so does one already planned for a later
    day (a campaign scheduled ahead), in both the de-duplication window and
    the 7-day cap windows.
    """
    span = dt.timedelta(days=max(int(dedup_days), WEEK_DAYS) - 1)
    return store.read(buckets, first=day - span, last=day + span, skip=skip, user_ids=user_ids)


def cap_usage(
    history: pd.DataFrame, user_ids: pd.Index, day: dt.date, channels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Count what the history already uses of each user's caps on ``day``.

    Parameters
    ----------
    history : DataFrame
        ``user_id, channel, day`` rows (from :func:`read_window`).
    user_ids : Index
        The users, one row each in the result.
    day : datetime.date
        The day being planned.
    channels : sequence of str
        One column each.

    Returns
    -------
    daily : ndarray, int64 (n_users, n_channels)
        Items already pushed on ``day``.
    weekly : ndarray, int64 (n_users, n_channels)
        The most items in any 7 consecutive days that include ``day`` (so a
        push tonight can break none of those windows).
    """
    n, p = len(user_ids), len(channels)
    span = WEEK_DAYS - 1
    per_day = np.zeros((n, p, 2 * span + 1), dtype=np.int64)
    if len(history):
        days = history[DAY].to_numpy().astype("datetime64[D]")
        offset = (days - np.datetime64(day, "D")).astype(np.int64) + span
        rows = user_ids.get_indexer(history[C.USER_ID])
        cols = pd.Index(list(channels)).get_indexer(history[C.CHANNEL])
        keep = (rows >= 0) & (cols >= 0) & (offset >= 0) & (offset <= 2 * span)
        np.add.at(per_day, (rows[keep], cols[keep], offset[keep]), 1)
    daily = per_day[:, :, span]
    csum = np.concatenate([np.zeros((n, p, 1), dtype=np.int64), np.cumsum(per_day, axis=2)], axis=2)
    # window starting at offset s covers s .. s+6; the windows holding `day` start at 0 .. span
    windows = np.stack([csum[:, :, s + WEEK_DAYS] - csum[:, :, s] for s in range(span + 1)], axis=2)
    return daily, windows.max(axis=2)


def remaining(
    daily: np.ndarray, weekly: np.ndarray, rules: Sequence[ChannelRules], *, ignore_daily: bool = False
) -> np.ndarray:
    """Items each user may still get on each channel tonight (never negative).

    ``ignore_daily`` is for emergency campaigns, which may exceed the daily
    cap but never the weekly one.
    """
    daily_cap = np.array([r.daily_cap for r in rules], dtype=np.int64)
    weekly_cap = np.array([r.weekly_cap for r in rules], dtype=np.int64)
    room = weekly_cap[None, :] - weekly
    if not ignore_daily:
        room = np.minimum(room, daily_cap[None, :] - daily)
    return np.clip(room, 0, None)


def dedup_pairs(history: pd.DataFrame) -> pd.DataFrame:
    """The (user_id, item_id) pairs that may not be pushed again (unique)."""
    if not len(history):
        return pd.DataFrame({C.USER_ID: pd.Series(dtype=str), C.ITEM_ID: pd.Series(dtype=str)})
    return history[[C.USER_ID, C.ITEM_ID]].drop_duplicates().reset_index(drop=True)


def validate_kind(kind: str) -> str:
    """Check a run kind (``nightly`` or a campaign name) is a safe folder name.

    Raises
    ------
    ConfigError
        If it is empty or has characters other than a-z, 0-9, ``_`` and ``-``.
    """
    if not isinstance(kind, str) or not kind or not all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in kind):
        raise ConfigError(f"run kind / campaign name {kind!r} must be non-empty: letters, digits, '_' or '-' only")
    if kind != kind.lower() or kind.startswith("-"):
        raise ConfigError(f"run kind / campaign name {kind!r} must be lowercase and not start with '-'")
    return kind
