"""Coverage quotas for priority audiences in the nightly push (``[[push.coverage]]`` rules).

A rule names a segment (groups, sub-groups, regions; empty = all), topics
(empty = any item), ``min_items`` per ``per_days`` days and a ``reach_share``.
A user of the segment is **reached** once the push history of the last
``per_days`` days (tonight included) holds ``min_items`` items of the topics
for them. Each group x region cell of the segment must be reached at
``reach_share`` (1 = every user: "each farmer of qinglong gets an agriculture
item a week"; 0.6 = "60% of each region's elderly residents").

How a rule is met, at the least cost
------------------------------------
The ranking's lists are computed first, exactly as without rules. Then, per
rule (in the order of the config):

1. A member's count = rule-topic items in their history window + in tonight's
   lists; a member short of ``min_items`` *needs* the difference.
2. For each member in need, the ranking is asked for its best eligible items
   of the rule's topics on each channel the member has a list on tonight
   (same Recommender, time, channel formats, de-duplication window and expiry
   exclusions as the list itself, and none of tonight's items).
3. A swap puts such an item in place of the lowest-scored slot of that
   channel's list. Its cost is the score lost: the slot's score minus the new
   item's (the ranking's score is the push's own estimate of a slot's value).
   Slots never given up: those the coverage placed, those that carry a topic of
   another rule the user falls under, and those already of the rule's topics.
   A member's cheapest swaps are taken greedily across channels (each
   channel's next swap costs at least as much as its previous one, so the
   greedy choice is the cheapest set).
4. ``reach_share = 1``: every member in need gets their swaps (as many as exist:
   a partial fill still counts toward later nights of the window). Below 1:
   members who can be fully reached are sorted by cost and the cheapest ones
   are reached until the cell's share is met.

Swaps only replace slots, so list lengths, and with them the frequency caps,
never change; eligibility, formats, opt-outs, holdout and de-duplication are
the ranking's and the push's own, so no rule can break them. A rule that
cannot be met is not an error: the stats say by how much (``shortfall``) and
why (members that could not be reached: ``caps_reached`` -- no room on any
channel tonight, ``no_eligible_item`` -- no eligible, undelivered item of the
topics, ``no_free_slot`` -- every slot is held for another rule).

The check runs each night over the window that ends tonight, so a member who
got a rule item five days ago is not touched again until that item leaves
the window: over a week, a member gets at most the forced items the rule
needs, on the nights it would otherwise lapse.

Chunks and the reach share
--------------------------
The push runs in chunks of users (hash buckets, so a cell's members are
spread at random over the chunks). A per-user rule is local to a chunk. A
reach rule is met *within each chunk*: each chunk reaches
``ceil(share x its members of the cell)``, so the city-wide share is met
whenever every chunk meets its own, with no second pass over the city. The
price is the rounding (at most one extra member per cell and chunk) and that a
chunk short of reachable members is not made up by another chunk; the
manifest reports the city-wide figures either way.

Broadcast places
----------------
With a places table (``recsys.broadcast.places.load_places``) and a rule's
``broadcast_reach = b > 0``, a cell whose region has a place whose audience
holds the cell's group (an absent audience counts as every group) is taken as
reached by broadcast at share ``b``, independently of the push: the push then
needs ``(share - b) / (1 - b)`` of the cell (nothing when ``b >= share``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.broadcast.places import load_places
from recsys.config import CoverageRuleConfig, Tables
from recsys.exceptions import ConfigError
from recsys.push.history import DAY
from recsys.push.lists import ItemTopics, fetch_lists, object_index, row_positions, with_object_ids
from recsys.push.plan import BundleUsers
from recsys.push.writer import SEND_AFTER
from recsys.ranking import Recommender
from recsys.taxonomy import Taxonomy
from recsys.training.serving import read_users

if TYPE_CHECKING:  # only the offline evaluation passes a ground truth; the push never loads the generator
    from recsys.synthetic.truth import GroundTruth

#: why a member of a rule's segment could not be reached tonight
UNMET_CAPPED = "caps_reached"
UNMET_NO_ITEM = "no_eligible_item"
UNMET_NO_SLOT = "no_free_slot"
UNMET_REASONS = (UNMET_CAPPED, UNMET_NO_ITEM, UNMET_NO_SLOT)
#: the reason shown on an item the coverage placed (then the rule's name)
REASON_PREFIX = "重点人群保障:"
#: the columns of the coverage table, in order
TABLE_COLUMNS = (
    "rule", "group", "region", "users", "required", "reached_before", "reached", "shortfall",
    "items_added", "cost_score", "cost_engagement", "list_score", "broadcast_credit",
    *(f"unmet_{r}" for r in UNMET_REASONS),
)
#: what ``cost_engagement`` counts (the manifest's ``cost_unit``)
COST_UNIT = (
    "cost_score: ranking score given up by the swaps; cost_engagement: expected engagements given up, "
    "sum of p(removed item) - p(added item) by the engagement model (null where no model was given)"
)

#: ``engagement(channel, user_ids, item_ids) -> ndarray``: the probability that each user engages
#: with the paired item if shown on ``channel`` tonight (``Recommender.expected_engagement``)
Engagement = Callable[[str, list, list], np.ndarray]

#: ``fetch(channel, user_ids, k, topics, exclude) -> DataFrame(user_id, rank, item_id, score, reasons)``:
#: each user's best eligible items of ``topics`` on ``channel`` tonight, at most ``k[user]``,
#: none of the ``exclude`` pairs (``user_id, item_id``) -- the push's own ranking call
Fetch = Callable[[str, list[str], pd.Series, tuple[str, ...], pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class CoverageRule:
    """One checked coverage rule (build with :func:`parse_rules`).

    Attributes
    ----------
    name : str
    groups, sub_groups, regions : frozenset of str
        The segment; empty = no restriction.
    topics : tuple of str
        The items that count; empty = any item.
    min_items, per_days : int
    reach_share : float
        In (0, 1]; 1 = every member.
    broadcast_reach : float
        In [0, 1]; share of a cell taken as reached by a broadcast place of its region.
    """

    name: str
    groups: frozenset[str]
    sub_groups: frozenset[str]
    regions: frozenset[str]
    topics: tuple[str, ...]
    min_items: int = 1
    per_days: int = 7
    reach_share: float = 1.0
    broadcast_reach: float = 0.0

    def members(self, groups: np.ndarray, sub_groups: np.ndarray | None, regions: np.ndarray) -> np.ndarray:
        """Which users fall under the rule (bool, aligned with the inputs).

        Raises
        ------
        ConfigError
            If the rule names sub-groups and the run knows none.
        """
        mask = np.ones(len(groups), dtype=bool)
        if self.groups:
            mask &= pd.Index(np.asarray(groups, dtype=object)).isin(list(self.groups))
        if self.regions:
            mask &= pd.Index(np.asarray(regions, dtype=object)).isin(list(self.regions))
        if self.sub_groups:
            if sub_groups is None:
                raise ConfigError(
                    f"[push.coverage {self.name!r}] names sub_groups but this run knows no user's sub-group; "
                    f"give the push a current users table ([push] users or --users)"
                )
            mask &= pd.Index(np.asarray(sub_groups, dtype=object)).isin(list(self.sub_groups))
        return mask

    def push_target(self, broadcast: bool) -> float:
        """The share of a cell the push must reach (broadcast credit taken off)."""
        b = self.broadcast_reach if broadcast else 0.0
        if b >= self.reach_share:
            return 0.0
        return (self.reach_share - b) / (1.0 - b)

    def required(self, users: int, broadcast: bool) -> int:
        """Members of a cell of ``users`` the push must reach."""
        # a hair below the product: 0.6 x 10 must be 6, not 7 from float noise
        return min(users, math.ceil(self.push_target(broadcast) * users - 1e-9))


def parse_rules(raw: Sequence[Mapping[str, Any]], taxonomy: Taxonomy) -> tuple[CoverageRule, ...]:
    """Read ``[push] coverage`` and check its codes against the taxonomy.

    Parameters
    ----------
    raw : sequence of dict
        The ``[[push.coverage]]`` tables (``PushConfig.coverage``).
    taxonomy : Taxonomy
        The bundle's codes.

    Returns
    -------
    tuple of CoverageRule
        In config order; empty when there is no rule.

    Raises
    ------
    ConfigError
        Naming the rule: a bad key or value (as the config check), an unknown
        group, sub-group, region or topic (with the valid codes), or a
        sub-group outside the rule's groups.
    """
    out = []
    for row in Tables(CoverageRuleConfig).read("push", "coverage", list(raw)):
        where = f"[push.coverage {row.name!r}]"
        for kind, values in (("group", row.groups), ("sub_group", row.sub_groups), ("region", row.regions),
                             ("topic", row.topics)):
            valid = taxonomy.codes(kind)
            for value in values:
                if value not in valid:
                    raise ConfigError(f"{where} unknown {kind} {value!r}; valid: {', '.join(valid)}")
        for sub in row.sub_groups:
            if row.groups and taxonomy.sub_groups[sub] not in row.groups:
                raise ConfigError(
                    f"{where} sub_group {sub!r} belongs to group {taxonomy.sub_groups[sub]!r}, "
                    f"which the rule's groups ({', '.join(row.groups)}) leave out"
                )
        out.append(
            CoverageRule(
                name=row.name,
                groups=frozenset(row.groups),
                sub_groups=frozenset(row.sub_groups),
                regions=frozenset(row.regions),
                topics=tuple(dict.fromkeys(row.topics)),
                min_items=int(row.min_items),
                per_days=int(row.per_days),
                reach_share=float(row.reach_share),
                broadcast_reach=float(row.broadcast_reach),
            )
        )
    return tuple(out)


def window_days(rules: Iterable[CoverageRule]) -> int:
    """Days of push history the rules look back on (0 without rules)."""
    return max((r.per_days for r in rules), default=0)


def broadcast_cells(places: pd.DataFrame | None, taxonomy: Taxonomy) -> frozenset[tuple[str, str]]:
    """The (group, region) cells a broadcast place reaches.

    Parameters
    ----------
    places : DataFrame or None
        The places table as :func:`recsys.broadcast.places.load_places` gives
        it: ``region`` and ``audience`` (a mapping group or sub-group code ->
        share; null = every group), one row per place.
    taxonomy : Taxonomy
        Every group (what a place without a mix reaches), and each sub-group's group.
    """
    if places is None or not len(places):
        return frozenset()
    cells = set()
    audience = places["audience"] if "audience" in places.columns else pd.Series(None, index=places.index)
    for region, mix in zip(places[C.REGION].astype(str), audience):
        if not isinstance(mix, Mapping):
            reached = tuple(taxonomy.groups)
        else:
            # a sub-group's share is its group's audience
            reached = tuple(taxonomy.sub_groups.get(str(g), str(g)) for g, share in mix.items() if float(share) > 0)
        cells.update((g, region) for g in reached)
    return frozenset(cells)


@dataclass(frozen=True)
class ChunkUsers:
    """The users of one chunk as the coverage needs them (arrays aligned with ``ids``).

    Attributes
    ----------
    ids : Index of str
    groups, regions : ndarray of str
    sub_groups : ndarray of str or None
        None when the run knows no sub-groups.
    capped : ndarray of bool
        No channel has room tonight (the caps are reached).
    """

    ids: pd.Index
    groups: np.ndarray
    regions: np.ndarray
    sub_groups: np.ndarray | None
    capped: np.ndarray


def apply_rules(
    lists: pd.DataFrame,
    users: ChunkUsers,
    rules: Sequence[CoverageRule],
    *,
    history: pd.DataFrame,
    topics: ItemTopics,
    day: dt.date,
    fetch: Fetch,
    broadcast: frozenset[tuple[str, str]] = frozenset(),
    engagement: Engagement | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Meet the coverage rules on one chunk's lists at the least cost in ranking score.

    Parameters
    ----------
    lists : DataFrame
        Tonight's rows: ``user_id, channel, rank, item_id, score, reasons`` and
        any other columns (copied unchanged on a swapped row), one row per
        (user, channel, rank), each (user, channel) list ranked by score.
    users : ChunkUsers
        Every user of the chunk (every row's user is among them).
    rules : sequence of CoverageRule
    history : DataFrame
        ``user_id, item_id, day`` of earlier pushes (tonight's own run left
        out), at least :func:`window_days` back.
    topics : ItemTopics
        The catalogue's topics.
    day : datetime.date
        Tonight's local day.
    fetch : callable
        See :data:`Fetch`.
    broadcast : frozenset of (group, region)
        Cells a broadcast place reaches (:func:`broadcast_cells`).
    engagement : callable, optional
        See :data:`Engagement`: prices the swaps in expected engagements
        (``cost_engagement``); without it that column is None.

    Returns
    -------
    lists : DataFrame
        The same columns; swapped rows hold the rule's item (its score and
        reasons, plus ``重点人群保障:<rule>``), each changed list re-ranked by
        score. Without rules, ``lists`` itself.
    stats : list of dict
        One per rule and group x region cell with members: see :data:`TABLE_COLUMNS`
        (``required`` is this chunk's; :func:`merge_stats` adds chunks up).
    """
    if not rules:
        return lists, []
    lists = with_object_ids(lists).reset_index(drop=True)
    state = _State.build(lists, users, topics)
    member = [r.members(users.groups, users.sub_groups, users.regions) for r in rules]
    flags = [state.topic_flags(r.topics) for r in rules]
    stats: list[dict[str, Any]] = []
    for q, rule in enumerate(rules):
        # slots another rule of the same user counts on are never given up for this one
        held = np.zeros(len(state.rows), dtype=bool)
        for r in range(len(rules)):
            if r != q and rules[r].topics:
                held |= member[r][state.user_pos] & flags[r]
        stats.extend(
            _apply_one(state, users, rule, member[q], flags[q], held, history, day, fetch, broadcast, engagement)
        )
        flags = [state.topic_flags(r.topics) for r in rules]  # swapped rows carry new topics
    return state.result(), stats


@dataclass
class _State:
    """The chunk's rows as arrays, changed in place by the swaps."""

    rows: pd.DataFrame
    user_pos: np.ndarray
    topics: ItemTopics
    locked: np.ndarray
    changed: np.ndarray

    @classmethod
    def build(cls, lists: pd.DataFrame, users: ChunkUsers, topics: ItemTopics) -> "_State":
        pos = row_positions(users.ids, lists[C.USER_ID].to_numpy(dtype=object))
        if (pos < 0).any():
            raise ValueError("every list row's user must be among the chunk's users")
        columns = {C.SCORE: lists[C.SCORE].astype(np.float64)}
        if lists[C.REASONS].dtype != object:
            # a swap sets a row's reasons to a Python list (iat): an Arrow reasons column becomes lists
            # here (the chunk asks for list reasons when coverage rules apply; an empty frame is Arrow)
            columns[C.REASONS] = pd.Series(lists[C.REASONS].tolist(), index=lists.index, dtype=object)
        rows = lists.assign(**columns)
        n = len(rows)
        return cls(rows=rows, user_pos=pos, topics=topics, locked=np.zeros(n, bool), changed=np.zeros(n, bool))

    def topic_flags(self, codes: tuple[str, ...]) -> np.ndarray:
        """Rows whose item has any of the topics (every row when ``codes`` is empty)."""
        return _has_topics(self.topics, self.rows[C.ITEM_ID].to_numpy(), codes)

    def result(self) -> pd.DataFrame:
        """The rows with every list that got a swap re-ranked by score (the frame's row order kept)."""
        if not self.changed.any():
            return self.rows
        rows = self.rows
        key = rows[C.USER_ID].astype(str) + "\x00" + rows[C.CHANNEL].astype(str)
        touched = key.isin(key[self.changed])
        part = rows[touched].copy()
        # a changed list is re-ranked by score; its rows keep their positions in the frame
        part["_k"] = key[touched]
        part["_o"] = np.arange(len(part))
        ordered = part.sort_values(["_k", C.SCORE], ascending=[True, False], kind="stable")
        ranks = ordered.groupby("_k", sort=False).cumcount() + 1
        slots = part.sort_values(["_k", C.RANK], kind="stable")
        new = ordered.drop(columns=["_k", "_o"]).copy()
        new[C.RANK] = ranks.to_numpy()
        new.index = slots.index  # the list's slots, in rank order, take the re-ranked rows
        out = rows.copy()
        out.loc[new.index, new.columns] = new
        out[C.RANK] = out[C.RANK].astype(rows[C.RANK].dtype)
        return out


def _has_topics(topics: ItemTopics, item_ids: np.ndarray, codes: tuple[str, ...]) -> np.ndarray:
    if not codes:
        return np.ones(len(item_ids), dtype=bool)
    wanted = np.flatnonzero(pd.Index(topics.names).isin(list(codes)))
    rows, item_codes = topics.entries(item_ids)
    out = np.zeros(len(item_ids), dtype=bool)
    out[rows[np.isin(item_codes, wanted)]] = True
    return out


def _history_counts(
    history: pd.DataFrame, users: pd.Index, topics: ItemTopics, rule: CoverageRule, day: dt.date
) -> np.ndarray:
    """Distinct rule items each user got in the window's earlier days and other runs of tonight."""
    counts = np.zeros(len(users), dtype=np.int64)
    if not len(history):
        return counts
    days = history[DAY].to_numpy().astype("datetime64[D]")
    last = np.datetime64(day, "D")
    keep = (days <= last) & (days > last - np.timedelta64(rule.per_days, "D"))
    part = with_object_ids(history.loc[keep, [C.USER_ID, C.ITEM_ID]]).drop_duplicates()
    part = part[_has_topics(topics, part[C.ITEM_ID].to_numpy(), rule.topics)]
    pos = users.get_indexer(part[C.USER_ID])
    np.add.at(counts, pos[pos >= 0], 1)
    return counts


def _apply_one(
    state: _State,
    users: ChunkUsers,
    rule: CoverageRule,
    member: np.ndarray,
    flag: np.ndarray,
    held: np.ndarray,
    history: pd.DataFrame,
    day: dt.date,
    fetch: Fetch,
    broadcast: frozenset[tuple[str, str]],
    engagement: Engagement | None = None,
) -> list[dict[str, Any]]:
    """Meet one rule on the chunk (swaps written into ``state``); return its stats per group x region cell."""
    n = len(users.ids)
    rows = state.rows
    tonight = np.bincount(state.user_pos[flag], minlength=n)
    count = _history_counts(history, users.ids, state.topics, rule, day) + tonight
    need = np.where(member, np.maximum(rule.min_items - count, 0), 0)
    has_list = np.bincount(state.user_pos, minlength=n) > 0
    list_score = np.bincount(state.user_pos, weights=rows[C.SCORE].to_numpy(), minlength=n)
    channel_col, item_col = rows.columns.get_loc(C.CHANNEL), rows.columns.get_loc(C.ITEM_ID)

    # every member's cheapest swaps (only those in need and holding a list)
    asked = np.flatnonzero((need > 0) & has_list)
    plans = _plan_swaps(state, users, rule, asked, need, flag, held, fetch)

    stats = []
    cells = pd.DataFrame({"g": users.groups, "r": users.regions})[member].groupby(["g", "r"], sort=True).groups
    for (group, region), index in cells.items():
        idx = np.asarray(index, dtype=np.int64)
        credit = (group, region) in broadcast and rule.broadcast_reach > 0
        required = rule.required(len(idx), credit)
        reached_before = int((need[idx] == 0).sum())
        unmet = dict.fromkeys(UNMET_REASONS, 0)
        chosen: list[int] = []
        if rule.reach_share >= 1.0:
            chosen = [u for u in idx if need[u] > 0 and u in plans and plans[u].swaps]
        short = max(0, required - reached_before)
        if rule.reach_share < 1.0 and short:
            full = [u for u in idx if need[u] > 0 and u in plans and len(plans[u].swaps) >= need[u]]
            full.sort(key=lambda u: (plans[u].cost, users.ids[u]))
            chosen = full[:short]
        added = cost = 0.0
        swapped: list[tuple[str, str, str, str]] = []  # (user, channel, removed item, added item)
        for u in chosen:
            added += len(plans[u].swaps)
            cost += plans[u].cost
            swapped.extend(
                (str(users.ids[u]), str(rows.iat[r, channel_col]), str(rows.iat[r, item_col]), str(item))
                for r, item, _s, _w in plans[u].swaps
            )
            _commit(state, plans[u], rule)
        reached = reached_before + sum(1 for u in chosen if len(plans[u].swaps) >= need[u])
        # why members stay short: counted over those the push could not reach at all
        for u in idx:
            if need[u] == 0 or (u in plans and len(plans[u].swaps) >= need[u]):
                continue
            if not has_list[u]:
                unmet[UNMET_CAPPED if users.capped[u] else UNMET_NO_ITEM] += 1
            else:
                unmet[plans[u].why if u in plans else UNMET_NO_ITEM] += 1
        stats.append(
            {
                "rule": rule.name, "group": str(group), "region": str(region), "users": int(len(idx)),
                "required": int(required), "reached_before": reached_before, "reached": int(reached),
                "shortfall": int(max(0, required - reached)), "items_added": int(added),
                "cost_score": float(cost), "cost_engagement": _engagement_cost(engagement, swapped),
                "list_score": float(list_score[idx].sum()),
                "broadcast_credit": bool(credit), **{f"unmet_{k}": int(v) for k, v in unmet.items()},
            }
        )
    return stats


def _engagement_cost(engagement: Engagement | None, swapped: list[tuple[str, str, str, str]]) -> float | None:
    """Expected engagements the swaps give up: sum of p(removed) - p(added), one call per channel."""
    if engagement is None:
        return None
    if not swapped:
        return 0.0
    frame = pd.DataFrame(swapped, columns=["user", "channel", "removed", "added"])
    total = 0.0
    for channel, part in frame.groupby("channel", sort=True):
        who = part["user"].tolist()
        removed = engagement(str(channel), who, part["removed"].tolist())
        added = engagement(str(channel), who, part["added"].tolist())
        total += float(np.sum(removed) - np.sum(added))
    return total


@dataclass
class _Plan:
    """One member's chosen swaps: (row, item_id, score, reasons) each, total cost, why short."""

    swaps: list[tuple[int, str, float, list[str]]]
    cost: float
    why: str


def _plan_swaps(
    state: _State,
    users: ChunkUsers,
    rule: CoverageRule,
    asked: np.ndarray,
    need: np.ndarray,
    flag: np.ndarray,
    held: np.ndarray,
    fetch: Fetch,
) -> dict[int, _Plan]:
    """The cheapest swaps of each asked member, greedily across their channels."""
    if not len(asked):
        return {}
    rows = state.rows
    free = ~(state.locked | flag | held)
    in_asked = np.isin(state.user_pos, asked)
    channels = rows[C.CHANNEL].to_numpy(dtype=object)
    # candidates per (user, channel): the ranking's best rule items, none of tonight's items
    tonight = rows.loc[in_asked, [C.USER_ID, C.ITEM_ID]]
    offers: dict[tuple[int, str], list[tuple[str, float, list[str]]]] = {}
    for channel in pd.unique(channels[in_asked]):
        on = in_asked & (channels == channel)
        who = np.unique(state.user_pos[on])
        k = pd.Series(need[who], index=users.ids[who])
        got = fetch(str(channel), list(users.ids[who]), k, rule.topics, tonight)
        if got is None or not len(got):
            continue
        got = with_object_ids(got)
        pos = users.ids.get_indexer(got[C.USER_ID])
        for u, item, score, reasons in zip(pos, got[C.ITEM_ID], got[C.SCORE].astype(float), got[C.REASONS]):
            if u >= 0:
                offers.setdefault((int(u), str(channel)), []).append((item, float(score), list(reasons)))
    # each (user, channel)'s free slots, lowest score first
    slots: dict[tuple[int, str], list[int]] = {}
    order = np.lexsort((rows[C.SCORE].to_numpy(), state.user_pos))
    for r in order[(in_asked & free)[order]]:
        slots.setdefault((int(state.user_pos[r]), str(channels[r])), []).append(int(r))
    by_user: dict[int, set[str]] = {}
    for u, c in [*offers, *slots]:
        by_user.setdefault(u, set()).add(c)
    score = rows[C.SCORE].to_numpy()
    plans: dict[int, _Plan] = {}
    for u in asked:
        user_channels = sorted(by_user.get(int(u), ()))
        offered = any((u, c) in offers for c in user_channels)
        heads = {c: 0 for c in user_channels}
        used: set[str] = set()
        swaps: list[tuple[int, str, float, list[str]]] = []
        cost = 0.0
        while len(swaps) < need[u]:
            best = None
            for c in user_channels:
                cand = [o for o in offers.get((u, c), []) if o[0] not in used]
                free_slots = slots.get((u, c), [])
                j = heads[c]
                if j >= len(free_slots) or not cand:
                    continue
                item, s, why = cand[0]
                d = score[free_slots[j]] - s
                if best is None or d < best[0]:
                    best = (d, c, item, s, why)
            if best is None:
                break
            d, c, item, s, why = best
            swaps.append((slots[(u, c)][heads[c]], item, s, why))
            heads[c] += 1
            used.add(item)
            cost += d
        has_slot = any(slots.get((u, c)) for c in user_channels)
        plans[int(u)] = _Plan(swaps=swaps, cost=cost, why=UNMET_NO_ITEM if not offered or has_slot else UNMET_NO_SLOT)
    return plans


def _commit(state: _State, plan: _Plan, rule: CoverageRule) -> None:
    """Write a member's swaps into the rows."""
    rows = state.rows
    item_col, score_col, reason_col = (rows.columns.get_loc(c) for c in (C.ITEM_ID, C.SCORE, C.REASONS))
    for r, item, s, why in plan.swaps:
        rows.iat[r, item_col] = item
        rows.iat[r, score_col] = s
        rows.iat[r, reason_col] = [f"{REASON_PREFIX}{rule.name}", *why]
        state.locked[r] = True
        state.changed[r] = True


def merge_stats(parts: Iterable[Sequence[Mapping[str, Any]]], rules: Sequence[CoverageRule]) -> list[dict[str, Any]]:
    """Add up the chunks' coverage stats into the run's coverage table (JSON-ready rows).

    ``required`` is recomputed city-wide for each cell (a chunk's own is
    rounded up), so ``shortfall = max(0, required - reached)`` is the city's.
    """
    by_name = {r.name: r for r in rules}
    total: dict[tuple[str, str, str], dict[str, Any]] = {}
    for part in parts:
        for row in part:
            key = (row["rule"], row["group"], row["region"])
            acc = total.setdefault(key, {c: 0 for c in TABLE_COLUMNS} | {
                "rule": key[0], "group": key[1], "region": key[2], "cost_score": 0.0, "cost_engagement": 0.0,
                "list_score": 0.0, "broadcast_credit": False})
            for col in TABLE_COLUMNS[3:]:
                if col == "broadcast_credit":
                    acc[col] = acc[col] or bool(row[col])
                elif col == "cost_engagement":
                    acc[col] = _add_cost(acc[col], row.get(col))
                elif col not in ("required", "shortfall"):
                    acc[col] += row[col]
    order = {r.name: i for i, r in enumerate(rules)}
    out = []
    for key in sorted(total, key=lambda k: (order.get(k[0], len(order)), k[1], k[2])):
        acc = total[key]
        rule = by_name.get(key[0])
        acc["required"] = rule.required(acc["users"], acc["broadcast_credit"]) if rule else acc["users"]
        acc["shortfall"] = max(0, acc["required"] - acc["reached"])
        acc["cost_score"] = round(float(acc["cost_score"]), 6)
        acc["cost_engagement"] = None if acc["cost_engagement"] is None else round(float(acc["cost_engagement"]), 6)
        acc["list_score"] = round(float(acc["list_score"]), 6)
        out.append({c: acc[c] for c in TABLE_COLUMNS})
    return out


def _add_cost(total: float | None, value: float | None) -> float | None:
    """A sum of engagement costs where an unpriced part (None) makes the whole unknown."""
    if total is None or value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return total + float(value)


def summary(table: Sequence[Mapping[str, Any]], rules: Sequence[CoverageRule] = ()) -> dict[str, Any]:
    """Per rule: members, required, reached, shortfall, items added, cost, and the unmet reasons (for the manifest).

    Every rule of ``rules`` has an entry, one without a member in the run too (``users`` 0).
    """

    def empty() -> dict[str, Any]:
        counts = {k: 0 for k in ("users", "required", "reached_before", "reached", "shortfall", "items_added")}
        return counts | {"cost_score": 0.0, "cost_engagement": 0.0, "unmet": dict.fromkeys(UNMET_REASONS, 0)}

    out: dict[str, Any] = {r.name: empty() for r in rules}
    for row in table:
        acc = out.setdefault(row["rule"], empty())
        for k in ("users", "required", "reached_before", "reached", "shortfall", "items_added"):
            acc[k] += int(row[k])
        acc["cost_score"] = round(acc["cost_score"] + float(row["cost_score"]), 6)
        eng = _add_cost(acc["cost_engagement"], row.get("cost_engagement"))
        acc["cost_engagement"] = None if eng is None else round(eng, 6)
        for reason in UNMET_REASONS:
            acc["unmet"][reason] += int(row[f"unmet_{reason}"])
    for acc in out.values():
        acc["met"] = acc["shortfall"] == 0
    return out


def table_frame(table: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The coverage table as a DataFrame with :data:`TABLE_COLUMNS` (typed even when empty)."""
    frame = pd.DataFrame(list(table), columns=list(TABLE_COLUMNS))
    floats = ("cost_score", "cost_engagement", "list_score")
    ints = [c for c in TABLE_COLUMNS if c not in ("rule", "group", "region", *floats, "broadcast_credit")]
    # an unpriced cost_engagement (None) is NaN in the frame
    return frame.astype({**{c: "int64" for c in ints}, **dict.fromkeys(floats, "float64"),
                         "broadcast_credit": bool, "rule": object, "group": object, "region": object})


# ---- the nightly push's side ---------------------------------------------------------------


def chunk_fetch(
    calls: Mapping[str, tuple[Callable[..., pd.DataFrame], Sequence[str]]],
    blocked: pd.DataFrame,
    run_topic: str | None = None,
) -> Fetch:
    """A :data:`Fetch` made of the push's own per-channel ranking calls.

    Parameters
    ----------
    calls : dict
        Channel -> (``recommend(users, k, exclude, _topics=...)``, items not to
        push on it tonight): the very call and expiry exclusions the channel's
        lists came from, so eligibility, formats, time and holds are the same.
    blocked : DataFrame
        ``user_id, item_id`` pairs of the de-duplication window.
    run_topic : str, optional
        A run restricted to one topic offers only that topic's items.
    """
    def fetch(channel: str, user_ids: list[str], k: pd.Series, topics: tuple[str, ...], exclude: pd.DataFrame):
        recommend, drop = calls[channel]
        wanted = list(topics) or None
        if run_topic is not None:
            if topics and run_topic not in topics:
                return None
            wanted = [run_topic]
        mine = object_index(user_ids)
        pairs = pd.concat(
            [with_object_ids(blocked[[C.USER_ID, C.ITEM_ID]]), with_object_ids(exclude[[C.USER_ID, C.ITEM_ID]])],
            ignore_index=True,
        )
        pairs = pairs[pairs[C.USER_ID].isin(mine)]

        def ranked(users: list[str], n: int, excl: Mapping[str, Sequence[str]]) -> pd.DataFrame:
            return recommend(users, n, excl, _topics=wanted)

        return fetch_lists(ranked, mine, k, blocked=pairs, drop_items=drop)

    return fetch


def chunk_engagement(recommender: Recommender, rows: pd.DataFrame, attributes: pd.DataFrame | None = None) -> Engagement:
    """An :data:`Engagement` for a chunk of the nightly push: each channel's items at its send time.

    Parameters
    ----------
    recommender : recsys.ranking.Recommender
        The one the lists came from.
    rows : DataFrame
        Tonight's rows (``channel``, ``send_after``): a channel's items are
        priced at the opening of its send window (their timeliness then).
    attributes : DataFrame, optional
        ``group, sub_group, region`` indexed by user id, as the lists were ranked with.
    """
    times = {}
    if len(rows) and SEND_AFTER in rows.columns:
        times = rows.groupby(C.CHANNEL, sort=False)[SEND_AFTER].first().to_dict()

    def engagement(channel: str, user_ids: list, item_ids: list) -> np.ndarray:
        who = None if attributes is None else attributes.loc[user_ids].reset_index()
        return recommender.expected_engagement(user_ids, item_ids, now=times.get(channel), users=who)

    return engagement


def meet_in_chunk(
    rows: pd.DataFrame,
    raw_rules: Sequence[Mapping[str, Any]],
    taxonomy: Taxonomy,
    users: ChunkUsers,
    *,
    history: pd.DataFrame,
    history_days: int,
    read_history: Callable[[int], pd.DataFrame],
    topics: ItemTopics,
    day: dt.date,
    fetch: Fetch,
    broadcast: Iterable[Sequence[str]] = (),
    engagement: Engagement | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """:func:`apply_rules` as one chunk of the nightly push calls it.

    ``history`` covers ``history_days`` days back; when a rule looks further,
    ``read_history(days)`` reads the longer window (the push's own reads stay
    as they are, so the lists before the swaps do not change).
    """
    rules = parse_rules(raw_rules, taxonomy)
    need = window_days(rules)
    if need > history_days:
        history = read_history(need)
    cells = frozenset((str(g), str(r)) for g, r in broadcast)
    return apply_rules(
        rows, users, rules, history=history, topics=topics, day=day, fetch=fetch, broadcast=cells, engagement=engagement
    )


def prepare_run(
    rules: Sequence[CoverageRule],
    users: BundleUsers,
    bundle: str | Path,
    places: str | Path | None,
    taxonomy: Taxonomy,
    warnings: list[str],
) -> tuple[tuple[str, str], ...]:
    """What a nightly run needs for its rules before the chunks start; return the broadcast cells.

    Reads the users' sub-groups from the bundle when a rule names sub-groups
    and the users table lacks them (added to ``users.table``), and the places
    table when a rule counts broadcast places. A rule counting broadcast
    without a places table is not an error: it runs without the credit and
    ``warnings`` says so.

    Raises
    ------
    SchemaError, UnknownCodeError
        For a bad places table (:func:`recsys.broadcast.places.load_places`).
    """
    if not rules:
        return ()
    table = users.table
    if any(r.sub_groups for r in rules) and C.SUB_GROUP not in table.columns:
        column = read_users(bundle, [C.SUB_GROUP]).column(0)
        table[C.SUB_GROUP] = column.to_pandas().fillna("").to_numpy(dtype=object)
    counting = [r.name for r in rules if r.broadcast_reach > 0]
    if not counting:
        return ()
    if places is None:
        warnings.append(
            f"coverage rule(s) {', '.join(counting)} count broadcast places, but no places table was given "
            f"(--places): their broadcast credit is left out"
        )
        return ()
    return tuple(sorted(broadcast_cells(load_places(places, taxonomy, users=table), taxonomy)))


def run_report(
    rules: Sequence[CoverageRule], parts: Iterable[Mapping[str, Any]], places: str | Path | None = None
) -> dict[str, Any] | None:
    """The manifest's ``coverage`` field from the chunks' stats (None without rules).

    Returns
    -------
    dict or None
        ``rules`` (per rule: users, required, reached, shortfall, items
        added, cost, unmet members by reason, ``met``), ``table`` (one row per
        rule and group x region cell, :data:`TABLE_COLUMNS`), ``cost_unit``
        and ``places``.
    """
    if not rules:
        return None
    table = merge_stats([p.get("coverage", []) for p in parts], rules)
    return {
        "rules": summary(table, rules),
        "table": table,
        "cost_unit": COST_UNIT,
        "places": str(places) if places is not None else None,
    }


def summary_lines(coverage: Mapping[str, Any]) -> list[str]:
    """One line per rule for the end-of-run summary table."""
    lines = []
    for name, r in coverage.get("rules", {}).items():
        why = ", ".join(f"{k} {v}" for k, v in r["unmet"].items() if v)
        short = f"short by {r['shortfall']} ({why or 'rounding'})" if r["shortfall"] else "met"
        lines.append(
            f"  coverage {name}: {r['reached']} of {r['users']} reached, {r['required']} required, {short}; "
            f"{r['items_added']} items swapped in at {r['cost_score']:.3f} score, "
            + (
                "expected engagements not priced"
                if r.get("cost_engagement") is None
                else f"{r['cost_engagement']:.3f} expected engagements given up"
            )
        )
    return lines


# ---- evaluation on a ground truth ------------------------------------------------------------

#: what ``recsys evaluate`` costs on a city whose taxonomy knows the codes (evaluate reads no
#: [push] section): the issue's two rules (the ones ``recsys demo``'s push meets), then three the
#: ranking alone rarely meets on the synthetic city -- the plan's disaster avoidance for youth,
#: health for residents and for farmers
EXAMPLE_RULES: tuple[dict[str, Any], ...] = (
    {
        "name": "farmers_agri",
        "groups": ["farmer"],
        "regions": ["qinglong", "lulong"],
        "topics": ["modern_agriculture", "disaster_prevention"],
    },
    {
        "name": "elderly_health",
        "groups": ["resident"],
        "sub_groups": ["elderly"],
        "topics": ["health_literacy", "food_drug_safety", "emergency_safety"],
        "reach_share": 0.6,
        "broadcast_reach": 0.3,
    },
    {"name": "youth_disaster", "groups": ["youth"], "topics": ["disaster_prevention", "earthquake"]},
    {"name": "residents_health", "groups": ["resident"], "topics": ["health_literacy", "mental_health"]},
    {"name": "farmers_health", "groups": ["farmer"], "topics": ["health_literacy"], "reach_share": 0.6},
)


def describe_rule(rule: CoverageRule, taxonomy: Taxonomy) -> str:
    """What a rule asks, for a person: each code with its Chinese name, e.g.
    ``农民 farmer · 青龙县 qinglong, 卢龙县 lulong · 现代农业 modern_agriculture · ≥ 1 in 7 days · every member``."""

    def names(kind: str, codes: Iterable[str]) -> str:
        return ", ".join(f"{taxonomy.zh(kind, c)} {c}" for c in sorted(codes))

    who = names("group", rule.groups) if rule.groups else "全体 everyone"
    if rule.sub_groups:
        who += f" ({names('sub_group', rule.sub_groups)})"
    where = names("region", rule.regions) if rule.regions else "全市 every region"
    what = names("topic", rule.topics) if rule.topics else "任意主题 any topic"
    share = "每人 every member" if rule.reach_share >= 1 else f"每区县 {rule.reach_share:.0%} of each region's members"
    if rule.broadcast_reach > 0:
        share += f" (广播计 {rule.broadcast_reach:.0%} counted for broadcast places)"
    return f"{who} · {where} · {what} · ≥ {rule.min_items} in {rule.per_days} days · {share}"


def example_rules(taxonomy: Taxonomy) -> tuple[CoverageRule, ...]:
    """:data:`EXAMPLE_RULES` whose every code the taxonomy knows (none for another data set's)."""
    out = []
    for doc in EXAMPLE_RULES:
        try:
            out.extend(parse_rules([doc], taxonomy))
        except ConfigError:
            continue
    return tuple(out)


def evaluate_rules(
    recommender: Recommender,
    lists: pd.DataFrame,
    users: pd.DataFrame,
    rules: Sequence[CoverageRule],
    *,
    now: pd.Timestamp,
    truth: GroundTruth,
) -> dict[str, Any] | None:
    """What meeting ``rules`` costs one round of lists, judged by a ground truth.

    The engine's lists (one per user, no push history: a user is reached
    when their list holds the items) go through :func:`apply_rules` with the
    Recommender's own topic-filtered lists as the offers; every list before
    and after is scored by the truth's engagement probability at ``now``.
    Rules are added one at a time, so each rule's cost is what it adds to
    the ones before it.

    Parameters
    ----------
    recommender : recsys.ranking.Recommender
        The engine that made ``lists``.
    lists : DataFrame
        ``user_id, rank, item_id, score`` (and optionally ``reasons``).
    users : DataFrame
        ``user_id, group, region`` and optionally ``sub_group``: every listed user.
    rules : sequence of CoverageRule
    now : Timestamp
        The lists' time (eligibility and truth).
    truth : GroundTruth
        ``engagement_prob_pairs(user_ids, item_ids, at=now)``.

    Returns
    -------
    dict or None
        None without rules or lists; else ``engagements_without``,
        ``engagements_with``, ``loss_share``, and per rule its coverage
        summary (:func:`summary`) with ``engagements_lost`` and ``loss_share``.
    """
    if not rules or not len(lists):
        return None
    lists = with_object_ids(lists)
    if C.REASONS not in lists.columns:
        lists = lists.assign(**{C.REASONS: [[] for _ in range(len(lists))]})
    lists = lists.assign(**{C.CHANNEL: ""})
    ids = object_index(pd.unique(lists[C.USER_ID]))
    table = with_object_ids(users, (C.USER_ID,)).set_index(C.USER_ID).reindex(ids)
    who = ChunkUsers(
        ids=ids,
        groups=table[C.GROUP].astype(object).to_numpy(),
        regions=table[C.REGION].astype(object).to_numpy(),
        sub_groups=table[C.SUB_GROUP].fillna("").astype(object).to_numpy() if C.SUB_GROUP in table.columns else None,
        capped=np.zeros(len(ids), dtype=bool),
    )
    no_history = pd.DataFrame({C.USER_ID: pd.Series(dtype=object), C.ITEM_ID: pd.Series(dtype=object),
                               DAY: pd.Series(dtype="datetime64[s]")})
    state = recommender.state
    items = state.catalog_items if state.catalog_items is not None else state.model.items
    topics = ItemTopics.build(pd.Series(list(items[C.TOPICS]), index=object_index(items[C.ITEM_ID].astype(str))))

    def fetch(channel: str, user_ids: list[str], k: pd.Series, rule_topics: tuple[str, ...], exclude: pd.DataFrame):
        def ranked(batch: list[str], n: int, excl: Mapping[str, Sequence[str]]) -> pd.DataFrame:
            return recommender.recommend_many(batch, n, topics=list(rule_topics) or None, now=now, exclude=excl)

        return fetch_lists(ranked, user_ids, k, blocked=exclude)

    def engagement(channel: str, user_ids: list, item_ids: list) -> np.ndarray:
        return recommender.expected_engagement(user_ids, item_ids, now=now)

    def engagements(frame: pd.DataFrame) -> float:
        prob = truth.engagement_prob_pairs(frame[C.USER_ID].to_numpy(), frame[C.ITEM_ID].to_numpy(), at=now)
        return float(np.sum(prob))

    base = engagements(lists)
    day = pd.Timestamp(now).tz_convert(state.taxonomy.tz).date()
    per_rule: dict[str, Any] = {}
    before = base
    for j in range(len(rules)):
        changed, stats = apply_rules(lists, who, rules[: j + 1], history=no_history, topics=topics, day=day,
                                     fetch=fetch, engagement=engagement)
        after = engagements(changed)
        name = rules[j].name
        per_rule[name] = {
            "asks": describe_rule(rules[j], state.taxonomy),
            **summary(merge_stats([[s for s in stats if s["rule"] == name]], rules))[name],
            "engagements_lost": round(before - after, 4),
            "loss_share": round((before - after) / base, 5) if base else None,
        }
        before = after
    return {
        "users": int(len(ids)),
        "rows": int(len(lists)),
        "engagements_without": round(base, 4),
        "engagements_with": round(before, 4),
        "loss_share": round((base - before) / base, 5) if base else None,
        "rules": per_rule,
    }
