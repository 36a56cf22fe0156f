"""The trained model: every array and component a consumer needs, and its bundle I/O.

:class:`TrainedModel` is what ``recsys train`` produces and what the
Recommender, the nightly push and the evaluation load. Row ``i`` of every
per-user array is user index ``i`` (``users`` row ``i``); column/row ``j`` of
every per-item array is item index ``j`` (``items`` row ``j``).

It holds its fitted components (the ANN index, the content embedder, the two
cold-start models, the ranking signals, the learned ranker); each saves and
loads itself through the bundle's writer/reader protocol
(:mod:`recsys.bundle`), registered once in :data:`COMPONENTS`. Adding a
component to the bundle is its ``save(writer)`` / ``load(reader)`` and one
line there.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recsys import bundle as bundle_io
from recsys.columns import AUTHORITIES
from recsys.config import EngineConfig, config_from_dict, is_int
from recsys.exceptions import ArtifactError, ConfigError
from recsys.idmap import SortedIds
from recsys.taxonomy import Taxonomy, parse_taxonomy

if TYPE_CHECKING:
    from recsys.training.coldstart import ItemColdStart, UserColdStart
    from recsys.training.content import ContentEmbedder
    from recsys.training.duplicates import NearDuplicates
    from recsys.training.index import VectorIndex
    from recsys.training.engagement import LatentTaste
    from recsys.training.ranker import LearnedRanker
    from recsys.training.signals import Signals
    from recsys.training.topic_rates import TopicRates

#: user table columns a bundle keeps (attributes the ranking and the push need)
USER_COLUMNS = ("user_id", "group", "sub_group", "region", "age_band", "channels", "push_opt_out")


class Component(NamedTuple):
    """One fitted component of a bundle: the model attribute, its part (sub-folder) and its class."""

    attribute: str
    part: str
    kind: str  # "module:Class", imported when a bundle is read (``import recsys.training.model`` stays light)
    optional: bool = False


#: every fitted component a bundle holds; ``part`` "" = the bundle's top level. A component
#: implements ``save(writer)`` and the classmethod ``load(reader)`` (recsys.bundle.BundleComponent).
COMPONENTS: tuple[Component, ...] = (
    Component("item_index", "item_index", "recsys.training.index:VectorIndex"),
    Component("content_model", "content_model", "recsys.training.content:ContentEmbedder"),
    Component("item_cold_start", "item_cold_start", "recsys.training.coldstart:ItemColdStart"),
    Component("user_cold_start", "user_cold_start", "recsys.training.coldstart:UserColdStart"),
    Component("signals", "", "recsys.training.signals:Signals"),
    Component("ranker", "", "recsys.training.ranker:LearnedRanker", optional=True),
    Component("taste", "taste", "recsys.training.engagement:LatentTaste", optional=True),
    Component("topic_rates", "topic_rates", "recsys.training.topic_rates:TopicRates", optional=True),
    Component("near_duplicates", "near_duplicates", "recsys.training.duplicates:NearDuplicates"),
    Component("user_lookup", "user_lookup", "recsys.idmap:SortedIds"),
)


def _component_class(kind: str) -> type:
    module, _, name = kind.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class TrainedModel:
    """Everything learned by one training run.

    Attributes
    ----------
    taxonomy : Taxonomy
        The codes it was trained with.
    config : EngineConfig
        The configuration it was trained with.
    users : DataFrame
        ``USER_COLUMNS``; row i = user index i.
    items : DataFrame
        The catalogue at training time (contract columns); row j = item index j.
    user_factors : ndarray, float32 (n_users, f)
        Collaborative user vectors (fitted, or folded in for sparse users).
    item_factors : ndarray, float32 (n_items, f)
        Collaborative item vectors; items without engagement get theirs from
        content through the item cold-start mapping.
    item_warm : ndarray, bool (n_items,)
        True where ``item_factors`` came from the fit.
    content_vectors : ndarray, float32 (n_items, d)
        L2-normalised content embeddings (near-duplicates are close).
    user_topics : ndarray, float32 (n_users, n_topics)
        Readable topic-interest profile, topics in taxonomy order.
    segments : DataFrame
        ``group, region``; row s = segment index s.
    segment_topic_prior : ndarray, float32 (n_segments, n_topics)
        Group x region topic prior.
    segment_popularity : ndarray, float32 (n_segments, n_items)
        Recency-weighted (decayed) positive engagement per segment and item.
    popularity_recent : ndarray, float32 (n_items,)
        Recency-weighted positive engagement, all users.
    popularity_all_time : ndarray, float32 (n_items,)
        Undecayed count of positive engagements.
    seen : scipy.sparse.csr_matrix, int8 (n_users, n_items)
        +1 where the user engaged positively, -1 where they dismissed or
        reported (the ranking never shows either again).
    user_channel_counts : ndarray, float32 (n_users, n_channels)
        Positive engagements per channel (taxonomy channel order).
    item_index : recsys.training.index.VectorIndex
        ANN index over ``item_factors`` (ids = item indices).
    content_model : recsys.training.content.ContentEmbedder
        Fitted embedder, to embed catalogue items that arrive after training.
    item_cold_start : recsys.training.coldstart.ItemColdStart
        Content -> collaborative-space mapping.
    user_cold_start : recsys.training.coldstart.UserColdStart
        Segment centroids for users without events.
    item_quality : ndarray, float32 (n_items,)
        Learned log-odds quality of each item per impression
        (:class:`recsys.training.engagement.EngagementModel`); the arrays below come
        from the same model and are all 0 when it had nothing to learn from
        (no impressions).
    authority_quality : ndarray, float32 (len(recsys.columns.AUTHORITIES),)
        Quality of a new item known only by its authority level.
    user_interest : ndarray, float32 (n_users, n_topics)
        Log-odds topic interest per user (rates per impression, shrunk to
        the user's segment and sub-group).
    segment_interest : ndarray, float32 (n_segments + 1, n_topics)
        The same per segment (rows of ``segments``), last row the population's.
    user_format : ndarray, float32 (n_users, n_formats)
        Log-odds format taste per user.
    segment_format : ndarray, float32 (n_segments + 1, n_formats)
    topic_freshness : ndarray, float32 (n_topics, K)
        Freshness coefficients per topic and time constant
        (``config.engagement.freshness_taus_days``).
    topic_trend : ndarray, float32 (n_topics,)
        Recent lift per topic (the window's last ``trend_days``).
    signals : recsys.training.signals.Signals
        Training-time arrays of the ranking features (popularity levels and
        windows, co-engagement, recent items, activity).
    window : dict
        ``{"start": ISO, "end": ISO}``: the events used (``end`` = as-of time).
    info : dict
        Counts, timings and index recall for the manifest.
    ranker : recsys.training.ranker.LearnedRanker or None
        The learned ranking stage; None ranks with the linear blend.
    engagement_intercept : float
        The engagement model's intercept (log-odds of an average user engaging
        with an average item per impression): with ``user_bias`` and the terms
        above, the predicted probability of engagement, not just an order.
    user_bias : ndarray, float32 (n_users,)
        Each user's own propensity to engage (log-odds, 0 = average).
    near_duplicates : recsys.training.duplicates.NearDuplicates or None
        The near-duplicate graph of ``items`` (content cosine above the
        calibrated ``[ranking] near_duplicate_threshold``), searched once when
        training writes the bundle, so that serving maps it instead of
        searching again. None until :meth:`save` searches it (its seconds go
        to the manifest's ``timings_s``); a model served without a bundle
        searches at load.
    user_lookup : recsys.idmap.SortedIds or None
        User id -> user index as arrays (sorted UTF-8 ids and their rows),
        memory-mapped from the bundle: serving looks users up without a
        Python object per user. None until :meth:`save` builds it.

    A loaded bundle reads ``users`` on first use only (a serving process
    needs the ids and codes, which it reads as arrays: :attr:`user_lookup`,
    :meth:`user_codes`), so loading allocates nothing per user.
    """

    taxonomy: Taxonomy
    config: EngineConfig
    users: pd.DataFrame
    items: pd.DataFrame
    user_factors: np.ndarray
    item_factors: np.ndarray
    item_warm: np.ndarray
    content_vectors: np.ndarray
    user_topics: np.ndarray
    segments: pd.DataFrame
    segment_topic_prior: np.ndarray
    segment_popularity: np.ndarray
    popularity_recent: np.ndarray
    popularity_all_time: np.ndarray
    seen: sp.csr_matrix
    user_channel_counts: np.ndarray
    item_index: VectorIndex
    content_model: ContentEmbedder
    item_cold_start: ItemColdStart
    user_cold_start: UserColdStart
    item_quality: np.ndarray
    authority_quality: np.ndarray
    user_interest: np.ndarray
    segment_interest: np.ndarray
    user_format: np.ndarray
    segment_format: np.ndarray
    topic_freshness: np.ndarray
    topic_trend: np.ndarray
    engagement_intercept: float
    user_bias: np.ndarray
    signals: Signals
    window: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    ranker: LearnedRanker | None = None
    #: the engagement model's latent taste term (``recsys.training.engagement.LatentTaste``), fitted
    #: with the learned ranker (``[engagement] taste_dim``); None: no such term
    taste: LatentTaste | None = None
    #: each user's shrunk engagement-rate lift per topic and format (``recsys.training.topic_rates``);
    #: None: a bundle written before it (the ``topic_rate`` / ``format_rate`` features read 0)
    topic_rates: TopicRates | None = None
    near_duplicates: NearDuplicates | None = None
    user_lookup: SortedIds | None = None
    #: a loaded bundle's reader, while ``users`` is not read yet (see :meth:`load`)
    _users_from: bundle_io.BundleReader | None = field(default=None, repr=False, compare=False)

    _ARRAYS = (
        "user_factors",
        "item_factors",
        "item_warm",
        "content_vectors",
        "user_topics",
        "segment_topic_prior",
        "segment_popularity",
        "popularity_recent",
        "popularity_all_time",
        "user_channel_counts",
        "item_quality",
        "authority_quality",
        "user_interest",
        "segment_interest",
        "user_format",
        "segment_format",
        "topic_freshness",
        "topic_trend",
    )

    @property
    def n_users(self) -> int:
        """Number of known users (one row of ``user_factors`` each: the users table need not be read)."""
        return int(self.user_factors.shape[0])

    def __getattr__(self, name: str) -> Any:
        # reached only for an attribute not set: ``users`` of a loaded bundle, read on first use
        reader = self.__dict__.get("_users_from")
        if name == "users" and reader is not None:
            frame = reader.table(USERS_TABLE)
            self.__dict__["users"] = frame
            return frame
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def user_codes(self, column: str, codes: Sequence[str]) -> np.ndarray:
        """Position of each user's ``column`` value in ``codes`` (-1 if absent), int64 (n_users,).

        From a loaded bundle whose users table was not read, only that column
        is read, and matched in Arrow (no Python object per user).
        """
        if "users" in self.__dict__ or self._users_from is None:
            return pd.Categorical(self.users[column].astype(str), categories=list(codes)).codes.astype(np.int64)
        values = self._users_from.arrow(USERS_TABLE, columns=[column], dictionary=[column]).column(column)
        wanted = pa.array(list(codes), type=pa.string())
        parts = [np.zeros(0, np.int64)]
        for chunk in values.chunks:
            # each distinct value is matched once; a row takes its value's position (-1: unknown or missing)
            where = pc.index_in(chunk.dictionary.cast(pa.string()), value_set=wanted).fill_null(-1).to_numpy(zero_copy_only=False)
            rows = chunk.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            parts.append(np.append(where, -1).astype(np.int64)[rows])
        del values
        # Arrow's allocator keeps freed buffers for reuse: give the column's memory back to the process
        pa.default_memory_pool().release_unused()
        return np.concatenate(parts)

    @property
    def n_items(self) -> int:
        """Number of items in the training catalogue."""
        return len(self.items)

    def embed_new_items(self, items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Content and collaborative vectors of catalogue items this model never saw.

        Runs the fitted content embedder, then the item cold-start mapping, so
        serving can place an item published after training without knowing
        how either model works.

        Parameters
        ----------
        items : DataFrame
            Catalogue rows (contract columns) of the new items.

        Returns
        -------
        content : ndarray, float32 (len(items), d)
        collaborative : ndarray, float32 (len(items), f)
        """
        f = self.item_factors.shape[1]
        d = self.content_vectors.shape[1]
        if len(items) == 0:
            return np.zeros((0, d), np.float32), np.zeros((0, f), np.float32)
        content = np.asarray(self.content_model.transform(items), dtype=np.float32)
        return content, np.asarray(self.item_cold_start.transform(content), dtype=np.float32)

    # ---- writing ---------------------------------------------------------
    def _fill(self, writer: bundle_io.BundleWriter) -> None:
        writer.text(TAXONOMY_FILE, self.taxonomy.source_text)
        if "users" not in self.__dict__ and self._users_from is not None:
            # a users table never read (a loaded bundle's, or a night's unchanged one): its file, unchanged
            writer.copy(f"{USERS_TABLE}.parquet", self._users_from.path(f"{USERS_TABLE}.parquet"))
        else:
            writer.table(USERS_TABLE, self.users[list(USER_COLUMNS)])
        writer.table(ITEMS_TABLE, self.items)
        writer.table(SEGMENTS_TABLE, self.segments)
        for name in self._ARRAYS:
            writer.array(name, getattr(self, name))
        # the intercept as a one-element array: checksummed and verified like every other array
        writer.array(INTERCEPT, np.array([self.engagement_intercept], dtype=np.float64))
        writer.array(USER_BIAS, np.asarray(self.user_bias, dtype=np.float32))
        seen = self.seen.tocsr()
        writer.array("seen_indptr", seen.indptr.astype(np.int64))
        writer.array("seen_indices", seen.indices.astype(np.int32))
        writer.array("seen_data", seen.data.astype(np.int8))
        for c in COMPONENTS:
            component = getattr(self, c.attribute)
            if component is None and c.optional:
                continue
            writer.component(c.part, component)

    def save(
        self,
        models_dir: str | Path,
        *,
        version: str | None = None,
        sanity: Callable[["TrainedModel"], None] | None = None,
    ) -> Path:
        """Write this model as a new bundle under ``models_dir`` and move ``latest``.

        ``sanity``, if given, is called on the bundle loaded back before
        ``latest`` moves (e.g. :func:`recsys.guards.check_bundle_sanity`); if it
        raises, the bundle stays on disk and ``latest`` where it was.

        The bundle is written to a temporary folder (each file hashed as it is
        written; files unchanged since a verified bundle are hard links to it,
        :mod:`recsys.bundle`), renamed, loaded back in full, and only then does
        ``latest`` move to it.

        Returns
        -------
        Path
            The new bundle folder.
        """
        if self.user_lookup is None:
            self.user_lookup = SortedIds.from_ids(self.users[USER_COLUMNS[0]].astype(str).to_numpy(dtype=object))
        if self.near_duplicates is None:
            # searched once here, when the bundle is made, so that no serving process searches it again.
            # cycle: the graph's module reads recsys.ranking, whose package imports this one.
            from recsys.training.duplicates import NearDuplicates

            start = time.perf_counter()
            self.near_duplicates = NearDuplicates.build(self.content_vectors, self.config.ranking.near_duplicate_threshold)
            self.info["timings_s"] = {**(self.info.get("timings_s") or {}), "near_duplicates": round(time.perf_counter() - start, 3)}
        manifest = {
            "data_window": self.window,
            "config": self.config.to_dict(),
            "taxonomy": self.taxonomy.name,
            "counts": {
                "users": self.n_users,
                "items": self.n_items,
                "warm_items": int(np.asarray(self.item_warm).sum()),
                "segments": len(self.segments),
                "factors": int(self.user_factors.shape[1]),
                **self.info.get("counts", {}),
            },
            "index": self.info.get("index", {}),
            "timings_s": self.info.get("timings_s", {}),
            "ranker": self.info.get("ranker", {"kind": "linear"}),
        }
        return bundle_io.write_bundle(
            models_dir,
            self._fill,
            manifest=manifest,
            keep=self.config.bundle.keep,
            version=version,
            verify=lambda p: TrainedModel.load(p, verify=False),
            sanity=None if sanity is None else (lambda p: sanity(TrainedModel.load(p, verify=False))),
        )

    # ---- reading ---------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True, mmap: bool = True) -> "TrainedModel":
        """Load a bundle (a version folder, ``models/latest`` or a models folder).

        Parameters
        ----------
        path : path
            The bundle.
        verify : bool
            Check every file's sha256 against the manifest first.
        mmap : bool
            Memory-map the arrays (read-only) instead of reading them.

        Raises
        ------
        ArtifactError
            Naming the missing, corrupted or unreadable file.
        """
        root = bundle_io.resolve(path)
        manifest = bundle_io.verify_bundle(root) if verify else bundle_io.read_manifest(root)
        reader = bundle_io.BundleReader(root, mmap=mmap)
        taxonomy = parse_taxonomy(reader.text(TAXONOMY_FILE), origin=str(reader.path(TAXONOMY_FILE)))
        try:
            config = config_from_dict(manifest.get("config") or {})
        except ConfigError as exc:
            raise ArtifactError(f"{root / bundle_io.MANIFEST}: the recorded config is not valid here ({exc})") from None
        arrays = {name: reader.array(name) for name in (*cls._ARRAYS, USER_BIAS, INTERCEPT)}
        items = reader.table(ITEMS_TABLE)
        # the users table is read on first use (TrainedModel.__getattr__): its row count is in the footer
        n_users = reader.arrow(USERS_TABLE, columns=[]).num_rows
        segments = reader.table(SEGMENTS_TABLE)
        seen_parts = {name: reader.array(name) for name in _SEEN}
        factors = (manifest.get("counts") or {}).get("factors")
        _check_shapes(root, arrays, seen_parts, n_users, len(items), len(segments), taxonomy, config, factors)
        intercept = arrays.pop(INTERCEPT)
        seen = sp.csr_matrix(
            (seen_parts["seen_data"], seen_parts["seen_indices"], seen_parts["seen_indptr"]),
            shape=(n_users, len(items)),
        )
        # every component from its own part; the checksums were checked once, above
        components = {c.attribute: _component_class(c.kind).load(reader.part(c.part)) for c in COMPONENTS}
        if len(components["user_lookup"]) != n_users:
            raise ArtifactError(
                f"{reader.part('user_lookup').path('ids.npy')}: {len(components['user_lookup'])} ids for "
                f"{n_users} users: the file was replaced or comes from another bundle"
            )
        model = cls(
            taxonomy=taxonomy,
            config=config,
            users=None,  # type: ignore[arg-type]  # read on first use, below
            items=items,
            segments=segments,
            seen=seen,
            window=manifest.get("data_window", {}),
            info={k: manifest.get(k) for k in ("counts", "index", "timings_s", "ranker")},
            path=root,
            manifest=manifest,
            engagement_intercept=float(intercept[0]),
            _users_from=reader,
            **components,
            **arrays,
        )
        # left unset, so that the first ``model.users`` reads it (__getattr__): a serving process never does
        del model.__dict__["users"]
        return model


def load_component(path: str | Path, attribute: str, **options: Any) -> Any:
    """Load one registered component of a bundle (e.g. ``"item_index"``), with its ``load`` options.

    For a caller that needs one part with other settings (the index with
    search-time settings) without loading the whole model again. Checksums are
    not checked here: the bundle was verified when its model was loaded.
    """
    for c in COMPONENTS:
        if c.attribute == attribute:
            reader = bundle_io.BundleReader(bundle_io.resolve(path)).part(c.part)
            return _component_class(c.kind).load(reader, **options)
    raise ArtifactError(f"{attribute!r} is not a bundle component; valid: {', '.join(c.attribute for c in COMPONENTS)}")


def read_users(path: str | Path, columns: list[str]) -> pa.Table:
    """The ``columns`` of a bundle's users table, as a pyarrow Table (no Python object per user).

    What the nightly push reads instead of loading the whole model: it names
    columns, never the bundle's files.
    """
    return bundle_io.BundleReader(bundle_io.resolve(path)).arrow(USERS_TABLE, columns=columns)


def users_table_path(path: str | Path) -> Path:
    """The file of a bundle's users table, for a reader that takes a users table by path (lift).

    The bundle's folder is taken as given (not resolved), so a path recorded in a push
    manifest names the same bundle even after ``latest`` moved.
    """
    return Path(path) / f"{USERS_TABLE}.parquet"


def read_model_array(path: str | Path, name: str) -> np.ndarray:
    """One of the model's arrays (``TrainedModel`` attribute ``name``) from a bundle, memory-mapped."""
    if name not in TrainedModel._ARRAYS:
        raise ArtifactError(f"{name!r} is not an array of the model bundle; valid: {', '.join(TrainedModel._ARRAYS)}")
    return bundle_io.BundleReader(bundle_io.resolve(path)).array(name)


def read_bundle_taxonomy(path: str | Path) -> Taxonomy:
    """The taxonomy a bundle was trained with."""
    reader = bundle_io.BundleReader(bundle_io.resolve(path))
    return parse_taxonomy(reader.text(TAXONOMY_FILE), origin=str(reader.path(TAXONOMY_FILE)))


_SEEN = ("seen_data", "seen_indices", "seen_indptr")
#: the model's own files (the components name theirs)
TAXONOMY_FILE = "taxonomy.toml"
USERS_TABLE = "users"
ITEMS_TABLE = "items"
SEGMENTS_TABLE = "segments"
#: the engagement model's intercept (one-element array) and per-user bias
INTERCEPT = "engagement_intercept"
USER_BIAS = "user_bias"


def array_shapes(
    n_users: int,
    n_items: int,
    n_segments: int,
    taxonomy: Taxonomy,
    config: EngineConfig,
    factors: int | None = None,
) -> dict[str, tuple[int | None, ...]]:
    """The shape of each array a bundle holds, for a model of these sizes (``None``: any length).

    What a load checks a bundle's arrays against; a model built by hand (the
    tests' factory) takes its neutral parts in the same shapes.

    Parameters
    ----------
    n_users, n_items, n_segments : int
        Rows of the users, items and segments tables.
    taxonomy : Taxonomy
        Topics, formats and channels (the widths of the profile arrays).
    config : EngineConfig
        ``[engagement] freshness_taus_days`` (the width of ``topic_freshness``).
    factors : int, optional
        Width of the collaborative vectors; ``None`` accepts any.

    Returns
    -------
    dict
        Array name -> shape.
    """
    n_t, n_f = len(taxonomy.topics), len(taxonomy.formats)
    n_k = len(config.engagement.freshness_taus_days)
    return {
        "user_factors": (n_users, factors),
        "item_factors": (n_items, factors),
        "item_warm": (n_items,),
        "content_vectors": (n_items, None),
        "user_topics": (n_users, n_t),
        "segment_topic_prior": (n_segments, n_t),
        "segment_popularity": (n_segments, n_items),
        "popularity_recent": (n_items,),
        "popularity_all_time": (n_items,),
        "user_channel_counts": (n_users, len(taxonomy.channels)),
        "item_quality": (n_items,),
        "authority_quality": (len(AUTHORITIES),),
        "user_interest": (n_users, n_t),
        "segment_interest": (n_segments + 1, n_t),
        "user_format": (n_users, n_f),
        "segment_format": (n_segments + 1, n_f),
        "topic_freshness": (n_t, n_k),
        "topic_trend": (n_t,),
        USER_BIAS: (n_users,),
        INTERCEPT: (1,),
    }


def _check_shapes(
    root: Path,
    arrays: dict[str, np.ndarray],
    seen: dict[str, np.ndarray],
    n_users: int,
    n_items: int,
    n_segments: int,
    taxonomy: Taxonomy,
    config: EngineConfig,
    factors: int | None = None,
) -> None:
    """Refuse arrays whose shapes disagree with the bundle's tables (a replaced or mixed-up file).

    Checked at load, so a swapped ``.npy`` is named here rather than failing
    later as an anonymous shape error deep in the ranking.
    """
    if is_int(factors):
        f = factors  # the manifest's count: a replaced item_factors.npy is named, not user_factors.npy
    else:
        f = arrays["item_factors"].shape[1] if arrays["item_factors"].ndim == 2 else -1
    expected = array_shapes(n_users, n_items, n_segments, taxonomy, config, f)
    what = f"{n_users} users, {n_items} items, {n_segments} segments, {len(taxonomy.topics)} topics"
    for name, shape in expected.items():
        arr = arrays.get(name)
        if arr is None:
            continue
        ok = arr.ndim == len(shape) and all(want is None or got == want for got, want in zip(arr.shape, shape))
        if not ok:
            want = "(" + ", ".join("any" if w is None else str(w) for w in shape) + ")"
            raise ArtifactError(
                f"{root / (name + '.npy')}: shape {tuple(arr.shape)} does not fit this bundle ({what}; "
                f"expected {want}): the file was replaced or comes from another bundle"
            )
    indptr, indices = seen["seen_indptr"], seen["seen_indices"]
    if indptr.ndim != 1 or len(indptr) != n_users + 1:
        raise ArtifactError(
            f"{root / 'seen_indptr.npy'}: {len(indptr)} entries, expected {n_users + 1} ({n_users} users + 1)"
        )
    if len(indices) != len(seen["seen_data"]) or (len(indices) and int(np.max(indices)) >= n_items):
        raise ArtifactError(f"{root / 'seen_indices.npy'}: does not fit this bundle's {n_items} items")

