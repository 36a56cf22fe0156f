"""PNG plots of an evaluation (matplotlib, Agg backend), drawn from ``metrics.json``.

Labels use codes (a CJK font may be missing); the report's tables carry the
Chinese names.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # heavy: matplotlib (~1 s) loads only when a plot is drawn
    from matplotlib.figure import Figure

#: one colour per policy, stable across plots
COLOURS = {
    "random": "#bbbbbb",
    "popular": "#8c8c8c",
    "recent_popular": "#e3a857",
    "segment_popular": "#d9822b",
    "als": "#6a9fd4",
    "content": "#9b7fc1",
    "engine": "#c0392b",
    "oracle": "#2e8b57",
}


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the file-only Agg backend: the one plotting setup every report uses."""
    # heavy: matplotlib (~1 s) loads only when a report or a figure is drawn
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _colour(name: str) -> str:
    return COLOURS.get(name, "#444444")


def save_figure(fig: Figure, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as a PNG (the reports' resolution), close it; return ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def plot_metric_vs_k(metrics: dict[str, Any], path: Path) -> Path:
    """precision@k and NDCG@k against k, one line per policy."""
    plt = pyplot()
    ks = metrics["k"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("precision", "ndcg")):
        for name, pol in metrics["policies"].items():
            values = [pol["all"].get(f"{metric}@{k}") or 0.0 for k in ks]
            ax.plot(ks, values, marker="o", label=name, color=_colour(name), lw=2.5 if name == "engine" else 1.5)
        ax.set_xlabel("k")
        ax.set_ylabel(f"{metric}@k")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    fig.suptitle("metric vs k (all evaluated users)")
    return save_figure(fig, path)


def plot_population_bars(metrics: dict[str, Any], family: str, k: int, path: Path) -> Path:
    """Grouped bars of precision@k per population of ``family`` with 95% intervals."""
    plt = pyplot()
    policies = list(metrics["policies"])
    codes = sorted({c for p in metrics["policies"].values() for c in p.get(family, {})})
    key = f"precision@{k}"
    width = 0.8 / max(len(policies), 1)
    x = np.arange(len(codes))
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(codes) + 3), 4.5))
    for i, name in enumerate(policies):
        blocks = [metrics["policies"][name][family][c] for c in codes]
        values = np.array([b.get(key) or 0.0 for b in blocks])
        ci = np.array([b.get("ci95", {}).get(key, [None, None]) for b in blocks], dtype=object)
        lo = np.array([v - (c[0] if c[0] is not None else v) for v, c in zip(values, ci)])
        hi = np.array([(c[1] if c[1] is not None else v) - v for v, c in zip(values, ci)])
        ax.bar(x + (i - len(policies) / 2 + 0.5) * width, values, width, yerr=[lo, hi], capsize=2,
               label=name, color=_colour(name))
    users = [metrics["policies"][policies[0]][family][c]["users"] for c in codes]
    ax.set_xticks(x)
    ax.set_xticklabels([f"{c}\n(n={n})" for c, n in zip(codes, users)], fontsize=8)
    ax.set_ylabel(key)
    ax.set_title(f"{key} by {family.removeprefix('by_')} (95% bootstrap intervals)")
    ax.legend(fontsize=7, ncol=4)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_warm_cold(metrics: dict[str, Any], k: int, path: Path) -> Path:
    """precision@k for all, warm and cold users per policy, with intervals."""
    plt = pyplot()
    policies = list(metrics["policies"])
    key = f"precision@{k}"
    pops = ("all", "warm", "cold")
    x = np.arange(len(policies))
    fig, ax = plt.subplots(figsize=(10, 4))
    for j, pop in enumerate(pops):
        blocks = [metrics["policies"][p][pop] for p in policies]
        values = np.array([b.get(key) or 0.0 for b in blocks])
        ci = [b.get("ci95", {}).get(key, [None, None]) for b in blocks]
        err = np.array([[v - (c[0] if c[0] is not None else v) for v, c in zip(values, ci)],
                        [(c[1] if c[1] is not None else v) - v for v, c in zip(values, ci)]])
        ax.bar(x + (j - 1) * 0.27, values, 0.27, yerr=err, capsize=2, label=f"{pop} (n={blocks[0]['users']})",
               color=("#555555", "#c0392b", "#6a9fd4")[j])
    ax.set_xticks(x)
    ax.set_xticklabels(policies, fontsize=8, rotation=20)
    ax.set_ylabel(key)
    ax.set_title(f"{key}: warm vs cold users")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_simulated(metrics: dict[str, Any], path: Path) -> Path:
    """Simulated engagements per push per policy, the oracle as the upper bound."""
    plt = pyplot()
    names = list(metrics["policies"])
    values = [metrics["policies"][n]["simulated"]["engagements_per_push"] for n in names]
    k = metrics["policies"][names[0]]["simulated"]["k"]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(names, values, color=[_colour(n) for n in names])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(f"expected engagements per push (k={k})")
    ax.set_title("simulated push with the generator's true probabilities")
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def draw_plots(metrics: dict[str, Any], folder: str | Path) -> dict[str, Path]:
    """Draw every plot into ``folder``; return ``{name: path}``.

    The per-group and per-region bars are drawn only for a family with two or
    more codes.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    k = metrics.get("settings", {}).get("headline_k", 10)
    plots = {"metric_vs_k": plot_metric_vs_k(metrics, out / "metric_vs_k.png")}
    for family in ("by_group", "by_region"):
        codes = {c for p in metrics["policies"].values() for c in p.get(family, {})}
        if len(codes) > 1:  # one bar group would repeat the headline (a log without demographics)
            plots[family] = plot_population_bars(metrics, family, k, out / f"{family}.png")
    plots["warm_cold"] = plot_warm_cold(metrics, k, out / "warm_cold.png")
    if all("simulated" in p for p in metrics["policies"].values()):
        plots["simulated"] = plot_simulated(metrics, out / "simulated.png")
    return plots
