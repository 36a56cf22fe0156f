"""From the findings to action: priority audiences with their priority topics, and plain-language advice.

Priority audiences, in order: the under-served group x region audiences
(most residents left behind first), then the segments with the strongest
demand-supply gaps. Each gets its gap topics (largest gap first); an
under-served audience without a gap gets the topics it engages with most
that still have live content, at half weight (reach it with what it wants).

Weights (the ranking boost, in standard deviations of a user's candidate
scores, see :mod:`recsys.ranking.features`): an audience weighs 1 when
under-served, 0.75 otherwise; a gap topic ``max_weight x clip(log(gap_ratio)
/ log 4, 0.25, 1)`` (a gap four times its supply gets the full weight).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.config import DemandConfig
from recsys.push.priorities import Priorities, PriorityAudience, PriorityTopic
from recsys.taxonomy import Taxonomy


def _topic_weight(ratio: float, config: DemandConfig) -> float:
    return float(config.max_weight * np.clip(np.log(max(ratio, 1.0)) / np.log(4.0), 0.25, 1.0))


def _segment_name(taxonomy: Taxonomy, group: str, region: str | None, lang: str) -> str:
    if lang == "zh":
        return (taxonomy.zh("region", region) if region else "全市") + taxonomy.zh("group", group)
    g = taxonomy.groups[group].en if group in taxonomy.groups else group
    r = taxonomy.regions[region].en if region and region in taxonomy.regions else "the city"
    return f"{g} in {r}"


def _gap_why(row: pd.Series, taxonomy: Taxonomy, config: DemandConfig) -> tuple[str, str]:
    """(zh, en) evidence sentence of one gap row."""
    topic_zh = taxonomy.zh("topic", row["topic"])
    topic_en = taxonomy.topics[row["topic"]].en if row["topic"] in taxonomy.topics else row["topic"]
    who_zh = _segment_name(taxonomy, row["group"], row["region"], "zh")
    who_en = _segment_name(taxonomy, row["group"], row["region"], "en")
    fresh = row["fresh_items"]
    fresh_txt = f"{fresh:.0f}"
    if row["direction"] == "rising":
        zh = (
            f"{who_zh}对{topic_zh}的需求上升 {row['change']:.0%}（q = {row['q']:.3g}），"
            f"近 {config.fresh_days} 天仅 {fresh_txt} 篇新内容 → 建议组织制作"
        )
        en = (
            f"{who_en}: demand for {topic_en} up {row['change']:.0%} (q = {row['q']:.3g}), "
            f"only {fresh_txt} new items in {config.fresh_days} days -> commission content"
        )
    else:
        zh = (
            f"{who_zh}的互动中 {row['demand_share']:.0%} 是{topic_zh}，新内容只占 {row['fresh_share']:.0%}"
            f"（近 {config.fresh_days} 天 {fresh_txt} 篇）→ 建议组织制作"
        )
        en = (
            f"{who_en}: {topic_en} takes {row['demand_share']:.0%} of their engagement but "
            f"{row['fresh_share']:.0%} of new content ({fresh_txt} items in {config.fresh_days} days) -> commission content"
        )
    return zh, en


def _audience_why(row: pd.Series, taxonomy: Taxonomy, city: tuple[float, float], weeks: int) -> tuple[str, str]:
    who_zh = _segment_name(taxonomy, row["group"], row["region"], "zh")
    who_en = _segment_name(taxonomy, row["group"], row["region"], "en")
    zh = (
        f"{who_zh}：近 {weeks} 周 {row['reach_rate']:.0%} 的居民收到推送（全市 {city[0]:.0%}），"
        f"{row['engaged_rate']:.0%} 有互动（全市 {city[1]:.0%}）→ 列为重点人群"
    )
    en = (
        f"{who_en}: {row['reach_rate']:.0%} of residents reached in {weeks} weeks (city {city[0]:.0%}), "
        f"{row['engaged_rate']:.0%} engaged (city {city[1]:.0%}) -> priority audience"
    )
    return zh, en


def build_priorities(
    gaps: pd.DataFrame,
    audiences: pd.DataFrame,
    demand: pd.DataFrame,
    taxonomy: Taxonomy,
    as_of: pd.Timestamp,
    weeks: int,
    config: DemandConfig,
) -> Priorities:
    """Priority audiences and topics from the gap and audience tables (see the module docstring)."""
    expires = (as_of + pd.Timedelta(days=config.expiry_days)).tz_convert(taxonomy.tz)
    city = (
        audiences["reached"].sum() / max(audiences["residents"].sum(), 1),
        audiences["engaged"].sum() / max(audiences["residents"].sum(), 1),
    )
    found = gaps[gaps["gap"]]
    recent = demand[(demand["level"] == "group_region") & (demand["week"] >= weeks - config.recent_weeks)]
    chosen: list[PriorityAudience] = []
    seen: set[tuple[str, str]] = set()

    def gap_topics(group: str, region: str) -> list[PriorityTopic]:
        rows = found[(found["group"] == group) & (found["region"].fillna("") == region)]
        out = []
        for _, row in rows.head(config.topics_per_audience).iterrows():
            zh, en = _gap_why(row, taxonomy, config)
            out.append(PriorityTopic(row["topic"], _topic_weight(row["gap_ratio"], config), expires, f"{zh} / {en}"))
        return out

    for _, row in audiences[audiences["status"] == "under-served"].iterrows():
        key = (row["group"], row["region"])
        topics = gap_topics(*key)
        if not topics:
            mine = recent[(recent["group"] == key[0]) & (recent["region"] == key[1])]
            best = mine.groupby("topic")["positives"].sum().sort_values(ascending=False)
            for topic in best.index[: config.topics_per_audience]:
                topics.append(
                    PriorityTopic(
                        topic, 0.5 * config.max_weight, expires,
                        "该人群互动最多的主题 / the topic this audience engages with most",
                    )
                )
        if topics:
            zh, en = _audience_why(row, taxonomy, city, weeks)
            chosen.append(PriorityAudience(key[0], key[1], 1.0, expires, tuple(topics), f"{zh} / {en}"))
            seen.add(key)
    for _, row in found.iterrows():
        key = (row["group"], row["region"] or "")
        if key in seen:
            continue
        seen.add(key)
        topics = gap_topics(*key)
        if topics:
            chosen.append(PriorityAudience(key[0], key[1], 0.75, expires, tuple(topics), "需求超过内容供给 / demand ahead of supply"))
    return Priorities(tuple(chosen[: config.max_audiences]), as_of=as_of.tz_convert(taxonomy.tz).isoformat())


def recommendations(
    gaps: pd.DataFrame, trends: pd.DataFrame, audiences: pd.DataFrame, taxonomy: Taxonomy, weeks: int, config: DemandConfig, n: int = 5
) -> list[tuple[str, str]]:
    """Plain-language (zh, en) advice, most pressing first.

    New demand (a topic rising in a district or a whole group, ahead of its supply), then the
    audiences the push leaves behind, then a whole group's standing gaps (one line per group and
    topic, not one per district), then falling topics: an editor reading only the first lines
    sees both what to commission and whom to reach.
    """
    out = []
    found = gaps[gaps["gap"]]
    for _, row in found[found["direction"] == "rising"].head(n).iterrows():
        out.append(_gap_why(row, taxonomy, config))
    city = (
        audiences["reached"].sum() / max(audiences["residents"].sum(), 1),
        audiences["engaged"].sum() / max(audiences["residents"].sum(), 1),
    )
    for _, row in audiences[audiences["status"] == "under-served"].head(n).iterrows():
        out.append(_audience_why(row, taxonomy, city, weeks))
    standing = found[(found["direction"] != "rising") & (found["level"] == "group")]
    for _, row in standing.head(max(n - len(out), 2)).iterrows():
        out.append(_gap_why(row, taxonomy, config))
    falling = trends[(trends["direction"] == "falling") & (trends["level"] == "group_region")].head(max(1, n // 2))
    for _, row in falling.iterrows():
        topic_zh = taxonomy.zh("topic", row["topic"])
        topic_en = taxonomy.topics[row["topic"]].en if row["topic"] in taxonomy.topics else row["topic"]
        out.append(
            (
                (
                    f"{_segment_name(taxonomy, row['group'], row['region'], 'zh')}对{topic_zh}的兴趣下降 {-row['change']:.0%}"
                    f"（q = {row['q']:.3g}）→ 检查内容是否过时，减少同质推送"
                ),
                (
                    f"{_segment_name(taxonomy, row['group'], row['region'], 'en')}: interest in {topic_en} down "
                    f"{-row['change']:.0%} (q = {row['q']:.3g}) -> check whether the content has gone stale"
                ),
            )
        )
    return out
