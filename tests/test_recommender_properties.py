"""Property tests: random catalogue states and requests against the eligibility rules.

The base model has 30 items in near-duplicate clusters (items of a cluster
share one content vector, clusters are orthogonal), so "the list is full
whenever k eligible, non-near-duplicate items exist" has an exact answer:
``min(k, number of clusters with an eligible item)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys import Recommender
from recsys.config import EngineConfig

from ranking_world import NOW, TAX, cluster_vectors, hand_model, is_eligible, items_frame, users_frame

N_ITEMS = 30
CLUSTERS = [0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 6, 7, 8, 9, 9, 10, 11, 12, 13, 13, 14, 15, 16, 17, 18, 18, 19, 20, 21, 22]
TOPICS = ("earthquake", "health_literacy", "modern_agriculture", "ocean_coast")
FORMATS = ("article", "video", "audio", "ebook", "short_video")
GROUPS = ("farmer", "youth", "resident")
REGIONS = ("qinglong", "haigang", "lulong")
USERS = [
    ("farmer", "qinglong"),
    ("farmer", "haigang"),
    ("youth", "haigang"),
    ("resident", "lulong"),
    ("youth", "qinglong"),
]
SEEN = {(0, 1): 1, (0, 6): -1, (2, 3): 1, (2, 12): 1, (3, 0): -1}
# each example validates and installs a catalogue (~50 ms): 50 examples per property
PROPERTY_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(5)
    users = users_frame([g for g, _ in USERS], [r for _, r in USERS])
    items = items_frame(
        N_ITEMS,
        topics=[[TOPICS[j % 4]] if j % 3 else [TOPICS[j % 4], TOPICS[(j + 1) % 4]] for j in range(N_ITEMS)],
        format=[FORMATS[j % 5] for j in range(N_ITEMS)],
    )
    topics = rng.dirichlet(np.ones(len(TAX.topics)), size=len(USERS)).astype(np.float32)
    return hand_model(
        users,
        items,
        rng.normal(size=(len(USERS), 6)),
        rng.normal(size=(N_ITEMS, 6)),
        user_topics=topics,
        seen=SEEN,
        segment_popularity=rng.gamma(1.0, 2.0, size=(len(set(USERS)), N_ITEMS)),
        popularity_recent=rng.gamma(1.0, 2.0, size=N_ITEMS),
        content_vectors=cluster_vectors(CLUSTERS),
        config=EngineConfig(),
    )


@pytest.fixture(scope="module")
def rec(model):
    """One recommender for all examples: each example swaps the catalogue in."""
    return Recommender.from_model(model)


#: publish / expiry times relative to NOW (None = no time)
OFFSETS = [
    None,
    pd.Timedelta(days=-10),
    pd.Timedelta(hours=-1),
    pd.Timedelta(0),
    pd.Timedelta(hours=1),
    pd.Timedelta(days=5),
]


STATUSES = ("approved", "pending", "rejected", "retracted")
GROUP_SETS = ((), ("farmer",), ("youth",), ("resident",), ("farmer", "youth"), ("youth", "resident"))
REGION_SETS = ((), ("qinglong",), ("haigang",), ("lulong",), ("qinglong", "haigang"))


def decode_state(code: int) -> dict:
    """One item's state from an integer (mixed radix; 0 = plain approved item in the catalogue).

    Drawing one integer per item keeps data generation cheap and still lets
    hypothesis shrink towards plain items.
    """
    def take(n: int) -> int:
        nonlocal code
        code, digit = divmod(code, n)
        return digit

    status = take(7)
    pub, exp = OFFSETS[take(len(OFFSETS))], OFFSETS[take(len(OFFSETS))]
    return {
        # statuses 0-3 are approved: most items pass review
        "review_status": "approved" if status < 4 else STATUSES[status - 3],
        "published_at": None if pub is None else NOW + pub,
        "expires_at": None if exp is None else NOW + exp,
        "target_groups": list(GROUP_SETS[take(len(GROUP_SETS))]),
        "target_regions": list(REGION_SETS[take(len(REGION_SETS))]),
        "format": FORMATS[take(len(FORMATS))],
        # three in four items are in the catalogue
        "present": take(4) != 3,
    }


def item_states():
    """A random state per item: review status, times, targets, format, presence."""
    radix = 7 * len(OFFSETS) ** 2 * len(GROUP_SETS) * len(REGION_SETS) * len(FORMATS) * 4
    return st.lists(st.integers(0, radix - 1), min_size=N_ITEMS, max_size=N_ITEMS).map(
        lambda codes: [decode_state(c) for c in codes]
    )


@st.composite
def requests(draw):
    """A random request: a known or cold user, k, channel, topics, exclude."""
    known = draw(st.booleans())
    if known:
        u = draw(st.integers(0, len(USERS) - 1))
        user, attrs = f"u{u}", {}
        if draw(st.booleans()):
            attrs = {"group": draw(st.sampled_from(GROUPS)), "region": draw(st.sampled_from(REGIONS))}
        group, region = attrs.get("group", USERS[u][0]), attrs.get("region", USERS[u][1])
        seen = {f"i{i:02d}" for (uu, i) in SEEN if uu == u}
    else:
        group, region = draw(st.sampled_from(GROUPS)), draw(st.sampled_from(REGIONS))
        user, attrs, seen = "cold-user", {"group": group, "region": region}, set()
    return {
        "user": user,
        "attrs": attrs,
        "group": group,
        "region": region,
        "seen": seen,
        "k": draw(st.integers(1, 15)),
        "channel": draw(st.sampled_from([None, "app_push", "e_reader", "radio", "tv", "kiosk"])),
        "topics": draw(st.one_of(st.none(), st.lists(st.sampled_from(TOPICS), min_size=1, max_size=2, unique=True))),
        "exclude": draw(st.lists(st.sampled_from([f"i{j:02d}" for j in range(N_ITEMS)]), max_size=3, unique=True)),
    }


def catalog_of(model, states) -> pd.DataFrame:
    items = model.items.copy()
    for col in ("review_status", "published_at", "expires_at", "target_groups", "target_regions", "format"):
        items[col] = pd.Series([s[col] for s in states], dtype=object)
    keep = [s["present"] for s in states]
    return items[keep].reset_index(drop=True)


def eligible_ids(catalog: pd.DataFrame, req: dict) -> set[str]:
    return {
        row["item_id"]
        for row in catalog.to_dict("records")
        if row["item_id"] not in req["seen"]
        and row["item_id"] not in req["exclude"]
        and is_eligible(
            row, group=req["group"], region=req["region"], now=NOW, channel=req["channel"], topics=req["topics"]
        )
    }


def cluster(item_id: str) -> int:
    return CLUSTERS[int(item_id[1:])]


@PROPERTY_SETTINGS
@given(states=item_states(), req=requests())
def test_returned_items_are_eligible_distinct_and_fill_k(model, rec, states, req):
    rec.set_catalog(catalog_of(model, states))
    got = rec.recommend(
        req["user"], k=req["k"], topics=req["topics"], channel=req["channel"], exclude=req["exclude"], **req["attrs"]
    )
    ids = [r.item_id for r in got]
    allowed = eligible_ids(catalog_of(model, states), req)
    assert set(ids) <= allowed, f"ineligible: {set(ids) - allowed}"
    assert len(ids) == len(set(ids))
    # near-duplicates share a list only when nothing else can fill it; a list is filled to k
    # whenever k eligible items exist
    n_clusters = len({cluster(i) for i in allowed})
    assert len({cluster(i) for i in ids}) == min(len(ids), n_clusters), "near-duplicates while others were left"
    assert len(ids) == min(req["k"], len(allowed))


@PROPERTY_SETTINGS
@given(states=item_states(), req=requests(), data=st.data())
def test_retracted_or_expired_items_never_appear_after_set_catalog(model, rec, states, req, data):
    catalog = catalog_of(model, states)
    rec.set_catalog(catalog)
    kwargs = dict(k=req["k"], topics=req["topics"], channel=req["channel"], **req["attrs"])
    before = [r.item_id for r in rec.recommend(req["user"], **kwargs)]
    if not before:
        return
    gone = data.draw(st.lists(st.sampled_from(before), min_size=1, unique=True))
    how = data.draw(st.sampled_from(["retracted", "expired", "removed"]))
    changed = catalog.copy()
    hit = changed["item_id"].isin(gone)
    if how == "retracted":
        changed.loc[hit, "review_status"] = "retracted"
    elif how == "expired":
        changed["expires_at"] = changed["expires_at"].astype(object)
        changed.loc[hit, "expires_at"] = NOW
    else:
        changed = changed[~hit]
    rec.set_catalog(changed)
    after = {r.item_id for r in rec.recommend(req["user"], **kwargs)}
    assert not after & set(gone)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    states=item_states(),
    reqs=st.lists(requests(), min_size=1, max_size=6),
    k=st.integers(1, 12),
    channel=st.sampled_from([None, "app_push", "kiosk"]),
)
def test_recommend_many_equals_a_loop_of_recommend(model, rec, states, reqs, k, channel):
    rec.set_catalog(catalog_of(model, states))
    users = [r["user"] if r["user"] != "cold-user" else f"cold-{i}" for i, r in enumerate(reqs)]
    attrs = pd.DataFrame(
        [
            {"user_id": u, "group": r["attrs"].get("group"), "region": r["attrs"].get("region")}
            for u, r in zip(users, reqs)
            if r["attrs"]
        ],
        columns=["user_id", "group", "region"],
    )
    frame = rec.recommend_many(users, k=k, channel=channel, users=attrs)
    last = {row["user_id"]: (row["group"], row["region"]) for row in attrs.to_dict("records")}
    expected_rows = []
    for u in users:
        g, r = last.get(u, (None, None))
        for rank, item in enumerate(rec.recommend(u, k=k, channel=channel, group=g, region=r), start=1):
            expected_rows.append((u, rank, item.item_id, item.score, item.reasons))
    got_rows = list(frame.itertuples(index=False, name=None))
    assert got_rows == expected_rows
