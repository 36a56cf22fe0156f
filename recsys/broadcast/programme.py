"""A day's programmes for a set of places: eligibility, scores, packing and reasons, in memory.

:func:`plan_programmes` is the engine of ``recsys broadcast`` without the
files: the job (:mod:`recsys.broadcast.job`), the evaluation and the
benchmark call it alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.broadcast import schedule, scores
from recsys.broadcast.places import hours_window
from recsys.config import BroadcastConfig
from recsys.exceptions import ConfigError, SchemaError
from recsys.ranking.state import RankingState

#: places scored and packed together: at most this many, and at most BLOCK_CELLS / n_items, so the
#: (places x items) arrays of a block stay near 8 M cells (32 MB each in float32) whatever the catalogue
BLOCK_PLACES = 2000
BLOCK_CELLS = 8_000_000
#: the columns of a programme row, in file order (``channel`` and ``date`` are partition folders)
PROGRAMME_COLUMNS = (C.PLACE_ID, C.SLOT, C.START_OFFSET_S, C.ITEM_ID, C.EXPECTED_ENGAGEMENT, C.REASONS)
#: the reason of an item chosen with a priority boost for this audience
PRIORITY_REASON = "重点主题"
#: how a programme is chosen: the engine, or a popularity playlist (the evaluation's baselines)
POLICIES = ("engine", "region_popular", "city_popular")


@dataclass
class Programmes:
    """A day's programmes and what the run saw.

    Attributes
    ----------
    rows : pandas.DataFrame
        :data:`PROGRAMME_COLUMNS` plus ``channel``, by place, slot and start.
    places : pandas.DataFrame
        The places scheduled, with ``capacity_s``, ``filled_s``, ``eligible``
        (items eligible there) and ``short_s`` (seconds left empty for want of
        eligible items; 0 when the gaps are only shorter than every unused item).
    counts : dict
        Items left out city-wide, by reason (``no_duration``: of a format the
        run's channels carry but without ``duration_seconds``; ``held``; ``not_live``:
        not live through the active hours of any place of the run).
    """

    rows: pd.DataFrame
    places: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def place_windows(places: pd.DataFrame, day: dt.date, taxonomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The local hours each place airs on ``day``, as UTC nanoseconds.

    Returns
    -------
    index : ndarray of int64, shape (P,)
        Each place's window (places sharing ``active_hours`` share one).
    start, end : ndarray of int64, shape (W,)
        Window bounds; a place without ``active_hours`` airs the whole day,
        one whose hours run past midnight until the next day's end time.
    """
    hours = places[C.ACTIVE_HOURS] if C.ACTIVE_HOURS in places.columns else pd.Series("", index=places.index)
    codes, distinct = pd.factorize(hours.fillna("").astype(str), sort=True)
    midnight = pd.Timestamp(day.isoformat())
    start, end = [], []
    for text in distinct:
        lo, hi = hours_window(text)
        start.append(int((midnight + pd.Timedelta(minutes=lo)).tz_localize(taxonomy.tz).value))
        end.append(int((midnight + pd.Timedelta(minutes=hi)).tz_localize(taxonomy.tz).value))
    return codes.astype(np.int64), np.asarray(start, np.int64), np.asarray(end, np.int64)


def day_bounds(day: dt.date, taxonomy) -> tuple[int, int]:
    """UTC nanoseconds of the local day's start and end (``[start, end)``)."""
    start = pd.Timestamp(day.isoformat()).tz_localize(taxonomy.tz)
    end = pd.Timestamp((day + dt.timedelta(days=1)).isoformat()).tz_localize(taxonomy.tz)
    return int(start.value), int(end.value)


def channel_formats(config: BroadcastConfig, taxonomy) -> dict[str, tuple[str, ...]]:
    """Formats scheduled per broadcast channel: the taxonomy's, narrowed by ``[broadcast] formats``.

    Raises
    ------
    ConfigError
        If ``formats`` names a personal or unknown channel, or a format the
        channel does not carry.
    """
    personal = set(taxonomy.personal_channels)
    out = {c: tuple(taxonomy.channel_formats[c]) for c in taxonomy.channels if c not in personal}
    for channel, formats in config.formats.items():
        if channel not in out:
            raise ConfigError(
                f"config [broadcast] formats has channel {channel!r}; valid: the broadcast channels {', '.join(out)}"
            )
        if not isinstance(formats, list) or not formats:
            raise ConfigError(f"config [broadcast] formats.{channel} must be a non-empty list of formats")
        bad = [f for f in formats if f not in out[channel]]
        if bad:
            raise ConfigError(
                f"config [broadcast] formats.{channel} has {bad[0]!r}; valid: what {channel} carries: "
                f"{', '.join(out[channel])}"
            )
        out[channel] = tuple(formats)
    return out


def item_durations(state: RankingState) -> np.ndarray:
    """``duration_seconds`` of every catalogue item (ranking index order); NaN where absent."""
    items = state.catalog_items if state.catalog_items is not None else state.model.items
    out = np.full(state.catalog.n_items, np.nan)
    if C.DURATION_SECONDS not in items.columns:
        return out
    pos = pd.Series(state.catalog.index_of).reindex(items[C.ITEM_ID].astype(str)).to_numpy()
    dur = pd.to_numeric(items[C.DURATION_SECONDS], errors="coerce").to_numpy(dtype=np.float64)
    keep = ~np.isnan(pos.astype(np.float64))
    out[pos[keep].astype(np.int64)] = dur[keep]
    return out


def check_durations(
    state: RankingState, all_places: pd.DataFrame, formats: Mapping[str, tuple[str, ...]], duration: np.ndarray
) -> None:
    """Refuse an approved item longer than every slot of the places whose channels carry its format.

    Raises
    ------
    SchemaError
        Naming the item, its running time and the longest slot for its format.
    """
    cat = state.catalog
    fmt_codes = list(state.taxonomy.formats)
    longest = np.zeros(len(fmt_codes))
    for channel, seconds in all_places.groupby(C.CHANNEL)[C.SLOT_SECONDS].max().items():
        for f in formats.get(channel, ()):
            longest[fmt_codes.index(f)] = max(longest[fmt_codes.index(f)], float(seconds))
    limit = np.where(cat.format_code >= 0, longest[np.maximum(cat.format_code, 0)], 0.0)
    bad = np.flatnonzero(cat.available & (limit > 0) & np.isfinite(duration) & (duration > limit))
    if bad.size:
        j = int(bad[0])
        fmt = fmt_codes[int(cat.format_code[j])]
        raise SchemaError(
            f"items: item_id {cat.item_ids[j]!r} has duration_seconds={duration[j]:g}, longer than any slot "
            f"of a place showing {fmt} ({longest[fmt_codes.index(fmt)]:g} s); cut it or give a place a longer slot"
            + (f" ({bad.size - 1} more such items)" if bad.size > 1 else "")
        )


def log_popularity(state: RankingState) -> np.ndarray:
    """Decayed positive engagement per region (rows in taxonomy order) and the city (last row), float32 (R + 1, n).

    From the bundle's log; items new to the bundle have none.
    """
    model, cat = state.model, state.catalog
    tax = state.taxonomy
    seg_pop = np.asarray(model.segment_popularity, dtype=np.float64)
    seg_region = model.segments[C.REGION].map({r: i for i, r in enumerate(tax.regions)}).to_numpy()
    out = np.zeros((len(tax.regions) + 1, cat.n_items), np.float64)
    for r in range(len(tax.regions)):
        out[r, : cat.n_bundle] = seg_pop[seg_region == r].sum(axis=0)[: cat.n_bundle]
    out[-1, : cat.n_bundle] = np.asarray(model.popularity_recent, dtype=np.float64)[: cat.n_bundle]
    return out.astype(np.float32)


def _reason_texts(taxonomy, seg: scores.Segments) -> np.ndarray:
    groups, regions = list(taxonomy.groups), list(taxonomy.regions)
    out = []
    for g, r, sub in zip(seg.group.tolist(), seg.region.tolist(), seg.sub_group):
        who = taxonomy.zh("sub_group", sub) if sub else taxonomy.zh("group", groups[g])
        out.append(f"{taxonomy.zh('region', regions[r])}{who}最可能喜欢")
    return np.asarray(out, dtype=object)


def plan_programmes(
    state: RankingState,
    places: pd.DataFrame,
    day: dt.date,
    config: BroadcastConfig,
    *,
    held: Iterable[str] = (),
    shown: pd.DataFrame | None = None,
    priorities: np.ndarray | None = None,
    all_places: pd.DataFrame | None = None,
    policy: str = "engine",
    by_density: bool | None = None,
) -> Programmes:
    """Schedule one day for ``places``.

    Parameters
    ----------
    state : RankingState
        The ranking state (bundle + current catalogue), e.g. ``Recommender.state``.
    places : pandas.DataFrame
        Normalized places (:func:`recsys.broadcast.places.load_places`).
    day : datetime.date
        The broadcast day (local).
    config : BroadcastConfig
    held : iterable of str
        Item ids on hold (never scheduled).
    shown : pandas.DataFrame, optional
        ``place_id, item_id`` shown in the last ``repeat_days`` days (not repeated).
    priorities : ndarray of float32, shape (n_groups, n_regions, n_topics), optional
        Priority weight per group x region x topic (the demand output's
        ``Priorities.boost_table``). An item counts, for the audience segments
        it has a priority topic for, ``1 + priority_boost x weight`` times
        more when chosen (the largest weight over its topics); its reported
        value is unchanged.
    all_places : pandas.DataFrame, optional
        The whole places table (for the "longer than any slot" check); default ``places``.
    policy : {"engine", "region_popular", "city_popular"}
        ``engine`` packs by expected engagement per second with the diversity
        and priority rules; the others are playlists of the most engaged
        items of the place's region (or of the city) in the bundle's log that
        fit, under the same eligibility rules (the evaluation's baselines).
    by_density : bool, optional
        Choose by value per second (the engine's default) or by value (the
        playlists' default); set it to compare the two ways of packing.

    Returns
    -------
    Programmes

    Raises
    ------
    SchemaError
        If an approved item is longer than every slot that could show it.
    ConfigError
        On a bad ``[broadcast] formats`` table or priority topic.
    """
    if policy not in POLICIES:
        raise ConfigError(f"policy {policy!r} is unknown; valid: {', '.join(POLICIES)}")
    tax = state.taxonomy
    cat = state.catalog
    formats = channel_formats(config, tax)
    duration = item_durations(state)
    check_durations(state, places if all_places is None else all_places, formats, duration)
    start_ns, _ = day_bounds(day, tax)
    held_idx = np.array([cat.index_of[i] for i in held if i in cat.index_of], dtype=np.int64)
    # live through a place's active hours (published before they start, not expiring before they end): a
    # kiosk open 08:00-18:00 may show an item that expires that evening; one window per distinct active_hours
    window, win_start, win_end = place_windows(places, day, tax)
    live_in = (
        cat.available[None, :]
        & (cat.published_ns[None, :] <= win_start[:, None])
        & (cat.expires_ns[None, :] >= win_end[:, None])
    )
    live = live_in.any(axis=0)
    live_not_held = live.copy()
    live_not_held[held_idx] = False
    timed = np.isfinite(duration) & (duration > 0)
    fmt_codes = list(tax.formats)
    carried = {ch: np.isin(cat.format_code, [fmt_codes.index(f) for f in fmts]) for ch, fmts in formats.items()}
    run_channels = sorted(set(places[C.CHANNEL]))
    any_carried = np.zeros(cat.n_items, bool)
    for ch in run_channels:
        any_carried |= carried[ch]
    counts = {
        "no_duration": int((live_not_held & any_carried & ~timed).sum()),
        "held": int((live & any_carried)[held_idx].sum()) if held_idx.size else 0,
        "not_live": int((cat.available & any_carried & ~live).sum()),
    }
    seg = scores.place_segments(places, tax)
    # choose by the mixed odds; report the mixed probability (recsys.broadcast.scores)
    values, probs = scores.segment_scores(state, seg, start_ns, config.min_segment_users)
    # the priority part of each segment's value: what the boost adds when choosing
    extra = None
    if priorities is not None:
        expected = (len(tax.groups), len(tax.regions), len(tax.topics))
        if priorities.shape != expected:
            raise ConfigError(
                f"priorities table has shape {priorities.shape}; expected {expected} (groups, regions, topics)"
            )
        weight = np.concatenate([priorities[seg.group, seg.region], np.zeros((len(seg), 1), np.float32)], axis=1)
        best = np.take_along_axis(weight[:, None, :], cat.topic_idx[None, :, :], axis=2).max(axis=2)
        if (best > 0).any():
            extra = (values * (config.priority_boost * best)).astype(np.float32)
    texts = _reason_texts(tax, seg)
    topic_zh = np.asarray([tax.zh("topic", t) for t in tax.topics] + [""], dtype=object)
    main_topic = cat.primary_topic
    # (place row, item index) pairs shown within repeat_days: never again there yet
    shown_place = np.zeros(0, np.int64)
    shown_item = np.zeros(0, np.int64)
    if shown is not None and len(shown):
        p_of = pd.Series(np.arange(len(places)), index=places[C.PLACE_ID].astype(str))
        p = p_of.reindex(shown[C.PLACE_ID].astype(str)).to_numpy(dtype=np.float64)
        j = pd.Series(cat.index_of, dtype=np.float64).reindex(shown[C.ITEM_ID].astype(str)).to_numpy()
        keep = ~np.isnan(p) & ~np.isnan(j)
        shown_place, shown_item = p[keep].astype(np.int64), j[keep].astype(np.int64)

    if policy != "engine":
        popularity = log_popularity(state)
        region_pos = places[C.REGION].map({r: i for i, r in enumerate(tax.regions)}).to_numpy(dtype=np.int64)
    frames, place_stats = [], []
    pid = places[C.PLACE_ID].to_numpy(dtype=object)
    channel = places[C.CHANNEL].to_numpy(dtype=object)
    slots = places[C.SLOTS_PER_DAY].to_numpy(dtype=np.int64)
    seconds = places[C.SLOT_SECONDS].to_numpy(dtype=np.float64)
    base_ok = live_not_held & timed
    region = places[C.REGION].to_numpy(dtype=object)
    in_block = np.full(len(places), -1, np.int64)
    for ch in sorted(set(channel)):
        # a channel's places only ever get the live, timed items of its formats: score those columns only
        members = np.flatnonzero(channel == ch)
        cols = np.flatnonzero(base_ok & carried[ch])
        col_of = np.full(cat.n_items, -1, np.int64)
        col_of[cols] = np.arange(len(cols))
        ch_values = values[:, cols]
        ch_extra = None if extra is None else extra[:, cols]
        block = int(np.clip(BLOCK_CELLS // max(len(cols), 1), 16, BLOCK_PLACES))
        for lo in range(0, len(members), block):
            rows = members[lo : lo + block]
            v = scores.place_values(seg, ch_values, rows)
            ok = (v > 0) & (duration[cols][None, :] <= seconds[rows, None] + 1e-9) & live_in[window[rows]][:, cols]
            in_block[rows] = np.arange(len(rows))
            hit = (in_block[shown_place] >= 0) & (col_of[shown_item] >= 0)
            ok[in_block[shown_place[hit]], col_of[shown_item[hit]]] = False
            in_block[rows] = -1
            if policy == "engine":
                choose = None if ch_extra is None else v + scores.place_values(seg, ch_extra, rows)
                decay, dense_pick, order_by = config.topic_decay, True, choose
            else:
                # the playlist's order is popularity; the value reported stays the engine's estimate
                pop = popularity[region_pos[rows]] if policy == "region_popular" else popularity[[-1] * len(rows)]
                decay, dense_pick, order_by = 1.0, False, pop[:, cols]
            packed = schedule.pack(
                v,
                ok,
                duration[cols],
                main_topic[cols],
                slots[rows],
                seconds[rows],
                candidates=config.candidates,
                topic_decay=decay,
                choose=order_by,
                by_density=dense_pick if by_density is None else by_density,
            )
            item = cols[packed.item]
            capacity = slots[rows] * seconds[rows]
            total_eligible_s = np.where(ok, duration[cols][None, :], 0.0).sum(axis=1)
            place_stats.append(
                pd.DataFrame(
                    {
                        "_p": rows,
                        C.PLACE_ID: pid[rows],
                        C.CHANNEL: channel[rows],
                        C.REGION: region[rows],
                        "capacity_s": capacity,
                        "filled_s": packed.filled,
                        "eligible": ok.sum(axis=1),
                        # time left empty because the eligible items ran out (not a packing remainder)
                        "short_s": np.where(total_eligible_s < capacity, capacity - packed.filled, 0.0),
                    }
                )
            )
            # reasons: the audience segment that contributes most, the main topic, a priority mark
            p_abs = rows[packed.place]
            dense = seg.shares[p_abs].toarray()
            contrib = dense * values[:, item].T
            top = contrib.argmax(axis=1) if len(seg) else np.zeros(len(p_abs), np.int64)
            share = dense[np.arange(len(p_abs)), top]
            if extra is not None and policy == "engine":
                prioritized = (dense * extra[:, item].T).sum(axis=1) > 0
            else:
                prioritized = np.zeros(len(p_abs), bool)
            reasons = [
                [f"{t}(受众{s:.0%})", f"主题:{z}"] + ([PRIORITY_REASON] if pr else [])
                for t, s, z, pr in zip(
                    texts[top].tolist(), share.tolist(), topic_zh[main_topic[item]].tolist(), prioritized.tolist()
                )
            ]
            frames.append(
                pd.DataFrame(
                    {
                        "_p": p_abs,
                        C.PLACE_ID: pid[p_abs],
                        C.CHANNEL: channel[p_abs],
                        C.SLOT: packed.slot.astype(np.int16),
                        C.START_OFFSET_S: packed.start,
                        C.ITEM_ID: cat.item_ids[item],
                        C.EXPECTED_ENGAGEMENT: (dense * probs[:, item].T).sum(axis=1).astype(np.float32),
                        C.REASONS: reasons,
                    }
                )
            )
    columns = [*PROGRAMME_COLUMNS, C.CHANNEL]
    if frames:
        # back in the places table's order (channels were planned one after another)
        rows_df = pd.concat(frames, ignore_index=True).sort_values("_p", kind="stable")[columns]
        rows_df = rows_df.reset_index(drop=True)
        stats = pd.concat(place_stats, ignore_index=True).sort_values("_p").drop(columns="_p").reset_index(drop=True)
    else:
        rows_df, stats = pd.DataFrame(columns=columns), pd.DataFrame()
    return Programmes(rows=rows_df, places=stats, counts=counts)
