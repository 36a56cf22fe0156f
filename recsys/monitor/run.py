"""One monitoring run: read the new event files, count, test, alert, hold."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys import holds as H
from recsys.config import MonitorConfig
from recsys.exceptions import ConfigError
from recsys.io import prepare_output_dir
from recsys.monitor import alarms as A
from recsys.monitor.counters import HOUR_NS, KINDS, Counters, kind_codes
from recsys.monitor.files import Chunk, read_new, scan
from recsys.monitor.state import (
    MonitorState,
    check_state_dir,
    clean_temps,
    commit,
    load_state,
    run_alerts,
)
from recsys.push.lock import hold as hold_lock
from recsys.ranking.catalog import check_catalog
from recsys.schema import _as_timestamps  # the contract's one timestamp rule (offsets, Unix seconds)
from recsys.taxonomy import Taxonomy, load_taxonomy

ALERTS_FILE = "alerts.jsonl"
#: why a row was not counted
SKIP_REASONS = (
    C.R_MISSING,
    C.R_UNPARSABLE_TS,
    C.R_NAIVE_TS,
    C.R_UNKNOWN_EVENT_TYPE,
    C.R_FUTURE_TS,
    C.R_DUPLICATE_ID,
    C.R_UNKNOWN_ITEM,
    "older than the counters",
)


@dataclass
class MonitorReport:
    """What one run did.

    Attributes
    ----------
    run : int
        The run's number (its state version); 0 when nothing was committed.
    files_read : list of str
        Files with rows counted this run.
    rows_counted : int
        Events counted.
    late_rows : int
        Counted events older than the newest hour counted before this run (out of time order).
    skipped : dict of str to int
        Rows not counted, by reason.
    notes : list of str
        File-level findings (copies, changed files, incomplete files).
    alerts : list of dict
        The alerts raised (as written to alerts.jsonl).
    held : list of str
        Items this run put on hold.
    tests : int
        Tests made (the Bonferroni factor).
    newest : str or None
        Newest event time counted so far (UTC, ISO 8601).
    seconds : float
        Wall time of the run.
    """

    run: int = 0
    files_read: list[str] = field(default_factory=list)
    rows_counted: int = 0
    late_rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    tests: int = 0
    newest: str | None = None
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """The run's summary as console lines."""
        if not self.run:
            out = ["no new events since the last run; nothing counted"]
        else:
            out = [
                (
                    f"run {self.run}: {self.rows_counted:,} event(s) counted from {len(self.files_read)} file(s) "
                    f"(newest {self.newest}); {self.tests:,} test(s), {len(self.alerts)} alert(s), "
                    f"{len(self.held)} item(s) put on hold; {self.seconds:.2f} s"
                )
            ]
        if self.late_rows:
            out.append(
                f"  {self.late_rows:,} counted event(s) arrived out of time order (older than the newest hour)"
            )
        for reason, n in sorted(
            self.skipped.items(), key=lambda kv: SKIP_REASONS.index(kv[0])
        ):
            out.append(f"  not counted: {n:,} row(s) -- {reason}")
        out.extend(f"  note: {n}" for n in self.notes)
        for a in self.alerts:
            out.append("  " + alert_line(a))
        return out


def alert_line(a: dict[str, Any]) -> str:
    """One console line for an alert."""
    who = f"item {a['item_id']}" if a.get("item_id") else f"topic {a['topic']}"
    action = f" -> {a['action']}" if a.get("action") else ""
    return (
        f"ALERT {a['kind']} ({a['event']}) {who} [{a['window_hours']} h]: observed {a['observed']} vs expected "
        f"{a['expected']:.2f} (x{a['ratio']:.1f}), p_adj={a['p_adjusted']:.2g}{action}"
    )


# ---- the catalogue as the tests see it --------------------------------------------------------
@dataclass
class _Catalog:
    index: pd.Index  # item ids
    topic: np.ndarray  # primary topic index per catalogue row, -1 none
    approved: np.ndarray  # approved and not expired at `now`


def _read_catalog(path: str | Path, taxonomy: Taxonomy, now: pd.Timestamp) -> _Catalog:
    items, _ = check_catalog(path, taxonomy)
    topics = list(taxonomy.topics)
    pos = {t: i for i, t in enumerate(topics)}
    primary = np.array(
        [pos.get(t[0], -1) if len(t) else -1 for t in items[C.TOPICS]], dtype=np.int64
    )
    expires = pd.to_datetime(items[C.EXPIRES_AT], utc=True)
    approved = (items[C.REVIEW_STATUS].astype(str) == "approved").to_numpy() & ~(
        expires <= now
    ).to_numpy()
    return _Catalog(pd.Index(items[C.ITEM_ID].astype(str)), primary, approved)


def _subjects(
    counters: Counters,
    catalog: _Catalog | None,
    taxonomy: Taxonomy,
    held: frozenset[str],
) -> A.Subjects:
    names = list(taxonomy.topics)
    n = counters.n_items
    if catalog is None:
        return A.Subjects(np.full(n, -1, dtype=np.int64), names, None)
    where = catalog.index.get_indexer(pd.Index(counters.item_ids))
    found = where >= 0
    topic = np.where(found, catalog.topic[np.maximum(where, 0)], -1)
    approved = found & catalog.approved[np.maximum(where, 0)]
    approved &= ~pd.Index(counters.item_ids).isin(list(held))
    return A.Subjects(topic.astype(np.int64), names, approved)


# ---- counting one chunk -----------------------------------------------------------------------
def _count(
    chunk: pd.DataFrame,
    counters: Counters,
    catalog: _Catalog | None,
    limit_ns: int,
    skipped: dict[str, int],
) -> tuple[int, int, int]:
    """Count a file's new rows; return (counted, late, newest ns)."""
    n = len(chunk)
    keep = np.ones(n, dtype=bool)

    def drop(reason: str, mask: np.ndarray) -> None:
        hit = keep & mask
        if hit.any():
            skipped[reason] = skipped.get(reason, 0) + int(hit.sum())
            keep[hit] = False

    item = (
        chunk[C.ITEM_ID].astype(str).str.strip().to_numpy(dtype=object)
        if n
        else np.zeros(0, dtype=object)
    )
    etype = chunk[C.EVENT_TYPE].astype(str).str.strip()
    drop(
        C.R_MISSING,
        (item == "")
        | chunk[C.ITEM_ID].isna().to_numpy()
        | (etype == "").to_numpy()
        | chunk[C.EVENT_TYPE].isna().to_numpy(),
    )
    values, null, unparsable, naive = _as_timestamps(chunk[C.TIMESTAMP])
    drop(C.R_MISSING, null)
    drop(C.R_UNPARSABLE_TS, unparsable)
    drop(C.R_NAIVE_TS, naive)
    kind = kind_codes(etype)
    drop(C.R_UNKNOWN_EVENT_TYPE, kind == -2)
    # microseconds (the contract's unit): nanoseconds would overflow past 2262, and a year-2500
    # typo must be reported as a future timestamp, not crash the run
    us = values.dt.as_unit("us").array.asi8
    drop(C.R_FUTURE_TS, keep & (us > limit_ns // 1000))
    if C.EVENT_ID in chunk.columns:
        ids = chunk[C.EVENT_ID].astype(str)
        drop(C.R_DUPLICATE_ID, ids.duplicated().to_numpy() & (ids != "").to_numpy())
    if catalog is not None:
        drop(C.R_UNKNOWN_ITEM, catalog.index.get_indexer(item) < 0)
    # valid events of a type no test uses (read, like, ...) are simply not counted
    use = keep & (kind >= 0)
    if not use.any():
        return 0, 0, -1
    hour = us[use] // (HOUR_NS // 1000)
    before = counters.newest_hour
    too_old = counters.add(
        counters.index_items(item[use]), kind[use].astype(np.int64), hour
    )
    if too_old:
        skipped["older than the counters"] = (
            skipped.get("older than the counters", 0) + too_old
        )
    # late = counted, yet older than the newest hour before this file (the too old were not counted)
    late = (
        int(((hour < before) & (hour >= counters.oldest_hour())).sum())
        if before >= 0
        else 0
    )
    return int(use.sum()) - too_old, late, int(us[use].max()) * 1000


#: reasons that, when no row at all was counted, say an option is wrong rather than the rows
_OPTION_REASONS = {C.R_UNKNOWN_ITEM: "--catalog", C.R_FUTURE_TS: "--now"}


def _refuse_nothing_counted(report: MonitorReport, rows_read: int, catalog: str | Path | None, clock: pd.Timestamp) -> None:
    """Refuse a run whose every new row (``rows_read`` of them) named an unknown item or a time after
    ``now``: a wrong ``--catalog`` or ``--now``, not bad rows. Raised before the commit, so no file is
    marked read and the corrected run counts them; a run with any other row (counted, of a type
    no test uses, or bad) goes on and marks them read.

    Raises
    ------
    ConfigError
    """
    wrong = {r: n for r, n in report.skipped.items() if r in _OPTION_REASONS}
    total = sum(wrong.values())
    if report.rows_counted or not total or total != rows_read:
        return
    why = "; ".join(f"{n:,} {r}" for r, n in wrong.items())
    check = " and ".join(
        f"--catalog {catalog} (is it the current items table?)" if r == C.R_UNKNOWN_ITEM
        else f"--now {clock.isoformat()} (is the clock right?)"
        for r in wrong
    )
    raise ConfigError(
        f"monitor: none of the {total:,} new row(s) in {len(report.files_read)} file(s) was counted ({why}); "
        f"check {check}; no file was marked read, so a corrected run counts them"
    )


# ---- publishing --------------------------------------------------------------------------------
def _append_lines(path: Path, lines: list[str]) -> None:
    """Append complete lines with one write (starting on a fresh line if a kill cut the last one)."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_run_published(path: Path) -> int:
    """The run number of the last complete line of alerts.jsonl (0 if none)."""
    if not path.exists():
        return 0
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - (1 << 16)))
        tail = fh.read().decode("utf-8", errors="replace")
    for line in reversed(tail.split("\n")[:-1]):
        try:
            return int(json.loads(line)["run"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def _publish(state: MonitorState, state_dir: Path, out_dir: Path) -> None:
    """Append the committed run's alerts and place its holds, unless already done (idempotent)."""
    alerts = run_alerts(state.folder)
    if not alerts:
        return
    path = out_dir / ALERTS_FILE
    if _last_run_published(path) < state.run:
        _append_lines(
            path, [json.dumps(a, ensure_ascii=False, sort_keys=True) for a in alerts]
        )
    placed = {
        (str(e[C.ITEM_ID]), e.get("run"))
        for e in H.read_log(state_dir)
        if e["action"] == "add"
    }
    for a in alerts:
        if a.get("action") != "hold" or (a["item_id"], state.run) in placed:
            continue
        H.add_hold(
            state_dir,
            a["item_id"],
            reason=f"{a['event']}s at {a['ratio']:.1f}x the expected rate in {a['window_hours']} h "
            f"({a['observed']} vs {a['expected']:.1f} expected, p_adj={a['p_adjusted']:.2g})",
            by="monitor",
            at=pd.Timestamp(a["time"]),
            extra={"run": state.run},
        )


# ---- the run -----------------------------------------------------------------------------------
def _alert_dicts(
    found: list[A.Candidate],
    tests: int,
    base: A.Baseline,
    counters: Counters,
    subjects: A.Subjects,
    state: MonitorState,
    config: MonitorConfig,
    held: frozenset[str],
    released: dict[str, pd.Timestamp],
) -> list[dict[str, Any]]:
    time_iso = pd.Timestamp(state.newest_ns, tz="UTC").isoformat()
    out = []
    for c in found:
        if c.subject == "item":
            item_id = counters.item_ids[c.index]
            t = int(subjects.topic[c.index])
            topic = subjects.topic_names[t] if t >= 0 else None
        else:
            item_id, topic = None, subjects.topic_names[c.index]
        action = None
        if (
            c.kind == A.NEGATIVE_FEEDBACK
            and c.event in config.hold_on
            and c.ratio >= config.hold_severity
            # without a baseline (the monitor's first day) an item that always drew many
            # reports cannot be told from a burst: alert, but leave holding to a reviewer
            and base.source == "baseline"
        ):
            window_start = pd.Timestamp(
                (counters.newest_hour - c.window + 1) * HOUR_NS, tz="UTC"
            )
            # a reviewer's release stands until evidence newer than the release comes in
            fresh = item_id not in released or window_start > released[item_id]
            if item_id not in held and fresh:
                action = "hold"
        key = f"{c.kind}|{c.event}|{c.subject}|{item_id or topic}"
        last = state.recent.get(key)
        if (
            action is None
            and last is not None
            and counters.newest_hour - last < config.repeat_hours
        ):
            continue  # raised recently: not repeated every few minutes
        state.recent[key] = counters.newest_hour
        out.append(
            {
                "time": time_iso,
                "run": state.run,
                "kind": c.kind,
                "event": c.event,
                "item_id": item_id,
                "topic": topic,
                "segment": None,
                "window_hours": c.window,
                "observed": c.observed,
                "expected": round(c.expected, 6),
                "ratio": round(c.ratio, 4),
                "p_value": c.p,
                "p_adjusted": c.p_adjusted,
                "tests": tests,
                "baseline": base.source,
                "numbers": c.numbers,
                "action": action,
            }
        )
    # forget alert keys older than any repeat window, so the state stays small
    state.recent = {
        k: v
        for k, v in state.recent.items()
        if counters.newest_hour - v < max(config.repeat_hours, 1)
    }
    return out


def run_monitor(
    events: str | Path,
    state_dir: str | Path,
    *,
    catalog: str | Path | None = None,
    out: str | Path | None = None,
    config: MonitorConfig | None = None,
    taxonomy: Taxonomy | str | Path | None = None,
    now: pd.Timestamp | None = None,
    force: bool = False,
) -> MonitorReport:
    """Count the event files that arrived since the last run, raise alerts, place holds.

    Parameters
    ----------
    events : str or Path
        Folder the event files (contract events, ``.parquet`` or ``.csv``) arrive in.
    state_dir : str or Path
        The monitor's state folder (created if new): watermark, counters,
        hold list, and ``alerts.jsonl`` unless ``out`` is given.
    catalog : str or Path, optional
        The current items table: gives topics (topic baselines and spikes),
        approval (silence) and the known items (events of other items are
        not counted, and reported as "unknown item"). Without it items are
        judged against the city's rates.
    out : str or Path, optional
        Folder for ``alerts.jsonl`` (default: ``state_dir``).
    config : MonitorConfig, optional
        Windows, baseline, test settings (default: the defaults).
    taxonomy : Taxonomy, path or None
        The codes (topics); default: the bundled city's.
    now : pandas.Timestamp, optional
        The run's clock (tz-aware): events later than it plus
        ``future_seconds`` are refused. Default: the current time.
    force : bool, default False
        Append ``alerts.jsonl`` into an ``out`` folder that holds other
        files (none of them is touched).

    Returns
    -------
    MonitorReport

    Raises
    ------
    ConfigError
        On a bad folder or option.
    LockedError
        If another monitor run holds the state folder.
    ArtifactError
        If the committed state cannot be read.
    """
    started = time.perf_counter()
    cfg = config or MonitorConfig()
    if not cfg.windows_hours:
        raise ConfigError(
            "[monitor] windows_hours is empty; give at least one window, e.g. [1, 6, 24]"
        )
    if now is not None and pd.Timestamp(now).tzinfo is None:
        raise ConfigError(
            f"now {now!r} has no time zone; give a tz-aware time (e.g. ...+08:00)"
        )
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    clock = (
        pd.Timestamp.now(tz="UTC")
        if now is None
        else pd.Timestamp(now).tz_convert("UTC")
    )
    # every input checked before the state folder is created or touched: a typo leaves nothing behind
    events_dir = Path(events)
    if not events_dir.is_dir():
        raise ConfigError(
            f"--events {events_dir}: {'is not a folder' if events_dir.exists() else 'folder not found'}"
        )
    cat = _read_catalog(catalog, tax, clock) if catalog is not None else None
    separate = out is not None and Path(out).resolve() != Path(state_dir).resolve()
    out_marker = prepare_output_dir(out, "monitor", force=force) if separate else None
    root = check_state_dir(state_dir)
    out_dir = root
    if out_marker is not None:
        out_dir = out_marker.path
        out_dir.mkdir(parents=True, exist_ok=True)
    report = MonitorReport()
    with hold_lock(
        root,
        what="monitor state",
        run=f"monitor {clock.isoformat()}",
        notes=report.notes,
    ):
        clean_temps(root)
        hours = max(cfg.windows_hours)
        days = cfg.baseline_days + (hours + 23) // 24 + 2
        state = load_state(root, hours, days)
        _publish(state, root, out_dir)  # finish a run killed after its commit
        found = scan(events, state.marks)
        report.notes.extend(found.notes)
        known_sha = {
            m.sha256: name
            for name, m in state.marks.items()
            if m.status == "read" and m.offset == m.size
        }
        limit_ns = clock.value + cfg.future_seconds * 1_000_000_000
        counters = state.counters
        changed = bool(found.notes)
        newest = state.newest_ns if state.newest_ns is not None else -1
        rows_read = 0
        for p in found.pending:
            chunk: Chunk = read_new(p, known_sha)
            if chunk.note:
                report.notes.append(chunk.note)
            if chunk.mark is not None:
                state.marks[p.name] = chunk.mark
                changed = True
                if chunk.mark.status == "read" and chunk.mark.offset == chunk.mark.size:
                    known_sha.setdefault(chunk.mark.sha256, p.name)
            if chunk.frame is None or chunk.frame.empty:
                continue
            rows_read += len(chunk.frame)
            counted, late, file_newest = _count(
                chunk.frame, counters, cat, limit_ns, report.skipped
            )
            report.rows_counted += counted
            report.late_rows += late
            newest = max(newest, file_newest)
            report.files_read.append(p.name)
        _refuse_nothing_counted(report, rows_read, catalog, clock)
        if not changed:
            report.seconds = time.perf_counter() - started
            return report
        state.run += 1
        state.newest_ns = newest if newest >= 0 else None
        held = H.held_items(root) if (root / H.LOG_FILE).exists() else frozenset()
        alerts: list[dict[str, Any]] = []
        if report.rows_counted and counters.newest_hour >= 0:
            subjects = _subjects(counters, cat, tax, held)
            found_alarms, report.tests, base = A.alarms(counters, subjects, cfg)
            released = H.released_since(root)
            alerts = _alert_dicts(
                found_alarms,
                report.tests,
                base,
                counters,
                subjects,
                state,
                cfg,
                held,
                released,
            )
        report.run = state.run
        report.alerts = alerts
        report.held = [a["item_id"] for a in alerts if a["action"] == "hold"]
        report.newest = (
            pd.Timestamp(state.newest_ns, tz="UTC").isoformat()
            if state.newest_ns is not None
            else None
        )
        summary = {
            "rows_counted": report.rows_counted,
            "late_rows": report.late_rows,
            "skipped": report.skipped,
            "files_read": report.files_read,
            "notes": report.notes,
            "tests": report.tests,
            "kinds": list(KINDS),
        }
        commit(root, state, alerts, summary)
        _publish(state, root, out_dir)
        if out_marker is not None:
            out_marker.mark([ALERTS_FILE])
    report.seconds = time.perf_counter() - started
    return report
