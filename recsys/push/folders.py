"""The push's output and history folders: which a run may write into, checked before any work.

A push output folder is long-lived: one ``date=`` partition per night (and the
campaigns beside them), its history and work files. ``recsys push`` and
``recsys campaign`` write into a new or empty folder, or one a push or campaign
wrote before (the ``recsys.io`` marker, or for an older engine's folder its
layout, :func:`is_push_output`); the history into a new or empty folder or a
push history (:func:`is_push_history`). There is no ``--force``: these folders
hold nothing but push runs.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from recsys.exceptions import ConfigError
from recsys.io import OUTPUT_MARKER, PLACEHOLDER_FILES, OutputDir, is_temporary, prepare_output_dir
from recsys.push import history as H
from recsys.push import writer as W
from recsys.push.job import output_folder
from recsys.push.lock import LOCK_FILE

#: the marker kind of a push output folder: ``recsys push`` and ``recsys campaign`` write the same one
OUTPUT_KIND = "push"
#: what a ``--history`` folder is checked as; it gets no marker (its ``_store.json`` says what it is)
HISTORY_KIND = "push-history"
_DAY_DIR = re.compile(r"^date=\d{4}-\d{2}-\d{2}$")
#: where older engines' ``recsys lift`` wrote its default output, inside the pushes folder (part of
#: an older push folder's layout; ``recsys.lift`` warns about it)
OLD_LIFT_DIR = "_lift"
#: a push folder has no --force: what to do instead, for the refusal's message
_NO_FORCE = "there is no --force: a push folder holds nothing but push runs"


def _entries(folder: Path) -> list[Path] | None:
    """The folder's entries but the never-touched placeholders; None when it has a marker or cannot be listed.

    A marker of another kind (or an unreadable one) means another command's folder: not recognised.
    """
    try:
        entries = [e for e in folder.iterdir() if e.name not in PLACEHOLDER_FILES]
    except OSError:
        return None
    return None if any(e.name == OUTPUT_MARKER for e in entries) else entries


def _is_day_dir(entry: Path) -> bool:
    """``date=YYYY-MM-DD`` holding only ``kind=`` folders (and a killed commit's temporaries)."""
    if not (_DAY_DIR.match(entry.name) and entry.is_dir() and not entry.is_symlink()):
        return False
    try:
        return all(e.name.startswith("kind=") or is_temporary(e.name) for e in entry.iterdir())
    except OSError:
        return False


def is_push_output(folder: Path, history: Path | None = None) -> bool:
    """Whether ``folder`` has the layout a push or campaign run leaves (an engine before the marker).

    Every entry must be one a run makes: ``_history``, ``_work``, ``_lock``, ``_lift`` (where older
    engines' ``recsys lift`` wrote its default output), ``date=YYYY-MM-DD`` partitions, the run's
    ``--history`` when it is a push history inside the folder, or a write's temporary. One other
    file makes it someone else's folder.

    Parameters
    ----------
    folder : Path
        An existing folder without a push marker.
    history : Path, optional
        The run's ``--history`` folder.

    Returns
    -------
    bool
    """
    entries = _entries(folder)
    if entries is None:
        return False
    own_dirs = {W.HISTORY_DIR, W.WORK_DIR, OLD_LIFT_DIR}
    if history is not None and history.parent.resolve() == folder.resolve() and is_push_history(history):
        own_dirs.add(history.name)  # an older engine's run kept its history inside its output
    return all(
        (e.name in own_dirs and e.is_dir())
        or (e.name == LOCK_FILE and e.is_file())
        or _is_day_dir(e)
        or is_temporary(e.name)
        for e in entries
    )


def is_push_history(folder: Path) -> bool:
    """Whether ``folder`` is a push history: ``_store.json``, ``_lock`` and ``date=`` folders only.

    ``date=`` folders count only beside ``_store.json`` (a store writes it before any run): a push
    output's partitions are ``date=`` folders too, and committing history into them would replace
    the pushed rows.

    Parameters
    ----------
    folder : Path
        An existing folder.

    Returns
    -------
    bool
    """
    entries = _entries(folder)
    if entries is None:
        return False
    names = {e.name for e in entries}
    if any(_DAY_DIR.match(n) for n in names) and H.STORE_FILE not in names:
        return False
    return all(
        (e.name in (H.STORE_FILE, LOCK_FILE) and e.is_file()) or _is_day_dir(e) or is_temporary(e.name)
        for e in entries
    )


def check_push_folders(out: str | Path, history: str | Path | None) -> tuple[OutputDir, Path]:
    """Check ``--out`` and ``--history`` before any work; return the checked output and the history folder.

    The output folder is long-lived (one partition per night, campaigns beside them): it may be
    new, empty, or one a push or campaign wrote before (the marker, or an older engine's layout,
    :func:`is_push_output`). The history may be new, empty or a push history
    (:func:`is_push_history`); default ``<out>/_history``. Anything else is refused: a push has no
    ``--force``, and ``.``, home, ``/`` and a repository root are never written.

    Parameters
    ----------
    out : path
        The ``--out`` folder.
    history : path, optional
        The ``--history`` folder.

    Returns
    -------
    target : OutputDir
        The output folder; :meth:`OutputDir.mark` records a committed run's entries.
    history : Path
        The history folder.

    Raises
    ------
    PushIOError
        A file in the way, or a folder that cannot be written.
    ConfigError
        A folder the push may not write into, in one line.
    """
    out = output_folder(Path(out), "--out")
    given = None if history is None else Path(history)
    target = prepare_output_dir(
        out, OUTPUT_KIND, recognise=lambda p: is_push_output(p, given), label="recsys push or campaign",
        hint=f"choose a new or empty folder, or the folder of earlier pushes ({_NO_FORCE})",
    )
    if history is None:
        return target, out / W.HISTORY_DIR
    history = output_folder(Path(history), "--history")
    if history.resolve() == out.resolve():
        # the history's commit would land on the partition of the same date and kind, and then be replaced
        raise ConfigError(
            f"--history {history} is the --out folder; give the history a folder of its own "
            f"(default: {out / W.HISTORY_DIR})"
        )
    prepare_output_dir(
        history, HISTORY_KIND, recognise=is_push_history, option="--history",
        label="recsys push or campaign as a push history",
        hint="choose a new or empty folder, or the history folder of earlier pushes (there is no --force: "
        "a push history holds nothing else)",
    )
    inner = _relative(history, out)
    if inner is not None and not inner.parts[0].startswith("_"):
        # readers of the pushes (pandas, pyarrow) skip only folders named _… or .…: a history elsewhere
        # inside --out would be read back as push rows
        raise ConfigError(
            f"--history {history} is inside the --out folder {out}, where pandas and pyarrow would read its "
            f"files as push rows; give the history a folder of its own, or one named _… inside it "
            f"(default: {out / W.HISTORY_DIR})"
        )
    if _relative(out, history) is not None:
        raise ConfigError(
            f"--out {out} is inside the --history folder {history}; give each a folder of its own "
            f"(default history: {out / W.HISTORY_DIR})"
        )
    return target, history


def _relative(path: Path, folder: Path) -> Path | None:
    """``path`` relative to ``folder`` when strictly inside it (links resolved), else None."""
    inner, outer = path.resolve(), folder.resolve()
    if inner == outer or outer not in inner.parents:
        return None
    return inner.relative_to(outer)


def mark_push_output(target: OutputDir, day: dt.date, history: Path) -> None:
    """Record in the output folder's marker what a committed run wrote there (beside earlier runs').

    Parameters
    ----------
    target : OutputDir
        The output folder, from :func:`check_push_folders`.
    day : datetime.date
        The run's date (its ``date=`` partition).
    history : Path
        The run's history folder (recorded when it is ``<out>/_history``).
    """
    entries = [W.WORK_DIR, LOCK_FILE, f"date={day.isoformat()}"]
    if history == target.path / W.HISTORY_DIR:
        entries.append(W.HISTORY_DIR)
    target.mark(entries)
