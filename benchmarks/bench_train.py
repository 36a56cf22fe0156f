"""Training benchmark: `recsys train` per step vs a bare `implicit` ALS fit, and the warm start.

Usage::

    python benchmarks/bench_train.py --users 100000 --items 50000
    python benchmarks/bench_train.py --users 1000000 --items 50000
    python benchmarks/bench_train.py --users 100000 --items 50000 --warm-start-protocol
    python benchmarks/bench_train.py --users 100000 --items 50000 --engagement-fit dd49b29

Each measured run is its own process so its peak resident memory (ru_maxrss of
the child) is its own; the training also reports each step's own peak
(``steps_peak_rss_gib``: the kernel's high-water mark reset before the step). The peer, measured in the same invocation on the same
data: `implicit`'s own ALS fit on the same confidence matrix with the same
factors, iterations and threads (the floor of our collaborative step).

The engagement step alone (``--engagement-fit COMMIT``): the city's shown
pairs collected and the engagement model fitted in one child with today's
code and in another with COMMIT's ``recsys/training/engagement.py`` (CPU
seconds, the fit's own peak memory, the largest difference between the
fitted effects).

The warm-start protocol (``--warm-start-protocol``): a log of D+7 days; train
cold on days 1..D-1; then on days 1..D compare a warm-started fit (from the
first bundle) against a cold fit of 15 iterations, scoring NDCG@10 of raw
factor scores (seen items excluded) on the following week's positive
engagements with ``recsys.evaluation.metrics.ndcg_at_k``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "train"
PY = sys.executable


def _child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; return its JSON result plus its own peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen([PY, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the max over all children
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {code[:60]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 1)
    result["peak_rss_gib"] = round(usage.ru_maxrss / 2**20, 2)
    # a per-step reset of the high-water mark (STEP_PEAKS) resets ru_maxrss too: the peak is then the largest step's
    steps = [p for p in result.get("steps_peak_rss_gib", {}).values() if p]
    result["peak_rss_gib"] = max([result["peak_rss_gib"], *steps])
    return result


def ensure_city(users: int, items: int, days: int, seed: int) -> Path:
    """Generate (once) and return the city folder."""
    path = OUT / f"city_{users}_{items}_{days}"
    if not (path / "manifest.json").exists():
        print(f"generating {users} users x {items} items x {days} days ...", flush=True)
        subprocess.run(
            [PY, "-m", "recsys.cli", "generate", "--users", str(users), "--items", str(items),
             "--days", str(days), "--seed", str(seed), "--out", str(path)],
            cwd=ROOT, check=True,
        )
    return path


#: each step's own peak resident memory (benchmarks/step_memory.py), read in the training child
STEP_PEAKS = r"""
import sys
sys.path.insert(0, "benchmarks")
from step_memory import track_step_peaks
step_peaks_kib = track_step_peaks()
"""

TRAIN = STEP_PEAKS + r"""
import json, sys, time
from recsys.training import train as run
summary = run(sys.argv[1], sys.argv[2], as_of=sys.argv[3] or None, warm_start=sys.argv[4] or None,
              config_path=sys.argv[5] or None, stream=sys.stderr)
from recsys.training.model import TrainedModel
m = TrainedModel.load(summary["bundle"], verify=False)
print(json.dumps({"timings_s": m.manifest["timings_s"], "seconds": summary["seconds"], "bundle": summary["bundle"],
                  "events": summary["events"], "index": summary["index"], "content_worker": summary.get("content_worker"),
                  "steps_peak_rss_gib": {k: round(v / 2**20, 2) for k, v in step_peaks_kib.items()}}))
"""

TRAIN_MODE = r"""
import json, sys
from recsys.training import train as run
summary = run(sys.argv[1], sys.argv[2], config_path=sys.argv[3], full=sys.argv[4] == "full", stream=sys.stderr)
from recsys.training.model import TrainedModel
m = TrainedModel.load(summary["bundle"], verify=False)
print(json.dumps({"timings_s": m.manifest["timings_s"], "seconds": summary["seconds"], "bundle": summary["bundle"],
                  "events": summary["events"], "mode": summary["mode"], "new_events": summary.get("new_events"),
                  "index": summary["index"]}))
"""

BARE_ALS = r"""
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from recsys.config import EngineConfig
from recsys.schema import validate
from recsys.idmap import IdMap
from recsys.training.interactions import build_interactions
from recsys.training.collaborative import als_confidence
from implicit.cpu.als import AlternatingLeastSquares
cfg = EngineConfig().collaborative
res = validate(data=sys.argv[1])
inter = build_interactions(res.events, IdMap.from_ids(res.users.user_id.to_numpy()),
                           IdMap.from_ids(res.items.item_id.to_numpy()), EngineConfig().interactions)
conf = als_confidence(inter, cfg.alpha).tocsr()
model = AlternatingLeastSquares(factors=cfg.factors, regularization=cfg.regularization, alpha=1.0,
                                iterations=cfg.iterations, num_threads=cfg.threads, random_state=cfg.seed)
with threadpool_limits(1, "blas"):
    t = time.perf_counter(); model.fit(conf, show_progress=False); fit = time.perf_counter() - t
print(json.dumps({"bare_als_fit_s": round(fit, 2), "nnz": int(conf.nnz), "shape": list(conf.shape)}))
"""


NDCG_PAIRED = r"""
import json, sys
import numpy as np, pandas as pd
from recsys import columns as C
from recsys.training.model import TrainedModel
from recsys.schema import validate
from recsys.evaluation.metrics import ndcg_at_k
city, start, stop, paths = sys.argv[1], pd.Timestamp(sys.argv[2]), pd.Timestamp(sys.argv[3]), sys.argv[4:6]
ev = validate(data=city).events
test = ev[(ev[C.TIMESTAMP] >= start) & (ev[C.TIMESTAMP] < stop) & ev[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE)]
per = []
for path in paths:  # every user with a positive on an item the bundle has not seen them engage with
    m = TrainedModel.load(path, verify=False)
    u = pd.Index(m.users[C.USER_ID]).get_indexer(test[C.USER_ID]); i = pd.Index(m.items[C.ITEM_ID]).get_indexer(test[C.ITEM_ID])
    pairs = pd.DataFrame({"u": u, "i": i}).drop_duplicates()
    pairs = pairs[(pairs.u >= 0) & (pairs.i >= 0)]
    seen = m.seen
    pairs = pairs[np.asarray(seen[pairs.u.to_numpy(), pairs.i.to_numpy()]).ravel() == 0]
    users = np.sort(pairs.u.unique()); rel = pairs.groupby("u").i.apply(set)
    UF, IF = np.asarray(m.user_factors), np.asarray(m.item_factors)
    hits = np.zeros((len(users), 10)); nrel = np.zeros(len(users))
    for b in range(0, len(users), 2000):
        blk = users[b:b + 2000]
        s = UF[blk] @ IF.T
        sub = seen[blk]
        s[np.repeat(np.arange(len(blk)), np.diff(sub.indptr)), sub.indices] = -np.inf
        top = np.argsort(-s, axis=1, kind="stable")[:, :10]
        for r, uu in enumerate(blk):
            R = rel[uu]; nrel[b + r] = len(R); hits[b + r] = [t in R for t in top[r]]
    per.append(pd.Series(ndcg_at_k(hits, nrel, 10), index=np.asarray(m.users[C.USER_ID])[users]))
common = per[0].index.intersection(per[1].index)
a, b = per[0].loc[common].to_numpy(), per[1].loc[common].to_numpy()
# paired bootstrap over users (same users resampled for both bundles), seed 0
idx = np.random.default_rng(0).integers(0, len(common), size=(1000, len(common)))
boot = 1 - a[idx].mean(axis=1) / b[idx].mean(axis=1)
print(json.dumps({"ndcg@10": [float(a.mean()), float(b.mean())], "users": int(len(common)),
                  "relative_loss": float(1 - a.mean() / b.mean()),
                  "relative_loss_ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]}))
"""


def bench_scale(users: int, items: int, seed: int, ranker: str = "") -> None:
    """``recsys train`` on the city, then the bare fit; ``ranker`` ("linear") sets ``[ranking] ranker``."""
    city = ensure_city(users, items, 60, seed)
    models = OUT / f"models_{users}{'_' + ranker if ranker else ''}"
    config = ""
    if ranker:
        path = OUT / f"config_{ranker}.toml"
        path.write_text(f'[ranking]\nranker = "{ranker}"\n', encoding="utf-8")
        config = str(path)
    print(f"\n== recsys train: {users} users x {items} items (ranker {ranker or 'default'}) ==", flush=True)
    ours = _child(TRAIN, str(city), str(models), "", "", config)
    print("== bare implicit ALS fit on the same matrix ==", flush=True)
    bare = _child(BARE_ALS, str(city))
    print(json.dumps({"users": users, "items": items, "ours": ours, "bare": bare}, indent=2))
    als = ours["timings_s"].get("collaborative (als)")
    print(
        f"\nRESULT users={users} items={items} events={ours['events']} train_total={ours['seconds']}s "
        f"(peak {ours['peak_rss_gib']} GiB) ALS step={als}s bare_ALS_fit={bare['bare_als_fit_s']}s (peak {bare['peak_rss_gib']} GiB) "
        f"ratio_total/bare={ours['seconds'] / bare['bare_als_fit_s']:.2f} index={ours['index']}"
    )
    print(f"steps: {json.dumps(ours['timings_s'])}\nsteps' own peak RSS (GiB): {json.dumps(ours['steps_peak_rss_gib'])}")
    if ours.get("content_worker"):
        # the content embedding + near-duplicate graph ran in a worker process beside the first steps
        # (recsys/training/job.py); its memory is its own, on top of the training process's during them
        print(f"content worker (beside interactions, topic profiles, popularity): {json.dumps(ours['content_worker'])}")


def warm_protocol(users: int, items: int, seed: int) -> None:
    import pandas as pd

    days = 67  # D = 60, then a week to score
    city = ensure_city(users, items, days, seed)
    manifest = json.loads((city / "manifest.json").read_text())
    end = pd.Timestamp(manifest["end"])
    day_d = end - pd.Timedelta(days=7)  # end of day D
    day_d1 = day_d - pd.Timedelta(days=1)  # end of day D-1
    models = OUT / f"warm_{users}"
    print("\n== cold fit on days 1..D-1 (the previous night's bundle) ==", flush=True)
    prev = _child(TRAIN, str(city), str(models), day_d1.isoformat(), "", "")
    print("== cold fit, 15 iterations, on days 1..D ==", flush=True)
    cold = _child(TRAIN, str(city), str(models), day_d.isoformat(), "", "")
    print("== warm-started fit on days 1..D ==", flush=True)
    warm = _child(TRAIN, str(city), str(models), day_d.isoformat(), prev["bundle"], "")
    paired = _child(NDCG_PAIRED, str(city), day_d.isoformat(), end.isoformat(), warm["bundle"], cold["bundle"])
    scores = {name: {"ndcg@10": paired["ndcg@10"][j]} for j, name in enumerate(("warm", "cold"))}
    cold_fit = cold["timings_s"]["collaborative (als)"]
    warm_fit = warm["timings_s"]["collaborative (als)"]
    loss = paired["relative_loss"]
    print(
        f"\nRESULT warm-start users={users}: cold ALS {cold_fit}s NDCG@10={scores['cold']['ndcg@10']:.4f} | "
        f"warm ALS {warm_fit}s NDCG@10={scores['warm']['ndcg@10']:.4f} | speed-up {cold_fit / warm_fit:.1f}x, "
        f"relative NDCG loss {100 * loss:.2f}% | whole train cold {cold['seconds']}s warm {warm['seconds']}s"
    )


INC_CONFIG = """
[training]
# the week of nights must stay incremental for the comparison (the default, 7, makes the 7th a full one)
full_every_days = 30
"""


def _lock() -> object:
    """Hold /tmp/heavy.lock for one child (the machine is shared: one heavy job at a time)."""
    import fcntl

    fh = open("/tmp/heavy.lock", "a")
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def _locked(code: str, *args: str) -> dict:
    if os.environ.get("BENCH_NO_LOCK"):  # a small smoke run is not a heavy job
        return _child(code, *args)
    fh = _lock()
    try:
        return _child(code, *args)
    finally:
        fh.close()


def _daily_files(city: Path, folder: Path) -> list[Path]:
    """Split the city's events into one Parquet file per local day (once); return them in order."""
    import pandas as pd

    days = folder / "days"
    if not (days / "_done").exists():
        days.mkdir(parents=True, exist_ok=True)
        events = pd.read_parquet(city / "events.parquet")
        local = events["timestamp"].dt.tz_convert("Asia/Shanghai").dt.date
        for day, frame in events.groupby(local, sort=True):
            frame.to_parquet(days / f"{day}.parquet", index=False)
        (days / "_done").write_text("")
    return sorted(days.glob("*.parquet"))


def incremental_protocol(users: int, items: int, seed: int, nights: int = 7, *, resume: bool = False,
                         full_ranker: str = "", ranker: str = "") -> None:
    """A week of incremental nights against a full retrain on the last night's data.

    Days 1..60 trained in full (the first night: history store written), then
    ``nights`` incremental nights each adding one day's file, then a full
    retrain (``--full``) on the same 60 + ``nights`` days; both bundles scored
    by NDCG@10 of raw factor scores on the following week's positives.
    ``resume`` keeps a finished first night (and any nights the history store
    already holds) and runs the rest under one hold of the heavy lock;
    ``full_ranker = "linear"`` trains the comparison's full retrain with the
    linear blend (its ALS, which the NDCG scores, is the same fit); ``ranker``
    sets the ranker of every run.
    """
    import pandas as pd

    from recsys.training.incremental import HistoryStore

    days_total = 60 + nights + 7
    city = ensure_city(users, items, days_total, seed)
    folder = OUT / f"inc_{users}"
    files = _daily_files(city, folder)
    data = folder / "data"
    config = folder / "config.toml"
    config.write_text(INC_CONFIG + (f'\n[ranking]\nranker = "{ranker}"\n' if ranker else ""), encoding="utf-8")
    full_config = config
    if full_ranker:
        full_config = folder / "config_full.toml"
        full_config.write_text(INC_CONFIG + f'\n[ranking]\nranker = "{full_ranker}"\n', encoding="utf-8")
    store = HistoryStore.open(folder / "models") if resume else None
    done = 0 if store is None else len(store.doc["sources"])
    if done < 60:
        for sub in ("data", "models"):
            shutil.rmtree(folder / sub, ignore_errors=True)
        (data / "events").mkdir(parents=True)
        for name in ("users.parquet", "items.parquet", "manifest.json"):
            os.link(city / name, data / name)
    else:
        for f in files[done:]:  # a night killed before its store was written is done again
            (data / "events" / f.name).unlink(missing_ok=True)
    shutil.rmtree(folder / "full", ignore_errors=True)
    runs_file = folder / "runs.jsonl"
    if done < 60:
        runs_file.write_text("")

    def add(day_files: list[Path]) -> None:
        for f in day_files:
            os.link(f, data / "events" / f.name)

    def record(run: dict) -> dict:
        with runs_file.open("a") as fh:
            fh.write(json.dumps(run) + "\n")
        return run

    run_child = _child if resume else _locked
    hold = _lock() if resume and not os.environ.get("BENCH_NO_LOCK") else None
    try:
        if done < 60:
            add(files[:60])
            print(f"\n== night 0: full training on days 1..60 ({users} users) ==", flush=True)
            record({"night": 0, **run_child(TRAIN_MODE, str(data), str(folder / "models"), str(config), "")})
        for night in range(max(done - 59, 1), nights + 1):
            add([files[59 + night]])
            print(f"== night {night}: incremental, + {files[59 + night].name} ==", flush=True)
            record({"night": night, **run_child(TRAIN_MODE, str(data), str(folder / "models"), str(config), "")})
        print(f"== full retrain on days 1..{60 + nights} ==", flush=True)
        full = record({"night": "full", **run_child(TRAIN_MODE, str(data), str(folder / "full"), str(full_config), "full")})
        runs = [json.loads(line) for line in runs_file.read_text().splitlines() if line.strip()]
        test_start = pd.Timestamp(files[60 + nights].stem, tz="Asia/Shanghai").tz_convert("UTC")
        test_end = pd.Timestamp(json.loads((city / "manifest.json").read_text())["end"])
        last = [r for r in runs if r["night"] == nights][-1]
        paired = run_child(
            NDCG_PAIRED, str(city), test_start.isoformat(), test_end.isoformat(), last["bundle"], full["bundle"]
        )
        scores = {
            name: {"ndcg@10": paired["ndcg@10"][j], "users": paired["users"]}
            for j, name in enumerate(("incremental", "full"))
        }
    finally:
        if hold is not None:
            hold.close()
    loss = paired["relative_loss"]
    low, high = paired["relative_loss_ci95"]
    nightly = [r for r in runs if r["night"] not in (0, "full") and r["mode"] == "incremental"]
    per_night = sorted(r["seconds"] for r in nightly)
    report = {
        "users": users, "items": items, "nights": nights, "runs": runs, "ndcg": scores,
        "relative_ndcg_loss": loss, "relative_ndcg_loss_ci95": [low, high], "full_ranker": full_ranker or "default",
    }
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(
        f"\nRESULT incremental users={users}: {len(nightly)} incremental nights, median {per_night[len(per_night) // 2]}s "
        f"(min {per_night[0]}s, max {per_night[-1]}s; peak {max(r['peak_rss_gib'] for r in nightly)} GiB) | "
        f"full retrain {full['seconds']}s (peak {full['peak_rss_gib']} GiB, ranker {full_ranker or 'default'}) | NDCG@10 "
        f"incremental {scores['incremental']['ndcg@10']:.4f} vs full {scores['full']['ndcg@10']:.4f}: "
        f"relative loss {100 * loss:.2f}% [paired 95% interval {100 * low:.2f}%, {100 * high:.2f}%] over "
        f"{paired['users']} users"
    )


ENGAGEMENT_FIT = r"""
import importlib.util, json, sys, time
from pathlib import Path
import numpy as np
from recsys import columns as C
from recsys.config import EngagementConfig
from recsys.idmap import IdMap
from recsys.schema import validate
from recsys.taxonomy import load_taxonomy
from recsys.training.interactions import event_codes, type_codes
city, module_file, out = sys.argv[1], sys.argv[2], sys.argv[3]
if module_file:  # the engagement module of another commit, beside today's
    spec = importlib.util.spec_from_file_location("reference_engagement", module_file)
    E = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = E
    spec.loader.exec_module(E)
else:
    from recsys.training import engagement as E
def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
res = validate(data=city)
users, items, events = res.users, res.items, res.events
tax, cfg = load_taxonomy(), EngagementConfig()
u_map, i_map = IdMap.from_ids(users[C.USER_ID].to_numpy()), IdMap.from_ids(items[C.ITEM_ID].to_numpy())
codes, types = event_codes(events, u_map, i_map), type_codes(events[C.EVENT_TYPE])
cpu = time.process_time()
ex = E.build_exposures(events, u_map, i_map, items, tax, end=events[C.TIMESTAMP].max(), trend_days=cfg.trend_days,
                       codes=codes, types=types)
collect_cpu = time.process_time() - cpu
del res, events, codes, types
held = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")
cpu, wall = time.process_time(), time.perf_counter()
model = E.EngagementModel(cfg, tax).fit(ex, users, items)
fit_cpu, fit_wall = time.process_time() - cpu, time.perf_counter() - wall
np.savez(out, **{k: np.asarray(getattr(model, k)) for k in (
    "intercept_", "authority_quality_", "item_quality_", "segment_interest_", "user_interest_",
    "segment_format_", "user_format_", "topic_freshness_", "topic_trend_", "user_bias_")})
print(json.dumps({"pairs": len(ex), "fitted_pairs": model.n_exposures_, "sweeps": model.n_sweeps_,
                  "log_loss": model.log_loss_, "collect_cpu_s": round(collect_cpu, 2), "fit_cpu_s": round(fit_cpu, 2),
                  "fit_wall_s": round(fit_wall, 2), "held_before_fit_gib": round(held, 3),
                  "fit_peak_above_held_gib": round(status("VmHWM") - held, 3)}))
"""


def engagement_fit(users: int, items: int, seed: int, reference: str) -> None:
    """The engagement step alone (first showings, then the fit) on the city, beside another commit's code.

    Both children validate the same city, collect its shown pairs and fit
    the model with the default ``[engagement]`` settings (seeded sample of
    ``max_exposures``); each reports CPU seconds and the fit's own peak
    resident memory above what the process held before it. The largest
    difference between the two fits' effects is printed beside.
    """
    import numpy as np

    city = ensure_city(users, items, 60, seed)
    folder = OUT / f"engagement_{users}"
    folder.mkdir(parents=True, exist_ok=True)
    old_module = folder / "reference_engagement.py"
    old_module.write_text(
        subprocess.run(["git", "show", f"{reference}:recsys/training/engagement.py"], cwd=ROOT, check=True,
                       capture_output=True, text=True).stdout,
        encoding="utf-8",
    )
    runs = {}
    for name, module in (("reference", str(old_module)), ("today", "")):
        runs[name] = _child(ENGAGEMENT_FIT, str(city), module, str(folder / f"{name}.npz"))
    ref, new = np.load(folder / "reference.npz"), np.load(folder / "today.npz")
    diff = {k: float(np.abs(ref[k].astype(np.float64) - new[k]).max()) for k in ref.files}
    print(json.dumps({"users": users, "reference": reference, "runs": runs, "max_abs_diff": diff}, indent=2))
    r, t = runs["reference"], runs["today"]
    print(
        f"\nRESULT engagement users={users} pairs={t['pairs']} fitted={t['fitted_pairs']} sweeps {r['sweeps']}/{t['sweeps']} | "
        f"collect CPU {r['collect_cpu_s']}s -> {t['collect_cpu_s']}s | fit CPU {r['fit_cpu_s']}s -> {t['fit_cpu_s']}s | "
        f"fit peak above held {r['fit_peak_above_held_gib']} -> {t['fit_peak_above_held_gib']} GiB "
        f"({1024**3 * t['fit_peak_above_held_gib'] / max(t['fitted_pairs'], 1):.0f} B per fitted pair) | "
        f"log-loss {r['log_loss']:.6f} / {t['log_loss']:.6f} | largest effect difference {max(diff.values()):.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100000)
    parser.add_argument("--items", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-start-protocol", action="store_true")
    parser.add_argument("--incremental-protocol", action="store_true", help="a week of incremental nights vs a full retrain")
    parser.add_argument("--nights", type=int, default=7)
    parser.add_argument("--resume", action="store_true", help="keep finished nights; one hold of the heavy lock")
    parser.add_argument("--full-ranker", default="", help='e.g. "linear" for the comparison\'s full retrain')
    parser.add_argument("--ranker", default="", help='e.g. "linear" for every run (the training steps without the learned ranker)')
    parser.add_argument("--engagement-fit", metavar="COMMIT",
                        help="the engagement step alone, today's code beside COMMIT's (e.g. dd49b29)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    if args.incremental_protocol:
        incremental_protocol(args.users, args.items, args.seed, args.nights, resume=args.resume,
                             full_ranker=args.full_ranker, ranker=args.ranker)
    elif args.engagement_fit:
        engagement_fit(args.users, args.items, args.seed, args.engagement_fit)
    elif args.warm_start_protocol:
        warm_protocol(args.users, args.items, args.seed)
    else:
        bench_scale(args.users, args.items, args.seed, ranker=args.ranker)


if __name__ == "__main__":
    main()
