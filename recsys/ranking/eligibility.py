"""Eligibility: which items may go to whom, as vectorized boolean masks.

Never optional. An item is eligible for a user at time ``now`` when all hold:

* it is in the current catalogue and ``review_status == "approved"``
  (:attr:`Catalog.available`);
* ``published_at <= now`` (no publish time = always published) and
  ``expires_at > now`` (no expiry = never expires);
* its ``target_groups`` include the user's group and its ``target_regions``
  the user's region (an empty list means everyone / everywhere);
* the request's channel carries its format, and it has one of the request's
  topics (when those filters are given);
* the user has not engaged with it positively, dismissed or reported it
  (the bundle's ``seen`` matrix), and it is not in the request's ``exclude``.

A request is checked on its candidates only (:func:`candidate_mask`, a few
hundred items), against the user's history and ``exclude`` with
:func:`history_mask`; the exact fallback and the audience search use masks
over all items (:func:`static_mask`, :func:`full_mask`). A filtered
request's allow-list comes from the per-topic / per-format item lists, and
its share of the catalogue (:func:`filter_share`) from the distinct topic sets
of a channel's items, so its cost follows the filter, not the catalogue.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.exceptions import ConfigError
from recsys.ranking.catalog import Catalog
from recsys.ranking.compiled_scoring import (
    eligible_pairs,
    frozen,
    history_hits,
    history_key_rows,
)
from recsys.taxonomy import Taxonomy
from recsys.timeutil import TimeLike, parse_time


@dataclass(frozen=True)
class ItemFilter:
    """A request's item filters, as taxonomy positions.

    Attributes
    ----------
    channel : str or None
        Channel code; only formats it carries pass.
    formats : tuple of int or None
        Format positions the channel carries.
    topics : tuple of int or None
        Topic positions; an item passes with any of them.
    """

    channel: str | None = None
    formats: tuple[int, ...] | None = None
    topics: tuple[int, ...] | None = None


def make_filter(taxonomy: Taxonomy, *, topics: Iterable[str] | str | None = None, channel: str | None = None) -> ItemFilter:
    """Check the request's ``topics`` and ``channel`` and return an :class:`ItemFilter`.

    Parameters
    ----------
    taxonomy : Taxonomy
    topics : str or iterable of str, optional
        Topic codes (one code may be given as a string). An empty list is refused.
    channel : str, optional
        A channel code.

    Raises
    ------
    UnknownCodeError
        For an unknown topic or channel, listing the valid codes.
    ConfigError
        For an empty topic list or a value of the wrong type.
    """
    channel_formats, topic_pos = _positions(taxonomy)
    formats = None
    if channel is not None:
        if not isinstance(channel, str):
            raise ConfigError(f"channel must be a channel code (str), got {channel!r}")
        formats = channel_formats.get(channel)
        if formats is None:
            taxonomy.check("channel", channel)  # raises, listing the valid codes
    topic_idx = None
    if topics is not None:
        codes = [topics] if isinstance(topics, str) else list(topics)
        if not codes:
            raise ConfigError("topics must name at least one topic code, got an empty list; use None for all topics")
        for code in codes:
            if not isinstance(code, str):
                raise ConfigError(f"topics must be topic codes (str), got {code!r}")
            if code not in topic_pos:
                taxonomy.check("topic", code)  # raises, listing the valid codes
        topic_idx = tuple(sorted({topic_pos[c] for c in codes}))
    return ItemFilter(channel=channel, formats=formats, topics=topic_idx)


# per taxonomy (by identity; a service holds one or two): each channel's format positions and each
# topic's position, made once instead of on every request
_POSITIONS: dict[int, tuple[Taxonomy, dict[str, tuple[int, ...]], dict[str, int]]] = {}


def _positions(taxonomy: Taxonomy) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    hit = _POSITIONS.get(id(taxonomy))
    if hit is None or hit[0] is not taxonomy:  # the entry holds its taxonomy: no id is reused meanwhile
        fmt_pos = {c: i for i, c in enumerate(taxonomy.formats)}
        channels = {ch: tuple(sorted(fmt_pos[f] for f in taxonomy.formats_for(ch))) for ch in taxonomy.channels}
        if len(_POSITIONS) >= 16:
            _POSITIONS.clear()
        hit = _POSITIONS[id(taxonomy)] = (taxonomy, channels, {c: i for i, c in enumerate(taxonomy.topics)})
    return hit[1], hit[2]


def to_ns(now: TimeLike | None, taxonomy: Taxonomy, default_ns: int) -> int:
    """Return ``now`` as UTC nanoseconds; ``None`` gives ``default_ns``.

    Raises
    ------
    ConfigError
        If ``now`` cannot be parsed or has no time zone.
    """
    if now is None:
        return int(default_ns)
    return int(parse_time(now, taxonomy, name="now").as_unit("ns").value)


def static_mask(catalog: Catalog, filt: ItemFilter) -> np.ndarray:
    """Available items passing the request's channel and topic filters.

    Returns
    -------
    ndarray of bool, shape (n_items,)
    """
    mask = catalog.available.copy()
    if filt.formats is not None:
        mask &= np.isin(catalog.format_code, np.asarray(filt.formats, dtype=np.int64))
    if filt.topics is not None:
        mask &= catalog.topic_bool[:, list(filt.topics)].any(axis=1)
    return mask


def passes(catalog: Catalog, filt: ItemFilter, items: np.ndarray, *, topics: bool = True) -> np.ndarray:
    """Available and passing the request's channel and topic filters (elementwise over ``items``).

    ``topics=False`` skips the topic test, for items taken from the filter's
    own per-topic lists.
    """
    ok = catalog.available[items]
    # lookup tables beat np.isin on a handful of codes; format -1 and the topic lists' padding
    # (n_topics) read the tables' last slot (False)
    formats, topic_ok = _lookup_tables(filt, len(catalog.items_by_format), len(catalog.items_by_topic))
    if filt.formats is not None:
        ok &= formats[catalog.format_code[items]]
    if topics and filt.topics is not None:
        ok &= topic_ok[catalog.topic_idx[items]].any(axis=-1)
    return ok


def topic_sets(catalog: Catalog, formats: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct topic sets of the bundle's available items of ``formats`` (None: any format),
    and how many items have each: what :func:`filter_share` counts from.

    Returns
    -------
    sets : ndarray of bool, shape (u, n_topics)
    counts : ndarray of int64, shape (u,)
    """
    n = catalog.n_bundle
    keep = catalog.available[:n].copy()
    if formats is not None:
        keep &= np.isin(catalog.format_code[:n], np.asarray(formats, dtype=np.int64))
    sets, counts = np.unique(catalog.topic_bool[:n][keep], axis=0, return_counts=True)
    return sets, counts.astype(np.int64)


def filter_share(
    catalog: Catalog, filt: ItemFilter, sets_of: Callable[[tuple[int, ...] | None], tuple[np.ndarray, np.ndarray]]
) -> float:
    """The share of the bundle's items that pass ``filt``'s static checks (available, a format the
    channel carries, any of the topics), from ``sets_of(filt.formats)``: :func:`topic_sets` (or a
    cache of it), asked only when the request has a filter.

    An item counts once however many of the topics it has: a few hundred distinct topic sets are
    read, not the union of the topics' item lists (a request with a new pair of topics paid that).
    """
    n = catalog.n_bundle
    if n == 0:
        return 0.0
    if filt.topics is None and filt.formats is None:
        # no filter: the available share, without the topic sets (np.unique over every bundle row)
        return float(catalog.available[:n].mean())
    sets, counts = sets_of(filt.formats)
    hit = counts if filt.topics is None else counts[sets[:, list(filt.topics)].any(axis=1)]
    return int(hit.sum()) / n


def live_at(catalog: Catalog, items: np.ndarray, now_ns: int) -> np.ndarray:
    """Published and unexpired at ``now`` (elementwise over an index array)."""
    return (catalog.published_ns[items] <= now_ns) & (catalog.expires_ns[items] > now_ns)


def candidate_mask(
    catalog: Catalog,
    filt: ItemFilter,
    cand: np.ndarray,
    now_ns: int,
    groups: np.ndarray,
    regions: np.ndarray,
    *,
    history: np.ndarray | None = None,
) -> np.ndarray:
    """Eligibility of candidate items, and (given ``history``) not in the user's history.

    One compiled pass over the pairs (``compiled_scoring.eligible_pairs``).

    Parameters
    ----------
    catalog : Catalog
    filt : ItemFilter
        The request's channel and topic filters.
    cand : ndarray of int64, shape (m, c)
        Candidate item indices, -1 = padding (never eligible).
    now_ns : int
    groups, regions : ndarray of int64, shape (m,)
        Each user's group and region position in the taxonomy.
    history : ndarray of int64, optional
        :func:`history_keys` of the batch, built with ``catalog.n_items``:
        the same as ``& ~history_mask(history, cand, catalog.n_items)``.

    Returns
    -------
    ndarray of bool, shape (m, c)
    """
    formats, topics = _lookup_tables(filt, len(catalog.items_by_format), len(catalog.items_by_topic))
    out = np.empty(cand.shape, dtype=bool)
    eligible_pairs(
        frozen(cand, np.int64),
        frozen(catalog.available, np.bool_),
        frozen(catalog.format_code, np.int64),
        frozen(formats, np.bool_),
        filt.formats is not None,
        frozen(catalog.topic_idx, np.int64),
        frozen(topics, np.bool_),
        filt.topics is not None,
        frozen(catalog.published_ns, np.int64),
        frozen(catalog.expires_ns, np.int64),
        int(now_ns),
        frozen(catalog.group_ok, np.bool_),
        frozen(catalog.region_ok, np.bool_),
        frozen(groups, np.int64),
        frozen(regions, np.int64),
        frozen(np.zeros(0, np.int64) if history is None else history, np.int64),
        int(catalog.n_items),
        out,
    )
    return out


@functools.lru_cache(maxsize=256)
def _lookup_tables(filt: ItemFilter, n_formats: int, n_topics: int) -> tuple[np.ndarray, np.ndarray]:
    """The filter as read-only lookup tables by format and topic position (each checked only when
    given), made once per filter (:func:`passes` and :func:`candidate_mask` read them), each with a
    last slot, False, that format -1 and the topic lists' padding (``n_topics``) read."""
    formats = np.zeros(n_formats + 1, dtype=bool)
    formats[list(filt.formats or ())] = True
    topics = np.zeros(n_topics + 1, dtype=bool)
    topics[list(filt.topics or ())] = True
    formats.setflags(write=False)
    topics.setflags(write=False)
    return formats, topics


def full_mask(catalog: Catalog, static: np.ndarray, now_ns: int, group: int, region: int) -> np.ndarray:
    """Eligibility of every item for one user, without the user's history.

    Returns
    -------
    ndarray of bool, shape (n_items,)
    """
    everything = np.arange(catalog.n_items)
    return static & live_at(catalog, everything, now_ns) & catalog.group_ok[group] & catalog.region_ok[region]


def history_keys(seen: sp.csr_matrix, rows: np.ndarray, n_items: int, excludes: list[np.ndarray] | None) -> np.ndarray:
    """Sorted keys ``batch_row * n_items + item`` of items each user may not get again.

    Parameters
    ----------
    seen : csr_matrix (n_users, n_bundle_items)
        Nonzero = engaged positively (+1) or dismissed/reported (-1).
    rows : ndarray of int64, shape (m,)
        Bundle user index of each batch row, -1 for a cold user (no history).
    n_items : int
        Size of the ranking's item index space.
    excludes : list of int64 arrays, optional
        Per batch row, extra item indices to leave out.

    Returns
    -------
    ndarray of int64
    """
    # the distinct extra lists, each once (the push gives many users the same list object)
    lists: dict[int, int] = {}
    chunks = []
    extra_of = np.full(len(rows), -1, dtype=np.int64)
    for r, extra in enumerate(excludes or ()):
        if extra is not None and len(extra):
            e = lists.get(id(extra))
            if e is None:
                e = lists[id(extra)] = len(chunks)
                chunks.append(np.asarray(extra, dtype=np.int64))
            extra_of[r] = e
    extra_ptr = np.zeros(len(chunks) + 1, dtype=np.int64)
    extra_ptr[1:] = np.cumsum([len(x) for x in chunks])
    indptr, indices = np.asarray(seen.indptr), np.asarray(seen.indices)
    # the matrix's own index type (int32 up to 2**31 stored pairs): no copy of the whole matrix
    wide = indptr.dtype == np.int64 or indices.dtype == np.int64
    index_type = np.int64 if wide else np.int32
    return history_key_rows(
        frozen(indptr, index_type),
        frozen(indices, index_type),
        frozen(rows, np.int64),
        frozen(np.concatenate(chunks) if chunks else np.zeros(0, np.int64), np.int64),
        frozen(extra_ptr, np.int64),
        frozen(extra_of, np.int64),
        int(n_items),
    )


def history_mask(keys: np.ndarray, cand: np.ndarray, n_items: int) -> np.ndarray:
    """True where a candidate is in the user's history or exclude list.

    Parameters
    ----------
    keys : ndarray of int64
        :func:`history_keys` of the batch.
    cand : ndarray of int64, shape (m, c)

    Returns
    -------
    ndarray of bool, shape (m, c)
    """
    if keys.size == 0:
        return np.zeros(cand.shape, dtype=bool)
    out = np.empty(cand.shape, dtype=bool)
    history_hits(frozen(keys, np.int64), frozen(cand, np.int64), int(n_items), out)
    return out


def seen_row(seen: sp.csr_matrix, row: int) -> np.ndarray:
    """Item indices the user engaged with, dismissed or reported (empty for -1)."""
    if row < 0:
        return np.zeros(0, dtype=np.int64)
    indptr = seen.indptr
    return np.asarray(seen.indices[indptr[row] : indptr[row + 1]], dtype=np.int64)
