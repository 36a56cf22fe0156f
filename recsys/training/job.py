"""The training job: clean tables in, a :class:`~recsys.training.model.TrainedModel` out.

:func:`train_model` runs the steps listed in :mod:`recsys.training` on tables in
memory; :func:`train` is the ``recsys train`` job around it (read and validate the
files, train, check the result, write the bundle atomically). Step 7 (popularity,
the seen matrix, channel counts) lives here; every other step is a module of its own.
"""

from __future__ import annotations

import dataclasses
import os
import pickle  # only for the pipe to the content worker process: never for a file
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from functools import partial
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np
import pandas as pd
import psutil
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys import bundle as bundle_io
from recsys import columns as C
from recsys.config import ALL_SECTIONS, EngineConfig, check_config, load_config
from recsys.exceptions import ArtifactError, ConfigError, DataError, RecsysError
from recsys.guards import check_bundle_sanity, check_training_data
from recsys.idmap import IdMap
from recsys.io import prepare_output_dir
from recsys.training.model import USER_COLUMNS, USERS_TABLE, TrainedModel
from recsys.progress import Steps
from recsys.schema import event_files, find_table, read_manifest_end, read_table, validate, validate_tables
from recsys.seeds import check_random_state
from recsys.training.coldstart import ItemColdStart, UserColdStart
from recsys.training.collaborative import CollaborativeModel, WarmStart
from recsys.training.compiled_pairs import seen_entries
from recsys.training.compiled_sums import sparse_group_sums
from recsys.training.engagement import EngagementModel, EngagementStart, build_exposures
from recsys.training.incremental import (
    DecayedState,
    HistoryStore,
    SourceFile,
    advance,
    changed_rows,
    day_aggregates,
    events_folder,
    history_exposures,
    history_signals,
    interactions_fingerprint,
    users_record,
)
from recsys.training.memory import collection_paused, release_pages
from recsys.training.interactions import Interactions, build_interactions, channel_counts, event_codes, positions, type_codes
from recsys.training.profiles import TopicProfiles
from recsys.training.ranker_training import fit_ranker
from recsys.training.topic_rates import topic_rates_for
from recsys.training.signals import compute_signals
from recsys.taxonomy import Taxonomy, load_taxonomy
from recsys.timeutil import aware_timestamp, parse_option_time

N_STEPS = 10

#: the users columns a training step reads (group codes, segment, region): a night whose users file
#: did not change reads only these of yesterday's table
TRAINING_USER_COLUMNS = (C.USER_ID, C.GROUP, C.SUB_GROUP, C.REGION)

#: a catalogue at least this large is embedded, and its near-duplicate graph searched, in a worker
#: process while the single-threaded steps (matrices, topic profiles, popularity) run on the other
#: core; a smaller one in line (the worker's start and imports cost ~2 s)
CONTENT_WORKER_MIN_ITEMS = 20_000


def _content_and_duplicates(
    items: pd.DataFrame, config: EngineConfig, taxonomy: Taxonomy, *, graph: bool
) -> tuple[Any, np.ndarray, Any, dict[str, float]]:
    """Fit the content embedding of ``items`` and, with ``graph``, search its near-duplicate graph.

    Returns the embedder, the vectors, the graph (None without ``graph``) and the seconds of each part.
    """
    # heavy: jieba and scikit-learn load when a catalogue is embedded
    from recsys.training.content import ContentEmbedder
    # cycle: the graph's module reads recsys.ranking, whose package imports the training model
    from recsys.training.duplicates import NearDuplicates

    start = time.perf_counter()
    embedder = ContentEmbedder(config=config.content, taxonomy=taxonomy)
    content = embedder.fit_transform(items)
    timings = {"content embedding": round(time.perf_counter() - start, 3)}
    duplicates = None
    if graph:
        start = time.perf_counter()
        # the same input TrainedModel.save would search: the float32 vectors the bundle stores
        duplicates = NearDuplicates.build(
            np.ascontiguousarray(content, dtype=np.float32), config.ranking.near_duplicate_threshold
        )
        timings["near_duplicates"] = round(time.perf_counter() - start, 3)
    return embedder, content, duplicates, timings


#: the worker process: a fresh interpreter (no re-run of the caller's main script, no fork of this
#: process's threads) that reads its task from stdin and writes its result to stdout
_WORKER_CODE = "from recsys.training.job import _content_worker; _content_worker()"


def _content_worker() -> None:
    """The worker process's main: the content step of the (items, config, taxonomy) on stdin, pickled
    back to stdout with this process's own peak RSS (KiB). A process-to-process pipe, not an artifact."""
    try:
        items, config, taxonomy = pickle.load(sys.stdin.buffer)
        result = _content_and_duplicates(items, config, taxonomy, graph=True)
        payload = pickle.dumps((result, _own_peak_kib()), protocol=5)
    except BaseException:  # noqa: BLE001 -- the parent embeds in line and raises the error there, to the user
        raise SystemExit(1) from None
    sys.stdout.buffer.write(payload)
    sys.stdout.buffer.flush()


def _own_peak_kib() -> int:
    """This process's peak resident memory (KiB) since it started its program.

    ``VmHWM`` where ``/proc`` has it (``ru_maxrss`` would not do: it survives ``exec`` on
    Linux, so in a worker started by ``subprocess`` it reports the parent's size at the fork).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    # no /proc (macOS, Windows): the size at the end, a lower bound of the peak
    return int(psutil.Process().memory_info().rss) // 1024


class _ContentStep:
    """The content embedding of a full training, started in a worker process and collected when needed.

    Full training is single-threaded outside the ALS fit, so on a machine of two cores one core idles
    through the matrices, topic profiles and popularity; the catalogue's embedding (mostly jieba, pure
    Python) and its near-duplicate graph need only the items table and run there instead. Below
    ``CONTENT_WORKER_MIN_ITEMS`` items, or if the worker cannot start or dies, the step runs in line
    (same code, same result); a worker that fails on bad input says nothing and the in-line run
    raises the error.
    """

    def __init__(self, items: pd.DataFrame, config: EngineConfig, taxonomy: Taxonomy) -> None:
        self._args = (items, config, taxonomy)
        self._proc: subprocess.Popen | None = None
        if len(items) < CONTENT_WORKER_MIN_ITEMS:
            return
        # the worker imports the recsys this process runs, whatever its sys.path
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            )
        except OSError:
            return
        task = pickle.dumps(self._args, protocol=5)

        def feed() -> None:
            # in a thread: the pipe takes the task only as fast as the worker (still importing) reads it
            try:
                proc.stdin.write(task)
                proc.stdin.close()
            except OSError:
                pass  # the worker is gone: result() embeds in line

        self._feeder = threading.Thread(target=feed, daemon=True)
        self._feeder.start()
        self._proc = proc
        # an error in a later step leaves no worker behind
        weakref.finalize(self, _stop_worker, proc)

    def result(self, before_in_line: Callable[[], Any] | None = None) -> tuple[Any, np.ndarray, Any, dict[str, Any]]:
        """The embedder, the vectors, the near-duplicate graph (None in line) and the worker's figures.

        ``before_in_line`` is called before an embedding in this process (no worker, or the
        worker failed).
        """
        failed: dict[str, Any] = {}
        if self._proc is not None:
            try:
                payload = self._proc.stdout.read()
                self._feeder.join()
                ok = self._proc.wait() == 0 and payload
                if ok:
                    (embedder, content, duplicates, timings), peak_kib = pickle.loads(payload)
            except Exception:  # noqa: BLE001 -- any failure of the worker's stream: the in-line run below decides
                ok = False
            finally:
                _stop_worker(self._proc)
            if ok:
                seconds = {f"{name} (worker)": value for name, value in timings.items()}
                return embedder, content, duplicates, {"seconds": seconds, "peak_rss_gib": round(peak_kib / 2**20, 2)}
            # the worker died or failed (e.g. killed for memory): embed in line, and say so in the manifest
            failed = {"failed": True, "returncode": self._proc.returncode}
        if before_in_line is not None:
            before_in_line()
        embedder, content, _, _ = _content_and_duplicates(*self._args, graph=False)
        return embedder, content, None, failed


def _same_duplicates(
    previous: TrainedModel | None, content: np.ndarray, n_items: int, config: EngineConfig
) -> Any:
    """``previous``'s near-duplicate graph when ``content`` is exactly its content vectors (else None).

    The graph (and its calibrated threshold) is a function of the content vectors and
    ``[ranking] near_duplicate_threshold`` only: a night whose catalogue did not change reuses it
    instead of searching every pair again.
    """
    graph = None if previous is None else previous.near_duplicates
    if graph is None or not graph.fits(n_items, config.ranking.near_duplicate_threshold):
        return None
    stored = np.asarray(previous.content_vectors)
    ours = np.ascontiguousarray(content, dtype=np.float32)
    return graph if stored.shape == ours.shape and np.array_equal(stored, ours) else None


def _beside(fn: Callable[..., Any], *args: Any, name: str) -> Future:
    """Run ``fn(*args)`` on a thread of its own from now on; its result (or error) is the Future's.

    The thread is a daemon: a night that fails before asking for the result exits at once,
    without waiting for work whose result nobody will read (such work writes nothing).
    """
    future: Future = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 -- handed to whoever asks for the result
                future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _load_previous(path: str | Path) -> TrainedModel:
    """Yesterday's bundle loaded before its checksums are checked (the caller checks them on a thread, :func:`_beside`).

    A load that fails is checked at once, so that a damaged file is named as by a verified load.
    """
    try:
        return TrainedModel.load(path, verify=False)
    except Exception:  # noqa: BLE001 -- a damaged file can fail a loader any way: its checksum names it
        bundle_io.verify_bundle(bundle_io.resolve(path))
        raise


def _night_engagement(
    decayed: DecayedState,
    users: pd.DataFrame,
    items: pd.DataFrame,
    config: EngineConfig,
    taxonomy: Taxonomy,
    previous: TrainedModel,
    previous_rows: tuple[np.ndarray, np.ndarray],
) -> tuple[EngagementModel, Any, float]:
    """A night's engagement model: warm-started from ``previous`` on a sample of the stored first showings."""
    began = time.perf_counter()
    ecfg = config.engagement
    exposures = history_exposures(decayed, items, ecfg, sample=ecfg.warm_exposures or ecfg.max_exposures, seed=ecfg.seed)
    del decayed  # this thread's hold on the aggregates: the popularity step lets go of the rest
    start = _engagement_start(previous, *previous_rows)
    # one BLAS thread for the fit's small products (4 x 4 Hessians over millions of pairs; the same bundle
    # bit for bit as with two on the 100k and city nights): a second BLAS thread would spin for the core
    # the main thread's steps use. The limit is the process's: no step of the main thread calls BLAS
    # before the fit is waited for (ALS sets its own limit after)
    with threadpool_limits(limits=1, user_api="blas"):
        engagement = EngagementModel(ecfg, taxonomy).fit(exposures, users, items, warm_start=start)
    # yesterday's per-user effects are read once, into today's starting values
    for array in (start.user_interest, start.user_format, start.user_bias):
        release_pages(array)
    del start
    # the topic rates (off by default) are the only later reader of the sampled pairs
    return engagement, exposures if config.ranker.topic_rates else None, round(time.perf_counter() - began, 3)


def _stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()


def segment_popularity(positives: sp.csr_matrix, seg_of_user: np.ndarray, n_segments: int) -> np.ndarray:
    """Sum decayed positive engagement per segment and item.

    Parameters
    ----------
    positives : csr_matrix (n_users, n_items)
        Decayed positive confidence.
    seg_of_user : ndarray int64 (n_users,)
        Segment index of each user.
    n_segments : int

    Returns
    -------
    ndarray float32 (n_segments, n_items)
        Each item's float32 sum over the segment's users, added in user order (compiled:
        :func:`recsys.training.compiled_sums.sparse_group_sums`, the sums of the 0/1
        segment-by-user matrix's product with ``positives``, bit for bit).
    """
    return sparse_group_sums(positives, seg_of_user, n_segments)


def seen_matrix(engaged: sp.csr_matrix, negatives: sp.csr_matrix) -> sp.csr_matrix:
    """Return the int8 seen matrix: +1 positively engaged, -1 dismissed/reported (negative wins).

    One walk over both matrices' sorted rows (compiled: :func:`recsys.training.compiled_pairs.seen_entries`);
    sorted columns, no explicit zeros.
    """
    indptr, indices, data = seen_entries(engaged, negatives)
    seen = sp.csr_matrix((data, indices, indptr), shape=engaged.shape)
    seen.has_sorted_indices = True
    return seen


def train_model(
    users: pd.DataFrame,
    items: pd.DataFrame,
    events: pd.DataFrame,
    *,
    config: EngineConfig | None = None,
    taxonomy: Taxonomy | None = None,
    as_of: pd.Timestamp | str | None = None,
    warm_start: TrainedModel | None = None,
    steps: Steps | None = None,
    content_from: TrainedModel | None = None,
    decayed: DecayedState | None = None,
    changed_users: np.ndarray | None = None,
    content: tuple[Any, np.ndarray] | None = None,
    night: bool = False,
    kept_users: TrainedModel | None = None,
) -> TrainedModel:
    """Train every component on clean contract tables.

    Parameters
    ----------
    users, items, events : DataFrame
        Clean tables as :func:`recsys.schema.validate` returns them.
    config : EngineConfig, optional
        Defaults when omitted.
    taxonomy : Taxonomy, optional
        The default city's when omitted.
    as_of : timestamp, optional
        Train only on events strictly before this time (tz-aware, or ISO text
        with an offset); decay is counted back from it. Default: the last
        event's time.
    warm_start : TrainedModel, optional
        A previous model: its factors initialise known users and items and the
        fit runs ``config.collaborative.warm_start_iterations`` iterations.
    steps : Steps, optional
        Progress display; silent when omitted.
    content_from : TrainedModel, optional
        A model trained on the same ``items`` with the same ``[content]``
        settings: its content embedding is reused instead of fitted again
        (the content embedding reads the catalogue only, not the events).
    decayed : DecayedState, optional
        The decayed matrices of ``events`` already built (the nightly
        incremental update, :mod:`recsys.training.incremental`): used instead
        of building them again. Its id maps must be ``users``' and ``items``'.
    changed_users : ndarray of int, optional
        With ``warm_start`` and ALS: update incrementally -- re-solve only these
        users (those with new events) and every item,
        ``config.collaborative.incremental_sweeps`` times, and keep
        ``warm_start``'s learned ranker (it is refitted by the next full
        retrain) -- instead of warm-started full iterations.
    content : (ContentEmbedder, ndarray), optional
        A fitted embedder and the content vectors of ``items`` (row order)
        made with it (:func:`reuse_content`), used as they are.
    night : bool
        The nightly update: ``events`` holds only the night's new events,
        ``decayed`` (with its aggregates) and ``warm_start`` the history; the
        engagement model is warm-started from ``warm_start`` on a sample of the
        stored first showings, the ranking signals and channel counts come
        from the stored aggregates (:mod:`recsys.training.incremental`).
    kept_users : TrainedModel, optional
        A loaded bundle whose users table is ``users`` (a night whose users
        file did not change: ``users`` then holds only
        :data:`TRAINING_USER_COLUMNS` of it): the new model's users table is
        that bundle's, read on first use, and its bundle takes the file as it
        is instead of writing the 3.1M rows again.

    Returns
    -------
    TrainedModel
    """
    # heavy: the index (faiss) loads when a model is trained, not with `recsys --help`, which imports this module
    from recsys.training.index import VectorIndex

    # every section's rules, before any step runs: a bad [index] value must not wait for ALS,
    # profiles, the engagement model and the content embedding to finish first
    config = check_config(config or EngineConfig())
    taxonomy = taxonomy or load_taxonomy()
    steps = steps or Steps(N_STEPS, stream=None)
    cutoff = None if as_of is None else aware_timestamp(as_of, name="as_of")

    users = users.reset_index(drop=True)
    items = items.reset_index(drop=True)
    reuse = content_from is not None and content_from.config.content == config.content and content_from.n_items == len(items)
    # the catalogue's embedding starts now, in a worker, and is collected before the engagement model
    content_step = _ContentStep(items, config, taxonomy) if content is None and not reuse else None
    with steps.step("interactions"):
        if decayed is not None:
            inter = decayed.interactions
            # the decayed state's maps, once checked against the tables: a second map of the city's
            # 3.1M user ids would cost seconds and ~0.3 GB of Python strings held through the training
            _check_same_ids(inter, users, items)
            user_map, item_map = inter.users, inter.items
        else:
            user_map = IdMap.from_ids(users[C.USER_ID].to_numpy())
            item_map = IdMap.from_ids(items[C.ITEM_ID].to_numpy())
        if cutoff is not None:
            events = events[events[C.TIMESTAMP] < cutoff]
        # each event's user, item and type looked up once, for every step that reads the log (a night
        # reads its stored aggregates instead: its steps get them only if they ask, below)
        codes = None if night else event_codes(events, user_map, item_map)
        types = None if night else type_codes(events[C.EVENT_TYPE])
        if decayed is None:
            inter = build_interactions(events, user_map, item_map, config.interactions, as_of=cutoff, codes=codes)

        # each of today's users and items: its row in yesterday's model (-1: new), for every warm start
        previous_rows = None if warm_start is None else _previous_rows(warm_start, user_map, item_map)

    if night and (decayed is None or decayed.aggregates is None or warm_start is None):
        raise ValueError("a night's update needs the decayed state with its aggregates and yesterday's model")
    # a night's engagement model reads only the stored first showings and yesterday's effects: it fits
    # on a second thread beside the topic profiles and popularity, waited for before ALS (its sweeps are NumPy
    # calls that let go of the GIL; on two cores the night's single-threaded steps left one idle)
    night_engagement = (
        _beside(_night_engagement, decayed, users, items, config, taxonomy, warm_start, previous_rows, name="recsys-engagement")
        if night else None
    )
    # what no later step reads is let go of here (freed when the caller handed it over, as train does):
    # the impression counts (only the history store keeps them), a full training's aggregates (its
    # steps read the events), a night's events (its steps read the stored aggregates) -- ~0.6 GB at the city
    window = _window(events, cutoff) if not night else _history_window(decayed)
    n_events = int(inter.n_events if night else len(events))
    if decayed is not None:
        inter = dataclasses.replace(inter, exposure=sp.csr_matrix(inter.shape, dtype=np.float32))
        decayed = dataclasses.replace(decayed, interactions=inter, aggregates=decayed.aggregates if night else None)
    if night:
        # a new empty frame of the same columns and types: a row slice (iloc[:0]) is a view that
        # keeps the night's event arrays (Arrow buffers too) alive through every step
        events = pd.DataFrame({c: pd.Series([], dtype=t) for c, t in events.dtypes.items()})

    with steps.step("topic profiles"):
        profiles = TopicProfiles(config=config.profiles, taxonomy=taxonomy).fit(inter, users, items)
    end = inter.end if inter.end is not None else pd.Timestamp.now(tz="UTC")
    with steps.step("popularity and history"):
        segments = profiles.segments_.reset_index(drop=True)
        seg_of_user = profiles.user_segment_
        recent = inter.positives
        if decayed is not None and decayed.popularity is not None:
            recent = decayed.popularity
        elif config.interactions.popularity_half_life_days != config.interactions.half_life_days:
            # popularity decays faster than the collaborative confidences: what is trending now
            pop_config = dataclasses.replace(
                config.interactions, half_life_days=config.interactions.popularity_half_life_days
            )
            recent = build_interactions(events, user_map, item_map, pop_config, as_of=cutoff, codes=codes).positives
        seg_pop = segment_popularity(recent, seg_of_user, len(segments))
        pop_recent = np.asarray(recent.sum(axis=0), dtype=np.float32).ravel()
        pop_all = np.asarray((inter.engaged != 0).sum(axis=0), dtype=np.float32).ravel()
        seen = seen_matrix(inter.engaged, inter.negatives)
        seg_prior = np.asarray(profiles.segment_priors_, dtype=np.float32)
        if night:
            chan_counts = np.asarray(decayed.aggregates.channel_counts, dtype=np.float32)
            signals = history_signals(decayed, users, end, taxonomy, config.ranker)
            # the engagement thread took its sample of the aggregates: no later step reads them
            decayed = dataclasses.replace(decayed, aggregates=None)
        else:
            ev_user, ev_item = codes
            chan_counts = channel_counts(events, ev_user, len(users), taxonomy, types=types)
            signals = compute_signals(
                events, ev_user, ev_item, users, len(items), end, taxonomy, config.ranker, types=types
            )

    near_duplicates, worker = None, {}
    with steps.step("content embedding"):
        if content is not None:
            embedder, content = content
            near_duplicates = _same_duplicates(warm_start, content, len(items), config)
        elif reuse:
            embedder, content = content_from.content_model, np.asarray(content_from.content_vectors)
        else:
            # an embedding in line (a small catalogue, or the worker failed) waits for the engagement
            # thread first: the thread's one-BLAS-thread limit is the process's
            settle = None if night_engagement is None else (lambda: futures_wait([night_engagement]))
            embedder, content, near_duplicates, worker = content_step.result(before_in_line=settle)
            del content_step
            steps.timings.update(worker.get("seconds", {}))  # the worker's own steps, once, beside ours

    with steps.step("engagement model"):
        if night:
            # the thread's fit, waited for here (this step's time is the wait; the fit's own is beside it)
            engagement, exposures, seconds = night_engagement.result()
            steps.timings["engagement model (thread)"] = seconds
            del night_engagement
        else:
            exposures = build_exposures(
                events, user_map, item_map, items, taxonomy, end=end, trend_days=config.engagement.trend_days,
                codes=codes, types=types,
            )
            engagement = EngagementModel(config.engagement, taxonomy).fit(exposures, users, items)

    with steps.step("topic rates"):
        # each user's own rate per topic and format, shrunk toward their segment's (a ranking feature)
        topic_rates = (
            topic_rates_for(exposures, item_map, items, taxonomy, profiles.user_segment_, seed=config.engagement.seed)
            if config.ranker.topic_rates
            else None
        )
        # every shown pair of the window in a full training (~0.8 GB at 1M users): read by no later step
        del exposures

    with steps.step(f"collaborative ({config.collaborative.algorithm})"):
        cf = CollaborativeModel(config=config.collaborative)
        incremental = warm_start is not None and changed_users is not None
        if warm_start is not None:
            # rows matched by id once (previous_rows), not by hashing yesterday's ids again
            factors = WarmStart(
                None, np.asarray(warm_start.user_factors), None, np.asarray(warm_start.item_factors), *previous_rows
            )
        if incremental:
            cf.update(inter, factors, changed_users, sweeps=config.collaborative.incremental_sweeps)
        elif warm_start is not None:
            cf.fit(inter, warm_start=factors, iterations=config.collaborative.warm_start_iterations)
        else:
            cf.fit(inter)
        user_factors = np.ascontiguousarray(cf.user_factors_, dtype=np.float32)
        item_factors = np.ascontiguousarray(cf.item_factors_, dtype=np.float32)

    with steps.step("cold start"):
        item_warm = np.asarray(inter.engaged.getnnz(axis=0) > 0)
        item_cs = ItemColdStart(config=config.cold_start).fit(content[item_warm], item_factors[item_warm])
        if (~item_warm).any():
            item_factors[~item_warm] = item_cs.transform(content[~item_warm])
        user_warm = np.asarray(inter.engaged.getnnz(axis=1) > 0)
        user_cs = UserColdStart(config=config.cold_start).fit(
            user_factors, users, user_topics=profiles.user_topics_, warm=user_warm
        )
        cold_rows = np.flatnonzero(~user_warm)
        if len(cold_rows):
            # a user without events has their segment's prior as topic profile
            rows = users.iloc[cold_rows]
            user_factors[cold_rows] = user_cs.vectors_for(
                rows[C.GROUP].astype(str).tolist(),
                rows[C.SUB_GROUP].fillna("").astype(str).tolist(),
                rows[C.REGION].astype(str).tolist(),
                topic_priors=profiles.user_topics_[cold_rows],
            )

    with steps.step("ANN index"):
        # the recall (and [index] pruned_max_share = "auto"'s share) is measured on users, whom the
        # push searches for; recall_sample = 0 skips it (the manifest then says null, the search exact)
        queries = _recall_queries(user_factors, config.index.recall_sample, config.index.seed)
        index = VectorIndex.build(item_factors, config=config.index, seed=config.index.seed, queries=queries)
        recall = index.recall_

    info: dict[str, Any] = {
        "counts": {
            "events": n_events,
            "interactions": int(inter.matrix.nnz),
            "warm_users": int(user_warm.sum()),
            "cold_users": int((~user_warm).sum()),
            "exposures": engagement.n_exposures_,
        },
        "engagement": {"sweeps": engagement.n_sweeps_, "log_loss": engagement.log_loss_},
        "index": {
            "kind": index.kind,
            "recall_at_k": None if recall is None else float(recall),
            "k": config.index.recall_k,
            "max_share": index.config_.pruned_max_share,
            "share_recalls": index.share_recalls_,
        },
        "timings_s": dict(steps.timings),
        "warm_start": warm_start is not None,
        "incremental": incremental,
    }
    model = TrainedModel(
        taxonomy=taxonomy,
        config=config,
        users=_user_columns(users) if kept_users is None else None,
        items=items,
        user_factors=user_factors,
        item_factors=item_factors,
        item_warm=item_warm,
        content_vectors=np.ascontiguousarray(content, dtype=np.float32),
        user_topics=np.asarray(profiles.user_topics_, dtype=np.float32),
        segments=segments,
        segment_topic_prior=seg_prior,
        segment_popularity=seg_pop,
        popularity_recent=pop_recent,
        popularity_all_time=pop_all,
        seen=seen,
        user_channel_counts=chan_counts,
        item_index=index,
        content_model=embedder,
        item_cold_start=item_cs,
        user_cold_start=user_cs,
        window=window,
        info=info,
        item_quality=engagement.item_quality_,
        authority_quality=engagement.authority_quality_,
        user_interest=engagement.user_interest_,
        segment_interest=engagement.segment_interest_,
        user_format=engagement.user_format_,
        segment_format=engagement.segment_format_,
        topic_freshness=engagement.topic_freshness_,
        topic_trend=engagement.topic_trend_,
        engagement_intercept=engagement.intercept_,
        user_bias=engagement.user_bias_,
        signals=signals,
        topic_rates=topic_rates,
        near_duplicates=near_duplicates,
    )
    if worker:
        model.info["content_worker"] = worker
    if kept_users is not None:
        # yesterday's table, read (or copied into the bundle as a file) only when asked for
        model._users_from = kept_users._users_from or bundle_io.BundleReader(kept_users.path)
        del model.__dict__["users"]
    if previous_rows is not None and warm_start.user_lookup is not None:
        rows = previous_rows[0]
        if len(rows) == len(warm_start.user_lookup) and np.array_equal(rows, np.arange(len(rows))):
            # the same user ids in the same rows: yesterday's id lookup is today's (the bundle's
            # save would otherwise encode and sort the 3.1M ids again)
            model.user_lookup = warm_start.user_lookup
    if config.ranking.ranker == "learned" and incremental and warm_start.ranker is not None:
        # a night's update keeps yesterday's ranker: its label window moved by one day of ~60,
        # and refitting it costs most of a training (benchmarks/README.md); the full retrain refits
        model.ranker = warm_start.ranker
        model.info["ranker"] = {**warm_start.info.get("ranker", {}), "kept_from": "previous bundle"}
    elif config.ranking.ranker == "learned":
        with steps.step("learned ranker"):
            model.ranker, report = fit_ranker(users, items, events, config=config, taxonomy=taxonomy, content_from=model)
        model.info["ranker"] = report
        model.info["timings_s"] = dict(steps.timings)
    else:
        model.info["ranker"] = {"kind": "linear"}
    return model


def _window(events: pd.DataFrame, cutoff: pd.Timestamp | None) -> dict[str, str | None]:
    """The data window of a training on ``events`` (its first event, and its cutoff or last event)."""
    ts = events[C.TIMESTAMP]
    return {
        "start": ts.min().isoformat() if len(ts) else None,
        "end": (cutoff if cutoff is not None else (ts.max() if len(ts) else pd.Timestamp.now(tz="UTC"))).isoformat(),
    }


def _history_window(decayed: DecayedState) -> dict[str, str | None]:
    """A night's data window: the history's, not tonight's file's."""
    start = decayed.aggregates.start
    return {"start": None if start is None else start.isoformat(), "end": decayed.interactions.end.isoformat()}


def _check_same_ids(inter: Interactions, users: pd.DataFrame, items: pd.DataFrame) -> None:
    sides = (("user", inter.users, users[C.USER_ID]), ("item", inter.items, items[C.ITEM_ID]))
    for side, have, want in sides:
        if len(have) != len(want) or not np.array_equal(have.ids, want.to_numpy(dtype=object)):
            raise ConfigError(f"decayed matrices have other {side} ids than the {side}s table; rebuild them")


def _user_columns(users: pd.DataFrame) -> pd.DataFrame:
    out = users.reindex(columns=list(USER_COLUMNS))
    with collection_paused():  # one new list per user (memory.py)
        out[C.CHANNELS] = out[C.CHANNELS].map(lambda v: [str(x) for x in v] if v is not None else [])
    return out


def _recall_queries(user_factors: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded sample of user vectors to measure the index's recall on."""
    rng = check_random_state(seed)
    take = min(n, len(user_factors))
    rows = np.sort(rng.choice(len(user_factors), size=take, replace=False)) if take else np.array([], int)
    return np.ascontiguousarray(user_factors[rows], dtype=np.float32)


# ---- the job: ``recsys train`` ------------------------------------------------------------------


def train(
    data: str | Path,
    out: str | Path,
    *,
    config_path: str | Path | None = None,
    taxonomy_path: str | Path | None = None,
    as_of: str | None = None,
    warm_start: str | Path | None = None,
    force: bool = False,
    full: bool = False,
    stream: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Validate ``data``, train, write a bundle under ``out``; return a summary dict.

    With the events as a folder of files (``DATA/events/``), training is
    incremental by default (docs/training.md): once ``out`` holds a bundle and
    its history store (``out/history``), only the event files not seen before
    are validated, the decayed matrices are moved forward, and ALS is updated
    from the previous bundle (``--warm-start``, default ``out/latest``). A full
    retrain runs instead with ``full``, on the first night, every
    ``[training] full_every_days`` days of data, after an ``[interactions]`` or
    ``[collaborative]`` change, and with ``as_of``; a single events file is
    always trained in full.

    Refuses (before training) data too thin to train on (``[training]``
    thresholds, an ``--as-of`` outside the data) and a models folder that
    holds other files (unless ``force``); writes the bundle, and moves
    ``latest`` only to a bundle with warm users and eligible items.

    Raises
    ------
    DataError
        Too few events, users or items, too many rows rejected, a trained
        model that could serve nothing (``latest`` is not moved), no new
        event file for an incremental night, or a damaged history store /
        a changed event file (:class:`~recsys.training.incremental.HistoryError`).
    ConfigError
        A bad option, config or output folder.
    """
    start = time.perf_counter()
    taxonomy = load_taxonomy(taxonomy_path)
    # train records every section in the bundle: push and ranking read theirs from it later
    config = load_config(config_path, command="train", sections=ALL_SECTIONS)
    cutoff = parse_option_time(as_of, taxonomy, name="--as-of") if as_of else None
    prepare_output_dir(out, "models", force=force, recognise=bundle_io.is_models_dir)
    # train moves the link at the end: someone's file or folder of that name is refused now, not
    # after the training (--force writes beside others' files, never over one)
    latest = bundle_io.check_latest_link(out)
    folder = events_folder(data)
    store = None if folder is None or cutoff is not None else HistoryStore.open(out)
    # yesterday's bundle: the incremental night's start (a full retrain starts from it only when asked)
    prev_path = warm_start or (latest if store is not None and not full and latest.exists() else None)
    previous = _load_previous(prev_path) if prev_path else None
    reason = _full_reason(full, folder, cutoff, store, previous, config)
    if previous is not None and reason is not None:
        bundle_io.verify_bundle(previous.path)  # a full retrain: checked before it starts, as it always was
    # validate + bundle around train_model's steps; with an events/ folder also the matrices
    # (built before train_model: the store keeps them) and the history store's write
    keeps_history = folder is not None and cutoff is None
    steps = Steps(N_STEPS + 2 + 3 * keeps_history, stream=stream)
    night = None
    if reason is None:
        # the night's inputs are read and moved forward while yesterday's checksums are checked (the
        # verification's hashing runs beside the validation's single core); nothing is written before both
        verifying = _beside(bundle_io.verify_bundle, previous.path, name="recsys-verify")
        try:
            night = _incremental_inputs(data, folder, store, config, taxonomy, steps, stream, previous)
        except BaseException:
            verifying.result()  # a damaged file of yesterday's bundle is the error to name
            raise
        verifying.result()
        reason = night.pop("full_reason")
        if reason is not None:  # the schedule's full retrain is due
            night = None
    if night is None:
        if stream is not None and folder is not None:
            print(f"      full retrain: {reason}", file=stream)
        with steps.step("validate"):
            # the users file's sha256 before it is read: the store records which file the table is of
            users_source = SourceFile.of(find_table(data, "users")) if keeps_history else None
            result = validate(data=data, taxonomy=taxonomy)
        users, items, events = result.users, result.items, result.events
        quarantined = result.counts()
        users_check = None if users_source is None else (
            users_source, result.rows_read["users"], result.counts("users")
        )
        result.check_rejected(config.training.max_rejected_share)
        del result  # its quarantine table is reported; the clean tables live on as users, items, events
        decayed = changed = None
        if keeps_history:
            with steps.step("interactions (all events, for the history store)"):
                decayed = _full_state(events, users, items, config, taxonomy)
    else:
        users, items, events = night.pop("users"), night.pop("items"), night.pop("events")
        quarantined, decayed, changed = night["quarantined"], night.pop("decayed"), night["changed"]
        users_check = night["users_check"]
    if quarantined and stream is not None:
        print(f"      quarantined rows (kept out of training): {quarantined}", file=stream)
    if night is None:
        # a night's history passed this check at the last full retrain and only grew since
        check_training_data(
            users, items, events, config.training,
            as_of=cutoff, quarantined=int(sum(quarantined.values())),
        )
    # a night that took yesterday's users table: the new bundle's copy must be the table it trusted
    kept_sha = None
    if night is not None and night["kept_users"]:
        kept_sha = (previous.manifest.get("files") or {}).get(f"{USERS_TABLE}.parquet")
    pending = None
    if decayed is not None:
        # the history store's new partition and state, written now under fresh names and named by
        # store.json only after the bundle (a run killed in between finds the old store and validates
        # the same new files again the next night: the store, not the bundle, says what was seen);
        # the training then need not hold what only the store reads (train_model's `decayed`)
        with steps.step("history files"):
            pending = HistoryStore.prepare(
                out, previous=store, new_sources=night["sources"] if night is not None else event_files(folder),
                new_events=events, state=decayed, quarantined=int(sum(quarantined.values())),
            )
    try:
        n_new = len(events)
        if night is None and C.EVENT_ID in events.columns:
            # no training step reads event ids (the history store has them now): at a million users
            # they are the log's widest column, held through every step
            events = events.drop(columns=[C.EVENT_ID])
        # what train_model alone holds from here: it lets go of the night's events and the aggregates
        # once read (a Python call hands its arguments over; this frame keeps no reference to them)
        handed = {"events": events, "decayed": decayed}
        del events, decayed
        model = train_model(
            users,
            items,
            handed.pop("events"),
            config=config,
            taxonomy=taxonomy,
            as_of=cutoff,
            # a full retrain starts cold unless --warm-start asks otherwise
            warm_start=previous if night is not None or warm_start else None,
            steps=steps,
            decayed=handed.pop("decayed"),
            changed_users=changed,
            content=reuse_content(previous, items, config) if night is not None else None,
            night=night is not None,
            kept_users=previous if night is not None and night["kept_users"] else None,
        )
        model.info.setdefault("counts", {})["quarantined_rows"] = int(sum(quarantined.values()))
        model.info["timings_s"] = dict(steps.timings)
        with steps.step("write and verify bundle"):
            path = model.save(out, sanity=partial(_checked_bundle, users_sha256=kept_sha))
    except BaseException:
        if pending is not None:
            pending.discard(out)  # files no store names: the next run writes its own
        raise
    if pending is not None:
        with steps.step("history store"):
            # which users file the new bundle's users table is of: the next night need not validate it again
            table_sha = bundle_io.read_manifest(path)["files"].get(f"{USERS_TABLE}.parquet")
            HistoryStore.commit(
                out, pending, previous=store if night is not None else None, data_folder=folder,
                fingerprint=interactions_fingerprint(config.interactions), full=night is None,
                users=None if users_check is None or table_sha is None else users_record(
                    users_check[0], taxonomy, users_check[1], users_check[2], table_sha
                ),
            )
    summary = {
        "bundle": str(path),
        "latest": str(Path(out) / "latest"),
        "mode": "full" if night is None else "incremental",
        "full_reason": reason,
        "users": model.n_users,
        "items": model.n_items,
        **model.info["counts"],
        "index": model.info["index"],
        "data_window": model.window,
        "warm_start": night is not None or bool(warm_start),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if "content_worker" in model.info:
        summary["content_worker"] = model.info["content_worker"]
    if night is not None:
        summary["users_validated"] = not night["kept_users"]
        summary["new_event_files"] = len(night["sources"])
        summary["new_events"] = int(n_new)
    if stream is not None:
        print("\ntrained model summary", file=stream)
        for key, value in summary.items():
            print(f"  {key:<18} {value}", file=stream)
    return summary


def _checked_bundle(model: TrainedModel, *, users_sha256: str | None) -> None:
    """The new bundle, loaded back, is fit to serve; with ``users_sha256``, its users table is that file.

    ``users_sha256``: the sha256 of yesterday's users table a night took as its clean one; the
    copy in the new bundle must have it (else the bundle is not made latest and the history store
    is not moved: the next run validates again).
    """
    if users_sha256 is not None:
        got = (model.manifest.get("files") or {}).get(f"{USERS_TABLE}.parquet")
        if got != users_sha256:
            raise ArtifactError(
                f"{USERS_TABLE}.parquet: the copy of yesterday's users table has sha256 {got}, not the "
                f"{users_sha256} it was trusted by; run the training again (or with --full)"
            )
    check_bundle_sanity(model)


def _full_reason(
    full: bool,
    folder: Path | None,
    cutoff: pd.Timestamp | None,
    store: HistoryStore | None,
    previous: TrainedModel | None,
    config: EngineConfig,
) -> str | None:
    """Why this run retrains in full (None: it can be incremental)."""
    if full:
        return "--full"
    if folder is None:
        return "the events are one file (an events/ folder of daily files allows incremental nights)"
    if cutoff is not None:
        return "--as-of (the history store follows the data's end)"
    if store is None:
        return "no history store yet"
    if store.doc.get("data") != str(folder.resolve()):
        return f"the history store is of {store.doc.get('data')}, not {folder.resolve()}"
    if store.doc.get("interactions") != interactions_fingerprint(config.interactions):
        return "[interactions] settings changed"
    if previous is None:
        return "no previous bundle to start from"
    if config.ranking.ranker == "learned" and previous.ranker is None:
        # a night keeps yesterday's learned ranker: fitting one needs the whole log's events
        return "no learned ranker in the previous bundle to keep"
    if previous.config.collaborative != config.collaborative or config.collaborative.algorithm != "als":
        return "[collaborative] settings changed" if config.collaborative.algorithm == "als" else "BPR fits in full"
    return None


def _incremental_inputs(
    data: str | Path,
    folder: Path,
    store: HistoryStore,
    config: EngineConfig,
    taxonomy: Taxonomy,
    steps: Steps,
    stream: TextIO | None,
    previous: TrainedModel,
) -> dict[str, Any]:
    """Validate tonight's new event files, read the history, move the matrices forward.

    The users file is validated only when it (or the taxonomy) changed since the
    store recorded it (:meth:`HistoryStore.kept_users`); else ``previous``'s users
    table, made of that file, is the clean one (``kept_users``).

    Returns ``{"full_reason": why}`` when the schedule calls for a full retrain
    after all; else the night's tables, decayed state and changed users
    (``full_reason`` None).
    """
    with steps.step("validate new event files"):
        sources, gone = store.unchanged_sources(folder)
        if not sources:
            raise DataError(
                f"{folder}: no new event file since the last training (history up to {store.end().isoformat()}); "
                "nothing new to train on -- add the day's file, or run with --full to retrain on the same data"
            )
        users_source = SourceFile.of(find_table(data, "users"))  # its sha256 before it is read
        kept = store.kept_users(
            users_source, taxonomy, (previous.manifest.get("files") or {}).get(f"{USERS_TABLE}.parquet"),
            config.training.max_rejected_share,
        )
        if kept is None:
            users_in = read_table(find_table(data, "users"), "users")
        else:
            # the same file, validated against the same taxonomy into yesterday's table (verified at load):
            # only the columns the steps read, Arrow-backed strings, no list per user
            users_in = bundle_io.load_table(previous.path, USERS_TABLE, columns=list(TRAINING_USER_COLUMNS))
        items_raw = read_table(find_table(data, "items"), "items")
        new_raw = pd.concat([read_table(p, "events") for p in sources], ignore_index=True)
        with collection_paused():  # the users table's lists, one per user (memory.py)
            result = validate_tables(
                users_in, items_raw, new_raw, taxonomy=taxonomy, end=read_manifest_end(data),
                users_validated=kept is not None,
            )
        del users_in
        result.check_rejected(config.training.max_rejected_share)
        # the history is never read whole: only what could repeat tonight's events (same instant or later)
        since = result.events[C.TIMESTAMP].min() if len(result.events) else store.end()
        new_events, repeats = _drop_repeats(result.events, store.recent_keys(since))
    end = max(store.end(), new_events[C.TIMESTAMP].max()) if len(new_events) else store.end()
    days = (end - store.last_full()).total_seconds() / 86400.0
    if round(days) >= config.training.full_every_days:
        return {"full_reason": f"{days:.1f} days of data since the last full retrain ([training] full_every_days)"}
    if stream is not None:
        print(
            f"      incremental: {len(sources)} new event file(s), {len(new_events):,} new events"
            + (f", {repeats:,} already in the history left out" if repeats else "")
            + (f"; {len(gone)} validated file(s) no longer in {folder} (their events stay)" if gone else ""),
            file=stream,
        )
    users = result.users.reset_index(drop=True)
    items = result.items.reset_index(drop=True)
    with steps.step("interactions (incremental)"):
        state = store.read_state()
        # validated tables: distinct, non-empty string ids (their maps need not hash them to drop repeats);
        # the usual night's users are yesterday's, in the same rows: the stored map is today's (a second
        # map of the city's 3.1M ids cost seconds and ~0.3 GB)
        user_map = _same_map(state.interactions.users, users[C.USER_ID])
        item_map = _same_map(state.interactions.items, items[C.ITEM_ID])
        if state.aggregates is None:
            # a store of before the aggregates were kept: built once from the partitions, one at a time
            inter = state.interactions
            state = dataclasses.replace(state, aggregates=store.build_aggregates(inter.users, inter.items, taxonomy))
        # the night's events looked up once (Arrow) for the matrices, the aggregates and the changed users
        codes = event_codes(new_events, user_map, item_map)
        decayed = advance(
            state, new_events, user_map, item_map, config.interactions,
            _popularity_half_life(config), end=end, taxonomy=taxonomy, codes=codes,
        )
        del state  # yesterday's matrices and aggregates: advance made today's from them
        changed = changed_rows(new_events, user_map, user_codes=codes[0])
    users_counts = kept["quarantined"] if kept is not None else result.counts("users")
    quarantined = result.counts()
    for reason, rows in users_counts.items() if kept is not None else ():
        # yesterday's quarantined users rows are still this night's (its users file is the same)
        quarantined[reason] = quarantined.get(reason, 0) + rows
    quarantined = {r: quarantined[r] for r in C.QUARANTINE_REASONS if quarantined.get(r)}
    if repeats:
        quarantined[C.R_DUPLICATE_EVENT] = quarantined.get(C.R_DUPLICATE_EVENT, 0) + repeats
    users_check = (users_source, kept["rows_read"] if kept is not None else result.rows_read["users"], users_counts)
    # the night trains on tonight's events and the stored aggregates of the history (train_model's night)
    return {
        "full_reason": None, "users": users, "items": items, "events": new_events,
        "sources": sources, "quarantined": quarantined, "decayed": decayed, "changed": changed,
        "kept_users": kept is not None, "users_check": users_check,
    }


def _same_map(stored: IdMap, ids: pd.Series) -> IdMap:
    """``stored`` when it maps exactly ``ids`` (a validated id column) in their order, else a new map of ``ids``."""
    values = ids.to_numpy(dtype=object)
    if len(stored) == len(values) and np.array_equal(stored.ids, values):
        return stored
    return IdMap(np.asarray(values, dtype=str))


def reuse_content(previous: TrainedModel, items: pd.DataFrame, config: EngineConfig) -> tuple[Any, np.ndarray] | None:
    """Content vectors of ``items`` from ``previous``: its embedder, its vectors for unchanged items.

    Items whose id is new, or whose text, tags, topics or format differ from the previous
    bundle's, are embedded with the previous embedder (its vocabulary and SVD as fitted at
    the last full retrain; words it never saw are ignored). None when the ``[content]``
    settings changed (then the content embedding is fitted again).
    """
    if previous.config.content != config.content or previous.content_model is None:
        return None
    cols = [c for c in (C.TITLE, C.SUMMARY, C.TAGS, C.TOPICS, C.FORMAT) if c in items.columns]
    if any(c not in previous.items.columns for c in cols):
        return None

    def text(column: pd.Series) -> np.ndarray:
        # one string per item (a list by its items), from the column's values as Python objects: a
        # pandas map over Arrow-backed text, then iterated, took ~3x as long for the catalogue's 50k items
        return np.array(
            ["|".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else str(v)
             for v in column.to_numpy(dtype=object)],
            dtype=object,
        )

    prev_rows = pd.Index(previous.items[C.ITEM_ID]).get_indexer(items[C.ITEM_ID])
    vectors = np.zeros((len(items), np.asarray(previous.content_vectors).shape[1]), dtype=np.float32)
    known = np.flatnonzero(prev_rows >= 0)
    same = np.zeros(len(items), dtype=bool)
    if len(known):
        now, before = items.iloc[known], previous.items.iloc[prev_rows[known]]
        # unchanged: every column the embedder reads has the same text
        unchanged = np.ones(len(known), dtype=bool)
        for c in cols:
            unchanged &= text(now[c]) == text(before[c])
        same[known[unchanged]] = True
    if same.all() and len(items) == len(previous.items) and np.array_equal(prev_rows, np.arange(len(prev_rows))):
        # the same catalogue in the same rows: yesterday's vectors as mapped (the bundle links the file)
        return previous.content_model, previous.content_vectors
    vectors[same] = np.asarray(previous.content_vectors)[prev_rows[same]]
    redo = np.flatnonzero(~same)
    if len(redo):
        try:
            vectors[redo] = previous.content_model.transform(items.iloc[redo])
        except RecsysError:
            return None  # a code the embedder was not fitted on: fit it again on tonight's catalogue
    return previous.content_model, vectors


def _drop_repeats(new: pd.DataFrame, history: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Leave out new events the history already holds (a day delivered twice under another name).

    The validator's "duplicate event" rule -- the same (user, item, type, instant) -- applied
    across the history; only history events at or after the first new one can match.
    """
    if not len(new) or not len(history):
        return new, 0
    key = [C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP]
    recent = history.loc[history[C.TIMESTAMP] >= new[C.TIMESTAMP].min(), key]
    if not len(recent):
        return new, 0
    seen = pd.MultiIndex.from_frame(recent)
    repeat = pd.MultiIndex.from_frame(new[key]).isin(seen)
    return new[~repeat].reset_index(drop=True), int(repeat.sum())


def _previous_rows(previous: TrainedModel, users: IdMap, items: IdMap) -> tuple[np.ndarray, np.ndarray]:
    """Each of today's users and items: its row in ``previous`` (-1 when new), int64.

    Users through the bundle's id lookup (arrays, memory-mapped): reading a loaded
    bundle's users table for its id column would hold a Python string per user, the
    whole table with it (~1 GB at the city's 3.1M users), for the rest of the training.
    """
    if previous.user_lookup is not None:
        user_rows = previous.user_lookup.positions(users.ids)
    else:  # a model trained in this process and not saved: its users table is in memory
        user_rows = positions(users.ids, previous.users[C.USER_ID].to_numpy())
    return user_rows, positions(items.ids, previous.items[C.ITEM_ID].to_numpy())


def _engagement_start(previous: TrainedModel, user_rows: np.ndarray, item_rows: np.ndarray) -> EngagementStart:
    """``previous``'s engagement effects with its rows mapped to today's users and items (:func:`_previous_rows`)."""
    return EngagementStart(
        intercept=float(previous.engagement_intercept),
        authority_quality=np.asarray(previous.authority_quality),
        item_quality=np.asarray(previous.item_quality),
        segment_interest=np.asarray(previous.segment_interest),
        user_interest=np.asarray(previous.user_interest),
        segment_format=np.asarray(previous.segment_format),
        user_format=np.asarray(previous.user_format),
        topic_freshness=np.asarray(previous.topic_freshness),
        topic_trend=np.asarray(previous.topic_trend),
        user_bias=np.asarray(previous.user_bias),
        user_rows=user_rows,
        item_rows=item_rows,
    )


def _popularity_half_life(config: EngineConfig) -> float | None:
    cfg = config.interactions
    return cfg.popularity_half_life_days if cfg.popularity_half_life_days != cfg.half_life_days else None


def _full_state(
    events: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame, config: EngineConfig, taxonomy: Taxonomy
) -> DecayedState:
    """The decayed matrices and aggregates of a full retrain, built once for training and the history store."""
    user_map = IdMap.from_ids(users[C.USER_ID].to_numpy())
    item_map = IdMap.from_ids(items[C.ITEM_ID].to_numpy())
    codes = event_codes(events, user_map, item_map)
    inter = build_interactions(events, user_map, item_map, config.interactions, codes=codes)
    pop_hl = _popularity_half_life(config)
    popularity = None
    if pop_hl is not None:
        pop_config = dataclasses.replace(config.interactions, half_life_days=pop_hl)
        popularity = build_interactions(events, user_map, item_map, pop_config, codes=codes).positives
    return DecayedState(inter, popularity, day_aggregates(events, user_map, item_map, taxonomy, codes=codes))
