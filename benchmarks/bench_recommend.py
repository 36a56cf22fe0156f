"""Benchmark the in-process Recommender at city scale (ranking-core issue).

The bundle: ``--users`` x ``--items`` (default 1M x 50k). Users and items are
the synthetic city's (``recsys.synthetic.generate_city``: real groups,
regions, targets, review states, expiries, Chinese texts); the content
embedder, the faiss index and both cold-start mappings are fitted for real;
the collaborative factors, topic profiles, history and popularity are
*random arrays of the right shapes with topic structure*, because training
ALS on a 1M-user log does not fit the benchmark's budget on a 2-core machine
(the ranking's cost does not depend on how the factors were learned). The
bundle is written with ``TrainedModel.save`` and opened with
``Recommender.load`` like in production.

Measured, with ``--threads`` (default 2) faiss/BLAS threads:

* single-call latency p50/p99 and calls/s of ``recommend(user, k=10)``
  without filters, with filters (channel ``e_reader`` + two random topics +
  three excluded items) and for cold users, side by side with ``implicit``'s
  own ``model.recommend(userid, user_items[userid], N=10)`` on the same
  factors (BLAS single-threaded for single calls, as implicit advises);
* calls/s with ``--threads`` threads calling at once;
* ``recommend_many`` users/s against the exact top-50 floors over the same
  item vectors (faiss ``IndexFlatIP`` and numpy blocked GEMM + argpartition),
  the bundle's index alone and an HNSW graph alone (recall@50 and queries/s
  of each), and ``recommend_many`` with that HNSW graph in the bundle instead;
* retrieval alone (``--factors-from BUNDLE``): the same index table on a
  *trained* bundle's ALS factors, whose norms differ far more than random
  factors' (what makes inner-product graphs miss).

The random item factors get log-normal norms (sigma 0.7): on a trained
100k-user city the exact index scores 23-30% of the items per query, on these
~32% (the ranking's retrieval cost is not flattered).

Run::

    python benchmarks/bench_recommend.py            # full size, ~10 min
    python benchmarks/bench_recommend.py --users 20000 --items 5000 --calls 300  # quick
    python benchmarks/bench_recommend.py --factors-from models/latest  # retrieval on trained factors

Results are printed as Markdown and written to ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

F = 64
K = 10


def _timer() -> float:
    return time.perf_counter()


def build_bundle(n_users: int, n_items: int, out: Path, seed: int, threads: int) -> tuple[Path, dict]:
    """Write a bundle of random factors around the synthetic city's tables; return its path and timings."""
    from recsys import columns as C
    from recsys.training.coldstart import ItemColdStart, UserColdStart
    from recsys.config import ColdStartConfig, config_from_dict
    from recsys.training.content import ContentEmbedder
    from recsys.training.index import VectorIndex
    from recsys.training.model import USER_COLUMNS
    from recsys.synthetic.city import generate_city

    # the one factory of hand-built models (neutral engagement terms and signals), shared with the tests
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from model_factory import model_from_parts
    from recsys.taxonomy import load_taxonomy

    timings: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    tax = load_taxonomy()
    config = config_from_dict({"index": {"threads": threads}})

    t = _timer()
    city = generate_city(n_users=n_users, n_items=n_items, days=30, seed=seed)
    users, items = city.users.reset_index(drop=True), city.items.reset_index(drop=True)
    timings["generate_tables_s"] = _timer() - t

    t = _timer()
    embedder = ContentEmbedder(config=config.content, taxonomy=tax).fit(items)
    content = embedder.transform(items)
    timings["content_fit_transform_s"] = _timer() - t

    # topic-structured random factors: items near their topics' centroids,
    # users near the centroids of the topics they like
    n_topics = len(tax.topics)
    topic_pos = {c: i for i, c in enumerate(tax.topics)}
    centroids = rng.normal(size=(n_topics, F)).astype(np.float32)
    item_topics = np.zeros((n_items, n_topics), np.float32)
    for j, topics in enumerate(items[C.TOPICS]):
        for code in topics:
            item_topics[j, topic_pos[code]] = 1.0
    item_topics /= item_topics.sum(axis=1, keepdims=True)
    # ALS gives rarely seen items small vectors; sigma 0.7 makes the exact index skip a bit fewer
    # items than on a trained city's factors (see the docstring)
    quality = rng.lognormal(0.0, 0.7, size=(n_items, 1)).astype(np.float32)
    item_factors = (item_topics @ centroids + 0.6 * rng.normal(size=(n_items, F)).astype(np.float32)) * quality * 0.2
    user_topics = rng.dirichlet(np.full(n_topics, 0.3), size=n_users).astype(np.float32)
    user_factors = np.empty((n_users, F), np.float32)
    for lo in range(0, n_users, 200_000):
        hi = min(n_users, lo + 200_000)
        user_factors[lo:hi] = user_topics[lo:hi] @ centroids + 0.6 * rng.normal(size=(hi - lo, F)).astype(np.float32)

    # history: ~8 items a user, popular items more often; one in ten dismissed
    popularity = rng.lognormal(0.0, 1.2, size=n_items)
    p = popularity / popularity.sum()
    counts = rng.poisson(8, size=n_users)
    rows = np.repeat(np.arange(n_users), counts)
    cols = rng.choice(n_items, size=rows.size, p=p)
    data = np.where(rng.random(rows.size) < 0.1, -1, 1).astype(np.int8)
    seen = sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items))
    seen.sum_duplicates()
    seen.data = np.sign(seen.data).astype(np.int8)
    seen.eliminate_zeros()

    keys = users[[C.GROUP, C.REGION]].astype(str)
    segments = keys.drop_duplicates().sort_values([C.GROUP, C.REGION]).reset_index(drop=True)
    seg_pop = (popularity[None, :] * rng.lognormal(0.0, 0.7, size=(len(segments), n_items))).astype(np.float32)
    seg_prior = rng.dirichlet(np.ones(n_topics), size=len(segments)).astype(np.float32)

    t = _timer()
    index = VectorIndex.build(item_factors, config=config.index, seed=seed)
    timings["index_build_s"] = _timer() - t
    item_cs = ItemColdStart(config.cold_start).fit(content, item_factors)
    user_cs = UserColdStart(ColdStartConfig()).fit(user_factors, users, user_topics)

    frame = users.reindex(columns=list(USER_COLUMNS))
    model = model_from_parts(
        taxonomy=tax,
        config=config,
        users=frame,
        items=items,
        user_factors=user_factors,
        item_factors=item_factors,
        item_warm=np.ones(n_items, dtype=bool),
        content_vectors=content,
        user_topics=user_topics,
        segments=segments,
        segment_topic_prior=seg_prior,
        segment_popularity=seg_pop,
        popularity_recent=popularity.astype(np.float32),
        popularity_all_time=popularity.astype(np.float32),
        seen=seen,
        user_channel_counts=np.zeros((n_users, len(tax.channels)), np.float32),
        item_index=index,
        content_model=embedder,
        item_cold_start=item_cs,
        user_cold_start=user_cs,
        window={"start": (city.end - pd.Timedelta(days=30)).isoformat(), "end": city.end.isoformat()},
        info={"index": index.info()},
    )
    model.ranker = _random_ranker(model, seed)
    t = _timer()
    path = model.save(out / "models")
    timings["bundle_save_s"] = _timer() - t
    timings["index_recall_at_50"] = float(index.recall_ or 0.0)
    return path, timings


def _random_ranker(model, seed: int):
    """A LightGBM ranker shaped like the one ``recsys train`` fits on the city's impressions log.

    Trees of a trained one's size (100 x 15 leaves), a pointwise objective
    starting from a base feature (so that ``[ranker] rescore`` keeps its first
    pass: without one every valid candidate is rescored), and an exposure model (20 trees)
    added to its score and ordering its lists, as training adopts on the
    city. Its predictions' cost depends on the trees' number and depth and
    on how many rows reach them, not on what they learned, so random labels
    measure the serving cost honestly. The exposure model has no base
    feature and no monotone constraints (training's has both; a column and
    a starting score fewer). (Before 2026-12-02 12:45 the ranker had no base
    feature and no exposure model: every candidate reached the trees.)
    """
    from recsys.training.ranker import LearnedRanker
    from recsys.ranking.features import registry

    names = [f.name for f in registry(model.config.ranker)]
    rng = np.random.default_rng(seed)
    x = rng.random((20_000, len(names))).astype(np.float32)
    groups = np.full(200, 100)

    def fit(label_column: int, trees: int, **kw):
        y = (x[:, label_column] + 0.3 * rng.random(len(x)) > 0.9).astype(np.int32)
        return LearnedRanker.fit(x, y, groups, names, n_estimators=trees, num_leaves=15, early_stopping_rounds=0, seed=seed, **kw)

    # 100 trees: the trained 100k city's ranker kept 80; 20 for the exposure model: the sample's kept 14
    # the city's ranker starts from the engagement model's log-odds; this bundle's engagement terms are
    # neutral (0 for every pair: every candidate would tie in the first pass), so it starts from the one
    # popularity of this bundle that differs between items
    ranker = fit(0, 100, base_feature="popularity_all_time", objective="binary")
    ranker.exposure_model = fit(1, 20)
    ranker.report.update({"exposure_model": True, "exposure_weight": 1.0, "reorder_by_exposure": True})
    return ranker


def _with_rescore(model, rescore: int):
    """The model with ``[ranker] rescore`` set (the ranking reads it from the model's config)."""
    import dataclasses

    ranker = dataclasses.replace(model.config.ranker, rescore=rescore)
    return dataclasses.replace(model, config=dataclasses.replace(model.config, ranker=ranker))


#: the learned ranker's serving settings compared with the linear blend: (label, ranker, rescore);
#: None = today's default ``[ranker] rescore``; 30 = ``2 k + 10``, the fewest rows a list of 10 allows
RANKER_VARIANTS = (("linear", "linear", None), ("learned", "learned", None), ("learned_rescore_30", "learned", 30))


def _ranker_cost(model, filtered: list, many: list[str], rounds: int = 2) -> dict:
    """recommend p99 with filters and recommend_many users/s: the linear blend, the learned ranker
    at today's default ``rescore`` and at 30 (the fewest rows for k = 10), same model, same run.

    The variants run interleaved over ``rounds`` rounds (each round a share of the calls and of the
    users), so that a shared machine's drifting load falls on all of them alike.
    """
    import dataclasses

    from threadpoolctl import threadpool_limits

    from recsys.config import RankerConfig
    from recsys.ranking import Recommender

    recs = {}
    for label, kind, rescore in RANKER_VARIANTS:
        m = _with_rescore(model, rescore if rescore is not None else RankerConfig().rescore)
        recs[label] = Recommender.from_model(m, config=dataclasses.replace(m.config.ranking, ranker=kind))
        recs[label].recommend_many(many[:300], k=K)  # warm-up
    latencies: dict[str, list[float]] = {label: [] for label in recs}
    seconds = dict.fromkeys(recs, 0.0)
    for r in range(rounds):
        calls, users = filtered[r::rounds], many[r::rounds]
        for label, rec in recs.items():
            with threadpool_limits(1, "blas"):
                for u, tp, ex in calls[:10]:  # warm-up
                    rec.recommend(u, k=K, channel="e_reader", topics=tp, exclude=ex)
                for u, tp, ex in calls:
                    t = _timer()
                    rec.recommend(u, k=K, channel="e_reader", topics=tp, exclude=ex)
                    latencies[label].append(_timer() - t)
            t = _timer()
            rec.recommend_many(users, k=K)
            seconds[label] += _timer() - t
    out: dict = {"rescore_default": RankerConfig().rescore}
    for label in recs:
        pct = _percentiles(latencies[label])
        out[label] = {
            "recommend_filtered_p50_ms": pct["p50_ms"],
            "recommend_filtered_p99_ms": pct["p99_ms"],
            "recommend_many_users_per_s": len(many) / seconds[label],
        }
    for label in ("learned", "learned_rescore_30"):
        out[f"{label}_over_linear"] = {
            "recommend_filtered_p99": out[label]["recommend_filtered_p99_ms"] / out["linear"]["recommend_filtered_p99_ms"],
            "recommend_many_time": out["linear"]["recommend_many_users_per_s"] / out[label]["recommend_many_users_per_s"],
        }
    return out


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "calls_per_s": float(len(ms) / (ms.sum() / 1000.0)),
    }


def _latency(call, args_list: list) -> dict[str, float]:
    for a in args_list[: max(10, len(args_list) // 10)]:  # warm-up
        call(*a)
    out = []
    for a in args_list:
        t = _timer()
        call(*a)
        out.append(_timer() - t)
    return _percentiles(out)


def _concurrent(call, args_list: list, threads: int) -> float:
    """Calls/s with ``threads`` threads calling at once."""
    chunks = [args_list[i::threads] for i in range(threads)]

    def work(chunk: list) -> None:
        for a in chunk:
            call(*a)

    t = _timer()
    with cf.ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, chunks))
    return len(args_list) / (_timer() - t)


def run_benchmark(bundle: Path, n_calls: int, n_many: int, threads: int, seed: int) -> dict:
    """Time the Recommender and its peers on ``bundle``."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from recsys.config import RankerConfig
    from recsys.ranking import Recommender

    rng = np.random.default_rng(seed + 1)
    t = _timer()
    rec = Recommender.load(bundle)
    load_s = _timer() - t
    # served with today's [ranker] rescore default (the bundle's config holds the one it was built with)
    rec = Recommender.from_model(_with_rescore(rec.state.model, RankerConfig().rescore))
    state = rec.state
    model = state.model
    n_users = model.n_users
    users = rng.choice(n_users, size=n_calls, replace=False)
    ids = state.user_ids[users].tolist()
    topics = list(model.taxonomy.topics)
    item_ids = state.catalog.item_ids
    plain = [(u,) for u in ids]
    filtered = [
        (u, list(rng.choice(topics, 2, replace=False)), list(rng.choice(item_ids, 3, replace=False))) for u in ids
    ]
    groups, regions = list(model.taxonomy.groups), list(model.taxonomy.regions)
    cold = [(f"new-{i}", groups[i % len(groups)], regions[i % len(regions)]) for i in range(n_calls)]

    def ours(u: str) -> None:
        rec.recommend(u, k=K)

    def ours_filtered(u: str, tp: list, ex: list) -> None:
        rec.recommend(u, k=K, channel="e_reader", topics=tp, exclude=ex)

    def ours_cold(u: str, g: str, r: str) -> None:
        rec.recommend(u, k=K, group=g, region=r)

    # implicit's best single-call setting: one thread of its own, BLAS single-threaded
    # (implicit warns that a BLAS thread pool slows it down badly)
    peer = AlternatingLeastSquares(factors=F, num_threads=1, random_state=0)
    peer.user_factors = np.asarray(model.user_factors, dtype=np.float32)
    peer.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    user_items = sp.csr_matrix((model.seen > 0).astype(np.float32))

    def implicit_call(u: str) -> None:
        row = state.user_pos[u]
        peer.recommend(row, user_items[row], N=K)

    results: dict = {"load_s": load_s, "users": n_users, "items": model.n_items, "threads": threads}
    # one request is one query: BLAS threads only add overhead there, for both sides
    with threadpool_limits(1, "blas"):
        results["single"] = {
            "recommend": _latency(ours, plain),
            "recommend_filtered": _latency(ours_filtered, filtered),
            "recommend_cold_user": _latency(ours_cold, cold),
            "implicit_recommend": _latency(implicit_call, plain),
        }
        results["concurrent_calls_per_s"] = {
            "recommend": _concurrent(ours, plain, threads),
            "recommend_filtered": _concurrent(ours_filtered, filtered, threads),
            "implicit_recommend": _concurrent(implicit_call, plain, threads),
        }

    many = state.user_ids[rng.choice(n_users, size=n_many, replace=False)].tolist()
    rec.recommend_many(many[:1000], k=K)  # warm-up
    t = _timer()
    frame = rec.recommend_many(many, k=K)
    many_s = _timer() - t
    queries = np.ascontiguousarray(model.user_factors[[state.user_pos[u] for u in many]], dtype=np.float32)
    hnsw = _hnsw(model.item_factors, threads)
    results["batch"] = {
        "recommend_many_users_per_s": n_many / many_s,
        "recommend_many_full_lists": float((frame.groupby("user_id").size() == K).mean()),
        **retrieval(model.item_factors, queries, model.item_index, hnsw, threads),
    }
    results["batch_hnsw"] = _with_index(model, many, hnsw)
    results["ranker_cost"] = _ranker_cost(model, filtered, many)
    return results


def _hnsw(item_factors: np.ndarray, threads: int):
    """An HNSW graph over the item factors with the [index] defaults of kind "hnsw" (the previous default)."""
    from recsys.config import IndexConfig
    from recsys.training.index import VectorIndex

    return VectorIndex.build(item_factors, config=IndexConfig(kind="hnsw", threads=threads, recall_sample=0))


def retrieval(item_factors: np.ndarray, queries: np.ndarray, index, hnsw, threads: int, k: int = 50) -> dict:
    """Top-``k`` over the same vectors: exact floors, the index, an HNSW graph; batch q/s, recall, one-query latency."""
    import faiss
    from threadpoolctl import threadpool_limits

    x = np.ascontiguousarray(item_factors, dtype=np.float32)
    m = len(queries)
    out: dict = {"index_kind": index.kind}

    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)

    def numpy_exact(q: np.ndarray) -> None:
        for lo in range(0, len(q), 256):  # blocks of users, as the push scores them
            s = q[lo : lo + 256] @ x.T
            np.argpartition(-s, k - 1, axis=1)[:, :k]

    searches = {
        "faiss_flat": lambda q: flat.search(q, k),
        "numpy_gemm": numpy_exact,
        "index": lambda q: index.search(q, k),
        "hnsw": lambda q: hnsw.search(q, k),
    }
    # three rounds, the four searches interleaved, the median of each: a shared machine's load
    # drifts over a run, and this keeps each ratio to what ran at about the same time
    seconds: dict[str, list[float]] = {name: [] for name in searches}
    for name, search in searches.items():
        search(queries[:256])  # warm-up
    for _ in range(3):
        for name, search in searches.items():
            t = _timer()
            search(queries)
            seconds[name].append(_timer() - t)
    for name in searches:
        out[f"{name}_queries_per_s"] = m / float(np.median(seconds[name]))
    sample = queries[:1000]
    out["index_recall_at_50"] = index.recall_at_k(sample, k)
    out["index_scan_share"] = index.scan_share_
    out["hnsw_recall_at_50"] = hnsw.recall_at_k(sample, k)
    out["hnsw_ef_search"] = hnsw.config_.ef_search
    # one query per call (the single recommend), BLAS single-threaded
    with threadpool_limits(1, "blas"):
        faiss.omp_set_num_threads(1)
        for name, search in (("index", index.search), ("hnsw", hnsw.search), ("faiss_flat", lambda q, kk: flat.search(q, kk))):
            pct = _latency(lambda r, search=search: search(sample[r : r + 1], k), [(r,) for r in range(len(sample))])
            out[f"{name}_single_p50_ms"], out[f"{name}_single_p99_ms"] = pct["p50_ms"], pct["p99_ms"]
        faiss.omp_set_num_threads(threads)
    return out


def _with_index(model, many: list[str], index) -> dict:
    """The same batch run with another item index in the bundle (here: HNSW instead of the exact index)."""
    import dataclasses

    from recsys.ranking import Recommender

    rec = Recommender.from_model(dataclasses.replace(model, item_index=index))
    rec.recommend_many(many[:1000], k=K)  # warm-up
    t = _timer()
    rec.recommend_many(many, k=K)
    many_s = _timer() - t
    return {"index_kind": index.kind, "recommend_many_users_per_s": len(many) / many_s}


def factors_retrieval(path: Path, n_queries: int, threads: int, seed: int) -> dict:
    """The retrieval table on a trained bundle's ALS factors (its users as queries)."""
    from recsys.config import IndexConfig
    from recsys.training.index import VectorIndex

    item_factors = np.load(path / "item_factors.npy", mmap_mode="r")
    user_factors = np.load(path / "user_factors.npy", mmap_mode="r")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(user_factors), size=min(n_queries, len(user_factors)), replace=False))
    queries = np.ascontiguousarray(user_factors[rows], dtype=np.float32)
    # built here with this code's defaults: the bundle may hold an index of an older format
    index = VectorIndex.build(item_factors, config=IndexConfig(threads=threads, recall_sample=0))
    out = {"bundle": str(path), "users": len(user_factors), "items": len(item_factors)}
    return out | retrieval(item_factors, queries, index, _hnsw(item_factors, threads), threads)


def markdown(results: dict, timings: dict) -> str:
    """The figures as the Markdown section of benchmarks/README.md."""
    s, c, b, e = results["single"], results["concurrent_calls_per_s"], results["batch"], results["batch_hnsw"]
    lines = [
        f"Bundle: {results['users']:,} users x {results['items']:,} items, {F} factors "
        f"(synthetic city tables; random topic-structured factors, see the script's docstring), "
        f"{results['threads']} threads, k = {K}. Load: {results['load_s']:.1f} s.",
        "",
        "| call | p50 ms | p99 ms | calls/s (1 thread) | calls/s (all threads) |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = [
        ("`recommend(user)`", "recommend", "recommend"),
        ("`recommend(user, channel, topics, exclude)`", "recommend_filtered", "recommend_filtered"),
        ("`recommend(new user, group, region)`", "recommend_cold_user", None),
        ("implicit `model.recommend(userid, user_items[userid], N=10)`", "implicit_recommend", "implicit_recommend"),
    ]
    for label, key, ckey in rows:
        r = s[key]
        conc = f"{c[ckey]:,.0f}" if ckey else "-"
        lines.append(f"| {label} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['calls_per_s']:,.0f} | {conc} |")
    ratio = s["recommend_filtered"]["p99_ms"] / s["implicit_recommend"]["p99_ms"]
    lines += [
        "",
        f"p99 with filters / implicit's p99 in the same run: {ratio:.2f}x.",
        "",
        "| batch | per second |",
        "|---|---:|",
        f"| `recommend_many` (k = {K}, default ranker), users | {b['recommend_many_users_per_s']:,.0f} |",
        f"| `recommend_many` with an HNSW index instead (recall@50 {b['hnsw_recall_at_50']:.3f}), users "
        f"| {e['recommend_many_users_per_s']:,.0f} |",
        "",
        retrieval_markdown(b),
        "",
        f"`recommend_many` / the faster exact floor: "
        f"{max(b['faiss_flat_queries_per_s'], b['numpy_gemm_queries_per_s']) / b['recommend_many_users_per_s']:.2f}x the time. "
        f"Share of full lists in `recommend_many`: {b['recommend_many_full_lists']:.3f}. "
        "Bundle build: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + ".",
    ]
    rc = results.get("ranker_cost")
    if rc:
        lines += ["", ranker_cost_markdown(rc)]
    return "\n".join(lines)


def ranker_cost_markdown(rc: dict) -> str:
    """The linear vs learned table (same model, same run, interleaved)."""
    rows = (
        ("linear blend", "linear"),
        (f"learned, rescore {rc['rescore_default']} (default)", "learned"),
        ("learned, rescore 30 (2 k + 10)", "learned_rescore_30"),
    )
    lines = [
        "| ranker (same bundle, same run, interleaved) | `recommend` with filters p50 ms | p99 ms | `recommend_many` users/s |",
        "|---|---:|---:|---:|",
    ]
    for label, key in rows:
        r = rc[key]
        lines.append(
            f"| {label} | {r['recommend_filtered_p50_ms']:.2f} | {r['recommend_filtered_p99_ms']:.2f} "
            f"| {r['recommend_many_users_per_s']:,.0f} |"
        )
    for label, key in rows[1:]:
        ratio = rc[f"{key}_over_linear"]
        lines.append(
            f"| {label} / linear | | {ratio['recommend_filtered_p99']:.2f}x | {ratio['recommend_many_time']:.2f}x the time |"
        )
    return "\n".join(lines)


def ranker_cost_only(path: Path, n_calls: int, n_many: int, seed: int) -> dict:
    """The linear vs learned table on a bundle's own (trained) ranker: its users, filtered calls as in the main run."""
    from recsys.training.model import TrainedModel

    model = TrainedModel.load(path)
    if model.ranker is None:
        raise SystemExit(f"{path} has no learned ranker")
    rng = np.random.default_rng(seed + 1)
    user_ids = model.users["user_id"].astype(str).to_numpy()
    ids = rng.choice(user_ids, size=min(n_calls, len(user_ids)), replace=False).tolist()
    topics = list(model.taxonomy.topics)
    item_ids = model.items["item_id"].astype(str).to_numpy()
    filtered = [(u, list(rng.choice(topics, 2, replace=False)), list(rng.choice(item_ids, 3, replace=False))) for u in ids]
    many = rng.choice(user_ids, size=min(n_many, len(user_ids)), replace=False).tolist()
    out = _ranker_cost(model, filtered, many)
    out["bundle"] = str(path)
    out["trees"] = model.ranker.report.get("best_iteration")
    out["exposure_model"] = model.ranker.exposure_model is not None
    return out


def retrieval_markdown(b: dict) -> str:
    """The retrieval table (same vectors, same queries, same run)."""
    rows = [
        "| top-50 over the item factors | recall@50 | batch queries/s | one query p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
        f"| the index ({b['index_kind']}, {b['index_scan_share']:.0%} of items scored) | {b['index_recall_at_50']:.3f} "
        f"| {b['index_queries_per_s']:,.0f} | {b['index_single_p50_ms']:.3f} | {b['index_single_p99_ms']:.3f} |",
        f"| HNSW (M 32, efSearch {b['hnsw_ef_search']}) | {b['hnsw_recall_at_50']:.3f} | {b['hnsw_queries_per_s']:,.0f} "
        f"| {b['hnsw_single_p50_ms']:.3f} | {b['hnsw_single_p99_ms']:.3f} |",
        f"| exact floor: faiss `IndexFlatIP` | 1 | {b['faiss_flat_queries_per_s']:,.0f} "
        f"| {b['faiss_flat_single_p50_ms']:.3f} | {b['faiss_flat_single_p99_ms']:.3f} |",
        f"| exact floor: numpy GEMM (256 users a block) + argpartition | 1 | {b['numpy_gemm_queries_per_s']:,.0f} | - | - |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) the bundle, run the benchmark, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=2000, help="single calls timed per kind")
    parser.add_argument("--many", type=int, default=20_000, help="users in the recommend_many run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/out/ranking", help="bundle and results folder")
    parser.add_argument("--reuse", action="store_true", help="reuse the bundle already in --out")
    parser.add_argument("--factors-from", metavar="BUNDLE", help="only the retrieval table, on a trained bundle's factors")
    parser.add_argument("--queries", type=int, default=5000, help="user queries of --factors-from")
    parser.add_argument(
        "--ranker-cost-from", metavar="BUNDLE", help="only the linear vs learned table, on a (trained) bundle's own ranker"
    )
    args = parser.parse_args(argv)

    import faiss
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    faiss.omp_set_num_threads(args.threads)
    if args.factors_from:
        table = factors_retrieval(Path(args.factors_from), args.queries, args.threads, args.seed)
        print(json.dumps(table, indent=2))
        print(f"\nTrained bundle {table['bundle']}: {table['users']:,} users x {table['items']:,} items.\n")
        print(retrieval_markdown(table))
        return 0
    if args.ranker_cost_from:
        table = ranker_cost_only(Path(args.ranker_cost_from), args.calls, args.many, args.seed)
        print(json.dumps(table, indent=2))
        print(ranker_cost_markdown(table))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict = {}
    if args.reuse and (out / "models" / "latest").exists():
        bundle = out / "models" / "latest"
    else:
        bundle, timings = build_bundle(args.users, args.items, out, args.seed, args.threads)
    results = run_benchmark(bundle, args.calls, args.many, args.threads, args.seed)
    results["build"] = timings
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(markdown(results, timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
