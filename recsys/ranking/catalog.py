"""The current catalogue as arrays the ranking reads, aligned with the bundle.

Item index space of the ranking: ``0..n_bundle-1`` are the bundle's items (so
the bundle's per-item arrays -- factors, popularity, the seen matrix, the ANN
index ids -- apply unchanged), followed by catalogue items the bundle never
saw (``n_bundle..n-1``). A bundle item missing from the catalogue stays in the
index space but is never available; a catalogue item the bundle never saw gets
its content vector from the bundle's content model and its collaborative
vector from the item cold-start mapping, so a fresh approved item can be
recommended the same night.

Everything here depends on the catalogue only, not on the request: masks that
depend on ``now``, the user or the call's filters are built in
:mod:`recsys.ranking.eligibility`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys import schema
from recsys.config import RankingConfig
from recsys.exceptions import ConfigError, SchemaError
from recsys.ranking.diversity import Neighbours, calibrated_threshold, near_duplicates
from recsys.taxonomy import Taxonomy
from recsys.training.serving import TrainedModel

#: int64 nanoseconds standing for "no publish time" (always published) and "no expiry"
NS_MIN = np.iinfo(np.int64).min
NS_MAX = np.iinfo(np.int64).max
# the validator checks events against the data's end, never items: any fixed end will do
_FAR_FUTURE = "2200-01-01T00:00:00Z"
#: contract columns of the items table, in contract order
_ITEM_COLUMNS = (
    C.ITEM_ID,
    C.TITLE,
    C.SUMMARY,
    C.TAGS,
    C.TOPICS,
    C.FORMAT,
    C.TARGET_GROUPS,
    C.TARGET_REGIONS,
    C.REVIEW_STATUS,
    C.AUTHORITY,
    C.SOURCE,
    C.PUBLISHED_AT,
    C.EXPIRES_AT,
)


@dataclass(frozen=True)
class Catalog:
    """Item-side arrays of the ranking; row j = ranking item index j.

    Attributes
    ----------
    item_ids : ndarray of object (str), shape (n,)
    index_of : dict[str, int]
        Item id -> ranking index.
    n_bundle : int
        Items of the bundle (indices below it); later indices are catalogue
        items new to the bundle.
    available : ndarray of bool, shape (n,)
        In the catalogue and ``review_status == "approved"`` (time not checked).
    published_ns, expires_ns : ndarray of int64, shape (n,)
        UTC nanoseconds; no publish time = :data:`NS_MIN`, no expiry = :data:`NS_MAX`.
    format_code : ndarray of int64, shape (n,)
        Index into ``taxonomy.formats`` (-1 if unknown).
    topic_bool : ndarray of bool, shape (n, n_topics)
    topic_idx : ndarray of int64, shape (n, t_max)
        The item's topic positions, padded with ``n_topics`` (a column of
        zeros in the padded user profile); ``t_max`` = most topics of one item.
    topic_weight : ndarray of float32, shape (n, t_max)
        1 / (the item's topic count) per listed topic, 0 for padding.
    primary_topic : ndarray of int64, shape (n,)
        The item's first listed topic (its main subject; the per-topic cap
        counts it), or ``n_topics`` if it has none.
    group_ok : ndarray of bool, shape (n_groups, n)
        ``group_ok[g, j]``: item j may go to group g (empty target list = everyone).
    region_ok : ndarray of bool, shape (n_regions, n)
    authority : ndarray of float32, shape (n,)
        Authority term of the blend (``RankingConfig.authority_levels``).
    authority_code : ndarray of int64, shape (n,)
        Index into ``recsys.columns.AUTHORITIES``.
    cf : ndarray of float32, shape (n, f)
        Collaborative item vectors (bundle factors, then cold-start vectors).
    cf_scale : float
        Reference item norm (99th percentile) that scales relevance into [-1, 1].
    content : ndarray of float32, shape (n, d)
        L2-normalised content vectors (near-duplicates have a high cosine).
    popularity : ndarray of float32, shape (n_segments + 1, n)
        ``log1p`` segment popularity scaled to [0, 1] per row; the last row is
        the city-wide recent popularity (for users of a segment the bundle has
        no row for).
    topic_top : ndarray of int64, shape (n_topics, L)
        Per topic, its most popular available items (-1 padded).
    segment_top : ndarray of int64, shape (n_segments + 1, P)
        Per segment row of ``popularity``, its most popular available items.
    fresh_order : ndarray of int64, shape (n_fresh,)
        Available items with a publish time, oldest first.
    fresh_published : ndarray of int64, shape (n_fresh,)
        Their publish times (sorted), for ``searchsorted(now)``.
    new_items : ndarray of int64, shape (e,)
        Available items unknown to the bundle (not in its ANN index).
    items_by_topic : list of ndarray of int64
        Per topic position, the available items listing it (ascending).
    items_by_format : list of ndarray of int64
        Per format position, the available items of that format (ascending).
    topic_vectors, format_vectors : list of ndarray of float32
        ``cf`` rows of those items, contiguous: a filtered request searches
        its topics' (or formats') blocks exactly without gathering rows.
    neighbours : dict[int, tuple[int, ...]]
        Near-duplicates of each item that has any (content cosine above
        ``RankingConfig.near_duplicate_threshold``; see ``diversity.near_duplicates``).
    bundle_neighbours : dict[int, tuple[int, ...]]
        The same among the bundle's items only (reused by a catalogue update).
    rejected : int
        Catalogue rows the validator quarantined (never recommended).
    """

    item_ids: np.ndarray
    index_of: dict[str, int]
    n_bundle: int
    available: np.ndarray
    published_ns: np.ndarray
    expires_ns: np.ndarray
    format_code: np.ndarray
    topic_bool: np.ndarray
    topic_idx: np.ndarray
    topic_weight: np.ndarray
    primary_topic: np.ndarray
    group_ok: np.ndarray
    region_ok: np.ndarray
    authority: np.ndarray
    authority_code: np.ndarray
    cf: np.ndarray
    cf_scale: float
    content: np.ndarray
    popularity: np.ndarray
    topic_top: np.ndarray
    segment_top: np.ndarray
    fresh_order: np.ndarray
    fresh_published: np.ndarray
    new_items: np.ndarray
    items_by_topic: list
    items_by_format: list
    topic_vectors: list
    format_vectors: list
    neighbours: dict
    bundle_neighbours: dict
    rejected: int = 0

    @property
    def n_items(self) -> int:
        """Items in the ranking index space (bundle + new)."""
        return int(self.item_ids.shape[0])


def _bundle_neighbours(
    model: TrainedModel, content: np.ndarray, config: RankingConfig, known: Neighbours | None
) -> tuple[float, Neighbours]:
    """The calibrated near-duplicate threshold and the pairs among the bundle's items.

    The bundle's own graph serves when it was calibrated from this
    configuration's threshold (the default: serving uses the training's
    ``[ranking]``); another threshold calibrates and searches again.
    """
    base = config.near_duplicate_threshold
    graph = model.near_duplicates
    if graph is not None and graph.fits(content.shape[0], base):
        return graph.threshold, known if known is not None else graph.neighbours()
    # the threshold is calibrated on the bundle's catalogue: on one whose titles share a
    # template, every pair is "similar" and a fixed constant would call everything a duplicate
    threshold = calibrated_threshold(content, base)
    return threshold, known if known is not None else near_duplicates(content, threshold)


# ---- reading and checking a catalogue ---------------------------------------


def read_catalog(catalog: pd.DataFrame | str | Path, taxonomy: Taxonomy) -> tuple[pd.DataFrame, int]:
    """Return the clean items table of ``catalog`` and how many rows it rejected.

    :func:`check_catalog` with the rejected rows counted together.
    """
    items, rejected = check_catalog(catalog, taxonomy)
    return items, int(sum(rejected.values()))


def check_catalog(catalog: pd.DataFrame | str | Path, taxonomy: Taxonomy) -> tuple[pd.DataFrame, dict[str, int]]:
    """Return the clean items table of ``catalog`` and its rejected rows by reason.

    The catalogue goes through the contract validator (``recsys.schema``):
    rows it quarantines (unknown codes, naive timestamps, duplicate ids, ...)
    are left out, so they are never recommended.

    Parameters
    ----------
    catalog : DataFrame or path
        An items table, or a ``.parquet`` / ``.csv`` file of one.
    taxonomy : Taxonomy
        The bundle's codes.

    Returns
    -------
    items : DataFrame
        Clean contract items.
    rejected : dict
        Rows left out, by quarantine reason (``{}`` when none).

    Raises
    ------
    SchemaError
        If the file cannot be read or a required column is missing.
    ConfigError
        If ``catalog`` is neither a DataFrame nor a path.
    """
    if isinstance(catalog, (str, Path)):
        raw = schema.read_table(catalog, "items")
    elif isinstance(catalog, pd.DataFrame):
        raw = catalog
    else:
        raise ConfigError(f"catalog must be an items DataFrame or a file path, got {type(catalog).__name__}")
    empty_users = pd.DataFrame({name: pd.Series(dtype=str) for name in schema.required_columns("users")})
    empty_events = pd.DataFrame({name: pd.Series(dtype=str) for name in schema.required_columns("events")})
    result = schema.validate_tables(empty_users, raw, empty_events, taxonomy=taxonomy, end=_FAR_FUTURE)
    return result.items, {str(k): int(v) for k, v in result.counts().items() if v}


def _ns(values: pd.Series, fill: int) -> np.ndarray:
    """UTC nanoseconds of a timestamp column; nulls become ``fill``."""
    ts = pd.to_datetime(values, utc=True)
    out = ts.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return np.where(ts.isna().to_numpy(), fill, out)


def _exploded(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Every listed code of a list column as (row, code) pairs, in row order and list order.

    A cell is a list or array of codes, a ``|``-joined string (a CSV
    catalogue; empty parts dropped), or missing (no codes). One ``explode``
    over the column instead of a Python loop per item: the catalogue's arrays
    are built at every worker's start.
    """
    cells = values.to_numpy(dtype=object)
    joined = np.fromiter((isinstance(v, str) for v in cells), dtype=bool, count=len(cells))
    if joined.any():
        cells = cells.copy()
        for j in np.flatnonzero(joined):
            cells[j] = [x for x in cells[j].split("|") if x]
    flat = pd.Series(cells, copy=False).explode()
    keep = flat.notna().to_numpy()  # an empty list or a missing cell explodes to one missing value
    return flat.index.to_numpy()[keep], flat.to_numpy(dtype=object)[keep]


def _code_positions(labels: np.ndarray, codes: tuple[str, ...], name: str) -> np.ndarray:
    """Position of each label in ``codes``; an unknown label is a SchemaError naming it."""
    pos = pd.Categorical(labels, categories=list(codes)).codes.astype(np.int64)
    if (pos < 0).any():
        bad = labels[np.flatnonzero(pos < 0)[0]]
        raise SchemaError(f"catalogue column {name!r} has unknown code {str(bad)!r}; valid: {', '.join(codes)}")
    return pos


def _targets(values: pd.Series, codes: tuple[str, ...], name: str) -> np.ndarray:
    """(n_codes, n) bool: item j may go to code c (an empty list means all codes)."""
    n = len(values)
    rows, labels = _exploded(values)
    ok = np.zeros((len(codes), n), dtype=bool)
    ok[_code_positions(labels, codes, name), rows] = True
    ok[:, np.bincount(rows, minlength=n) == 0] = True
    return ok


def _topics(values: pd.Series, codes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(n, n_topics) bool of each item's topics, and its first listed topic (``n_topics``: none)."""
    n, n_topics = len(values), len(codes)
    rows, labels = _exploded(values)
    pos = _code_positions(labels, codes, C.TOPICS)
    bools = np.zeros((n, n_topics), dtype=bool)
    bools[rows, pos] = True
    primary = np.full(n, n_topics, dtype=np.int64)
    first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.zeros(0, np.int64)
    primary[rows[first]] = pos[first]
    return bools, primary


def _padded_topics(topic_bool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each item's topic positions (padded with n_topics) and equal shares summing to 1."""
    n, n_topics = topic_bool.shape
    counts = topic_bool.sum(axis=1)
    width = max(1, int(counts.max()) if n else 1)
    idx = np.full((n, width), n_topics, dtype=np.int64)
    weight = np.zeros((n, width), dtype=np.float32)
    rows, cols = np.nonzero(topic_bool)
    slot = np.arange(rows.size) - np.searchsorted(rows, rows)  # rank of each topic within its item
    idx[rows, slot] = cols
    weight[rows, slot] = 1.0 / counts[rows]
    return idx, weight


def _top_by(scores: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest ``scores`` among ``allowed`` (ties: lower index), -1 padded."""
    out = np.full(n, -1, dtype=np.int64)
    cand = np.flatnonzero(allowed)
    if cand.size == 0 or n == 0:
        return out
    s = scores[cand]
    order = np.lexsort((cand, -s))[:n]
    out[: order.size] = cand[order]
    return out


def _log_scaled(pop: np.ndarray) -> np.ndarray:
    """``log1p(p) / log1p(max p)`` per row: a few viral items do not flatten the rest."""
    lp = np.log1p(np.maximum(pop, 0.0, dtype=np.float32))
    top = lp.max(axis=1, keepdims=True) if lp.shape[1] else np.zeros((lp.shape[0], 1), np.float32)
    return np.divide(lp, top, out=np.zeros_like(lp), where=top > 0).astype(np.float32)


def build_catalog(
    model: TrainedModel,
    items: pd.DataFrame | None,
    config: RankingConfig,
    *,
    rejected: int = 0,
    bundle_neighbours: dict | None = None,
) -> Catalog:
    """Build the ranking's item arrays for ``model`` and the catalogue ``items``.

    Parameters
    ----------
    model : TrainedModel
        The bundle.
    items : DataFrame or None
        Clean contract items (see :func:`read_catalog`); ``None`` uses the
        bundle's own copy of the catalogue.
    config : RankingConfig
        Candidate-list lengths and authority levels.
    rejected : int
        Rows the validator left out (recorded on the result).
    bundle_neighbours : dict, optional
        Near-duplicate pairs among the bundle's items at
        ``config.near_duplicate_threshold``, from an earlier build. When
        omitted they come from the bundle's graph (``model.near_duplicates``,
        searched at training) if it was made at this threshold, and are
        searched here otherwise (an exact range search, seconds at 50k items).

    Returns
    -------
    Catalog

    Raises
    ------
    SchemaError
        If an item carries a code the bundle's taxonomy does not know.
    """
    tax = model.taxonomy
    n_bundle = model.n_items
    meta, present, new_frame = _align(model, items)
    n = len(meta)
    item_ids = meta[C.ITEM_ID].astype(str).to_numpy(dtype=object)
    available = present & (meta[C.REVIEW_STATUS].astype(str).to_numpy() == "approved")
    published = _ns(meta[C.PUBLISHED_AT], NS_MIN)
    expires = _ns(meta[C.EXPIRES_AT], NS_MAX)
    format_code = _positions(meta[C.FORMAT], tuple(tax.formats))
    topic_bool, primary = _topics(meta[C.TOPICS], tuple(tax.topics))
    topic_idx, topic_weight = _padded_topics(topic_bool)
    authority_code = _positions(meta[C.AUTHORITY], C.AUTHORITIES)
    levels = np.array([float(config.authority_levels.get(a, 0.0)) for a in C.AUTHORITIES], dtype=np.float32)

    new_content, new_cf = model.embed_new_items(new_frame)
    cf = np.ascontiguousarray(np.vstack([np.asarray(model.item_factors, np.float32), new_cf]))
    content = np.ascontiguousarray(np.vstack([np.asarray(model.content_vectors, np.float32), new_content]))
    cf_scale = float(np.percentile(np.linalg.norm(cf, axis=1), 99)) if n else 1.0

    # popularity rows: the bundle's segments, then the city; new items have none yet
    pop = np.vstack([np.asarray(model.segment_popularity, np.float32), np.asarray(model.popularity_recent, np.float32)])
    popularity = _log_scaled(np.hstack([pop, np.zeros((pop.shape[0], n - n_bundle), np.float32)]))

    # Static candidate lists. Topic and popular lists skip items already
    # expired at the end of the data window: they would waste slots on the
    # default request (the exact fallback covers any other ``now``).
    live = available & (expires > _window_end_ns(model))
    topic_top = np.stack(
        [_top_by(popularity[-1], live & topic_bool[:, t], config.topic_candidates) for t in range(len(tax.topics))]
    )
    segment_top = np.stack([_top_by(row, live, config.popular_candidates) for row in popularity])
    dated = np.flatnonzero(available & (published != NS_MIN))
    fresh_order = dated[np.lexsort((dated, published[dated]))]

    threshold, bundle_neighbours = _bundle_neighbours(model, content[:n_bundle], config, bundle_neighbours)
    # only the catalogue's new items are searched (against every item): the bundle's pairs are known
    neighbours = near_duplicates(content, threshold, start=n_bundle, known=bundle_neighbours)

    by_topic = [np.flatnonzero(available & topic_bool[:, t]) for t in range(len(tax.topics))]
    by_format = [np.flatnonzero(available & (format_code == f)) for f in range(len(tax.formats))]

    catalog = Catalog(
        item_ids=item_ids,
        index_of={item_id: j for j, item_id in enumerate(item_ids)},
        n_bundle=n_bundle,
        available=available,
        published_ns=published,
        expires_ns=expires,
        format_code=format_code,
        topic_bool=topic_bool,
        topic_idx=topic_idx,
        topic_weight=topic_weight,
        primary_topic=primary,
        group_ok=_targets(meta[C.TARGET_GROUPS], tuple(tax.groups), C.TARGET_GROUPS),
        region_ok=_targets(meta[C.TARGET_REGIONS], tuple(tax.regions), C.TARGET_REGIONS),
        authority=levels[authority_code],
        authority_code=authority_code,
        cf=cf,
        cf_scale=cf_scale if cf_scale > 0 else 1.0,
        content=content,
        popularity=popularity,
        topic_top=topic_top,
        segment_top=segment_top,
        fresh_order=fresh_order,
        fresh_published=published[fresh_order],
        new_items=np.arange(n_bundle, n, dtype=np.int64)[available[n_bundle:]],
        items_by_topic=by_topic,
        items_by_format=by_format,
        topic_vectors=[np.ascontiguousarray(cf[ids]) for ids in by_topic],
        format_vectors=[np.ascontiguousarray(cf[ids]) for ids in by_format],
        neighbours=neighbours,
        bundle_neighbours=bundle_neighbours,
        rejected=rejected,
    )
    # every request reads these arrays and none writes them: read-only, they go to the compiled
    # kernels as they are (``compiled_scoring.frozen`` makes no view of an array already frozen)
    for value in vars(catalog).values():
        for array in value if isinstance(value, list) else [value]:
            if isinstance(array, np.ndarray):
                array.setflags(write=False)
    return catalog


def _align(model: TrainedModel, items: pd.DataFrame | None) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Item metadata in the ranking's index space, which rows are in the catalogue, and the new items.

    A bundle item takes its current state (review status, expiry, targets, ...)
    from the catalogue; one missing from it keeps the bundle's row but is not
    present. Catalogue items the bundle never saw follow the bundle's items.
    """
    bundle_items = model.items.reset_index(drop=True)[list(_ITEM_COLUMNS)]
    n_bundle = len(bundle_items)
    if items is None:
        return bundle_items, np.ones(n_bundle, dtype=bool), bundle_items.iloc[:0]
    current = items.reset_index(drop=True)[list(_ITEM_COLUMNS)]
    bundle_pos = {item_id: j for j, item_id in enumerate(bundle_items[C.ITEM_ID].astype(str))}
    where = np.fromiter(
        (bundle_pos.get(i, -1) for i in current[C.ITEM_ID].astype(str)), dtype=np.int64, count=len(current)
    )
    known = where >= 0
    in_catalog = np.zeros(n_bundle, dtype=bool)
    in_catalog[where[known]] = True
    updated = current.loc[known].set_axis(where[known])
    new_frame = current.loc[~known].reset_index(drop=True)
    meta = pd.concat([pd.concat([updated, bundle_items.loc[~in_catalog]]).sort_index(), new_frame], ignore_index=True)
    present = np.concatenate([in_catalog, np.ones(len(new_frame), dtype=bool)])
    return meta, present, new_frame


def _positions(values: pd.Series, codes: tuple[str, ...]) -> np.ndarray:
    """Position of each code in ``codes`` (-1 if absent)."""
    return pd.Categorical(values.astype(str), categories=list(codes)).codes.astype(np.int64)


def _window_end_ns(model: TrainedModel) -> int:
    """The end of the bundle's data window in UTC nanoseconds (``NS_MIN`` if unknown)."""
    end = (model.window or {}).get("end")
    if not end:
        return NS_MIN
    ts = pd.Timestamp(end)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)
