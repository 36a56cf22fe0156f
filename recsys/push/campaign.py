"""Campaigns: push one item (or a few) or one topic to the N users most likely to engage.

The Recommender's ``audience`` call ranks users by how likely they are to
engage with the item or topic, among users for whom it is eligible. A
campaign walks that ranking and keeps the first ``budget`` users who pass
everything a nightly list passes: not opted out, not in the holdout, a
subscribed personal channel that carries the item's format and has room
under the caps, and the item not pushed to them within the
de-duplication window. An emergency campaign (a weather warning) may exceed
the daily cap -- never the weekly cap, the opt-out or the holdout.

Item campaigns: each user gets the campaign's items that suit their channel
and were not pushed to them recently, best first, as far as the caps allow.
Topic campaigns: each user gets their best item of the topic (the
Recommender's own list for them, restricted to the topic).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.exceptions import ConfigError
from recsys.push import history as H
from recsys.push.channels import ChannelRules, choose_channels
from recsys.push.hashing import user_buckets
from recsys.push.lists import ItemTopics, fetch_lists, object_index, with_object_ids
from recsys.push.chunk import expiring_items, item_topics
from recsys.push.plan import REASONS, SKIP_CAPPED, SKIP_NO_ITEMS, BundleUsers, UserPlan
from recsys.push.stats import row_counts
from recsys.push.writer import CAMPAIGN, MODEL_VERSION, NIGHTLY, RUN_ID, SEND_AFTER, SEND_BEFORE
from recsys.ranking import Recommender
from recsys.taxonomy import Taxonomy
from recsys.config import PushConfig, is_int

SKIP_NO_FORMAT = "no_channel_for_format"
SKIP_DEDUP = "already_pushed_recently"
SKIP_UNKNOWN = "not_a_current_user"
#: audience users looked at per round, as a multiple of the budget
_ROUND_FACTOR = 4
_MIN_ROUND = 1000


@dataclass(frozen=True)
class CampaignSpec:
    """What a campaign pushes, to whom, and how many users at most.

    Attributes
    ----------
    name : str
        The campaign's kind in the output (lowercase letters, digits, ``_``, ``-``).
    items : tuple of str
        Item ids (give these or ``topic``).
    topic : str or None
    budget : int
        Most users reached.
    group, region : str or None
        Only users of this group / region.
    channel : str or None
        Only this personal channel.
    emergency : bool
        May exceed the daily cap.
    """

    name: str
    budget: int
    items: tuple[str, ...] = ()
    topic: str | None = None
    group: str | None = None
    region: str | None = None
    channel: str | None = None
    emergency: bool = False

    def check(self, taxonomy: Taxonomy) -> "CampaignSpec":
        """Validate the campaign.

        Raises
        ------
        ConfigError
            For a bad name, budget, or neither/both of items and topic.
        UnknownCodeError
            For an unknown topic, group or region.
        """
        H.validate_kind(self.name)
        if self.name == NIGHTLY:
            raise ConfigError(f"campaign name {self.name!r} is reserved for the nightly lists; choose another")
        if not is_int(self.budget) or self.budget < 1:
            raise ConfigError(f"campaign budget must be a positive integer (users), got {self.budget!r}")
        if bool(self.items) == (self.topic is not None):
            raise ConfigError("a campaign needs exactly one of --item ID... or --topic T")
        if self.topic is not None:
            taxonomy.check("topic", self.topic)
        for item in self.items:
            if not isinstance(item, str) or not item:
                raise ConfigError(f"campaign item ids must be non-empty strings, got {item!r}")
        twice = sorted({i for i in self.items if list(self.items).count(i) > 1})
        if twice:
            raise ConfigError(f"campaign item {twice[0]!r} is given twice in --item; name each item once")
        if self.group is not None:
            taxonomy.check("group", self.group)
        if self.region is not None:
            taxonomy.check("region", self.region)
        return self

    def reason(self) -> str:
        """The reason line every campaign row carries."""
        return f"{'紧急' if self.emergency else ''}活动:{self.name}"


@dataclass
class CampaignInputs:
    """What the campaign needs to know about the users (aligned with the bundle's users).

    Attributes
    ----------
    user_ids : Index of str (n_users,)
    groups, regions : ndarray of str (n_users,)
    in_scope : ndarray, bool (n_users,)
        Eligible tonight: not opted out, a usable channel, in the segment, not held out.
    reason : ndarray, int8 (n_users,), optional
        Why a user is not in scope: index into :data:`recsys.push.plan.REASONS`.
    subscribed : ndarray, bool (n_users, P)
        Usable channels, columns in ``rules`` order.
    engagement : ndarray, float (n_users, P)
    """

    user_ids: pd.Index
    groups: np.ndarray
    regions: np.ndarray
    in_scope: np.ndarray
    subscribed: np.ndarray
    engagement: np.ndarray
    reason: np.ndarray | None = None


def _audience(
    recommender: Recommender, spec: CampaignSpec, k: int, now: pd.Timestamp, empty: dict[str, str]
) -> pd.DataFrame:
    """user_id, item_id, score for the top-k users of each campaign item (or the topic).

    ``empty`` gets, per item (``""`` for the topic), the Recommender's reason
    when the item has no audience at all.
    """
    frames = []
    for item in spec.items or ("",):
        if spec.topic is not None:
            aud = recommender.audience(topic=spec.topic, k=k, group=spec.group, region=spec.region, now=now)
        else:
            aud = recommender.audience(item_id=item, k=k, group=spec.group, region=spec.region, now=now)
        if aud.empty:
            empty[item] = str(aud.attrs.get("reason", "nobody is eligible"))
        frames.append(aud.assign(**{C.ITEM_ID: item}))
    return with_object_ids(pd.concat(frames, ignore_index=True))


def select_campaign(
    recommender: Recommender,
    spec: CampaignSpec,
    inputs: CampaignInputs,
    *,
    rules: Sequence[ChannelRules],
    store: H.HistoryStore,
    day: dt.date,
    dedup_days: int,
    timezone: str,
    item_formats: pd.Series,
    item_topics: ItemTopics,
    per_user: int | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Pick the campaign's users and their rows.

    Parameters
    ----------
    recommender : recsys.ranking.Recommender
    spec : CampaignSpec
    inputs : CampaignInputs
    rules : sequence of ChannelRules
        Personal channels in priority order (the columns of ``inputs``).
    store : HistoryStore
    day : datetime.date
        Local date of the pushes.
    dedup_days : int
    timezone : str
    item_formats : Series
        item_id -> format (the current catalogue).
    item_topics : ItemTopics
        The current catalogue's topics.
    per_user : int, optional
        Most items per user (default: an item campaign's items as far as the
        caps allow; one item for a topic campaign).

    Returns
    -------
    rows : DataFrame
        ``user_id, channel, rank, item_id, score, reasons, campaign, send_after, send_before``,
        users best first.
    stats : dict
        ``audience`` (users looked at), ``selected_users``, ``rows``, ``skipped``
        (audience users left out, each once, by reason) and ``no_audience``
        (item -> why it has no audience at all, ``""`` for the topic).
    """
    windows = {r.channel: r.window(day, timezone) for r in rules}
    now = min(start for start, _ in windows.values())
    carries = _carries(spec, rules, recommender.state.taxonomy, item_formats)
    expiring = {c: expiring_items(recommender, *windows[c]) for c in windows}
    if spec.topic is None:
        # an item that expires before a channel's send window closes does not go out on it
        for c in carries.columns:
            carries.loc[carries.index.isin(expiring[c]), c] = False
    n_users = len(inputs.user_ids)
    k = int(min(n_users, max(_MIN_ROUND, _ROUND_FACTOR * spec.budget)))
    looked: set[str] = set()
    chosen: list[pd.DataFrame] = []
    skipped = {name: 0 for name in (*REASONS[1:], SKIP_UNKNOWN, SKIP_NO_FORMAT, SKIP_CAPPED, SKIP_DEDUP, SKIP_NO_ITEMS)}
    no_audience: dict[str, str] = {}
    selected = 0
    while selected < spec.budget:
        no_audience.clear()
        audience = _audience(recommender, spec, k, now, no_audience)
        fresh = audience[~audience[C.USER_ID].isin(looked)]
        if len(fresh):
            rows = _round(
                recommender,
                spec,
                inputs,
                fresh,
                carries,
                rules,
                store,
                day,
                dedup_days,
                windows,
                item_topics,
                skipped,
                expiring,
                per_user,
            )
            looked.update(fresh[C.USER_ID].tolist())
            # keep the best users, in audience order, up to the budget
            users = pd.unique(rows[C.USER_ID])[: spec.budget - selected]
            rows = rows[rows[C.USER_ID].isin(users)]
            selected += len(users)
            chosen.append(rows)
        exhausted = audience.groupby(C.ITEM_ID)[C.USER_ID].size().max() < k if len(audience) else True
        if exhausted or k >= n_users:
            break
        k = int(min(n_users, k * _ROUND_FACTOR))
    rows = pd.concat(chosen, ignore_index=True) if chosen else _empty_rows()
    rows[CAMPAIGN] = spec.name
    stats = {
        "budget": int(spec.budget),
        "audience": len(looked),
        "selected_users": int(rows[C.USER_ID].nunique()),
        "rows": int(len(rows)),
        "skipped": {name: n for name, n in skipped.items() if n},
        "no_audience": dict(no_audience),
    }
    return rows.reset_index(drop=True), stats


def _carries(
    spec: CampaignSpec, rules: Sequence[ChannelRules], taxonomy: Taxonomy, item_formats: pd.Series
) -> pd.DataFrame:
    """item x channel: does the channel carry the item's format (topic campaigns: one row, all True)."""
    channels = [r.channel for r in rules]
    if spec.topic is not None:
        return pd.DataFrame([[True] * len(channels)], index=[""], columns=channels)
    formats = item_formats.reindex(list(spec.items))
    return pd.DataFrame(
        [[fmt in taxonomy.formats_for(c) for c in channels] for fmt in formats],
        index=list(spec.items),
        columns=channels,
    )


def _empty_rows() -> pd.DataFrame:
    cols = (C.USER_ID, C.CHANNEL, C.RANK, C.ITEM_ID, C.SCORE, C.REASONS, SEND_AFTER, SEND_BEFORE)
    return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})


def _round(
    recommender: Recommender,
    spec: CampaignSpec,
    inputs: CampaignInputs,
    audience: pd.DataFrame,
    carries: pd.DataFrame,
    rules: Sequence[ChannelRules],
    store: H.HistoryStore,
    day: dt.date,
    dedup_days: int,
    windows: dict[str, tuple[pd.Timestamp, pd.Timestamp]],
    item_topics: ItemTopics,
    skipped: dict[str, int],
    expiring: dict[str, np.ndarray],
    per_user: int | None = None,
) -> pd.DataFrame:
    """Rows for one batch of audience users (best first); updates ``skipped``."""
    best = audience.groupby(C.USER_ID, sort=False)[C.SCORE].max().sort_values(ascending=False, kind="stable")
    pos = inputs.user_ids.get_indexer(best.index)
    ok = (pos >= 0) & inputs.in_scope[np.maximum(pos, 0)]
    skipped[SKIP_UNKNOWN] += int((pos < 0).sum())
    if inputs.reason is not None:
        codes = np.bincount(inputs.reason[pos[(pos >= 0) & ~ok]], minlength=len(REASONS))
        for code, name in enumerate(REASONS[1:], start=1):
            skipped[name] += int(codes[code])
    users, pos = best.index[ok], pos[ok]
    if not len(users):
        return _empty_rows()
    history = H.read_window(store, range(store.n_buckets), day, dedup_days, skip=(day, spec.name), user_ids=users)
    daily, weekly = H.cap_usage(history, pd.Index(users), day, [r.channel for r in rules])
    room = H.remaining(daily, weekly, rules, ignore_daily=spec.emergency)
    blocked = H.dedup_pairs(history)
    fits = carries.any(axis=0).to_numpy()[None, :]
    subscribed = inputs.subscribed[pos]
    no_format = ~(subscribed & fits).any(axis=1)
    channel = choose_channels(subscribed & fits, inputs.engagement[pos], room > 0, 1)[:, 0]
    skipped[SKIP_NO_FORMAT] += int(no_format.sum())
    skipped[SKIP_CAPPED] += int(((channel < 0) & ~no_format).sum())
    frames = []
    for p, rule in enumerate(rules):
        who = np.flatnonzero(channel == p)
        if not who.size:
            continue
        ids = users[who]
        limit = pd.Series(room[who, p], index=ids)
        if per_user is not None:
            limit = limit.clip(upper=per_user)
        if spec.topic is not None:
            # the ranking's soft topic cap never shortens a list of one topic: it relaxes to fill k
            lists = fetch_lists(
                lambda u, k, exclude, _c=rule.channel: recommender.recommend_many(
                    u, k=k, channel=_c, topics=[spec.topic], now=windows[_c][0], exclude=exclude
                ),
                ids,
                limit.clip(upper=1 if per_user is None else per_user),
                blocked=blocked,
                drop_items=expiring[rule.channel],
            )
            lists = lists.assign(**{C.SCORE: best.reindex(lists[C.USER_ID]).to_numpy()})
            lists[C.REASONS] = [[spec.reason(), *r] for r in lists[C.REASONS]]
        else:
            lists = _item_lists(audience, ids, limit, carries[rule.channel], blocked, spec)
        frames.append(
            lists.assign(
                **{C.CHANNEL: rule.channel, SEND_AFTER: windows[rule.channel][0], SEND_BEFORE: windows[rule.channel][1]}
            )
        )
    if not frames:
        return _empty_rows()
    rows = pd.concat(frames, ignore_index=True)
    got = pd.Index(users).isin(rows[C.USER_ID])
    # an item campaign's user left with nothing had every item pushed to them recently
    skipped[SKIP_NO_ITEMS if spec.topic is not None else SKIP_DEDUP] += int((~got & (channel >= 0)).sum())
    order = pd.Index(users).get_indexer(rows[C.USER_ID])
    return rows.assign(_o=order).sort_values(["_o", C.RANK], kind="stable").drop(columns="_o").reset_index(drop=True)


def _item_lists(
    audience: pd.DataFrame,
    users: pd.Index,
    limit: pd.Series,
    carried: pd.Series,
    blocked: pd.DataFrame,
    spec: CampaignSpec,
) -> pd.DataFrame:
    """Each user's campaign items their channel carries, not pushed recently, best first, within the room."""
    rows = audience[audience[C.USER_ID].isin(users) & audience[C.ITEM_ID].map(carried).fillna(False).astype(bool)]
    if len(blocked):
        keys = pd.MultiIndex.from_frame(rows[[C.USER_ID, C.ITEM_ID]])
        rows = rows[~keys.isin(pd.MultiIndex.from_frame(blocked[[C.USER_ID, C.ITEM_ID]]))]
    rows = rows.sort_values([C.USER_ID, C.SCORE], ascending=[True, False], kind="stable")
    rank = rows.groupby(C.USER_ID, sort=False).cumcount() + 1
    rows = rows.assign(**{C.RANK: rank.to_numpy()})
    rows = rows[rows[C.RANK].to_numpy() <= limit.reindex(rows[C.USER_ID]).to_numpy()]
    reasons = [[spec.reason(), f"受众匹配 {s:.2f}"] for s in rows[C.SCORE]]
    return rows.assign(**{C.REASONS: reasons})[[C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE, C.REASONS]]


@dataclass
class CampaignResult:
    """A computed campaign, ready to write.

    Attributes
    ----------
    rows : DataFrame
        :data:`recsys.push.writer.OUTPUT_COLUMNS`.
    buckets : ndarray, int32
        Each row's user's history bucket.
    stats : dict
        Row counts for the manifest (:func:`recsys.push.stats.row_counts`,
        plus ``users`` looked at and ``skipped``).
    picked : dict
        What :func:`select_campaign` reports (audience, selected users, skips).
    """

    rows: pd.DataFrame
    buckets: np.ndarray
    stats: dict[str, Any]
    picked: dict[str, Any]


def compute_campaign(
    bundle: str | Path,
    catalog: str | Path | None,
    spec: CampaignSpec,
    plan: UserPlan,
    users: BundleUsers,
    usable: np.ndarray,
    *,
    rules: Sequence[ChannelRules],
    store: H.HistoryStore,
    day: dt.date,
    push: PushConfig,
    timezone: str,
    model_version: str,
    run_id: str,
    per_user: int | None = None,
    holds: str | Path | None = None,
) -> CampaignResult:
    """Open the Recommender on the current catalogue and compute a campaign.

    Parameters
    ----------
    bundle, catalog : path
        The model bundle and the current catalogue (None = the bundle's items).
    spec : CampaignSpec
    plan : recsys.push.plan.UserPlan
    users : recsys.push.plan.BundleUsers
    usable : ndarray, bool (n_users, P)
    rules, store, day, timezone
        As in :func:`select_campaign`.
    push : PushConfig
    model_version, run_id : str
    per_user : int, optional
        As in :func:`select_campaign`.
    holds : path, optional
        A review-holds folder: held items are ineligible (:mod:`recsys.holds`).

    Returns
    -------
    CampaignResult
    """
    recommender = Recommender.load(bundle, catalog=catalog, holds=holds)
    state = recommender.state
    catalogue = state.catalog_items if state.catalog_items is not None else state.model.items
    formats = pd.Series(catalogue[C.FORMAT].astype(str).to_numpy(), index=object_index(catalogue[C.ITEM_ID]))
    topics = ItemTopics.build(item_topics(recommender))
    table = users.table
    inputs = CampaignInputs(
        user_ids=object_index(table[C.USER_ID]),
        groups=table[C.GROUP].to_numpy(dtype=object),
        regions=table[C.REGION].to_numpy(dtype=object),
        in_scope=plan.reason == REASONS.index("in_scope"),
        subscribed=usable,
        engagement=users.engagement,
        reason=plan.reason,
    )
    rows, picked = select_campaign(
        recommender,
        spec,
        inputs,
        rules=rules,
        store=store,
        day=day,
        dedup_days=push.dedup_days,
        timezone=timezone,
        item_formats=formats,
        item_topics=topics,
        per_user=per_user,
    )
    rows = rows.assign(**{MODEL_VERSION: model_version, RUN_ID: run_id})
    counts = row_counts(inputs.user_ids, inputs.groups, inputs.regions, rows, topics)
    stats = {"chunk": 0, "users": picked["audience"], **counts, "skipped": picked["skipped"]}
    return CampaignResult(rows, user_buckets(rows[C.USER_ID], store.n_buckets), stats, picked)
