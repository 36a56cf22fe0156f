"""Leftovers of killed runs: found and put right by the next run, holding the locks.

A push run writes only through temporary names it made itself, and a run
killed at the wrong moment can leave them behind. The next run of the same
output folder / history (which holds their locks, so no other run is
writing there) recognises them by name and cleans them up:

* ``.kind=K.old-XXXXXXXX`` folders (a committed partition or history moved
  aside during a commit): put back when the commit never renamed the new
  one into place (so that nothing committed is lost), removed otherwise;
* ``.NAME.tmp-XXXXXXXX`` files and folders (atomic writes in progress);
* work folders of other runs (``_work/date=D/kind=K``, kept so that a killed
  run resumes) whose last write is more than :data:`STALE_WORK_DAYS` old.

Nothing else is touched: a name this code does not make is left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterable

#: a killed run's work folder older than this is not worth resuming any more
STALE_WORK_DAYS = 2.0
_ASIDE = re.compile(r"^\.(kind=[a-z0-9_-]+)\.old-[0-9a-f]{8}$")
_TMP = re.compile(r"^\..+\.tmp-[0-9a-f]{8}$")


def _asides(date_dirs: Iterable[Path], notes: list[str]) -> None:
    for date_dir in date_dirs:
        for entry in sorted(date_dir.iterdir()):
            match = _ASIDE.match(entry.name)
            if not match or not entry.is_dir():
                continue
            live = date_dir / match.group(1)
            if live.exists():
                shutil.rmtree(entry, ignore_errors=True)
                notes.append(f"removed {entry} (left by a killed commit)")
            else:
                os.replace(entry, live)
                notes.append(f"restored {live} (a killed commit had moved it aside)")


def _temporaries(roots: Iterable[Path], notes: list[str]) -> None:
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob(".*.tmp-*"), reverse=True):
            if not _TMP.match(path.name) or not path.exists():
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            notes.append(f"removed {path} (an unfinished write)")


def _newest_mtime(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*")), default=folder.stat().st_mtime)


def clean_leftovers(
    out: str | Path,
    history: str | Path,
    *,
    work_dir: str = "_work",
    keep: str | Path | None = None,
    now: float | None = None,
) -> list[str]:
    """Put right what killed runs left in ``out`` and ``history`` (call holding both locks).

    Parameters
    ----------
    out : path
        The push output folder.
    history : path
        The push-history folder.
    work_dir : str
        Name of the work folder under ``out``.
    keep : path, optional
        The current run's work folder (never removed: it may be resumed).
    now : float, optional
        Clock for the age of work folders (seconds since the epoch).

    Returns
    -------
    list of str
        One line per thing restored or removed.
    """
    out, history = Path(out), Path(history)
    notes: list[str] = []
    date_dirs = [d for root in (out, history) if root.is_dir() for d in sorted(root.glob("date=*")) if d.is_dir()]
    _asides(date_dirs, notes)
    work = out / work_dir
    _temporaries([*date_dirs, work], notes)
    if work.is_dir():
        cutoff = (time.time() if now is None else now) - STALE_WORK_DAYS * 86400
        keep_path = Path(keep).resolve() if keep is not None else None
        for run_dir in sorted(work.glob("date=*/kind=*")):
            if keep_path is not None and run_dir.resolve() == keep_path:
                continue
            if run_dir.is_dir() and _newest_mtime(run_dir) < cutoff:
                shutil.rmtree(run_dir, ignore_errors=True)
                notes.append(f"removed {run_dir} (a killed run's work, over {STALE_WORK_DAYS:g} days old)")
        for date_dir in sorted(work.glob("date=*")):
            if date_dir.is_dir() and not any(date_dir.iterdir()):
                date_dir.rmdir()
    return notes
