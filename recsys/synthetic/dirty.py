"""Deliberately bad rows for a ``--dirty`` city, counted per quarantine reason.

Each bad row carries exactly one defect, chosen so that the *first* reason of
``recsys.columns.QUARANTINE_REASONS`` that applies to it is the intended one;
the counts written beside the data are therefore exact. A defective user or
item row (other than a duplicate id) takes its events along: they count as
``unknown user`` (checked first) or ``unknown item``.

Assumptions the validator shares: a duplicate id keeps the first row and
quarantines the later ones; a duplicate event is a row whose (user, item,
type, timestamp) equals an earlier row's, whatever its event_id; "future"
applies to event timestamps, against the data's end; timestamps of a dirty
city are ISO 8601 strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.synthetic.events import TYPE, EventArrays

#: share of each table's rows that are made bad, spread over its kinds
DIRTY_SHARE = 0.01
ISO = "%Y-%m-%dT%H:%M:%S+00:00"
#: "future timestamp" rows lie up to this many seconds after the log's end
FUTURE_REACH_S = 30 * 86_400
IMPOSSIBLE = ("1970-01-01T00:00:00+00:00", "1989-12-31T23:59:59+00:00", "1900-01-01T08:00:00+08:00")
UNPARSABLE = ("yesterday", "2026-13-45T25:61:00+08:00", "下周一上午", "31/02/2026 10:00", "n/a")
USER_KINDS = (C.R_MISSING, C.R_UNPARSABLE_TS, C.R_NAIVE_TS, C.R_UNKNOWN_CODE, C.R_SUB_GROUP, C.R_DUPLICATE_ID)
ITEM_KINDS = (C.R_MISSING, C.R_UNPARSABLE_TS, C.R_NAIVE_TS, C.R_UNKNOWN_CODE, C.R_DUPLICATE_ID)
EVENT_KINDS = (
    C.R_MISSING,
    C.R_UNPARSABLE_TS,
    C.R_NAIVE_TS,
    C.R_IMPOSSIBLE_TS,
    C.R_UNKNOWN_CODE,
    C.R_UNKNOWN_EVENT_TYPE,
    C.R_FUTURE_TS,
    C.R_NEGATIVE_DWELL,
    C.R_DWELL_TYPE,
    C.R_DUPLICATE_ID,
    C.R_DUPLICATE_EVENT,
    C.R_UNKNOWN_USER,
    C.R_UNKNOWN_ITEM,
)


@dataclass
class DirtyPlan:
    """What was broken: bad user/item rows (by dense index) and counts per reason."""

    bad_users: np.ndarray
    bad_items: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, n: int) -> None:
        """Add ``n`` rows to ``reason``'s count."""
        if n:
            self.counts[reason] = self.counts.get(reason, 0) + int(n)

    def cascade(self, user: np.ndarray, item: np.ndarray) -> None:
        """Count the events of bad users and bad items (user first)."""
        by_user = self.bad_users[user]
        self.add(C.R_UNKNOWN_USER, int(by_user.sum()))
        self.add(C.R_UNKNOWN_ITEM, int((~by_user & self.bad_items[item]).sum()))

    def sorted_counts(self) -> dict[str, int]:
        """Counts in the order of ``QUARANTINE_REASONS``."""
        return {r: self.counts[r] for r in C.QUARANTINE_REASONS if r in self.counts}


def per_kind(n_rows: int, n_kinds: int) -> int:
    """How many rows each kind of defect gets (at least one)."""
    return max(1, int(round(DIRTY_SHARE * n_rows / n_kinds)))


def iso(times: pd.Series) -> pd.Series:
    """Tz-aware timestamps as ISO 8601 strings with an offset (NaT stays missing)."""
    return times.dt.strftime(ISO).astype("str")


def _naive(text: str) -> str:
    return text[:19] if isinstance(text, str) else "2026-05-01T08:00:00"


def break_users(
    users: pd.DataFrame, sub_groups: dict[str, str], rng: np.random.Generator
) -> tuple[pd.DataFrame, DirtyPlan]:
    """Return the users table with bad rows (string timestamps) and its plan."""
    n = len(users)
    k = per_kind(n, len(USER_KINDS))
    out = users.copy()
    out[C.REGISTERED_AT] = iso(out[C.REGISTERED_AT])
    plan = DirtyPlan(bad_users=np.zeros(n, dtype=bool), bad_items=np.zeros(0, dtype=bool))
    rows = rng.permutation(n)
    taken = 0

    def take(m: int) -> np.ndarray:
        nonlocal taken
        picked = rows[taken : taken + m]
        taken += len(picked)
        return picked

    for r in take(k):
        out.loc[r, C.REGION] = None
        plan.bad_users[r] = True
    plan.add(C.R_MISSING, k)
    for j, r in enumerate(take(k)):
        out.loc[r, C.REGISTERED_AT] = UNPARSABLE[j % len(UNPARSABLE)]
        plan.bad_users[r] = True
    plan.add(C.R_UNPARSABLE_TS, k)
    for r in take(k):
        out.loc[r, C.REGISTERED_AT] = _naive(out.loc[r, C.REGISTERED_AT])
        plan.bad_users[r] = True
    plan.add(C.R_NAIVE_TS, k)
    for j, r in enumerate(take(k)):
        if j % 2 == 0:
            out.loc[r, C.REGION] = "atlantis"
        else:
            out.at[r, C.CHANNELS] = list(out.at[r, C.CHANNELS]) + ["pager"]
        plan.bad_users[r] = True
    plan.add(C.R_UNKNOWN_CODE, k)
    done = 0
    for r in take(k):
        group = out.loc[r, C.GROUP]
        foreign = [s for s, g in sub_groups.items() if g != group]
        if foreign:
            out.loc[r, C.SUB_GROUP] = foreign[int(rng.integers(len(foreign)))]
            plan.bad_users[r] = True
            done += 1
    plan.add(C.R_SUB_GROUP, done)
    # duplicates: a later copy of a clean row; the first stays valid, so no cascade
    dup = take(k)
    out = pd.concat([out, out.iloc[np.sort(dup)]], ignore_index=True)
    plan.add(C.R_DUPLICATE_ID, len(dup))
    return out, plan


def break_items(items: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """Return the items table with bad rows (string timestamps), the bad-row mask and counts."""
    n = len(items)
    k = per_kind(n, len(ITEM_KINDS))
    out = items.copy()
    out[C.PUBLISHED_AT] = iso(out[C.PUBLISHED_AT])
    out[C.EXPIRES_AT] = iso(out[C.EXPIRES_AT])
    bad = np.zeros(n, dtype=bool)
    rows = rng.permutation(n)
    groups = [rows[j * k : (j + 1) * k] for j in range(len(ITEM_KINDS))]
    for r in groups[0]:
        out.loc[r, C.TITLE] = None
    for j, r in enumerate(groups[1]):
        out.loc[r, C.PUBLISHED_AT] = UNPARSABLE[j % len(UNPARSABLE)]
    for r in groups[2]:
        out.loc[r, C.PUBLISHED_AT] = _naive(out.loc[r, C.PUBLISHED_AT])
    for j, r in enumerate(groups[3]):
        if j % 2 == 0:
            out.loc[r, C.FORMAT] = "hologram"
        else:
            out.at[r, C.TOPICS] = list(out.at[r, C.TOPICS]) + ["alchemy"]
    for g in groups[:4]:
        bad[g] = True
    out = pd.concat([out, out.iloc[np.sort(groups[4])]], ignore_index=True)
    counts = {reason: len(g) for reason, g in zip(ITEM_KINDS, groups)}
    return out, bad, counts


def bad_events(
    chunk: EventArrays,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    channels: tuple[str, ...],
    plan: DirtyPlan,
    n_rows_hint: int,
    end: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Bad event rows built from clean rows of the first chunk (appended after the log).

    Each row is a copy of a clean event (of a clean user and item) with one
    defect. Returns the rows as strings (``event_id`` is filled in by the
    caller, except for the duplicate-id rows, which reuse an id: ``e<row>`` of
    the first chunk).
    """
    k = per_kind(n_rows_hint, len(EVENT_KINDS))
    clean = np.flatnonzero(~plan.bad_users[chunk.user] & ~plan.bad_items[chunk.item])
    reads = clean[chunk.event_type[clean] == TYPE["read"]]
    clicks = clean[chunk.event_type[clean] == TYPE["click"]]
    others = rng.permutation(np.setdiff1d(clean, np.concatenate([reads, clicks])))
    reads, clicks = rng.permutation(reads), rng.permutation(clicks)
    frames = []

    def base(rows: np.ndarray) -> pd.DataFrame:
        ts = pd.to_datetime(chunk.t[rows], unit="s", utc=True)
        return pd.DataFrame(
            {
                C.EVENT_ID: pd.array([None] * len(rows), dtype="str"),
                C.USER_ID: user_ids[chunk.user[rows]],
                C.ITEM_ID: item_ids[chunk.item[rows]],
                C.EVENT_TYPE: np.array(C.EVENT_TYPES, dtype=object)[chunk.event_type[rows]],
                C.TIMESTAMP: pd.Series(ts).dt.strftime(ISO).to_numpy(dtype=object),
                C.CHANNEL: np.array(channels, dtype=object)[chunk.channel[rows]],
                C.DWELL_SECONDS: chunk.dwell[rows],
            }
        ).astype({c: "str" for c in (C.EVENT_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP, C.CHANNEL)})

    used = 0

    def take(m: int) -> np.ndarray:
        nonlocal used
        picked = others[used : used + m]
        used += len(picked)
        return picked

    def add(reason: str, frame: pd.DataFrame) -> None:
        frames.append(frame)
        plan.add(reason, len(frame))

    f = base(take(k))
    missing = (C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP)
    for j in range(len(f)):
        f.loc[j, missing[j % len(missing)]] = None
    add(C.R_MISSING, f)
    f = base(take(k))
    f[C.TIMESTAMP] = [UNPARSABLE[j % len(UNPARSABLE)] for j in range(len(f))]
    add(C.R_UNPARSABLE_TS, f)
    f = base(take(k))
    f[C.TIMESTAMP] = f[C.TIMESTAMP].str.slice(0, 19)
    add(C.R_NAIVE_TS, f)
    f = base(take(k))
    # a zeroed clock (Unix 0) and other dates before the validator's 1990 (past ones: a future one
    # would also count as "future timestamp" to a reader checking against the end)
    f[C.TIMESTAMP] = [IMPOSSIBLE[j % len(IMPOSSIBLE)] for j in range(len(f))]
    add(C.R_IMPOSSIBLE_TS, f)
    f = base(take(k))
    f[C.CHANNEL] = "pager"
    add(C.R_UNKNOWN_CODE, f)
    f = base(take(k))
    f[C.EVENT_TYPE] = ["purchase" if j % 2 == 0 else "view" for j in range(len(f))]
    add(C.R_UNKNOWN_EVENT_TYPE, f)
    f = base(take(k))
    future = end + rng.integers(3600, FUTURE_REACH_S, len(f))
    f[C.TIMESTAMP] = pd.Series(pd.to_datetime(future, unit="s", utc=True)).dt.strftime(ISO).to_numpy(dtype=object)
    add(C.R_FUTURE_TS, f)
    f = base(reads[:k])
    f[C.DWELL_SECONDS] = -rng.integers(1, 300, len(f)).astype(float)
    add(C.R_NEGATIVE_DWELL, f)
    f = base(clicks[:k])
    f[C.DWELL_SECONDS] = rng.integers(5, 300, len(f)).astype(float)
    add(C.R_DWELL_TYPE, f)
    # duplicate id: another clean event's content, one second earlier (so not a duplicate event), with a used id
    src, ids = take(k), take(k)
    m = min(len(src), len(ids))
    f = base(src[:m])
    shifted = pd.to_datetime(chunk.t[src[:m]] - 1, unit="s", utc=True)
    f[C.TIMESTAMP] = pd.Series(shifted).dt.strftime(ISO).to_numpy(dtype=object)
    f[C.EVENT_ID] = [f"e{r}" for r in ids[:m]]
    add(C.R_DUPLICATE_ID, f)
    add(C.R_DUPLICATE_EVENT, base(take(k)))
    f = base(take(k))
    f[C.USER_ID] = [f"u_ghost_{j}" for j in range(len(f))]
    add(C.R_UNKNOWN_USER, f)
    f = base(take(k))
    f[C.ITEM_ID] = [f"i_ghost_{j}" for j in range(len(f))]
    add(C.R_UNKNOWN_ITEM, f)
    return pd.concat(frames, ignore_index=True)
