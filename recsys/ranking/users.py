"""Who is asking: a batch of users as the arrays the ranking reads.

A known user (in the bundle) brings their collaborative vector, topic profile,
history and stored group and region; ``group`` / ``sub_group`` / ``region``
given in the call override the stored ones (the platform knows the present).
An unknown (cold) user must come with a group and a region: their vector is
the cold-start centroid of that segment (blended with its topic prior), their
topic profile the segment's prior, and they have no history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.exceptions import ConfigError
from recsys.ranking.state import RankingState

#: (group, sub_group, region) given for a user; None = not given
Attributes = tuple[str | None, str | None, str | None]


@dataclass(frozen=True)
class UserBatch:
    """Arrays of m users, row r = the r-th requested user.

    Attributes
    ----------
    user_ids : list of str
    rows : ndarray of int64, shape (m,)
        Bundle user index, -1 for a cold user.
    vectors : ndarray of float32, shape (m, f)
    topics : ndarray of float32, shape (m, n_topics)
    groups, regions : ndarray of int64, shape (m,)
        Taxonomy positions (after overrides).
    segments : ndarray of int64, shape (m,)
        Row of ``Catalog.popularity``.
    memo : dict
        What the steps of one ranking pass share about these users, keyed
        by everything the value depends on (e.g. each user's co-engagement
        sums of the learned ranker's feature:
        :func:`recsys.ranking.features.coengagement_sums`).
    """

    user_ids: list[str]
    rows: np.ndarray
    vectors: np.ndarray
    topics: np.ndarray
    groups: np.ndarray
    regions: np.ndarray
    segments: np.ndarray
    memo: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.user_ids)

    def take(self, r: int) -> UserBatch:
        """The batch of row ``r`` alone."""
        sl = slice(r, r + 1)
        return UserBatch(
            [self.user_ids[r]],
            self.rows[sl],
            self.vectors[sl],
            self.topics[sl],
            self.groups[sl],
            self.regions[sl],
            self.segments[sl],
        )


def check_user_id(user_id: object) -> str:
    """Return ``user_id`` if it is a non-empty string.

    Raises
    ------
    ConfigError
    """
    if not isinstance(user_id, str) or not user_id.strip():
        raise ConfigError(f"user_id must be a non-empty string, got {user_id!r}")
    return user_id


def _check_attributes(state: RankingState, user_id: str, attrs: Attributes) -> tuple[int | None, str, int | None]:
    """Check given codes; return (group position, sub_group, region position)."""
    tax = state.taxonomy
    group, sub_group, region = attrs
    g = r = None
    for name, value in (("group", group), ("sub_group", sub_group), ("region", region)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{name} of user {user_id!r} must be a code (str), got {value!r}")
    if group is not None:
        g = list(tax.groups).index(tax.check("group", group))
    if region is not None:
        r = list(tax.regions).index(tax.check("region", region))
    sub = sub_group or ""
    if sub:
        row = state.user_pos.get(user_id) if g is None else None
        if row is not None:
            g = int(state.user_group[row])
        if g is None:
            tax.check("sub_group", sub)
        else:
            tax.check_sub_group(list(tax.groups)[g], sub)
    return g, sub, r


def resolve(
    state: RankingState, user_ids: Sequence[str], attributes: Sequence[Attributes | None] | None = None
) -> UserBatch:
    """Turn user ids (and optional attributes) into a :class:`UserBatch`.

    Parameters
    ----------
    state : RankingState
    user_ids : sequence of str
    attributes : sequence of (group, sub_group, region) or None, optional
        Per user; ``None`` entries (or values) mean "not given".

    Raises
    ------
    ConfigError
        For a bad user id, or an unknown user without both group and region.
    UnknownCodeError
        For a group, sub-group or region not in the taxonomy (listing the
        valid ones), or a sub-group outside its group.
    """
    ids = [check_user_id(u) for u in user_ids]
    m = len(ids)
    # one vectorised search of the bundle's sorted ids (memory-mapped arrays, no per-user dict)
    rows = state.user_pos.positions(ids)
    # every user's stored rows read at once (a cold user reads row 0, then is reset): a single
    # call is a few dozen microseconds of NumPy calls, each paid once, not once per kind of user
    safe = np.maximum(rows, 0)
    groups = state.user_group[safe].astype(np.int64)
    regions = state.user_region[safe].astype(np.int64)
    vectors = np.asarray(state.user_factors[safe], dtype=np.float32)
    topics = np.asarray(state.user_topics[safe], dtype=np.float32)
    cold = np.flatnonzero(rows < 0)
    if cold.size:
        groups[cold] = regions[cold] = -1
        vectors[cold] = topics[cold] = 0.0
    subs = [""] * m
    if attributes is not None:
        if len(attributes) != m:
            raise ConfigError(f"attributes has {len(attributes)} entries for {m} users")
        for i, attrs in enumerate(attributes):
            if attrs is None:
                continue
            g, sub, r = _check_attributes(state, ids[i], attrs)
            if g is not None:
                groups[i] = g
            if r is not None:
                regions[i] = r
            subs[i] = sub

    for i in cold:
        if groups[i] < 0 or regions[i] < 0:
            tax = state.taxonomy
            missing = " and ".join(n for n, v in (("group", groups[i]), ("region", regions[i])) if v < 0)
            raise ConfigError(
                f"unknown user {ids[i]!r}: a user the model has not seen needs {missing} "
                f"(groups: {', '.join(tax.groups)}; regions: {', '.join(tax.regions)})"
            )
        vectors[i] = state.cold_vector(int(groups[i]), subs[i], int(regions[i]))
        topics[i] = state.topic_prior_by_pair[groups[i], regions[i]]
    segments = state.segment_by_pair[np.maximum(groups, 0), np.maximum(regions, 0)]
    return UserBatch(ids, rows, vectors, topics, groups, regions, segments.astype(np.int64))
