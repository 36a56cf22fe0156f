"""Where the engine loses to the oracle on a synthetic city: candidates, scoring, or the data itself.

The evaluation's headline on synthetic data is the engine's share of the oracle's simulated
engagements per push (the oracle lists the top eligible items by the generator's true
probability). This diagnostic splits the gap, on a validation window carved from the training
part of the log (the test window is never read), for a seeded sample of the users active in it:

* **candidates**: the oracle restricted to the engine's candidate list, against the oracle over
  every eligible item;
* **scoring**: orderings of the same candidate list -- the engine's final score, its engagement
  model's log-odds alone, and the truth with one of its terms left out (the latent taste term
  the engine cannot observe, the time terms) or with the engine's estimate of one term replaced
  by the true one (what a perfect estimate of that term alone would earn);
* **estimates**: per term of the generator's logit, its spread within a user's candidates and
  the correlation of the engine's estimate with it (within users), including the user's own
  topic and format rate lifts (``topic_rate``, ``format_rate``);
* **exposure**: the engine's final score with its exposure term halved and without it;
* **placement**: where each user's oracle picks (their 10 best candidates) rank under the
  engine's final score and under its engagement model alone.

``--drop-features a,b`` trains the ranker without those registry features (a before/after).

``--exposure-weights 0,0.25,0.5,1`` also lists every user with a positive engagement after the cut
(as ``recsys evaluate`` judges them, the production ``recommend_many``) with the ranker's exposure
weight set to each value in turn -- one training -- and prints, beside the ``recent_popular`` and
``segment_popular`` baselines, the logged NDCG@10 over all, warm and cold users with the paired 95%
bootstrap interval of the difference from each baseline, and the simulated engagements per push
as a share of the oracle's: the trade the weight makes between the logged metric and engagements.
A last row keeps the chosen weight's lists and puts each one's items in the exposure model's order:
the same items (the same engagements per push), the hits placed where the log says they happen.

It reads the generator's truth, which the engine never does: a tool to learn where to look, not a
feature. Usage::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_oracle_gap.py --data DIR [--before 0.8] [--split 0.8] [--users 1500]

``--before`` keeps the events before that quantile of time (the training part of an
``--split-quantile`` evaluation), ``--split`` is the cut inside them. Prints one table (share of
the oracle per ordering) and the per-term estimates; ``--json`` writes them too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.config import EngineConfig
from recsys.evaluation.baselines import ListingContext, make_baseline, recommend
from recsys.evaluation.metrics import ndcg_at_k, paired_difference_ci
from recsys.evaluation.run import ORACLE, policy_lists
from recsys.evaluation.simulate import attach_true_prob, load_truth
from recsys.evaluation.split import relevant_pairs, temporal_split
from recsys.ranking import Recommender
from recsys.ranking import candidates, eligibility, features
from recsys.ranking.state import RankingState, build_state
from recsys.ranking.users import resolve
from recsys.schema import validate
from recsys.synthetic import GroundTruth
from recsys.training import train_model
from recsys.training.model import TrainedModel
from recsys.training.ranker import LearnedRanker


def _top10_value(score: np.ndarray, ok: np.ndarray, prob: np.ndarray, k: int = 10) -> float:
    """Mean true probability per pushed slot of each row's top ``k`` eligible entries by ``score``."""
    s = np.where(ok, score, -np.inf)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    got = np.where(np.take_along_axis(ok, top, 1), np.take_along_axis(prob, top, 1), 0.0)
    return float(got.sum(axis=1).mean() / k)


def _within_user(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``values`` centred on each user's eligible candidates (NaN elsewhere)."""
    v = np.where(ok, values, np.nan)
    return v - np.nanmean(v, axis=1, keepdims=True)


def _corr(a: np.ndarray, b: np.ndarray, ok: np.ndarray) -> float:
    """Within-user correlation of two (users x candidates) arrays over the eligible entries."""
    x, y = _within_user(a, ok)[ok], _within_user(b, ok)[ok]
    denom = float(np.sqrt((x**2).sum() * (y**2).sum()))
    return float((x * y).sum() / denom) if denom > 0 else float("nan")


def _cell_topic_fit(truth, users: pd.DataFrame, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """The interest term at pairs (truth user ``u``, item ``i``) with each user's interest replaced by the
    mean over the other users of their group x region x sub-group cell (the users table's codes)."""
    a = truth.arrays
    table = users.drop_duplicates("user_id").set_index("user_id").reindex(pd.Index(truth.user_ids.astype(str)))
    key = table["group"].astype(str) + "|" + table["region"].astype(str) + "|" + table["sub_group"].fillna("").astype(str)
    cell = pd.factorize(key)[0]
    interest = np.asarray(a["user_interest"], np.float64)
    sums = np.zeros((cell.max() + 1, interest.shape[1]))
    np.add.at(sums, cell, interest)
    counts = np.bincount(cell).astype(np.float64)
    # leave the user out: a small cell's mean would otherwise carry the user's own interest
    others = np.maximum(counts[cell] - 1, 1)[:, None]
    mean = np.where(counts[cell][:, None] > 1, (sums[cell] - interest) / others, 0.0)
    topics, weights = a["item_topics"][i], a["item_topic_weights"][i]
    return sum(weights[:, j] * mean[u, topics[:, j]] for j in range(topics.shape[1]))


def _oracle_placement(score: np.ndarray, ok: np.ndarray, prob: np.ndarray, k: int = 10) -> dict[str, float]:
    """Where each user's oracle picks (their top ``k`` eligible candidates by true probability) rank under
    ``score``: the share of them inside its top 10 / 30 / 100, and their median rank (1 = first)."""
    m, c = score.shape
    order = np.argsort(-np.where(ok, score, -np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(m)[:, None], order] = np.arange(c)[None, :]
    top = np.argsort(-np.where(ok, prob, -np.inf), axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(ok, top, 1)
    r = np.take_along_axis(rank, top, 1)[valid] + 1
    return {f"top{n}": float((r <= n).mean()) for n in (10, 30, 100)} | {"median_rank": float(np.median(r))}


#: the baselines the logged NDCG@10 of each exposure weight is compared with (paired)
LOGGED_BASELINES = ("recent_popular", "segment_popular")


def _exposure_order(state: RankingState, ranker: LearnedRanker, lists: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """``lists`` with each user's items re-ranked by the ranker's exposure model (the same items)."""
    top = lists[lists[C.RANK] <= 10]
    users = top[C.USER_ID].astype(str).unique().tolist()
    index = {item: j for j, item in enumerate(state.catalog.item_ids.astype(str))}
    got = top.groupby(C.USER_ID, sort=False)[C.ITEM_ID].apply(list).to_dict()
    cand = np.full((len(users), 10), -1, np.int64)
    for r, u in enumerate(users):
        row = [index[i] for i in got[u]]
        cand[r, : len(row)] = row
    own = features.selected(state.model.config.ranker, list(ranker.feature_names))
    x = features.compute(own, features.Block(state, resolve(state, users, None), cand, int(cut.as_unit("ns").value)))
    logged = np.asarray(ranker.exposure_model.predict(x.reshape(-1, len(own))), np.float64).reshape(cand.shape)
    order = np.argsort(-np.where(cand >= 0, logged, -np.inf), axis=1, kind="stable")
    ids = state.catalog.item_ids.astype(str)
    rows = [
        (u, rank + 1, ids[cand[r, j]]) for r, u in enumerate(users) for rank, j in enumerate(order[r]) if cand[r, j] >= 0
    ]
    return pd.DataFrame(rows, columns=[C.USER_ID, C.RANK, C.ITEM_ID])


def _logged_by_weight(
    model: TrainedModel, items: pd.DataFrame, events: pd.DataFrame, cut: pd.Timestamp, truth: GroundTruth,
    weights: list[float], n_boot: int = 1000,
) -> dict[str, dict]:
    """The served lists' logged NDCG@10 and simulated share of the oracle at each exposure weight.

    Users: every user with a relevant item after ``cut`` (``recsys evaluate``'s definition: a positive
    engagement after the cut not engaged with before it). The ranker's ``exposure_weight`` is set to
    each weight in turn and the production ``Recommender`` lists anew (its state reads which features
    the exposure model uses); the chosen weight is restored afterwards. Populations: all, warm (a
    positive before the cut) and cold.
    """
    split = temporal_split(events, time=cut)
    rel = relevant_pairs(split)
    users = np.sort(rel[C.USER_ID].unique())
    relevant = rel.groupby(C.USER_ID)[C.ITEM_ID].apply(set).to_dict()
    n_rel = np.array([len(relevant[u]) for u in users])
    warm_ids = set(split.train.loc[split.train[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE), C.USER_ID].astype(str))
    warm = np.array([u in warm_ids for u in users])
    ctx = ListingContext.build(model, items, cut, split.train)
    fallback = make_baseline("segment_popular").fit(ctx)

    def judged(lists: pd.DataFrame) -> tuple[np.ndarray, float]:
        top = lists[lists[C.RANK] <= 10]
        got = top.groupby(C.USER_ID)[C.ITEM_ID].apply(list).to_dict()
        hits = np.zeros((len(users), 10), bool)
        for r, u in enumerate(users):
            row = [it in relevant[u] for it in got.get(u, [])][:10]
            hits[r, : len(row)] = row
        sim = attach_true_prob(top, truth, cut)["true_prob"].sum() / (10 * len(users))
        return ndcg_at_k(hits, n_rel, 10), float(sim)

    scored = {name: judged(recommend(make_baseline(name).fit(ctx), ctx, users, 10, fallback=fallback)) for name in LOGGED_BASELINES}
    _, oracle = judged(policy_lists(ORACLE, ctx, items, users, 10, truth=truth))
    chosen = model.ranker.report.get("exposure_weight")
    try:
        for w in weights:
            model.ranker.report["exposure_weight"] = float(w)
            lists = Recommender.from_model(model, catalog=items).recommend_many(list(users), 10, now=cut)
            scored[f"engine, exposure weight {w:g}{' (chosen)' if w == chosen else ''}"] = judged(lists)
    finally:
        model.ranker.report["exposure_weight"] = chosen
    if model.ranker.exposure_model is not None:
        # the chosen lists, each one's items put in the exposure model's order: the same items, so the
        # same simulated engagement per push; only where the hits sit in the list (the logged NDCG) moves
        rec = Recommender.from_model(model, catalog=items)
        lists = rec.recommend_many(list(users), 10, now=cut)
        scored[f"engine, weight {chosen:g}, each list in the exposure model's order"] = judged(
            _exposure_order(rec.state, model.ranker, lists, cut)
        )
    out = {}
    for name, (ndcg, sim) in scored.items():
        row = {"simulated_share_of_oracle": sim / oracle if oracle > 0 else float("nan")}
        for pop, take in (("all", np.ones(len(users), bool)), ("warm", warm), ("cold", ~warm)):
            row[pop] = {"ndcg@10": float(ndcg[take].mean()) if take.any() else float("nan"), "users": int(take.sum())}
            for base in LOGGED_BASELINES:
                if base != name and take.sum() > 1:
                    diff, ci = paired_difference_ci(ndcg[take], scored[base][0][take], n_boot=n_boot, seed=0)
                    row[pop][f"minus {base}"] = [float(diff), *map(float, ci)]
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="synthetic data folder with a truth/ folder")
    parser.add_argument("--taxonomy", type=Path, default=None)
    parser.add_argument("--before", type=float, default=0.8, help="keep the events before this quantile (default 0.8)")
    parser.add_argument("--split", type=float, default=0.8, help="cut inside the kept events (default 0.8)")
    parser.add_argument("--users", type=int, default=1500, help="users sampled among those active after the cut")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--drop-features", default="", help="comma-separated registry features the ranker leaves out (a before/after)")
    parser.add_argument("--exposure-weights", default="", help="comma-separated exposure weights: logged NDCG@10 vs baselines and simulated share for each")
    args = parser.parse_args()
    try:
        weights = [float(w) for w in args.exposure_weights.split(",") if w]
    except ValueError:
        parser.error(f"--exposure-weights must be numbers separated by commas, got {args.exposure_weights!r}")

    truth = load_truth(args.data)
    if truth is None:
        parser.error(f"{args.data} has no truth/ folder: the oracle needs the generator's truth")
    clean = validate(data=args.data, taxonomy=args.taxonomy)
    events = clean.events[clean.events["timestamp"] < clean.events["timestamp"].quantile(args.before)]
    cut = events["timestamp"].quantile(args.split)
    config = EngineConfig()
    dropped = [n for n in args.drop_features.split(",") if n]
    if dropped:
        keep = [f.name for f in features.registry(config.ranker) if f.name not in dropped]
        config = dataclasses.replace(config, ranker=dataclasses.replace(config.ranker, features=keep))
    t0 = time.perf_counter()
    model = train_model(clean.users, clean.items, events, config=config, as_of=cut)
    train_s = time.perf_counter() - t0
    state = build_state(model, None, config.ranking)

    rng = np.random.default_rng(args.seed)
    active = events.loc[events["timestamp"] >= cut, "user_id"].astype(str).unique()
    user_ids = np.sort(rng.choice(active, size=min(args.users, len(active)), replace=False))
    users = resolve(state, user_ids.tolist(), None)
    filt = eligibility.make_filter(state.taxonomy)
    share = state.filtered(filt)
    now = int(cut.as_unit("ns").value)
    n_items = state.catalog.n_items
    keys = eligibility.history_keys(state.seen, users.rows, n_items, None)

    def eligible(cand: np.ndarray) -> np.ndarray:
        ok = (cand >= 0) & eligibility.candidate_mask(state.catalog, filt, cand, now, users.groups, users.regions)
        return ok & ~eligibility.history_mask(keys, cand, n_items)

    cand = candidates.gather(state, users, 10, filt, share, now)
    ok = eligible(cand)
    every = np.broadcast_to(np.arange(n_items), (len(user_ids), n_items))
    prob_all = np.asarray(truth.engagement_prob(user_ids, state.catalog.item_ids.astype(str), at=cut), np.float64)
    oracle = _top10_value(prob_all, eligible(every), prob_all)
    prob = np.take_along_axis(prob_all, np.maximum(cand, 0), 1)

    feats = features.selected(config.ranker)
    names = [f.name for f in feats]
    x = features.compute(feats, features.Block(state, users, cand, now))
    col = {n: x[:, :, j] for j, n in enumerate(names)}
    ranker = model.ranker
    if ranker is not None:
        own = features.selected(config.ranker, list(ranker.feature_names))
        engine = ranker.predict(features.compute(own, features.Block(state, users, cand, now)).reshape(-1, len(own)))
        engine = np.asarray(engine, np.float64).reshape(cand.shape)
        # the exposure term (what keeps the logged metrics up) apart: its cost in engagements
        exposure = np.asarray(
            ranker.exposure(features.compute(own, features.Block(state, users, cand, now)).reshape(-1, len(own))), np.float64
        ).reshape(cand.shape)
    else:
        engine = None

    # the generator's terms at the candidate pairs (time- and channel-free part, then the time terms)
    u = np.repeat(truth.user_positions(user_ids), cand.shape[1])
    i = truth.item_positions(state.catalog.item_ids.astype(str)[np.maximum(cand, 0)].ravel())
    a = truth.arrays
    _, topic_fit = truth.static_pair_logit(u, i)
    # the campaign rows of the cut's day: GroundTruth exposes its time terms only through this
    # helper (engagement_prob adds them inside), and a diagnostic needs them apart
    seconds, campaign, day, _ = truth._moments(cut, len(i))
    terms = {
        "quality": a["item_quality"][i],
        "topic interest": topic_fit,
        "format taste": a["user_format"][u, a["item_format"][i]],
        "taste (latent)": np.einsum("ij,ij->i", a["user_taste"][u], a["item_factors"][i]),
        "freshness + campaigns": truth.item_time_logit(i, seconds, campaign, day),
    }
    terms = {k: np.asarray(v, np.float64).reshape(cand.shape) for k, v in terms.items()}
    total = sum(terms.values())
    eng = col["engagement"].astype(np.float64)

    orderings: dict[str, np.ndarray] = {"truth (every term)": total}
    orderings["truth without the latent taste"] = total - terms["taste (latent)"]
    orderings["truth: quality + topic interest only"] = terms["quality"] + terms["topic interest"]
    if engine is not None:
        orderings["engine (final score)"] = engine
        weight = ranker.report.get("exposure_weight")
        orderings[f"engine, exposure term halved (weight {weight} -> half)"] = engine - 0.5 * exposure
        orderings["engine without its exposure term"] = engine - exposure
    orderings["engine: engagement model alone"] = eng
    for feature, term in (("quality", "quality"), ("interest", "topic interest"), ("format", "format taste")):
        orderings[f"engagement model, its {feature} replaced by the true {term}"] = eng - col[feature] + terms[term]
    # the best a segment-level interest could do: the truth's interest averaged over the user's
    # group x region x sub-group cell (leaving the user out), what no individual record is needed for
    cell_fit = _cell_topic_fit(truth, clean.users, u, i).reshape(cand.shape)
    orderings["engagement model, its interest replaced by the true group x region x sub-group mean"] = eng - col["interest"] + cell_fit
    for name in ("topic_rate", "format_rate"):
        if name in col:  # a log-odds lift: added to the engagement model's log-odds as it stands
            orderings[f"engagement model + {name}"] = eng + col[name]
    if "topic_rate" in col and "format_rate" in col:
        orderings["engagement model + topic_rate + format_rate"] = eng + col["topic_rate"] + col["format_rate"]
    for name in ("segment_popularity", "pop_segment_h7d", "collaborative", "coengagement"):
        if name in col:
            orderings[f"feature alone: {name}"] = col[name]

    rows = {"oracle over every eligible item": 1.0, "oracle within the engine's candidates": _top10_value(prob, ok, prob) / oracle}
    rows.update({k: _top10_value(v, ok, prob) / oracle for k, v in orderings.items()})
    estimates = {
        term: {
            "within_user_sd": float(np.nanstd(_within_user(values, ok))),
            "engine_feature": feature,
            "corr": None if feature is None else _corr(col[feature], values, ok),
        }
        for (term, values), feature in zip(terms.items(), ("quality", "interest", "format", "taste", "timeliness"))
    }
    for term, feature in (("topic interest", "topic_rate"), ("format taste", "format_rate")):
        if feature in col:
            estimates[f"{term} ({feature})"] = {
                "within_user_sd": estimates[term]["within_user_sd"],
                "engine_feature": feature,
                "corr": _corr(col[feature], terms[term], ok),
            }
    # where the oracle's picks (its top 10 among the candidates) rank in each ordering
    picks = {"engine (final score)": engine, "engine: engagement model alone": eng}
    placement = {name: _oracle_placement(score, ok, prob) for name, score in picks.items() if score is not None}
    print(f"{args.data}: events before the {args.before} quantile, cut at {cut} (train {train_s:.1f} s); "
          f"{len(user_ids)} users, {ok.sum(axis=1).mean():.0f} eligible candidates each; "
          f"oracle {oracle:.4f} engagements per pushed item")
    print("\n| ordering of the engine's candidates | share of the oracle |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.3f} |")
    print("\n| term of the true logit | spread within a user's candidates (sd) | engine's estimate | within-user correlation |\n|---|---|---|---|")
    for k, v in estimates.items():
        corr = "n/a" if v["corr"] is None or np.isnan(v["corr"]) else f"{v['corr']:.3f}"
        print(f"| {k} | {v['within_user_sd']:.3f} | {v['engine_feature']} | {corr} |")
    print("\n| ordering | oracle's top 10 in its top 10 | in its top 30 | in its top 100 | median rank (1 = first) |\n|---|---|---|---|---|")
    for k, v in placement.items():
        print(f"| {k} | {v['top10']:.3f} | {v['top30']:.3f} | {v['top100']:.3f} | {v['median_rank']:.0f} |")
    logged = {}
    if weights and ranker is not None:
        logged = _logged_by_weight(model, clean.items, events, cut, truth, weights)
        print("\n| lists of every user judged after the cut | NDCG@10 all | warm | cold | all minus recent_popular [95%] "
              "| all minus segment_popular [95%] | cold minus segment_popular [95%] | simulated, share of oracle |\n"
              "|---|---|---|---|---|---|---|---|")

        def ci(cell: dict, key: str) -> str:
            v = cell.get(key)
            return "" if v is None else f"{v[0]:+.4f} [{v[1]:+.4f}, {v[2]:+.4f}]"

        for name, row in logged.items():
            print(f"| {name} | {row['all']['ndcg@10']:.4f} | {row['warm']['ndcg@10']:.4f} | {row['cold']['ndcg@10']:.4f} "
                  f"| {ci(row['all'], 'minus recent_popular')} | {ci(row['all'], 'minus segment_popular')} "
                  f"| {ci(row['cold'], 'minus segment_popular')} | {row['simulated_share_of_oracle']:.3f} |")
        first = next(iter(logged.values()))
        print(f"users judged: {first['all']['users']} ({first['warm']['users']} warm, {first['cold']['users']} cold)")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "cut": str(cut), "users": len(user_ids), "oracle": oracle, "shares": rows, "estimates": estimates,
            "oracle_placement": placement, "dropped_features": dropped, "logged_by_exposure_weight": logged,
        }, indent=1))


if __name__ == "__main__":
    main()
