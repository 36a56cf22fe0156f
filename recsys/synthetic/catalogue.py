"""The synthetic city's catalogue: items, their hidden quality, and their Chinese text.

Items come in *stories*: most stories are told once, some several times
(reposted by another source, cut as a video, reworded). The tellings of one
story are near-duplicates: same topics and key words, other phrasing, and
latent factors and quality drawn around the story's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.columns import AUTHORITIES, REVIEW_STATUSES
from recsys.synthetic.calendar import SECONDS_PER_DAY, Window, campaign_days
from recsys.synthetic.population import NEVER
from recsys.synthetic.sampling import draw
from recsys.synthetic.spec import Spec

MAX_TOPICS = 3
APPROVED = REVIEW_STATUSES.index("approved")
RETRACTED = REVIEW_STATUSES.index("retracted")


@dataclass(frozen=True)
class Catalogue:
    """Items as arrays (length ``n``) plus their text.

    Visible: ``topics``/``topic_weights`` (n, 3; padding has weight 0),
    ``n_topics``, ``format``, ``authority``, ``review``, ``published`` and
    ``expires`` (epoch s; ``NEVER`` = no expiry), ``target_groups`` (n, G) and
    ``target_regions`` (n, R) bool (no True = everyone), ``source``,
    ``title``, ``summary``, ``tags``. Hidden: ``story``, ``quality``,
    ``factors`` (n, k), ``fresh_tau`` (days), ``length`` (seconds of
    content), ``live_until`` (epoch s the logging policy may push it until:
    expiry or retraction; -1 for never-approved items) and ``editorial``
    (the logging policy's own score).
    """

    story: np.ndarray
    topics: np.ndarray
    topic_weights: np.ndarray
    n_topics: np.ndarray
    format: np.ndarray
    authority: np.ndarray
    review: np.ndarray
    published: np.ndarray
    expires: np.ndarray
    live_until: np.ndarray
    target_groups: np.ndarray
    target_regions: np.ndarray
    quality: np.ndarray
    factors: np.ndarray
    fresh_tau: np.ndarray
    length: np.ndarray
    editorial: np.ndarray
    source: list[str]
    title: list[str]
    summary: list[str]
    tags: list[list[str]]

    def __len__(self) -> int:
        return len(self.format)


def _uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    return low + (high - low) * rng.random(n)


def _story_sizes(n_items: int, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Story index of each item: stories of 1, 2, ... items until ``n_items``."""
    sizes = draw(probs / probs.sum(), n_items, rng) + 1  # at most n_items stories
    story = np.repeat(np.arange(n_items), sizes)[:n_items]
    return story


def _story_topics(n_stories: int, mix: np.ndarray, spec: Spec, rng: np.random.Generator) -> np.ndarray:
    """(n_stories, 3) topic indices; -1 pads. Extra topics come from related ones."""
    it = spec.items
    n_t = len(spec.topics)
    first = draw(mix, n_stories, rng)
    extra_p = np.asarray(it.get("extra_topics", [1.0]), dtype=np.float64)
    n_extra = draw(extra_p / extra_p.sum(), n_stories, rng)
    topics = np.full((n_stories, MAX_TOPICS), -1, dtype=np.int64)
    topics[:, 0] = first
    # per-story choice among related topics (a short Python loop over at most 3 picks)
    pick = rng.random((n_stories, MAX_TOPICS - 1))
    for s in np.flatnonzero(n_extra):
        pool = [t for t in spec.related[first[s]]] or [t for t in range(n_t) if t != first[s]]
        for j in range(min(n_extra[s], MAX_TOPICS - 1, len(pool))):
            t = pool[int(pick[s, j] * len(pool))]
            pool.remove(t)
            topics[s, 1 + j] = t
    return topics


def _topic_mix(spec: Spec) -> np.ndarray:
    """The catalogue's topic mix: part uniform, part what the population likes."""
    w = float(spec.items.get("topic_mix_population_weight", 0.5))
    # population-average interest: region share x group mix x sub-group mix x prior
    pop = np.einsum(
        "r,rg,rgs,gsrt->t",
        spec.region_share,
        spec.group_mix,
        spec.sub_group_mix,
        np.exp(spec.log_prior),
    )
    pop /= pop.sum()
    n_t = len(spec.topics)
    return (1 - w) / n_t + w * pop


#: expiry ranges when the spec gives none (``[items] weather_expiry_hours`` etc.)
_WEATHER_EXPIRY_HOURS, _EVENT_EXPIRY_DAYS, _OTHER_EXPIRY_DAYS = [6, 72], [3, 20], [30, 180]


def back_catalogue_s(spec: Spec) -> float:
    """How long before the window's start a back-catalogue story may be published, in seconds.

    Every item is published after ``window.start - back_catalogue_s(spec) - 1``.
    """
    return float(spec.items.get("back_catalogue_days", 365)) * SECONDS_PER_DAY


def expiry_reach_s(spec: Spec) -> float:
    """The longest time from publication to expiry, in seconds: every ``expires`` is before
    ``window.end - 1 + expiry_reach_s(spec)`` (items are published before the window's end)."""
    it = spec.items
    return max(
        float(it.get("weather_expiry_hours", _WEATHER_EXPIRY_HOURS)[1]) * 3600,
        float(it.get("event_expiry_days", _EVENT_EXPIRY_DAYS)[1]) * SECONDS_PER_DAY,
        float(it.get("other_expiry_days", _OTHER_EXPIRY_DAYS)[1]) * SECONDS_PER_DAY,
    )


def _published(n_stories: int, spec: Spec, window: Window, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Story publish times, and the campaign topic forced on campaign stories (-1: none)."""
    it = spec.items
    in_window = rng.random(n_stories) < float(it.get("share_in_window", 0.4))
    back = back_catalogue_s(spec)
    t_window = window.start + (rng.random(n_stories) * (window.end - window.start)).astype(np.int64)
    t_back = window.start - 1 - (rng.random(n_stories) * back).astype(np.int64)
    published = np.where(in_window, t_window, t_back)
    forced = np.full(n_stories, -1, dtype=np.int64)
    occasions = campaign_days(spec.campaigns, window.dates)
    if occasions:
        tied = np.flatnonzero(rng.random(n_stories) < float(it.get("campaign_share", 0.0)))
        which = rng.integers(len(occasions), size=len(tied))
        lead = (rng.random(len(tied)) * 7 * SECONDS_PER_DAY).astype(np.int64)
        pick = rng.random(len(tied))
        for s, o, dt_, p in zip(tied, which, lead, pick):
            day, campaign = occasions[o]
            forced[s] = campaign.topics[int(p * len(campaign.topics))]
            published[s] = max(window.day_start[day] - dt_, window.start - int(back))
    return published, forced


def _texts(
    story: np.ndarray,
    story_topics: np.ndarray,
    target_groups: np.ndarray,
    target_regions: np.ndarray,
    source: list[str],
    spec: Spec,
    rng: np.random.Generator,
) -> tuple[list[str], list[str], list[list[str]]]:
    """Chinese title, summary and tags of every item, from the topic vocabularies.

    A story draws its key words once; each telling picks its own templates,
    so near-duplicates share key words but not phrasing.
    """
    n_stories = len(story_topics)
    n_items = len(story)
    kw_pick = rng.random((n_stories, 3))
    title_pick = rng.integers(len(spec.title_templates), size=n_stories)
    summary_pick = rng.integers(len(spec.summary_templates), size=(n_items, 2))
    swap = rng.random(n_items) < 0.5
    numbers = rng.integers(3, 11, size=n_items)
    aud_pick = rng.integers(len(spec.groups), size=n_items)
    place_pick = rng.integers(len(spec.regions) + 1, size=n_items)
    story_words = []
    for s in range(n_stories):
        first = spec.words[story_topics[s, 0]]
        second_topic = story_topics[s, 1] if story_topics[s, 1] >= 0 else story_topics[s, 0]
        second = spec.words[second_topic]
        k1 = first[int(kw_pick[s, 0] * len(first))]
        rest = [w for w in first if w != k1] or [k1]
        k2 = rest[int(kw_pick[s, 1] * len(rest))]
        k3 = second[int(kw_pick[s, 2] * len(second))]
        story_words.append((k1, k2, k3))
    titles, summaries, tags = [], [], []
    seen_in_story: dict[int, int] = {}
    n_titles = len(spec.title_templates)
    for i in range(n_items):
        s = int(story[i])
        k1, k2, k3 = story_words[s]
        if swap[i]:
            k1, k2 = k2, k1
        # tellings of one story walk through the templates: never the same phrasing twice in a row
        nth = seen_in_story.get(s, 0)
        seen_in_story[s] = nth + 1
        groups = np.flatnonzero(target_groups[i])
        regions = np.flatnonzero(target_regions[i])
        audience = spec.group_zh[groups[0] if len(groups) else aud_pick[i]]
        if len(regions):
            place = spec.region_zh[regions[0]]
        else:
            place = spec.city if place_pick[i] == len(spec.regions) else spec.region_zh[place_pick[i]]
        fields = {
            "k1": k1,
            "k2": k2,
            "k3": k3,
            "topic": spec.topic_zh[story_topics[s, 0]],
            "audience": audience,
            "place": place,
            "n": int(numbers[i]),
            "source": source[i] or spec.city,
        }
        titles.append(spec.title_templates[(title_pick[s] + nth * 5) % n_titles].format(**fields))
        first_sentence = spec.summary_templates[summary_pick[i, 0]]
        second_sentence = spec.summary_templates[summary_pick[i, 1]]
        sentences = [first_sentence] if first_sentence == second_sentence else [first_sentence, second_sentence]
        summaries.append("".join(x.format(**fields) for x in sentences))
        item_tags = [k1, k2, k3] if k3 not in (k1, k2) else [k1, k2]
        tags.append(item_tags)
    return titles, summaries, tags


def _thin_supply(
    topics_s: np.ndarray, published: np.ndarray, forced: np.ndarray, spec: Spec, window: Window, rng: np.random.Generator
) -> None:
    """Thin the new stories of ``spec.thin_topics`` (planted truth): most take another first topic.

    Draws from a child stream of ``rng`` (spawning consumes none of its draws),
    so a spec without thin topics gives the very catalogue it gave before.
    """
    if not spec.thin_topics:
        return
    child = rng.spawn(1)[0]
    keep = float(spec.items.get("thin_supply_keep", 1.0))
    thin = np.isin(topics_s[:, 0], spec.thin_topics) & (published >= window.start) & ~forced
    moved = np.flatnonzero(thin & (child.random(len(topics_s)) >= keep))
    others = np.setdiff1d(np.arange(len(spec.topics)), spec.thin_topics)
    mix = _topic_mix(spec)[others]
    topics_s[moved, 0] = others[np.searchsorted(np.cumsum(mix / mix.sum()), child.random(len(moved)), side="right").clip(0, len(others) - 1)]
    # the new first topic may repeat an extra one: drop the repeat
    for j in range(1, MAX_TOPICS):
        topics_s[moved[topics_s[moved, j] == topics_s[moved, 0]], j] = -1


def make_catalogue(n_items: int, spec: Spec, window: Window, rng: np.random.Generator) -> Catalogue:
    """Draw ``n_items`` items in stories, with topics, format, audience, review, times and text."""
    it, eng, pol = spec.items, spec.engagement, spec.policy
    n_g, n_r = len(spec.groups), len(spec.regions)
    story = _story_sizes(n_items, np.asarray(it.get("story_size", [1.0]), dtype=np.float64), rng)
    n_stories = int(story[-1]) + 1

    story_published, forced = _published(n_stories, spec, window, rng)
    topics_s = _story_topics(n_stories, _topic_mix(spec), spec, rng)
    has_forced = forced >= 0
    _thin_supply(topics_s, story_published, has_forced, spec, window, rng)
    topics_s[has_forced, 0] = forced[has_forced]
    # a forced first topic may repeat an extra one: drop the repeat
    for j in range(1, MAX_TOPICS):
        topics_s[topics_s[:, j] == topics_s[:, 0], j] = -1

    # audience: some stories target their topic's audience groups or regions
    target_groups_s = np.zeros((n_stories, n_g), dtype=bool)
    target_regions_s = np.zeros((n_stories, n_r), dtype=bool)
    want_g = rng.random(n_stories) < float(it.get("target_group_share", 0.0))
    want_r = rng.random(n_stories) < float(it.get("target_region_share", 0.0))
    region_pick = rng.integers(n_r, size=(n_stories, 2))
    for s in np.flatnonzero(want_g):
        target_groups_s[s, list(spec.audience[topics_s[s, 0]])] = True
    for s in np.flatnonzero(want_r):
        pool = spec.topic_regions[topics_s[s, 0]]
        if pool:
            target_regions_s[s, [pool[region_pick[s, 0] % len(pool)], pool[region_pick[s, 1] % len(pool)]]] = True
        else:
            target_regions_s[s, region_pick[s, 0]] = True

    k = int(eng.get("latent_dim", 8))
    dup_sd = float(eng.get("duplicate_factor_sd", 0.3))
    factors_s = rng.standard_normal((n_stories, k))
    quality_s = float(eng.get("quality_sd", 0.5)) * rng.standard_normal(n_stories)

    # ---- per item ----
    topics = topics_s[story]
    valid = topics >= 0
    n_topics = valid.sum(axis=1)
    first_w = float(it.get("first_topic_weight", 0.7))
    weights = np.where(valid, (1 - first_w) / np.maximum(n_topics - 1, 1)[:, None], 0.0)
    weights[:, 0] = np.where(n_topics > 1, first_w, 1.0)
    topics = np.where(valid, topics, 0)

    fmt = draw(spec.format_mix, n_items, rng)
    authority = draw(spec.authority_mix, n_items, rng)
    review = draw(spec.review_mix, n_items, rng)
    spread = float(it.get("story_spread_days", 3.0)) * SECONDS_PER_DAY
    first_of_story = np.r_[True, story[1:] != story[:-1]]
    offset = np.where(first_of_story, 0, (rng.random(n_items) * spread).astype(np.int64))
    published = np.minimum(story_published[story] + offset, window.end - 1)

    expires = np.full(n_items, NEVER, dtype=np.int64)
    weather = spec.topics.index("weather_climate") if "weather_climate" in spec.topics else -1
    is_weather = (topics[:, 0] == weather) & (rng.random(n_items) < float(it.get("weather_expiry_share", 0.0)))
    lo, hi = it.get("weather_expiry_hours", _WEATHER_EXPIRY_HOURS)
    expires = np.where(is_weather, published + (_uniform(rng, lo, hi, n_items) * 3600).astype(np.int64), expires)
    event_fmt = spec.formats.index("event") if "event" in spec.formats else -1
    lo, hi = it.get("event_expiry_days", _EVENT_EXPIRY_DAYS)
    expires = np.where(
        fmt == event_fmt, published + (_uniform(rng, lo, hi, n_items) * SECONDS_PER_DAY).astype(np.int64), expires
    )
    other = (expires == NEVER) & (rng.random(n_items) < float(it.get("other_expiry_share", 0.0)))
    lo, hi = it.get("other_expiry_days", _OTHER_EXPIRY_DAYS)
    expires = np.where(other, published + (_uniform(rng, lo, hi, n_items) * SECONDS_PER_DAY).astype(np.int64), expires)

    lo, hi = it.get("retracted_after_days", [1, 30])
    retracted_at = np.minimum(
        published + (_uniform(rng, lo, hi, n_items) * SECONDS_PER_DAY).astype(np.int64), window.end - 1
    )
    live_until = np.where(review == APPROVED, expires, -1)
    live_until = np.where(review == RETRACTED, np.minimum(expires, retracted_at), live_until)

    quality = quality_s[story] + dup_sd * float(eng.get("quality_sd", 0.5)) * rng.standard_normal(n_items)
    quality += spec.quality_authority[authority]
    factors = factors_s[story] + dup_sd * rng.standard_normal((n_items, k))
    editorial = (
        float(pol.get("quality_weight", 0.6)) * quality
        + float(pol.get("editorial_noise_sd", 0.7)) * rng.standard_normal(n_items)
        + spec.editorial_authority[authority]
    )
    length = spec.dwell_median[fmt] * 1.6 * rng.lognormal(0.0, 0.3, n_items)
    source_pick = rng.random(n_items)
    source = [
        spec.sources[AUTHORITIES[a]][int(p * len(spec.sources[AUTHORITIES[a]]))] for a, p in zip(authority, source_pick)
    ]
    target_groups = target_groups_s[story]
    target_regions = target_regions_s[story]
    title, summary, tags = _texts(story, topics_s, target_groups, target_regions, source, spec, rng)
    return Catalogue(
        story=story,
        topics=topics.astype(np.int16),
        topic_weights=weights.astype(np.float32),
        n_topics=n_topics,
        format=fmt.astype(np.int16),
        authority=authority.astype(np.int8),
        review=review.astype(np.int8),
        published=published.astype(np.int64),
        expires=expires,
        live_until=live_until.astype(np.int64),
        target_groups=target_groups,
        target_regions=target_regions,
        quality=quality.astype(np.float32),
        factors=factors.astype(np.float32),
        fresh_tau=spec.fresh_tau[topics[:, 0]].astype(np.float32),
        length=length,
        editorial=editorial,
        source=source,
        title=title,
        summary=summary,
        tags=tags,
    )
