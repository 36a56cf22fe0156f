"""The monitor's state folder: versioned, crash-consistent watermark + counters.

Layout of ``--state DIR``::

    CURRENT            the name of the committed version (replaced atomically)
    v00000042/         one version: state.json (watermark, ring slots, item ids,
                       recent alerts), hourly.npy, daily.npy, alerts.jsonl
                       (the alerts that run raised)
    holds.parquet, holds_log.jsonl, holds.lock   the hold list (recsys.holds)
    alerts.jsonl       every alert, appended after each run (unless --out)
    _lock              one monitor run at a time

A run builds its new version completely in a temporary folder, renames it
into place, and only then replaces ``CURRENT``: the watermark and the
counters change together or not at all. A run killed at any point leaves the
previous version current, so the next run reads the same files again and
counts them once. Publishing a run's alerts and holds happens after the
commit and is idempotent (each line carries its run number), and every run
first finishes the publication of the committed version, so a kill between
commit and publication loses nothing and duplicates nothing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.exceptions import ArtifactError
from recsys.holds import claim_state_folder
from recsys.io import atomic_dir, atomic_path, clean_stale_temps
from recsys.monitor.counters import Counters
from recsys.monitor.files import FileMark, marks_from_json

STATE_VERSION = 1
POINTER = "CURRENT"
STATE_FILE = "state.json"
RUN_ALERTS = "alerts.jsonl"
@dataclass
class MonitorState:
    """One committed version of the state (or the empty state before the first run)."""

    run: int
    marks: dict[str, FileMark]
    counters: Counters
    recent: dict[str, int] = field(
        default_factory=dict
    )  # alert key -> newest hour when last raised
    newest_ns: int | None = None
    folder: Path | None = None  # the version folder (None before the first run)


def check_state_dir(path: str | Path) -> Path:
    """Return the state folder, created if new and marked; refuse a folder that holds something else
    (the rule is :func:`recsys.holds.claim_state_folder`'s, shared with the holds).

    Raises
    ------
    ConfigError
        If ``path`` is a file, or a non-empty folder without any monitor or holds state.
    """
    return claim_state_folder(path)


def _version_name(run: int) -> str:
    return f"v{run:08d}"


def load_state(root: Path, hours: int, days: int) -> MonitorState:
    """Read the committed version (an empty state before the first run).

    Raises
    ------
    ArtifactError
        If ``CURRENT`` names a missing or unreadable version.
    """
    pointer = root / POINTER
    if not pointer.exists():
        return MonitorState(0, {}, Counters.empty(hours, days))
    name = pointer.read_text(encoding="utf-8").strip()
    folder = root / name
    try:
        doc = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(
            f"{folder}: monitor state cannot be read ({exc}); CURRENT names it"
        ) from None
    if doc.get("state_version") != STATE_VERSION:
        raise ArtifactError(
            f"{folder}: monitor state version {doc.get('state_version')!r}; this engine reads {STATE_VERSION}"
        )
    counters = Counters.load(folder, doc["counters"]).resized(hours, days)
    return MonitorState(
        run=int(doc["run"]),
        marks=marks_from_json(doc["files"]),
        counters=counters,
        recent={str(k): int(v) for k, v in doc.get("recent", {}).items()},
        newest_ns=doc.get("newest_ns"),
        folder=folder,
    )


def commit(
    root: Path, state: MonitorState, alerts: list[dict[str, Any]], extra: dict[str, Any]
) -> Path:
    """Write ``state`` as version ``state.run`` and make it current; return its folder.

    ``extra`` goes into state.json as is (the run's summary).
    """
    name = _version_name(state.run)
    dest = root / name
    with atomic_dir(dest) as tmp:
        doc = {
            "state_version": STATE_VERSION,
            "run": state.run,
            "newest_ns": state.newest_ns,
            "files": {k: v.to_dict() for k, v in sorted(state.marks.items())},
            "recent": dict(sorted(state.recent.items())),
            "counters": state.counters.save(tmp),
            "summary": extra,
        }
        (tmp / STATE_FILE).write_text(
            json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (tmp / RUN_ALERTS).write_text(
            "".join(
                json.dumps(a, ensure_ascii=False, sort_keys=True) + "\n" for a in alerts
            ),
            encoding="utf-8",
        )
    with atomic_path(root / POINTER) as tmp:
        tmp.write_text(name + "\n", encoding="utf-8")
    state.folder = dest
    _drop_old(root, keep={name, _version_name(state.run - 1)})
    return dest


def _drop_old(root: Path, keep: set[str]) -> None:
    """Remove versions older than the previous one: only folders of a version's name that hold a
    monitor state file (what :func:`commit` wrote), never another folder of that name."""
    for entry in root.iterdir():
        if (
            entry.is_dir()
            and not entry.is_symlink()
            and entry.name.startswith("v")
            and entry.name[1:].isdigit()
            and entry.name not in keep
            and _is_version(entry)
        ):
            shutil.rmtree(entry, ignore_errors=True)


def _is_version(folder: Path) -> bool:
    """Whether ``folder`` is a version the monitor wrote (its state file names its run)."""
    try:
        doc = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    run = doc.get("run") if isinstance(doc, dict) else None
    return isinstance(run, int) and "state_version" in doc and folder.name == _version_name(run)


def clean_temps(root: Path) -> None:
    """Remove what a killed run left half-written (its temporary version folder or pointer)."""
    clean_stale_temps(
        root,
        lambda name: name == POINTER or (name.startswith("v") and name[1:].isdigit()),
    )


def run_alerts(folder: Path | None) -> list[dict[str, Any]]:
    """The alerts a committed version raised."""
    if folder is None or not (folder / RUN_ALERTS).exists():
        return []
    lines = (folder / RUN_ALERTS).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
