"""The synthetic city's spec: priors, model constants and vocabulary as arrays.

The spec is data (``recsys/data/synthetic/*.toml``, shipped in the package);
this module reads it and lines every table up with a taxonomy's codes, so the
rest of the generator works on plain arrays indexed like the taxonomy.

A code the spec names but the taxonomy lacks is ignored; a taxonomy code the
spec does not name gets the neutral default (weight 1, multiplier 1, no
format taste), so any taxonomy generates a world, if a flatter one.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from recsys.columns import AGE_BANDS, AUTHORITIES, REVIEW_STATUSES
from recsys.config import is_int, is_number
from recsys.exceptions import SchemaError
from recsys.taxonomy import Taxonomy

SPEC_FILES = ("population.toml", "model.toml", "vocab.toml")


@dataclass(frozen=True)
class Campaign:
    """One campaign of the calendar (a day, a span of days, or a rule)."""

    name: str
    topics: tuple[int, ...]
    month: int
    day: int
    length_days: int
    rule: str
    logit: float
    policy: float
    volume: float

    def to_dict(self, topic_codes: Sequence[str]) -> dict[str, Any]:
        """Return the campaign as JSON-ready data (topics as codes)."""
        return {
            "name": self.name,
            "topics": [topic_codes[t] for t in self.topics],
            "month": self.month,
            "day": self.day,
            "length_days": self.length_days,
            "rule": self.rule,
            "logit": self.logit,
            "policy": self.policy,
            "volume": self.volume,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], topic_codes: Sequence[str]) -> "Campaign":
        """Inverse of :meth:`to_dict`; topics the taxonomy lacks are dropped."""
        index = {c: i for i, c in enumerate(topic_codes)}
        return cls(
            name=str(data.get("name", "")),
            topics=tuple(index[t] for t in data.get("topics", []) if t in index),
            month=int(data["month"]),
            day=int(data.get("day", 1)),
            length_days=int(data.get("length_days", 1)),
            rule=str(data.get("rule", "")),
            logit=float(data.get("logit", 0.0)),
            policy=float(data.get("policy", 0.0)),
            volume=float(data.get("volume", 0.0)),
        )


@dataclass(frozen=True)
class UnderServed:
    """A planted under-served audience: the old system never reaches ``share`` of the residents of
    ``group`` x ``region`` (their channel registrations never made it into its lists), so none of
    their events are logged. Indices are taxonomy positions."""

    group: int
    region: int
    share: float


def _under_served(doc: Mapping[str, Any], groups: Sequence[str], regions: Sequence[str]) -> tuple[UnderServed, ...]:
    """The spec's ``[[under_served]]`` entries; one naming a code the taxonomy lacks is left out."""
    out = []
    for entry in doc.get("under_served", []):
        group, region = entry.get("group"), entry.get("region")
        if group not in groups or region not in regions:
            continue
        share = entry.get("unreached_share")
        if not is_number(share) or not 0 < share < 1:
            raise SchemaError(f"synthetic spec: under_served unreached_share must be a number in (0, 1), got {share!r}")
        out.append(UnderServed(group=list(groups).index(group), region=list(regions).index(region), share=float(share)))
    return tuple(out)


@dataclass(frozen=True)
class DemandShift:
    """A planted change of demand: from ``onset_days_before_end`` days before the log's end on,
    users of the segment (``group``; ``region`` or -1 = every region) engage with ``topic``
    by ``logit`` more (less, when negative). Indices are taxonomy positions."""

    topic: int
    group: int
    region: int
    onset_days_before_end: int
    logit: float


def _demand_shifts(doc: Mapping[str, Any], topics: Sequence[str], groups: Sequence[str], regions: Sequence[str]) -> tuple[DemandShift, ...]:
    """The spec's ``[[demand_shift]]`` entries; one naming a code the taxonomy lacks is left out."""
    out = []
    for entry in doc.get("demand_shift", []):
        topic, group, region = entry.get("topic"), entry.get("group"), entry.get("region", "")
        if topic not in topics or group not in groups or (region and region not in regions):
            continue
        days = entry.get("onset_days_before_end", 28)
        if not is_int(days) or days < 1:
            raise SchemaError(f"synthetic spec: demand_shift onset_days_before_end must be an integer >= 1, got {days!r}")
        out.append(
            DemandShift(
                topic=list(topics).index(topic),
                group=list(groups).index(group),
                region=list(regions).index(region) if region else -1,
                onset_days_before_end=days,
                logit=float(entry.get("logit", 0.0)),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class Spec:
    """The spec lined up with a taxonomy.

    Axes: ``T`` topics, ``G`` groups, ``S`` sub-groups, ``R`` regions, ``F``
    formats, ``C`` channels (all), ``P`` personal channels, ``A`` age bands
    (``recsys.columns.AGE_BANDS``). Sub-group index ``S`` (one past the last)
    means "none".
    """

    topics: tuple[str, ...]
    groups: tuple[str, ...]
    sub_groups: tuple[str, ...]
    sub_group_of: np.ndarray  # (S,) int: group index of each sub-group
    regions: tuple[str, ...]
    formats: tuple[str, ...]
    channels: tuple[str, ...]
    personal: np.ndarray  # (P,) int: channel index of each personal channel
    channel_formats: np.ndarray  # (C, F) bool: channel carries format
    region_share: np.ndarray  # (R,)
    group_mix: np.ndarray  # (R, G)
    sub_group_mix: np.ndarray  # (R, G, S+1), rows sum to 1; column S = "none"
    age_mix: np.ndarray  # (S+1, A)
    log_prior: np.ndarray  # (G, S+1, R, T) log of the normalized topic prior
    format_pref: np.ndarray  # (G, S+1, F) additive logits
    channel_weight: np.ndarray  # (G, P)
    users: dict[str, Any]
    items: dict[str, Any]
    engagement: dict[str, Any]
    response: dict[str, Any]
    policy: dict[str, Any]
    campaigns: tuple[Campaign, ...]
    fresh_tau: np.ndarray  # (T,) days
    channel_logit: np.ndarray  # (C,)
    channel_format_logit: np.ndarray  # (C, F)
    quality_authority: np.ndarray  # (len(AUTHORITIES),)
    editorial_authority: np.ndarray  # (len(AUTHORITIES),)
    format_mix: np.ndarray  # (F,)
    review_mix: np.ndarray  # (len(REVIEW_STATUSES),)
    authority_mix: np.ndarray  # (len(AUTHORITIES),)
    dwell_median: np.ndarray  # (F,) seconds
    arms: np.ndarray  # (4,) trending, segment, targeted, explore
    words: tuple[tuple[str, ...], ...]  # per topic
    related: tuple[tuple[int, ...], ...]  # per topic
    audience: tuple[tuple[int, ...], ...]  # per topic: group indices
    topic_regions: tuple[tuple[int, ...], ...]  # per topic: region indices
    sources: dict[str, tuple[str, ...]]
    title_templates: tuple[str, ...]
    summary_templates: tuple[str, ...]
    city: str
    topic_zh: tuple[str, ...]
    group_zh: tuple[str, ...]
    region_zh: tuple[str, ...]
    demand_shifts: tuple[DemandShift, ...] = ()
    thin_topics: tuple[int, ...] = ()  # topics whose new stories are thinned (``[items] thin_supply_*``)
    under_served: tuple[UnderServed, ...] = ()  # audiences the old system leaves partly unreached


ARMS = ("trending", "segment", "targeted", "explore")


def _read_spec_texts(spec_dir: str | Path | None) -> dict[str, dict]:
    docs: dict[str, dict] = {}
    for name in SPEC_FILES:
        if spec_dir is None:
            text = resources.files("recsys").joinpath(f"data/synthetic/{name}").read_text(encoding="utf-8")
            origin = f"synthetic spec {name}"
        else:
            path = Path(spec_dir) / name
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise SchemaError(f"{path}: cannot read synthetic spec file ({exc})") from None
            origin = str(path)
        try:
            docs[name] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SchemaError(f"{origin}: not valid TOML ({exc})") from None
    return docs


def _vector(table: Mapping[str, Any] | None, codes: Sequence[str], default: float) -> np.ndarray:
    """Values of ``table`` in the order of ``codes``; missing codes get ``default``."""
    table = table or {}
    fill = float(table.get("default", default))
    return np.array([float(table.get(c, fill)) for c in codes], dtype=np.float64)


def _normalize(weights: np.ndarray, axis: int = -1) -> np.ndarray:
    total = weights.sum(axis=axis, keepdims=True)
    uniform = np.full_like(weights, 1.0 / weights.shape[axis])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, weights / np.where(total > 0, total, 1.0), uniform)
    return out


def _sub_group_table(
    doc: Mapping[str, Any], taxonomy: Taxonomy, groups: Sequence[str], subs: Sequence[str]
) -> np.ndarray:
    """Sub-group mix (R, G, S+1): each group's own sub-groups; "none" if it has none."""
    n_r, n_g, n_s = len(taxonomy.regions), len(groups), len(subs)
    sub_index = {s: i for i, s in enumerate(subs)}
    base = doc.get("sub_group_mix", {})
    by_region = doc.get("sub_group_mix_by_region", {})
    mix = np.zeros((n_r, n_g, n_s + 1))
    for r, region in enumerate(taxonomy.regions):
        for g, group in enumerate(groups):
            own = [s for s in subs if taxonomy.sub_groups[s] == group]
            if not own:
                mix[r, g, n_s] = 1.0
                continue
            table = by_region.get(region, {}).get(group, base.get(group, {}))
            weights = _vector(table, own, 1.0 if not table else 0.0)
            if weights.sum() <= 0:
                weights = np.ones(len(own))
            for s, w in zip(own, weights / weights.sum()):
                mix[r, g, sub_index[s]] = w
    return mix


def _campaigns(doc: Mapping[str, Any], topics: Sequence[str]) -> tuple[Campaign, ...]:
    out = []
    for entry in doc.get("campaign", []):
        campaign = Campaign.from_dict(entry, topics)
        if campaign.rule not in ("", "third_weekend"):
            raise SchemaError(
                f"synthetic spec: campaign {campaign.name!r} has unknown rule {campaign.rule!r}; valid: third_weekend"
            )
        if campaign.topics:
            out.append(campaign)
    return tuple(out)


def load_spec(taxonomy: Taxonomy, spec_dir: str | Path | None = None) -> Spec:
    """Read the synthetic spec and line it up with ``taxonomy``.

    Parameters
    ----------
    taxonomy : Taxonomy
        The codes the generated city uses.
    spec_dir : str, Path or None
        A folder with ``population.toml``, ``model.toml`` and ``vocab.toml``;
        ``None`` reads the copy shipped in the package.

    Returns
    -------
    Spec

    Raises
    ------
    SchemaError
        If a spec file is missing or not valid TOML, or the taxonomy has no
        personal channel (the generator pushes to personal channels only).
    """
    docs = _read_spec_texts(spec_dir)
    pop, model, vocab = docs["population.toml"], docs["model.toml"], docs["vocab.toml"]
    topics, groups, regions = tuple(taxonomy.topics), tuple(taxonomy.groups), tuple(taxonomy.regions)
    formats, channels = tuple(taxonomy.formats), tuple(taxonomy.channels)
    subs = tuple(taxonomy.sub_groups)
    n_f = len(formats)
    if not taxonomy.personal_channels:
        raise SchemaError("synthetic city: the taxonomy needs at least one personal channel to push to")
    group_index = {g: i for i, g in enumerate(groups)}
    region_index = {r: i for i, r in enumerate(regions)}
    topic_index = {t: i for i, t in enumerate(topics)}

    region_share = _normalize(np.array([taxonomy.population_share[r] for r in regions], dtype=np.float64))
    # a region the spec names mixes only the groups it lists; an unnamed region mixes all evenly
    mixes = pop.get("group_mix", {})
    group_mix = _normalize(np.stack([_vector(mixes.get(r), groups, 0.0 if r in mixes else 1.0) for r in regions]))
    sub_group_mix = _sub_group_table(pop, taxonomy, groups, subs)

    age_default = _vector(pop.get("age_band_default"), AGE_BANDS, 0.0)
    age_rows = []
    for s in subs + ("",):
        table = pop.get("age_band", {}).get(s)
        age_rows.append(_vector(table, AGE_BANDS, 0.0) if table else age_default)
    age_mix = _normalize(np.stack(age_rows))

    # topic prior = group prior x sub-group multiplier x region multiplier
    group_prior = np.stack([_vector(pop.get("topic_prior", {}).get(g), topics, 1.0) for g in groups])
    sub_mult = np.stack([_vector(pop.get("topic_mult", {}).get(s), topics, 1.0) for s in subs + ("",)])
    region_mult = np.stack([_vector(pop.get("topic_mult_region", {}).get(r), topics, 1.0) for r in regions])
    prior = group_prior[:, None, None, :] * sub_mult[None, :, None, :] * region_mult[None, None, :, :]
    log_prior = np.log(_normalize(np.maximum(prior, 1e-6)))

    group_fmt = np.stack([_vector(pop.get("format_pref", {}).get(g), formats, 0.0) for g in groups])
    sub_fmt = np.stack([_vector(pop.get("format_pref_sub", {}).get(s), formats, 0.0) for s in subs + ("",)])
    format_pref = group_fmt[:, None, :] + sub_fmt[None, :, :]

    personal = np.array([channels.index(c) for c in taxonomy.personal_channels], dtype=np.int64)
    channel_weight = np.stack(
        [_vector(pop.get("channel_weight", {}).get(g), taxonomy.personal_channels, 1.0) for g in groups]
    )
    channel_formats = np.array([[f in taxonomy.channel_formats[c] for f in formats] for c in channels], dtype=bool)

    eng = dict(model.get("engagement", {}))
    chan_fmt = np.zeros((len(channels), n_f))
    for c, table in eng.get("channel_format_logit", {}).items():
        if c in channels:
            chan_fmt[channels.index(c)] = _vector(table, formats, 0.0)

    words, related, audience, topic_regions = [], [], [], []
    for t in topics:
        entry = vocab.get("topics", {}).get(t, {})
        words.append(tuple(entry.get("words", [])) or (taxonomy.topics[t].zh,))
        related.append(tuple(topic_index[x] for x in entry.get("related", []) if x in topic_index))
        audience.append(tuple(group_index[x] for x in entry.get("audience", []) if x in group_index))
        topic_regions.append(tuple(region_index[x] for x in entry.get("regions", []) if x in region_index))
    sources = {a: tuple(vocab.get("sources", {}).get(a, [])) or ("",) for a in AUTHORITIES}
    templates = vocab.get("templates", {})
    items = dict(model.get("items", {}))
    policy = dict(model.get("policy", {}))
    response = dict(model.get("response", {}))

    return Spec(
        topics=topics,
        groups=groups,
        sub_groups=subs,
        sub_group_of=np.array([group_index[taxonomy.sub_groups[s]] for s in subs], dtype=np.int64),
        regions=regions,
        formats=formats,
        channels=channels,
        personal=personal,
        channel_formats=channel_formats,
        region_share=region_share,
        group_mix=group_mix,
        sub_group_mix=sub_group_mix,
        age_mix=age_mix,
        log_prior=log_prior,
        format_pref=format_pref,
        channel_weight=channel_weight,
        users=dict(pop.get("users", {})),
        items=items,
        engagement=eng,
        response=response,
        policy=policy,
        campaigns=_campaigns(model, topics),
        fresh_tau=_vector(eng.get("fresh_tau_days"), topics, float(eng.get("fresh_tau_days_default", 21.0))),
        channel_logit=_vector(eng.get("channel_logit"), channels, 0.0),
        channel_format_logit=chan_fmt,
        quality_authority=_vector(eng.get("quality_authority"), AUTHORITIES, 0.0),
        editorial_authority=_vector(policy.get("editorial_authority"), AUTHORITIES, 0.0),
        format_mix=_normalize(_vector(items.get("format"), formats, 1.0 if "format" not in items else 0.0)),
        review_mix=_normalize(_vector(items.get("review_status"), REVIEW_STATUSES, 0.0)),
        authority_mix=_normalize(_vector(items.get("authority"), AUTHORITIES, 1.0)),
        dwell_median=_vector(response.get("dwell_median_seconds"), formats, 90.0),
        arms=_normalize(_vector(policy.get("arms"), ARMS, 0.0)),
        words=tuple(words),
        related=tuple(related),
        audience=tuple(audience),
        topic_regions=tuple(topic_regions),
        sources=sources,
        title_templates=tuple(templates.get("title", ["{k1}"])),
        summary_templates=tuple(templates.get("summary", ["{k2}"])),
        city=str(vocab.get("city", taxonomy.name)),
        topic_zh=tuple(taxonomy.topics[t].zh for t in topics),
        group_zh=tuple(taxonomy.groups[g].zh for g in groups),
        region_zh=tuple(taxonomy.regions[r].zh for r in regions),
        demand_shifts=_demand_shifts(model, topics, groups, regions),
        thin_topics=tuple(topic_index[t] for t in items.get("thin_supply_topics", []) if t in topic_index),
        under_served=_under_served(model, groups, regions),
    )
