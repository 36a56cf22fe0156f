"""From ranked candidates to tonight's lists: de-duplication, topic cap, caps.

The Recommender gives each user ranked, eligible candidates. A push list
then drops what the user was pushed within the de-duplication window, keeps
at most ``topic_cap`` items of one topic (soft: items over the cap are put
back, in rank order, only when the list would otherwise be short), and is cut
to what the user's frequency caps leave tonight. Everything here is
vectorized over all users of a chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from recsys import columns as C

#: internal helper columns
_POS = "_user_pos"
_DEFER = "_deferred"


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


def drop_pairs(candidates: pd.DataFrame, blocked: pd.DataFrame) -> pd.DataFrame:
    """Remove candidate rows whose (user_id, item_id) is in ``blocked`` (order kept)."""
    if not len(blocked) or not len(candidates):
        return candidates
    keys = [C.USER_ID, C.ITEM_ID]
    marks = with_object_ids(blocked[keys]).drop_duplicates().assign(_blocked=True)
    hit = with_object_ids(candidates)[keys].merge(marks, on=keys, how="left")["_blocked"].notna().to_numpy()
    return candidates[~hit]


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


def _as_item_topics(item_topics: "ItemTopics | pd.Series") -> ItemTopics:
    return item_topics if isinstance(item_topics, ItemTopics) else ItemTopics.build(item_topics)


def topic_deferred(
    candidates: pd.DataFrame, item_topics: "ItemTopics | pd.Series", topic_cap: int, exempt: Iterable[str] = ()
) -> np.ndarray:
    """Flag candidates that would go over the per-topic cap of their list.

    A candidate is deferred when, for one of its topics, ``topic_cap`` items
    ranked above it in the same list already carry that topic. Topics in
    ``exempt`` (the topic a run is restricted to) are not capped.

    Parameters
    ----------
    candidates : DataFrame
        ``user_id, item_id`` in list order (each user's rows together, best first).
    item_topics : ItemTopics or Series
        The catalogue's topics (a Series item_id -> list of topic codes is converted).
    topic_cap : int
    exempt : iterable of str

    Returns
    -------
    ndarray, bool (len(candidates),)
    """
    n = len(candidates)
    deferred = np.zeros(n, dtype=bool)
    if n == 0:
        return deferred
    topics = _as_item_topics(item_topics)
    user, _ = pd.factorize(with_object_ids(candidates)[C.USER_ID])
    rows, codes = topics.entries(candidates[C.ITEM_ID].to_numpy())
    keep = ~np.isin(codes, [topics.names.index(t) for t in exempt if t in topics.names])
    rows, codes = rows[keep], codes[keep]
    # how many earlier rows of the same list share the topic: a stable sort by
    # (user, topic) keeps list order inside each run; the count is the position in the run
    key = user[rows].astype(np.int64) * (len(topics.names) + 1) + codes
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    position = np.arange(len(order))
    run_start = np.maximum.accumulate(np.where(np.r_[True, sorted_key[1:] != sorted_key[:-1]], position, 0))
    before = np.empty(len(order), dtype=np.int64)
    before[order] = position - run_start
    np.logical_or.at(deferred, rows, before >= topic_cap)
    return deferred


def assemble_lists(
    candidates: pd.DataFrame,
    *,
    limit: pd.Series,
    item_topics: ItemTopics | pd.Series,
    topic_cap: int,
    blocked: pd.DataFrame | None = None,
    exempt_topics: Iterable[str] = (),
) -> pd.DataFrame:
    """Turn ranked candidates into final lists.

    Parameters
    ----------
    candidates : DataFrame
        ``user_id, rank, item_id, score, reasons`` (the Recommender's output;
        other columns are kept).
    limit : Series
        user_id -> most items this user may get tonight (list length and
        caps together); users absent or at 0 get nothing.
    item_topics : ItemTopics or Series
        The catalogue's topics (item_id -> list of topic codes).
    topic_cap : int
        Soft per-topic cap inside a list.
    blocked : DataFrame, optional
        ``user_id, item_id`` pairs not to push (the de-duplication window).
    exempt_topics : iterable of str
        Topics not capped.

    Returns
    -------
    DataFrame
        The same columns, at most ``limit[user]`` rows per user, ``rank``
        renumbered 1..n in list order; users in their order of appearance.
    """
    candidates = with_object_ids(candidates)
    if blocked is not None:
        candidates = drop_pairs(candidates, blocked)
    if not len(candidates):
        return candidates.reset_index(drop=True)
    users = pd.Index(pd.unique(candidates[C.USER_ID]))
    frame = candidates.assign(**{_POS: users.get_indexer(candidates[C.USER_ID])})
    frame = frame.sort_values([_POS, C.RANK], kind="stable")
    frame = frame.drop_duplicates([C.USER_ID, C.ITEM_ID])
    frame[_DEFER] = topic_deferred(frame, item_topics, topic_cap, exempt_topics)
    # items over the topic cap go behind the others, keeping rank order among each kind
    frame = frame.sort_values([_POS, _DEFER, C.RANK], kind="stable")
    room = limit.reindex(users).fillna(0).to_numpy(dtype=np.int64)
    position = frame.groupby(_POS, sort=False).cumcount().to_numpy()
    frame = frame[position < room[frame[_POS].to_numpy()]].copy()
    frame[C.RANK] = (frame.groupby(_POS, sort=False).cumcount() + 1).astype(np.int16)
    return frame.drop(columns=[_POS, _DEFER]).reset_index(drop=True)


def fetch_lists(
    recommend: Callable[[list[str], int], pd.DataFrame],
    user_ids: Sequence[str],
    limit: pd.Series,
    *,
    item_topics: ItemTopics | pd.Series,
    topic_cap: int,
    blocked: pd.DataFrame,
    exempt_topics: Iterable[str] = (),
    max_k: int = 1000,
    drop_items: Sequence[str] = (),
) -> pd.DataFrame:
    """Rank, de-duplicate and cap lists, fetching deeper only for users who need it.

    The Recommender ranks a fixed ``k`` for a batch; items pushed within the
    de-duplication window are dropped afterwards. Users with nothing to drop
    are ranked at ``k = limit`` (the Recommender's own list); the others start
    at ``2 * limit + 4``. A user whose list comes out short while the ranking
    returned a full ``k`` (so more eligible items may exist) is ranked again
    with a four times deeper ``k``, until the list is full, the ranking runs
    dry, or ``k`` reaches ``2 * limit + blocked items`` (deep enough that the
    blocked items cannot crowd the list out).

    Parameters
    ----------
    recommend : callable
        ``recommend(user_ids, k) -> DataFrame(user_id, rank, item_id, score, reasons)``.
    user_ids : sequence of str
    limit : Series
        user_id -> items wanted tonight.
    item_topics, topic_cap, exempt_topics
        As in :func:`assemble_lists`.
    blocked : DataFrame
        ``user_id, item_id`` pairs not to push.
    max_k : int
        The deepest ``k`` the Recommender accepts.
    drop_items : sequence of str
        Items not to push to anyone (eligible when the send window opens but
        expiring before it closes); like blocked pairs, they deepen the fetch.

    Returns
    -------
    DataFrame
        Final lists (see :func:`assemble_lists`), users in the order given.
    """
    ids = object_index([str(u) for u in user_ids])
    item_topics = _as_item_topics(item_topics)
    want = limit.reindex(ids).fillna(0).to_numpy(dtype=np.int64)
    blocked = with_object_ids(blocked)
    blocked_per_user = blocked[C.USER_ID].value_counts().reindex(ids).fillna(0).to_numpy(dtype=np.int64)
    dropped = object_index([str(i) for i in drop_items])
    ceiling = np.minimum(2 * want + blocked_per_user + len(dropped), max_k)
    done = []
    # users with nothing blocked take the Recommender's list as it is (k = their want);
    # the others start deeper, to make room for what the window removes
    for group in (
        np.flatnonzero((want > 0) & (blocked_per_user == 0)),
        np.flatnonzero((want > 0) & (blocked_per_user > 0)),
    ):
        if not group.size:
            continue
        deep = bool(blocked_per_user[group[0]]) or len(dropped) > 0
        k = int(min(max_k, 2 * want[group].max() + 4 if deep else want[group].max()))
        pending = group
        while pending.size:
            batch = ids[pending]
            candidates = recommend(list(batch), k)
            ranked = candidates[C.USER_ID].value_counts().reindex(batch).fillna(0).to_numpy()
            if len(dropped):
                candidates = candidates[~with_object_ids(candidates)[C.ITEM_ID].isin(dropped)]
            lists = assemble_lists(
                candidates,
                limit=limit,
                item_topics=item_topics,
                topic_cap=topic_cap,
                blocked=blocked,
                exempt_topics=exempt_topics,
            )
            got = lists[C.USER_ID].value_counts().reindex(batch).fillna(0).to_numpy()
            final = (got >= want[pending]) | (ranked < k) | (k >= ceiling[pending]) | (k >= max_k)
            done.append(lists[lists[C.USER_ID].isin(batch[final])])
            pending = pending[~final]
            k = min(max_k, 4 * k)
    if not done:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in (C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE, C.REASONS)})
    out = pd.concat(done, ignore_index=True)
    position = ids.get_indexer(out[C.USER_ID])
    return out.assign(_p=position).sort_values(["_p", C.RANK], kind="stable").drop(columns="_p").reset_index(drop=True)
