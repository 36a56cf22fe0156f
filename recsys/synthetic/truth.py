"""The synthetic city's ground truth: every user's true engagement probability.

The engagement model (stated in data/synthetic/README.md)::

    P(click or stronger | item i pushed to user u on channel c at time t)
        = sigmoid( base + bias_u + quality_i
                   + sum_j w_ij * interest_u[topic_ij]      # group x region prior + individual
                   + taste_u . factors_i                    # low-rank latent taste
                   + format_u[format_i]
                   - group_penalty  * [u outside i's target groups]
                   - region_penalty * [u outside i's target regions]
                   + channel_c + channel_format[c, format_i]
                   + fresh * exp(-age_i(t) / tau_i)
                   + sum_j w_ij * campaign[date(t), topic_ij]
                   + sum_s delta_s * [u in segment_s] * [t >= onset_s] * w_i[topic_s]   # planted demand shifts
                   + weekday[t] + evening * [18 <= local hour(t) < 23] )

and 0 where channel ``c`` does not carry the item's format. Interest, taste,
bias and quality are hidden from the engine: it sees only the tables and the
log, and must learn them. The generator draws every click of the log from
this very function (:meth:`GroundTruth.pair_logit`), so the truth is exact.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from recsys.exceptions import ArtifactError, ConfigError, UnknownCodeError
from recsys.io import atomic_dir, write_json
from recsys.seeds import check_random_state
from recsys.synthetic.calendar import SECONDS_PER_DAY, campaign_effects
from recsys.synthetic.sampling import sigmoid
from recsys.synthetic.spec import Campaign
from recsys.timeutil import TimeLike

TRUTH_VERSION = 1

#: arrays of the truth and their dtypes; user arrays first, then item arrays
USER_ARRAYS = {
    "user_ids": np.str_,
    "user_interest": np.float32,  # (n_users, T) centered log interest x topic_coef
    "user_taste": np.float32,  # (n_users, k)
    "user_bias": np.float32,  # (n_users,)
    "user_format": np.float32,  # (n_users, F)
    "user_group": np.int16,  # (n_users,)
    "user_region": np.int16,  # (n_users,)
}
ITEM_ARRAYS = {
    "item_ids": np.str_,
    "item_topics": np.int16,  # (n_items, 3) topic indices (padding: weight 0)
    "item_topic_weights": np.float32,  # (n_items, 3)
    "item_factors": np.float32,  # (n_items, k)
    "item_quality": np.float32,  # (n_items,)
    "item_format": np.int16,  # (n_items,)
    "item_published": np.int64,  # (n_items,) epoch seconds
    "item_fresh_tau": np.float32,  # (n_items,) days
    "item_groups_ok": np.bool_,  # (n_items, G) the item targets this group (all True = everyone)
    "item_regions_ok": np.bool_,  # (n_items, R)
}
PARAM_KEYS = (
    "base_logit",
    "target_group_penalty",
    "target_region_penalty",
    "fresh_coef",
    "weekday_logit",
    "evening_logit",
    "channel_logit",
    "channel_format_logit",
    "channel_formats",
    "channels",
    "formats",
    "topics",
    "groups",
    "regions",
    "campaigns",
    "timezone",
    "end",
)


class GroundTruth:
    """Latent parameters of the synthetic city and the engagement function.

    Build it with the generator (:func:`recsys.synthetic.generate_city`) or
    :meth:`load`; it is read-only.

    Parameters
    ----------
    arrays : dict of str to ndarray
        The arrays named in ``USER_ARRAYS`` and ``ITEM_ARRAYS``.
    params : dict
        The model constants and codes named in ``PARAM_KEYS`` (JSON-ready).
    """

    def __init__(self, arrays: dict[str, np.ndarray], params: dict[str, Any]) -> None:
        self.arrays = arrays
        self.params = params

    # ---- ids -------------------------------------------------------------
    @property
    def user_ids(self) -> np.ndarray:
        """The users' ids, ndarray of str (n_users,)."""
        return self.arrays["user_ids"]

    @property
    def item_ids(self) -> np.ndarray:
        """The items' ids, ndarray of str (n_items,)."""
        return self.arrays["item_ids"]

    @cached_property
    def _user_index(self) -> pd.Index:
        return pd.Index(self.arrays["user_ids"].astype(object))

    @cached_property
    def _item_index(self) -> pd.Index:
        return pd.Index(self.arrays["item_ids"].astype(object))

    def _positions(self, index: pd.Index, ids: Sequence[str] | np.ndarray, name: str) -> np.ndarray:
        ids = np.asarray(ids, dtype=object).ravel()
        pos = index.get_indexer(ids)
        if (pos < 0).any():
            bad = ids[pos < 0][:3].tolist()
            raise ConfigError(f"{name}: unknown id(s) {bad} ({int((pos < 0).sum())} in all); not in the synthetic city")
        return pos.astype(np.int64)

    def user_positions(self, user_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Dense indices of ``user_ids``; raises ConfigError naming unknown ids."""
        return self._positions(self._user_index, user_ids, "user_ids")

    def item_positions(self, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Dense indices of ``item_ids``; raises ConfigError naming unknown ids."""
        return self._positions(self._item_index, item_ids, "item_ids")

    # ---- model pieces (shared with the generator) ------------------------
    @cached_property
    def _channel_logit(self) -> np.ndarray:
        p = self.params
        return np.array([p["channel_logit"].get(c, 0.0) for c in p["channels"]], dtype=np.float64)

    @cached_property
    def _channel_format_logit(self) -> np.ndarray:
        p = self.params
        table = p["channel_format_logit"]
        return np.array([[table.get(c, {}).get(f, 0.0) for f in p["formats"]] for c in p["channels"]], dtype=np.float64)

    @cached_property
    def _channel_formats(self) -> np.ndarray:
        p = self.params
        return np.array([[f in p["channel_formats"][c] for f in p["formats"]] for c in p["channels"]], dtype=bool)

    @cached_property
    def campaigns(self) -> tuple[Campaign, ...]:
        """The calendar's campaigns."""
        return tuple(Campaign.from_dict(c, self.params["topics"]) for c in self.params["campaigns"])

    def channel_index(self, channel: str | None) -> int:
        """Index of ``channel`` among the channels; -1 for None.

        Raises
        ------
        UnknownCodeError
            If ``channel`` is not a channel code of the city.
        """
        if channel is None:
            return -1
        channels = self.params["channels"]
        if channel not in channels:
            raise UnknownCodeError(f"unknown channel {channel!r}; valid: {', '.join(channels)}")
        return channels.index(channel)

    def static_pair_logit(self, u: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The time- and channel-free part of the logit for aligned index pairs.

        Parameters
        ----------
        u, i : ndarray of int (n,)
            User and item indices.

        Returns
        -------
        logit : ndarray float64 (n,)
        topic_fit : ndarray float64 (n,)
            The interest term alone (how well the item's topics suit the user).
        """
        a, p = self.arrays, self.params
        topics, weights = a["item_topics"][i], a["item_topic_weights"][i]
        interest = a["user_interest"]
        topic_fit = np.zeros(len(u), dtype=np.float64)
        for j in range(topics.shape[1]):
            topic_fit += weights[:, j] * interest[u, topics[:, j]]
        taste = np.einsum("ij,ij->i", a["user_taste"][u], a["item_factors"][i], dtype=np.float64)
        fmt = a["user_format"][u, a["item_format"][i]]
        off_group = ~a["item_groups_ok"][i, a["user_group"][u]]
        off_region = ~a["item_regions_ok"][i, a["user_region"][u]]
        logit = (
            p["base_logit"]
            + a["user_bias"][u]
            + a["item_quality"][i]
            + topic_fit
            + taste
            + fmt
            - p["target_group_penalty"] * off_group
            - p["target_region_penalty"] * off_region
        )
        return logit, topic_fit

    def item_time_logit(self, i: np.ndarray, t: np.ndarray, campaign_by_day: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Freshness and campaign terms of items ``i`` at epoch seconds ``t``.

        ``campaign_by_day`` is (n_days, T) and ``day`` indexes its rows.
        """
        a = self.arrays
        age_days = np.maximum(t - a["item_published"][i], 0) / SECONDS_PER_DAY
        out = self.params["fresh_coef"] * np.exp(-age_days / a["item_fresh_tau"][i])
        topics, weights = a["item_topics"][i], a["item_topic_weights"][i]
        for j in range(topics.shape[1]):
            out += weights[:, j] * campaign_by_day[day, topics[:, j]]
        return out

    @property
    def demand_shifts(self) -> list[dict[str, Any]]:
        """The planted demand shifts (topic, group, region or "" = all, onset, onset_epoch, logit)."""
        return list(self.params.get("demand_shifts", []))

    @property
    def under_served(self) -> list[dict[str, Any]]:
        """The planted under-served audiences (group, region, unreached_share, residents, unreached_users)."""
        return list(self.params.get("under_served", []))

    def _shift_columns(self, u: np.ndarray, i: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Demand shifts as a user side (n_u, S) and an item-at-time side (n_i, S) whose product is the term."""
        a, p = self.arrays, self.params
        shifts = self.demand_shifts
        users = np.zeros((len(u), len(shifts)), dtype=np.float64)
        items = np.zeros((len(i), len(shifts)), dtype=np.float64)
        for s, shift in enumerate(shifts):
            in_segment = a["user_group"][u] == p["groups"].index(shift["group"])
            if shift["region"]:
                in_segment &= a["user_region"][u] == p["regions"].index(shift["region"])
            users[:, s] = shift["logit"] * in_segment
            on_topic = a["item_topics"][i] == p["topics"].index(shift["topic"])
            weight = (a["item_topic_weights"][i] * on_topic).sum(axis=1)
            items[:, s] = weight * (np.asarray(t) >= shift["onset_epoch"])
        return users, items

    def shift_logit(self, u: np.ndarray, i: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The planted demand shifts' term for aligned (user, item, epoch seconds) triples, float64 (n,)."""
        if not self.demand_shifts:
            return np.zeros(len(u))
        users, items = self._shift_columns(u, i, t)
        return np.einsum("ns,ns->n", users, items)

    def channel_logit(self, c: int | np.ndarray, formats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Channel terms and the carries-the-format mask for channel index ``c`` (-1: none)."""
        c = np.asarray(c)
        if c.ndim == 0 and int(c) < 0:
            return np.zeros(len(formats)), np.ones(len(formats), dtype=bool)
        term = self._channel_logit[c] + self._channel_format_logit[c, formats]
        return term, self._channel_formats[c, formats]

    def _moments(self, at: TimeLike | Sequence[TimeLike] | None, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Epoch seconds, campaign rows (n_days, T), day index and weekday/evening logit of moments.

        ``at`` is None (the log's end), one tz-aware moment, or ``n`` of them.
        """
        p = self.params
        values = p["end"] if at is None else at
        scalar = at is None or isinstance(values, (str, dt.datetime, pd.Timestamp, np.datetime64))
        try:
            stamps = pd.DatetimeIndex(pd.to_datetime([values] if scalar else list(values)))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"at {at!r} is not a timestamp ({exc})") from None
        if stamps.tz is None:
            raise ConfigError(f"at {at!r} has no time zone; give tz-aware timestamps")
        if not scalar and len(stamps) != n:
            raise ConfigError(f"at must be one moment or one per pair ({n}); got {len(stamps)}")
        local = stamps.tz_convert(ZoneInfo(p["timezone"]))
        dates = np.asarray(local.date)
        unique, day = np.unique(dates, return_inverse=True)
        campaign, _, _ = campaign_effects(self.campaigns, list(unique), len(p["topics"]))
        hour = np.asarray(local.hour)
        extra = np.asarray(p["weekday_logit"], dtype=np.float64)[np.asarray(local.day_of_week)]
        extra = extra + p["evening_logit"] * ((hour >= 18) & (hour < 23))
        seconds = stamps.tz_convert("UTC").as_unit("s").asi8
        if scalar:
            seconds, day, extra = (np.full(n, seconds[0]), np.zeros(n, dtype=np.int64), np.full(n, extra[0]))
        return seconds.astype(np.int64), campaign, day.astype(np.int64), extra

    def _channels(self, channel: str | Sequence[str | None] | None, n: int) -> np.ndarray | int:
        """Channel index (-1: none) for one channel or one per pair."""
        if channel is None or isinstance(channel, str):
            return self.channel_index(channel)
        codes = list(channel)
        if len(codes) != n:
            raise ConfigError(f"channel must be one code or one per pair ({n}); got {len(codes)}")
        lookup = {c: k for k, c in enumerate(self.params["channels"])}
        bad = sorted({c for c in codes if c is not None and c not in lookup})
        if bad:
            raise UnknownCodeError(f"unknown channel {bad[0]!r}; valid: {', '.join(self.params['channels'])}")
        return np.array([-1 if c is None else lookup[c] for c in codes], dtype=np.int64)

    # ---- public API -------------------------------------------------------
    def engagement_prob(
        self,
        user_ids: Sequence[str] | np.ndarray,
        item_ids: Sequence[str] | np.ndarray,
        channel: str | None = None,
        *,
        at: TimeLike | None = None,
    ) -> np.ndarray:
        """True probability that each user positively engages with each item if pushed.

        Parameters
        ----------
        user_ids : sequence of str, length n_users
        item_ids : sequence of str, length n_items
        channel : str or None
            The channel pushed on; None leaves the channel terms out. Where the
            channel does not carry an item's format the probability is 0.
        at : timestamp-like, tz-aware, or None
            When the push happens (freshness, campaign, weekday); None = the
            log's end.

        Returns
        -------
        ndarray float64 (n_users, n_items)
            P(click or stronger).

        Raises
        ------
        ConfigError
            If an id is unknown or ``at`` is naive.
        UnknownCodeError
            If ``channel`` is not a channel code.
        """
        u = self.user_positions(user_ids)
        i = self.item_positions(item_ids)
        c = self.channel_index(channel)
        t, campaign, day, extra = self._moments(at, len(i))
        a, p = self.arrays, self.params
        formats = a["item_format"][i]
        chan, carries = self.channel_logit(c, formats)
        item_term = p["base_logit"] + a["item_quality"][i] + chan + extra + self.item_time_logit(i, t, campaign, day)
        # every term is a dot product of a user row and an item row, so one matrix product does it all
        logit = self._user_rows(u) @ self._item_rows(i, item_term).T
        if self.demand_shifts:
            users, items = self._shift_columns(u, i, t)
            logit += (users @ items.T).astype(np.float32)
        # sigmoid in place, in float32: the (n_users, n_items) array is the only big one
        np.negative(logit, out=logit)
        np.exp(logit, out=logit)
        logit += 1.0
        np.reciprocal(logit, out=logit)
        logit[:, ~carries] = 0.0
        return logit.astype(np.float64)

    def _user_rows(self, u: np.ndarray) -> np.ndarray:
        """Users' side of the logit as rows: interest, taste, format, group, region one-hots, bias, 1."""
        a, p = self.arrays, self.params
        n_g, n_r = len(p["groups"]), len(p["regions"])
        return np.hstack(
            [
                a["user_interest"][u],
                a["user_taste"][u],
                a["user_format"][u],
                np.eye(n_g, dtype=np.float32)[a["user_group"][u]],
                np.eye(n_r, dtype=np.float32)[a["user_region"][u]],
                a["user_bias"][u][:, None],
                np.ones((len(u), 1), dtype=np.float32),
            ]
        ).astype(np.float32)

    def _item_rows(self, i: np.ndarray, item_term: np.ndarray) -> np.ndarray:
        """Items' side, matching :meth:`_user_rows` column for column."""
        a, p = self.arrays, self.params
        n_t, n_f = len(p["topics"]), len(p["formats"])
        topics = np.zeros((len(i), n_t), dtype=np.float32)
        weights = a["item_topic_weights"][i]
        rows = np.repeat(np.arange(len(i)), weights.shape[1])
        np.add.at(topics, (rows, a["item_topics"][i].ravel()), weights.ravel())
        return np.hstack(
            [
                topics,
                a["item_factors"][i],
                np.eye(n_f, dtype=np.float32)[a["item_format"][i]],
                -p["target_group_penalty"] * ~a["item_groups_ok"][i],
                -p["target_region_penalty"] * ~a["item_regions_ok"][i],
                np.ones((len(i), 1), dtype=np.float32),
                np.asarray(item_term, dtype=np.float32)[:, None],
            ]
        ).astype(np.float32)

    def engagement_prob_pairs(
        self,
        user_ids: Sequence[str] | np.ndarray,
        item_ids: Sequence[str] | np.ndarray,
        channel: str | Sequence[str | None] | None = None,
        *,
        at: TimeLike | Sequence[TimeLike] | None = None,
    ) -> np.ndarray:
        """Like :meth:`engagement_prob` for aligned pairs.

        ``channel`` may also be one code (or None) per pair, and ``at`` one
        tz-aware moment per pair, e.g. to replay a push log.

        Returns
        -------
        ndarray float64 (n,)
            P(click or stronger) of ``user_ids[k]`` for ``item_ids[k]``.

        Raises
        ------
        ConfigError
            If the lengths differ, an id is unknown or ``at`` is naive.
        UnknownCodeError
            If a channel is not a channel code.
        """
        u = self.user_positions(user_ids)
        i = self.item_positions(item_ids)
        if len(u) != len(i):
            raise ConfigError(f"user_ids and item_ids must be aligned; got lengths {len(u)} and {len(i)}")
        c = self._channels(channel, len(u))
        t, campaign, day, extra = self._moments(at, len(u))
        logit, _ = self.static_pair_logit(u, i)
        formats = self.arrays["item_format"][i]
        if np.ndim(c) == 0:
            chan, carries = self.channel_logit(c, formats)
        else:
            chan, carries = np.zeros(len(u)), np.ones(len(u), dtype=bool)
            has = c >= 0
            chan[has], carries[has] = self.channel_logit(c[has], formats[has])
        logit += chan + extra + self.item_time_logit(i, t, campaign, day) + self.shift_logit(u, i, t)
        return np.where(carries, sigmoid(logit), 0.0)

    def sample_responses(
        self,
        user_ids: Sequence[str] | np.ndarray,
        item_ids: Sequence[str] | np.ndarray,
        channel: str | None = None,
        *,
        at: TimeLike | Sequence[TimeLike] | None = None,
        seed: int | np.random.Generator | None = 0,
    ) -> np.ndarray:
        """Simulate whether each pushed pair is positively engaged with.

        Returns
        -------
        ndarray bool (n,)
            One Bernoulli draw per pair from :meth:`engagement_prob_pairs`.
        """
        prob = self.engagement_prob_pairs(user_ids, item_ids, channel, at=at)
        return check_random_state(seed).random(len(prob)) < prob

    # ---- persistence ------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the truth to folder ``path`` (``.npy`` per array + ``params.json``).

        The folder is written atomically (replaced whole). Returns the path.
        """
        with atomic_dir(path) as tmp:
            for name in (*USER_ARRAYS, *ITEM_ARRAYS):
                np.save(tmp / f"{name}.npy", self.arrays[name], allow_pickle=False)
            write_json({"version": TRUTH_VERSION, **self.params}, tmp / "params.json")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = False) -> "GroundTruth":
        """Read a truth folder written by :meth:`save`.

        Parameters
        ----------
        path : str or Path
        mmap : bool, default False
            Memory-map the arrays instead of reading them.

        Raises
        ------
        ArtifactError
            If a file is missing, the version is unsupported, or shapes disagree.
        """
        folder = Path(path)
        try:
            params = json.loads((folder / "params.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{folder}: cannot read truth params.json ({exc})") from None
        version = params.pop("version", None)
        if version != TRUTH_VERSION:
            raise ArtifactError(f"{folder}: truth version {version!r} unsupported; expected {TRUTH_VERSION}")
        missing = [k for k in PARAM_KEYS if k not in params]
        if missing:
            raise ArtifactError(f"{folder}: truth params.json lacks {missing}")
        arrays = {}
        for name in (*USER_ARRAYS, *ITEM_ARRAYS):
            try:
                arrays[name] = np.load(folder / f"{name}.npy", allow_pickle=False, mmap_mode="r" if mmap else None)
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"{folder}: cannot read truth array {name}.npy ({exc})") from None
        for group, key in ((USER_ARRAYS, "user_ids"), (ITEM_ARRAYS, "item_ids")):
            n = len(arrays[key])
            bad = [name for name in group if len(arrays[name]) != n]
            if bad:
                raise ArtifactError(f"{folder}: truth arrays {bad} do not have {n} rows like {key}")
        return cls(arrays, params)


def end_iso(end_seconds: int, timezone: str) -> str:
    """ISO 8601 text (with offset, city time) of epoch seconds."""
    return dt.datetime.fromtimestamp(end_seconds, tz=ZoneInfo(timezone)).isoformat()
