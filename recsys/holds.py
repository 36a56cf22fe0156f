"""Review holds: items taken out of every list until a reviewer releases them.

A hold is the review loop's emergency brake. ``recsys monitor`` places one
when an item draws a significant wave of reports; a reviewer places or
releases one by hand (``recsys holds add|release``). A held item is treated
everywhere as if it were retracted -- the :class:`~recsys.ranking.Recommender`
(``Recommender.load(..., holds=DIR)``), the nightly push and campaigns leave
it out -- from the next call on, without retraining.

Two files in the holds folder (the monitor's ``--state`` folder):

``holds_log.jsonl``
    The audit log, the source of truth: one JSON object per change
    (``time``, ``action`` = ``add`` / ``release``, ``item_id``, ``by``,
    ``reason`` or ``note``, and the monitor's ``run`` and alert for its own
    holds). Lines are only ever appended, each with one ``write`` and an
    ``fsync``; nothing rewrites it.
``holds.parquet``
    The current hold list (``item_id``, ``reason``, ``since``, ``by``), a
    replay of the log, rewritten atomically after each change so readers
    (pandas, DuckDB, the push) need not parse the log. Should a crash fall
    between the log line and the table, :func:`load_holds` notices (the table
    records how many log lines it reflects) and replays the log itself.

Changes take an exclusive ``flock`` on ``holds.lock`` for the few
milliseconds they last, so the monitor and a reviewer never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.exceptions import ConfigError, RecsysError, SchemaError
from recsys.io import atomic_path, is_temporary, write_parquet
from recsys.schema import find_table, read_table

HOLDS_FILE = "holds.parquet"
LOG_FILE = "holds_log.jsonl"
LOCK_FILE = "holds.lock"
#: columns of the hold list
REASON, SINCE, BY = "reason", "since", "by"
HOLD_COLUMNS = (C.ITEM_ID, REASON, SINCE, BY)
#: the review status a held item takes in the catalogue the ranking sees: not approved, so
#: ineligible exactly like a retracted item, and "pending" says it awaits review
HELD_STATUS = "pending"
#: Parquet metadata key: how many log lines the table reflects
_LOG_LINES_KEY = b"recsys.holds.log_lines"
_SCHEMA = pa.schema(
    [
        (C.ITEM_ID, pa.string()),
        (REASON, pa.string()),
        (SINCE, pa.timestamp("us", tz="UTC")),
        (BY, pa.string()),
    ]
)


class HoldError(RecsysError):
    """A hold change that cannot be made (the item is not held, or already is)."""


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").floor("s")


#: the file that marks a folder as a review state folder (the monitor's ``--state``, holding the holds):
#: written when the monitor or a hold first creates or takes the folder
STATE_MARKER = "RECSYS_STATE"
#: files only the monitor or the holds write ("CURRENT" is the monitor's version pointer): a folder
#: holding one is a state folder written before the marker existed
_STATE_FILES = ("CURRENT", HOLDS_FILE, LOG_FILE, LOCK_FILE)


def is_state_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a review state folder: its marker, a file only the monitor or the holds
    write, or (an older engine's first monitor run, before any event) only the monitor's lock and
    write temporaries."""
    root = Path(folder)
    if not root.is_dir():
        return False
    if any((root / name).exists() for name in (STATE_MARKER, *_STATE_FILES)):
        return True
    # cycle: recsys.push imports this module; the monitor's run lock is the push lock's file
    from recsys.push.lock import LOCK_FILE as run_lock

    return _others(root) == [run_lock]


def _others(root: Path) -> list[str]:
    """The folder's entries but writes in progress (a reader must not take a half-written marker for a stranger)."""
    return sorted(e.name for e in root.iterdir() if not is_temporary(e.name))


def claim_state_folder(folder: str | Path, option: str = "--state") -> Path:
    """The state folder the monitor or a hold writes: created if new, marked; refuse anyone else's.

    Accepted: a new folder, an empty one, or a state folder (:func:`is_state_folder`).
    The monitor deletes its old versions there, so a folder holding other files is
    never taken.

    Raises
    ------
    ConfigError
        If ``folder`` is a file, or a folder holding other files and no state.
    """
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{option} {root}: is a file, not a folder (the monitor's state folder)")
    if root.is_dir() and not is_state_folder(root):
        names = _others(root)
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise ConfigError(
                f"{option} {root}: folder holds other files ({shown}) and no monitor or holds state "
                f"(no {STATE_MARKER} file); give a new or empty folder"
            )
    root.mkdir(parents=True, exist_ok=True)
    marker = root / STATE_MARKER
    if not marker.exists():
        with atomic_path(marker) as tmp:
            tmp.write_text(
                "review state of recsys: the monitor's counters and versions, the hold list and its log.\n"
                "The monitor deletes its old versions (v00000001/ ...) here: keep no other files in this folder.\n",
                encoding="utf-8",
            )
    return root


def state_folder(folder: str | Path, option: str = "holds folder") -> Path:
    """An existing review state folder, for reading its holds.

    Raises
    ------
    ConfigError
        If ``folder`` is missing, a file, or a folder of other files that is
        not a state folder (a wrong path must not silently push held items);
        an empty folder holds no holds yet.
    """
    root = Path(folder)
    if not root.exists():
        raise ConfigError(f"{option} {root} not found; pass the monitor's --state folder")
    if not root.is_dir():
        raise ConfigError(f"{option} {root} is a file; expected a folder (the monitor's --state folder)")
    if not is_state_folder(root) and _others(root):
        # an empty folder holds no holds yet (a state folder before the monitor's first run); a
        # folder of other files is a wrong path
        raise ConfigError(
            f"{option} {root} is not a monitor or holds state folder (no {STATE_MARKER}, {HOLDS_FILE} or "
            f"{LOG_FILE}, and other files in it); pass the monitor's --state folder"
        )
    return root


def _folder(folder: str | Path, *, create: bool) -> Path:
    return claim_state_folder(folder, "holds folder") if create else state_folder(folder)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Exclusive lock of the holds folder (blocking: a change lasts milliseconds)."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _check_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def read_log(folder: str | Path) -> list[dict[str, Any]]:
    """Return the audit log's entries, oldest first (``[]`` without a log).

    A line a killed writer cut short (an unterminated JSON object) is
    ignored: the change it began never took effect.

    Raises
    ------
    SchemaError
        If a complete line is not a JSON object (the log was edited by hand).
    """
    path = Path(folder) / LOG_FILE
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    entries = []
    # the piece after the last newline is an unfinished line (or "")
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            if line.startswith("{") and not line.rstrip().endswith("}"):
                continue  # a line a killed writer cut short (the next change began a fresh line)
            entry = None
        if (
            not isinstance(entry, dict)
            or entry.get("action") not in ("add", "release")
            or C.ITEM_ID not in entry
        ):
            raise SchemaError(
                f"{path}: line {number} is not a hold change (a JSON object with action and item_id)"
            )
        entries.append(entry)
    return entries


def _replay(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """The hold list the log's entries leave, in the order holds were placed."""
    current: dict[str, dict[str, Any]] = {}
    for entry in entries:
        item = str(entry[C.ITEM_ID])
        if entry["action"] == "add":
            current[item] = {
                C.ITEM_ID: item,
                REASON: str(entry.get(REASON, "")),
                SINCE: pd.Timestamp(entry["time"]),
                BY: str(entry.get(BY, "")),
            }
        else:
            current.pop(item, None)
    rows = list(current.values())
    frame = pd.DataFrame(rows, columns=list(HOLD_COLUMNS))
    frame[SINCE] = pd.to_datetime(frame[SINCE], utc=True).dt.as_unit("us")
    for name in (C.ITEM_ID, REASON, BY):
        frame[name] = frame[name].astype(str)
    return frame


def _write_table(root: Path, frame: pd.DataFrame, log_lines: int) -> None:
    table = pa.Table.from_pandas(frame, schema=_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata({_LOG_LINES_KEY: str(log_lines).encode()})
    write_parquet(table, root / HOLDS_FILE)


def _append(root: Path, entry: dict[str, Any]) -> None:
    """Append one line to the audit log, durably, with a single write."""
    path = root / LOG_FILE
    data = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode(
        "utf-8"
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # a line cut short by a crash earlier would glue onto this one: start on a fresh line
        if os.fstat(fd).st_size and _last_byte(path) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def load_holds(folder: str | Path) -> pd.DataFrame:
    """Return the current hold list of ``folder``.

    Parameters
    ----------
    folder : str or Path
        The holds folder (the monitor's ``--state``). It must exist; one
        without holds yet gives an empty list.

    Returns
    -------
    pandas.DataFrame
        Columns ``item_id``, ``reason``, ``since`` (UTC), ``by``; one row per
        held item.

    Raises
    ------
    ConfigError
        If the folder does not exist or is a file.
    SchemaError
        If the log or the table cannot be read.
    """
    root = _folder(folder, create=False)
    path = root / HOLDS_FILE
    entries = read_log(root)
    if path.exists():
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any Arrow failure means the same: unreadable file
            raise SchemaError(
                f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})"
            ) from None
        recorded = (table.schema.metadata or {}).get(_LOG_LINES_KEY)
        if recorded is not None and int(recorded) == len(entries):
            return table.to_pandas()
    # no table yet, or a crash fell between a log line and the table: the log decides
    return _replay(entries)


def held_items(folder: str | Path) -> frozenset[str]:
    """Return the ids of the items held now in ``folder`` (see :func:`load_holds`)."""
    return frozenset(load_holds(folder)[C.ITEM_ID].astype(str))


def _change(root: Path, entry: dict[str, Any]) -> None:
    """Append ``entry`` and rewrite the table from the whole log (caller holds the lock)."""
    _append(root, entry)
    entries = read_log(root)
    _write_table(root, _replay(entries), len(entries))


def add_hold(
    folder: str | Path,
    item_id: str,
    *,
    reason: str,
    by: str,
    at: pd.Timestamp | None = None,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Put ``item_id`` on hold; return False if it already was (nothing is written then).

    Parameters
    ----------
    folder : str or Path
        The holds folder (created if missing).
    item_id : str
        The item.
    reason : str
        Why (shown to reviewers).
    by : str
        Who: a reviewer's name, or ``monitor``.
    at : pandas.Timestamp, optional
        When (tz-aware); default now.
    extra : dict, optional
        More fields for the audit line (the monitor records its run and alert).

    Raises
    ------
    ConfigError
        If a text argument is empty or ``at`` is naive.
    """
    item = _check_text(item_id, "item_id")
    entry = {
        "time": _stamp(at),
        "action": "add",
        C.ITEM_ID: item,
        REASON: _check_text(reason, "reason"),
        BY: _check_text(by, "by"),
        **(extra or {}),
    }
    root = _folder(folder, create=True)
    with _locked(root):
        if item in held_items(root):
            return False
        _change(root, entry)
    return True


def check_item_known(data_dir: str | Path, item_id: str) -> None:
    """Refuse ``item_id`` unless the items table in ``data_dir`` lists it.

    A hold on a mistyped id is written and audited but takes nothing out of
    any list; a reviewer who names the catalogue gets the mistake instead.

    Raises
    ------
    SchemaError
        If the folder has no readable items table, or the item is not in it.
    """
    path = find_table(data_dir, "items")
    known = read_table(path, "items")[C.ITEM_ID].astype(str)
    item = str(item_id).strip()
    if not known.eq(item).any():
        close = sorted(k for k in known.unique() if k.lower().startswith(item[:3].lower()))[:5]
        hint = f"; similar ids: {', '.join(close)}" if close else ""
        raise SchemaError(f"{path}: item_id {item!r} is not in the catalogue ({len(known):,} items){hint}")


def release_hold(
    folder: str | Path,
    item_id: str,
    *,
    by: str,
    note: str,
    at: pd.Timestamp | None = None,
) -> dict:
    """Release the hold on ``item_id``; return the hold that ended (as a dict).

    Raises
    ------
    HoldError
        If the item is not on hold (the message lists how many are).
    ConfigError
        If the folder is missing, or ``by`` / ``note`` is empty.
    """
    item = _check_text(item_id, "item_id")
    entry = {
        "time": _stamp(at),
        "action": "release",
        C.ITEM_ID: item,
        BY: _check_text(by, "by"),
        "note": _check_text(note, "note"),
    }
    root = _folder(folder, create=False)
    with _locked(root):
        holds = load_holds(root)
        row = holds[holds[C.ITEM_ID] == item]
        if row.empty:
            raise HoldError(
                f"item {item!r} is not on hold in {root} ({len(holds)} item(s) are; see `recsys holds list`)"
            )
        _change(root, entry)
    return row.iloc[0].to_dict()


def released_since(folder: str | Path) -> dict[str, pd.Timestamp]:
    """Return, per item, the time of its latest release (items never released are absent)."""
    out: dict[str, pd.Timestamp] = {}
    for entry in read_log(folder):
        if entry["action"] == "release":
            out[str(entry[C.ITEM_ID])] = pd.Timestamp(entry["time"])
    return out


def _stamp(at: pd.Timestamp | None) -> str:
    ts = _utc_now() if at is None else pd.Timestamp(at)
    if ts.tzinfo is None:
        raise ConfigError(f"hold time {ts} has no time zone; give a tz-aware time")
    return ts.tz_convert("UTC").isoformat()


def apply_holds(items: pd.DataFrame, held: Iterable[str]) -> pd.DataFrame:
    """Return a copy of the items table with held items made ineligible.

    A held item's ``review_status`` becomes ``pending`` (not approved), so
    every eligibility check -- the Recommender's, the push's -- leaves it out
    exactly as it leaves out a retracted item. The other rows are unchanged.

    Parameters
    ----------
    items : pandas.DataFrame
        A clean items table (``item_id``, ``review_status``).
    held : iterable of str
        The held item ids.

    Returns
    -------
    pandas.DataFrame
    """
    held_set = set(held)
    if not held_set:
        return items
    out = items.copy()
    mask = out[C.ITEM_ID].astype(str).isin(held_set).to_numpy()
    if mask.any():
        status = out[C.REVIEW_STATUS].astype(object).to_numpy(copy=True)
        status[mask] = np.where(status[mask] == "approved", HELD_STATUS, status[mask])
        out[C.REVIEW_STATUS] = status
    return out


def holds_folder(option: str | Path | None, configured: str = "") -> Path | None:
    """The holds folder a push run uses: ``--holds`` if given, else ``[push] holds``, else none.

    Raises
    ------
    ConfigError
        If the folder named does not exist (a typo must not silently push held items).
    """
    chosen = option if option not in (None, "") else (configured or None)
    if chosen is None:
        return None
    return _folder(chosen, create=False)


def held_for_run(option: str | Path | None, configured: str = "") -> tuple[str, ...]:
    """The items on hold when a push run starts (sorted; empty without a holds folder).

    Read once per run, so every chunk of the run leaves out the same items
    and a resumed run is recognised as the same run only while the list is unchanged.
    """
    folder = holds_folder(option, configured)
    return () if folder is None else tuple(sorted(held_items(folder)))


def check_not_held(items: Iterable[str], held: Iterable[str]) -> None:
    """Refuse to push items that are on hold (a campaign naming them).

    Raises
    ------
    HoldError
        Naming the held items and how a reviewer releases them.
    """
    on_hold = sorted(set(items) & set(held))
    if on_hold:
        first = on_hold[0]
        raise HoldError(
            f"item {', '.join(map(repr, on_hold))} is on hold for review and cannot be pushed; a reviewer "
            f"releases it with `recsys holds release {first} --by NAME --note TEXT --state DIR`"
        )
