"""Readable topic-interest profiles, shrunk toward the user's group x region prior.

An item's decayed weight is split evenly over its topics. For user ``u`` and
topic ``t``::

    pos[u, t] = sum over items of positives[u, i] * share[i, t]
    neg[u, t] = sum over items of negative_weight[u, i] * share[i, t]
    profile[u, t] ∝ max(pos[u, t] - negative_factor * neg[u, t] + prior_strength * prior[seg(u), t], 0)

normalised so each row sums to 1: with little engagement the profile is the
segment prior, with much it follows the user's own engagement, and negative
feedback pulls a topic below its prior share.

Priors are hierarchical means of users' own topic distributions
(``pos[u] / sum(pos[u])``, engaged users only), each shrunk toward the level
above with ``segment_prior_strength`` pseudo-users::

    global       = mean over engaged users (catalogue topic shares if none)
    group g      = (sum over users in g + k * global) / (n_g + k)
    segment g, r = (sum over users in g, r + k * group g) / (n_gr + k)

so a sparsely populated segment leans on its group, and an empty one equals it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.columns import GROUP, ITEM_ID, REGION, TOPICS, USER_ID
from recsys.config import ProfileConfig, check_section, is_int
from recsys.exceptions import ConfigError, NotFittedError, SchemaError, UnknownCodeError
from recsys.idmap import IdMap
from recsys.training.compiled_sums import add_rows_at
from recsys.training.interactions import Interactions, positions
from recsys.taxonomy import Taxonomy

#: users per block when computing profiles: bounds the dense temporaries (block x n_topics)
_CHUNK_USERS = 100_000


def item_topic_shares(items: IdMap, items_df: pd.DataFrame, taxonomy: Taxonomy) -> sp.csr_matrix:
    """Return each item's topics as shares that sum to 1.

    Parameters
    ----------
    items : IdMap
        Row order of the result.
    items_df : DataFrame
        With ``item_id`` and ``topics`` (list of topic codes per item).
    taxonomy : Taxonomy
        Column order of the result = ``taxonomy.topics`` order.

    Returns
    -------
    csr_matrix, float32, (len(items), n_topics)

    Raises
    ------
    SchemaError
        If a column is missing, an item of ``items`` is not in ``items_df``, or
        a ``topics`` value is not a list.
    UnknownCodeError
        If a topic is not in the taxonomy.
    """
    _require(items_df, (ITEM_ID, TOPICS), "items")
    topic_codes = list(taxonomy.topics)
    col_of = {code: j for j, code in enumerate(topic_codes)}
    frame = items_df.drop_duplicates(ITEM_ID).set_index(ITEM_ID)
    positions = pd.Index(frame.index).get_indexer(pd.Index(items.ids, dtype=object))
    if (positions < 0).any():
        missing = items.ids[positions < 0]
        raise SchemaError(f"items table lacks {len(missing)} item(s) of the id map, e.g. {str(missing[0])!r}")
    rows, cols, vals = [], [], []
    for row, topics in enumerate(frame[TOPICS].to_numpy(dtype=object)[positions]):
        if isinstance(topics, str) or not hasattr(topics, "__iter__"):
            raise SchemaError(
                f"items column {TOPICS!r} must hold lists of topic codes, got {topics!r} for item {items.ids[row]!r}"
            )
        codes = list(dict.fromkeys(topics))
        for code in codes:
            if code not in col_of:
                raise UnknownCodeError(
                    f"items column {TOPICS!r} has unknown topic {code!r}; valid: {', '.join(topic_codes)}"
                )
            rows.append(row)
            cols.append(col_of[code])
            vals.append(1.0 / len(codes))
    return sp.csr_matrix(
        (np.asarray(vals, dtype=np.float32), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
        shape=(len(items), len(topic_codes)),
    )


def _require(frame: pd.DataFrame, columns: tuple[str, ...], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{table} table lacks column(s) {missing}; has {list(frame.columns)}")


def _codes_index(values: pd.Series, codes: tuple[str, ...], column: str) -> np.ndarray:
    # looked up in Arrow: no Python string per user
    idx = positions(values, codes)
    if (idx < 0).any():
        raise UnknownCodeError(
            f"users column {column!r} has unknown {column} {values.iloc[int(np.flatnonzero(idx < 0)[0])]!r}; "
            f"valid: {', '.join(codes)}"
        )
    return idx


def _shrink(sums: np.ndarray, counts: np.ndarray, parent: np.ndarray, k: float) -> np.ndarray:
    """Return ``(sums + k * parent) / (counts + k)`` row-normalised; rows with nothing inherit ``parent``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (sums + k * parent) / (counts + k)[:, None]
    out = np.where(((counts + k) > 0)[:, None], out, parent)
    return out / out.sum(axis=1, keepdims=True)


def _normalise_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total = m.sum(axis=1)
    has = total > 0
    out = np.zeros_like(m)
    out[has] = m[has] / total[has, None]
    return out, has


class TopicProfiles:
    """Per-user topic-interest weights and group x region topic priors.

    Parameters
    ----------
    config : ProfileConfig
        ``prior_strength`` (pseudo-weight of the segment prior in a user's
        profile), ``negative_factor``, ``segment_prior_strength``.
    taxonomy : Taxonomy
        Topics (column order), groups and regions (segment order).

    Attributes
    ----------
    topics_ : tuple of str
        Topic codes, the column order of every topic array.
    user_topics_ : ndarray, float32 (n_users, n_topics)
        Each row sums to 1: the user's share of interest per topic.
    user_evidence_ : ndarray, float32 (n_users,)
        The user's total decayed positive weight (how much data the profile has).
    user_segment_ : ndarray, int64 (n_users,)
        Row of ``segments_`` of each user.
    segments_ : DataFrame
        ``group, region``: every taxonomy group x region, groups outer, in
        taxonomy order; row s = segment index s.
    segment_priors_ : ndarray, float32 (n_segments, n_topics)
    group_priors_ : ndarray, float32 (n_groups, n_topics)
    global_prior_ : ndarray, float32 (n_topics,)
        Rows sum to 1.
    """

    def __init__(self, config: ProfileConfig, taxonomy: Taxonomy) -> None:
        self.config = config
        self.taxonomy = taxonomy

    def fit(self, interactions: Interactions, users_df: pd.DataFrame, items_df: pd.DataFrame) -> "TopicProfiles":
        """Compute priors and user profiles.

        Parameters
        ----------
        interactions : Interactions
        users_df : DataFrame
            ``user_id, group, region`` for every user of ``interactions.users``.
        items_df : DataFrame
            ``item_id, topics`` for every item of ``interactions.items``.

        Returns
        -------
        self

        Raises
        ------
        SchemaError
            If a column or a user/item row is missing.
        UnknownCodeError
            If a group, region or topic is not in the taxonomy.
        ConfigError
            If a config value is invalid.
        """
        check_section(self.config)
        cfg, tax = self.config, self.taxonomy
        _require(users_df, (USER_ID, GROUP, REGION), "users")
        ids = users_df[USER_ID]
        if len(ids) == len(interactions.users) and np.array_equal(interactions.users.ids, ids.to_numpy(dtype=object)):
            # the training's case: the id map was made from this table, rows in its order. Reindexing
            # would copy the whole table twice (3.1M users: seconds and ~1 GB) to read two columns
            users = users_df
        else:
            users = users_df.drop_duplicates(USER_ID).set_index(USER_ID)
            pos_in_table = pd.Index(users.index).get_indexer(pd.Index(interactions.users.ids, dtype=object))
            if (pos_in_table < 0).any():
                missing = interactions.users.ids[pos_in_table < 0]
                raise SchemaError(f"users table lacks {len(missing)} user(s) of the id map, e.g. {str(missing[0])!r}")
            users = users.iloc[pos_in_table]
        groups, regions = tuple(tax.groups), tuple(tax.regions)
        g_idx = _codes_index(users[GROUP], groups, GROUP)
        r_idx = _codes_index(users[REGION], regions, REGION)
        seg_idx = g_idx * len(regions) + r_idx

        shares = item_topic_shares(interactions.items, items_df, tax)
        n_groups, n_regions, n_topics = len(groups), len(regions), len(tax.topics)
        n_seg = n_groups * n_regions
        chunks = range(0, len(seg_idx), _CHUNK_USERS)

        # pass 1: per segment, the sum and count of engaged users' own topic distributions; each chunk's
        # positive topic mass is kept for pass 2 (float64, ~0.6 GB at the city, below the night's peak)
        # instead of multiplying the positives by the shares a second time
        seg_sums, seg_counts = np.zeros((n_seg, n_topics)), np.zeros(n_seg)
        evidence = np.zeros(len(seg_idx), dtype=np.float32)
        masses = []
        for lo in chunks:
            pos = self._topic_mass(interactions.positives, shares, lo)
            own, engaged = _normalise_rows(pos)
            seg = seg_idx[lo : lo + _CHUNK_USERS]
            add_rows_at(seg_sums, seg, own, engaged)  # np.add.at's sums, in its order (compiled_sums.py)
            seg_counts += np.bincount(seg[engaged], minlength=n_seg)
            evidence[lo : lo + len(pos)] = pos.sum(axis=1)
            masses.append(pos)
            del own

        # segments nest in groups, so group and global sums follow from segment sums
        k = cfg.segment_prior_strength
        group_sums = seg_sums.reshape(n_groups, n_regions, n_topics).sum(axis=1)
        group_counts = seg_counts.reshape(n_groups, n_regions).sum(axis=1)
        if seg_counts.sum() > 0:
            global_prior = seg_sums.sum(axis=0) / seg_counts.sum()
        elif shares.nnz:
            global_prior = np.asarray(shares.sum(axis=0), dtype=np.float64).ravel()
            global_prior /= global_prior.sum()
        else:
            global_prior = np.full(n_topics, 1.0 / n_topics)
        group_prior = _shrink(group_sums, group_counts, np.broadcast_to(global_prior, group_sums.shape), k)
        seg_prior = _shrink(seg_sums, seg_counts, np.repeat(group_prior, n_regions, axis=0), k)

        # pass 2: each user's profile, shrunk toward its segment prior
        profile = np.empty((len(seg_idx), n_topics), dtype=np.float32)
        for c, lo in enumerate(chunks):
            seg = seg_idx[lo : lo + _CHUNK_USERS]
            net, masses[c] = masses[c], None  # pass 1's positive mass of these users, let go of once used
            net -= cfg.negative_factor * self._topic_mass(interactions.negative_weight, shares, lo)
            rows, has = _normalise_rows(np.maximum(net + cfg.prior_strength * seg_prior[seg], 0.0))
            rows[~has] = seg_prior[seg[~has]]  # only negative evidence everywhere: fall back to the prior
            profile[lo : lo + len(rows)] = rows

        self.topics_ = tuple(tax.topics)
        self.user_topics_ = profile
        self.user_evidence_ = evidence
        self.user_segment_ = seg_idx
        self.segments_ = self._segment_frame()
        self.segment_priors_ = seg_prior.astype(np.float32)
        self.group_priors_ = group_prior.astype(np.float32)
        self.global_prior_ = global_prior.astype(np.float32)
        return self

    @staticmethod
    def _topic_mass(weights: sp.csr_matrix, shares: sp.csr_matrix, lo: int) -> np.ndarray:
        """Dense (chunk, n_topics) float64 topic mass of users ``lo .. lo + chunk``."""
        return np.asarray((weights[lo : lo + _CHUNK_USERS] @ shares).toarray(), dtype=np.float64)

    def _segment_frame(self) -> pd.DataFrame:
        groups, regions = list(self.taxonomy.groups), list(self.taxonomy.regions)
        return pd.DataFrame(
            {GROUP: np.repeat(groups, len(regions)), REGION: np.tile(regions, len(groups))}
        ).astype({GROUP: str, REGION: str})

    # ---- using the profiles ----------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "segment_priors_"):
            raise NotFittedError("TopicProfiles is not fitted; call fit() first")

    def segment_index(self, group: str, region: str) -> int:
        """Return the row of ``segments_`` for (group, region).

        Raises
        ------
        UnknownCodeError
            If the group or region is not in the taxonomy.
        """
        self.taxonomy.check("group", group)
        self.taxonomy.check("region", region)
        regions = list(self.taxonomy.regions)
        return list(self.taxonomy.groups).index(group) * len(regions) + regions.index(region)

    def prior_for(self, group: str, region: str) -> np.ndarray:
        """Return the topic prior of a group x region segment, float32 (n_topics,), sums to 1.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        UnknownCodeError
            If the group or region is not in the taxonomy.
        """
        self._check_fitted()
        return self.segment_priors_[self.segment_index(group, region)].copy()

    def top_topics(self, user_idx: int, n: int = 3) -> list[tuple[str, float]]:
        """Return the user's ``n`` strongest topics as ``(topic_code, weight)``, strongest first.

        Ties keep taxonomy order.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ConfigError
            If ``user_idx`` is out of range or ``n`` < 1.
        """
        self._check_fitted()
        n_users = len(self.user_topics_)
        if not is_int(user_idx) or not 0 <= user_idx < n_users:
            raise ConfigError(f"user_idx {user_idx!r} out of range; valid: 0..{n_users - 1}")
        return top_topics(self.user_topics_[user_idx], self.topics_, n)


def top_topics(weights: np.ndarray, topics: Sequence[str], n: int = 3) -> list[tuple[str, float]]:
    """Return the ``n`` heaviest topics of one profile row as ``(topic_code, weight)``, heaviest first.

    Parameters
    ----------
    weights : ndarray, shape (n_topics,)
        One row of a topic profile (e.g. ``TrainedModel.user_topics[i]``).
    topics : sequence of str
        The topic codes in column order (the taxonomy's).
    n : int
        How many (>= 1); ties keep taxonomy order.

    Raises
    ------
    ConfigError
        If ``n`` < 1 or the row and the codes differ in length.
    """
    if not is_int(n) or n < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")
    row = np.asarray(weights)
    if row.shape != (len(topics),):
        raise ConfigError(f"a profile row of shape {row.shape} does not fit {len(topics)} topics")
    order = np.argsort(-row, kind="stable")[:n]
    return [(topics[j], float(row[j])) for j in order]
