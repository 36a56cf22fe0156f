"""Compact rolling counters: event counts per item, kind and hour (and day), as numpy arrays.

Two rings of int32 arrays indexed ``[slot, kind, item]``:

* ``hourly``: the last ``hours`` hours (the longest alert window), one slot
  per UTC hour;
* ``daily``: the last ``days`` UTC days (the baseline plus the two days the
  windows may reach into), one slot per day.

Every counted event lands in both rings where its time still fits; an event
older than a ring's span is not counted there (the daily ring's span is the
oldest the monitor counts at all). Counts depend only on *which* events were
counted, never on the order or the runs they came in: the ring is first
advanced to the newest hour of the batch, then the batch is added. That is
what lets a killed run be redone with the same result.

Items get a dense index the first time they are seen (``item_ids``), kept
across runs; the arrays grow with the catalogue. 50k items cost
``(24 + 30) x 5 x 4`` bytes each, about 54 MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.exceptions import ArtifactError

#: what is counted per item: every event maps to one kind (or none)
KINDS = ("impression", "click", "share", "dismiss", "report")
K_IMP, K_CLICK, K_SHARE, K_DISMISS, K_REPORT = range(len(KINDS))
# Engagement is counted at the click: every positive engagement of the contract starts
# with one, and counting read/complete/like too would count one visit several times
# (and break the Poisson model of the tests, which needs independent counts).
_KIND_OF_TYPE = {
    "impression": K_IMP,
    "click": K_CLICK,
    "share": K_SHARE,
    "dismiss": K_DISMISS,
    "report": K_REPORT,
}
#: event types counted by no kind (valid, just not needed by the tests)
NOT_COUNTED = tuple(t for t in C.EVENT_TYPES if t not in _KIND_OF_TYPE)
HOUR_NS = 3_600_000_000_000


def kind_codes(event_types: pd.Series) -> np.ndarray:
    """Kind code per event type; -1 for a type no kind counts, -2 for one the contract does not know."""
    # through category codes: one lookup per distinct type, not per row (a mapping per row took
    # a seventh of an hourly run)
    codes, uniques = pd.factorize(event_types, use_na_sentinel=False)
    known = set(C.EVENT_TYPES)
    table = np.array(
        [_KIND_OF_TYPE.get(t, -1) if t in known else -2 for t in uniques], dtype=np.int8
    )
    return table[codes] if len(table) else np.zeros(0, dtype=np.int8)


@dataclass
class Counters:
    """The monitor's counts (see the module docstring).

    Attributes
    ----------
    item_ids : list of str
        Item of each index.
    hourly : ndarray int32, shape (hours, n_kinds, capacity)
    hour_of_slot : ndarray int64, shape (hours,)
        Absolute UTC hour (ns // 1 h) each slot holds; -1 empty.
    daily : ndarray int32, shape (days, n_kinds, capacity)
    day_of_slot : ndarray int64, shape (days,)
    newest_hour : int
        The newest hour counted (-1 before the first event).
    """

    item_ids: list[str]
    hourly: np.ndarray
    hour_of_slot: np.ndarray
    daily: np.ndarray
    day_of_slot: np.ndarray
    newest_hour: int = -1

    @classmethod
    def empty(cls, hours: int, days: int, capacity: int = 1024) -> Counters:
        """New counters with ``hours`` hourly and ``days`` daily slots."""
        return cls(
            item_ids=[],
            hourly=np.zeros((hours, len(KINDS), capacity), dtype=np.int32),
            hour_of_slot=np.full(hours, -1, dtype=np.int64),
            daily=np.zeros((days, len(KINDS), capacity), dtype=np.int32),
            day_of_slot=np.full(days, -1, dtype=np.int64),
        )

    @property
    def n_items(self) -> int:
        """Items with an index."""
        return len(self.item_ids)

    @property
    def hours(self) -> int:
        """Hourly slots."""
        return self.hourly.shape[0]

    @property
    def days(self) -> int:
        """Daily slots."""
        return self.daily.shape[0]

    # ---- items -------------------------------------------------------------
    def index_items(self, ids: np.ndarray) -> np.ndarray:
        """Dense index of each item id, adding the ids not seen before (in order of appearance)."""
        known = pd.Index(self.item_ids)
        pos = known.get_indexer(ids)
        new = pos < 0
        if new.any():
            fresh = pd.unique(ids[new])
            start = len(self.item_ids)
            self.item_ids.extend(str(x) for x in fresh)
            self._grow(len(self.item_ids))
            pos[new] = start + pd.Index(fresh).get_indexer(ids[new])
        return pos.astype(np.int64)

    def _grow(self, n: int) -> None:
        capacity = self.hourly.shape[2]
        if n <= capacity:
            return
        while capacity < n:
            capacity *= 2
        self.hourly = _widen(self.hourly, capacity)
        self.daily = _widen(self.daily, capacity)

    # ---- counting ------------------------------------------------------------
    def oldest_hour(self) -> int:
        """The oldest hour still counted (the daily ring's first hour); -1 before any event."""
        if self.newest_hour < 0:
            return -1
        return (self.newest_hour // 24 - self.days + 1) * 24

    def add(self, item: np.ndarray, kind: np.ndarray, hour: np.ndarray) -> int:
        """Count events (dense item index, kind code, absolute UTC hour); return how many were too old.

        The rings advance to the newest hour first, so the result does not
        depend on the order of calls.
        """
        if len(item) == 0:
            return 0
        self._advance(max(self.newest_hour, int(hour.max())))
        in_days = hour // 24 > self.newest_hour // 24 - self.days
        in_hours = hour > self.newest_hour - self.hours
        d, h = hour[in_days], hour[in_hours]
        np.add.at(self.daily, ((d // 24) % self.days, kind[in_days], item[in_days]), 1)
        np.add.at(self.hourly, (h % self.hours, kind[in_hours], item[in_hours]), 1)
        return int((~in_days).sum())

    def _advance(self, newest: int) -> None:
        if newest <= self.newest_hour:
            return
        for hour in range(
            max(newest - self.hours + 1, self.newest_hour + 1), newest + 1
        ):
            slot = hour % self.hours
            if self.hour_of_slot[slot] != hour:
                self.hourly[slot] = 0
                self.hour_of_slot[slot] = hour
        first_day = max(
            newest // 24 - self.days + 1,
            self.newest_hour // 24 + 1 if self.newest_hour >= 0 else 0,
        )
        for day in range(first_day, newest // 24 + 1):
            slot = day % self.days
            if self.day_of_slot[slot] != day:
                self.daily[slot] = 0
                self.day_of_slot[slot] = day
        self.newest_hour = newest

    # ---- reading -------------------------------------------------------------
    def window(self, hours: int) -> np.ndarray:
        """Counts of the last ``hours`` hours up to the newest: int64 (n_kinds, n_items)."""
        lo = self.newest_hour - hours + 1
        use = (self.hour_of_slot >= lo) & (self.hour_of_slot <= self.newest_hour)
        return self.hourly[use, :, : self.n_items].sum(axis=0, dtype=np.int64)

    def days_sum(self, first_day: int, last_day: int) -> np.ndarray:
        """Counts of UTC days ``first_day..last_day`` (absolute day numbers): int64 (n_kinds, n_items)."""
        use = (self.day_of_slot >= first_day) & (self.day_of_slot <= last_day)
        return self.daily[use, :, : self.n_items].sum(axis=0, dtype=np.int64)

    # ---- persistence ---------------------------------------------------------
    def save(self, folder: Path) -> dict:
        """Write the arrays as ``.npy`` into ``folder``; return the fields for the state JSON."""
        n = self.n_items
        np.save(
            folder / "hourly.npy",
            np.ascontiguousarray(self.hourly[:, :, :n]),
            allow_pickle=False,
        )
        np.save(
            folder / "daily.npy",
            np.ascontiguousarray(self.daily[:, :, :n]),
            allow_pickle=False,
        )
        return {
            "item_ids": list(self.item_ids),
            "hour_of_slot": self.hour_of_slot.tolist(),
            "day_of_slot": self.day_of_slot.tolist(),
            "newest_hour": int(self.newest_hour),
        }

    @classmethod
    def load(cls, folder: Path, doc: dict) -> Counters:
        """Read what :meth:`save` wrote.

        Raises
        ------
        ArtifactError
            If an array is missing or its shape disagrees with the state JSON.
        """
        try:
            hourly = np.load(folder / "hourly.npy", allow_pickle=False)
            daily = np.load(folder / "daily.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ArtifactError(
                f"{folder}: monitor counters cannot be read ({exc})"
            ) from None
        ids = [str(x) for x in doc["item_ids"]]
        hour_of_slot = np.asarray(doc["hour_of_slot"], dtype=np.int64)
        day_of_slot = np.asarray(doc["day_of_slot"], dtype=np.int64)
        if hourly.shape != (len(hour_of_slot), len(KINDS), len(ids)) or daily.shape != (
            len(day_of_slot),
            len(KINDS),
            len(ids),
        ):
            raise ArtifactError(
                f"{folder}: monitor counters do not match their state.json (shapes differ)"
            )
        out = cls(
            ids, hourly, hour_of_slot, daily, day_of_slot, int(doc["newest_hour"])
        )
        cap = max(1024, len(ids))
        out.hourly = _widen(hourly, cap)
        out.daily = _widen(daily, cap)
        return out

    def resized(self, hours: int, days: int) -> Counters:
        """Counters with other ring lengths, keeping what still fits (a changed configuration)."""
        if hours == self.hours and days == self.days:
            return self
        out = Counters.empty(hours, days, self.hourly.shape[2])
        out.item_ids = list(self.item_ids)
        out.newest_hour = self.newest_hour
        if self.newest_hour >= 0:
            out._advance_fresh()
            for slot, hour in enumerate(self.hour_of_slot):
                if hour > out.newest_hour - hours and hour >= 0:
                    out.hourly[hour % hours] = self.hourly[slot]
            for slot, day in enumerate(self.day_of_slot):
                if day > out.newest_hour // 24 - days and day >= 0:
                    out.daily[day % days] = self.daily[slot]
        return out

    def _advance_fresh(self) -> None:
        newest, self.newest_hour = self.newest_hour, -1
        self._advance(newest)


def _widen(array: np.ndarray, capacity: int) -> np.ndarray:
    if array.shape[2] >= capacity:
        return array
    out = np.zeros(array.shape[:2] + (capacity,), dtype=np.int32)
    out[:, :, : array.shape[2]] = array
    return out
