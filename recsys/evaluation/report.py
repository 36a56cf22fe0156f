"""The evaluation report: ``report.md`` and ``report.html`` with PNG plots.

Written for a reader who is not an engineer: how precise the push is, for
whom, compared with what. Headings are in Chinese and English; tables name
groups and regions by their Chinese display names from the taxonomy (with
the code). Plots use codes, since a CJK font may not be installed.
Everything is drawn from ``metrics.json`` alone. The first table is the
paired comparison (engine minus each baseline, per population); the HTML page
embeds its plots as data URIs, so the one file is the whole report.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.evaluation.plots import draw_plots
from recsys.exceptions import SchemaError
from recsys.taxonomy import Taxonomy

PLOTS_DIR = "plots"

POLICY_NAMES = {
    "random": ("随机", "random"),
    "popular": ("全时热门", "popular (all-time)"),
    "recent_popular": ("近期热门", "recent popular"),
    "segment_popular": ("人群×地区热门", "segment popular (group x region)"),
    "als": ("协同过滤(ALS)", "ALS (raw collaborative)"),
    "content": ("内容相似", "content only"),
    "engine": ("本引擎", "engine"),
    "oracle": ("理想上限(真值)", "oracle (ground truth)"),
}

DEFINITIONS = [
    "相关物品 Relevant items: items the user engaged with positively (click or stronger) in the test window, "
    "minus items the user engaged with positively in training (those are also excluded from the user's list).",
    "参评用户 Users averaged: listed users with at least one relevant item. Every user gets one top-k list at the "
    "split time T, judged against the whole test window (a push list, not a next-click prediction).",
    "precision@k = hits / k; recall@k = hits / number of relevant items; NDCG@k: binary gain, log2 discount, "
    "ideal DCG over min(k, relevant) hits; MAP@k = sum of precision at the hit ranks / min(k, relevant); "
    "hit rate@k = share of users with at least one hit; MRR@k = mean of 1 / rank of the first hit (0 if none).",
    "覆盖率 coverage@k: distinct items in the population's top-k lists / items pushable at T; "
    "多样性 diversity@k: mean pairwise Jaccard distance of the topics inside a list; "
    "新颖性 novelty@k: mean self-information -log2((n_i + 1) / (N + 1)) of the listed items (n_i = users who "
    "engaged with item i in training, N = users).",
    "区间 Intervals: 95% percentile bootstrap over users (seeded), the same resamples for every policy.",
    "配对比较 Paired comparisons: per user, the engine's value minus the baseline's; the mean of these differences "
    "with a 95% percentile bootstrap interval over users (seeded; each resample takes the same users for both "
    "policies, so what the two share cancels). An interval above 0 means the engine is ahead beyond resampling noise.",
    "新用户 Cold users: no positive engagement before T; 老用户 warm users: at least one.",
    "模拟推送 Simulated push (synthetic data only): each pushed slot counts the generator's true probability that "
    "the user engages; engagements per push = their sum / (users x k). The oracle lists the top-k eligible items "
    "by that probability, so it is the exact upper bound; its logged-data metrics are shown but are not a bound.",
]


@dataclass
class Section:
    """A report section: a bilingual heading and blocks (paragraphs, tables, images)."""

    zh: str
    en: str
    blocks: list[tuple] = field(default_factory=list)

    def p(self, text: str) -> "Section":
        self.blocks.append(("p", text))
        return self

    def table(self, header: list[str], rows: list[list[str]]) -> "Section":
        self.blocks.append(("table", header, rows))
        return self

    def image(self, path: str, alt: str) -> "Section":
        self.blocks.append(("img", path, alt))
        return self

    def bullets(self, items: list[str]) -> "Section":
        self.blocks.append(("ul", items))
        return self


def policy_label(name: str) -> str:
    """``中文 (english)`` label of a policy."""
    zh, en = POLICY_NAMES.get(name, (name, name))
    return f"{zh} {en}"


def _fmt(x: Any, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def _ci(block: dict, key: str) -> str:
    lo, hi = block.get("ci95", {}).get(key, [None, None])
    return "–" if lo is None else f"[{lo:.3f}, {hi:.3f}]"


def headline_rows(metrics: dict[str, Any], k: int) -> tuple[list[str], list[list[str]]]:
    """The headline table: one row per policy at ``k`` (overall population)."""
    synthetic = any("simulated" in p for p in metrics["policies"].values())
    header = ["策略 Policy", f"precision@{k}", "95% CI", f"NDCG@{k}", f"recall@{k}", f"hit rate@{k}"]
    if synthetic:
        header += ["模拟参与/推送 engagements per push", "占上限 share of oracle"]
    oracle = metrics["policies"].get("oracle", {}).get("simulated", {}).get("engagements_per_push")
    rows = []
    for name, pol in metrics["policies"].items():
        a = pol["all"]
        row = [
            policy_label(name),
            _fmt(a.get(f"precision@{k}")),
            _ci(a, f"precision@{k}"),
            _fmt(a.get(f"ndcg@{k}")),
            _fmt(a.get(f"recall@{k}")),
            _fmt(a.get(f"hit_rate@{k}")),
        ]
        if synthetic:
            sim = pol.get("simulated", {}).get("engagements_per_push")
            row += [_fmt(sim), _fmt(sim / oracle, 3) if sim is not None and oracle else "–"]
        rows.append(row)
    return header, rows


#: the metrics of the paired tables, in report order (the first is the report's first table)
PAIRED_TABLE_METRICS = (("ndcg", "NDCG"), ("precision", "P"), ("recall", "R"))
_FAMILY_NAMES = {"by_group": "group", "by_region": "region", "by_urban_rural": None}


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def paired_cell(entry: dict[str, Any] | None) -> str:
    """``+0.0123 [+0.0040, +0.0210] ▲``: ▲ interval above 0 (engine ahead), ▼ below, ≈ contains 0."""
    if not entry or entry.get("diff") is None:
        return "–"
    lo, hi = entry.get("ci95", [None, None])
    if lo is None or hi is None:
        return _signed(entry["diff"])
    mark = "▲" if lo > 0 else "▼" if hi < 0 else "≈"
    return f"{_signed(entry['diff'])} [{_signed(lo)}, {_signed(hi)}] {mark}"


def paired_populations(paired: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """Populations of the paired tables: all, warm, cold, then each code of a family with several codes.

    A family with one code (one group, one region) is the whole population again and is left out.
    """
    first = next(iter(paired["vs"].values()))
    out = [(("all",), "全部 all"), (("warm",), "老用户 warm"), (("cold",), "新用户 cold")]
    for family in ("by_group", "by_region", "by_urban_rural"):
        codes = sorted(first.get(family, {}))
        if len(codes) > 1:
            out += [((family, c), c) for c in codes]
    return out


def paired_rows(metrics: dict[str, Any], metric: str, k: int, taxonomy: Taxonomy | None = None) -> tuple[list[str], list[list[str]]]:
    """The paired table of one metric: rows = baselines, columns = engine minus it per population."""
    paired = metrics["paired"]
    key = f"{metric}@{k}"
    pops = paired_populations(paired)
    first = next(iter(paired["vs"].values()))
    header = ["本引擎减去 engine minus"]
    for path, label in pops:
        node = first
        for part in path:
            node = node.get(part, {})
        if len(path) == 2 and taxonomy is not None and _FAMILY_NAMES[path[0]]:
            label = f"{taxonomy.zh(_FAMILY_NAMES[path[0]], path[1])} {path[1]}"
        header.append(f"{label} (n={node.get('users', 0)})")
    rows = []
    for name, block in paired["vs"].items():
        row = [policy_label(name)]
        for path, _ in pops:
            node = block
            for part in path:
                node = node.get(part, {})
            row.append(paired_cell(node.get(key)))
        rows.append(row)
    return header, rows


def paired_verdicts(metrics: dict[str, Any], k: int) -> list[str]:
    """One line per population (all, warm, cold): baselines the engine is ahead of / behind on NDCG@k."""
    paired = metrics["paired"]
    key = f"ndcg@{k}"
    lines = []
    for path, label in paired_populations(paired)[:3]:
        ahead, behind = [], []
        for name, block in paired["vs"].items():
            entry = block.get(path[0], {}).get(key) or {}
            lo, hi = entry.get("ci95", [None, None])
            if lo is not None and lo > 0:
                ahead.append(name)
            elif hi is not None and hi < 0:
                behind.append(name)
        total = len(paired["vs"])
        text = f"{label}: NDCG@{k} 显著领先 ahead of {len(ahead)}/{total} baselines"
        if behind:
            text += f"; 显著落后 behind {', '.join(behind)}"
        undecided = total - len(ahead) - len(behind)
        if undecided:
            text += f"; {undecided} 无显著差异 within noise"
        lines.append(text)
    return lines


def family_codes(metrics: dict[str, Any], family: str) -> list[str]:
    """The codes of a population family (``by_group``, ...) present in ``metrics``, sorted."""
    return sorted({c for p in metrics["policies"].values() for c in p.get(family, {})})


def _population_table(metrics: dict, family: str, kind: str, taxonomy: Taxonomy, k: int) -> tuple[list[str], list[list[str]]]:
    policies = list(metrics["policies"])
    codes = sorted({c for p in metrics["policies"].values() for c in p.get(family, {})})
    key = f"precision@{k}"
    header = ["人群 Population", "用户 users", "最佳策略 best policy (oracle aside)"]
    header += [f"{policy_label(p)} P@{k} / NDCG@{k}" for p in policies]
    rows = []
    for code in codes:
        first = metrics["policies"][policies[0]][family][code]
        name = taxonomy.zh(kind, code) if kind else {"urban": "城镇", "rural": "农村"}.get(code, code)
        blocks = {p: metrics["policies"][p][family][code] for p in policies}
        rivals = {p: b.get(key) or 0.0 for p, b in blocks.items() if p != "oracle"}
        best = max(rivals, key=rivals.get) if rivals else "–"
        row = [f"{name} {code}", str(first["users"]), policy_label(best) if rivals else "–"]
        for p, b in blocks.items():
            row.append(f"{_fmt(b.get(key), 3)} {_ci(b, key)} / {_fmt(b.get(f'ndcg@{k}'), 3)}")
        rows.append(row)
    return header, rows


def _beyond_rows(metrics: dict, k: int) -> tuple[list[str], list[list[str]]]:
    header = ["策略 Policy", f"覆盖率 coverage@{k}", f"多样性 diversity@{k}", f"新颖性 novelty@{k}", f"MAP@{k}", f"MRR@{k}"]
    rows = []
    for name, pol in metrics["policies"].items():
        a = pol["all"]
        rows.append(
            [policy_label(name)]
            + [_fmt(a.get(f"{m}@{k}"), 3) for m in ("coverage", "diversity", "novelty", "map", "mrr")]
        )
    return header, rows


def _exposure_rows(metrics: dict, taxonomy: Taxonomy) -> tuple[list[str], list[list[str]]]:
    header = ["策略 Policy", "面向地区的内容占比 share of slots by target region", "面向人群的内容占比 share by target group"]
    rows = []
    for name, pol in metrics["policies"].items():
        exp = pol.get("exposure", {})

        def text(shares: dict, kind: str) -> str:
            return ", ".join(
                f"{'全体 everyone' if c == '*' else taxonomy.zh(kind, c) + ' ' + c} {v:.1%}" for c, v in shares.items()
            )

        rows.append([policy_label(name), text(exp.get("by_target_region", {}), "region"), text(exp.get("by_target_group", {}), "group")])
    return header, rows


def target_checks(metrics: dict[str, Any], k: int, min_users: int = 100) -> list[str]:
    """Lines saying where the engine beats every baseline (precision@k and NDCG@k).

    Populations: all, warm, cold, and every group and region with at least
    ``min_users`` evaluated users; plus the simulated-push ratios when present.
    """
    policies = metrics["policies"]
    if "engine" not in policies:
        return []
    rivals = [p for p in policies if p not in ("engine", "oracle")]
    paths = [("all",), ("warm",), ("cold",)]
    for family in ("by_group", "by_region"):
        blocks = policies["engine"].get(family, {})
        if len(blocks) < 2:
            continue  # one group (or region) is the whole population again: no second line for it
        paths += [(family, c) for c, b in blocks.items() if b["users"] >= min_users]
    lines = []
    for path in paths:
        def block(p: str) -> dict:
            node = policies[p]
            for part in path:
                node = node[part]
            return node

        eng = block("engine")
        if not eng["users"] or not rivals:
            continue
        losses = [
            f"{r} {m}"
            for r in rivals
            for m in (f"precision@{k}", f"ndcg@{k}")
            if (block(r).get(m) or 0.0) >= (eng.get(m) or 0.0)
        ]
        name = "/".join(path)
        verdict = "✓ 全部胜出 beats every baseline" if not losses else "✗ 未胜出 not ahead of: " + ", ".join(losses)
        lines.append(f"{name} (n={eng['users']}): {verdict}")
    if metrics.get("oracle_ratio") is not None:
        ratio = metrics["oracle_ratio"]
        lines.append(f"simulated / oracle = {ratio:.3f} ({'✓' if ratio >= 0.8 else '✗'} target ≥ 0.8)")
    if metrics.get("segment_popular_ratio") is not None:
        ratio = metrics["segment_popular_ratio"]
        lines.append(f"simulated / segment_popular = {ratio:.2f}x ({'✓' if ratio >= 1.5 else '✗'} target ≥ 1.5x)")
    return lines


def build_sections(metrics: dict[str, Any], taxonomy: Taxonomy, plots: dict[str, str]) -> list[Section]:
    """Assemble the report's sections from ``metrics.json`` and the plot files."""
    k = metrics.get("settings", {}).get("headline_k", 10)
    split = metrics.get("split", {})
    users = split.get("users", {})
    out = []

    overview = Section("概览", "Overview")
    overview.p(
        f"划分 Split: {split.get('mode', '?')} at T = {split.get('time', '?')}; "
        f"训练事件 train events {_count(split.get('train_events'))}, 测试事件 test events {_count(split.get('test_events'))}. "
        f"参评用户 evaluated users {_count(users.get('all'))} (老用户 warm {_count(users.get('warm'))}, "
        f"新用户 cold {_count(users.get('cold'))}) of {_count(users.get('listed'))} listed."
    )
    if "oracle_ratio" in metrics and metrics["oracle_ratio"] is not None:
        overview.p(
            f"本引擎的模拟参与量为理想上限的 {metrics['oracle_ratio']:.1%} — the engine's simulated engagements per push "
            f"are {metrics['oracle_ratio']:.3f} of the oracle's"
            + (
                f", {metrics['segment_popular_ratio']:.2f}x the segment-popular baseline."
                if metrics.get("segment_popular_ratio")
                else "."
            )
        )
    checks = target_checks(metrics, k)
    if checks:
        overview.p(f"目标检查 Targets (precision@{k} and NDCG@{k}; groups and regions with 100+ users):").bullets(checks)
    out.append(overview)

    if metrics.get("paired", {}).get("vs"):
        paired = Section("本引擎对比各基线", f"Engine minus each baseline (paired, k = {k})")
        paired.p(
            "每格 Each cell: the engine's mean minus the baseline's over the same users, and its 95% paired bootstrap "
            "interval (the same resampled users for both). ▲ = interval above 0 (engine ahead), ▼ = below 0 "
            "(engine behind), ≈ = contains 0."
        )
        for metric, short in PAIRED_TABLE_METRICS:
            if f"{metric}@{k}" in metrics["paired"].get("metrics", []):
                paired.p(f"{short}@{k}:").table(*paired_rows(metrics, metric, k, taxonomy))
        paired.bullets(paired_verdicts(metrics, k))
        out.append(paired)

    head = Section("核心结果", f"Headline (k = {k}, all users)")
    head.table(*headline_rows(metrics, k))
    if "metric_vs_k" in plots:
        head.image(plots["metric_vs_k"], "precision and NDCG vs k per policy")
    out.append(head)
    if "tuning" in metrics:
        out.append(_tuning_section(metrics["tuning"]))

    single: list[str] = []
    for family, kind, zh, en, plot in (
        ("by_group", "group", "按人群", "By audience group", "by_group"),
        ("by_region", "region", "按地区", "By region", "by_region"),
        ("by_urban_rural", None, "城乡对比", "Urban vs rural", None),
    ):
        codes = family_codes(metrics, family)
        if len(codes) < 2:
            # one group (or region) is the whole population: its table would repeat the headline
            single.append(f"{en.removeprefix('By ').lower()}: {', '.join(codes) or 'none'}")
            continue
        sec = Section(zh, en)
        sec.p(f"precision@{k} [95% CI] / NDCG@{k} per population.")
        sec.table(*_population_table(metrics, family, kind, taxonomy, k))
        if plot and plot in plots:
            sec.image(plots[plot], f"precision@{k} per {kind} with 95% intervals")
        out.append(sec)

    if single:
        overview.p(
            "仅一类 A single code only (" + "; ".join(single) + "): those per-population tables equal the "
            "headline and are left out (metrics.json keeps them)."
        )

    wc = Section("新老用户", "Warm vs cold users")
    header = ["策略 Policy", "老用户 warm users", f"warm P@{k}", f"warm NDCG@{k}", "新用户 cold users", f"cold P@{k}", f"cold NDCG@{k}"]
    rows = []
    for name, pol in metrics["policies"].items():
        w, c = pol["warm"], pol["cold"]
        rows.append(
            [policy_label(name), str(w["users"]), _fmt(w.get(f"precision@{k}")), _fmt(w.get(f"ndcg@{k}")),
             str(c["users"]), _fmt(c.get(f"precision@{k}")), _fmt(c.get(f"ndcg@{k}"))]
        )
    wc.table(header, rows)
    if "warm_cold" in plots:
        wc.image(plots["warm_cold"], f"precision@{k} for all, warm and cold users")
    fb = [
        f"{policy_label(n)}: {p['fallback']['users']:,} users ({p['fallback']['evaluated_users']:,} evaluated)"
        for n, p in metrics["policies"].items()
        if p.get("fallback", {}).get("users")
    ]
    if fb:
        wc.p(
            "回退说明 Fallback: these baselines cannot score a cold user; such users got the "
            "人群×地区热门 segment_popular list instead:"
        ).bullets(fb)
    out.append(wc)

    beyond = Section("覆盖率、多样性与新颖性", "Coverage, diversity and novelty")
    beyond.table(*_beyond_rows(metrics, k))
    out.append(beyond)

    exposure = Section("曝光分布", f"Exposure shares (top-{k} slots)")
    exposure.table(*_exposure_rows(metrics, taxonomy))
    out.append(exposure)

    if any("simulated" in p for p in metrics["policies"].values()):
        sim = Section("模拟推送", "Simulated push (ground truth)")
        ks = metrics["k"]
        header = ["策略 Policy"] + [f"engagements per push @{kk}" for kk in ks]
        rows = [
            [policy_label(n)] + [_fmt(p["simulated"].get(f"engagements_per_push@{kk}")) for kk in ks]
            for n, p in metrics["policies"].items()
        ]
        sim.table(header, rows)
        if "simulated" in plots:
            sim.image(plots["simulated"], "simulated engagements per push")
        out.append(sim)
    if metrics.get("coverage"):
        out.append(_coverage_section(metrics["coverage"]))
    if metrics.get("broadcast"):
        out.append(_broadcast_section(metrics["broadcast"], taxonomy))

    defs = Section("指标定义", "Definitions")
    defs.bullets(DEFINITIONS)
    out.append(defs)
    return out


def _coverage_section(cov: dict[str, Any]) -> Section:
    """Coverage rules met on the engine's lists, and the simulated engagements they cost."""
    sec = Section("重点人群保障", f"Coverage rules and what they cost (ground truth, k = {cov.get('k', '?')})")
    sec.p(
        "本引擎名单在满足重点人群保障规则前后的模拟参与量，以及每条规则的代价。 "
        f"The engine's lists of {_count(cov['users'])} users, before and after the push's coverage swaps "
        f"(recsys.push.coverage; one round of lists, no push history): simulated engagements "
        f"{_fmt(cov['engagements_without'], 2)} → {_fmt(cov['engagements_with'], 2)}, "
        f"a loss of {cov['loss_share']:.2%} (target ≤ 5%). Each rule's cost is what it adds to the rules above it."
    )
    # what each rule asks, in words, before the figures (a left-aligned list reads better than a wide cell)
    sec.bullets([f"{name}: {r['asks']}" for name, r in cov["rules"].items() if r.get("asks")])
    header = ["规则 Rule", "成员 members", "需达到 required",
              "达到(前→后) reached before → after", "缺口 shortfall", "替换 items swapped",
              "模拟参与损失 engagements lost", "损失占比 loss share"]
    rows = [
        [name, _count(r["users"]), _count(r["required"]),
         f"{_count(r['reached_before'])} → {_count(r['reached'])}", _count(r["shortfall"]),
         _count(r["items_added"]), _fmt(r["engagements_lost"], 2), f"{r['loss_share']:.2%}"]
        for name, r in cov["rules"].items()
    ]
    return sec.table(header, rows)


#: the broadcast section's policy names (the engine, then the playlists it is compared with)
_BROADCAST_POLICIES = (
    ("engine", "本引擎 engine"),
    ("region_popular", "区县热门 region popular"),
    ("city_popular", "全市热门 city popular"),
)


def _broadcast_rows(records: list[dict[str, Any]], key: str | None, names: dict[str, str]) -> list[list[str]]:
    rows = []
    for r in records:
        label = names.get(r[key], r[key]) if key else "全部 all"
        ratio = lambda base: "—" if r.get(f"vs_{base}") is None else f"{r[f'vs_{base}']:.2f}×"  # noqa: E731
        rows.append(
            [label, _count(r["places"])]
            + [_fmt(r[p], 2) for p, _ in _BROADCAST_POLICIES]
            + [ratio("region_popular"), ratio("city_popular")]
        )
    return rows


def _broadcast_section(bc: dict[str, Any], taxonomy: Taxonomy) -> Section:
    """Broadcast programmes scored on the truth against popularity playlists, per channel and district."""
    sec = Section("广播电视与多媒体视窗节目单", f"Broadcast programmes for {bc['day']} (ground truth)")
    total = bc["total"]
    sec.p(
        "每个播放点的节目单（本引擎）与同样时段、同样资格规则下的区县热门和全市热门播放单，按真值模拟受众参与量比较。 "
        f"Each of {_count(bc['places'])} places (TV, radio, cinema pre-show, kiosk) gets the day's programme of "
        "recsys broadcast and, under the same eligibility rules and slots, a playlist of the most engaged items "
        "of its district or of the city. Simulated engagement: the true probability that a member of the "
        "place's audience engages with each item shown, averaged over the residents of each audience segment, "
        f"mixed by the audience shares and summed over the day. Engine vs region popular: "
        f"{total['vs_region_popular']:.2f}× (target ≥ 1.3×); vs city popular: {total['vs_city_popular']:.2f}×. "
        "Slots filled: " + ", ".join(f"{label} {bc['fill_share'][p]:.1%}" for p, label in _BROADCAST_POLICIES) + "."
    )
    header = ["", "地点 places"] + [label for _, label in _BROADCAST_POLICIES] + [
        "÷ 区县热门 vs region", "÷ 全市热门 vs city"
    ]
    channels = {c: f"{taxonomy.zh('channel', c)} {c}" for c in taxonomy.channels}
    regions = {r: f"{taxonomy.zh('region', r)} {r}" for r in taxonomy.regions}
    sec.table(["总计 Total"] + header[1:], _broadcast_rows([total], None, {}))
    sec.table(["渠道 Channel"] + header[1:], _broadcast_rows(bc["by_channel"], "channel", channels))
    sec.table(["区县 District"] + header[1:], _broadcast_rows(bc["by_region"], "region", regions))
    return sec


def _tuning_section(tuning: dict[str, Any]) -> Section:
    """The chosen configuration and the validation scores of the engine beside every baseline."""
    sec = Section("调参", "Tuning: selected on validation, then refit")
    v = tuning["validation"]
    best = tuning["best"]
    metric = v.get("metric", "ndcg@10")
    refit = tuning.get("refit")
    sec.p(
        f"验证窗口 Validation window carved from the training events only: {v['start']} .. {v['end']} "
        f"({v['validation_events']:,} events, {v['users']:,} users; models trained on the {v['train_events']:,} "
        f"events before it). {tuning['trials']} trials; chosen: trial {best.get('trial')}, "
        f"{metric} = {best.get(metric, 0):.4f}."
        + (
            f" 重新训练 Refit: the evaluated model was then trained with the chosen configuration on all "
            f"{refit['train_events']:,} training events (before {refit['before']}); the test window was read "
            "once, for this report."
            if refit
            else ""
        )
        + " All trials: tuning_trials.csv; chosen config: tuned_config.toml."
    )
    scores = tuning.get("validation_scores")
    if scores:
        keys = list(next(iter(scores.values())))
        header = ["策略 Policy (validation window)"] + keys
        ordered = sorted(scores.items(), key=lambda kv: -(kv[1].get(metric) or 0.0))
        rows = [
            [policy_label(name) + (" (chosen)" if name == "engine" else "")] + [_fmt(vals.get(k)) for k in keys]
            for name, vals in ordered
        ]
        sec.p(f"选择依据 Selected against the baselines: validation scores on the same users (sorted by {metric}).")
        sec.table(header, rows)
    if tuning.get("chosen"):
        sec.p("所选配置 Chosen configuration:").bullets([f"{k} = {val}" for k, val in tuning["chosen"].items()])
    return sec


# ---- rendering -------------------------------------------------------------------


def render_markdown(sections: list[Section], title: str) -> str:
    """Render the sections as Markdown."""
    lines = [f"# {title}", ""]
    for sec in sections:
        lines += [f"## {sec.zh} / {sec.en}", ""]
        for block in sec.blocks:
            if block[0] == "p":
                lines += [block[1], ""]
            elif block[0] == "ul":
                lines += [f"- {item}" for item in block[1]] + [""]
            elif block[0] == "img":
                lines += [f"![{block[2]}]({block[1]})", ""]
            else:
                _, header, rows = block
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(row) + " |" for row in rows]
                lines.append("")
    return "\n".join(lines)


_CSS = """
body { font-family: "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f4f8; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
h2 { border-bottom: 2px solid #3a6ea5; padding-bottom: 4px; }
"""


def data_uri(path: str | Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI (so a mailed page keeps its plots).

    Raises
    ------
    SchemaError
        If the file is missing or not a PNG (naming it).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SchemaError(f"{p}: report image unreadable ({exc.strerror or exc})") from None
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        raise SchemaError(f"{p}: report image is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def render_html(sections: list[Section], title: str, root: str | Path | None = None) -> str:
    """Render the sections as one self-contained HTML page.

    With ``root``, every image (a path relative to it) is embedded as a data
    URI, so the single file shows its plots wherever it is mailed or copied;
    without it the images are linked by their paths.
    """
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    for sec in sections:
        parts.append(f"<h2>{e(sec.zh)} / {e(sec.en)}</h2>")
        for block in sec.blocks:
            if block[0] == "p":
                parts.append(f"<p>{e(block[1])}</p>")
            elif block[0] == "ul":
                parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in block[1]) + "</ul>")
            elif block[0] == "img":
                src = data_uri(Path(root) / block[1]) if root is not None else block[1]
                parts.append(f'<img src="{e(src)}" alt="{e(block[2])}">')
            else:
                _, header, rows = block
                parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
                parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
                parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


#: the report's title (``report.md``'s first line; how evaluate recognises a folder it wrote before the marker)
REPORT_TITLE = "科普精准推送离线评估报告 / Offline evaluation of the science push"
#: the report's two files in the evaluation folder (beside :data:`PLOTS_DIR`)
REPORT_MD, REPORT_HTML = "report.md", "report.html"


def write_report(metrics: dict[str, Any], out_dir: str | Path, taxonomy: Taxonomy) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``out_dir``.

    Returns
    -------
    dict
        ``{"md", "html", <plot name>...}`` -> path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = draw_plots(metrics, out / PLOTS_DIR)
    rel = {name: f"{PLOTS_DIR}/{path.name}" for name, path in plots.items()}
    sections = build_sections(metrics, taxonomy, rel)
    title = REPORT_TITLE
    md = out / REPORT_MD
    md.write_text(render_markdown(sections, title), encoding="utf-8")
    page = out / REPORT_HTML
    # images embedded: the page alone is the whole report; the PNGs stay beside it for reuse
    page.write_text(render_html(sections, title, root=out), encoding="utf-8")
    return {"md": md, "html": page, **plots}
