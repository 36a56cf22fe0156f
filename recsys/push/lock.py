"""Run locks: one run at a time per push output folder and per push-history folder.

A lock is an advisory ``fcntl.flock`` on a ``_lock`` file in the folder, held
for the whole run. flock was chosen over an ``O_EXCL`` lock file because the
operating system drops it when the holding process dies, however it dies
(SIGKILL included): a lock can never be left behind by a dead run, so there
is no guessing from pids whether a lock is stale. The file also records who
holds it (run id, pid, start time, host) so that the second runner is told
whom it waits for; a record left by a run that died is recognised (its lock
is free) and simply overwritten -- taken over -- by the next run.

Every run that reads or writes a push history (nightly, segment, campaign)
holds the history's lock while it plans, computes and commits: caps and
de-duplication count the history, and two runs counting it at once would
each miss the other's pushes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator

import psutil

from recsys.exceptions import RecsysError
from recsys.io import missing_folders, remove_empty_folders

LOCK_FILE = "_lock"


class LockedError(RecsysError):
    """Another run holds the lock of a push output or history folder."""


def _holder_text(record: dict[str, Any]) -> str:
    if not record:
        return "another run (no details recorded)"
    pid = record.get("pid", "?")
    return f"run {record.get('run', '?')} (pid {pid}, started {record.get('started', '?')}, host {record.get('host', '?')})"


def _read_record(handle: Any) -> dict[str, Any]:
    handle.seek(0)
    try:
        record = json.loads(handle.read() or "{}")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def pid_alive(pid: Any) -> bool:
    """Whether a process with this pid runs on this machine."""
    try:
        return psutil.pid_exists(int(pid))
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def hold(folder: str | Path, *, what: str, run: str, notes: list[str] | None = None) -> Iterator[Path]:
    """Hold the lock of ``folder`` for one run (created if missing).

    A run that fails (an exception out of the ``with`` block) having
    written nothing into the folder removes the lock file and the folders
    it created (each only when empty); once it wrote something (a push's
    resumable workspace) the lock file stays with it.

    Parameters
    ----------
    folder : path
        The push output or history folder.
    what : str
        What the folder is, for the message (``push output``, ``push history``).
    run : str
        The run's description (kind and date), recorded in the lock file.
    notes : list of str, optional
        Gets a line when a record left by a dead run is taken over.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    LockedError
        If another live run holds the lock, naming it.
    """
    root = Path(folder)
    # a run that fails before writing anything leaves no trace of its own: the lock file and the
    # folders it created go again (else its `_lock` made a new --out "not empty" and refused the
    # corrected run); once it wrote something (a push's resumable workspace) the lock stays with it
    made = missing_folders(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    before = set(os.listdir(root))
    made_lock = LOCK_FILE not in before
    failed = False
    with _locked_file(root, path, what) as handle:
        try:
            left = _read_record(handle)
            if left and notes is not None:
                state = "no longer running" if not pid_alive(left.get("pid")) else "its lock was free"
                notes.append(f"{what} {root}: took over the lock left by {_holder_text(left)}, {state}")
            record = {
                "run": run,
                "pid": os.getpid(),
                "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "host": socket.gethostname(),
            }
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(record))
            handle.flush()
            yield path
        except BaseException:
            failed = True
            raise
        finally:
            # a clean exit leaves an empty record: only a dead run leaves its own behind
            handle.seek(0)
            handle.truncate()
            handle.flush()
            if failed and made_lock and _entries(root) - {LOCK_FILE} <= before:
                # unlinked while still locked: a run that opened it meanwhile finds, once it holds the
                # lock, that the file is no longer the folder's and takes the new one (_locked_file)
                with contextlib.suppress(OSError):
                    path.unlink()
                remove_empty_folders(made)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _locked_file(root: Path, path: Path, what: str) -> Iterator[Any]:
    """The lock file of ``root``, open and locked; the one the folder holds when the lock is taken."""
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a failed run removed the folder it had made: make it again
            root.mkdir(parents=True, exist_ok=True)
            continue
        handle = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_text(_read_record(handle))
            handle.close()
            raise LockedError(
                f"{what} {root} is in use by {holder}; wait for it to finish, "
                f"or stop that process if it hangs (the lock is freed the moment it exits)"
            ) from None
        try:
            current = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            with handle:
                yield handle
            return
        handle.close()  # a failed run unlinked it after we opened it: lock the folder's new one
    raise LockedError(f"{what} {root}: its lock file keeps being replaced; is another engine removing it?")


def _entries(root: Path) -> set[str]:
    """The names in ``root``; none when the run's own cleanup already removed it (the push's)."""
    try:
        return set(os.listdir(root))
    except FileNotFoundError:
        return set()
