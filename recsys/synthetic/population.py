"""The synthetic city's people: who they are, and what they secretly like."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.synthetic.calendar import SECONDS_PER_DAY, Window
from recsys.synthetic.sampling import draw, draw_rows
from recsys.synthetic.spec import Spec

NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Population:
    """Users as arrays (length ``n``), visible attributes and latent ones.

    Visible: ``group``, ``sub_group`` (-1 = blank), ``region``, ``age_band``
    (-1 = blank), ``channels`` (n, P) bool over the personal channels,
    ``opt_out`` and ``registered`` (epoch s). Hidden: ``true_sub_group``
    (what drives the prior even where the table is blank), ``interest``
    (n, T), ``taste`` (n, k), ``bias``, ``format_pref`` (n, F), ``activity``,
    ``opt_out_at`` (epoch s; ``NEVER`` for users who stay).
    """

    group: np.ndarray
    sub_group: np.ndarray
    true_sub_group: np.ndarray
    region: np.ndarray
    age_band: np.ndarray
    channels: np.ndarray
    opt_out: np.ndarray
    opt_out_at: np.ndarray
    registered: np.ndarray
    interest: np.ndarray
    taste: np.ndarray
    bias: np.ndarray
    format_pref: np.ndarray
    activity: np.ndarray

    def __len__(self) -> int:
        return len(self.group)


def _channels(group: np.ndarray, spec: Spec, rng: np.random.Generator) -> np.ndarray:
    """1..P personal channels per user, weighted by group, without replacement."""
    n, n_p = len(group), len(spec.personal)
    counts = np.asarray(spec.users.get("channel_count", [1.0]), dtype=np.float64)[:n_p]
    k = draw(counts / counts.sum(), n, rng) + 1
    # Gumbel top-k: the k largest of log(weight) + Gumbel noise are a weighted sample without replacement
    keys = np.log(np.maximum(spec.channel_weight[group], 1e-9)) + rng.gumbel(size=(n, n_p))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    return rank < k[:, None]


def registered_span_s(spec: Spec) -> float:
    """How long before the window's start a user may have registered, in seconds (``[users] registered_span_days``)."""
    return float(spec.users.get("registered_span_days", 1095)) * SECONDS_PER_DAY


def make_population(n: int, spec: Spec, window: Window, rng: np.random.Generator) -> Population:
    """Draw ``n`` users: region by population share, then group, sub-group, age, channels.

    Each user's topic interest is drawn around the group x sub-group x region
    prior; taste, bias and format taste are individual.
    """
    u = spec.users
    eng = spec.engagement
    n_s = len(spec.sub_groups)
    region = draw(spec.region_share, n, rng)
    group = draw_rows(spec.group_mix[region], rng)
    true_sub = draw_rows(spec.sub_group_mix[region, group], rng)  # n_s = none
    age = draw_rows(spec.age_mix[true_sub], rng)
    sub = np.where(true_sub == n_s, -1, true_sub)
    sub = np.where(rng.random(n) < float(u.get("blank_sub_group_share", 0.0)), -1, sub)
    age = np.where(rng.random(n) < float(u.get("blank_age_band_share", 0.0)), -1, age)
    channels = _channels(group, spec, rng)

    span = registered_span_s(spec)
    registered = window.start - (rng.random(n) * span).astype(np.int64)
    new = rng.random(n) < float(u.get("new_user_share", 0.0))
    registered = np.where(
        new, window.start + (rng.random(n) * (window.end - window.start)).astype(np.int64), registered
    )
    opt_out = rng.random(n) < float(u.get("opt_out_share", 0.0))
    opt_out_at = np.where(
        opt_out,
        np.maximum(registered, window.start)
        + (rng.random(n) * (window.end - np.maximum(registered, window.start))).astype(np.int64),
        NEVER,
    )

    n_t = len(spec.topics)
    # float32 throughout: at city scale (3.1M x 25) every float64 copy costs 600 MB
    interest = spec.log_prior.astype(np.float32)[group, true_sub, region]  # (n, T)
    interest += np.float32(eng.get("topic_noise_sd", 0.6)) * rng.standard_normal((n, n_t), dtype=np.float32)
    interest -= interest.mean(axis=1, keepdims=True)
    interest *= np.float32(eng.get("topic_coef", 1.0))
    k = int(eng.get("latent_dim", 8))
    taste = float(eng.get("taste_sd", 0.8)) / np.sqrt(k) * rng.standard_normal((n, k))
    bias = float(eng.get("user_bias_sd", 0.5)) * rng.standard_normal(n)
    format_pref = spec.format_pref[group, true_sub] + float(eng.get("format_noise_sd", 0.25)) * rng.standard_normal(
        (n, len(spec.formats))
    )
    sigma = float(spec.policy.get("activity_sigma", 0.8))
    activity = rng.lognormal(-0.5 * sigma**2, sigma, n)  # mean 1
    return Population(
        group=group.astype(np.int16),
        sub_group=sub.astype(np.int16),
        true_sub_group=true_sub.astype(np.int16),
        region=region.astype(np.int16),
        age_band=age.astype(np.int8),
        channels=channels,
        opt_out=opt_out,
        opt_out_at=opt_out_at,
        registered=registered,
        interest=interest.astype(np.float32),
        taste=taste.astype(np.float32),
        bias=bias.astype(np.float32),
        format_pref=format_pref.astype(np.float32),
        activity=activity.astype(np.float32),
    )
