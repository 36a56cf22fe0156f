"""The demand report: ``report.html`` (one self-contained file, plots embedded) and ``report.md``.

Written for the science association's editors and the district offices:
plain-language recommendations first, then the evidence -- a topic x group
heat-map of demand, trend lines of the top movers, supply-gap bars, the
under-served audiences by district, and the priorities handed to the push.
Headings are bilingual like the evaluation report (whose renderer it uses);
plots label with codes (a CJK font may be missing), tables with Chinese names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.evaluation.plots import pyplot, save_figure
from recsys.evaluation.report import Section, render_html, render_markdown
from recsys.taxonomy import Taxonomy

if TYPE_CHECKING:  # cycle: the demand job imports this report
    from recsys.demand.job import DemandResult

PLOTS_DIR = "plots"
TITLE = "科普需求跟踪分析报告 / Science-content demand tracking"


def _name(taxonomy: Taxonomy, kind: str, code: str | None) -> str:
    if code is None or code == "":
        return "全部 all"
    return f"{taxonomy.zh(kind, code)} {code}"


def _pct(x: float | None) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:+.0%}"


def _share(x: float | None) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.0%}"


def _day_before(iso: str) -> str:
    """The last local date of a window that ends (exclusive) at the ISO time ``iso``."""
    return (pd.Timestamp(iso) - pd.Timedelta(days=1)).date().isoformat()


def _q(x: float | None) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.3g}"


def plot_heatmap(demand: pd.DataFrame, weeks: int, recent: int, path: Path) -> Path:
    """Topic x group heat-map of each group's engagement share in the recent weeks."""
    plt = pyplot()
    d = demand[(demand["level"] == "group") & (demand["week"] >= weeks - recent)]
    pos = d.pivot_table(index="topic", columns="group", values="positives", aggfunc="sum", fill_value=0)
    share = pos / pos.sum(axis=0).replace(0, np.nan)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(share) + 1.6))
    im = ax.imshow(share.to_numpy(dtype=float), aspect="auto", cmap="YlOrRd")
    ax.set_xticks(range(share.shape[1]), share.columns, rotation=30, ha="right")
    ax.set_yticks(range(share.shape[0]), share.index, fontsize=8)
    ax.set_title(f"share of each group's positive engagements, last {recent} weeks")
    fig.colorbar(im, ax=ax, fraction=0.04)
    return save_figure(fig, path)


def plot_trends(demand: pd.DataFrame, movers: pd.DataFrame, path: Path) -> Path:
    """Weekly (shrunk) engagement rate of the top movers, one line each."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for _, m in movers.iterrows():
        level = "group_region" if m["level"] == "group_region" else m["level"]
        d = demand[(demand["level"] == level) & (demand["topic"] == m["topic"])]
        for col in ("group", "region"):
            if m[col] is not None:
                d = d[d[col] == m[col]]
        if level in ("region", "group_sub_group", "city") or d.empty:
            continue
        label = "/".join(str(x) for x in (m["topic"], m["group"], m["region"]) if x)
        ax.plot(d["week"], d["rate_shrunk"], marker="o", label=f"{label} ({m['change']:+.0%})")
    ax.set_xlabel("week (0 = oldest)")
    ax.set_ylabel("positive engagements per impression (shrunk)")
    ax.set_title("top movers")
    if ax.lines:
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_gaps(gaps: pd.DataFrame, path: Path, n: int = 12) -> Path:
    """Bars of the largest demand-supply gaps."""
    plt = pyplot()
    top = gaps[gaps["gap"]].head(n).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(top), 1) + 1.4))
    labels = ["/".join(str(x) for x in (r["topic"], r["group"], r["region"]) if x) for _, r in top.iterrows()]
    colours = ["#c0392b" if d == "rising" else "#e3a857" for d in top["direction"]]
    ax.barh(range(len(top)), top["gap_ratio"], color=colours)
    ax.set_yticks(range(len(top)), labels, fontsize=8)
    ax.axvline(1.0, color="#555", lw=0.8)
    ax.set_xlabel("demand share x trend / fresh-supply share (red: rising demand)")
    ax.set_title("content to commission")
    return save_figure(fig, path)


def plot_reach(audiences: pd.DataFrame, path: Path) -> Path:
    """Group x region heat-map of the engaged ratio (1 = the city's rate)."""
    plt = pyplot()
    grid = audiences.pivot_table(index="group", columns="region", values="engaged_ratio", aggfunc="first")
    fig, ax = plt.subplots(figsize=(8, 3.2))
    im = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="RdYlGn", vmin=0.6, vmax=1.4)
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right")
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set_title("engaged residents / the city's rate, by group and district")
    fig.colorbar(im, ax=ax, fraction=0.03)
    return save_figure(fig, path)


def build_sections(result: DemandResult, taxonomy: Taxonomy, plots: dict[str, str]) -> list[Section]:
    """The report's sections from a :class:`recsys.demand.job.DemandResult`."""
    t = result.tables
    s = result.summary
    trends, gaps, aud = t["trends"], t["gaps"], t["audiences"]
    sections = []
    advice = Section("建议", "Recommendations")
    if result.recommendations:
        n_gaps, n_under = int((gaps["gap"] & (gaps["level"] == "group")).sum()), int((aud["status"] == "under-served").sum())
        advice.p(
            f"本期：{n_under} 个人群覆盖不足，{n_gaps} 个人群 × 主题的需求超过新内容供给，{s['rising']} 项需求显著上升。"
            f" / This period: audiences left behind {n_under}; group x topic gaps between demand and new content {n_gaps}; "
            f"significant rises in demand {s['rising']}."
        )
        # one list per language: an editor reads one language straight down, not alternating halves of a line
        advice.bullets([zh for zh, _ in result.recommendations])
        advice.p("In English:")
        advice.bullets([en for _, en in result.recommendations])
    else:
        advice.p("本期未发现显著的需求变化、供需缺口或覆盖不足。/ No significant demand shift, gap or under-served audience this period.")
    sections.append(advice)

    over = Section("概况", "Overview")
    over.table(
        ["项目 item", "值 value"],
        [
            [
                "分析窗口 window",
                (
                    f"{s['start'][:10]} .. {_day_before(s['as_of'])} ({s['weeks']} weeks; recent {s['recent_weeks']} "
                    f"vs earlier {s['weeks'] - s['recent_weeks']})"
                ),
            ],
            ["曝光 impressions", f"{s['impressions']:,}"],
            ["检验单元 cells tested", f"{s['cells_tested']:,}"],
            ["上升/下降 rising/falling", f"{s['rising']} / {s['falling']}"],
            ["供需缺口 gaps", str(s["gaps"])],
            ["覆盖不足人群 under-served audiences", str(s["under_served"])],
            ["在架内容 live items", f"{s['live_items']:,}"],
        ],
    )
    sections.append(over)

    heat = Section("需求热力图", "Demand heat-map")
    heat.p("每个人群近期正向互动中各主题的占比。/ Each group's share of positive engagements per topic, recent weeks.")
    heat.image(plots["heatmap"], "topic x group heat-map")
    sections.append(heat)

    moving = trends[trends["direction"].isin(["rising", "falling"])]
    trend = Section("需求趋势", "Trends")
    trend.p(
        "比较近几周与之前几周每次曝光的互动率；人群的变化与全市其余人群同一主题的变化相比（双重差分），"
        "宣传日（及其后一天）不计入，q 为 Benjamini-Hochberg 校正后的显著性。/ Engagement rate per impression, recent weeks "
        "against the weeks before; a segment's change is measured against the rest of the city on the same topic, "
        "campaign days (and the day after) are left out, q is Benjamini-Hochberg corrected."
    )
    if moving.empty:
        # say how large a change this much data could have shown: "nothing moved" is not the same as "nothing seen"
        tested = trends[trends["direction"] != "not tested"]
        width = float(np.nanmedian((tested["ci_high"] - tested["ci_low"]) / 2)) if len(tested) else float("nan")
        trend.p(
            f"没有显著变化的主题；所检验的 {len(tested):,} 个单元的 95% 区间中位半宽为 ±{_share(width)}，"
            f"更小的变化在本数据量下无法识别。/ No topic changed significantly; the median 95% interval of the "
            f"{len(tested):,} cells tested spans ±{_share(width)}: smaller changes cannot be seen with this much data."
        )
    else:
        trend.image(plots["trends"], "top movers")
        rows = [
            [
                r["level"], _name(taxonomy, "group", r["group"]), _name(taxonomy, "region", r["region"]),
                _name(taxonomy, "sub_group", r["sub_group"]), _name(taxonomy, "topic", r["topic"]),
                _pct(r["change"]), f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]", _q(r["q"]), r["direction"],
            ]
            for _, r in moving.head(20).iterrows()
        ]
        trend.table(["层级 level", "人群 group", "地区 region", "细分 sub-group", "主题 topic", "变化 change", "95% CI", "q", "方向 direction"], rows)
    seasonal = sorted({(c.zh, c.en, ", ".join(c.topics)) for c in taxonomy.calendar})
    trend.p("日历（季节性，不算新需求）/ Calendar (seasonal, not new demand): " + "; ".join(f"{zh} {en} ({tp})" for zh, en, tp in seasonal))
    sections.append(trend)

    gap = Section("供需缺口", "Supply gaps")
    gap.p(
        "缺口比 = 需求占比 × 趋势 / 近期新内容占比；大于 1.5 且互动足够即列为缺口。/ gap ratio = demand share x trend / "
        "share of fresh items the segment may get; a gap at 1.5 or more with enough engagement."
    )
    found = gaps[gaps["gap"]]
    if found.empty:
        gap.p("没有供需缺口。/ No gap.")
    else:
        gap.image(plots["gaps"], "supply-gap bars")
        rows = [
            [
                str(r["rank"]), _name(taxonomy, "group", r["group"]), _name(taxonomy, "region", r["region"]),
                _name(taxonomy, "topic", r["topic"]), _share(r["demand_share"]), _pct(r["change"]) if r["direction"] == "rising" else "–",
                f"{r['fresh_items']:.0f}", _share(r["fresh_share"]), f"{r['gap_ratio']:.1f}",
            ]
            for _, r in found.head(15).iterrows()
        ]
        gap.table(["排名 rank", "人群 group", "地区 region", "主题 topic", "需求占比 demand", "上升 rising", "新内容 fresh", "新内容占比 fresh share", "缺口比 ratio"], rows)
    sections.append(gap)

    under = Section("覆盖不足的人群与地区", "Under-served audiences by district")
    under.image(plots["reach"], "engaged ratio by group and district")
    by_region = aud.groupby("region", sort=False)[["residents", "reached", "engaged"]].sum()
    city_reach = by_region["reached"].sum() / max(by_region["residents"].sum(), 1)
    city_eng = by_region["engaged"].sum() / max(by_region["residents"].sum(), 1)
    rows = []
    for region, r in by_region.iterrows():
        n = max(int(r["residents"]), 1)
        flagged = aud[(aud["region"] == region) & (aud["status"] == "under-served")]["group"].tolist()
        rows.append(
            [
                _name(taxonomy, "region", region), f"{int(r['residents']):,}", _share(r["reached"] / n), _share(r["engaged"] / n),
                f"{(r['engaged'] / n) / city_eng:.2f}" if city_eng else "–",
                ", ".join(taxonomy.zh("group", g) for g in flagged) or "–",
            ]
        )
    under.table(["地区 district", "居民 residents", "触达 reached", "互动 engaged", "互动/全市 vs city", "覆盖不足人群 under-served"], rows)
    under.p(f"全市 city: 触达 reached {city_reach:.0%}, 互动 engaged {city_eng:.0%}.")
    worst = aud[aud["status"] == "under-served"].head(10)
    if not worst.empty:
        under.table(
            ["排名 rank", "人群 group", "地区 region", "居民 residents", "触达 reached", "互动 engaged", "差距人数 left behind", "q"],
            [
                [str(r["rank"]), _name(taxonomy, "group", r["group"]), _name(taxonomy, "region", r["region"]), f"{r['residents']:,}",
                 _share(r["reach_rate"]), _share(r["engaged_rate"]), f"{r['left_behind']:.0f}", _q(r["q"])]
                for _, r in worst.iterrows()
            ],
        )
    sections.append(under)

    prio = Section("重点人群与重点内容", "Priorities for the push")
    if result.priorities.audiences:
        prio.p("写入 priorities.toml；recsys push --priorities priorities.toml 按权重提升这些主题。/ Written to priorities.toml; "
               "`recsys push --priorities priorities.toml` raises these topics for these audiences by their weight.")
        prio.table(
            ["人群 audience", "权重 weight", "主题 topics (weight)", "到期 expires"],
            [
                [
                    f"{_name(taxonomy, 'group', a.group)} / {_name(taxonomy, 'region', a.region)}", f"{a.weight:.2f}",
                    ", ".join(f"{taxonomy.zh('topic', x.topic)} {x.topic} ({x.weight:.2f})" for x in a.topics),
                    a.expires.tz_convert(taxonomy.tz).date().isoformat(),
                ]
                for a in result.priorities.audiences
            ],
        )
    else:
        prio.p("没有重点人群：priorities.toml 不含条目。/ No priority audience: priorities.toml lists none.")
    sections.append(prio)
    return sections


def write_report(result: DemandResult, out_dir: str | Path, taxonomy: Taxonomy) -> list[str]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png``; return the top-level names written."""
    out = Path(out_dir)
    folder = out / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    t, s = result.tables, result.summary
    movers = t["trends"][t["trends"]["direction"].isin(["rising", "falling"]) & t["trends"]["level"].isin(["group", "group_region"])].head(6)
    plots = {
        "heatmap": plot_heatmap(t["demand"], s["weeks"], s["recent_weeks"], folder / "heatmap.png"),
        "trends": plot_trends(t["demand"], movers, folder / "trends.png"),
        "gaps": plot_gaps(t["gaps"], folder / "gaps.png"),
        "reach": plot_reach(t["audiences"], folder / "reach.png"),
    }
    rel = {name: f"{PLOTS_DIR}/{path.name}" for name, path in plots.items()}
    sections = build_sections(result, taxonomy, rel)
    (out / "report.md").write_text(render_markdown(sections, TITLE), encoding="utf-8")
    (out / "report.html").write_text(render_html(sections, TITLE, root=out), encoding="utf-8")
    return ["report.md", "report.html", PLOTS_DIR]
