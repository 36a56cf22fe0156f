"""Training the learned ranker on a window carved from the end of the training log.

The steps (each timed into the bundle manifest's ``ranker`` report):

1. **cut**: the time ``T_c`` with ``[ranker] label_share`` of the training
   events after it (a quantile of event time, as the evaluation splits);
2. **model before the cut**: every other component trained exactly as for the
   bundle, on the events before ``T_c`` (the linear blend ranks inside it);
3. **examples** (``[ranker] examples``; ``auto``: impressions where the
   label window logs them, else candidates), for a seeded sample of users,
   warm and cold alike (so the ranker learns what works for users with no
   history), features from the registry as of ``T_c``:

   - *impressions*: each user's items shown after ``T_c``, label 1 when the
     user engaged with it. Every item in such a query was shown, so the label
     says what a user engages with *when pushed* -- not what the old system
     chose to show, which labels over all candidates mostly measure
     (unshown items count as negatives there, so exposure and popularity
     look like appeal);
   - *candidates*: for users with a positive engagement after ``T_c``, the
     serving candidates at ``T_c`` (the same
     :func:`recsys.ranking.candidates.gather` and eligibility the service
     uses) plus ``random_candidates`` uniformly drawn eligible items (and,
     with ``impression_negatives``, off by default, the items shown to them
     after the cut); label 1 for a positive engagement after ``T_c``. A log
     without impressions (ratings) has only these. With impressions they are
     built too, to weigh the exposure term (step 4);
4. **fit**: on candidates, LightGBM lambdarank from the best single feature
   (users with and without engagement before the cut each from their own
   population's best one where that population's held-out queries confirm it,
   :func:`population_bases`), early stopping on NDCG@10 of held-out users (split by user, so one user's
   queries from several cuts stay on one side). On impressions, a pointwise
   (binary) model starting from the engagement model's log-odds, early
   stopping on held-out users' NDCG@10 over their impressions; then an *exposure term*, ``w x log1p`` of
   the popularity feature that best orders the candidate queries' logged
   engagement, with ``w`` the smallest weight whose held-out NDCG@10 on those
   queries reaches that feature's own (:func:`choose_exposure`): the lists
   keep up with the strongest baseline on the log and are otherwise ordered
   by engagement when shown. With an exposure model, each list's items may
   then be served in that model's order (:func:`choose_reorder`, a 1-SE rule
   on the same held-out queries).

The fitted ranker then scores features computed from the full bundle at
serving time: the same functions, a later "now".
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import columns as C
from recsys.config import EngineConfig, RankerConfig
from recsys.idmap import IdMap
from recsys.ranking import candidates, eligibility, features
from recsys.ranking.features import selected
from recsys.ranking.state import RankingState, build_state
from recsys.ranking.users import resolve
from recsys.training.engagement import LatentTaste, build_exposures, fit_latent_taste, shown_logit
from recsys.training.model import TrainedModel
from recsys.training.ranker import COLD_FEATURE, REORDER_BLOCK, LearnedRanker, base_score, warm_rows
from recsys.seeds import check_random_state
from recsys.taxonomy import Taxonomy

#: the registry's engagement-model feature: the starting score of a ranker fitted on impressions
ENGAGEMENT = "engagement"
# users per block when building examples (bounds the (users x candidates x features) block)
_BLOCK = 512


def label_cut(events: pd.DataFrame, share: float) -> pd.Timestamp | None:
    """The time with ``share`` of the events after it; ``None`` if the events span no time."""
    if len(events) == 0:
        return None
    ts = events[C.TIMESTAMP]
    cut = ts.quantile(1.0 - share)
    if not (ts.min() < cut <= ts.max()):
        return None
    return pd.Timestamp(cut)


@dataclasses.dataclass
class Examples:
    """Training examples: a feature matrix grouped by user (query)."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    warm: np.ndarray  # per query: the user had positives before the cut
    users: np.ndarray  # per query: the user's row


def _labels(events: pd.DataFrame, cut: pd.Timestamp, user_ids: pd.Index, item_ids: pd.Index) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Positive engagements and impressions after the cut, as (users x items) 0/1 matrices."""
    after = events[events[C.TIMESTAMP] >= cut]
    u = user_ids.get_indexer(after[C.USER_ID].astype(str))
    i = item_ids.get_indexer(after[C.ITEM_ID].astype(str))
    ok = (u >= 0) & (i >= 0)
    etype = after[C.EVENT_TYPE].to_numpy()
    shape = (len(user_ids), len(item_ids))

    def matrix(mask: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix((np.ones(int(mask.sum()), np.float32), (u[mask], i[mask])), shape=shape)
        m.data[:] = 1.0
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    return matrix(ok & np.isin(etype, C.EVENT_TYPES_POSITIVE)), matrix(ok & (etype == "impression"))


def build_examples(
    state: RankingState,
    rows: np.ndarray,
    positives: sp.csr_matrix,
    shown: sp.csr_matrix,
    cut_ns: int,
    feats: tuple,
    random_candidates: int,
    seed: int,
    impressions: bool = True,
    mode: str = "candidates",
) -> Examples:
    """Candidates, features and labels of the given users at the cut (see the module docstring).

    ``mode = "impressions"`` takes each user's items shown after the cut as
    the query (label: engaged with it), in place of the serving candidates:
    what a user engages with *when shown*, not what the old system showed.
    Every such query is kept (a pointwise objective learns from a query
    whose impressions all share one label).
    """
    rng = check_random_state(seed)
    catalog = state.catalog
    n_items = catalog.n_items
    filt = eligibility.make_filter(state.taxonomy)
    share = state.filtered(filt)
    xs, ys, groups, warm, who = [], [], [], [], []
    for lo in range(0, len(rows), _BLOCK):
        block_rows = rows[lo : lo + _BLOCK]
        users = resolve(state, state.user_ids[block_rows].tolist(), None)
        if mode == "impressions":
            cand = np.full((len(block_rows), 0), -1, np.int64)
            extra = []
        else:
            cand = candidates.gather(state, users, 10, filt, share, cut_ns)
            extra = [rng.integers(0, catalog.n_bundle, size=(len(block_rows), random_candidates))]
        imp = shown[block_rows].tocsr()
        width = int(np.diff(imp.indptr).max()) if imp.nnz and (impressions or mode == "impressions") else 0
        if width:
            pad = np.full((len(block_rows), width), -1, np.int64)
            for r in range(len(block_rows)):
                got = imp.indices[imp.indptr[r] : imp.indptr[r + 1]]
                pad[r, : len(got)] = got
            extra.append(pad)
        cand = candidates.merge(np.concatenate([cand] + extra, axis=1))
        ok = (cand >= 0) & eligibility.candidate_mask(catalog, filt, cand, cut_ns, users.groups, users.regions)
        keys = eligibility.history_keys(state.seen, users.rows, n_items, None)
        ok &= ~eligibility.history_mask(keys, cand, n_items)
        # labels looked up row by row in the sparse matrix (a dense block would be users x items)
        pos = positives[block_rows].tocsr()
        pos.sort_indices()
        label = np.zeros(cand.shape, dtype=bool)
        for r in range(len(block_rows)):
            got = pos.indices[pos.indptr[r] : pos.indptr[r + 1]]
            if got.size:
                label[r] = np.isin(cand[r], got)
        label &= ok
        x = features.compute(feats, features.Block(state, users, cand, cut_ns))
        has_seen = np.diff(state.seen.indptr)[block_rows] > 0
        for r in range(len(block_rows)):
            keep = ok[r]
            y = label[r, keep]
            # a query needs a positive and a negative to teach a ranking objective anything
            if y.size and (mode == "impressions" or (y.any() and not y.all())):
                xs.append(x[r, keep])
                ys.append(y.astype(np.int32))
                groups.append(int(keep.sum()))
                warm.append(bool(has_seen[r]))
                who.append(int(block_rows[r]))
    if not xs:
        empty = np.zeros(0, np.int64)
        return Examples(np.zeros((0, len(feats)), np.float32), np.zeros(0, np.int32), empty, np.zeros(0, bool), empty)
    return Examples(
        np.concatenate(xs), np.concatenate(ys), np.asarray(groups, np.int64), np.asarray(warm), np.asarray(who, np.int64)
    )


def example_mode(wanted: str, positives: sp.csr_matrix, shown: sp.csr_matrix, min_users: int) -> str:
    """``candidates`` or ``impressions``: what the training queries are (``[ranker] examples``).

    ``auto`` takes impressions when the label window logs them with
    engagement on them for at least ``min_users`` users (a log of
    engagements alone, such as ratings, has none), else the candidates.
    """
    if wanted != "auto":
        return wanted
    engaged_shown = np.diff(shown.multiply(positives).tocsr().indptr) > 0
    return "impressions" if int(engaged_shown.sum()) >= min_users else "candidates"


#: a positive engagement at least this long after the user's previous one starts a new visit
RETURN_GAP = pd.Timedelta(days=1)


def return_visits(events: pd.DataFrame, since: pd.Timestamp | None = None) -> np.ndarray:
    """Each returning user's last visit in ``events``: the mask of the events it holds.

    A user's visits are their positive engagements split wherever one comes
    :data:`RETURN_GAP` or more after the one before. A user with at least two
    visits *returned*; their last visit opens with its first positive and
    holds every event of theirs after the positive before it (any type, the
    gap's too: a session's events just before its first positive are part of
    it, and the features of a query built on it must not see any of it). With ``since``, only visits
    starting at or after it count (visits of the same period as the label
    windows, not of an older catalogue).

    Parameters
    ----------
    events : DataFrame
        Clean events (``user_id``, ``event_type``, ``timestamp``).
    since : Timestamp, optional

    Returns
    -------
    ndarray of bool, len(events)
        True for the events of the returning users' last visits.
    """
    positive = events[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE).to_numpy()
    pos = events.loc[positive, [C.USER_ID, C.TIMESTAMP]].sort_values([C.USER_ID, C.TIMESTAMP], kind="stable")
    if pos.empty:
        return np.zeros(len(events), bool)
    before = pos[C.TIMESTAMP].shift()
    same_user = pos[C.USER_ID].eq(pos[C.USER_ID].shift())
    opens = (same_user & (pos[C.TIMESTAMP] - before >= RETURN_GAP)).to_numpy()
    # the latest visit opening per user (rows ascend in time): only users with one have a visit
    # before their last; the visit holds what follows the positive before its opening
    last = pos.loc[opens].assign(after=before[opens].to_numpy()).drop_duplicates(C.USER_ID, keep="last")
    if since is not None:
        last = last[last[C.TIMESTAMP] >= since]
    if last.empty:
        return np.zeros(len(events), bool)
    after = events[C.USER_ID].map(last.set_index(C.USER_ID)["after"])
    return (after.notna() & (events[C.TIMESTAMP] > after)).to_numpy()


def return_visit_labels(
    events: pd.DataFrame, held: np.ndarray, user_ids: pd.Index, item_ids: pd.Index
) -> sp.csr_matrix:
    """The positive engagements of the held-out visits (``held``), as a (users x items) 0/1 matrix."""
    visits = events[held]
    if visits.empty:
        return sp.csr_matrix((len(user_ids), len(item_ids)), dtype=np.float32)
    positives, _ = _labels(visits, visits[C.TIMESTAMP].min(), user_ids, item_ids)
    return positives


def return_visit_examples(
    users: pd.DataFrame,
    items: pd.DataFrame,
    events: pd.DataFrame,
    cut: pd.Timestamp,
    since: pd.Timestamp,
    feats: tuple,
    config: EngineConfig,
    taxonomy: Taxonomy,
    content_from: TrainedModel | None,
    rng: np.random.Generator,
    seed: int,
) -> Examples:
    """Candidate queries of the users who returned between ``since`` and ``cut`` (their last visit).

    The events before ``cut`` lose every returning user's last visit
    (:func:`return_visits`); every component is trained on what is left, as
    of ``cut``, exactly as for a label window's cut; each such user's query is
    then their serving candidates at ``cut`` labelled by the positives of the
    held-out visit (:func:`build_examples`). No feature sees an event of the
    visit it is labelled by.

    Parameters
    ----------
    users, items, events : DataFrame
        The clean training tables (as :func:`fit_ranker` takes them).
    cut : Timestamp
        The latest label window's cut: the features' "now".
    since : Timestamp
        Only visits starting at or after it (the earliest cut) count.
    feats : tuple of Feature
    config : EngineConfig
    taxonomy : Taxonomy
    content_from : TrainedModel, optional
        Reused content embedding (as for every cut's model).
    rng : numpy.random.Generator
        Draws the users kept when more than ``[ranker] max_users`` returned.
    seed : int
        Seed of the random candidates.

    Returns
    -------
    Examples
        One warm query per returning user with a positive and a negative
        among their candidates (empty when nobody returned).
    """
    from recsys.training import train_model  # cycle: the training job imports this module

    feats_n = len(feats)
    before = events[events[C.TIMESTAMP] < cut]
    held = return_visits(before, since)
    if not held.any():
        return _concat([], feats_n)
    sub_config = dataclasses.replace(config, ranking=dataclasses.replace(config.ranking, ranker="linear"))
    kept = before[~held]
    sub = train_model(users, items, kept, config=sub_config, taxonomy=taxonomy, as_of=cut, content_from=content_from)
    sub.taste = fit_taste(sub, kept, config, taxonomy)
    state = build_state(sub, None, sub_config.ranking)
    user_ids = pd.Index(state.user_ids.astype(str))
    item_ids = pd.Index(state.catalog.item_ids[: state.catalog.n_bundle].astype(str))
    positives = return_visit_labels(before, held, user_ids, item_ids)
    labelled = np.flatnonzero(np.diff(positives.indptr) > 0)
    if len(labelled) > config.ranker.max_users:
        labelled = np.sort(rng.choice(labelled, size=config.ranker.max_users, replace=False))
    no_impressions = sp.csr_matrix(positives.shape, dtype=np.float32)
    return build_examples(
        state, labelled, positives, no_impressions, int(cut.as_unit("ns").value), feats,
        config.ranker.random_candidates, seed, False, "candidates",
    )


def _ndcg_at(scores: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k (binary gain) of ordering each query's rows by ``scores`` (ties: row order)."""
    out, lo = [], 0
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    for n in groups.tolist():
        s, l = scores[lo : lo + n], y[lo : lo + n]
        lo += n
        top = l[np.argsort(-s, kind="stable")[:k]]
        ideal = disc[: min(k, int(l.sum()))].sum()
        if ideal > 0:
            out.append(float((top * disc[: len(top)]).sum() / ideal))
    return float(np.mean(out)) if out else 0.0


def feature_means(x: np.ndarray) -> list[float]:
    """Each column's mean over its known values (0 for a column with none): the occlusion reference."""
    known = ~np.isnan(x)
    count = known.sum(axis=0)
    total = np.where(known, x, 0).sum(axis=0, dtype=np.float64)
    return [float(v) for v in np.divide(total, count, out=np.zeros(x.shape[1]), where=count > 0)]


def best_single_feature(x: np.ndarray, y: np.ndarray, groups: np.ndarray, feats: tuple) -> tuple[str | None, float]:
    """The non-negative feature whose own ordering has the best NDCG@10 on the examples.

    It becomes the ranker's starting score (``LearnedRanker.fit``'s
    ``base_feature``): popularity at some window, usually -- the baselines'
    own signals, so the ranker starts where the best of them is.
    """
    best, best_ndcg = None, -1.0
    for j, feat in enumerate(feats):
        col = np.nan_to_num(x[:, j], nan=0.0)
        if len(col) == 0 or col.min() < 0:
            continue
        score = _ndcg_at(col, y, groups)
        if score > best_ndcg:
            best, best_ndcg = feat.name, score
    return best, round(best_ndcg, 6)


def base_members(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, feats: tuple, n: int
) -> tuple[list[str], list[float], list[float]]:
    """The ``n`` best non-negative features by their own NDCG@10 on the examples, each ordering the
    items differently from those before it, and their means: the members of an averaged starting score.

    On a small log the single best feature on the training queries is a noisy choice (which
    popularity window wins changes from one label window to the next); the mean of the few best
    (:func:`recsys.training.ranker.mean_base`) is a steadier start. A feature whose values are
    (almost) those of a member already chosen -- one segment makes segment, region and city
    popularity the same column -- adds nothing and is skipped. ``n = 1`` or fewer than two
    distinct features: no members (the single best feature is the start, as before).

    Returns
    -------
    names, means, ndcgs : list
    """
    if n <= 1 or len(y) == 0:
        return [], [], []
    scored = []
    for j in range(len(feats)):
        col = np.nan_to_num(x[:, j], nan=0.0)
        if col.min() < 0 or col.mean() <= 0:
            continue
        scored.append((_ndcg_at(col, y, groups), j))
    scored.sort(key=lambda t: (-t[0], t[1]))
    chosen: list[tuple[float, int]] = []
    for ndcg, j in scored:
        col = np.nan_to_num(x[:, j], nan=0.0).astype(np.float64)
        if any(np.corrcoef(col, np.nan_to_num(x[:, k], nan=0.0))[0, 1] > 0.999 for _, k in chosen):
            continue
        chosen.append((ndcg, j))
        if len(chosen) == n:
            break
    if len(chosen) < 2:
        return [], [], []
    means = [float(np.nan_to_num(x[:, j], nan=0.0).mean()) for _, j in chosen]
    return [feats[j].name for _, j in chosen], means, [round(v, 6) for v, _ in chosen]


#: training and held-out queries a population needs before it may start from a feature of its own
MIN_POPULATION_QUERIES = 10


def population_bases(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray, np.ndarray],
    feats: tuple,
    pooled: str | None,
) -> tuple[str | None, str | None, dict[str, Any]]:
    """The starting features of users without and with engagement before the cut.

    The pooled best single feature (:func:`best_single_feature`) is chosen on
    every training query, and most of them are usually cold users' (a log split
    in time is mostly newcomers), so a warm user's best signal -- their
    collaborative score, their own topics -- may never become the start. Each
    population (a query's ``user_history`` 0 or above 0, as at serving) takes
    the best single feature of its own training queries instead when that
    feature beats the pooled one on the population's *held-out* queries by at
    least one standard error of their paired per-query NDCG@10 difference (at
    least :data:`MIN_POPULATION_QUERIES` queries on each side); else it keeps
    the pooled feature.

    Returns
    -------
    base : str or None
        The cold users' start (the ranker's ``base_feature``, which the
        serving's first pass reads for everyone).
    base_warm : str or None
        The warm users' start when it differs from ``base``.
    report : dict
        Per population: its own feature, its held-out NDCG@10 and the pooled
        feature's, and whether it was adopted.
    """
    names = [f.name for f in feats]
    if pooled is None or COLD_FEATURE not in names or not len(train[2]) or not len(valid[2]):
        # nothing to choose on (e.g. [ranker] valid_share = 0, or a draw that held out nobody)
        return pooled, None, {}
    chosen = {"warm": pooled, "cold": pooled}
    report: dict[str, Any] = {}
    sides = [Examples(x, y, g, np.zeros(len(g), bool), np.zeros(len(g), np.int64)) for x, y, g in (train, valid)]
    flags = [~_cold_queries(ex, names) for ex in sides]
    for pop in ("warm", "cold"):
        take = [f if pop == "warm" else ~f for f in flags]
        if min(int(t.sum()) for t in take) < MIN_POPULATION_QUERIES:
            continue
        own, _ = best_single_feature(*_subset(sides[0], take[0]), feats)
        if own is None or own == pooled:
            report[pop] = {"feature": own, "adopted": False}
            continue
        x_v, y_v, g_v = _subset(sides[1], take[1])
        mine = _ndcg_per_query(base_score(x_v[:, names.index(own)]), y_v, g_v)
        theirs = _ndcg_per_query(base_score(x_v[:, names.index(pooled)]), y_v, g_v)
        d = mine - theirs
        se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("inf")
        adopted = bool(d.size > 1 and d.mean() > 0 and d.mean() >= se)
        report[pop] = {
            "feature": own, "adopted": adopted, "valid_queries": int(d.size),
            "valid_ndcg_at_10": round(float(mine.mean()), 6), "pooled_valid_ndcg_at_10": round(float(theirs.mean()), 6),
        }
        if adopted:
            chosen[pop] = own
    warm = chosen["warm"] if chosen["warm"] != chosen["cold"] else None
    return chosen["cold"], warm, report


def _ndcg_per_query(scores: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k of each query with a positive (binary gain; ties: row order)."""
    out, lo = [], 0
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    for n in groups.tolist():
        s, l = scores[lo : lo + n], y[lo : lo + n]
        lo += n
        if l.any():
            top = l[np.argsort(-s, kind="stable")[:k]]
            out.append(float((top * disc[: len(top)]).sum() / disc[: min(k, int(l.sum()))].sum()))
    return np.asarray(out)


def fewest_trees(ranker: LearnedRanker, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> int:
    """Keep the fewest trees whose held-out NDCG@10 is within one standard error of the best's.

    The one-standard-error rule of model selection: early stopping takes the
    held-out maximum, but a pointwise model on impressions gains little per
    tree over its starting score (the engagement model) and each tree costs
    every serving call; iterations 0, 1, 2, 4, ... up to the best are tried
    on the held-out queries with a positive. Sets ``report["best_iteration"]``
    (0: the starting score alone) and returns it.
    """
    best = int(ranker.report.get("best_iteration") or 0)
    if best <= 1 or len(groups) == 0:
        return best
    base = ranker.base(x)
    per = {}
    for n in sorted({0, best, *(2**j for j in range(best.bit_length()) if 2**j < best)}):
        raw = base if n == 0 else base + ranker.booster.predict(x, num_iteration=n, num_threads=1)
        per[n] = _ndcg_per_query(np.asarray(raw), y, groups)
    if len(per[best]) < 2:
        return best
    se = float(per[best].std(ddof=1) / np.sqrt(len(per[best])))
    top = float(per[best].mean())
    chosen = min(n for n, v in per.items() if float(v.mean()) >= top - se)
    ranker.report.update(
        best_iteration=chosen,
        early_stopping_iteration=best,
        fewest_trees_valid_ndcg_at_10={str(n): round(float(v.mean()), 6) for n, v in per.items()},
    )
    return chosen


#: exposure weights tried, smallest first (``choose_exposure``)
EXPOSURE_WEIGHTS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def choose_exposure(ranker: LearnedRanker, logged: Examples, valid: np.ndarray, feats: tuple) -> dict[str, Any]:
    """The exposure term of a ranker fitted on impressions: a popularity feature and its weight.

    A ranker fitted on impressions orders items by how likely a user is to
    engage *when shown*; a logged test window also counts what the old system
    will show next, which popularity says. The feature is the one whose own
    ordering best predicts the logged engagement of the training users'
    candidate queries (:func:`best_single_feature`: the strongest baseline's
    signal); the weight is the smallest of :data:`EXPOSURE_WEIGHTS` whose
    ranking of the *held-out* users' candidate queries reaches that feature's
    own NDCG@10 there (the largest NDCG@10 if none does): the engine never
    trails its strongest baseline on the log, and otherwise ranks by
    engagement when shown. Users without engagement before the cut (the
    ``user_history`` feature is 0) get a feature and weight of their own,
    chosen the same way on their queries alone, when there are at least
    :data:`MIN_COLD_QUERIES` of them on each side: for them the strongest
    baseline is often another popularity than for everyone.

    Returns
    -------
    dict
        ``exposure_feature``, ``exposure_weight`` and the held-out NDCG@10 of
        the feature alone and of each weight tried (empty without queries);
        ``exposure_feature_cold``, ``exposure_weight_cold`` and
        ``exposure_cold_valid_ndcg_at_10`` for users without engagement;
        also written into ``ranker.report``, which :meth:`LearnedRanker.predict` reads.
    """
    if len(logged.groups) == 0:
        return {}
    names = [f.name for f in feats]
    ranker.report.update({"exposure_feature": None, "exposure_weight": 0.0, "exposure_feature_cold": None})
    own = ranker.predict(logged.x)  # the ranker's score without any exposure term
    out = _exposure_for(own, logged, valid, feats, np.ones(len(logged.groups), bool))
    if not out:
        return {}
    cold = _cold_queries(logged, names)
    if cold is not None and min(int((cold & valid).sum()), int((cold & ~valid).sum())) >= MIN_COLD_QUERIES:
        # users with no engagement yet: their strongest baseline is another popularity (their
        # segment's, often), which one feature for everyone misses
        cold_out = _exposure_for(own, logged, valid, feats, cold)
        if cold_out:
            out.update({f"{k.replace('exposure_', 'exposure_cold_', 1)}": v for k, v in cold_out.items()})
            out["exposure_feature_cold"] = out.pop("exposure_cold_feature")
            out["exposure_weight_cold"] = out.pop("exposure_cold_weight")
    ranker.report.update(out)
    return out


def choose_exposure_model(
    ranker: LearnedRanker, logged: Examples, valid: np.ndarray, feats: tuple, rc: RankerConfig, threads: int = 2
) -> dict[str, Any]:
    """The exposure term as a model: lambdarank on the logged engagement of candidate queries.

    Where :func:`choose_exposure` adds one popularity feature, this fits the
    ranker that ``[ranker] examples = "candidates"`` would (lambdarank from the
    best single feature, monotone in popularity, early stopping on the
    held-out users' NDCG@10) on the same candidate queries, and adds ``w x``
    its score, ``w`` the smallest of :data:`EXPOSURE_WEIGHTS` whose ranking
    of the held-out queries reaches the NDCG@10 of the best single feature
    there (the strongest baseline's signal, the bar of :func:`choose_exposure`;
    the largest NDCG@10 if none does). The model orders the logged engagement
    better than one popularity feature, so a smaller weight reaches the bar
    and the lists are otherwise ordered by engagement when shown.

    Returns
    -------
    dict
        ``exposure_model`` (True), ``exposure_weight`` and the held-out
        NDCG@10 of the model alone and of each weight tried (empty without
        queries on both sides of the split); also written into ``ranker.report``.
    """
    if len(logged.groups) == 0 or not valid.any() or valid.all():
        return choose_exposure(ranker, logged, valid, feats)
    x_t, y_t, g_t = _subset(logged, ~valid)
    x_v, y_v, g_v = _subset(logged, valid)
    names = [f.name for f in feats]
    base, _ = best_single_feature(x_t, y_t, g_t, feats)
    model = LearnedRanker.fit(
        x_t, y_t, g_t, names, valid=(x_v, y_v, g_v), base_feature=base, monotone=[f.monotone for f in feats],
        n_estimators=rc.n_estimators, learning_rate=rc.learning_rate, num_leaves=rc.num_leaves,
        min_child_samples=rc.min_child_samples, early_stopping_rounds=rc.early_stopping_rounds,
        seed=rc.seed, threads=threads,
    )
    ranker.report.update({"exposure_feature": None, "exposure_weight": 0.0, "exposure_feature_cold": None})
    ranker.exposure_model = None
    own = ranker.predict(x_v)
    logged_score = model.predict(x_v)
    # the bar: the strongest baseline's signal (the best single feature), as for the popularity term
    alone = _ndcg_per_query(base_score(x_v[:, names.index(base)]), y_v, g_v) if base is not None else np.zeros(0)
    target = float(alone.mean()) if alone.size else 0.0
    per = {w: _ndcg_per_query(own + np.float32(w) * logged_score, y_v, g_v) for w in EXPOSURE_WEIGHTS}
    tried = {w: float(v.mean()) if v.size else 0.0 for w, v in per.items()}

    def margin(w: float) -> float:
        # one standard error of the per-query difference from the feature alone (the same queries)
        d = per[w] - alone if alone.size == per[w].size else np.zeros(0)
        return float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0

    reached = [w for w in EXPOSURE_WEIGHTS if tried[w] >= target + margin(w)]
    weight = reached[0] if reached else max(EXPOSURE_WEIGHTS, key=lambda w: (tried[w], -w))
    out = {
        "exposure_model": True,
        "exposure_weight": float(weight),
        "exposure_valid_ndcg_at_10": {
            "feature_alone": round(target, 6), "model_alone": round(_ndcg_at(logged_score, y_v, g_v), 6),
            **{f"{w:g}": round(v, 6) for w, v in tried.items()},
        },
        "exposure_model_trees": model.report.get("best_iteration"),
    }
    ranker.exposure_model = model
    ranker.report.update(out)
    out.update(choose_reorder(ranker, ranker.predict(x_v), logged_score, y_v, g_v))
    return out


def reorder_gain(
    final: np.ndarray, logged: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int = REORDER_BLOCK
) -> np.ndarray:
    """Per query with a positive, the NDCG@k gain of putting its top ``k`` by ``final`` in ``logged``'s order.

    The same items stay in the list (ties: row order, as :func:`_ndcg_per_query`).
    """
    out, lo = [], 0
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    for n in groups.tolist():
        f, e, l = final[lo : lo + n], logged[lo : lo + n], y[lo : lo + n]
        lo += n
        if l.any():
            top = np.argsort(-f, kind="stable")[:k]
            again = top[np.argsort(-e[top], kind="stable")]
            d = disc[: len(top)]
            out.append(float(((l[again] - l[top]) * d).sum() / disc[: min(k, int(l.sum()))].sum()))
    return np.asarray(out)


def choose_reorder(
    ranker: LearnedRanker, final: np.ndarray, logged: np.ndarray, y: np.ndarray, groups: np.ndarray
) -> dict[str, Any]:
    """Whether serving puts each list's items in the exposure model's order (``report["reorder_by_exposure"]``).

    The ranker's score chooses *which* items a list holds (what engages when
    shown, and so the simulated engagement of a push); a logged test window
    also counts *where* the logged engagement falls, which the exposure model
    predicts. On the held-out candidate queries each query's top 10 by the
    final score is put in the exposure model's order; the order is adopted
    when the mean paired NDCG@10 gain is positive and at least one standard
    error (the bar of :func:`choose_exposure_model`'s weight). Written into
    ``ranker.report``; a bundle without the key keeps the ranker's order.
    """
    gain = reorder_gain(final, logged, y, groups)
    se = float(gain.std(ddof=1) / np.sqrt(gain.size)) if gain.size > 1 else 0.0
    mean = float(gain.mean()) if gain.size else 0.0
    out = {
        "reorder_by_exposure": bool(gain.size > 1 and mean > 0 and mean >= se),
        "reorder_valid_ndcg_at_10": {"gain": round(mean, 6), "se": round(se, 6), "queries": int(gain.size)},
    }
    ranker.report.update(out)
    return out


#: held-out and training queries of users without engagement needed for their own exposure term
MIN_COLD_QUERIES = 20


def _cold_queries(logged: Examples, names: list[str]) -> np.ndarray | None:
    """Per query, whether its user had no positive engagement before the cut (``None`` without the feature)."""
    if COLD_FEATURE not in names:
        return None
    first = np.concatenate([[0], np.cumsum(logged.groups)[:-1]])
    return ~warm_rows(logged.x[first], names)


def _exposure_for(own: np.ndarray, logged: Examples, valid: np.ndarray, feats: tuple, among: np.ndarray) -> dict[str, Any]:
    """Feature and weight of the exposure term for the queries ``among`` (see :func:`choose_exposure`)."""
    train, held = among & ~valid, among & valid
    if not held.any() or not train.any():
        train = held = among
    x_t, y_t, g_t = _subset(logged, train)
    feature, _ = best_single_feature(x_t, y_t, g_t, feats)
    if feature is None:
        return {}
    x_v, y_v, g_v = _subset(logged, held)
    own_v = own[_rows(logged, held)]
    names = [f.name for f in feats]
    pop = base_score(x_v[:, names.index(feature)])
    target = _ndcg_at(pop, y_v, g_v)
    tried = {w: _ndcg_at(own_v + np.float32(w) * pop, y_v, g_v) for w in EXPOSURE_WEIGHTS}
    reached = [w for w in EXPOSURE_WEIGHTS if tried[w] >= target]
    weight = reached[0] if reached else max(EXPOSURE_WEIGHTS, key=lambda w: (tried[w], -w))
    return {
        "exposure_feature": feature,
        "exposure_weight": float(weight),
        "exposure_valid_ndcg_at_10": {"feature_alone": round(target, 6), **{f"{w:g}": round(v, 6) for w, v in tried.items()}},
    }


def _concat(parts: list[Examples], n_features: int) -> Examples:
    """The examples of several cuts as one set (empty when there are none)."""
    return Examples(
        np.concatenate([p.x for p in parts]) if parts else np.zeros((0, n_features), np.float32),
        np.concatenate([p.y for p in parts]) if parts else np.zeros(0, np.int32),
        np.concatenate([p.groups for p in parts]) if parts else np.zeros(0, np.int64),
        np.concatenate([p.warm for p in parts]) if parts else np.zeros(0, bool),
        np.concatenate([p.users for p in parts]) if parts else np.zeros(0, np.int64),
    )


def _rows(ex: Examples, take: np.ndarray) -> np.ndarray:
    """The example rows of the queries ``take`` marks, in order."""
    bounds = np.concatenate([[0], np.cumsum(ex.groups)])
    return np.concatenate([np.arange(bounds[q], bounds[q + 1]) for q in np.flatnonzero(take)]) if take.any() else np.zeros(0, int)


def _subset(ex: Examples, take: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = _rows(ex, take)
    return ex.x[rows], ex.y[rows], ex.groups[take]


def fit_taste(model: TrainedModel, events: pd.DataFrame, config: EngineConfig, taxonomy: Taxonomy) -> LatentTaste | None:
    """The latent taste term of ``model``'s engagement model, fitted on the impressions of ``events``.

    Each shown pair starts from the model's own log-odds
    (:func:`recsys.training.engagement.shown_logit`) and the factors learn
    what it leaves unexplained (:func:`recsys.training.engagement.fit_latent_taste`).
    ``None`` with ``[engagement] taste_dim = 0``.

    Parameters
    ----------
    model : TrainedModel
        Trained on ``events`` (its users, items and engagement arrays).
    events : DataFrame
        The clean events the model was trained on.
    config : EngineConfig
    taxonomy : Taxonomy
    """
    cfg = config.engagement
    if cfg.taste_dim == 0:
        return None
    user_map = IdMap.from_ids(model.users[C.USER_ID].astype(str).to_numpy())
    item_map = IdMap.from_ids(model.items[C.ITEM_ID].astype(str).to_numpy())
    end = pd.Timestamp(model.window["end"]) if model.window.get("end") else events[C.TIMESTAMP].max()
    exposures = build_exposures(
        events, user_map, item_map, model.items, taxonomy, end=end, trend_days=cfg.trend_days
    ).sample(cfg.max_exposures, cfg.seed)
    offset = shown_logit(model, exposures, model.items, taxonomy, cfg.freshness_taus_days)
    return fit_latent_taste(
        exposures, offset, len(user_map), len(item_map), dim=cfg.taste_dim, l2=cfg.l2_taste,
        sweeps=cfg.taste_sweeps, seed=cfg.seed,
    )


def fit_ranker(
    users: pd.DataFrame,
    items: pd.DataFrame,
    events: pd.DataFrame,
    *,
    config: EngineConfig,
    taxonomy: Taxonomy,
    content_from: TrainedModel | None = None,
) -> tuple[LearnedRanker | None, dict[str, Any]]:
    """Train the learned ranker (module docstring); ``None`` with a reason when the log is too short.

    Parameters
    ----------
    users, items, events : DataFrame
        The clean training tables (events already cut at the bundle's as-of time).
    config : EngineConfig
    taxonomy : Taxonomy
    content_from : TrainedModel, optional
        The bundle's model: its content embedding (the same catalogue) is
        reused by every cut's model instead of fitted again. Its latent taste
        term (``content_from.taste``, :func:`fit_taste` on the whole log) is
        set here, as each cut's model's is: the ``taste`` feature reads it.

    Returns
    -------
    ranker : LearnedRanker or None
    report : dict
        ``kind`` (``learned`` or ``linear``), the cut, example counts,
        validation NDCG@10 and per-step timings; ``reason`` when no ranker.
    """
    from recsys.training import train_model  # cycle: the training job imports this module

    rc = config.ranker
    timings: dict[str, float] = {"model_before_cut": 0.0, "examples": 0.0}
    sub_config = dataclasses.replace(config, ranking=dataclasses.replace(config.ranking, ranker="linear"))
    feats = selected(rc)
    rng = check_random_state(rc.seed)
    parts: list[Examples] = []
    logged: list[Examples] = []  # with impressions: the candidate queries too (choosing the exposure weight)
    cuts: list[str] = []
    reasons: list[str] = []
    upper = None  # the label window of a cut ends where the next later cut's starts
    mode: str | None = None  # decided on the latest cut's window (``[ranker] examples``)
    for j in range(rc.cuts):
        if rc.label_share * (j + 1) >= 1.0:
            reasons.append(f"cut {j + 1}: cuts x label_share reaches the start of the log")
            break
        cut = label_cut(events, rc.label_share * (j + 1))
        if cut is None or (upper is not None and cut >= upper):
            reasons.append(f"cut {j + 1}: the training events span no time to carve a label window from")
            break
        window = events if upper is None else events[events[C.TIMESTAMP] < upper]
        t0 = time.perf_counter()
        sub = train_model(
            users, items, window, config=sub_config, taxonomy=taxonomy, as_of=cut, content_from=content_from
        )
        timings["model_before_cut"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        sub.taste = fit_taste(sub, window[window[C.TIMESTAMP] < cut], config, taxonomy)
        timings["taste"] = timings.get("taste", 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        state = build_state(sub, None, sub_config.ranking)
        user_ids = pd.Index(state.user_ids.astype(str))
        item_ids = pd.Index(state.catalog.item_ids[: state.catalog.n_bundle].astype(str))
        positives, shown = _labels(window, cut, user_ids, item_ids)
        if mode is None:
            mode = example_mode(rc.examples, positives, shown, rc.min_label_users)
        labelled = np.flatnonzero(np.diff((shown if mode == "impressions" else positives).indptr) > 0)
        if len(labelled) > rc.max_users:
            labelled = np.sort(rng.choice(labelled, size=rc.max_users, replace=False))
        ex = build_examples(
            state, labelled, positives, shown, int(cut.as_unit("ns").value), feats, rc.random_candidates,
            rc.seed + j, rc.impression_negatives, mode,
        )
        if mode == "impressions":
            engaged = np.flatnonzero(np.diff(positives.indptr) > 0)
            if len(engaged) > rc.max_users:
                engaged = np.sort(rng.choice(engaged, size=rc.max_users, replace=False))
            logged.append(build_examples(
                state, engaged, positives, shown, int(cut.as_unit("ns").value), feats, rc.random_candidates,
                rc.seed + j, False, "candidates",
            ))
        timings["examples"] += time.perf_counter() - t0
        parts.append(ex)
        cuts.append(cut.isoformat())
        upper = cut
    n_return = 0
    if rc.return_visits and mode == "candidates" and cuts:
        # a user who returns after the cut is a warm query, and on a log of ratings few do inside
        # the label windows: the users who came back during those windows' period add their last
        # visit before the latest cut (features from a model that never saw it, as of that cut)
        t0 = time.perf_counter()
        visit = return_visit_examples(
            users, items, events, pd.Timestamp(cuts[0]), pd.Timestamp(cuts[-1]), feats, config, taxonomy,
            content_from, rng, rc.seed + len(cuts),
        )
        timings["return_visits"] = time.perf_counter() - t0
        n_return = len(visit.groups)
        parts.append(visit)
    if content_from is not None:
        # the bundle's own taste term, on the whole training log: what the features read at serving
        t0 = time.perf_counter()
        content_from.taste = fit_taste(content_from, events, config, taxonomy)
        timings["taste"] = timings.get("taste", 0.0) + time.perf_counter() - t0
    ex = _concat(parts, len(feats))
    n_q = len(ex.groups)
    if n_q < max(2, rc.min_label_users):
        why = "; ".join(reasons) or f"{n_q} users had a positive among their candidates after the cuts {cuts}"
        return None, {"kind": "linear", "reason": f"{why} ([ranker] min_label_users = {rc.min_label_users})"}

    t0 = time.perf_counter()
    # held-out users (not queries: one user is a query in every cut) for early stopping
    users_q = np.unique(ex.users)
    held = set(users_q[rng.random(len(users_q)) < rc.valid_share].tolist()) if rc.valid_share > 0 else set()
    is_valid = np.fromiter((u in held for u in ex.users.tolist()), bool, n_q)
    if is_valid.all():
        is_valid[:] = False  # nothing left to train on: no early stopping rather than no model
    x_t, y_t, g_t = _subset(ex, ~is_valid)
    valid = _subset(ex, is_valid)
    if mode == "impressions":
        cand_ex = _concat(logged, len(feats))
        cand_valid = np.fromiter((u in held for u in cand_ex.users.tolist()), bool, len(cand_ex.groups))
    names = [f.name for f in feats]
    members: list[str] = []
    scales: list[float] = []
    base_warm: str | None = None
    by_population: dict[str, Any] = {}
    if mode == "impressions" and ENGAGEMENT in names:
        # pointwise P(engaged | shown): start from the engagement model's own log-odds of that
        # label (fitted on every impression of the log) and learn corrections to it; popularity
        # counts exposure as well as appeal here, so no monotone constraint on it
        base, base_ndcg = ENGAGEMENT, round(_ndcg_at(x_t[:, names.index(ENGAGEMENT)], y_t, g_t), 6)
        objective, transform, monotone = "binary", "identity", None
    else:
        base, base_ndcg = best_single_feature(x_t, y_t, g_t, feats)
        objective, transform, monotone = "lambdarank", "log1p", [f.monotone for f in feats]
        if mode == "impressions":
            objective = "binary"
        else:
            # candidates (a log of engagements alone): start from the mean of the few best features
            members, scales, members_ndcg = base_members(x_t, y_t, g_t, feats, rc.base_features)
            if not members:
                base, base_warm, by_population = population_bases((x_t, y_t, g_t), valid, feats, base)
    ranker = LearnedRanker.fit(
        x_t, y_t, g_t, names, valid=valid, base_feature=base, base_transform=transform,
        monotone=monotone,
        n_estimators=rc.n_estimators, learning_rate=rc.learning_rate, num_leaves=rc.num_leaves,
        min_child_samples=rc.min_child_samples, early_stopping_rounds=rc.early_stopping_rounds,
        seed=rc.seed, threads=config.collaborative.threads if hasattr(config.collaborative, "threads") else 2,
        objective=objective, base_members=members or None, base_scales=scales or None, base_feature_warm=base_warm,
    )
    if by_population:
        ranker.report["base_by_population"] = by_population
    if members:
        ranker.report["base_members_ndcg_at_10"] = members_ndcg
    if mode == "impressions":
        fewest_trees(ranker, *valid)
        if rc.exposure == "model":
            choose_exposure_model(ranker, cand_ex, cand_valid, feats, rc, threads=2)
        else:
            choose_exposure(ranker, cand_ex, cand_valid, feats)
    timings["fit"] = time.perf_counter() - t0
    ranker.report.update(
        {
            "kind": "learned",
            "examples_from": mode,
            "base_ndcg_at_10": base_ndcg,
            "feature_means": feature_means(x_t),
            "cuts": cuts,
            "queries": int(n_q),
            "warm_queries": int(ex.warm.sum()),
            "return_visit_queries": n_return,
            "cold_queries": int((~ex.warm).sum()),
            "examples": int(len(ex.y)),
            "positives": int(ex.y.sum()),
            "features": [f.name for f in feats],
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }
    )
    return ranker, dict(ranker.report)
