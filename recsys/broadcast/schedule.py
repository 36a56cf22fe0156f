"""Filling a place's slots: which items, in which slot, in what order.

Eligibility (an item may go to a place when all hold):

* approved, in the current catalogue, not on hold, published before the
  place's ``active_hours`` start that day and not expiring before they end
  (live the whole time the place airs; the whole day without active hours);
* its format is one the place's channel carries (``[broadcast] formats`` may
  narrow it) and it has a ``duration_seconds`` no longer than the place's slot;
* it reaches some of the place's audience (a target group with a share in
  the mix, and the place's region among its target regions): an item for
  youth is never scheduled where the mix has no youth share;
* it was not shown at the place in the last ``[broadcast] repeat_days``
  days, and it is shown at most once a day there.

Packing is a knapsack per place (slots of ``slot_seconds`` each, items of
their running times). It is solved greedily, which is what keeps 10,000
places inside seconds: all places of a block advance together, one item per
place per round, each taking its remaining candidate with the best **value
per second** that still fits a slot, into the fullest slot it fits
(best fit). Value is the place's expected engagement
(:mod:`recsys.broadcast.scores`) times the priority boost, times
``[broadcast] topic_decay`` for each item of the same main topic already
scheduled there that day (topic diversity across the day). A place stops when
no eligible item fits any gap, so slots are filled whenever enough eligible
items exist: a place whose first ``[broadcast] candidates`` are used up
while an eligible item could still fit is packed again over every eligible item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: a round picks nothing for a place when its best value is below this (nothing eligible fits)
_NONE = -1


@dataclass(frozen=True)
class Packed:
    """The rows of a block of places, in place order then slot, then position in the slot.

    Attributes
    ----------
    place, slot, item : ndarray of int64
        Place row in the block, slot index, catalogue item index.
    start : ndarray of float64
        Seconds from the slot's start.
    value : ndarray of float32
        The place's expected engagement of the item (no decay, no boost).
    filled : ndarray of float64, shape (B,)
        Seconds scheduled per place (all slots).
    """

    place: np.ndarray
    slot: np.ndarray
    item: np.ndarray
    start: np.ndarray
    value: np.ndarray
    filled: np.ndarray


def _top_candidates(score: np.ndarray, ok: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of the ``k`` best ``score`` among ``ok`` (best first; -1 padded)."""
    masked = np.where(ok, score, -np.inf)
    n = masked.shape[1]
    k = min(k, n)
    part = np.argpartition(-masked, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(masked), 1))
    vals = np.take_along_axis(masked, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    return np.where(np.isfinite(np.take_along_axis(vals, order, axis=1)), best, _NONE)


def pack(
    values: np.ndarray,
    ok: np.ndarray,
    duration: np.ndarray,
    topic: np.ndarray,
    slots: np.ndarray,
    slot_seconds: np.ndarray,
    *,
    candidates: int,
    topic_decay: float,
    boost: np.ndarray | None = None,
    by_density: bool = True,
    choose: np.ndarray | None = None,
) -> Packed:
    """Fill the slots of a block of places greedily (see the module docstring).

    Parameters
    ----------
    values : ndarray of float32, shape (B, n)
        Each place's expected engagement of each item.
    ok : ndarray of bool, shape (B, n)
        Eligible (place, item) pairs (running time within the slot included).
    duration : ndarray of float64, shape (n,)
        Running times in seconds (any value where never eligible).
    topic : ndarray of int64, shape (n,)
        Main topic of each item (for the diversity rule).
    slots : ndarray of int64, shape (B,)
        Slots a day per place.
    slot_seconds : ndarray of float64, shape (B,)
    candidates : int
        Items considered per place before the exact pass.
    topic_decay : float
        Value multiplier per item of the same main topic already scheduled (1 = off).
    boost : ndarray of float32, shape (B, n), optional
        Multiplier of the value when choosing (priority topics); the value
        reported stays unboosted.
    by_density : bool, default True
        Choose by value per second; ``False`` chooses by value (a playlist
        of the best items that fit, the baselines' way).
    choose : ndarray, shape (B, n), optional
        What decides the choice instead of ``values x boost`` (a baseline's
        popularity); ``values`` is still what is reported.

    Returns
    -------
    Packed
    """
    b = values.shape[0]
    if values.shape[1] == 0 or b == 0:  # nothing eligible at all: empty programmes
        none = np.zeros(0, np.int64)
        return Packed(none, none, none, np.zeros(0), np.zeros(0, np.float32), np.zeros(b))
    if choose is None:
        choose = values if boost is None else values * boost
    safe_duration = np.where(np.isfinite(duration) & (duration > 0), duration, 1.0)
    score = choose / safe_duration[None, :] if by_density else choose
    cand = _top_candidates(score, ok, candidates)
    rows = _greedy(choose, cand, safe_duration, topic, slots, slot_seconds, topic_decay, by_density)
    # exact pass: a place whose candidates ran out while another eligible item still fits a gap
    again = _unfilled(rows, ok, safe_duration, slots, slot_seconds, b)
    if again.size:
        full = _top_candidates(score[again], ok[again], ok.shape[1])
        redo = _greedy(
            choose[again], full, safe_duration, topic, slots[again], slot_seconds[again], topic_decay, by_density
        )
        keep = ~np.isin(rows[0], again)
        rows = tuple(np.concatenate([r[keep], x if i else again[x]]) for i, (r, x) in enumerate(zip(rows, redo)))
    place, slot, item, start = rows
    order = np.lexsort((start, slot, place))
    place, slot, item, start = place[order], slot[order], item[order], start[order]
    filled = np.bincount(place, weights=safe_duration[item], minlength=b)
    return Packed(place, slot, item, start, values[place, item].astype(np.float32), filled)


def _greedy(
    choose: np.ndarray,
    cand: np.ndarray,
    duration: np.ndarray,
    topic: np.ndarray,
    slots: np.ndarray,
    slot_seconds: np.ndarray,
    topic_decay: float,
    by_density: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rounds of one pick per place; returns (place, slot, item, start) arrays."""
    b, k = cand.shape
    if k == 0 or b == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0, np.float64)
    max_slots = int(slots.max())
    remaining = np.where(np.arange(max_slots)[None, :] < slots[:, None], slot_seconds[:, None], -1.0)
    rows = np.arange(b)[:, None]
    valid = cand >= 0
    c = np.maximum(cand, 0)
    base = np.where(valid, choose[rows, c], 0.0).astype(np.float64)
    dur = duration[c]
    ctopic = topic[c]
    # decay exponent per candidate: items of its main topic already chosen at the place
    same = np.zeros((b, k), np.int64)
    alive = valid.copy()
    out_p, out_s, out_i, out_t = [], [], [], []
    active = np.arange(b)
    while active.size:
        gap = remaining[active].max(axis=1)
        fits = alive[active] & (dur[active] <= gap[:, None] + 1e-9)
        value = base[active] * np.power(topic_decay, same[active]) if topic_decay < 1 else base[active]
        score = value / dur[active] if by_density else value
        score = np.where(fits, score, -np.inf)
        j = np.argmax(score, axis=1)
        got = np.isfinite(score[np.arange(active.size), j])
        active, j = active[got], j[got]
        if not active.size:
            break
        d = dur[active, j]
        rem = remaining[active]
        # best fit: the fullest slot that still holds the item
        room = np.where(rem >= d[:, None] - 1e-9, rem, np.inf)
        s = np.argmin(room, axis=1)
        start = slot_seconds[active] - rem[np.arange(active.size), s]
        remaining[active, s] -= d
        alive[active, j] = False
        if topic_decay < 1:
            same[active] += ctopic[active] == ctopic[active, j][:, None]
        out_p.append(active)
        out_s.append(s)
        out_i.append(c[active, j])
        out_t.append(start)
    if not out_p:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0, np.float64)
    return (
        np.concatenate(out_p).astype(np.int64),
        np.concatenate(out_s).astype(np.int64),
        np.concatenate(out_i).astype(np.int64),
        np.concatenate(out_t).astype(np.float64),
    )


def _unfilled(
    rows: tuple[np.ndarray, ...],
    ok: np.ndarray,
    duration: np.ndarray,
    slots: np.ndarray,
    slot_seconds: np.ndarray,
    b: int,
) -> np.ndarray:
    """Places with a gap that an unused eligible item would fit."""
    place, slot, item, _ = rows
    max_slots = int(slots.max()) if b else 0
    used = np.zeros((b, max_slots), np.float64)
    np.add.at(used, (place, slot), duration[item])
    gap = np.where(np.arange(max_slots)[None, :] < slots[:, None], slot_seconds[:, None] - used, -1.0).max(axis=1)
    unused = ok.copy()
    unused[place, item] = False
    shortest = np.where(unused, duration[None, :], np.inf).min(axis=1)
    return np.flatnonzero(shortest <= gap + 1e-9)


def gaps(
    packed: Packed, duration: np.ndarray, ok: np.ndarray, slots: np.ndarray, slot_seconds: np.ndarray
) -> np.ndarray:
    """Places of a packed block with a gap an unused eligible item would fit (should be none)."""
    rows = (packed.place, packed.slot, packed.item, packed.start)
    safe = np.where(np.isfinite(duration) & (duration > 0), duration, 1.0)
    return _unfilled(rows, ok, safe, slots, slot_seconds, len(slots))
