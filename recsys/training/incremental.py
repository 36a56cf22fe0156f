"""Incremental nightly training: the validated history store and the decayed matrices' update.

A night's new data is one day of ~60. With the events delivered as a folder of
files (``DATA/events/*.parquet``, one per day or per delivery), ``recsys train``
keeps, next to the bundles (``MODELS/history/``):

- every event file it has validated, by name, size and sha256;
- the clean events of each night's new files as a Parquet partition
  (``partitions/part-NNNNN.parquet``) with its sha256;
- the decayed interaction matrices at the end of the data, and the ids of
  their rows and columns (``state-*/``, ``.npz`` arrays and Parquet, no pickle);
- the users file of the last run that validated it (name, size, sha256), the
  taxonomy it was checked against, its quarantine counts and the sha256 of the
  users table that run's bundle holds (``store.json``'s ``users``);
- ``store.json``, written last and atomically, which names all of the above.

The next night validates only the files not seen before (and the users file
only if it, or the taxonomy, changed: else yesterday's bundle's users table is
the validated one), reads the rest of the
history from the partitions (checked against their sha256 first), and moves the
matrices forward instead of rebuilding them: every decayed weight of yesterday
is multiplied by ``0.5 ** (days_elapsed / half_life_days)`` -- the same factor
for every event, since all of them aged by the same time -- and the new events'
decayed weights are added. The result equals a full rebuild to float
precision (a test holds it to that).

A run killed anywhere leaves the previous ``store.json`` pointing at complete
files: new partitions and a new state folder are written under fresh names
before the store moves to them, and only afterwards is the superseded state
removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from recsys import columns as C
from recsys.config import EngagementConfig, InteractionConfig, RankerConfig
from recsys.exceptions import DataError
from recsys.idmap import IdMap
from recsys.io import DigestsAsWritten, atomic_dir, atomic_path, sha256_file, sha256_files, write_json
from recsys import schema as schema_module
from recsys.bundle import library_versions
from recsys.schema import event_files, find_table, to_arrow
from recsys.taxonomy import Taxonomy
from recsys.training.compiled_pairs import merge_pairs
from recsys.training.model import USER_COLUMNS
from recsys.training.engagement import (
    Exposures,
    _epoch_seconds,
    exposures_from_showings,
    first_showings,
)
from recsys.training.interactions import (
    Interactions,
    _binary,
    build_interactions,
    channel_counts,
    event_codes,
    type_codes,
)
from recsys.training.signals import Signals, compute_signals

#: the store's folder inside the models folder
STORE_DIR = "history"
#: bumped when the store's layout changes: an older store then gets a full rebuild
STORE_FORMAT = 1
_STORE_FILE = "store.json"
_SECONDS_PER_DAY = 86400.0
#: the decayed matrices (scaled each night) and the indicator/count ones (only added to)
_DECAYED = ("matrix", "positives", "negative_weight")
_INDICATORS = ("negatives", "engaged")
_COUNTS = ("exposure",)
#: the aggregates' files in a state folder (all or none)
_AGGREGATE_FILES = ("showings.npz", "last_positive.npz", "channel_counts.npy", "item_impressions.npy")


class HistoryError(DataError):
    """The history store cannot be used as it is (a damaged partition, an event file changed)."""


@dataclass(frozen=True)
class SourceFile:
    """One event file of ``DATA/events/`` as it was when validated."""

    name: str
    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path, *, digest: bool = True) -> SourceFile:
        """Describe ``path`` (``digest=False`` leaves the sha256 empty: a cheap look)."""
        st = path.stat()
        return cls(path.name, int(st.st_size), int(st.st_mtime_ns), sha256_file(path) if digest else "")


def validation_fingerprint() -> dict[str, Any]:
    """What a clean users table depends on besides its file and the taxonomy: the validator's rules and libraries.

    The sha256 of the validator's source (``recsys/schema.py`` and ``recsys/columns.py``, whose
    bytes are its rules) and the versions of the engine, Python, NumPy, pandas and pyarrow (which
    read and convert the file): a users table validated under other rules or libraries is
    validated again, even when its file did not change.
    """
    rules = hashlib.sha256()
    for module in (schema_module, C):
        rules.update(Path(module.__file__).read_bytes())
    versions = library_versions()
    return {
        "rules": rules.hexdigest(),
        "libraries": {name: versions.get(name) for name in ("kepu-recsys", "python", "numpy", "pandas", "pyarrow")},
    }


def taxonomy_fingerprint(taxonomy: Taxonomy) -> str:
    """The sha256 of the taxonomy's text: a users table validated against it stays valid while it is the same."""
    return hashlib.sha256(taxonomy.source_text.encode("utf-8")).hexdigest()


def users_record(
    source: SourceFile, taxonomy: Taxonomy, rows_read: int, quarantined: dict[str, int], table_sha256: str
) -> dict[str, Any]:
    """``store.json``'s ``users``: the users file as validated, and the bundle's table made of it.

    Parameters
    ----------
    source : SourceFile
        The users file, described (with its sha256) before it was read.
    taxonomy : Taxonomy
        The taxonomy it was validated against.
    rows_read : int
        Its rows.
    quarantined : dict
        Its quarantined rows per reason.
    table_sha256 : str
        The sha256 of the users table (``users.parquet``) of the bundle written from it.
    """
    return {
        **dataclasses.asdict(source), "taxonomy": taxonomy_fingerprint(taxonomy), "rows_read": int(rows_read),
        "quarantined": {str(k): int(v) for k, v in quarantined.items()}, "table_sha256": table_sha256,
        "validation": validation_fingerprint(), "columns": list(USER_COLUMNS),
    }


@dataclass(frozen=True)
class PairTimes:
    """One time per (user, item) pair, sorted by pair: a first showing or a latest engagement.

    Attributes
    ----------
    row, col : ndarray of int32
        User and item indices, sorted by ``(row, col)``, each pair once (int32: a city's
        tens of millions of shown pairs at half the memory).
    seconds : ndarray of float64
        Epoch seconds.
    channel : ndarray of int8 or None
        The channel's taxonomy position (-1 unknown) for first showings.
    """

    row: np.ndarray
    col: np.ndarray
    seconds: np.ndarray
    channel: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.row.shape[0])

    @classmethod
    def of(cls, row: np.ndarray, col: np.ndarray, seconds: np.ndarray, channel: np.ndarray | None,
           n_items: int, *, keep: str) -> PairTimes:
        """One entry per pair of possibly repeated entries: the earliest (``keep="first"``) or latest."""
        row, col = np.asarray(row, np.int32), np.asarray(col, np.int32)
        seconds = np.asarray(seconds, np.float64)
        key = row.astype(np.int64) * n_items + col
        # within a pair, by time; "first" keeps the earliest, "last" the latest (ties: the later entry)
        order = np.lexsort((seconds, key))
        k = key[order]
        if keep == "first":
            pick = np.ones(len(k), bool)
            pick[1:] = k[1:] != k[:-1]
        else:
            pick = np.ones(len(k), bool)
            pick[:-1] = k[1:] != k[:-1]
        rows = order[pick]
        return cls(row[rows], col[rows], seconds[rows], None if channel is None else np.asarray(channel, np.int8)[rows])

    def moved(self, row_of: np.ndarray, col_of: np.ndarray, n_items: int) -> PairTimes:
        """The same pairs under today's indices (-1 in ``row_of``/``col_of``: the id left, dropped)."""
        if np.array_equal(row_of, np.arange(len(row_of))) and np.array_equal(col_of, np.arange(len(col_of))):
            return self  # the usual night: yesterday's ids keep their places
        r, c = row_of[self.row], col_of[self.col]
        ok = (r >= 0) & (c >= 0)
        ch = None if self.channel is None else self.channel[ok]
        # distinct old pairs stay distinct under a one-to-one id mapping: only the order changes
        order = np.lexsort((c[ok], r[ok]))
        return PairTimes(
            r[ok][order].astype(np.int32), c[ok][order].astype(np.int32), self.seconds[ok][order],
            None if ch is None else ch[order],
        )

    def merged(self, other: PairTimes, n_items: int, *, keep: str) -> PairTimes:
        """Union with ``other`` (same indices); a pair in both keeps the earlier (``"first"``) or later time.

        One walk over both sorted lists (compiled: :mod:`recsys.training.compiled_pairs`).
        """
        if not len(other):
            return self
        if not len(self):
            return other
        return PairTimes(*merge_pairs(
            (self.row, self.col, self.seconds, self.channel), (other.row, other.col, other.seconds, other.channel),
            n_items, keep=keep,
        ))


@dataclass(frozen=True)
class Aggregates:
    """What the training reads from the raw events beyond the decayed matrices, kept up to date nightly.

    Each is a sum or an extreme over events, so a night adds the day's to
    yesterday's (nothing decays here; ages are counted at training time from
    the stored times), and equals a rebuild over the whole history.

    Attributes
    ----------
    showings : PairTimes
        Each shown pair's first showing and its channel (the engagement model's
        exposures, :func:`recsys.training.engagement.first_showings`).
    last_positive : PairTimes
        Each positively engaged pair's latest positive event (the ranking signals).
    channel_counts : ndarray of float32, shape (n_users, n_channels)
        Positive engagements per user and channel.
    item_impressions : ndarray of float64, shape (n_items,)
        Impressions logged per item.
    start : Timestamp or None
        The first event's time.
    """

    showings: PairTimes
    last_positive: PairTimes
    channel_counts: np.ndarray
    item_impressions: np.ndarray
    start: pd.Timestamp | None


@dataclass(frozen=True)
class DecayedState:
    """The decayed matrices of all events before ``end``, plus the popularity positives.

    ``interactions`` is what :func:`~recsys.training.interactions.build_interactions`
    returns over the whole history; ``popularity`` its ``positives`` at the
    popularity half-life (None when that equals the collaborative one);
    ``aggregates`` the rest of what the training reads from the history's events
    (None in a store written before they were kept: the next night builds them
    once from the partitions).
    """

    interactions: Interactions
    popularity: sp.csr_matrix | None
    aggregates: Aggregates | None = None


def day_aggregates(
    events: pd.DataFrame, users: IdMap, items: IdMap, taxonomy: Taxonomy,
    *, codes: tuple[np.ndarray, np.ndarray] | None = None,
) -> Aggregates:
    """:class:`Aggregates` of ``events`` alone (a day, a partition, or a whole log).

    Parameters
    ----------
    events : DataFrame
        Clean events; those of users or items not in the maps are left out.
    users, items : IdMap
    taxonomy : Taxonomy
        The channels' order.
    codes : (ndarray, ndarray), optional
        Each event's user and item index (:func:`~recsys.training.interactions.event_codes`),
        when the caller has them.

    Returns
    -------
    Aggregates
    """
    n_users, n_items = len(users), len(items)
    if not len(events):
        empty = PairTimes(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))
        return Aggregates(
            dataclasses.replace(empty, channel=np.zeros(0, np.int8)), empty,
            np.zeros((n_users, len(taxonomy.channels)), np.float32), np.zeros(n_items), None,
        )
    ts = events[C.TIMESTAMP]
    end = ts.max()
    # each event's user, item and type looked up once (Arrow) for the four aggregates
    user_idx, item_idx = event_codes(events, users, items) if codes is None else codes
    types = type_codes(events[C.EVENT_TYPE])
    u, i, sec, chan, _ = first_showings(events, users, items, taxonomy, end=end, codes=(user_idx, item_idx), types=types)
    # first_showings returns one row per pair, sorted by pair
    showings = PairTimes(u.astype(np.int32), i.astype(np.int32), sec, chan.astype(np.int8))
    known = (user_idx >= 0) & (item_idx >= 0)
    pos = known & np.isin(types, C.POSITIVE_CODES)
    seconds = _epoch_seconds(ts)
    last = PairTimes.of(user_idx[pos], item_idx[pos], seconds[pos], None, n_items, keep="last")
    # impressions logged per item: what recsys.training.signals counts (known user and item)
    shown = known & (types == C.IMPRESSION_CODE)
    impressions = np.bincount(item_idx[shown], minlength=n_items).astype(np.float64)
    counts = channel_counts(events, user_idx, n_users, taxonomy, types=types)
    return Aggregates(showings, last, counts, impressions, ts.min().tz_convert("UTC"))


def merge_aggregates(
    old: Aggregates, new: Aggregates, row_of: np.ndarray, col_of: np.ndarray, n_users: int, n_items: int
) -> Aggregates:
    """``old`` (yesterday's indices, mapped by ``row_of``/``col_of``) plus ``new`` (today's)."""
    counts = np.zeros((n_users, old.channel_counts.shape[1]), np.float32)
    ok = row_of >= 0
    counts[row_of[ok]] = old.channel_counts[ok]
    impressions = np.zeros(n_items)
    ok = col_of >= 0
    impressions[col_of[ok]] = old.item_impressions[ok]
    starts = [t for t in (old.start, new.start) if t is not None]
    return Aggregates(
        old.showings.moved(row_of, col_of, n_items).merged(new.showings, n_items, keep="first"),
        old.last_positive.moved(row_of, col_of, n_items).merged(new.last_positive, n_items, keep="last"),
        counts + new.channel_counts,
        impressions + new.item_impressions,
        min(starts) if starts else None,
    )


def history_exposures(
    state: DecayedState, items_df: pd.DataFrame, config: EngagementConfig, *, sample: int, seed: int
) -> Exposures:
    """The exposures of the whole history from the stored first showings (a seeded sample of at most ``sample``).

    The same pairs, times, channels and labels as
    :func:`~recsys.training.engagement.build_exposures` over every event
    (labels from the engaged matrix), without reading an event.
    """
    agg = state.aggregates
    inter = state.interactions
    rows = np.arange(len(agg.showings))
    if 0 < sample < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), size=sample, replace=False))
    sh = agg.showings
    u, i = sh.row[rows].astype(np.int64), sh.col[rows].astype(np.int64)
    n_items = inter.shape[1]
    engaged = inter.engaged.tocoo()
    engaged_keys = np.sort(engaged.row.astype(np.int64) * n_items + engaged.col)
    key = u * n_items + i
    at = np.minimum(np.searchsorted(engaged_keys, key), max(len(engaged_keys) - 1, 0))
    label = (engaged_keys[at] == key).astype(np.float64) if len(engaged_keys) else np.zeros(len(key))
    return exposures_from_showings(
        u, i, sh.seconds[rows], sh.channel[rows].astype(np.int64), label, inter.items, items_df,
        end=inter.end, trend_days=config.trend_days,
    )


def history_signals(
    state: DecayedState, users_df: pd.DataFrame, end: pd.Timestamp, taxonomy: Taxonomy, config: RankerConfig
) -> Signals:
    """The ranking signals from the stored latest positive times and impression counts (no event read).

    :func:`~recsys.training.signals.compute_signals` reads, per (user, item),
    only the latest positive event, and per item the impressions: it is
    given one event per stored pair and the stored counts. Equal to a rebuild
    but for the order of a user's recent items engaged at the same instant.
    """
    agg = state.aggregates
    last = agg.last_positive
    micros = np.round(last.seconds * 1e6).astype("int64")
    frame = pd.DataFrame({
        C.EVENT_TYPE: pd.Categorical.from_codes(np.zeros(len(last), np.int8), ["click"]),
        C.TIMESTAMP: pd.to_datetime(micros, unit="us", utc=True),
    })
    out = compute_signals(
        frame, last.row.astype(np.int64), last.col.astype(np.int64), users_df, state.interactions.shape[1], end,
        taxonomy, config, distinct_pairs=True,
        # every stored event is a positive one, given as a click: its type needs no lookup
        types=np.full(len(last), C.EVENT_TYPES.index("click"), dtype=np.int64),
    )
    out.item_exposures = agg.item_impressions.astype(np.float32)
    return out


def events_folder(data: str | Path) -> Path | None:
    """Return ``DATA/events`` when the events arrive as a folder of files, else None."""
    table = find_table(data, "events")
    return table if table.is_dir() else None


def interactions_fingerprint(config: InteractionConfig) -> dict[str, Any]:
    """The ``[interactions]`` settings the stored matrices depend on (a change needs a rebuild)."""
    return json.loads(json.dumps(dataclasses.asdict(config), sort_keys=True, default=str))


# ---- the update -----------------------------------------------------------------------------


def _reindex(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Move ``m``'s entries to new row/column indices (-1 = dropped: an id no longer in the tables)."""
    if np.array_equal(rows, np.arange(len(rows))) and np.array_equal(cols, np.arange(len(cols))):
        # the usual night: yesterday's ids keep their places, new ones come after them
        indptr = np.concatenate([m.indptr, np.full(shape[0] - len(rows), m.indptr[-1], dtype=m.indptr.dtype)])
        return sp.csr_matrix((m.data, m.indices, indptr), shape=shape)
    coo = m.tocoo()
    r, c = rows[coo.row], cols[coo.col]
    keep = (r >= 0) & (c >= 0)
    out = sp.csr_matrix((coo.data[keep], (r[keep], c[keep])), shape=shape)
    out.sum_duplicates()
    out.sort_indices()
    return out


def _tidy(m: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def decay_factor(days: float, half_life_days: float) -> float:
    """``0.5 ** (days / half_life_days)``: how much every decayed weight shrinks in ``days``."""
    return float(np.exp2(-days / half_life_days))


def advance(
    previous: DecayedState,
    new_events: pd.DataFrame,
    users: IdMap,
    items: IdMap,
    config: InteractionConfig,
    popularity_half_life_days: float | None,
    *,
    end: pd.Timestamp | None = None,
    taxonomy: Taxonomy | None = None,
    codes: tuple[np.ndarray, np.ndarray] | None = None,
) -> DecayedState:
    """Move yesterday's decayed matrices to ``end`` and add the new events.

    Parameters
    ----------
    previous : DecayedState
        The matrices of every event before the previous end.
    new_events : DataFrame
        Clean events not in ``previous``.
    users, items : IdMap
        Today's rows and columns: yesterday's entries of ids no longer there
        are dropped, new ids start empty.
    config : InteractionConfig
    popularity_half_life_days : float or None
        Half-life of ``previous.popularity`` (None when there is none).
    end : Timestamp, optional
        Where decay counts back from; default the later of the previous end
        and the last new event (what a full rebuild uses).
    taxonomy : Taxonomy, optional
        With it, ``previous.aggregates`` (when kept) move forward too.
    codes : (ndarray, ndarray), optional
        Each new event's user and item index in ``users`` / ``items``
        (:func:`~recsys.training.interactions.event_codes`), when the caller has them.

    Returns
    -------
    DecayedState
        Equal, to float precision, to a rebuild over all events.
    """
    prev = previous.interactions
    end = _new_end(prev.end, new_events, end)
    shape = (len(users), len(items))
    # yesterday's row/column -> today's (-1: the id left the users/items table)
    row_of, col_of = _moved_rows(prev.users, users), _moved_rows(prev.items, items)
    # the night's events looked up once, for every matrix and aggregate below
    codes = event_codes(new_events, users, items) if codes is None else codes
    today = build_interactions(new_events, users, items, config, on_unknown="drop", codes=codes)
    elapsed = 0.0 if prev.end is None else (end - prev.end).total_seconds() / _SECONDS_PER_DAY
    # today's matrices are decayed back from their own last event: move them to ``end`` as well
    today_shift = 0.0 if today.end is None else (end - today.end).total_seconds() / _SECONDS_PER_DAY
    old_f = decay_factor(elapsed, config.half_life_days)
    new_f = decay_factor(today_shift, config.half_life_days)
    parts: dict[str, sp.csr_matrix] = {}
    for name in _DECAYED:
        old = _reindex(getattr(prev, name), row_of, col_of, shape).astype(np.float64)
        parts[name] = _tidy(old * old_f + getattr(today, name).astype(np.float64) * new_f)
    for name in _INDICATORS:
        old = _reindex(getattr(prev, name), row_of, col_of, shape)
        parts[name] = _binary(_tidy(old + getattr(today, name)))
    for name in _COUNTS:
        parts[name] = _tidy(_reindex(getattr(prev, name), row_of, col_of, shape) + getattr(today, name))
    inter = Interactions(
        users=users, items=items, end=end, n_events=prev.n_events + today.n_events, **parts,
    )
    popularity = None
    if previous.popularity is not None and popularity_half_life_days is not None:
        pop_config = dataclasses.replace(config, half_life_days=popularity_half_life_days)
        pop_today = build_interactions(new_events, users, items, pop_config, on_unknown="drop", codes=codes).positives
        old = _reindex(previous.popularity, row_of, col_of, shape).astype(np.float64)
        popularity = _tidy(
            old * decay_factor(elapsed, popularity_half_life_days)
            + pop_today.astype(np.float64) * decay_factor(today_shift, popularity_half_life_days)
        )
    aggregates = None
    if previous.aggregates is not None and taxonomy is not None:
        aggregates = merge_aggregates(
            previous.aggregates, day_aggregates(new_events, users, items, taxonomy, codes=codes), row_of, col_of, *shape
        )
    return DecayedState(inter, popularity, aggregates)


def _new_end(prev_end: pd.Timestamp | None, new_events: pd.DataFrame, end: pd.Timestamp | None) -> pd.Timestamp:
    if end is not None:
        return end
    candidates = [t for t in (prev_end, new_events[C.TIMESTAMP].max() if len(new_events) else None) if t is not None]
    if not candidates:
        raise DataError("no events to train on: the history is empty and no new event file holds a clean event")
    return max(candidates).tz_convert("UTC")


def changed_rows(new_events: pd.DataFrame, users: IdMap, *, user_codes: np.ndarray | None = None) -> np.ndarray:
    """Sorted row indices of the users with at least one new event.

    ``user_codes``: each new event's user index in ``users``, when the caller has them.
    """
    idx = users.index(new_events[C.USER_ID].to_numpy(dtype=object)) if user_codes is None else user_codes
    return np.unique(idx[idx >= 0])


def _moved_rows(before: IdMap, now: IdMap) -> np.ndarray:
    """Yesterday's index of each id -> today's (-1: gone), int64.

    The usual night keeps every id in its place (new ones come after): a comparison
    instead of hashing the city's 3.1M user ids.
    """
    n = len(before)
    if before is now or (n <= len(now) and np.array_equal(before.ids, now.ids[:n])):
        return np.arange(n, dtype=np.int64)
    return np.asarray(now.index(before.ids), dtype=np.int64)


# ---- the store on disk ---------------------------------------------------------------------


@dataclass(frozen=True)
class PendingFiles:
    """A run's new history files, written (:meth:`HistoryStore.prepare`) and not yet named by ``store.json``.

    Attributes
    ----------
    partition : dict
        The partition's entry of ``store.json`` (file, sha256, rows, sources, quarantined).
    sources : list of dict
        The new event files' entries (name, size, mtime, sha256).
    state : dict
        The state folder's entry (folder, its files' sha256, counts).
    end : Timestamp
        The data end the state is decayed to.
    """

    partition: dict[str, Any]
    sources: list[dict[str, Any]]
    state: dict[str, Any]
    end: pd.Timestamp

    def discard(self, models_dir: str | Path) -> None:
        """Remove these files (a run that failed before its commit); the store never named them."""
        root = HistoryStore.path(models_dir)
        (root / self.partition["file"]).unlink(missing_ok=True)
        shutil.rmtree(root / self.state["folder"], ignore_errors=True)


@dataclass
class HistoryStore:
    """The validated event history and decayed matrices kept next to the bundles.

    Attributes
    ----------
    root : Path
        ``MODELS/history``.
    doc : dict
        ``store.json``: ``format``, ``data`` (the events folder), ``interactions``
        (the settings fingerprint), ``end``, ``last_full`` (data end of the last
        full rebuild), ``sources`` (validated event files), ``partitions``
        (file, sha256, rows), ``state`` (folder and the sha256 of its files).
    """

    root: Path
    doc: dict[str, Any]

    @classmethod
    def path(cls, models_dir: str | Path) -> Path:
        """``MODELS/history``."""
        return Path(models_dir) / STORE_DIR

    @classmethod
    def open(cls, models_dir: str | Path) -> HistoryStore | None:
        """Return the store of ``models_dir``, or None when there is none (or of an older format).

        Raises
        ------
        HistoryError
            If ``store.json`` exists but cannot be read.
        """
        root = cls.path(models_dir)
        file = root / _STORE_FILE
        if not file.exists():
            return None
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HistoryError(f"{file}: not a readable history store ({exc}); run `recsys train --full` to rebuild it")
        if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
            return None
        return cls(root, doc)

    # ---- reading -----------------------------------------------------------------------------
    def _checked(self, name: str, sha256: str) -> Path:
        return self._all_checked({name: sha256})[0]

    def _all_checked(self, files: dict[str, str]) -> list[Path]:
        """The paths of ``files`` (name -> sha256), each checked against its sha256 (hashed on every core)."""
        paths = [self.root / name for name in files]
        for path in paths:
            if not path.is_file():
                raise HistoryError(
                    f"{path}: history file missing; run `recsys train --full` to rebuild the history from --data"
                )
        for path, want, found in zip(paths, files.values(), sha256_files(paths)):
            if found != want:
                raise HistoryError(
                    f"{path}: does not match the checksum recorded in {self.root / _STORE_FILE} (damaged or "
                    "changed); run `recsys train --full` to rebuild the history from --data"
                )
        return paths

    def end(self) -> pd.Timestamp:
        """The data end the stored matrices are decayed to."""
        return pd.Timestamp(self.doc["end"])

    def last_full(self) -> pd.Timestamp:
        """The data end of the last full rebuild."""
        return pd.Timestamp(self.doc["last_full"])

    def read_events(self) -> pd.DataFrame:
        """All clean events of the history, partitions in order, each checked against its sha256."""
        frames = []
        for part in self.doc["partitions"]:
            path = self._checked(part["file"], part["sha256"])
            frames.append(pq.read_table(path).to_pandas())
        if not frames:
            raise HistoryError(f"{self.root}: the history holds no partition; run `recsys train --full`")
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def read_state(self) -> DecayedState:
        """The stored decayed matrices, each file checked against its sha256."""
        state = self.doc["state"]
        folder = state["folder"]
        files = state["files"]
        names = _DECAYED + _INDICATORS + _COUNTS
        unnamed = [f for f in (*(f"{n}.npz" for n in names), "users.parquet", "items.parquet") if f not in files]
        if unnamed:
            raise HistoryError(
                f"{self.root / _STORE_FILE}: the state names no {', '.join(unnamed)}; "
                "run `recsys train --full` to rebuild the history from --data"
            )
        # every file of the state checked at once (on every core), before any is read
        self._all_checked({f"{folder}/{name}": digest for name, digest in files.items()})

        def matrix(name: str) -> sp.csr_matrix:
            return sp.csr_matrix(sp.load_npz(self.root / folder / f"{name}.npz"), dtype=np.float32)

        ids = {}
        for side in ("users", "items"):
            path = self.root / folder / f"{side}.parquet"
            # written from an IdMap (distinct strings) and checked against its sha256 above: taken as
            # they are, without from_ids' checks and dedupe (a hash of the city's 3.1M user ids)
            ids[side] = IdMap(np.asarray(pq.read_table(path).column("id").to_numpy(zero_copy_only=False), dtype=str))
        inter = Interactions(
            users=ids["users"], items=ids["items"], end=self.end(), n_events=int(state["n_events"]),
            **{name: matrix(name) for name in names},
        )
        popularity = matrix("popularity") if "popularity.npz" in files else None
        aggregates = None
        if all(f in files for f in _AGGREGATE_FILES):
            def arrays(name: str) -> dict[str, np.ndarray]:
                with np.load(self.root / folder / name, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}

            sh, lp = arrays("showings.npz"), arrays("last_positive.npz")
            aggregates = Aggregates(
                PairTimes(sh["row"], sh["col"], sh["seconds"], sh["channel"]),
                PairTimes(lp["row"], lp["col"], lp["seconds"]),
                np.load(self.root / folder / "channel_counts.npy", allow_pickle=False),
                np.load(self.root / folder / "item_impressions.npy", allow_pickle=False),
                pd.Timestamp(state["start"]) if state.get("start") else None,
            )
        return DecayedState(inter, popularity, aggregates)

    def build_aggregates(
        self, users: IdMap, items: IdMap, taxonomy: Taxonomy, *, batch_rows: int = 2_000_000
    ) -> Aggregates:
        """The :class:`Aggregates` of the stored partitions, one partition in memory at a time.

        For a store written before the aggregates were kept (once: the night
        then stores them). Reads only the columns they need, ``batch_rows``
        events at a time (the first partition of a city holds the whole log of
        its full retrain).
        """
        out = None
        same_rows, same_cols = np.arange(len(users)), np.arange(len(items))
        for part in self.doc["partitions"]:
            file = pq.ParquetFile(self._checked(part["file"], part["sha256"]))
            names = set(file.schema_arrow.names)
            cols = [c for c in (C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP, C.CHANNEL) if c in names]
            for batch in file.iter_batches(batch_size=batch_rows, columns=cols):
                day = day_aggregates(batch.to_pandas(), users, items, taxonomy)
                out = day if out is None else merge_aggregates(out, day, same_rows, same_cols, len(users), len(items))
        if out is None:
            raise HistoryError(f"{self.root}: the history holds no partition; run `recsys train --full`")
        return out

    def recent_keys(self, since: pd.Timestamp) -> pd.DataFrame:
        """The history's ``user_id, item_id, event_type, timestamp`` at or after ``since``.

        A partition whose timestamps all lie before ``since`` (its Parquet
        statistics say so) is not read; the others are read with those four
        columns and the time filter only.
        """
        key = [C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP]
        frames = []
        for part in self.doc["partitions"]:
            path = self._checked(part["file"], part["sha256"])
            latest = _max_time(path)
            if latest is not None and latest < since:
                continue
            table = pq.read_table(path, columns=key, filters=[(C.TIMESTAMP, ">=", since.to_pydatetime())])
            if table.num_rows:
                frames.append(table.to_pandas())
        if not frames:
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in key})
        return pd.concat(frames, ignore_index=True)

    def kept_users(
        self, source: SourceFile, taxonomy: Taxonomy, table_sha256: str | None, max_share: float
    ) -> dict[str, Any] | None:
        """The store's users record when tonight's users file needs no validation, else None.

        That is when ``source`` (tonight's users file, with its sha256) is the file
        the record describes, byte for byte, the taxonomy is the one it was checked
        against, the validator's rules and libraries (:func:`validation_fingerprint`) and the
        bundle's users columns are the record's, ``table_sha256`` (of yesterday's bundle's ``users.parquet``) is the
        table made of it, and its quarantined share is within ``max_share``: the
        validated table is then yesterday's bundle's, row for row.
        """
        rec = self.doc.get("users")
        if not isinstance(rec, dict) or table_sha256 is None:
            return None
        same_file = (rec.get("name"), rec.get("size"), rec.get("sha256")) == (source.name, source.size, source.sha256)
        if not same_file or rec.get("taxonomy") != taxonomy_fingerprint(taxonomy):
            return None
        if rec.get("validation") != validation_fingerprint() or rec.get("columns") != list(USER_COLUMNS):
            return None  # other validation rules, libraries or users columns: validated and written again
        if rec.get("table_sha256") != table_sha256:
            return None  # the start bundle (e.g. --warm-start) is not the one made of this file
        read = int(rec.get("rows_read", 0))
        rejected = sum(int(v) for v in (rec.get("quarantined") or {}).values())
        if not read or rejected / read > max_share:
            return None  # validated again: the check then refuses it with its reasons
        return rec

    def unchanged_sources(self, folder: Path) -> tuple[list[Path], list[str]]:
        """Split ``folder``'s files into the new ones and check the known ones.

        Returns
        -------
        new : list of Path
            Files not validated before, in name order.
        gone : list of str
            Files validated before and no longer in the folder (their events
            stay in the history).

        Raises
        ------
        HistoryError
            If a file validated before has changed (its content, not only its
            time stamp): what it held is already in the history, and which
            version is right would be a guess.
        """
        known = {s["name"]: s for s in self.doc["sources"]}
        new: list[Path] = []
        for path in event_files(folder):
            seen = known.pop(path.name, None)
            if seen is None:
                new.append(path)
                continue
            look = SourceFile.of(path, digest=False)
            if look.size == seen["size"] and look.mtime_ns == seen["mtime_ns"]:
                continue
            if look.size != seen["size"] or sha256_file(path) != seen["sha256"]:
                raise HistoryError(
                    f"{path}: changed since it was validated into the history ({self.root}); "
                    "a delivered day must not change -- put corrections in a new file, or run "
                    "`recsys train --full` to validate everything again"
                )
        return new, sorted(known)

    # ---- writing -----------------------------------------------------------------------------
    @staticmethod
    def prepare(
        models_dir: str | Path,
        *,
        previous: HistoryStore | None = None,
        new_sources: list[Path],
        new_events: pd.DataFrame,
        state: DecayedState,
        quarantined: int,
    ) -> PendingFiles:
        """Write a run's new partition and state folder under fresh names; nothing names them yet.

        The training writes them before it trains, so that it need not hold what only
        the store reads (the new events, the aggregates) through every step; the store
        moves to them in :meth:`commit`, after the bundle. Files of a run that never
        commits are removed by :meth:`PendingFiles.discard`, or by the next commit.
        """
        root = HistoryStore.path(models_dir)
        (root / "partitions").mkdir(parents=True, exist_ok=True)
        named = [] if previous is None else [p["file"] for p in previous.doc["partitions"]]
        # a fresh serial: above every name on disk and every one the current store names
        serial = 1 + max([_serial(n) for n in named] + [_serial(n) for n in _existing(root)] + [0])
        part_name = f"partitions/part-{serial:05d}.parquet"
        part_path = root / part_name
        with atomic_path(part_path) as tmp:
            pq.write_table(to_arrow(new_events, "events"), tmp)
        folder = f"state-{serial:05d}"
        try:
            part = {
                "file": part_name, "sha256": sha256_file(part_path), "rows": len(new_events),
                "sources": [p.name for p in new_sources], "quarantined": int(quarantined),
            }
            files = _write_state(root / folder, state)  # atomic: a failure leaves no state folder
        except BaseException:
            part_path.unlink(missing_ok=True)  # nor a partition no store will name
            raise
        return PendingFiles(
            partition=part, sources=[dataclasses.asdict(SourceFile.of(p)) for p in new_sources],
            state=_state_doc(folder, files, state), end=state.interactions.end,
        )

    @staticmethod
    def commit(
        models_dir: str | Path,
        pending: PendingFiles,
        *,
        previous: HistoryStore | None,
        data_folder: Path,
        fingerprint: dict[str, Any],
        full: bool,
        users: dict[str, Any] | None = None,
    ) -> HistoryStore:
        """Move the store to ``pending``'s files (``store.json``, atomically); return the new store.

        ``users``: the users record (:func:`users_record`) of this run's bundle; None
        leaves none (the next night validates its users file).
        """
        root = HistoryStore.path(models_dir)
        # the files were written before the training (prepare); another run's commit into the same
        # folder meanwhile removes files no store names: never name missing files
        missing = [name for name in (pending.partition["file"], pending.state["folder"]) if not (root / name).exists()]
        if missing:
            raise HistoryError(
                f"{root}: {', '.join(missing)} written by this run are gone (another run into the same models "
                "folder?); the store is left as it was -- run the training again"
            )
        keep_parts = [] if full or previous is None else list(previous.doc["partitions"])
        sources = [] if full or previous is None else list(previous.doc["sources"])
        end = pending.end
        doc = {
            "format": STORE_FORMAT,
            "data": str(Path(data_folder).resolve()),
            "interactions": fingerprint,
            "end": end.isoformat(),
            "last_full": end.isoformat() if full or previous is None else previous.doc["last_full"],
            "sources": sources + pending.sources,
            "partitions": keep_parts + [pending.partition],
            "state": pending.state,
        }
        if users is not None:
            doc["users"] = users
        write_json(doc, root / _STORE_FILE)
        store = HistoryStore(root, doc)
        store._remove_unreferenced()
        return store

    def upgrade(self, taxonomy: Taxonomy) -> HistoryStore:
        """Add the aggregates to a store written before they were kept; return the store (self when it has them).

        What the next night would do anyway, as a step of its own (an
        operator's or a benchmark's): a new state folder, then ``store.json``.
        """
        state = self.read_state()
        if state.aggregates is not None:
            return self
        inter = state.interactions
        state = dataclasses.replace(state, aggregates=self.build_aggregates(inter.users, inter.items, taxonomy))
        serial = 1 + max([_serial(n) for n in _existing(self.root)] + [0])
        folder = f"state-{serial:05d}"
        files = _write_state(self.root / folder, state)
        doc = {**self.doc, "state": _state_doc(folder, files, state)}
        write_json(doc, self.root / _STORE_FILE)
        store = HistoryStore(self.root, doc)
        store._remove_unreferenced()
        return store

    def _remove_unreferenced(self) -> None:
        """Delete the store's own superseded files (older states, partitions of before a full rebuild).

        Only names this store writes (``state-NNNNN``, ``partitions/part-NNNNN.parquet``) are
        touched, and only once ``store.json`` no longer names them.
        """
        live = {p["file"] for p in self.doc["partitions"]} | {self.doc["state"]["folder"]}
        for name in _existing(self.root):
            if name not in live:
                target = self.root / name
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)


def _write_state(target: Path, state: DecayedState) -> dict[str, str]:
    """Write ``state``'s matrices, aggregates and ids into the new folder ``target``; return file -> sha256."""
    inter = state.interactions
    # each file hashed as soon as it is written, beside the next write (~1.2 GB at the city)
    with DigestsAsWritten() as digests, atomic_dir(target) as tmp:
        for name in _DECAYED + _INDICATORS + _COUNTS:
            sp.save_npz(tmp / f"{name}.npz", getattr(inter, name), compressed=False)
            digests.written(tmp / f"{name}.npz")
        if state.popularity is not None:
            sp.save_npz(tmp / "popularity.npz", state.popularity, compressed=False)
            digests.written(tmp / "popularity.npz")
        agg = state.aggregates
        if agg is not None:
            # int32 indices: half the bytes (users and items stay below 2**31)
            np.savez(tmp / "showings.npz", row=agg.showings.row.astype(np.int32),
                     col=agg.showings.col.astype(np.int32), seconds=agg.showings.seconds,
                     channel=agg.showings.channel)
            digests.written(tmp / "showings.npz")
            np.savez(tmp / "last_positive.npz", row=agg.last_positive.row.astype(np.int32),
                     col=agg.last_positive.col.astype(np.int32), seconds=agg.last_positive.seconds)
            digests.written(tmp / "last_positive.npz")
            np.save(tmp / "channel_counts.npy", np.asarray(agg.channel_counts, np.float32))
            digests.written(tmp / "channel_counts.npy")
            np.save(tmp / "item_impressions.npy", np.asarray(agg.item_impressions, np.float64))
            digests.written(tmp / "item_impressions.npy")
        for side, idmap in (("users", inter.users), ("items", inter.items)):
            pq.write_table(pa.table({"id": pa.array(np.asarray(idmap.ids, dtype=object), pa.string())}),
                           tmp / f"{side}.parquet")
            digests.written(tmp / f"{side}.parquet")
        paths = sorted(tmp.iterdir())
        return {p.name: digest for p, digest in zip(paths, digests.digests(paths))}


def _state_doc(folder: str, files: dict[str, str], state: DecayedState) -> dict[str, Any]:
    doc: dict[str, Any] = {"folder": folder, "files": files, "n_events": int(state.interactions.n_events)}
    if state.aggregates is not None and state.aggregates.start is not None:
        doc["start"] = state.aggregates.start.isoformat()
    return doc


def _max_time(path: Path) -> pd.Timestamp | None:
    """The latest timestamp of a Parquet file by its row-group statistics (None when they are missing)."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(j).name for j in range(meta.num_columns)]
    if C.TIMESTAMP not in names:
        return None
    col = names.index(C.TIMESTAMP)
    highs = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            return None
        highs.append(pd.Timestamp(stats.max))
    if not highs:
        return None
    high = max(highs)
    return high.tz_localize("UTC") if high.tzinfo is None else high.tz_convert("UTC")


def _existing(root: Path) -> list[str]:
    """The store-written names under ``root`` (states and partitions), relative to it."""
    names = [p.name for p in root.glob("state-[0-9][0-9][0-9][0-9][0-9]") if p.is_dir()]
    names += [f"partitions/{p.name}" for p in (root / "partitions").glob("part-[0-9][0-9][0-9][0-9][0-9].parquet")]
    return names


def _serial(name: str) -> int:
    stem = Path(name).name.split(".")[0]
    return int(stem.rsplit("-", 1)[1])

