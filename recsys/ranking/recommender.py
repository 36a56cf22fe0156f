"""The in-process Recommender: what the platform calls inside a request.

Usage::

    rec = Recommender.load("models/latest", catalog="data/items.parquet")
    rec.recommend("u000042", k=10, channel="app_push")
    rec.recommend("new-user", group="farmer", region="qinglong")
    rec.recommend_many(["u1", "u2"], k=5)          # DataFrame, same lists
    rec.audience(item_id="i00017", k=1000)          # who should get this item?
    rec.set_catalog(items)                          # a retraction takes effect now
    rec.refresh_holds()                             # holds placed since (load(..., holds=DIR))
    rec.reload()                                    # switch to a newer bundle

Thread safety: every call reads the current :class:`RankingState` once and
uses only it; :meth:`reload` and :meth:`set_catalog` build a complete new
state and then replace the one reference (atomic in Python), so calls that
run meanwhile finish on the old version and later calls see the new one --
never a half-loaded model. Writers take turns (a catalogue update never
undoes a reload); readers never wait for them.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys import columns as C
from recsys.config import RankingConfig, is_int
from recsys.exceptions import ConfigError, NotFittedError, SchemaError
from recsys.holds import apply_holds, held_items, state_folder
from recsys.ranking import core, eligibility
from recsys.ranking.catalog import read_catalog
from recsys.ranking.eligibility import make_filter, to_ns
from recsys.ranking.reasons import REASONS_TYPE, ItemReasons, explain, explain_learned, priority_first
from recsys.ranking.scoring import engagement_probability
from recsys.ranking.state import RankingState, build_state
from recsys.ranking.users import Attributes, UserBatch, check_user_id, resolve
from recsys.timeutil import TimeLike
from recsys.training.serving import TrainedModel

#: columns of :meth:`Recommender.recommend_many`'s result
MANY_COLUMNS = (C.USER_ID, C.RANK, C.ITEM_ID, C.SCORE, C.REASONS)
#: columns of :meth:`Recommender.audience`'s result
AUDIENCE_COLUMNS = (C.USER_ID, C.SCORE)
# users scored at once by audience(): bounds the temporary to ~64 MiB
_AUDIENCE_BLOCK = 1 << 18


@dataclass(frozen=True)
class Recommendation:
    """One recommended item.

    Attributes
    ----------
    item_id : str
    score : float
        The blended score (higher is better; comparable within one list).
    reasons : list of str
        Short Chinese explanations, strongest first (e.g. ``兴趣:防灾避险 0.41``).
    """

    item_id: str
    score: float
    reasons: list[str] = field(default_factory=list)


def _check_k(k: Any, high: int, name: str = "k") -> int:
    if not is_int(k) or not 1 <= k <= high:
        raise ConfigError(f"{name} must be an integer from 1 to {high}, got {k!r}")
    return int(k)


def _exclude_indices(state: RankingState, exclude: Iterable[str] | None, name: str = "exclude") -> np.ndarray | None:
    """Ranking indices of ``exclude`` ids; ids not in the catalogue cannot be recommended anyway.

    ``exclude`` is None or an iterable of item-id strings (a list, tuple, set, array, ...);
    anything else is refused (``name`` is what the message calls it), so a per-user mapping
    or a lone id never passes for a list of ids.
    """
    if exclude is None:
        return None
    if isinstance(exclude, Mapping):
        raise ConfigError(
            f"{name} must be an iterable of item ids, got a mapping ({type(exclude).__name__}); "
            "a mapping of user id to item ids is recommend_many's exclude"
        )
    if isinstance(exclude, (str, bytes)):
        raise ConfigError(f"{name} must be a list of item ids, got the single string {exclude!r}; pass [{exclude!r}]")
    try:
        ids = list(exclude)
    except TypeError:
        raise ConfigError(f"{name} must be an iterable of item ids (str), got {type(exclude).__name__}") from None
    for item_id in ids:
        if not isinstance(item_id, str):
            raise ConfigError(f"{name} must hold item ids (str), got {item_id!r}")
    pos = state.catalog.index_of
    return np.array([pos[i] for i in ids if i in pos], dtype=np.int64)


def _exclude_all(
    state: RankingState, excludes: list[Iterable[str] | None], users: list[str]
) -> list[np.ndarray | None]:
    """:func:`_exclude_indices` of each user's ``exclude``, converted once per distinct object.

    A push gives most users the same list object (the items expiring tonight,
    :func:`recsys.push.lists.exclusions`): converting it once per user was
    ~6 us of a list. The memo holds each object it keys by ``id``, so no key is
    reused while it lives; the arrays are only read (``eligibility.history_keys``).
    """
    memo: dict[int, tuple[object, np.ndarray | None]] = {}
    out = []
    for e, user in zip(excludes, users):
        hit = memo.get(id(e))
        if hit is None or hit[0] is not e:
            hit = memo[id(e)] = (e, _exclude_indices(state, e, f"exclude[{user!r}]"))
        out.append(hit[1])
    return out


class Recommender:
    """Explained, eligible, diverse recommendation lists from a model bundle.

    Build it with :meth:`load` (a bundle folder) or :meth:`from_model` (a
    :class:`~recsys.training.model.TrainedModel` in memory); the constructor only
    stores parameters.

    Parameters
    ----------
    config : RankingConfig, optional
        Blend weights, diversity and candidate settings; default: the ones the
        bundle was trained with (``model.config.ranking``).
    """

    def __init__(self, *, config: RankingConfig | None = None) -> None:
        self.config = config
        self._state: RankingState | None = None
        self._path: Path | None = None
        self._writer = threading.Lock()
        # review holds (recsys.holds): the folder, and the catalogue as given, before holds apply
        self._holds: Path | None = None
        self._given_items: pd.DataFrame | None = None

    # ---- building ------------------------------------------------------------
    @classmethod
    def load(
        cls,
        bundle_path: str | Path,
        *,
        catalog: pd.DataFrame | str | Path | None = None,
        config: RankingConfig | None = None,
        holds: str | Path | None = None,
        verify: bool = True,
    ) -> "Recommender":
        """Open a model bundle (arrays memory-mapped, the faiss index read).

        Parameters
        ----------
        bundle_path : str or Path
            A version folder, ``models/latest``, or a models folder (its
            ``latest``). :meth:`reload` without a path opens it again, so
            ``models/latest`` follows new bundles.
        catalog : DataFrame or path, optional
            The current catalogue (items table or a ``.parquet``/``.csv``
            file); eligibility is checked against it. Default: the bundle's copy.
        config : RankingConfig, optional
            Overrides the bundle's ranking configuration.
        holds : str or Path, optional
            A review-holds folder (the monitor's ``--state``; see
            :mod:`recsys.holds`): held items are ineligible, as if retracted.
            :meth:`refresh_holds` reads it again.
        verify : bool, default True
            Check every file's sha256 against the manifest first. A process
            whose bundle was checked already (a push worker: the run's driver
            checked it) skips the hashing; shapes and formats are checked anyway.

        Returns
        -------
        Recommender

        Raises
        ------
        ArtifactError
            If the bundle is missing, corrupted or of another format.
        SchemaError
            If the catalogue or the hold list cannot be read.
        ConfigError
            On an invalid ranking configuration, or a holds folder that does not exist.
        """
        self = cls(config=config)
        self._path = Path(bundle_path)
        self._holds = _holds_folder(holds)
        self._install(TrainedModel.load(bundle_path, verify=verify), catalog)
        return self

    @classmethod
    def from_model(
        cls,
        model: TrainedModel,
        *,
        catalog: pd.DataFrame | str | Path | None = None,
        config: RankingConfig | None = None,
        holds: str | Path | None = None,
    ) -> "Recommender":
        """Serve a :class:`~recsys.training.model.TrainedModel` held in memory.

        Same parameters and errors as :meth:`load`, with a model instead of a path.
        """
        self = cls(config=config)
        self._path = getattr(model, "path", None)
        self._holds = _holds_folder(holds)
        self._install(model, catalog)
        return self

    def _build(self, model: TrainedModel, catalog: pd.DataFrame | str | Path | None, keep_items: bool) -> RankingState:
        config = self.config if self.config is not None else model.config.ranking
        if catalog is not None:
            items, rejected = read_catalog(catalog, model.taxonomy)
        elif keep_items and self._state is not None:
            items, rejected = self._given_items, self._state.catalog.rejected
        else:
            items, rejected = None, 0
        served = items
        if self._holds is not None:
            held = held_items(self._holds)
            if held:
                served = apply_holds(items if items is not None else model.items, held)
        state = build_state(model, served, config, rejected=rejected, previous=self._state)
        self._given_items = items
        return state

    def _install(self, model: TrainedModel, catalog: pd.DataFrame | str | Path | None) -> None:
        with self._writer:
            self._state = self._build(model, catalog, keep_items=False)

    def reload(self, path: str | Path | None = None) -> "Recommender":
        """Switch to a newer bundle while calls continue.

        The new model and state are built completely first, then swapped in
        with one reference assignment; the current catalogue (if one was set)
        carries over.

        Parameters
        ----------
        path : str or Path, optional
            The bundle to load; default: the path this recommender was loaded from.

        Returns
        -------
        Recommender
            ``self``.

        Raises
        ------
        ConfigError
            If no path is given and none is known.
        ArtifactError
            If the bundle cannot be loaded (the current one stays in service).
        """
        target = Path(path) if path is not None else self._path
        if target is None:
            raise ConfigError("reload() needs a path: this recommender was not loaded from a bundle folder")
        # writers take turns (a catalogue update must not undo a reload); readers never wait
        with self._writer:
            state = self._build(TrainedModel.load(target), None, keep_items=True)
            self._state = state  # one reference assignment: calls see the old or the new state
            self._path = target
        return self

    def set_catalog(self, items: pd.DataFrame | str | Path) -> "Recommender":
        """Replace the catalogue eligibility is checked against, without retraining.

        A retracted, rejected or expired item, or one missing from ``items``,
        is never recommended from the moment this returns.

        Parameters
        ----------
        items : DataFrame or path
            The current items table (or a ``.parquet``/``.csv`` file).

        Returns
        -------
        Recommender
            ``self``.

        Raises
        ------
        SchemaError
            If the table cannot be read or lacks a required column.
        """
        with self._writer:
            self._state = self._build(self._current().model, items, keep_items=False)
        return self

    def refresh_holds(self) -> "Recommender":
        """Read the holds folder again: items held since are ineligible, released ones eligible again.

        Returns
        -------
        Recommender
            ``self``.

        Raises
        ------
        ConfigError
            If this recommender was built without ``holds``.
        SchemaError
            If the hold list cannot be read (the current state stays in service).
        """
        if self._holds is None:
            raise ConfigError("refresh_holds() needs a holds folder: pass holds=DIR to Recommender.load")
        with self._writer:
            self._state = self._build(self._current().model, None, keep_items=True)
        return self

    def _current(self) -> RankingState:
        state = self._state
        if state is None:
            raise NotFittedError(
                "Recommender has no model; use Recommender.load(path) or Recommender.from_model(model)"
            )
        return state

    # ---- introspection -----------------------------------------------------
    @property
    def version(self) -> str:
        """Version of the bundle in service."""
        return self._current().version

    @property
    def state(self) -> RankingState:
        """The serving state in use now (read it once per unit of work)."""
        return self._current()

    def with_topic_boost(self, table: np.ndarray | None) -> "Recommender":
        """A Recommender over the same state whose rankings add a priority boost (feature ``priority``).

        Parameters
        ----------
        table : ndarray of float, shape (n_groups, n_regions, n_topics), or None
            Weight per group x region x topic (taxonomy order), e.g.
            :meth:`recsys.push.priorities.Priorities.boost_table`; None or all
            zeros = rankings exactly as without it.

        Raises
        ------
        ConfigError
            If the table's shape does not match the taxonomy.
        """
        state = self._current()
        if table is not None:
            tax = state.taxonomy
            shape = (len(tax.groups), len(tax.regions), len(tax.topics))
            table = np.asarray(table, np.float32)
            if table.shape != shape:
                raise ConfigError(f"topic boost table has shape {table.shape}; expected {shape} (groups, regions, topics)")
            if not table.any():
                table = None
        other = copy.copy(self)
        other._writer = threading.Lock()
        other._state = dataclasses.replace(state, topic_boost=table)
        return other

    # ---- the calls -----------------------------------------------------------
    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        group: str | None = None,
        sub_group: str | None = None,
        region: str | None = None,
        topics: Iterable[str] | str | None = None,
        channel: str | None = None,
        now: TimeLike | None = None,
        exclude: Iterable[str] | None = None,
    ) -> list[Recommendation]:
        """Recommend up to ``k`` eligible, diverse items for one user.

        Parameters
        ----------
        user_id : str
            A known user, or a new one (then ``group`` and ``region`` are required).
        k : int, default 10
            List length, 1 to ``RankingConfig.max_k``.
        group, sub_group, region : str, optional
            Taxonomy codes describing the user; for a known user they override
            the stored attributes.
        topics : str or iterable of str, optional
            Only items with any of these topics.
        channel : str, optional
            Only formats this channel carries.
        now : datetime, pandas.Timestamp or ISO str, optional
            Eligibility time (tz-aware); default: the end of the bundle's data window.
        exclude : iterable of str, optional
            Item ids to leave out (unknown ids are ignored): a list, tuple, set
            or array of ids. A single string, a mapping (the per-user form is
            :meth:`recommend_many`'s), a non-iterable or a non-string id raises
            ConfigError.

        Returns
        -------
        list of Recommendation
            Best first; exactly ``k`` whenever ``k`` eligible, non-near-duplicate
            items exist, else all there are.

        Raises
        ------
        ConfigError
            For a bad ``k``, ``user_id``, ``now`` or ``exclude``, or an unknown
            user without group and region.
        UnknownCodeError
            For an unknown group, sub-group, region, topic or channel (the
            message lists the valid codes).
        """
        state = self._current()
        k = _check_k(k, state.config.max_k)
        check_user_id(user_id)
        filt = make_filter(state.taxonomy, topics=topics, channel=channel)
        now_ns = to_ns(now, state.taxonomy, state.default_now_ns)
        excludes = [_exclude_indices(state, exclude)]
        attrs: list[Attributes | None] = [(group, sub_group, region)]
        users = resolve(state, [user_id], attrs)
        ids, scores, reasons = self._rank(state, users, k, filt, now_ns, excludes)
        return [Recommendation(item_id=i, score=float(s), reasons=list(r)) for i, s, r in zip(ids, scores, reasons)]

    def _rank(
        self,
        state: RankingState,
        users: UserBatch,
        k: int,
        filt: eligibility.ItemFilter,
        now_ns: int,
        excludes: list[np.ndarray | None] | None,
    ) -> tuple[list, list, list]:
        """Rank one user (the batch path with m = 1): item ids, scores, reasons."""
        ranked = core.rank(state, users, k, filt, now_ns, excludes)
        reasons = self._reasons(state, users, ranked, now_ns).rows()  # one user: every row is theirs
        n = int(ranked.count[0])
        ids = state.catalog.item_ids[ranked.items[0, :n]].tolist()
        return ids, ranked.scores[0, :n].tolist(), reasons

    @staticmethod
    def _reasons(state: RankingState, users: UserBatch, ranked: core.Ranked, now_ns: int) -> ItemReasons:
        common = (state.reasons, ranked.parts, ranked.items, ranked.count, users.topics, users.segments)
        items = (state.catalog.topic_idx, state.catalog.authority_code)
        first = _priority_first(state, users, ranked)
        if state.ranker is not None:
            # a user with no engagement in the bundle is not told "similar users liked it"
            known = users.rows >= 0
            history = np.where(known, state.signals.user_activity[np.where(known, users.rows, 0), 0], 0)
            hide = (history <= 0)[:, None] & ~state.cold_kinds[None, :]
            return explain_learned(
                *common, users.groups, users.regions, *items, hide=hide, first=first, fresh=state.freshness(now_ns)
            )
        return explain(*common, *items, state.config, first=first)

    def recommend_many(
        self,
        user_ids: Sequence[str],
        k: int = 10,
        *,
        topics: Iterable[str] | str | None = None,
        channel: str | None = None,
        now: TimeLike | None = None,
        users: pd.DataFrame | None = None,
        exclude: Mapping[str, Iterable[str]] | None = None,
        arrow_reasons: bool = False,
    ) -> pd.DataFrame:
        """Recommend for many users at once: the same lists :meth:`recommend` gives.

        Parameters
        ----------
        user_ids : sequence of str
        k : int, default 10
        topics, channel, now
            As in :meth:`recommend`, for every user.
        users : DataFrame, optional
            ``user_id, group, region`` (and optionally ``sub_group``) for cold
            users, or to override a known user's stored attributes (as the
            keyword arguments of :meth:`recommend` do). Null cells = not given.
        exclude : mapping of user id to iterable of item ids, optional
            Per user, items to leave out (``recommend``'s ``exclude``): the
            list equals ``recommend(user_id, exclude=exclude[user_id])``, with
            the same single diversity rule. Anything but a mapping, or a value
            ``recommend`` would refuse, raises ConfigError.
        arrow_reasons : bool, default False
            Return ``reasons`` as an Arrow ``list<string>`` column
            (``pandas.ArrowDtype``) built from the reason codes, with no Python
            object per row: for writing many lists (the push writes them to
            Parquet). Its values still read as lists of str.

        Returns
        -------
        DataFrame
            Columns ``user_id`` (str), ``rank`` (int64, 1 = best), ``item_id``
            (str), ``score`` (float64), ``reasons`` (list of str); users in the
            order given, each user's items best first.

        Raises
        ------
        ConfigError, UnknownCodeError, SchemaError
            As :meth:`recommend`; SchemaError if ``users`` lacks ``user_id``.
        """
        state = self._current()
        k = _check_k(k, state.config.max_k)
        if isinstance(user_ids, str):
            raise ConfigError("user_ids must be a sequence of user ids, got a single string; use recommend()")
        ids = [check_user_id(u) for u in user_ids]
        filt = make_filter(state.taxonomy, topics=topics, channel=channel)
        now_ns = to_ns(now, state.taxonomy, state.default_now_ns)
        attrs = _attributes(ids, users)
        if exclude is not None and not isinstance(exclude, Mapping):
            raise ConfigError(
                f"exclude must map user ids to lists of item ids (e.g. {{'u1': ['i7']}}), got {type(exclude).__name__}; "
                "a plain list of item ids is recommend's exclude"
            )
        per_user = None if not exclude else _exclude_all(state, [exclude.get(u) for u in ids], ids)
        size = state.config.batch_size
        blocks = [(lo, min(len(ids), lo + size)) for lo in range(0, len(ids), size)]

        def block(bounds: tuple[int, int]) -> pd.DataFrame:
            lo, hi = bounds
            batch = resolve(state, ids[lo:hi], None if attrs is None else attrs[lo:hi])
            ranked = core.rank(state, batch, k, filt, now_ns, None if per_user is None else per_user[lo:hi])
            return _frame(state, batch, ranked, self._reasons(state, batch, ranked, now_ns), arrow_reasons)

        if not blocks:
            return _frame(state, resolve(state, [], None), None, None, arrow_reasons)
        threads = min(state.config.threads, len(blocks))
        if threads > 1:
            # faiss and the large numpy steps release the GIL: blocks overlap
            with ThreadPoolExecutor(threads) as pool:
                frames = list(pool.map(block, blocks))
        else:
            frames = [block(b) for b in blocks]
        # one block (a call of up to batch_size users): its frame as it is, no concatenated copy
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def expected_engagement(
        self,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        *,
        now: TimeLike | None = None,
        users: pd.DataFrame | None = None,
    ) -> np.ndarray:
        """Probability that each user engages with the paired item if it is shown to them.

        The engagement model's prediction, ``sigmoid(intercept + user bias +
        quality + interest + format taste + timeliness)``, from the same terms
        the ranking scores with (without the channel's own effect). A user the
        bundle does not know has bias 0 and their segment's terms (``users``
        gives their group and region, as in :meth:`recommend_many`).

        Parameters
        ----------
        user_ids, item_ids : sequence of str
            Aligned pairs (same length); an item may be one the catalogue
            holds but the bundle did not (its authority level's quality).
        now : datetime, pandas.Timestamp or ISO str, optional
            When the items would be shown (their timeliness); default: the end
            of the bundle's data window.
        users : DataFrame, optional
            ``user_id, group, region`` (optionally ``sub_group``) for cold users.

        Returns
        -------
        ndarray of float64, shape (n_pairs,)
            Each in (0, 1).

        Raises
        ------
        ConfigError
            For pairs of different lengths, a bad user id or ``now``, or an item
            id not in the catalogue.
        """
        state = self._current()
        if isinstance(user_ids, str) or isinstance(item_ids, str):
            raise ConfigError("user_ids and item_ids must be sequences of ids, got a single string")
        ids = [check_user_id(u) for u in user_ids]
        items = list(item_ids)
        if len(ids) != len(items):
            raise ConfigError(f"expected_engagement: {len(ids)} user ids but {len(items)} item ids (pairs)")
        pos = state.catalog.index_of
        missing = [i for i in items if i not in pos]
        if missing:
            raise ConfigError(f"expected_engagement: item id {missing[0]!r} is not in the catalogue ({len(missing)} unknown)")
        now_ns = to_ns(now, state.taxonomy, state.default_now_ns)
        batch = resolve(state, ids, _attributes(ids, users))
        cand = np.array([pos[i] for i in items], dtype=np.int64).reshape(-1, 1)
        return engagement_probability(state, batch, cand, now_ns)[:, 0]

    def audience(
        self,
        *,
        item_id: str | None = None,
        topic: str | None = None,
        k: int = 100,
        group: str | Iterable[str] | None = None,
        region: str | Iterable[str] | None = None,
        now: TimeLike | None = None,
    ) -> pd.DataFrame:
        """Who is most likely to engage with an item or a topic.

        A search over the known users' collaborative vectors, among users for
        whom the item is eligible: its target groups and regions include
        theirs and they have not engaged with, dismissed or reported it.

        * ``item_id``: score = user vector . item vector. An item that is not
          available at ``now`` (not approved, not yet published, expired, not
          in the catalogue) has no audience: the result is empty.
        * ``topic``: score = user vector . mean vector of the topic's items
          eligible at ``now``, among users to whom at least one of them may go.

        Parameters
        ----------
        item_id : str, optional
        topic : str, optional
            Give exactly one of ``item_id`` and ``topic``.
        k : int, default 100
            Users to return, at least 1 (at most all known users are returned).
        group, region : str or iterable of str, optional
            Only users of these groups / regions.
        now : datetime, pandas.Timestamp or ISO str, optional
            Default: the end of the bundle's data window.

        Returns
        -------
        DataFrame
            ``user_id`` (str), ``score`` (float64), best first. When nobody is
            eligible it is empty and ``attrs["reason"]`` says why (the item is
            not approved, not yet published, expired, ...).

        Raises
        ------
        ConfigError
            For neither or both of ``item_id`` and ``topic``, an unknown
            ``item_id``, or a bad ``k``.
        UnknownCodeError
            For an unknown topic, group or region.
        """
        state = self._current()
        if (item_id is None) == (topic is None):
            raise ConfigError("audience() needs exactly one of item_id= or topic=")
        k = _check_k(k, np.iinfo(np.int32).max)
        now_ns = to_ns(now, state.taxonomy, state.default_now_ns)
        allowed = _user_filter(state, group, region)
        catalog = state.catalog
        if item_id is not None:
            if not isinstance(item_id, str) or item_id not in catalog.index_of:
                raise ConfigError(f"unknown item_id {item_id!r}: not in the catalogue")
            j = catalog.index_of[item_id]
            if not (catalog.available[j] and eligibility.live_at(catalog, np.array([j]), now_ns)[0]):
                return _no_audience(f"item {item_id!r} is {_unavailable(state, j, now_ns)}")
            query = catalog.cf[j]
            allowed &= catalog.group_ok[state.user_group, j] & catalog.region_ok[state.user_region, j]
            if j < catalog.n_bundle:
                seen = state.seen_by_item()
                allowed[seen.indices[seen.indptr[j] : seen.indptr[j + 1]]] = False
        else:
            filt = make_filter(state.taxonomy, topics=[topic])
            static = state.static_mask(filt)
            items = np.flatnonzero(static & eligibility.live_at(catalog, np.arange(catalog.n_items), now_ns))
            if items.size == 0:
                return _no_audience(f"no item of topic {topic!r} is approved, published and unexpired at that time")
            query = catalog.cf[items].mean(axis=0)
            # (group, region) pairs at least one of the topic's eligible items may go to
            groups = catalog.group_ok[:, items].astype(np.float32)
            regions = catalog.region_ok[:, items].astype(np.float32)
            allowed &= ((groups @ regions.T) > 0)[state.user_group, state.user_region]
        found = _top_users(state, query, allowed, k)
        if found.empty:
            found.attrs["reason"] = "no known user of the requested groups/regions is in its target audience and new to it"
        return found


def _attributes(ids: list[str], users: pd.DataFrame | None) -> list[Attributes | None] | None:
    """Per-id (group, sub_group, region) from a users frame (last row of an id wins)."""
    if users is None:
        return None
    if not isinstance(users, pd.DataFrame):
        raise ConfigError(f"users must be a DataFrame with user_id, group, region, got {type(users).__name__}")
    if C.USER_ID not in users.columns:
        raise SchemaError(f"users frame lacks column {C.USER_ID!r}; give user_id, group, region (sub_group optional)")

    def col(name: str) -> list:
        if name not in users.columns:
            return [None] * len(users)
        return [None if (v is None or (isinstance(v, float) and np.isnan(v)) or v == "") else v for v in users[name]]

    given = {
        str(u): (g, s, r)
        for u, g, s, r in zip(users[C.USER_ID], col(C.GROUP), col(C.SUB_GROUP), col(C.REGION))
    }
    return [given.get(u) for u in ids]


def _priority_first(state: RankingState, users: UserBatch, ranked: core.Ranked) -> np.ndarray | None:
    """The ``重点推送:<topic>`` reason put first for the items the push's priorities raised
    (feature ``priority``); None without a boost table."""
    table = state.topic_boost
    if table is None:
        return None
    boost = table[users.groups.astype(np.int64), users.regions.astype(np.int64)]  # (m, T)
    return priority_first(state.reasons, boost, state.catalog.topic_bool, ranked.items, ranked.count)


def _frame(
    state: RankingState, batch: UserBatch, ranked: core.Ranked | None, reasons: ItemReasons | None, arrow: bool
) -> pd.DataFrame:
    if ranked is None:
        return pd.DataFrame(
            {
                C.USER_ID: pd.Series([], dtype=str),
                C.RANK: pd.Series([], dtype=np.int64),
                C.ITEM_ID: pd.Series([], dtype=str),
                C.SCORE: pd.Series([], dtype=np.float64),
                C.REASONS: pd.Series(pd.arrays.ArrowExtensionArray(pa.array([], REASONS_TYPE)))
                if arrow
                else pd.Series([], dtype=object),
            }
        )
    count = ranked.count
    got = ranked.items >= 0
    # each list's ranks 1..count for every list at once (an arange per user cost ~1 us a list)
    ranks = np.arange(1, int(count.sum()) + 1, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    # each user's id converted to the string dtype once, then repeated by its array's take
    users = pd.Series(np.asarray(batch.user_ids, dtype=object), dtype=str).array
    if arrow:  # a list column built from the reason codes, no Python list per row
        reason_column = pd.arrays.ArrowExtensionArray(reasons.arrow())
    else:
        reason_column = np.fromiter(reasons.rows(), dtype=object, count=len(ranks))  # a list per row
    # every column is a new array of this call: the frame takes them as they are (copy=False), and
    # arrays rather than Series skip pandas' per-Series alignment (0.5 -> 0.2 ms a 150-user block)
    return pd.DataFrame(
        {
            C.USER_ID: users.take(np.repeat(np.arange(len(count)), count)),
            C.RANK: ranks,
            C.ITEM_ID: pd.Series(state.catalog.item_ids[ranked.items[got]], dtype=str).array,
            C.SCORE: ranked.scores[got].astype(np.float64),
            C.REASONS: reason_column,
        },
        copy=False,
    )


def _user_filter(
    state: RankingState, group: str | Iterable[str] | None, region: str | Iterable[str] | None
) -> np.ndarray:
    tax = state.taxonomy
    allowed = np.ones(len(state.user_group), dtype=bool)
    for kind, value, positions in (("group", group, state.user_group), ("region", region, state.user_region)):
        if value is None:
            continue
        codes = [value] if isinstance(value, str) else list(value)
        if not codes:
            raise ConfigError(f"{kind} must name at least one code, got an empty list")
        order = list(tax.codes(kind))
        wanted = [order.index(tax.check(kind, c)) for c in codes]
        allowed &= np.isin(positions, wanted)
    return allowed


def _top_users(state: RankingState, query: np.ndarray, allowed: np.ndarray, k: int) -> pd.DataFrame:
    """The k allowed users with the highest ``user_factors . query`` (ties: lower index)."""
    factors = state.user_factors
    n = len(allowed)
    best_idx = np.zeros(0, dtype=np.int64)
    best_score = np.zeros(0, dtype=np.float32)
    q = np.asarray(query, dtype=np.float32)
    for lo in range(0, n, _AUDIENCE_BLOCK):
        hi = min(n, lo + _AUDIENCE_BLOCK)
        idx = lo + np.flatnonzero(allowed[lo:hi])
        if idx.size == 0:
            continue
        scores = np.asarray(factors[idx], dtype=np.float32) @ q
        if idx.size > k:
            # keep every user tied with the k-th best, so ties still go to the lower index
            kth = np.partition(scores, idx.size - k)[idx.size - k]
            top = scores >= kth
            idx, scores = idx[top], scores[top]
        idx = np.concatenate([best_idx, idx])
        scores = np.concatenate([best_score, scores])
        keep = np.lexsort((idx, -scores))[:k]
        best_idx, best_score = idx[keep], scores[keep]
    return _audience_frame(list(state.user_pos.ids_at(best_idx)), best_score)


def _no_audience(reason: str) -> pd.DataFrame:
    """An empty audience whose ``attrs["reason"]`` says why nobody is eligible."""
    frame = _audience_frame([], np.zeros(0))
    frame.attrs["reason"] = reason
    return frame


def _holds_folder(holds: str | Path | None) -> Path | None:
    """The holds folder, checked to be a state folder (a typo must not silently disable every hold)."""
    return None if holds is None else state_folder(holds)


def _unavailable(state: RankingState, j: int, now_ns: int) -> str:
    """Why catalogue item ``j`` cannot go out at ``now_ns`` (not in the catalogue, review status, dates)."""
    items = state.catalog_items if state.catalog_items is not None else state.model.items
    row = items[items[C.ITEM_ID].astype(str) == state.catalog.item_ids[j]]
    if row.empty:
        return "not in the current catalogue"
    if str(row[C.REVIEW_STATUS].iloc[0]) != "approved":
        return f"not approved (review_status {str(row[C.REVIEW_STATUS].iloc[0])!r})"
    local = state.taxonomy.timezone
    if state.catalog.published_ns[j] > now_ns:
        return f"not published until {pd.Timestamp(int(state.catalog.published_ns[j]), tz='UTC').tz_convert(local)}"
    return f"expired at {pd.Timestamp(int(state.catalog.expires_ns[j]), tz='UTC').tz_convert(local)}"


def _audience_frame(ids: list, scores: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {C.USER_ID: pd.Series(ids, dtype=str), C.SCORE: np.asarray(scores, dtype=np.float64)}
    )
