"""Collaborative user and item factors with ``implicit`` (ALS by default, BPR selectable).

ALS (Hu, Koren & Volinsky 2008) fits every (user, item) pair: a pair with
positive engagement has preference 1 and confidence ``1 + alpha * r`` (``r``
= the decayed positive weight of :class:`~recsys.training.interactions.Interactions`),
every other pair preference 0 and confidence 1.

Negative feedback is handled twice, on purpose:

1. In the ALS fit, a pair with a ``dismiss``/``report`` gets preference 0 with
   confidence ``1 + alpha * n`` (``n`` = decayed negative weight; implicit's
   convention for a negative entry), even if the user had engaged with it
   before: the explicit "not for me" wins. BPR treats every stored entry as a
   positive, so for BPR such pairs are simply left out.
2. :meth:`CollaborativeModel.score` subtracts ``negative_penalty`` for every
   pair with negative feedback. The fit alone cannot promise that a dismiss
   lowers the score (re-fitting moves every factor); the penalty makes "a
   dismissed item scores lower for that user than before" hold for
   ``score()`` whatever the factors do.

Factors are float32; user ``i`` / item ``j`` are the indices of the
interactions' id maps. For BPR implicit appends an item-bias column (users
hold 1.0 there), so factors are ``factors + 1`` wide.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.config import CollaborativeConfig, check_section, is_int
from recsys.exceptions import ConfigError, NotFittedError
from recsys.idmap import IdMap
from recsys.training.interactions import Interactions
from recsys.training.memory import release_pages
from recsys.seeds import check_random_state


class WarmStart(NamedTuple):
    """The previous model's factors, keyed by id, to start a fit from.

    Attributes
    ----------
    user_ids : sequence of str, length n_prev_users, or None
    user_factors : ndarray, (n_prev_users, width)
    item_ids : sequence of str, length n_prev_items, or None
    item_factors : ndarray, (n_prev_items, width)
        ``width`` must be the model's factor width (``factors``, or
        ``factors + 1`` for BPR).
    user_rows, item_rows : ndarray of int, optional
        Each of today's users / items: its row in ``user_factors`` /
        ``item_factors``, -1 when new -- the lookup by id done already (a
        city's 3.1M user ids need not be hashed again); the ids may then be
        None.
    """

    user_ids: Sequence[str] | None
    user_factors: np.ndarray
    item_ids: Sequence[str] | None
    item_factors: np.ndarray
    user_rows: np.ndarray | None = None
    item_rows: np.ndarray | None = None


def als_confidence(interactions: Interactions, alpha: float) -> sp.csr_matrix:
    """Return the signed confidence matrix the ALS fit uses.

    Parameters
    ----------
    interactions : Interactions
    alpha : float
        Confidence per unit of decayed weight.

    Returns
    -------
    csr_matrix, float32, (n_users, n_items)
        ``1 + alpha * positives`` where the pair has positive engagement and
        no negative feedback; ``-(1 + alpha * negative_weight)`` where it has
        negative feedback (implicit reads a negative entry as preference 0
        with confidence ``|value|``); absent elsewhere.
    """
    # engaged / negatives are 1.0 on their pairs, so these give 1 + alpha * weight there
    # (and stay right when a very old event's decayed weight underflowed to 0)
    pos = interactions.engaged.astype(np.float64) + alpha * interactions.positives.astype(np.float64)
    neg = interactions.negatives.astype(np.float64) + alpha * interactions.negative_weight.astype(np.float64)
    # a pair with negative feedback loses its positive entry: the dismiss wins
    pos = pos - pos.multiply(interactions.negatives.astype(bool))
    out = sp.csr_matrix(pos - neg)
    out.eliminate_zeros()
    out.sort_indices()
    return out.astype(np.float32)


def _bpr_positives(interactions: Interactions) -> sp.csr_matrix:
    # BPR reads every stored entry as "liked": keep engaged pairs without negative feedback
    engaged = interactions.engaged.astype(np.float32)
    keep = sp.csr_matrix(engaged - engaged.multiply(interactions.negatives.astype(bool)))
    keep.eliminate_zeros()
    keep.sort_indices()
    return keep


#: rows copied per block from a previous model's factors (a fancy-indexed copy of all of them at
#: once would be a temporary of the city's whole user side, 0.8 GB)
_COPY_BLOCK = 1 << 18


def _copy_rows(out: np.ndarray, values: np.ndarray, rows: np.ndarray) -> None:
    """``out[k] = values[rows[k]]`` wherever ``rows[k] >= 0``, without a temporary of the whole side.

    The usual night keeps yesterday's ids in their places (``rows`` starts with
    ``0..len(values)-1``): one straight copy. Otherwise block by block.
    """
    n_prev = len(values)
    if n_prev <= len(rows) and np.array_equal(rows[:n_prev], np.arange(n_prev)) and (rows[n_prev:] < 0).all():
        out[:n_prev] = values
        return
    for start in range(0, len(rows), _COPY_BLOCK):
        block = rows[start:start + _COPY_BLOCK]
        hit = np.flatnonzero(block >= 0)
        out[start + hit] = values[block[hit]]


def _solve_rows(conf: sp.csr_matrix, factors: np.ndarray, regularization: float) -> np.ndarray:
    """Closed-form least squares per row of a signed confidence matrix.

    For each row ``u``: ``x_u = (YtY + reg I + sum_i (|c_ui| - 1) y_i y_i^T)^-1
    sum_{c_ui > 0} c_ui y_i`` -- the exact ALS update implicit's
    ``recalculate_user`` computes. Rows without entries get zeros.
    """
    y = np.asarray(factors, dtype=np.float64)
    width = y.shape[1]
    base = y.T @ y + regularization * np.eye(width)
    out = np.zeros((conf.shape[0], width), dtype=np.float64)
    for row in range(conf.shape[0]):
        lo, hi = conf.indptr[row], conf.indptr[row + 1]
        if lo == hi:
            continue
        cols = conf.indices[lo:hi]
        c = conf.data[lo:hi].astype(np.float64)
        ys = y[cols]
        a = base + (ys.T * (np.abs(c) - 1.0)) @ ys
        b = ys.T @ np.where(c > 0, c, 0.0)
        out[row] = np.linalg.solve(a, b)
    return out


class CollaborativeModel:
    """User and item factors from implicit feedback.

    Parameters
    ----------
    config : CollaborativeConfig
        Algorithm, factors, regularization, alpha, iterations, threads, seed,
        ``negative_penalty``. ALS runs are deterministic for a seed at any
        thread count (each row is solved independently); BPR's parallel SGD is
        not, so set ``threads = 1`` where BPR must be reproducible.

    Attributes
    ----------
    user_factors_ : ndarray, float32 (n_users, width)
    item_factors_ : ndarray, float32 (n_items, width)
        ``width`` = ``factors`` (ALS) or ``factors + 1`` (BPR: item bias column).
        Users/items without any fitted entry get zero vectors (ALS).
    negatives_ : csr_matrix, float32 (n_users, n_items)
        1.0 where the pair had negative feedback; ``score`` subtracts the penalty there.
    users_, items_ : IdMap
        Row/column ids, from the interactions.
    iterations_ : int
        Iterations the last fit ran.
    """

    def __init__(self, config: CollaborativeConfig) -> None:
        self.config = config

    # ---- fitting ---------------------------------------------------------
    @property
    def width(self) -> int:
        """Width of a factor vector: ``factors`` (+1 for BPR's bias column)."""
        return self.config.factors + (1 if self.config.algorithm == "bpr" else 0)

    def fit(
        self,
        interactions: Interactions,
        *,
        warm_start: WarmStart | tuple | None = None,
        iterations: int | None = None,
        show_progress: bool = False,
    ) -> "CollaborativeModel":
        """Fit the factors.

        Parameters
        ----------
        interactions : Interactions
            What to fit (ALS: :func:`als_confidence` of it; BPR: its positive,
            non-dismissed pairs).
        warm_start : WarmStart or 4-tuple, optional
            ``(user_ids, user_factors, item_ids, item_factors)`` of a previous
            model. Known users and items start from their previous factors;
            new ones start from a seeded small random vector and then, for
            ALS, from the exact least-squares fold-in against the known side
            (new items first, then new users).
        iterations : int, optional
            Default: ``config.iterations``, or ``config.warm_start_iterations``
            with a warm start.
        show_progress : bool, default False

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            On an invalid config, ``iterations`` < 0, input that is not
            :class:`Interactions`, or warm-start arrays of the wrong shape.
        """
        cfg = self.config
        check_section(cfg)
        if not isinstance(interactions, Interactions):
            raise ConfigError(f"fit needs an Interactions object, got {type(interactions).__name__}")
        if warm_start is not None:
            warm_start = WarmStart(*warm_start)
        n_iter = iterations
        if n_iter is None:
            n_iter = cfg.warm_start_iterations if warm_start is not None else cfg.iterations
        if not is_int(n_iter) or n_iter < 0:
            raise ConfigError(f"iterations must be an integer >= 0, got {n_iter!r}")

        train = als_confidence(interactions, cfg.alpha) if cfg.algorithm == "als" else _bpr_positives(interactions)
        # implicit parallelises over rows itself; a threaded BLAS underneath only slows it
        # down. Import implicit first so the BLAS it loads is there to be limited.
        # heavy: implicit (and its BLAS) loads when factors are fitted, not with the training package
        import implicit.cpu.als  # noqa: F401
        import implicit.cpu.bpr  # noqa: F401

        with threadpool_limits(limits=1, user_api="blas"):
            model = self._implicit_model(int(n_iter))
            if warm_start is not None:
                model.user_factors, model.item_factors = self._warm_factors(warm_start, interactions, train)
            model.fit(train, show_progress=show_progress)

        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.negatives_ = interactions.negatives.tocsr().astype(np.float32)
        self.users_ = interactions.users
        self.items_ = interactions.items
        self.iterations_ = int(n_iter)
        return self

    def update(
        self,
        interactions: Interactions,
        warm_start: WarmStart | tuple,
        changed_users: np.ndarray,
        *,
        sweeps: int = 2,
    ) -> "CollaborativeModel":
        """Move a previous ALS model to today's interactions without a full fit (the nightly update).

        Starts from ``warm_start`` (new users and items from their exact
        fold-in, as in :meth:`fit`), then ``sweeps`` times: re-solve the users
        in ``changed_users`` (those with new events) against the item factors,
        then every item against all user factors -- implicit's own conjugate
        gradient step, the one its ``fit`` runs, on the same confidences.
        Users without new events keep yesterday's factors: their confidences
        only decayed, by the same factor for all of their items.

        Parameters
        ----------
        interactions : Interactions
            Today's matrices (all events, decayed to today).
        warm_start : WarmStart or 4-tuple
            Yesterday's factors, keyed by id.
        changed_users : ndarray of int
            Row indices of the users to re-solve.
        sweeps : int, default 2

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            For BPR (no closed-form sweep), ``sweeps`` < 1, or warm-start
            arrays of the wrong shape.
        """
        cfg = self.config
        check_section(cfg)
        if cfg.algorithm != "als":
            raise ConfigError(f"an incremental update needs algorithm 'als', not {cfg.algorithm!r}; retrain with --full")
        if not is_int(sweeps) or sweeps < 1:
            raise ConfigError(f"sweeps must be an integer >= 1, got {sweeps!r}")
        train = als_confidence(interactions, cfg.alpha)
        changed = np.asarray(changed_users, dtype=np.int64)
        # heavy: implicit loads when factors are updated; before threadpool_limits, as in fit
        import implicit.cpu.als  # noqa: F401

        with threadpool_limits(limits=1, user_api="blas"):
            users, items = self._warm_factors(WarmStart(*warm_start), interactions, train)
            solver = self._implicit_model(1).solver
            by_item = train.T.tocsr()
            sub = train[changed]
            for _ in range(int(sweeps)):
                part = np.ascontiguousarray(users[changed])
                solver(sub, part, items, cfg.regularization, num_threads=cfg.threads)
                users[changed] = part
                solver(by_item, items, users, cfg.regularization, num_threads=cfg.threads)

        self.user_factors_ = np.ascontiguousarray(users, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(items, dtype=np.float32)
        self.negatives_ = interactions.negatives.tocsr().astype(np.float32)
        self.users_ = interactions.users
        self.items_ = interactions.items
        self.iterations_ = int(sweeps)
        return self

    def _implicit_model(self, iterations: int) -> Any:
        cfg = self.config
        if cfg.algorithm == "als":
            from implicit.cpu.als import AlternatingLeastSquares  # heavy: implicit only to fit

            # alpha is applied by als_confidence (c = 1 + alpha r), so implicit gets alpha = 1
            return AlternatingLeastSquares(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=1.0,
                iterations=iterations,
                num_threads=cfg.threads,
                random_state=cfg.seed,
            )
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=cfg.factors,
            learning_rate=cfg.learning_rate,
            regularization=cfg.regularization,
            iterations=iterations,
            num_threads=cfg.threads,
            random_state=cfg.seed,
        )

    def _warm_factors(
        self, warm: WarmStart, interactions: Interactions, train: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        width = self.width
        n_users, n_items = interactions.shape
        prev = {}
        sides = (
            ("user", warm.user_ids, warm.user_factors, warm.user_rows, interactions.users),
            ("item", warm.item_ids, warm.item_factors, warm.item_rows, interactions.items),
        )
        for side, ids, values, rows, current in sides:
            values = np.asarray(values)
            if ids is None and rows is None:
                raise ConfigError(f"warm_start needs the previous {side} ids or today's {side} rows")
            n_prev = len(values) if ids is None else len(ids)
            if values.ndim != 2 or values.shape[1] != width or values.shape[0] != n_prev:
                raise ConfigError(
                    f"warm_start {side}_factors must have shape ({n_prev}, {width}) "
                    f"({cfg.algorithm}, factors={cfg.factors}), got {values.shape}"
                )
            if rows is None:
                rows = IdMap.from_ids(ids).index(current.ids)
            rows = np.asarray(rows, dtype=np.int64)
            if rows.shape != (len(current),) or (len(rows) and rows.max() >= n_prev):
                raise ConfigError(
                    f"warm_start {side}_rows must hold one row below {n_prev} (or -1) for each of "
                    f"the {len(current)} {side}s, got shape {rows.shape}"
                )
            prev[side] = (rows, values)

        rng = check_random_state(cfg.seed)
        if cfg.algorithm == "als":
            # same scale as implicit's own initialisation; drawn in place (the values of
            # rng.random(shape) * 0.01): a city's user side would pass through two temporaries of its size
            users = np.empty((n_users, width), dtype=np.float32)
            items = np.empty((n_items, width), dtype=np.float32)
            for out in (users, items):
                rng.random(dtype=np.float32, out=out)
                out *= np.float32(0.01)
        else:
            users = (rng.random((n_users, width), dtype=np.float32) - 0.5) / cfg.factors
            items = (rng.random((n_items, width), dtype=np.float32) - 0.5) / cfg.factors
            users[:, -1] = 1.0

        known = {}
        for side, out in (("user", users), ("item", items)):
            rows, values = prev[side]
            known[side] = rows >= 0
            _copy_rows(out, values, rows)
            # read once: a memory-mapped previous bundle's pages would stay resident through the fit
            release_pages(values)

        if cfg.algorithm == "als":
            # new items, then new users, start from the exact fold-in against the known side
            new_items = np.flatnonzero(~known["item"] & (np.bincount(train.indices, minlength=n_items) > 0))
            if len(new_items):
                item_rows = train.T.tocsr()[new_items]
                items[new_items] = _solve_rows(item_rows, users, cfg.regularization)
            new_users = np.flatnonzero(~known["user"] & (np.diff(train.indptr) > 0))
            if len(new_users):
                users[new_users] = _solve_rows(train[new_users], items, cfg.regularization)
        return np.ascontiguousarray(users), np.ascontiguousarray(items)

    # ---- using the model -------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "user_factors_"):
            raise NotFittedError("CollaborativeModel is not fitted; call fit() first")

    def warm_start(self) -> WarmStart:
        """Return this model's factors as a :class:`WarmStart` for the next fit."""
        self._check_fitted()
        return WarmStart(self.users_.ids, self.user_factors_, self.items_.ids, self.item_factors_)

    def score(self, user_idx: np.ndarray | int, item_idx: np.ndarray | int) -> np.ndarray:
        """Score (user, item) pairs: factor dot product minus the negative-feedback penalty.

        Parameters
        ----------
        user_idx, item_idx : int or array of int
            User and item indices, broadcast against each other.

        Returns
        -------
        ndarray of float32, the broadcast shape

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ConfigError
            If an index is out of range.
        """
        self._check_fitted()
        users, items = np.broadcast_arrays(np.asarray(user_idx, dtype=np.int64), np.asarray(item_idx, dtype=np.int64))
        bounds = (("user_idx", users, len(self.user_factors_)), ("item_idx", items, len(self.item_factors_)))
        for name, idx, n in bounds:
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                bad = idx[(idx < 0) | (idx >= n)].flat[0]
                raise ConfigError(f"{name} {bad} out of range; valid: 0..{n - 1}")
        u, i = users.ravel(), items.ravel()
        dots = np.einsum("ij,ij->i", self.user_factors_[u], self.item_factors_[i])
        if len(u) and self.negatives_.nnz:
            dots = dots - self.config.negative_penalty * np.asarray(self.negatives_[u, i]).ravel()
        return dots.astype(np.float32).reshape(users.shape)

    def fold_in(self, item_indices: Sequence[int] | np.ndarray, weights: Sequence[float] | np.ndarray) -> np.ndarray:
        """Return a user vector for a user known only by a few events.

        Parameters
        ----------
        item_indices : array of int, shape (k,)
        weights : array of float, shape (k,)
            Decayed event weights per item, as in ``Interactions.matrix``:
            > 0 engagement (confidence ``1 + alpha * w``, preference 1),
            < 0 dismiss/report (confidence ``1 + alpha * |w|``, preference 0).
            Note: the fit drops a pair's positives once it has negative
            feedback; here the net weight decides.

        Returns
        -------
        ndarray of float32, shape (width,)

        Raises
        ------
        ConfigError
            If the arrays differ in length or an index is out of range.
        """
        items = np.asarray(item_indices, dtype=np.int64).ravel()
        w = np.asarray(weights, dtype=np.float64).ravel()
        if items.shape != w.shape:
            raise ConfigError(f"item_indices and weights must have the same length, got {items.size} and {w.size}")
        row = sp.csr_matrix((w, (np.zeros_like(items), items)), shape=(1, self._n_items_checked(items)))
        return self.fold_in_batch(row)[0]

    def fold_in_batch(self, user_items: sp.spmatrix) -> np.ndarray:
        """Return user vectors for rows of event weights (batch :meth:`fold_in`).

        Each row is solved exactly as one ALS user update against the fixed
        item factors (implicit's ``recalculate_user``). For BPR the same
        least-squares projection onto BPR's item factors is used (BPR has no
        closed form): an approximation that ranks the user's items sensibly.

        Parameters
        ----------
        user_items : sparse matrix, (n, n_items)
            Decayed event weights as in ``Interactions.matrix``.

        Returns
        -------
        ndarray of float32, (n, width)

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ConfigError
            If the matrix has the wrong number of columns.
        """
        self._check_fitted()
        m = sp.csr_matrix(user_items, dtype=np.float64)
        if m.shape[1] != len(self.item_factors_):
            raise ConfigError(f"user_items must have {len(self.item_factors_)} columns (items), got {m.shape[1]}")
        m.sum_duplicates()
        m.eliminate_zeros()
        conf = m.copy()
        conf.data = np.sign(m.data) * (1.0 + self.config.alpha * np.abs(m.data))
        return _solve_rows(conf, self.item_factors_, self.config.regularization).astype(np.float32)

    def _n_items_checked(self, items: np.ndarray) -> int:
        self._check_fitted()
        n = len(self.item_factors_)
        if items.size and (items.min() < 0 or items.max() >= n):
            bad = items[(items < 0) | (items >= n)][0]
            raise ConfigError(f"item index {bad} out of range; valid: 0..{n - 1}")
        return n

    def loss(self, interactions: Interactions) -> float:
        """Return implicit's normalised ALS training loss of these factors on ``interactions``.

        Raises
        ------
        ConfigError
            If the algorithm is not ALS (BPR optimises a ranking criterion instead).
        """
        self._check_fitted()
        if self.config.algorithm != "als":
            raise ConfigError(f"loss is defined for algorithm 'als' only, not {self.config.algorithm!r}")
        from implicit.cpu import _als  # heavy: implicit only to compute a loss

        conf = als_confidence(interactions, self.config.alpha)
        return float(
            _als.calculate_loss(conf, self.user_factors_, self.item_factors_, self.config.regularization, num_threads=1)
        )
