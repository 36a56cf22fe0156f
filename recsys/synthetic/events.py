"""The synthetic city's log: a logging policy of its own, and users' responses.

Impressions come from the operator's *old* system, not from the engine: each
push picks an arm (trending by an editorial score and freshness; a topic the
user's *group* is known to like; items targeted at the group; uniform
exploration), then an item from that arm's eligible items of the day. So the
log has the exposure bias real logs have, and the policy never sees anyone's
individual interest, taste or the items' true quality.

Only pushable impressions are logged: approved (or not yet retracted),
published, unexpired items, inside their target audience, on one of the
user's personal channels that carries the format. A user sees an item at most
once. Every response is drawn from :class:`~recsys.synthetic.truth.GroundTruth`.

Everything works on one chunk of users at a time, with that chunk's own
random stream, so memory stays bounded and the result does not depend on
anything but the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.columns import EVENT_TYPES
from recsys.synthetic.calendar import SECONDS_PER_DAY, Window, campaign_effects
from recsys.synthetic.catalogue import Catalogue
from recsys.synthetic.population import Population
from recsys.synthetic.spec import Spec
from recsys.synthetic.sampling import sigmoid
from recsys.synthetic.truth import GroundTruth

TYPE = {name: code for code, name in enumerate(EVENT_TYPES)}
#: a forgotten old item still gets an occasional trending push
FRESH_FLOOR = 0.05


@dataclass(frozen=True)
class EventArrays:
    """One chunk of the log as arrays (length n).

    ``user`` (global user index), ``item``, ``event_type`` (index into
    ``recsys.columns.EVENT_TYPES``), ``t`` (epoch s), ``channel`` (index into
    the taxonomy's channels), ``dwell`` (seconds; NaN off read/complete).
    """

    user: np.ndarray
    item: np.ndarray
    event_type: np.ndarray
    t: np.ndarray
    channel: np.ndarray
    dwell: np.ndarray

    def __len__(self) -> int:
        return len(self.user)


@dataclass(frozen=True)
class Policy:
    """Precomputed sampling tables of the logging policy (see :func:`make_policy`).

    ``cum``/``items`` hold, per (day, block), the items and a cumulative
    distribution normalized into ``(block, block + 1]``; a block is a topic
    (``0..T-1``), trending (``T``), explore (``T+1``) or a group's targeted
    items (``T+2+g``), and block ids run ``day * n_blocks + block``.
    ``topic_cum`` does the same for the segment arm's topic choice per
    (group, day); ``day_cum`` and ``hour_cum`` pick when pushes happen.
    """

    cum: np.ndarray
    items: np.ndarray
    block_end: np.ndarray  # end offset of each (day, block) in cum/items
    n_blocks: int
    topic_cum: np.ndarray
    topic_end: np.ndarray
    day_cum: np.ndarray
    hour_cum: np.ndarray
    campaign_logit: np.ndarray  # (D, T)


def _block_cum(weights: np.ndarray, block: np.ndarray, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative weights within each block, mapped into ``(b, b + 1]``.

    ``block`` must be sorted. Returns the cum array and each block's end offset.
    """
    cs = np.cumsum(weights)
    counts = np.bincount(block, minlength=n_blocks)
    ends = np.cumsum(counts)
    starts = ends - counts
    before = np.where(starts > 0, cs[np.maximum(starts - 1, 0)], 0.0) if len(cs) else np.zeros(n_blocks)
    totals = np.where(counts > 0, cs[np.maximum(ends - 1, 0)] - before, 1.0) if len(cs) else np.ones(n_blocks)
    cum = block + (cs - before[block]) / totals[block]
    last = ends[counts > 0] - 1
    cum[last] = block[last] + 1.0  # exact block ends, whatever the rounding
    return cum, ends


def make_policy(catalogue: Catalogue, spec: Spec, window: Window) -> Policy:
    """Build the logging policy's per-day sampling tables."""
    pol = spec.policy
    n_t, n_g, n_d = len(spec.topics), len(spec.groups), window.n_days
    n_blocks = n_t + 2 + n_g
    camp_logit, camp_policy, camp_volume = campaign_effects(spec.campaigns, window.dates, n_t)

    # (item, topic, weight) pairs sorted by topic; (item, group) pairs sorted by group
    slot_w = catalogue.topic_weights
    pi, pj = np.nonzero(slot_w > 0)
    pt = catalogue.topics[pi, pj].astype(np.int64)
    order = np.argsort(pt, kind="stable")
    pair_item, pair_topic, pair_w = pi[order], pt[order], slot_w[pi, pj][order]
    ti, tg = np.nonzero(catalogue.target_groups)
    order = np.argsort(tg, kind="stable")
    targ_item, targ_group = ti[order], tg[order]

    editorial = np.exp(catalogue.editorial)
    tau = float(pol.get("fresh_tau_days", 10.0)) * SECONDS_PER_DAY
    all_items = np.arange(len(catalogue))
    cums, items, counts = [], [], []
    for d in range(n_d):
        lo, hi = window.day_start[d], window.day_start[d + 1]
        live = (catalogue.live_until > lo) & (catalogue.published < hi)
        age = np.maximum((lo + hi) / 2 - catalogue.published, 0)
        base = editorial * np.maximum(np.exp(-age / tau), FRESH_FLOOR)
        boost = 1.0 + (catalogue.topic_weights * camp_policy[d][catalogue.topics]).sum(axis=1)
        sel = live[pair_item]
        tsel = live[targ_item]
        n_live = int(live.sum())
        block = np.concatenate(
            [pair_topic[sel], np.full(n_live, n_t), np.full(n_live, n_t + 1), n_t + 2 + targ_group[tsel]]
        )
        weight = np.concatenate(
            [pair_w[sel] * base[pair_item[sel]], (base * boost)[live], np.ones(n_live), base[targ_item[tsel]]]
        )
        item = np.concatenate([pair_item[sel], all_items[live], all_items[live], targ_item[tsel]])
        cum, _ = _block_cum(weight, block, n_blocks)
        cums.append(cum + d * n_blocks)
        items.append(item)
        counts.append(np.bincount(block, minlength=n_blocks))
    cum = np.concatenate(cums) if cums else np.zeros(0)
    block_end = np.cumsum(np.concatenate(counts)) if counts else np.zeros(0, np.int64)

    # segment arm: topic by the group's population-average prior, flattened, boosted by campaigns
    group_prior = np.einsum("r,rgs,gsrt->gt", spec.region_share, spec.sub_group_mix, np.exp(spec.log_prior))
    group_prior /= group_prior.sum(axis=1, keepdims=True)
    topic_w = group_prior[:, None, :] ** float(pol.get("segment_topic_power", 0.5)) * (1.0 + camp_policy[None, :, :])
    topic_block = np.broadcast_to(np.arange(n_g * n_d)[:, None], (n_g * n_d, n_t)).ravel()
    topic_cum, topic_end = _block_cum(topic_w.ravel(), topic_block, n_g * n_d)

    weekday_volume = np.asarray(pol.get("weekday_volume", [1.0] * 7), dtype=np.float64)
    day_w = weekday_volume[window.weekday] * (1.0 + camp_volume)
    hour_w = np.asarray(pol.get("hour_weight", [1.0] * 24), dtype=np.float64)
    return Policy(
        cum=cum,
        items=np.concatenate(items).astype(np.int32) if items else np.zeros(0, np.int32),
        block_end=block_end,
        n_blocks=n_blocks,
        topic_cum=topic_cum,
        topic_end=topic_end,
        day_cum=np.cumsum(day_w) / day_w.sum(),
        hour_cum=np.cumsum(hour_w) / hour_w.sum(),
        campaign_logit=camp_logit,
    )


def _pick(
    cum: np.ndarray, block_end: np.ndarray, block: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sample a position in each requested block; ok = the block was not empty."""
    if not len(cum):
        return np.zeros(len(block), dtype=np.int64), np.zeros(len(block), dtype=bool)
    key = block + rng.random(len(block))
    # sorted keys make the binary searches walk the table in order (several times faster)
    order = np.argsort(key, kind="stable")
    pos = np.empty(len(key), dtype=np.int64)
    pos[order] = np.searchsorted(cum, key[order], side="right")
    pos = np.minimum(pos, len(cum) - 1)
    start = np.where(block > 0, block_end[np.maximum(block - 1, 0)], 0)
    # rounding can push a draw one past its block's end: take the block's last entry then
    pos = np.minimum(pos, block_end[block] - 1)
    return pos, pos >= start


def _push_items(
    user: np.ndarray,
    t: np.ndarray,
    day: np.ndarray,
    users: Population,
    catalogue: Catalogue,
    policy: Policy,
    spec: Spec,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The policy's item and personal channel (index into ``spec.personal``) per push; -1 = none found."""
    n = len(user)
    n_t = len(spec.topics)
    item = np.full(n, -1, dtype=np.int64)
    channel = np.full(n, -1, dtype=np.int64)
    group = users.group[user].astype(np.int64)
    carries = spec.channel_formats[spec.personal]  # (P, F)
    arm_cum = np.cumsum(spec.arms)
    todo = np.arange(n)
    for _ in range(int(spec.policy.get("rounds", 4))):
        if not len(todo):
            break
        arm = np.minimum(np.searchsorted(arm_cum, rng.random(len(todo)) * arm_cum[-1], side="right"), 3)
        g, d = group[todo], day[todo]
        block = np.where(arm == 0, n_t, n_t + 1)  # trending / explore
        seg = arm == 1
        if seg.any():
            topic_pos, _ = _pick(policy.topic_cum, policy.topic_end, g[seg] * len(policy.day_cum) + d[seg], rng)
            block[seg] = topic_pos % n_t
        block = np.where(arm == 2, n_t + 2 + g, block)
        block = d * policy.n_blocks + block
        pos, ok = _pick(policy.cum, policy.block_end, block, rng)
        cand = policy.items[pos].astype(np.int64)
        u = user[todo]
        ok &= (catalogue.published[cand] <= t[todo]) & (t[todo] < catalogue.live_until[cand])
        ok &= ~catalogue.target_groups[cand].any(axis=1) | catalogue.target_groups[cand, group[todo]]
        ok &= ~catalogue.target_regions[cand].any(axis=1) | catalogue.target_regions[cand, users.region[u]]
        allowed = users.channels[u] & carries[:, catalogue.format[cand]].T  # (m, P)
        ok &= allowed.any(axis=1)
        pick = np.argmax(np.where(allowed, rng.random(allowed.shape), -1.0), axis=1)
        item[todo[ok]] = cand[ok]
        channel[todo[ok]] = pick[ok]
        todo = todo[~ok]
    return item, channel


def _responses(
    u: np.ndarray,
    i: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    day: np.ndarray,
    truth: GroundTruth,
    catalogue: Catalogue,
    policy: Policy,
    spec: Spec,
    window: Window,
    rng: np.random.Generator,
) -> EventArrays:
    """Draw what each user did with each impression, from the truth's model."""
    resp, eng = spec.response, spec.engagement
    end = window.end - 1
    logit, topic_fit = truth.static_pair_logit(u, i)
    chan, _ = truth.channel_logit(c, catalogue.format[i].astype(np.int64))
    hour = (t - window.day_start[day]) // 3600
    weekday = np.asarray(eng.get("weekday_logit", [0.0] * 7), dtype=np.float64)[window.weekday[day]]
    evening = float(eng.get("evening_logit", 0.0)) * ((hour >= 18) & (hour < 23))
    logit = logit + chan + weekday + evening + truth.item_time_logit(i, t, policy.campaign_logit, day)
    logit = logit + truth.shift_logit(u, i, t)  # planted demand shifts (0 without)
    n = len(u)
    click = rng.random(n) < sigmoid(logit)

    utility = float(resp.get("follow_up_utility_coef", 0.5)) * (logit - float(eng.get("base_logit", 0.0)))
    k = np.flatnonzero(click)
    fu = utility[k]
    read = rng.random(len(k)) < sigmoid(float(resp.get("read_logit", 0.5)) + fu)
    complete = read & (rng.random(len(k)) < sigmoid(float(resp.get("complete_logit", -0.5)) + fu))
    like = rng.random(len(k)) < sigmoid(float(resp.get("like_logit", -2.0)) + fu)
    favorite = rng.random(len(k)) < sigmoid(float(resp.get("favorite_logit", -2.6)) + fu)
    share = rng.random(len(k)) < sigmoid(float(resp.get("share_logit", -2.8)) + fu)
    length = catalogue.length[i[k]]
    # a read that does not complete covers part of the item; the more it appeals, the more
    fraction_read = sigmoid(rng.normal(fu - 0.3, 1.0)) * 0.95
    dwell = np.round(np.maximum(np.where(complete, length, length * fraction_read), 1.0), 1)
    delay = float(resp.get("click_delay_minutes", 20.0)) * 60
    t_click = np.minimum(t[k] + rng.exponential(delay, len(k)).astype(np.int64), end)
    t_read = np.minimum(t_click + rng.integers(2, 21, len(k)), end)
    t_after = t_read + np.where(read, np.ceil(dwell).astype(np.int64), 0)
    t_complete = np.minimum(t_after, end)

    rest = np.flatnonzero(~click)
    p_report = sigmoid(
        float(resp.get("report_logit", -6.5))
        + float(resp.get("report_quality_coef", -1.5)) * catalogue.quality[i[rest]]
    )
    p_dismiss = sigmoid(
        float(resp.get("dismiss_logit", -3.0)) + float(resp.get("dismiss_topic_coef", -0.6)) * topic_fit[rest]
    )
    r = rng.random(len(rest))
    report = r < p_report
    dismiss = ~report & (r < p_report + p_dismiss)

    def later(t0: np.ndarray, low: int, high: int) -> np.ndarray:
        """A moment low..high seconds after ``t0``, never at or past the end."""
        return np.minimum(t0 + rng.integers(low, high + 1, len(t0)), end)

    # (impression rows, event type, time, dwell) per kind of event
    parts = [
        (np.arange(n), TYPE["impression"], t, None),
        (k, TYPE["click"], t_click, None),
        (k[read], TYPE["read"], t_read[read], dwell[read]),
        (k[complete], TYPE["complete"], t_complete[complete], dwell[complete]),
        (k[like], TYPE["like"], later(t_after[like], 3, 60), None),
        (k[favorite], TYPE["favorite"], later(t_after[favorite], 3, 60), None),
        (k[share], TYPE["share"], later(t_after[share], 3, 60), None),
        (rest[dismiss], TYPE["dismiss"], later(t[rest[dismiss]], 1, 600), None),
        (rest[report], TYPE["report"], later(t[rest[report]], 10, 1800), None),
    ]
    rows = np.concatenate([p[0] for p in parts])
    out = EventArrays(
        user=u[rows],
        item=i[rows],
        event_type=np.concatenate([np.full(len(p[0]), p[1], dtype=np.int8) for p in parts]),
        t=np.concatenate([p[2] for p in parts]).astype(np.int64),
        channel=c[rows],
        dwell=np.concatenate([p[3] if p[3] is not None else np.full(len(p[0]), np.nan) for p in parts]),
    )
    order = np.lexsort((out.event_type, out.t, out.user))
    return EventArrays(*(getattr(out, f)[order] for f in ("user", "item", "event_type", "t", "channel", "dwell")))


def make_events(
    first_user: int,
    users: Population,
    catalogue: Catalogue,
    truth: GroundTruth,
    policy: Policy,
    spec: Spec,
    window: Window,
    rng: np.random.Generator,
) -> EventArrays:
    """The log of one chunk of users (``users`` is that chunk; global index = first_user + local).

    Returns
    -------
    EventArrays
        Sorted by user, time and event type.
    """
    pol = spec.policy
    n_p = users.channels.sum(axis=1)
    rate = (
        float(pol.get("impressions_per_60_days", 20.0))
        * window.n_days
        / 60.0
        * users.activity
        * (1.0 + float(pol.get("per_extra_channel", 0.0)) * (n_p - 1))
    )
    counts = rng.poisson(rate)
    user = np.repeat(np.arange(len(users)), counts)
    day = np.minimum(np.searchsorted(policy.day_cum, rng.random(len(user)), side="right"), window.n_days - 1)
    hour = np.minimum(np.searchsorted(policy.hour_cum, rng.random(len(user)), side="right"), 23)
    t = window.day_start[day] + hour * 3600 + rng.integers(0, 3600, len(user))
    alive = (t >= users.registered[user]) & (t < users.opt_out_at[user]) & (t < window.end)
    user, day, t = user[alive], day[alive], t[alive]

    item, channel = _push_items(user, t, day, users, catalogue, policy, spec, rng)
    kept = item >= 0
    user, day, t, item, channel = user[kept], day[kept], t[kept], item[kept], channel[kept]
    # a user is pushed an item at most once: keep the earliest
    order = np.lexsort((t, user))
    key = user[order] * len(catalogue) + item[order]
    _, first = np.unique(key, return_index=True)
    keep = np.sort(order[first])
    user, day, t, item, channel = user[keep], day[keep], t[keep], item[keep], channel[keep]
    channel = spec.personal[channel]
    return _responses(first_user + user, item, t, channel, day, truth, catalogue, policy, spec, window, rng)
