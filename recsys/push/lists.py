"""Tonight's lists: the Recommender's own lists, with what may not go out excluded.

A push list is exactly ``Recommender.recommend_many(users, k=limit,
exclude=...)``: ``limit`` is what the user's frequency caps leave tonight
(at most the channel's ``k``), and the exclusions are the items pushed to
the user within the de-duplication window plus the items that expire before
the send window closes. The ranking applies its single diversity rule
(near-duplicates, the soft per-topic cap ``[ranking] max_topic_share``) and
fills each list to ``limit`` whenever that many eligible items exist; the
push adds no second topic cap, re-ranks nothing and never fetches deeper.
Users are grouped by their limit, since ``k`` is one per call and the topic
cap scales with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys import columns as C
from recsys.ranking.reasons import REASONS_TYPE

#: ``recommend(user_ids, k, exclude) -> DataFrame(user_id, rank, item_id, score, reasons)``
Recommend = Callable[[list[str], int, Mapping[str, Sequence[str]]], pd.DataFrame]


def object_index(values: Iterable[str]) -> pd.Index:
    """An Index of ids as Python strings.

    pandas 3 keeps strings in Arrow arrays by default, where ``isin`` and
    ``get_indexer`` run about ten times slower than on object arrays; the
    push works on object ids throughout.
    """
    return pd.Index(np.asarray(list(values) if not hasattr(values, "__len__") else values, dtype=object), dtype=object)


def with_object_ids(frame: pd.DataFrame, columns: Sequence[str] = (C.USER_ID, C.ITEM_ID)) -> pd.DataFrame:
    """``frame`` with its id columns as Python strings (see :func:`object_index`)."""
    present = [c for c in columns if c in frame.columns and frame[c].dtype != object]
    if not present:
        return frame
    return frame.assign(**{c: frame[c].astype(object) for c in present})


@dataclass(frozen=True)
class ItemTopics:
    """Each catalogue item's topics as flat arrays, for counting topics without Python loops.

    Build it once per catalogue with :meth:`build`; row ``j`` of ``items``
    has the topic codes ``codes[indptr[j]:indptr[j + 1]]`` (indices into ``names``).
    """

    items: pd.Index
    indptr: np.ndarray
    codes: np.ndarray
    names: tuple[str, ...]

    @classmethod
    def build(cls, topics: pd.Series) -> "ItemTopics":
        """From a Series item_id -> list of topic codes (null = none)."""
        lists = [list(t) if t is not None and not (isinstance(t, float) and np.isnan(t)) else [] for t in topics]
        lengths = np.fromiter((len(t) for t in lists), dtype=np.int64, count=len(lists))
        flat = [t for ts in lists for t in ts]
        names = tuple(sorted(set(flat)))
        return cls(
            items=object_index(topics.index.astype(str)),
            indptr=np.concatenate(([0], np.cumsum(lengths))),
            codes=pd.Index(names).get_indexer(flat).astype(np.int64),
            names=names,
        )

    def entries(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(row, topic code) pairs of the given items; unknown items have none.

        Returns
        -------
        rows : ndarray, int64
            Position in ``item_ids`` of each pair.
        codes : ndarray, int64
            Topic code (index into ``names``).
        """
        pos = self.items.get_indexer(object_index(item_ids))
        safe = np.maximum(pos, 0)
        starts = self.indptr[safe]
        lengths = np.where(pos >= 0, self.indptr[safe + 1] - starts, 0)
        rows = np.repeat(np.arange(len(pos), dtype=np.int64), lengths)
        offsets = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return rows, self.codes[np.repeat(starts, lengths) + offsets]


def exclusions(
    user_ids: Sequence[str], blocked: pd.DataFrame, drop_items: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Per user, the items not to push: their blocked pairs, then ``drop_items``.

    Parameters
    ----------
    user_ids : sequence of str
        The users wanted (others in ``blocked`` are ignored).
    blocked : DataFrame
        ``user_id, item_id`` pairs not to push (the de-duplication window).
    drop_items : sequence of str
        Items not to push to anyone.

    Returns
    -------
    dict
        user id -> list of item ids; users with nothing to exclude are absent.
    """
    ids = object_index([str(u) for u in user_ids])
    common = [str(i) for i in drop_items]
    # users with only the common items share one list (never modified: a user with blocked pairs
    # gets a new one below), so the ranking converts it to item indices once (recommend_many)
    out: dict[str, list[str]] = dict.fromkeys(ids, common) if common else {}
    if not len(blocked) or not len(ids):
        return out
    blocked = with_object_ids(blocked)
    users = blocked[C.USER_ID].to_numpy()
    keep = ids.get_indexer(users) >= 0
    users, items = users[keep], blocked[C.ITEM_ID].to_numpy()[keep]
    # one sort and split instead of a groupby: a chunk has hundreds of thousands of pairs
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.array([], dtype=np.int64)
    for user, part in zip(users[bounds], np.split(items, bounds[1:])):
        out[user] = [*part.tolist(), *out.get(user, ())]
    return out


def fetch_lists(
    recommend: Recommend,
    user_ids: Sequence[str],
    limit: pd.Series,
    *,
    blocked: pd.DataFrame,
    drop_items: Sequence[str] = (),
) -> pd.DataFrame:
    """Tonight's lists: one ``recommend`` call per distinct limit, with per-user exclusions.

    Each user's list is ``recommend([user], k=limit[user], exclude=blocked
    items of the user + drop_items)``, users of one limit ranked in one call.
    Users whose limit is 0 (or absent) get nothing.

    Parameters
    ----------
    recommend : callable
        ``recommend(user_ids, k, exclude) -> DataFrame(user_id, rank, item_id,
        score, reasons)``, ``exclude`` mapping user id -> item ids (the
        Recommender's ``recommend_many`` with the run's channel, topics and
        time bound in).
    user_ids : sequence of str
    limit : Series
        user_id -> items wanted tonight (list length and caps together).
    blocked : DataFrame
        ``user_id, item_id`` pairs not to push (the de-duplication window).
    drop_items : sequence of str
        Items not to push to anyone (eligible when the send window opens but
        expiring before it closes).

    Returns
    -------
    DataFrame
        ``user_id, rank, item_id, score, reasons``: users in the order given,
        each user's items best first, at most ``limit[user]`` of them.
    """
    ids = object_index([str(u) for u in user_ids])
    want = limit.reindex(ids).fillna(0).to_numpy(dtype=np.int64)
    excluded = exclusions(ids[want > 0], blocked, drop_items)
    done = []
    for k in np.unique(want[want > 0]):
        batch = list(ids[want == k])
        mine = {u: excluded[u] for u in batch if u in excluded}
        done.append(recommend(batch, int(k), mine))
    if not done:
        # no lists: empty columns; the reasons typed as the ranking's Arrow column, so a concat with
        # other channels' Arrow reasons keeps them in Arrow (and one with lists keeps the lists)
        empty = {c: pd.Series(dtype=object) for c in (C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE)}
        return pd.DataFrame(empty | {C.REASONS: pd.Series(pd.arrays.ArrowExtensionArray(pa.array([], REASONS_TYPE)))})
    out = with_object_ids(pd.concat(done, ignore_index=True))
    if not len(out):
        return out
    # one stable sort of two integer keys, each user's run of rows looked up once (as the chunk's rows)
    position = row_positions(ids, out[C.USER_ID].to_numpy(dtype=object))
    return out.take(np.lexsort((out[C.RANK].to_numpy(dtype=np.int64), position))).reset_index(drop=True)


def row_positions(ids: pd.Index, users: np.ndarray) -> np.ndarray:
    """Each row's position in ``ids`` (-1: not there), int64.

    A user's rows come one after another (a list), so each run of equal ids is looked up once (a
    hash lookup per row cost ~1 us a list); any order gives the same answer.
    """
    if not len(users):
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    return np.repeat(ids.get_indexer(users[starts]), np.diff(np.r_[starts, len(users)])).astype(np.int64)
