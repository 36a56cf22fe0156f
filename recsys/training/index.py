"""The index over item vectors: top-k by inner product, exact by default.

:class:`VectorIndex` scores by inner product over the raw item factors, whose
norms differ by orders of magnitude under ALS (a rarely seen item keeps a
small vector: 700x between the 1st and 99th percentile on a 100k-user city).
Graph indexes built for such vectors miss much of the true top-k (HNSW
recall@50 0.47 at 1M users), and the usual remedies were measured to do worse
here (normalised HNSW with a re-scored wider list, the MIPS-to-L2 transform,
IVF: recall@50 0.08-0.71; benchmarks/README.md), so the default kind
(``IndexConfig.kind = "pruned"``) is exact and fast because of those norms:

* the rows are stored in descending norm order;
* a block of queries is first scored against the ``pruned_head`` largest
  rows (one GEMM); each query's k-th best there is a lower bound ``t`` on its
  true k-th best score;
* an item ``x`` can only beat ``t`` if ``|q| |x| >= t`` (Cauchy-Schwarz), so
  the rows after the last such norm are never scored; the block scores the
  rows up to the largest cut among its queries (one more GEMM), typically a
  quarter of the catalogue;
* the top-k is taken among the scores ``>= t`` only (a handful per query),
  not by a partition over every scored column.

The answer equals brute force (``recall_at_k`` is 1.0 up to ties); it is the
same code for one query (``recommend``) and a block of users (the push).
``IndexConfig.pruned_max_share`` below 1 caps the rows scored at that share of
the largest-norm items, trading exactness for time (approximate). Its default,
``"auto"``, is chosen at build: the search is run on the sample queries (the
training's seeded sample of user vectors) at each share of
:data:`AUTO_SHARES`, smallest first, against the exact top-``recall_k``, and
the first share whose recall@``recall_k`` reaches ``IndexConfig.min_recall``
is kept (1, exact, when none does or nothing can be measured). The recall
of a capped search only grows with the share (the exact top-k items it scores
are always among its answer), so the first share that passes is the smallest.
The built index records the chosen number in its config, so a loaded bundle
searches exactly as measured; an index saved before the option existed loads
exact.
``kind = "hnsw"`` keeps the faiss graph (an ``IndexFlatIP`` below
``IndexConfig.exact_threshold`` items) for catalogues far beyond a city's.
faiss only ever sees row positions ``0..n-1``; the caller's int64 ids live
beside them in ``ids_`` and are translated at the edge, so allow-lists and
results speak the caller's ids.

Allow-list rule (``search(..., allow=...)``): a pruned or flat index, or an HNSW index
given at most ``IndexConfig.allow_exact_max`` allowed ids (counting those in
the index), answers by brute force (``faiss.knn``, BLAS) over just the allowed
vectors -- exact, and faster than a graph walk whose nodes are mostly filtered
out or than a flat scan that tests every id against a selector (measured on
50k x 64: exact over 5k-15k allowed ids runs at 15-30k queries/s, HNSW with a
selector at 1-3k). A longer allow-list goes to the HNSW graph with an
``IDSelectorBatch`` in ``SearchParametersHNSW``; ``efSearch`` is raised in
proportion to how selective the list is (``ef * ntotal / len(allow)``, capped
at ``ntotal``), because the graph search only keeps allowed nodes among those
it visits.

Saved through the bundle component protocol (:mod:`recsys.bundle`): the
``vectors`` and ``ids`` arrays (in the index's row order), the faiss index in
faiss' own format for the ``flat`` and ``hnsw`` kinds, and ``index.json``
(kind, sizes, config, build recall). No pickle.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from recsys.config import AUTO, IndexConfig, check_section, is_int
from recsys.exceptions import ConfigError, NotFittedError
from recsys.seeds import check_random_state
from recsys.training import compiled_topk
from recsys.training.compiled_topk import top_k_rows

if TYPE_CHECKING:
    from recsys.bundle import BundleReader, BundleWriter

#: names of the index's files in its part of the bundle (recsys.bundle adds the suffixes)
INDEX_NAME = "index"
VECTORS_NAME = "vectors"
IDS_NAME = "ids"
META_NAME = "index"
#: 2: saved through the bundle protocol (no checksums of its own: the bundle checks them once)
#: 3: the "pruned" kind (rows in descending norm order, no faiss file)
FORMAT_VERSION = 3
KINDS = ("pruned", "flat", "hnsw")
#: the kinds stored with a faiss index file
_FAISS_KINDS = ("flat", "hnsw")
# A computed inner product may exceed |q| |x| by float32 rounding: the norm
# bound is widened by this relative margin so that no item is wrongly skipped.
_BOUND_SLACK = 1e-4
# The pruned search scores rows by whole groups of this many (a few more rows are harmless: still exact).
_GROUP = 16
# Queries scored by one GEMM in the pruned search, among those of similar cut: big enough
# for BLAS to run at speed, small enough that the cut fits every query of the group (a group
# is scored up to its largest cut: on 1M random factors a block of 150 queries scored 18.2k
# rows a query past the head in groups of 256, 11.1k in groups of 64, whose GEMMs took 0.62x
# the time; groups of 32 were no faster).
_SUB_BLOCK = 64

#: the capped shares ``pruned_max_share = "auto"`` tries, smallest first (1, exact, is the
#: fallback). On the cities' ALS factors recall@50 climbs steeply from 0.02 to 0.10 (docs/scale.md)
AUTO_SHARES = (0.02, 0.03, 0.05, 0.07, 0.10, 0.15, 0.20, 0.30, 0.50)

# Rows of the (queries x items) score block computed at once by exact search:
# keeps the block near 64 MiB whatever the catalogue size.
_EXACT_BLOCK_CELLS = 1 << 24


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row's exact ids (padding -1 dropped) that the approximate row also holds."""
    hits = 0
    total = 0
    for a, e in zip(approx, exact):
        e = e[e >= 0]
        hits += np.intersect1d(a[a >= 0], e, assume_unique=True).size
        total += e.size
    return hits / total if total else 1.0


def _check_k(k: Any) -> int:
    if not is_int(k) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def _as_matrix(values: Any, name: str, dim: int | None = None) -> np.ndarray:
    """Return ``values`` as a C-contiguous float32 (n, d) matrix, or raise."""
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D array (n, d), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ConfigError(f"{name} must be numeric, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise ConfigError(f"{name} must have {dim} columns (the index dimension), got {arr.shape[1]}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains NaN or infinite values")
    return arr


def _as_ids(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be a 1-D array of int64 ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


class VectorIndex:
    """Inner-product nearest-neighbour search over item vectors.

    Build it with :meth:`build` or :meth:`load`; the constructor only stores
    parameters.

    Parameters
    ----------
    config : IndexConfig, optional
        Thresholds and HNSW parameters; the defaults if omitted.
    seed : int or None, optional
        Seeds HNSW level assignment and the recall sample; ``None`` uses
        ``config.seed``.

    Attributes
    ----------
    index_ : faiss.Index or None
        ``IndexFlatIP`` or ``IndexHNSWFlat`` over row positions; ``None`` for
        the ``"pruned"`` kind, which searches ``vectors_`` itself.
    vectors_ : ndarray of float32, shape (n, d)
        The indexed vectors (memory-mapped after ``load(mmap=True)``); in
        descending norm order for ``"pruned"``.
    ids_ : ndarray of int64, shape (n,)
        The caller's id of each row.
    kind_ : str
        ``"pruned"``, ``"flat"`` or ``"hnsw"``.
    recall_ : float or None
        recall@``config.recall_k`` of :meth:`search` against
        :meth:`exact_search` on the build's sample queries (the ``queries``
        given to :meth:`build`, else a seeded sample of the indexed vectors);
        ``None`` when not measured.
    share_recalls_ : dict of str to float
        ``"pruned"`` with ``pruned_max_share = "auto"``: each share tried (as
        text, e.g. ``"0.05"``) and its measured recall, up to the chosen one;
        empty otherwise. ``config_.pruned_max_share`` is the share kept.
    scan_share_ : float or None
        ``"pruned"``: the mean share of the rows the same sample's searches
        scored (``None`` otherwise or until measured).
    build_seconds_ : float
        Wall time of adding the vectors to faiss.
    """

    def __init__(self, *, config: IndexConfig | None = None, seed: int | None = None) -> None:
        self.config = config
        self.seed = seed

    # ---- building ------------------------------------------------------
    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: np.ndarray | None = None,
        *,
        config: IndexConfig | None = None,
        seed: int | None = None,
        queries: np.ndarray | None = None,
    ) -> VectorIndex:
        """Index ``vectors``, choose the capped share if asked, and measure the build's recall.

        Parameters
        ----------
        vectors : ndarray, shape (n, d)
            Item vectors (converted to float32); n >= 1.
        ids : ndarray of int, shape (n,), optional
            Distinct non-negative ids of the rows; ``None`` means ``0..n-1``.
        config : IndexConfig, optional
            ``kind`` (and, for ``"hnsw"``, ``exact_threshold``) picks the kind;
            ``threads`` is the faiss thread count (use 1 where the graph must
            be reproducible: HNSW built with several threads is not
            deterministic).
        seed : int or None, optional
            Overrides ``config.seed``.
        queries : ndarray, shape (m, d), optional
            The queries the recall is measured on (and ``pruned_max_share =
            "auto"`` chosen by): the training passes a seeded sample of user
            vectors, the vectors the push searches with. ``None``: a seeded
            sample of ``config.recall_sample`` indexed vectors.

        Returns
        -------
        VectorIndex

        Raises
        ------
        ConfigError
            On a bad shape, dtype, non-finite value, duplicate or negative id,
            or a bad config value.
        """
        return cls(config=config, seed=seed)._build(vectors, ids, queries)

    def _build(self, vectors: np.ndarray, ids: np.ndarray | None, queries: np.ndarray | None) -> VectorIndex:
        config = check_section(self.config if self.config is not None else IndexConfig(), IndexConfig)
        rng = check_random_state(config.seed if self.seed is None else self.seed)
        x = _as_matrix(vectors, "vectors")
        n, d = x.shape
        if n == 0 or d == 0:
            raise ConfigError(f"vectors must have at least one row and one column, got shape {x.shape}")
        if ids is None:
            row_ids = np.arange(n, dtype=np.int64)
        else:
            row_ids = _as_ids(ids, "ids")
            if row_ids.shape[0] != n:
                raise ConfigError(f"ids has {row_ids.shape[0]} entries but vectors has {n} rows")
            if (row_ids < 0).any():
                raise ConfigError(f"ids must be >= 0 (-1 marks padding), got {int(row_ids.min())}")
            if np.unique(row_ids).size != n:
                raise ConfigError("ids must be distinct; found duplicates")

        faiss.omp_set_num_threads(config.threads)
        start = time.perf_counter()
        index: Any = None
        if config.kind == "pruned":
            kind = "pruned"
            # descending norm, ties by input row: the search stops at a norm bound
            order = np.argsort(-np.linalg.norm(x, axis=1), kind="stable")
            x = np.ascontiguousarray(x[order])
            row_ids = row_ids[order]
        elif n < config.exact_threshold:
            kind = "flat"
            index = faiss.IndexFlatIP(d)
        else:
            kind = "hnsw"
            index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.ef_construction
            index.hnsw.efSearch = config.ef_search
            # the level of each node is drawn from this generator; seeding it
            # (plus one thread) makes the graph reproducible
            index.hnsw.rng = faiss.RandomGenerator(int(rng.integers(2**31 - 1)))
        if index is not None:
            index.add(x)
        self.build_seconds_ = time.perf_counter() - start

        self.config_ = config
        self.index_ = index
        self.vectors_ = x
        self.ids_ = row_ids
        self.kind_ = kind
        self._prepare_lookup()
        self.recall_ = None
        self.scan_share_ = None
        self.share_recalls_: dict[str, float] = {}
        if queries is not None:
            sample = _as_matrix(queries, "queries", d)
        elif config.recall_sample > 0:
            sample = x[np.sort(rng.choice(n, size=min(config.recall_sample, n), replace=False))]
        else:
            sample = x[:0]
        self.recall_sample_ = int(len(sample))
        if kind != "pruned" or len(sample) == 0:
            if config.pruned_max_share == AUTO:
                self.config_ = dataclasses.replace(config, pruned_max_share=1.0)  # nothing to choose by: exact
            if len(sample):
                self.recall_ = self.recall_at_k(sample, config.recall_k)
            return self
        # the brute-force answer, computed once: what every share tried and the kept one are measured against
        _, exact = self.exact_search(sample, config.recall_k)
        if config.pruned_max_share == AUTO:
            # resolved here, once: the saved config holds the number the recall was measured at
            self.config_ = dataclasses.replace(config, pruned_max_share=self._choose_share(sample, exact))
        self.recall_, self.scan_share_ = self._capped_recall(sample, exact, self._max_rows())
        return self

    def _capped_recall(self, sample: np.ndarray, exact: np.ndarray, cap: int) -> tuple[float, float]:
        """Recall@``recall_k`` of the pruned search capped at ``cap`` rows, and the share of rows it scored."""
        scores, rows, scored = self._pruned(sample, self.config_.recall_k, max_rows=cap)
        return _recall(self._to_ids(scores, rows)[1], exact), scored / (len(sample) * self.ntotal)

    def _choose_share(self, sample: np.ndarray, exact: np.ndarray) -> float:
        """The smallest share of :data:`AUTO_SHARES` whose recall on ``sample`` reaches ``min_recall``; 1 if none.

        Fills ``share_recalls_`` with each share tried. A share whose cap is
        not above the head (which every search scores) is the head's: tried
        once, under the smallest such share; one that reaches the whole
        catalogue is exact, the fallback.
        """
        config = self.config_
        n = self.ntotal
        head = min(n, max(config.pruned_head, config.recall_k))
        last = -1
        for share in AUTO_SHARES:
            cap = max(head, math.ceil(share * n))
            if cap >= n:
                break
            if cap == last:
                continue  # the same rows as the share before: the same recall
            last = cap
            recall, _ = self._capped_recall(sample, exact, cap)
            self.share_recalls_[f"{share:g}"] = round(recall, 5)
            if recall >= config.min_recall:
                return share
        return 1.0

    def _prepare_lookup(self) -> None:
        # sorted ids -> row positions, for translating allow-lists
        self._order = np.argsort(self.ids_, kind="stable")
        self._sorted_ids = np.asarray(self.ids_)[self._order]
        # "pruned": the row norms, negated so that np.searchsorted (ascending) finds a cut
        self._neg_norms = -np.linalg.norm(self.vectors_, axis=1) if self.kind_ == "pruned" else None

    # ---- properties ----------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "index_"):
            raise NotFittedError("VectorIndex is not built; use VectorIndex.build(...) or VectorIndex.load(...)")

    @property
    def kind(self) -> str:
        """``"pruned"`` or ``"flat"`` (exact) or ``"hnsw"`` (approximate)."""
        self._check_fitted()
        return self.kind_

    @property
    def ntotal(self) -> int:
        """Number of indexed vectors."""
        self._check_fitted()
        return int(self.vectors_.shape[0])

    @property
    def dim(self) -> int:
        """Vector dimension d."""
        self._check_fitted()
        return int(self.vectors_.shape[1])

    def info(self) -> dict[str, Any]:
        """Return what a model manifest records about the index (JSON-ready)."""
        self._check_fitted()
        return {
            "kind": self.kind_,
            "ntotal": self.ntotal,
            "dim": self.dim,
            "recall_k": self.config_.recall_k,
            "recall_sample": self.recall_sample_,
            "recall_at_k": self.recall_,
            "scan_share": self.scan_share_,
            "share_recalls": self.share_recalls_,
            "build_seconds": round(float(self.build_seconds_), 4),
            "config": dataclasses.asdict(self.config_),
            "faiss_version": faiss.__version__,
        }

    # ---- search --------------------------------------------------------
    def _positions(self, allow: Any) -> np.ndarray:
        """Row positions of the allowed ids; ids not in the index are ignored."""
        wanted = _as_ids(allow, "allow")
        at = np.searchsorted(self._sorted_ids, wanted)
        at_clipped = np.minimum(at, len(self._sorted_ids) - 1)
        found = (at < len(self._sorted_ids)) & (self._sorted_ids[at_clipped] == wanted)
        return np.unique(self._order[at_clipped[found]])

    def _to_ids(self, scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Translate row positions to ids; padding becomes id -1, score -inf."""
        pad = rows < 0
        ids = np.where(pad, -1, np.asarray(self.ids_)[np.where(pad, 0, rows)]).astype(np.int64)
        scores = np.where(pad, -np.inf, scores).astype(np.float32)
        return scores, ids

    def _exact(self, q: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over all rows or the given ones; ties broken by row."""
        x = self.vectors_ if rows is None else self.vectors_[rows]
        n = x.shape[0]
        m = q.shape[0]
        kk = min(k, n)
        out_scores = np.full((m, k), -np.inf, dtype=np.float32)
        out_rows = np.full((m, k), -1, dtype=np.int64)
        if kk == 0:
            return out_scores, out_rows
        block = max(1, _EXACT_BLOCK_CELLS // max(n, 1))
        for lo in range(0, m, block):
            vals, top = top_k_rows(q[lo : lo + block] @ x.T, kk)
            out_scores[lo : lo + block, :kk] = vals
            out_rows[lo : lo + block, :kk] = top if rows is None else rows[top]
        return out_scores, out_rows

    def _pruned(self, q: np.ndarray, k: int, max_rows: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Exact top-``k`` over rows in descending norm order, stopping at the norm bound.

        Returns the scores and row positions (best first, ties by row, padded
        with -inf / -1) and how many (query, row) scores were computed.
        ``max_rows`` caps the rows scored (default: the config's share,
        :meth:`_max_rows`); never below the head.
        """
        x = self.vectors_
        n = x.shape[0]
        m = q.shape[0]
        kk = min(k, n)
        out_scores = np.full((m, k), -np.inf, dtype=np.float32)
        out_rows = np.full((m, k), -1, dtype=np.int64)
        if kk == 0 or m == 0:
            return out_scores, out_rows, 0
        head = min(n, max(self.config_.pruned_head, kk))
        cap = self._max_rows() if max_rows is None else max_rows
        if m == 1:
            return self._pruned_one(q[0], k, kk, head, cap)
        upper = min(n, max(head, cap))  # n: exact
        q_norm = np.linalg.norm(q, axis=1)
        scored = 0
        # by blocks of queries whose head scores stay near _EXACT_BLOCK_CELLS: those scores set the
        # bounds and are reused for the head's columns below (not computed twice)
        step = max(1, _EXACT_BLOCK_CELLS // head)
        for start in range(0, m, step):
            part = slice(start, min(m, start + step))
            head_scores = q[part] @ x[:head].T
            scored += head_scores.size
            if upper == head:  # capped at the head: its top k is the answer, no bound needed
                out_scores[part, :kk], out_rows[part, :kk] = top_k_rows(head_scores, kk)
                continue
            # each query's k-th best among the largest rows: a lower bound of its true k-th best
            bound = np.partition(head_scores, head - kk, axis=1)[:, head - kk]
            norm = q_norm[part]
            # a row x can beat ``bound`` only if |q| |x| >= bound (Cauchy-Schwarz). With
            # bound <= 0 any row can; a zero query scores 0 everywhere, the head's ties suffice.
            with np.errstate(divide="ignore", invalid="ignore"):
                need = np.where(
                    norm == 0,
                    np.inf,
                    np.where(bound > 0, bound / (norm * (1 + _BOUND_SLACK)), -np.inf),
                )
            cut = np.clip(np.searchsorted(self._neg_norms, -need, side="right"), head, upper)
            # Queries are scored in groups of similar cuts, so that one query with a weak
            # bound does not make its whole block score every row.
            by_cut = np.argsort(cut, kind="stable")
            b = by_cut.size
            lo = 0
            while lo < b:
                # whole groups of _GROUP rows (scoring a few more rows is harmless: still exact)
                # (never past ``upper``: a capped search scores exactly what a single query's would)
                end = min(upper, -(-int(cut[by_cut[min(b, lo + _SUB_BLOCK) - 1]]) // _GROUP) * _GROUP)
                hi = min(b, lo + _SUB_BLOCK, lo + max(1, _EXACT_BLOCK_CELLS // end))
                who = by_cut[lo:hi]
                rest = q[start + who] @ x[head:end].T if end > head else np.zeros((who.size, 0), np.float32)
                scored += rest.size
                # the top k are among the few hundred scores >= the bound: kept by one compiled pass
                # over the head's scores and the rest's, never concatenated (on 1M random factors the
                # copy cost about half the GEMM); a query's scores past its own cut cannot reach its
                # bound, so they are not read
                vals, cols = compiled_topk.top_at_least(head_scores, who, rest, bound[who], kk, limit=cut[who] - head)
                out_scores[start + who, :kk] = vals
                out_rows[start + who, :kk] = cols
                lo = hi
        return out_scores, out_rows, scored

    def _max_rows(self) -> int:
        """The most rows a pruned search scores (``pruned_max_share`` of them; all when 1: exact)."""
        share = self.config_.pruned_max_share
        # "auto" is resolved at build; an unbuilt choice (never saved so) searches exactly
        return self.ntotal if share == AUTO else math.ceil(float(share) * self.ntotal)

    def _pruned_one(
        self, q: np.ndarray, k: int, kk: int, head: int, cap: int
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """:meth:`_pruned` for one query (a single ``recommend``): the same cut, in few numpy calls."""
        x = self.vectors_
        n = x.shape[0]
        s = x[:head] @ q
        end = head
        if cap > head:  # a cap at the head (the auto share at 1M+ users) needs no cut: the head is all
            bound = float(np.partition(s, head - kk)[head - kk])
            q_norm = float(np.sqrt(q @ q))
            if q_norm == 0:
                end = head
            elif bound > 0:
                end = int(np.searchsorted(self._neg_norms, -bound / (q_norm * (1 + _BOUND_SLACK)), side="right"))
            else:
                end = n
            end = min(end, cap)
        if end > head:
            s = x[:end] @ q
        top = top_k_rows(s[None, :], kk)[1][0]  # best first, ties by row (as a batch's rows)
        scores = np.full((1, k), -np.inf, dtype=np.float32)
        rows = np.full((1, k), -1, dtype=np.int64)
        scores[0, :kk] = s[top]
        rows[0, :kk] = top
        return scores, rows, max(end, head)

    def _faiss(self, q: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Search the faiss index, through an ``IDSelectorBatch`` if ``rows`` is given."""
        faiss.omp_set_num_threads(self.config_.threads)
        if self.kind_ == "hnsw":
            ef = max(self.config_.ef_search, k)
            if rows is not None:
                # the graph walk keeps only allowed nodes among those it visits:
                # widen the beam in proportion to how few nodes are allowed
                ef = max(k, min(self.ntotal, ef * math.ceil(self.ntotal / rows.size)))
            params = faiss.SearchParametersHNSW(efSearch=ef)
        else:
            params = faiss.SearchParameters()
        if rows is not None:
            selector = faiss.IDSelectorBatch(rows.astype(np.int64))
            params.sel = selector  # ``selector`` stays referenced until the search returns
        return self.index_.search(q, k, params=params)

    def _subset_knn(self, q: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the given rows only, with faiss' BLAS brute force."""
        m = q.shape[0]
        scores = np.full((m, k), -np.inf, dtype=np.float32)
        found = np.full((m, k), -1, dtype=np.int64)
        kk = min(k, rows.size)
        if kk == 0:
            return scores, found
        faiss.omp_set_num_threads(self.config_.threads)
        subset = np.ascontiguousarray(self.vectors_[rows])
        sub_scores, sub_found = faiss.knn(q, subset, kk, metric=faiss.METRIC_INNER_PRODUCT)
        scores[:, :kk] = sub_scores
        found[:, :kk] = rows[sub_found]
        return scores, found

    def warm(self) -> None:
        """Load the compiled top-k of the exact searches now (numba's start, 0.3-0.5 s from its
        on-disk cache), so that a serving process's first search does not pay it."""
        compiled_topk.warm()

    def search(
        self, queries: np.ndarray, k: int, allow: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` best items by inner product for each query.

        Parameters
        ----------
        queries : ndarray, shape (m, d)
            Query vectors (converted to float32).
        k : int
            Results per query (>= 1). Rows with fewer candidates are padded.
        allow : ndarray of int, shape (a,), optional
            Only these ids may be returned; ids not in the index are ignored.
            Pruned or flat index, or at most ``config.allow_exact_max`` of
            them: exact brute force over just those vectors; more on an HNSW
            index: the graph search with an ``IDSelectorBatch`` (see the
            module notes).

        Returns
        -------
        scores : ndarray of float32, shape (m, k)
            Best first; padding is ``-inf``.
        ids : ndarray of int64, shape (m, k)
            Padding is ``-1``.

        Raises
        ------
        ConfigError
            On a bad ``k``, query shape or allow-list.
        NotFittedError
            If the index was neither built nor loaded.
        """
        self._check_fitted()
        q = _as_matrix(queries, "queries", self.dim)
        k = _check_k(k)
        if allow is None:
            if self.kind_ == "pruned":
                scores, rows, _ = self._pruned(q, k)
                return self._to_ids(scores, rows)
            return self._to_ids(*self._faiss(q, k, None))
        rows = self._positions(allow)
        if self.kind_ != "hnsw" or rows.size <= self.config_.allow_exact_max:
            return self._to_ids(*self._subset_knn(q, k, rows))
        return self._to_ids(*self._faiss(q, k, rows))

    def exact_search(
        self, queries: np.ndarray, k: int, allow: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force search: the oracle :meth:`search` is measured against.

        Same parameters, returns and errors as :meth:`search`; always exact,
        computed with numpy (not faiss) over the stored vectors, ties broken
        by row order.
        """
        self._check_fitted()
        q = _as_matrix(queries, "queries", self.dim)
        k = _check_k(k)
        rows = None if allow is None else self._positions(allow)
        return self._to_ids(*self._exact(q, k, rows))

    def recall_at_k(self, sample_queries: np.ndarray, k: int) -> float:
        """Mean share of the exact top-``k`` that :meth:`search` also returns.

        Parameters
        ----------
        sample_queries : ndarray, shape (m, d)
            m >= 1 queries.
        k : int
            Cut-off (>= 1); with fewer than ``k`` items the exact list is shorter.

        Returns
        -------
        float
            In [0, 1]; 1.0 for a pruned or flat index up to ties. A pruned
            index also records in ``scan_share_`` the share of rows these
            searches scored.

        Raises
        ------
        ConfigError
            On a bad ``k`` or an empty or misshapen query matrix.
        """
        self._check_fitted()
        q = _as_matrix(sample_queries, "sample_queries", self.dim)
        if q.shape[0] == 0:
            raise ConfigError("sample_queries must have at least one row")
        if self.kind_ == "pruned":
            k = _check_k(k)
            scores, rows, scored = self._pruned(q, k)
            _, approx = self._to_ids(scores, rows)
            self.scan_share_ = scored / (q.shape[0] * self.ntotal)
        else:
            _, approx = self.search(q, k)
        _, exact = self.exact_search(q, k)
        return _recall(approx, exact)

    # ---- persistence (the bundle component protocol, recsys.bundle) -----
    def save(self, writer: BundleWriter) -> None:
        """Write the faiss index (``index``), its vectors and ids, and ``index.json`` (kind, config, recall).

        Raises
        ------
        NotFittedError
            Before :meth:`build`.
        """
        self._check_fitted()
        if self.index_ is not None:
            writer.faiss(INDEX_NAME, self.index_)
        writer.array(VECTORS_NAME, np.asarray(self.vectors_))
        writer.array(IDS_NAME, np.asarray(self.ids_))
        writer.json(META_NAME, {"format_version": FORMAT_VERSION, **self.info()})

    @classmethod
    def load(cls, reader: BundleReader, *, config: IndexConfig | None = None) -> VectorIndex:
        """Rebuild an index from what :meth:`save` wrote (checksums are the bundle's to check).

        Parameters
        ----------
        reader : recsys.bundle.BundleReader
            The index's part of a bundle; memory-maps the vectors and the
            faiss storage when the reader does.
        config : IndexConfig, optional
            Search-time settings (``ef_search``, ``allow_exact_max``,
            ``threads``) to use instead of those the index was built with.

        Returns
        -------
        VectorIndex

        Raises
        ------
        ArtifactError
            If a file is missing, unreadable, of another format version, or the
            files disagree in size; the message names the file.
        """
        meta = reader.json(META_NAME)
        meta_file = f"{META_NAME}.json"
        try:
            version = meta["format_version"]
            kind = meta["kind"]
            stored_config = meta["config"]
        except (KeyError, TypeError) as exc:
            raise reader.error(meta_file, f"unreadable index metadata ({exc})") from None
        if version != FORMAT_VERSION:
            raise reader.error(meta_file, f"index format version {version!r}; this code reads {FORMAT_VERSION}")
        if kind not in KINDS:
            raise reader.error(meta_file, f"unknown index kind {kind!r}; valid: {', '.join(KINDS)}")
        vectors = reader.array(VECTORS_NAME)
        ids = reader.array(IDS_NAME)
        index = reader.faiss(INDEX_NAME) if kind in _FAISS_KINDS else None
        if vectors.ndim != 2 or vectors.dtype != np.float32:
            raise reader.error(f"{VECTORS_NAME}.npy", "expected a float32 (n, d) array")
        if ids.ndim != 1 or ids.dtype != np.int64 or ids.shape[0] != vectors.shape[0]:
            raise reader.error(f"{IDS_NAME}.npy", f"expected {vectors.shape[0]} int64 ids")
        if index is not None and (index.ntotal != vectors.shape[0] or index.d != vectors.shape[1]):
            raise reader.error(
                f"{INDEX_NAME}.faiss",
                f"holds {index.ntotal} x {index.d} vectors but {VECTORS_NAME}.npy is "
                f"{vectors.shape[0]} x {vectors.shape[1]}",
            )

        fields = {f.name for f in dataclasses.fields(IndexConfig)}
        # an index saved before pruned_max_share existed searched exactly: it still does
        stored_config = {"pruned_max_share": 1.0, **stored_config}
        built_config = IndexConfig(**{key: v for key, v in stored_config.items() if key in fields})
        if config is not None and config.pruned_max_share == AUTO:
            # the share is the build's measured choice, not a search-time setting: kept unless given
            config = dataclasses.replace(config, pruned_max_share=built_config.pruned_max_share)
        self = cls(config=config if config is not None else built_config, seed=built_config.seed)
        self.config_ = check_section(self.config, IndexConfig)
        self.index_ = index
        self.vectors_ = vectors
        self.ids_ = ids
        self.kind_ = kind
        self.recall_ = meta.get("recall_at_k")
        self.recall_sample_ = int(meta.get("recall_sample", min(self.config_.recall_sample, vectors.shape[0])))
        self.scan_share_ = meta.get("scan_share")
        self.share_recalls_ = dict(meta.get("share_recalls") or {})
        self.build_seconds_ = float(meta.get("build_seconds", 0.0))
        self._prepare_lookup()
        if kind == "pruned":
            norms = -self._neg_norms
            # the search's cut assumes descending norms (a last-bit difference is within the slack)
            if norms.size > 1 and (np.diff(norms) > _BOUND_SLACK * norms[:-1]).any():
                raise reader.error(f"{VECTORS_NAME}.npy", "rows are not in descending norm order (the pruned kind needs it)")
        return self
