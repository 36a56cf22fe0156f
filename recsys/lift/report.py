"""The short bilingual lift report (``report.md`` and a self-contained ``report.html``).

Written for the programme's editors: did the push make people engage more
than the holdout, for whom, on which channel; and how often a pushed item was
taken up, by channel and rank. Groups, regions and channels carry their
Chinese display names from the taxonomy beside the code. Rendering reuses the
evaluation report's sections, so both reports look alike.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from recsys.evaluation.report import Section, render_html, render_markdown
from recsys.taxonomy import Taxonomy

TITLE = "科普推送效果(对照组提升)报告 / Push lift over the holdout"
OUTCOME_NAMES = {
    "engaged_items": ("人均互动内容数", "items engaged per user"),
    "engaged_pushed_items": ("人均互动当晚推送内容数", "pushed items engaged per user"),
    "any_engagement": ("有互动的用户占比", "share of users engaging"),
}
DIMENSION_NAMES = {"group": ("人群", "group"), "region": ("地区", "region"), "channel": ("渠道", "channel")}


def _num(x: Any, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _interval(low: Any, high: Any) -> str:
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return "too few users / 人数不足"
    return f"[{_num(low)}, {_num(high)}]"


def _label(dimension: str, value: str, taxonomy: Taxonomy) -> str:
    names = {"group": taxonomy.groups, "region": taxonomy.regions, "channel": taxonomy.channels}.get(dimension, {})
    code = names.get(value)
    return f"{code.zh} ({value})" if code is not None else value


def _rows(frame: pd.DataFrame, taxonomy: Taxonomy, first: str) -> list[list[str]]:
    out = []
    for r in frame.itertuples(index=False):
        rel = "–" if math.isnan(r.relative_lift) else f"{r.relative_lift:+.0%}"
        out.append(
            [
                first if first else _label(r.dimension, r.value, taxonomy),
                f"{r.treated_users:,}",
                f"{r.holdout_users:,}",
                _num(r.treated_mean),
                _num(r.holdout_mean),
                f"{r.lift:+.3f}" if not math.isnan(r.lift) else "–",
                _interval(r.lift_low, r.lift_high),
                rel,
            ]
        )
    return out


HEADER = [
    "",
    "推送组用户 pushed",
    "对照组用户 holdout",
    "推送组均值",
    "对照组均值",
    "提升 lift",
    "95% 区间 interval",
    "相对 relative",
]


def build_sections(lift: pd.DataFrame, ctr: pd.DataFrame, summary: dict[str, Any], taxonomy: Taxonomy) -> list[Section]:
    """The report's sections, from the lift and click-through tables and the summary."""
    span = (
        summary["date_from"]
        if summary["date_from"] == summary["date_to"]
        else f"{summary['date_from']} .. {summary['date_to']}"
    )
    head = Section("结论", "Headline")
    overall = lift[lift["dimension"] == "all"]
    for r in overall.itertuples(index=False):
        zh, en = OUTCOME_NAMES[r.outcome]
        verdict = (
            (
                "显著高于对照组 significantly above the holdout"
                if r.lift_low > 0
                else "显著低于对照组 significantly below the holdout"
                if r.lift_high < 0
                else "与对照组无显著差别 not distinguishable from the holdout"
            )
            if not math.isnan(r.lift_low)
            else "人数不足 too few users to tell"
        )
        head.p(
            f"{zh} / {en}: {_num(r.treated_mean)} vs {_num(r.holdout_mean)}, lift {r.lift:+.3f} "
            f"{_interval(r.lift_low, r.lift_high)} — {verdict}."
        )
    head.p(
        f"推送日期 Nights: {span}; 观察窗口 window: {summary['days']} 天 local days from each night. "
        f"推送组为当晚可推送且未被留出的全部用户(意向处理),对照组为同晚被留出的可推送用户。"
        f" The pushed arm is every user the night's push could reach and did not hold out (intent to treat);"
        f" the holdout is the held-out users it could have reached."
    )
    if summary.get("skipped_nights"):
        head.p(
            f"当晚无推送、未计入的日期 Nights left out (no nightly push): {', '.join(summary['skipped_nights'])}."
        )
    sections = [head]
    for outcome in ("engaged_items", "engaged_pushed_items"):
        zh, en = OUTCOME_NAMES[outcome]
        for dimension in ("group", "region", "channel"):
            part = lift[(lift["dimension"] == dimension) & (lift["outcome"] == outcome)]
            if not len(part):
                continue
            dzh, den = DIMENSION_NAMES[dimension]
            sec = Section(f"按{dzh}:{zh}", f"By {den}: {en}")
            if dimension == "channel":
                sec.p(
                    "渠道行只计该渠道订阅用户在该渠道上的互动。 A channel's row counts its subscribers and only their engagements on that channel."
                )
            sec.table(HEADER, _rows(part, taxonomy, ""))
            sections.append(sec)
    if len(ctr):
        sec = Section("推送点击率(按渠道与位次)", "Click-through of the push rows by channel and rank")
        sec.p(
            "一条推送在窗口内被其用户正向互动即计为点击;位次 0 为全部位次。 A row counts when its user engaged with its item within the window; rank 0 is all ranks."
        )
        rows = [
            [
                _label("channel", r.channel, taxonomy),
                "all" if r.rank == 0 else str(r.rank),
                f"{r.rows:,}",
                f"{r.engaged_rows:,}",
                _num(r.ctr),
                _interval(r.ctr_low, r.ctr_high),
            ]
            for r in ctr.itertuples(index=False)
        ]
        sec.table(
            ["渠道 channel", "位次 rank", "推送条数 rows", "互动条数 engaged", "点击率 CTR", "95% 区间 interval"], rows
        )
        sections.append(sec)
    notes = Section("说明", "Notes")
    items = [
        f"{n['date']}: pushed arm {n['treated_users']:,} users ({n['pushed_users']:,} got a list), holdout {n['holdout_users']:,}; "
        f"the push counted {n['push_counted']['computed']} and {n['push_counted']['holdout']}."
        for n in summary["nights"]
    ]
    items.append(
        f"Intervals are normal 95% intervals of a difference of means{' clustered by user across nights' if len(summary['nights']) > 1 else ''}; "
        f"cells with fewer than {summary['min_users']} users in an arm have none. Each row's interval holds on its own, "
        "not for all rows at once: among many rows a few will miss by chance."
    )
    items.append(f"Users from {summary['users_source']}.")
    items += [f"warning: {w}" for w in summary.get("warnings", [])]
    notes.bullets(items)
    sections.append(notes)
    return sections


def render(lift: pd.DataFrame, ctr: pd.DataFrame, summary: dict[str, Any], taxonomy: Taxonomy) -> tuple[str, str]:
    """Return the report as (Markdown, HTML)."""
    sections = build_sections(lift, ctr, summary, taxonomy)
    return render_markdown(sections, TITLE), render_html(sections, TITLE)


def headline(lift: pd.DataFrame) -> list[str]:
    """Console lines: the overall lift per outcome."""
    lines = []
    for r in lift[lift["dimension"] == "all"].itertuples(index=False):
        lines.append(
            f"  {r.outcome:<22} pushed {_num(r.treated_mean)}  holdout {_num(r.holdout_mean)}  "
            f"lift {r.lift:+.3f} {_interval(r.lift_low, r.lift_high)}"
        )
    return lines
