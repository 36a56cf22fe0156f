"""Event files arriving in a folder: which are new since the last run, and their new rows.

The watermark is one record per file name (:class:`FileMark`): size,
modification time, sha256 and, for a CSV file, the bytes consumed. A run
reads only what no earlier run counted:

* a file never seen is read whole -- unless its content (sha256) equals a file
  already counted under another name: a copy is reported and skipped;
* a file seen with the same size and mtime is skipped (a re-run counts nothing);
* a CSV file that grew (the writer is appending) is read from where the last
  run stopped, up to its last complete line; a line still being written waits
  for the next run. A CSV file that shrank or whose counted part changed is
  reported and left alone: what was counted stays counted, once;
* a Parquet file cannot grow: a changed one is reported and left alone; one
  that cannot be read yet (a writer still writing it: no footer) is reported
  and retried next run, never marked as read;
* hidden files (``.name``) and names ending ``.tmp``, ``.part``,
  ``.partial``, ``.inprogress`` are a writer's temporaries and are not read.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from recsys import columns as C
from recsys.exceptions import ConfigError

#: suffixes read as event files
EVENT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
#: suffixes of a writer's temporary files (never read)
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".inprogress", ".crdownload")
#: columns read from an event file (others are ignored)
USED_COLUMNS = (C.EVENT_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP)
REQUIRED_COLUMNS = (C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP)


@dataclass
class FileMark:
    """What the watermark remembers of one event file.

    Attributes
    ----------
    size, mtime_ns : int
        At the last read.
    sha256 : str
        Of the bytes counted (the whole file for Parquet, ``[0, offset)`` for CSV).
    offset : int
        Bytes counted (CSV: up to the last complete line).
    rows : int
        Rows counted from this file so far.
    status : str
        ``read`` (counted), ``duplicate`` (a copy of ``same_as``), ``refused``
        (unusable: a required column is missing; retried only if it changes).
    same_as : str
        For a duplicate, the file it copies.
    """

    size: int
    mtime_ns: int
    sha256: str
    offset: int = 0
    rows: int = 0
    status: str = "read"
    same_as: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the state JSON."""
        return asdict(self)


@dataclass
class Pending:
    """One file with something to read this run."""

    name: str
    path: Path
    fmt: str
    start: int  # byte offset to read from (CSV); 0 for Parquet
    previous: FileMark | None


@dataclass
class Scan:
    """What :func:`scan` found: files to read and notes for the run summary."""

    pending: list[Pending]
    notes: list[str]
    unchanged: int


def _sha(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as fh:
        while True:
            size = 1 << 20 if left is None else min(1 << 20, left)
            if size == 0:
                break
            block = fh.read(size)
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a writer's temporary file, never read."""
    return name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES)


def scan(folder: str | Path, marks: dict[str, FileMark]) -> Scan:
    """List the event files of ``folder`` with new content since ``marks``.

    Parameters
    ----------
    folder : str or Path
        The events folder (not recursive).
    marks : dict of str to FileMark
        The watermark (file name -> mark).

    Returns
    -------
    Scan
        Files in name order (a writer naming files by time gets them in time order).

    Raises
    ------
    ConfigError
        If the folder is missing or is a file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(
            f"--events {root}: {'is not a folder' if root.exists() else 'folder not found'}"
        )
    pending: list[Pending] = []
    notes: list[str] = []
    unchanged = 0
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        name = entry.name
        fmt = EVENT_SUFFIXES.get(entry.suffix.lower())
        if fmt is None or is_temporary(name) or not entry.is_file():
            continue
        info = entry.stat()
        mark = marks.get(name)
        if (
            mark is not None
            and mark.size == info.st_size
            and mark.mtime_ns == info.st_mtime_ns
        ):
            unchanged += 1
            continue
        if mark is None or mark.status != "read":
            pending.append(Pending(name, entry, fmt, 0, mark))
            continue
        if (
            fmt == "csv"
            and info.st_size > mark.offset
            and _sha(entry, mark.offset) == mark.sha256
        ):
            pending.append(Pending(name, entry, fmt, mark.offset, mark))
            continue
        if (
            fmt == "parquet"
            and info.st_size == mark.size
            and _sha(entry) == mark.sha256
        ):
            # touched, not changed: remember the new mtime, count nothing
            mark.mtime_ns = info.st_mtime_ns
            unchanged += 1
            continue
        if (
            fmt == "csv"
            and info.st_size == mark.offset
            and _sha(entry, mark.offset) == mark.sha256
        ):
            mark.size, mark.mtime_ns = info.st_size, info.st_mtime_ns
            unchanged += 1
            continue
        notes.append(
            f"{name}: changed after {mark.rows:,} row(s) of it were counted (not appended to); "
            "left alone -- write corrections as a new file"
        )
        # remember the change so the note is not repeated every run
        mark.size, mark.mtime_ns = info.st_size, info.st_mtime_ns
    return Scan(pending, notes, unchanged)


@dataclass
class Chunk:
    """New rows of one file, as read (strings), and the mark to record once they are counted."""

    frame: pd.DataFrame | None
    mark: FileMark | None
    note: str = ""


def read_new(p: Pending, known_sha: dict[str, str]) -> Chunk:
    """Read the rows of ``p`` that no run counted yet.

    Parameters
    ----------
    p : Pending
        From :func:`scan`.
    known_sha : dict of str to str
        sha256 -> file name of every file counted whole (to spot a copy).

    Returns
    -------
    Chunk
        ``frame`` None when nothing is to be counted (the note says why);
        ``mark`` None when the file must be looked at again next run.
    """
    info = p.path.stat()
    if p.fmt == "parquet":
        return _read_parquet(p, info, known_sha)
    return _read_csv(p, info, known_sha)


def _columns_missing(columns: list[str]) -> list[str]:
    return [c for c in REQUIRED_COLUMNS if c not in columns]


def _read_parquet(p: Pending, info: os.stat_result, known_sha: dict[str, str]) -> Chunk:
    sha = _sha(p.path)
    if sha in known_sha and known_sha[sha] != p.name:
        mark = FileMark(
            info.st_size,
            info.st_mtime_ns,
            sha,
            info.st_size,
            0,
            "duplicate",
            known_sha[sha],
        )
        return Chunk(
            None,
            mark,
            f"{p.name}: same content as {known_sha[sha]}, already counted; skipped",
        )
    try:
        schema = pq.read_schema(p.path)
        columns = [c for c in USED_COLUMNS if c in schema.names]
        missing = _columns_missing(schema.names)
        if missing:
            mark = FileMark(
                info.st_size, info.st_mtime_ns, sha, info.st_size, 0, "refused"
            )
            return Chunk(
                None,
                mark,
                f"{p.name}: required column {', '.join(missing)} absent; file not counted",
            )
        frame = pq.read_table(p.path, columns=columns).to_pandas()
    except Exception as exc:  # noqa: BLE001 - Arrow raises many types; all mean "not readable (yet)"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Chunk(
            None, None, f"{p.name}: not readable yet ({reason}); retried next run"
        )
    mark = FileMark(
        info.st_size, info.st_mtime_ns, sha, info.st_size, len(frame), "read"
    )
    return Chunk(frame, mark)


def _read_csv(p: Pending, info: os.stat_result, known_sha: dict[str, str]) -> Chunk:
    with open(p.path, "rb") as fh:
        data = fh.read(info.st_size)
    end = data.rfind(b"\n") + 1  # only complete lines; 0 if none yet
    if p.start == 0:
        if end == 0:
            return Chunk(
                None, None, f"{p.name}: no complete line yet; retried next run"
            )
        whole_sha = hashlib.sha256(data[:end]).hexdigest()
        if (
            end == len(data)
            and whole_sha in known_sha
            and known_sha[whole_sha] != p.name
        ):
            same = known_sha[whole_sha]
            mark = FileMark(
                info.st_size, info.st_mtime_ns, whole_sha, end, 0, "duplicate", same
            )
            return Chunk(
                None,
                mark,
                f"{p.name}: same content as {same}, already counted; skipped",
            )
        header_end = data.find(b"\n") + 1
        body = data[:end]
    else:
        header_end = data.find(b"\n") + 1
        if end <= p.start:
            return Chunk(
                None, None, ""
            )  # only a partial line was added: wait for the rest
        body = data[:header_end] + data[p.start : end]
    header = data[:header_end].decode("utf-8-sig", errors="replace").strip().split(",")
    missing = _columns_missing([h.strip() for h in header])

    def refused(why: str) -> Chunk:
        # the file is marked as seen (never read again until it changes) and counted nowhere
        mark = FileMark(info.st_size, info.st_mtime_ns, hashlib.sha256(data[:end]).hexdigest(), end, 0, "refused")
        return Chunk(None, mark, f"{p.name}: {why}")

    if missing:
        return refused(f"required column {', '.join(missing)} absent; file not counted")
    try:
        frame = pd.read_csv(
            io.BytesIO(body),
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            usecols=lambda c: c in USED_COLUMNS,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return refused(f"not a readable UTF-8 CSV file ({reason}); not counted")
    rows = (p.previous.rows if p.previous is not None and p.start else 0) + len(frame)
    mark = FileMark(
        info.st_size,
        info.st_mtime_ns,
        hashlib.sha256(data[:end]).hexdigest(),
        end,
        rows,
        "read",
    )
    return Chunk(frame, mark)


def marks_from_json(doc: dict[str, Any]) -> dict[str, FileMark]:
    """The watermark from its state-JSON form."""
    return {name: FileMark(**fields) for name, fields in doc.items()}
