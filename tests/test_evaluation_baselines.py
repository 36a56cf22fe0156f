"""Baselines on a hand-built model: known lists, engine eligibility, cold fallback, contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from evaluation_world import TAXONOMY_TOML
from model_factory import model_from_parts
from recsys.config import EngineConfig
from recsys.evaluation.baselines import (
    BASELINES,
    LIST_COLUMNS,
    ALSPolicy,
    ContentPolicy,
    ListingContext,
    PopularPolicy,
    RandomPolicy,
    RecentPopularPolicy,
    SegmentPopularPolicy,
    make_baseline,
    recommend,
    top_k,
)
from recsys.evaluation.simulate import OraclePolicy
from recsys.evaluation.split import quantile_time
from recsys.exceptions import ConfigError, NotFittedError
from recsys.taxonomy import parse_taxonomy

T = pd.Timestamp("2026-06-20T00:00:00Z")
TS = lambda s: pd.Timestamp(s, tz="UTC") if s else pd.NaT  # noqa: E731


def _items() -> pd.DataFrame:
    rows = [
        # id, topics, target_groups, status, published, expires
        ("i0", ["space"], [], "approved", "2026-06-01", None),
        ("i1", ["health"], ["elder"], "approved", "2026-06-01", None),  # elders only
        ("i2", ["space"], [], "approved", "2026-06-01", "2026-06-10"),  # expired at T
        ("i3", ["safety"], [], "pending", "2026-06-01", None),  # not approved
        ("i4", ["farming"], [], "approved", "2026-06-25", None),  # published after T
        ("i5", ["health"], [], "approved", None, None),
        ("i6", ["safety"], [], "approved", "2026-06-02", None),
        ("i7", ["farming"], [], "approved", "2026-06-03", None),
    ]
    return pd.DataFrame(
        {
            "item_id": [r[0] for r in rows],
            "title": [f"标题{r[0]}" for r in rows],
            "summary": "",
            "tags": [[] for _ in rows],
            "topics": [r[1] for r in rows],
            "format": "article",
            "target_groups": [r[2] for r in rows],
            "target_regions": [[] for _ in rows],
            "review_status": [r[3] for r in rows],
            "authority": "other",
            "source": "",
            "published_at": pd.to_datetime([TS(r[4]) for r in rows], utc=True).as_unit("us"),
            "expires_at": pd.to_datetime([TS(r[5]) for r in rows], utc=True).as_unit("us"),
        }
    )


@pytest.fixture
def context() -> ListingContext:
    tax = parse_taxonomy(TAXONOMY_TOML)
    users = pd.DataFrame(
        {
            "user_id": ["u0", "u1", "u2"],
            "group": ["pupil", "elder", "pupil"],
            "sub_group": "",
            "region": ["town", "farm", "hill"],
            "age_band": "",
            "channels": [["app"]] * 3,
            "push_opt_out": False,
        }
    )
    n_items = 8
    # u0 engaged with i0 (+1); u1 nothing (cold); u2 engaged with i6 and dismissed i5
    seen = sp.csr_matrix(
        (np.array([1, 1, -1], np.int8), (np.array([0, 2, 2]), np.array([0, 6, 5]))), shape=(3, n_items)
    )
    item_factors = np.array([[1, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.5], [0, 2], [2, 0], [1, 1]], np.float32)
    content = np.eye(n_items, 4, dtype=np.float32)[[0, 1, 0, 2, 3, 1, 2, 3]]  # one-hot topic-like vectors
    segments = pd.DataFrame({"group": ["elder", "pupil", "pupil"], "region": ["farm", "hill", "town"]})
    seg_pop = np.zeros((3, n_items), np.float32)
    seg_pop[1, 7] = 3.0  # pupils in the hills like i7
    seg_pop[2, 5] = 2.0
    model = model_from_parts(
        taxonomy=tax,
        config=EngineConfig(),
        users=users,
        items=_items(),
        user_factors=np.array([[1, 0], [0, 0], [0, 1]], np.float32),
        item_factors=item_factors,
        item_warm=np.ones(n_items, bool),
        content_vectors=content,
        user_topics=np.zeros((3, 4), np.float32),
        segments=segments,
        segment_topic_prior=np.zeros((3, 4), np.float32),
        segment_popularity=seg_pop,
        popularity_recent=np.array([1, 2, 3, 4, 5, 6, 7, 0.5], np.float32),
        popularity_all_time=np.array([5, 9, 8, 7, 6, 1, 4, 4], np.float32),
        seen=seen,
        user_channel_counts=np.zeros((3, 1), np.float32),
        item_index=None,
        content_model=None,
        item_cold_start=None,
        user_cold_start=None,
        window={"start": "2026-06-01T00:00:00+00:00", "end": T.isoformat()},
    )
    events = pd.DataFrame(
        {
            "user_id": ["u0", "u2", "u1", "u2", "u0"],
            "item_id": ["i0", "i6", "i7", "i5", "i6"],
            "event_type": ["click", "read", "impression", "dismiss", "like"],
            "timestamp": pd.to_datetime(
                ["2026-06-05", "2026-06-18", "2026-06-19", "2026-06-19", "2026-06-10"], utc=True
            ).as_unit("us"),
        }
    )
    return ListingContext.build(model, None, T, events)


def _lists(df: pd.DataFrame) -> dict[str, list[str]]:
    return {u: g.sort_values("rank")["item_id"].tolist() for u, g in df.groupby("user_id")}


ELIGIBLE = {  # at T, history excluded
    "u0": {"i5", "i6", "i7"},
    "u1": {"i0", "i1", "i5", "i6", "i7"},
    "u2": {"i0", "i7"},
}


def test_eligibility_matches_the_engine_rules(context):
    mask = context.eligible(context.user_rows(["u0", "u1", "u2"]))
    ids = np.asarray(context.catalog.item_ids)
    assert {u: set(ids[m]) for u, m in zip(["u0", "u1", "u2"], mask)} == ELIGIBLE


def test_popular_known_lists(context):
    recs = recommend(PopularPolicy().fit(context), context, ["u0", "u1", "u2"], 3)
    assert list(recs.columns) == list(LIST_COLUMNS)
    # ties (i6, i7 both 4) go by catalogue order; u2 has only two eligible items
    assert _lists(recs) == {"u0": ["i6", "i7", "i5"], "u1": ["i1", "i0", "i6"], "u2": ["i0", "i7"]}
    assert not recs["fallback"].any()
    assert recs["rank"].dtype == np.int64


def test_segment_popular_uses_the_users_segment(context):
    recs = recommend(SegmentPopularPolicy().fit(context), context, ["u0", "u2"], 2)
    # u0 (pupil, town): i5 leads its segment, then city-wide recent popularity breaks the ties
    # u2 (pupil, hill): i7 leads its segment
    assert _lists(recs) == {"u0": ["i5", "i6"], "u2": ["i7", "i0"]}


def test_als_and_content_fall_back_for_cold_users(context):
    als = recommend(ALSPolicy().fit(context), context, ["u0", "u1"], 2)
    seg = recommend(SegmentPopularPolicy().fit(context), context, ["u1"], 2)
    # u0 = (1, 0): i6 scores 2, i7 1, i5 0
    assert _lists(als)["u0"] == ["i6", "i7"]
    assert _lists(als)["u1"] == _lists(seg)["u1"]
    assert als.groupby("user_id")["fallback"].all().to_dict() == {"u0": False, "u1": True}
    content = recommend(ContentPolicy().fit(context), context, ["u0", "u1"], 1)
    # u0's only positive is i0 (topic vector 0): no eligible item shares it; i6 ties with i7, i5 at 0
    assert content.groupby("user_id")["fallback"].all().to_dict() == {"u0": False, "u1": True}


def test_recent_popular_tunes_its_window_on_training_only(context):
    policy = RecentPopularPolicy(grid=(1.0, 3.0), validation_days=1.0).fit(context)
    assert set(policy.trials_) == {1.0, 3.0} and policy.window_days_ in (1.0, 3.0)
    fixed = RecentPopularPolicy(window_days=3.0).fit(context)
    assert fixed.trials_ == {} and fixed.window_days_ == 3.0
    # within 3 days of T: u2 read i6 (distinct users 1) -> i6 leads for u0
    assert _lists(recommend(fixed, context, ["u0"], 1)) == {"u0": ["i6"]}
    with pytest.raises(ConfigError, match="window_days / grid must be positive"):
        RecentPopularPolicy(window_days=-1.0).fit(context)
    with pytest.raises(ConfigError, match="validation_days must be a positive number"):
        RecentPopularPolicy(validation_days=0).fit(context)


def test_top_k_ties_and_padding():
    scores = np.array([[1.0, 3.0, 3.0, -np.inf], [-np.inf] * 4])
    idx, val = top_k(scores, 3)
    assert idx.tolist() == [[1, 2, 0], [-1, -1, -1]]
    assert val[0].tolist() == [3.0, 3.0, 1.0]
    idx, _ = top_k(scores, 6)
    assert idx.tolist()[0] == [1, 2, 0, -1, -1, -1]


def test_errors(context):
    with pytest.raises(ConfigError, match="unknown baseline 'magic'; valid: random, popular"):
        make_baseline("magic")
    with pytest.raises(NotFittedError, match="policy 'popular' is not fitted"):
        PopularPolicy().score(np.array([0]))
    with pytest.raises(ConfigError, match="k must be a positive int, got 0"):
        recommend(PopularPolicy().fit(context), context, ["u0"], 0)
    with pytest.raises(ConfigError, match="user_id 'nobody' is not a user of the model"):
        recommend(PopularPolicy().fit(context), context, ["nobody"], 2)
    with pytest.raises(ConfigError, match="non-negative int"):
        RandomPolicy(seed=-3).fit(context)


class _Truth:
    def engagement_prob(self, user_ids, item_ids, channel=None, *, at=None):
        return np.tile(np.linspace(0.1, 0.8, len(item_ids)), (len(user_ids), 1))


@pytest.mark.parametrize("name", [*BASELINES, "oracle"])
def test_contract_every_baseline(context, name):
    """Same seed -> same lists; schema; eligibility honoured; batching changes nothing."""
    make = (lambda: OraclePolicy(truth=_Truth())) if name == "oracle" else (lambda: make_baseline(name, seed=5))
    users = ["u0", "u1", "u2"]
    first = recommend(make().fit(context), context, users, 4)
    again = recommend(make().fit(context), context, users, 4, batch_size=1)
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == list(LIST_COLUMNS)
    assert first["user_id"].tolist() == sorted(first["user_id"].tolist())
    for user, group in first.groupby("user_id"):
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        assert set(group["item_id"]) <= ELIGIBLE[user]
        # lists are filled whenever enough eligible items exist
        assert len(group) == min(4, len(ELIGIBLE[user]))
        assert group["score"].is_monotonic_decreasing


def test_random_depends_on_the_seed(context):
    users = ["u0", "u1", "u2"]
    a = recommend(RandomPolicy(seed=1).fit(context), context, users, 3)
    b = recommend(RandomPolicy(seed=2).fit(context), context, users, 3)
    assert not a["score"].equals(b["score"])


# ---- on a trained model ----------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    from evaluation_world import make_world
    from recsys.schema import validate
    from recsys.training import train_model

    tax = parse_taxonomy(TAXONOMY_TOML)
    users, items, events, _ = make_world(n_users=150, n_items=40, seed=4)
    clean = validate(tables=(users, items, events), taxonomy=tax, end="2026-07-01T00:00:00Z")
    t = pd.Timestamp("2026-06-24T00:00:00Z")
    train = clean.events[clean.events["timestamp"] < t]
    model = train_model(clean.users, clean.items, train, taxonomy=tax, as_of=t)
    return model, clean, train, t


def test_engine_lists_pass_the_baselines_eligibility(trained):
    """The baselines' eligibility is the engine's: every engine item is eligible for its user."""
    from recsys.evaluation.run import engine_lists

    model, clean, train, t = trained
    context = ListingContext.build(model, clean.items, t, train)
    users = clean.users["user_id"].tolist()
    lists = engine_lists(model, clean.items, np.array(users), 10, t)
    mask = context.eligible(context.user_rows(lists["user_id"]))
    col = pd.Index(context.catalog.item_ids).get_indexer(lists["item_id"])
    assert mask[np.arange(len(lists)), col].all()
    assert len(lists) > 0.9 * 10 * len(users)


def test_save_load_changes_no_list(trained, tmp_path):
    from recsys.training.model import TrainedModel

    model, clean, train, t = trained
    loaded = TrainedModel.load(model.save(tmp_path / "models"))
    users = clean.users["user_id"].tolist()[:60]
    a = ListingContext.build(model, clean.items, t, train)
    b = ListingContext.build(loaded, clean.items, t, train)
    for name in BASELINES:
        pd.testing.assert_frame_equal(
            recommend(make_baseline(name, seed=2).fit(a), a, users, 5),
            recommend(make_baseline(name, seed=2).fit(b), b, users, 5),
            obj=name,
        )


def test_recent_popular_validation_window_reaches_back_on_a_sparse_log(context):
    events = context.train_events
    week = RecentPopularPolicy(grid=(1.0, 3.0), validation_share=0.0).fit(context)
    assert week.validation_start_ == context.time - pd.Timedelta(days=7)
    wide = RecentPopularPolicy(grid=(1.0, 3.0), validation_share=0.9).fit(context)
    # the window reaches back to the 10% quantile of the training events' times
    assert wide.validation_start_ < week.validation_start_
    assert wide.validation_start_ == quantile_time(events, 0.1) == pd.Timestamp("2026-06-10", tz="UTC")
    assert set(wide.trials_) == {1.0, 3.0}
    with pytest.raises(ConfigError, match="validation_share must be a number in \\[0, 1\\)"):
        RecentPopularPolicy(validation_share=1.0).fit(context)
