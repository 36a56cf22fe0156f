"""The monitor's tests: negative feedback, spread spikes and silence, as conditional count tests.

Every test compares the events of a window with those of a baseline. Given
``x`` events in the window (exposure ``n``) and ``x_b`` in the baseline
(exposure ``n_b``), under "nothing changed" the window's share of the
``x + x_b`` events is Binomial(x + x_b, n / (n + n_b)) -- the conditional test
of two Poisson rates. Unlike a Poisson test against a rate estimated from
the baseline it carries the baseline's own uncertainty, so a thin history
cannot make a small count look surprising (on a quiet synthetic stream the
Poisson version called low-traffic items silent or spiking). Baselines are
shrunk by ``prior_events`` pseudo-events: an item's towards its topic's rate,
a topic's towards the city's.

* **negative feedback** (per item, for dismiss and report): exposure =
  impressions (at least one per negative event: negatives logged without
  their impressions still count). p is the larger of the test against the
  item's own baseline and against its topic's: an alarm must stand out from
  both. Effect: observed >= ``min_ratio`` x expected.
* **spread spike** (per item and per topic): events = clicks, exposure =
  all clicks of the window / baseline (a share test, one pseudo-click each);
  the click rate per impression must also reach ``spike_rate_ratio`` x its
  baseline -- more exposure alone is the push working, not the content
  spreading. Effect: share >= ``spike_ratio`` x baseline share.
* **silence** (per approved item with ``silence_min_impressions`` in the
  window): clicks significantly *below* both the item's and its topic's
  baseline click rate (lower tail), at most ``silence_ratio`` x expected.

A test runs only where the observed count is at least ``min_events`` (or,
for silence, the impressions are enough): no alarm on a handful of events.
The p-values of one run are Bonferroni-corrected over every test the run
made (items x event kinds x windows), so the chance that a run raises any
false alarm is at most ``alpha`` (measured on quiet synthetic streams:
benchmarks/bench_monitor.py).

The baseline is the ``baseline_days`` UTC days before the day the longest
window starts in (that day is left out so that the windows never test
against themselves). Before there is enough baseline (fewer than
``min_impressions`` impressions city-wide) the longest window, city-wide,
is the baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from recsys.config import MonitorConfig
from recsys.monitor.counters import (
    K_CLICK,
    K_DISMISS,
    K_IMP,
    K_REPORT,
    K_SHARE,
    KINDS,
    Counters,
)

NEGATIVE = {"dismiss": K_DISMISS, "report": K_REPORT}
#: alert kinds
NEGATIVE_FEEDBACK, SPREAD_SPIKE, SILENCE = (
    "negative_feedback",
    "spread_spike",
    "silence",
)


@dataclass
class Subjects:
    """What the tests know about the counted items.

    Attributes
    ----------
    topic : ndarray int64, shape (n_items,)
        Primary topic index of each counted item; -1 when unknown (no
        catalogue, or the item is not in it).
    topic_names : list of str
    approved : ndarray bool, shape (n_items,) or None
        Approved in the current catalogue (silence is tested only there);
        None without a catalogue.
    """

    topic: np.ndarray
    topic_names: list[str]
    approved: np.ndarray | None = None


@dataclass
class Candidate:
    """One alarm (a test that passed its minimums, the correction and its effect-size rule)."""

    kind: str
    event: str
    subject: str  # "item" or "topic"
    index: int
    window: int
    observed: int
    expected: float
    p: float
    p_adjusted: float
    ratio: float
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Block:
    """One family of tests as arrays (only the significant ones become :class:`Candidate`)."""

    kind: str
    event: str
    subject: str
    window: int
    index: np.ndarray
    observed: np.ndarray
    expected: np.ndarray
    p: np.ndarray
    effect_ok: np.ndarray
    numbers: Callable[[int], dict[str, Any]]


def _pseudo(prior_rate: np.ndarray, events: float) -> np.ndarray:
    """Pseudo-impressions worth ``events`` events at ``prior_rate`` (the prior's weight, per kind)."""
    return events / np.maximum(prior_rate, 1e-12)


def _shrink(
    x: np.ndarray, n: np.ndarray, prior_rate: np.ndarray, events: float
) -> np.ndarray:
    """A rate pulled towards ``prior_rate`` by ``events`` pseudo-events (and their impressions)."""
    return (x + events) / (n + _pseudo(prior_rate, events))


def _by_topic(values: np.ndarray, topic: np.ndarray, n_topics: int) -> np.ndarray:
    """Sum ``values`` (kinds, items) per topic -> (kinds, n_topics); items without a topic left out."""
    has = topic >= 0
    out = np.zeros((values.shape[0], n_topics), dtype=np.float64)
    for k in range(values.shape[0]):
        out[k] = np.bincount(topic[has], weights=values[k, has], minlength=n_topics)
    return out


@dataclass
class Baseline:
    """Baseline counts and rates (see the module docstring)."""

    counts: np.ndarray  # (kinds, items)
    topic_counts: np.ndarray  # (kinds, topics)
    city_rate: np.ndarray  # (kinds,) per impression
    topic_rate: np.ndarray  # (kinds, topics)
    item_rate: np.ndarray  # (kinds, items)
    source: str  # "baseline" or "window"


def baseline(counters: Counters, subjects: Subjects, config: MonitorConfig) -> Baseline:
    """Baseline counts and shrunk rates per kind for items and topics."""
    longest = max(config.windows_hours)
    first_window_day = (counters.newest_hour - longest + 1) // 24
    # the baseline_days whole days before the day the longest window starts in (days_sum is inclusive)
    counts = counters.days_sum(
        first_window_day - config.baseline_days, first_window_day - 1
    ).astype(np.float64)
    source = "baseline"
    if counts[K_IMP].sum() < config.min_impressions:
        counts = counters.window(longest).astype(np.float64)
        source = "window"
    n_topics = len(subjects.topic_names)
    topic_counts = _by_topic(counts, subjects.topic, n_topics)
    total = counts.sum(axis=1)
    # a floor: a kind never seen in the baseline is not impossible, just rare
    city_rate = np.maximum(total / max(total[K_IMP], 1.0), 1.0 / max(total[K_IMP], 1.0))
    m = config.prior_events
    topic_rate = _shrink(topic_counts, topic_counts[K_IMP], city_rate[:, None], m)
    prior = np.where(
        subjects.topic >= 0,
        topic_rate[:, np.maximum(subjects.topic, 0)],
        city_rate[:, None],
    )
    item_rate = _shrink(counts, counts[K_IMP], prior, m)
    return Baseline(counts, topic_counts, city_rate, topic_rate, item_rate, source)


def _upper(x: np.ndarray, n: np.ndarray, xb: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """P(X >= x) for the window's share of the events: X ~ Binomial(x + xb, n / (n + nb)).

    The conditional test of two Poisson rates (window: x events in exposure
    n; baseline: xb in nb): it carries the baseline's own uncertainty, so a
    thin baseline cannot make a small count look surprising. Real-valued
    ``xb`` (pseudo-counts) through the regularized incomplete beta function.
    """
    f = n / np.maximum(n + nb, 1e-300)
    return np.where(x > 0, special.betainc(np.maximum(x, 1e-300), xb + 1.0, f), 1.0)


def _lower(x: np.ndarray, n: np.ndarray, xb: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """P(X <= x) for the same model (is the window's count surprisingly low?)."""
    f = n / np.maximum(n + nb, 1e-300)
    return np.where(
        xb > 0, special.betainc(np.maximum(xb, 1e-300), x + 1.0, 1.0 - f), 1.0
    )


def _ratio(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return observed / np.maximum(expected, 1e-12)


def _blocks(
    counters: Counters, subjects: Subjects, config: MonitorConfig, base: Baseline
) -> list[_Block]:
    """Every test of every window, as arrays.

    An item's baseline is its own counts plus ``prior_events`` pseudo-events
    (with the impressions they take at its topic's rate); a topic's, its own
    counts plus as many at the city's rate.
    """
    n_topics = len(subjects.topic_names)
    topic_of = subjects.topic
    m = config.prior_events
    has_topic = topic_of >= 0
    t_idx = np.maximum(topic_of, 0)
    # per item: the baseline counts of its topic (the city's where it has none), with the prior
    topic_x = np.where(
        has_topic, base.topic_counts[:, t_idx], base.counts.sum(axis=1)[:, None]
    )
    item_topic_rate = np.where(
        has_topic, base.topic_rate[:, t_idx], base.city_rate[:, None]
    )
    topic_imp = np.where(
        has_topic, base.topic_counts[K_IMP, t_idx], base.counts[K_IMP].sum()
    )
    topic_n = topic_imp + _pseudo(base.city_rate[:, None], m)  # (kinds, items)
    topic_x = topic_x + m
    own_n = base.counts[K_IMP] + _pseudo(item_topic_rate, m)
    own_x = base.counts + m
    out: list[_Block] = []
    for w in sorted(set(config.windows_hours)):
        win = counters.window(w).astype(np.float64)
        imp = win[K_IMP]
        # ---- negative feedback, per item ----
        for event, k in NEGATIVE.items():
            x = win[k]
            # negatives logged without their impressions still count: at least one impression each
            shown = np.maximum(imp, x)
            test = np.flatnonzero(x >= config.min_events)
            xt, nt = x[test], shown[test]
            p = np.maximum(
                _upper(xt, nt, own_x[k, test], own_n[k, test]),
                _upper(xt, nt, topic_x[k, test], topic_n[k, test]),
            )
            rate = np.maximum(base.item_rate[k], item_topic_rate[k])
            expected = nt * rate[test]

            def numbers(
                i: int,
                k: int = k,
                shown: np.ndarray = shown,
                x: np.ndarray = x,
                imp: np.ndarray = imp,
            ) -> dict:
                return {
                    "impressions": int(imp[i]),
                    "rate": float(x[i] / shown[i]),
                    "item_baseline_rate": float(base.item_rate[k, i]),
                    "topic_baseline_rate": float(item_topic_rate[k, i]),
                    "baseline_impressions": int(base.counts[K_IMP, i]),
                }

            out.append(
                _Block(
                    NEGATIVE_FEEDBACK,
                    event,
                    "item",
                    w,
                    test,
                    xt,
                    expected,
                    p,
                    _ratio(xt, expected) >= config.min_ratio,
                    numbers,
                )
            )
        # ---- spread spikes: items and topics ----
        clicks_total = win[K_CLICK].sum()
        if clicks_total > 0:
            out.append(
                _spikes("item", win, base.counts, base.item_rate[K_CLICK], w, config)
            )
            if n_topics and has_topic.any():
                t_win = _by_topic(win, topic_of, n_topics)
                out.append(
                    _spikes(
                        "topic",
                        t_win,
                        base.topic_counts,
                        base.topic_rate[K_CLICK],
                        w,
                        config,
                    )
                )
        # ---- silence: approved items with many impressions ----
        if subjects.approved is not None:
            test = np.flatnonzero(
                subjects.approved & (imp >= config.silence_min_impressions)
            )
            x, nt = win[K_CLICK, test], imp[test]
            p = np.maximum(
                _lower(x, nt, own_x[K_CLICK, test], own_n[K_CLICK, test]),
                _lower(x, nt, topic_x[K_CLICK, test], topic_n[K_CLICK, test]),
            )
            rate = np.minimum(base.item_rate[K_CLICK], item_topic_rate[K_CLICK])
            expected = nt * rate[test]

            def silent(i: int, imp: np.ndarray = imp, rate: np.ndarray = rate) -> dict:
                return {
                    "impressions": int(imp[i]),
                    "expected_click_rate": float(rate[i]),
                }

            out.append(
                _Block(
                    SILENCE,
                    "click",
                    "item",
                    w,
                    test,
                    x,
                    expected,
                    p,
                    _ratio(x, expected) <= config.silence_ratio,
                    silent,
                )
            )
    return out


def _spikes(
    subject: str,
    win: np.ndarray,
    base_counts: np.ndarray,
    base_rate: np.ndarray,
    window: int,
    config: MonitorConfig,
) -> _Block:
    """Share of the window's clicks against the share of the baseline's (one pseudo-click each)."""
    clicks, imp = win[K_CLICK], win[K_IMP]
    clicks_total = clicks.sum()
    b_clicks = base_counts[K_CLICK] + 1.0
    b_total = b_clicks.sum()
    test = np.flatnonzero(clicks >= config.min_events)
    share = b_clicks / b_total
    expected = clicks_total * share[test]
    p = _upper(
        clicks[test],
        np.full(len(test), clicks_total),
        b_clicks[test],
        np.full(len(test), b_total),
    )
    rate = clicks / np.maximum(np.maximum(imp, clicks), 1.0)
    rate_ratio = rate / np.maximum(base_rate, 1e-12)

    def numbers(i: int) -> dict:
        return {
            "impressions": int(imp[i]),
            "shares": int(win[K_SHARE, i]),
            "click_share": float(clicks[i] / clicks_total),
            "baseline_click_share": float(share[i]),
            "click_rate": float(rate[i]),
            "baseline_click_rate": float(base_rate[i]),
            "click_rate_ratio": float(rate_ratio[i]),
        }

    ok = (_ratio(clicks[test], expected) >= config.spike_ratio) & (
        rate_ratio[test] >= config.spike_rate_ratio
    )
    return _Block(
        SPREAD_SPIKE,
        "click",
        subject,
        window,
        test,
        clicks[test],
        expected,
        p,
        ok,
        numbers,
    )


def alarms(
    counters: Counters, subjects: Subjects, config: MonitorConfig
) -> tuple[list[Candidate], int, Baseline]:
    """Run every test; return the alarms, the number of tests made, and the baseline.

    p-values are Bonferroni-corrected over every test of the run. Of several
    windows raising the same alarm (kind, event, subject) the one with the
    smallest adjusted p (then the largest ratio) is kept. Alarms come sorted
    by kind, event, subject and index.
    """
    base = baseline(counters, subjects, config)
    blocks = _blocks(counters, subjects, config, base)
    m = max(sum(len(b.index) for b in blocks), 1)
    best: dict[tuple[str, str, str, int], Candidate] = {}
    for b in blocks:
        p_adj = np.minimum(b.p * m, 1.0)
        for j in np.flatnonzero((p_adj < config.alpha) & b.effect_ok):
            i = int(b.index[j])
            c = Candidate(
                b.kind,
                b.event,
                b.subject,
                i,
                b.window,
                int(b.observed[j]),
                float(b.expected[j]),
                float(b.p[j]),
                float(p_adj[j]),
                float(_ratio(b.observed[j], b.expected[j])),
                b.numbers(i),
            )
            key = (c.kind, c.event, c.subject, i)
            old = best.get(key)
            if old is None or (c.p_adjusted, -c.ratio) < (old.p_adjusted, -old.ratio):
                best[key] = c
    return [best[k] for k in sorted(best)], m, base


__all__ = [
    "KINDS",
    "NEGATIVE_FEEDBACK",
    "SILENCE",
    "SPREAD_SPIKE",
    "Baseline",
    "Candidate",
    "Subjects",
    "alarms",
    "baseline",
]
