"""A synthetic event stream for the monitor: quiet hours from the ground truth, plus planted trouble.

:func:`make_stream` draws hour after hour of contract events (impressions,
clicks, shares, dismisses, reports) for a generated city:

* **quiet**: every hour the same process -- items shown in proportion to a
  fixed exposure weight per item (log-normal, seeded), to users drawn at
  random; whether the user clicks comes from the truth's time-free logit
  (interest, taste, quality, targeting, format, channel), so the stream is
  stationary and a correct monitor raises nothing on it; shares follow a
  click, dismisses and reports a non-click with the generator's own
  probabilities (``response`` in the synthetic model: report odds fall with
  item quality, dismiss odds with the user's interest in the topic);
* **planted** (:class:`Plant`): from ``start`` on, a *bad* item draws reports
  with probability ``strength`` per non-click impression (a wave of
  complaints about a wrong claim); a *viral* item is shown ``strength`` x as
  often and clicked with its logit raised by ``log(strength)`` (people pass
  it on and seek it out).

The stream is the tool behind the monitor's tests and its false-alarm
measurement (tests/test_monitor_stream.py, benchmarks/bench_monitor.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys.config import is_int
from recsys.exceptions import ConfigError
from recsys.io import write_parquet
from recsys.seeds import check_random_state
from recsys.synthetic.sampling import sigmoid
from recsys.synthetic.spec import load_spec
from recsys.synthetic.truth import GroundTruth
from recsys.taxonomy import Taxonomy, load_taxonomy

HOUR = pd.Timedelta(hours=1)
KINDS = ("bad", "viral")


@dataclass(frozen=True)
class Plant:
    """A planted item: ``kind`` ``bad`` (a burst of reports) or ``viral`` (a spread spike) from ``start``.

    Attributes
    ----------
    item_id : str
    kind : {"bad", "viral"}
    start : pandas.Timestamp
        Tz-aware; the hour it begins in is affected in full from ``start`` on.
    strength : float
        ``bad``: probability of a report per non-click impression (default
        0.05, ~30x the generator's usual rate); ``viral``: the exposure and
        click-odds multiplier (default 6).
    """

    item_id: str
    kind: str
    start: pd.Timestamp
    strength: float | None = None

    def level(self) -> float:
        """The strength, or the kind's default."""
        if self.strength is not None:
            return float(self.strength)
        return 0.05 if self.kind == "bad" else 6.0


def _check(plants: Sequence[Plant], truth: GroundTruth) -> None:
    known = set(truth.item_ids.tolist())
    for p in plants:
        if p.kind not in KINDS:
            raise ConfigError(
                f"plant kind {p.kind!r} is unknown; valid: {', '.join(KINDS)}"
            )
        if p.item_id not in known:
            raise ConfigError(f"plant item {p.item_id!r} is not an item of the city")
        if pd.Timestamp(p.start).tzinfo is None:
            raise ConfigError(f"plant start {p.start} has no time zone")
        level = p.level()
        ok = 0 < level <= 1 if p.kind == "bad" else level >= 1
        if not ok:
            valid = "0 < strength <= 1" if p.kind == "bad" else "strength >= 1"
            raise ConfigError(
                f"plant strength {level} for a {p.kind} item is out of range; valid: {valid}"
            )


def exposure_weights(
    n_items: int, seed: int | np.random.Generator | None = 0, sigma: float = 1.0
) -> np.ndarray:
    """A fixed log-normal exposure weight per item (sums to 1): how often each item is shown."""
    w = check_random_state(seed).lognormal(0.0, sigma, n_items)
    return w / w.sum()


def make_stream(
    truth: GroundTruth,
    *,
    start: pd.Timestamp | str,
    hours: int,
    impressions_per_hour: int,
    seed: int = 0,
    plants: Sequence[Plant] = (),
    channel: str = "app_push",
    taxonomy: Taxonomy | None = None,
    first_hour: int = 0,
) -> Iterator[tuple[pd.Timestamp, pd.DataFrame]]:
    """Yield (hour start, events of that hour) for ``hours`` consecutive hours.

    Parameters
    ----------
    truth : GroundTruth
        The city's truth (``generate_city(...).truth``).
    start : timestamp or str
        Tz-aware start (floored to the hour).
    hours : int
        How many hours (>= 1).
    impressions_per_hour : int
        Mean impressions per hour (Poisson); events are ~1.1x that.
    seed : int
        Hour ``h`` is drawn from ``(seed, h)``, so any hour can be redrawn alone.
    plants : sequence of Plant
        Planted bad / viral items.
    channel : str
        The channel impressions are shown on.
    taxonomy : Taxonomy, optional
        For the generator's response probabilities; default the bundled city.
    first_hour : int
        Start at this hour after ``start`` (hours before it are not drawn):
        ``first_hour=h, hours=1`` is exactly hour ``h`` of the longer stream.

    Returns
    -------
    iterator of (pandas.Timestamp, pandas.DataFrame)
        Contract events (``event_id``, ``user_id``, ``item_id``,
        ``event_type``, ``timestamp`` UTC, ``channel``) sorted by time.

    Raises
    ------
    ConfigError
        On a bad parameter (naive start, hours < 1, unknown plant item, ...).
    """
    t0 = pd.Timestamp(start)
    if t0.tzinfo is None:
        raise ConfigError(
            f"start {start!r} has no time zone; give e.g. 2026-06-01T00:00:00Z"
        )
    if not is_int(hours) or hours < 1:
        raise ConfigError(f"hours must be an integer >= 1, got {hours!r}")
    if not is_int(impressions_per_hour) or impressions_per_hour < 1:
        raise ConfigError(
            f"impressions_per_hour must be an integer >= 1, got {impressions_per_hour!r}"
        )
    _check(plants, truth)
    t0 = t0.tz_convert("UTC").floor("h")
    response = load_spec(taxonomy or load_taxonomy()).response
    n_users = len(truth.user_ids)
    weights = exposure_weights(
        len(truth.item_ids), seed=np.random.default_rng([seed, 1 << 20])
    )
    c = truth.channel_index(channel)
    quality = truth.arrays["item_quality"].astype(np.float64)
    formats = truth.arrays["item_format"].astype(np.int64)
    chan_logit, carries = truth.channel_logit(c, formats)
    # an item the channel cannot carry is never shown on it
    weights = np.where(carries, weights, 0.0)
    positions = {p: int(truth.item_positions([p.item_id])[0]) for p in plants}
    if not is_int(first_hour) or first_hour < 0:
        raise ConfigError(f"first_hour must be an integer >= 0, got {first_hour!r}")
    for h in range(first_hour, first_hour + hours):
        begin = t0 + h * HOUR
        yield (
            begin,
            _hour(
                truth,
                begin,
                h,
                seed,
                weights,
                chan_logit,
                quality,
                response,
                positions,
                n_users,
                impressions_per_hour,
                channel,
            ),
        )


def _hour(
    truth: GroundTruth,
    begin: pd.Timestamp,
    h: int,
    seed: int,
    weights: np.ndarray,
    chan_logit: np.ndarray,
    quality: np.ndarray,
    response: dict,
    plants: dict[Plant, int],
    n_users: int,
    impressions_per_hour: int,
    channel: str,
) -> pd.DataFrame:
    rng = np.random.default_rng([seed, h])
    w = weights.copy()
    boost = np.zeros(len(w))
    report_p = sigmoid(
        float(response.get("report_logit", -6.5))
        + float(response.get("report_quality_coef", -1.5)) * quality
    )
    end = begin + HOUR
    for p, i in plants.items():
        if pd.Timestamp(p.start) < end and p.kind == "viral":
            w[i] *= p.level()
            boost[i] = np.log(p.level())
    w /= w.sum()
    n = int(rng.poisson(impressions_per_hour))
    items = np.searchsorted(np.cumsum(w), rng.random(n) * 1.0, side="right").clip(
        0, len(w) - 1
    )
    users = rng.integers(0, n_users, n)
    seconds = rng.integers(0, 3600, n)
    logit, topic_fit = truth.static_pair_logit(users, items)
    click = rng.random(n) < sigmoid(logit + chan_logit[items] + boost[items])
    share = click & (
        rng.random(n) < sigmoid(np.full(n, float(response.get("share_logit", -2.8))))
    )
    p_report = report_p[items]
    for p, i in plants.items():
        if p.kind == "bad" and pd.Timestamp(p.start) < end:
            # the burst covers the part of the hour from its start on
            after = seconds >= max(0.0, (pd.Timestamp(p.start) - begin).total_seconds())
            p_report = np.where((items == i) & after, p.level(), p_report)
    p_dismiss = sigmoid(
        float(response.get("dismiss_logit", -3.0))
        + float(response.get("dismiss_topic_coef", -0.6)) * topic_fit
    )
    r = rng.random(n)
    report = ~click & (r < p_report)
    dismiss = ~click & ~report & (r < p_report + p_dismiss)
    later = np.minimum(seconds + rng.integers(1, 300, n), 3599)
    parts = [
        (np.arange(n), "impression", seconds),
        (np.flatnonzero(click), "click", later[click]),
        (np.flatnonzero(share), "share", np.minimum(later[share] + 30, 3599)),
        (np.flatnonzero(dismiss), "dismiss", later[dismiss]),
        (np.flatnonzero(report), "report", later[report]),
    ]
    rows = np.concatenate([p[0] for p in parts])
    types = np.concatenate([np.full(len(p[0]), p[1], dtype=object) for p in parts])
    secs = np.concatenate([p[2] for p in parts])
    order = np.lexsort((rows, secs))
    rows, types, secs = rows[order], types[order], secs[order]
    stamp = begin.strftime("%Y%m%d%H")
    return pd.DataFrame(
        {
            "event_id": [f"s{stamp}-{k}" for k in range(len(rows))],
            "user_id": truth.user_ids[users[rows]].astype(object),
            "item_id": truth.item_ids[items[rows]].astype(object),
            "event_type": types,
            "timestamp": pd.to_datetime(
                begin.value + secs * 1_000_000_000, utc=True
            ).as_unit("us"),
            "channel": channel,
        }
    )


def write_stream(
    stream: Iterator[tuple[pd.Timestamp, pd.DataFrame]],
    folder: str | Path,
    *,
    per_file_hours: int = 1,
) -> list[Path]:
    """Write a stream as Parquet files (``events-YYYYMMDDTHH.parquet``, UTC), each atomically; return them."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    batch: list[pd.DataFrame] = []
    first: pd.Timestamp | None = None
    for begin, frame in stream:
        first = begin if first is None else first
        batch.append(frame)
        if len(batch) == per_file_hours:
            paths.append(_write(root, first, batch))
            batch, first = [], None
    if batch and first is not None:
        paths.append(_write(root, first, batch))
    return paths


def _write(root: Path, first: pd.Timestamp, frames: list[pd.DataFrame]) -> Path:
    path = root / f"events-{first.strftime('%Y%m%dT%H')}.parquet"
    table = pa.Table.from_pandas(
        pd.concat(frames, ignore_index=True), preserve_index=False
    )
    return write_parquet(table, path)
