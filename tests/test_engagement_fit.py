"""The engagement model's compact backfitting reaches the penalised optimum an independent joint Newton finds.

The fit keeps its per-pair data compact (int32 keys, float32 shares and
freshness features, label sums per key instead of labels per entry, the
freshness Hessian from per-topic products). The reference here states the
model the plain way: one sparse design matrix with a column per effect, the
L2 penalties on its diagonal, and full Newton steps on the whole penalised
log-likelihood. The objective is strictly convex, so both must land on the
same effects.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from recsys import columns as C
from recsys.config import EngagementConfig
from recsys.idmap import IdMap
from recsys.taxonomy import load_taxonomy
from recsys.training import engagement
from recsys.training.engagement import (
    EngagementModel,
    Exposures,
    build_exposures,
    shown_logit,
)
from recsys.training.profiles import item_topic_shares

TAX = load_taxonomy()


def _world() -> tuple[pd.DataFrame, pd.DataFrame, Exposures]:
    from push_city import tables

    from recsys.schema import validate

    users, items, events = tables(n_users=500, n_items=120, seed=3)
    res = validate(tables=(users, items, events), end="2026-07-02T00:00:00Z")
    ev = res.events.sort_values(C.TIMESTAMP, kind="stable").reset_index(drop=True)
    u_map = IdMap.from_ids(res.users[C.USER_ID].to_numpy())
    i_map = IdMap.from_ids(res.items[C.ITEM_ID].to_numpy())
    ex = build_exposures(ev, u_map, i_map, res.items, TAX, end=ev[C.TIMESTAMP].max(), trend_days=7.0)
    # no channel: the bundle's log-odds (shown_logit) leave the channel term out
    return res.users, res.items, dataclasses.replace(ex, channel=np.full(len(ex), -1, np.int64))


def _codes(values: pd.Series, codes) -> np.ndarray:
    return pd.Index(list(codes)).get_indexer(values.fillna("").astype(str))


def _design(users: pd.DataFrame, items: pd.DataFrame, ex: Exposures, cfg: EngagementConfig):
    """The model's design matrix, one column per effect, and each column's penalty."""
    n = len(ex)
    n_t, n_f, n_users = len(TAX.topics), len(TAX.formats), len(users)
    g, r = _codes(users[C.GROUP], TAX.groups), _codes(users[C.REGION], TAX.regions)
    seg = np.where((g >= 0) & (r >= 0), g * len(TAX.regions) + r, -1)
    sub = _codes(users[C.SUB_GROUP], TAX.sub_groups)
    fmt = _codes(items[C.FORMAT], TAX.formats)
    auth = _codes(items[C.AUTHORITY], C.AUTHORITIES)
    auth = np.where(auth >= 0, auth, C.AUTHORITIES.index("other"))
    shares = item_topic_shares(IdMap.from_ids(items[C.ITEM_ID].astype(str).to_numpy()), items, TAX).tocoo()
    taus = np.asarray(cfg.freshness_taus_days)
    u, i = ex.user, ex.item
    rows, cols, vals, l2 = [], [], [], []
    offset = 0

    def add(obs, key, value, n_keys, penalty):
        nonlocal offset
        keep = key >= 0
        rows.append(obs[keep])
        cols.append(offset + key[keep])
        vals.append(np.broadcast_to(value, key.shape)[keep].astype(np.float64))
        l2.append(np.full(n_keys, penalty))
        offset += n_keys

    pair = np.arange(n)
    add(pair, np.zeros(n, np.int64), 1.0, 1, 1e-6)
    add(pair, auth[i], 1.0, len(C.AUTHORITIES), cfg.l2_global)
    add(pair, i, 1.0, len(items), cfg.l2_item)
    # (pair, topic of its item) entries, weighted by the topic's share
    per_pair = [(p, t, w) for p in range(n) for t, w in zip(
        shares.col[shares.row == i[p]], shares.data[shares.row == i[p]], strict=True)]
    tp, tt, tw = (np.array(x) for x in zip(*per_pair, strict=True))
    tu = u[tp]

    def nested(parent, child, width):
        return np.where((parent >= 0) & (child >= 0), parent * width + child, -1)

    add(tp, tt, tw, n_t, cfg.l2_global)
    add(tp, nested(seg[tu], tt, n_t), tw, len(TAX.groups) * len(TAX.regions) * n_t, cfg.l2_segment)
    add(tp, nested(sub[tu], tt, n_t), tw, len(TAX.sub_groups) * n_t, cfg.l2_segment)
    add(tp, nested(tu, tt, n_t), tw, n_users * n_t, cfg.l2_user_topic)
    f = fmt[i]
    add(pair, f, 1.0, n_f, cfg.l2_global)
    add(pair, nested(seg[u], f, n_f), 1.0, len(TAX.groups) * len(TAX.regions) * n_f, cfg.l2_segment)
    add(pair, nested(sub[u], f, n_f), 1.0, len(TAX.sub_groups) * n_f, cfg.l2_segment)
    add(pair, nested(u, f, n_f), 1.0, n_users * n_f, cfg.l2_user_format)
    fresh_start = offset
    age = ex.age_days[tp]
    for k, tau in enumerate(taus):
        # column t * K + k: topic t's coefficient on exp(-age / tau_k)
        key = np.where(np.isfinite(age), tt * len(taus) + k, -1)
        rows.append(tp[key >= 0])
        cols.append(fresh_start + key[key >= 0])
        vals.append((tw * np.exp(-np.maximum(np.nan_to_num(age), 0.0) / tau))[key >= 0])
    l2.append(np.full(n_t * len(taus), cfg.l2_freshness))
    offset += n_t * len(taus)
    add(tp, np.where(ex.recent[tp], tt, -1), tw, n_t, cfg.l2_trend)
    add(pair, u, 1.0, n_users, cfg.l2_user)
    x = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, offset))
    return x, np.concatenate(l2)


def _penalised_optimum(x: sp.csr_matrix, l2: np.ndarray, label: np.ndarray) -> np.ndarray:
    theta = np.zeros(x.shape[1])
    used = np.flatnonzero(np.diff(x.tocsc().indptr))  # a column without data stays at its prior's 0
    xu = x[:, used]
    for _ in range(30):
        p = 1.0 / (1.0 + np.exp(-(x @ theta)))
        grad = xu.T @ (label - p) - l2[used] * theta[used]
        hess = (xu.T @ sp.diags(p * (1.0 - p)) @ xu + sp.diags(l2[used])).tocsr()
        step, info = spla.cg(hess, grad, rtol=1e-13, atol=0.0, maxiter=5000, M=sp.diags(1.0 / hess.diagonal()))
        assert info == 0
        theta[used] += step
        if np.abs(step).max() < 1e-10:
            break
    return theta


def test_the_fit_lands_on_the_penalised_optimum_of_a_joint_newton(monkeypatch):
    users, items, ex = _world()
    assert len(ex) > 2000 and 0 < ex.label.mean() < 1 and np.isfinite(ex.age_days).all() and ex.recent.any()
    cfg = EngagementConfig(max_sweeps=200, tol=0.0)
    x, l2 = _design(users, items, ex, cfg)
    theta = _penalised_optimum(x, l2, ex.label)
    reference = x @ theta
    # the reference is the optimum: its penalised gradient vanishes
    p = 1.0 / (1.0 + np.exp(-reference))
    assert np.abs(x.T @ (ex.label - p) - l2 * theta).max() < 1e-6

    # every sweep runs: the fit's stop rule watches the unpenalised log-loss, which a penalised step may
    # raise a little near the optimum (it would stop after two sweeps here); the test wants the optimum
    falling = iter(-np.arange(cfg.max_sweeps + 2.0))
    monkeypatch.setattr(engagement, "_log_loss", lambda label, eta: float(next(falling)))
    model = EngagementModel(cfg, TAX).fit(ex, users, items)
    assert model.n_sweeps_ == cfg.max_sweeps
    tables = SimpleNamespace(
        engagement_intercept=model.intercept_, user_bias=model.user_bias_, item_quality=model.item_quality_,
        user_interest=model.user_interest_, user_format=model.user_format_,
        topic_freshness=model.topic_freshness_, topic_trend=model.topic_trend_,
    )
    fitted = shown_logit(tables, ex, items, TAX, cfg.freshness_taus_days)
    # the same log-odds on every shown pair: backfitting creeps along the hierarchy's near-collinear
    # levels (a segment's topic effect against its users' own), so it hovers ~1e-3 from the optimum
    np.testing.assert_allclose(fitted, reference, atol=3e-3)
    assert np.abs(fitted - reference).mean() < 5e-4
    # and the same item qualities (authority level + own), up to the constant the intercept shares
    # with them (a ridge of the likelihood that only the intercept's tiny penalty pins)
    n_auth = len(C.AUTHORITIES)
    auth = pd.Index(list(C.AUTHORITIES)).get_indexer(items[C.AUTHORITY].fillna("").astype(str))
    auth = np.where(auth >= 0, auth, C.AUTHORITIES.index("other"))
    quality = theta[1 + auth] + theta[1 + n_auth: 1 + n_auth + len(items)]
    learned = model.item_quality_.astype(np.float64)
    np.testing.assert_allclose(learned - learned.mean(), quality - quality.mean(), atol=3e-3)
