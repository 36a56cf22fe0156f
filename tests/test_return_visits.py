"""Return visits as extra warm training queries (``[ranker] return_visits``): which events a visit
holds, and that no feature of a query sees the visit its labels come from."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import recsys.training
from recsys import columns as C
from recsys.config import EngineConfig
from recsys.ranking.features import selected
from recsys.schema import validate
from recsys.taxonomy import parse_taxonomy
from recsys.training import ranker_training as RT
from tests.evaluation_world import END, TAXONOMY_TOML, make_world

T0 = pd.Timestamp("2026-03-01", tz="UTC")


def _events(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    """(user, item, type, hours after T0) -> an events frame."""
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, "h"])
    frame[C.TIMESTAMP] = T0 + pd.to_timedelta(frame.pop("h"), unit="h")
    return frame


def _visits_by_rule(events: pd.DataFrame, since: pd.Timestamp | None) -> set[int]:
    """The rule written out user by user: after the last gap of a day or more between two
    consecutive positives, every event of the user after the positive that starts the gap."""
    out: set[int] = set()
    for _, rows in events.groupby(C.USER_ID):
        pos = rows[rows[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE)].sort_values(C.TIMESTAMP)
        times = pos[C.TIMESTAMP].tolist()
        gaps = [(a, b) for a, b in zip(times, times[1:]) if b - a >= pd.Timedelta(days=1)]
        if not gaps or (since is not None and gaps[-1][1] < since):
            continue
        out |= set(rows.index[rows[C.TIMESTAMP] > gaps[-1][0]].tolist())
    return out


def test_a_visit_is_what_follows_the_users_last_gap_of_a_day():
    events = _events(
        [
            ("a", "i1", "click", 0), ("a", "i2", "click", 1),  # first visit
            ("a", "i3", "impression", 30), ("a", "i3", "click", 30.5), ("a", "i4", "like", 31),  # returns
            ("b", "i1", "click", 0), ("b", "i2", "click", 5), ("b", "i3", "click", 20),  # never a day apart
            ("c", "i1", "click", 0), ("c", "i2", "click", 40), ("c", "i3", "dismiss", 41),  # returns early
            ("d", "i5", "impression", 0), ("d", "i5", "impression", 50),  # no positive at all
        ]
    )
    held = RT.return_visits(events)
    # a's visit opens with its click at 30.5 h and holds the impression at 30 h before it (after
    # a's previous positive at 1 h): the session's events before its first positive are the visit's
    assert set(np.flatnonzero(held)) == {2, 3, 4, 9, 10} == _visits_by_rule(events, None)
    since = T0 + pd.Timedelta(hours=35)
    assert set(np.flatnonzero(RT.return_visits(events, since))) == {9, 10} == _visits_by_rule(events, since)
    assert not RT.return_visits(events.iloc[:0]).any()


def test_the_mask_matches_the_rule_on_a_random_log():
    rng = np.random.default_rng(3)
    n = 400
    events = _events(
        [
            (f"u{rng.integers(0, 30)}", f"i{rng.integers(0, 20)}", str(rng.choice(["click", "impression", "read"])), float(rng.uniform(0, 24 * 20)))
            for _ in range(n)
        ]
    )
    for since in (None, T0 + pd.Timedelta(days=12)):
        assert set(np.flatnonzero(RT.return_visits(events, since))) == _visits_by_rule(events, since)


@pytest.fixture(scope="module")
def ratings_world():
    users, items, events, _ = make_world(n_users=120, n_items=40, days=30, seed=5)
    events = events[events[C.EVENT_TYPE] != "impression"].reset_index(drop=True)  # a log of ratings
    taxonomy = parse_taxonomy(TAXONOMY_TOML)
    clean = validate(tables=(users, items, events), taxonomy=taxonomy, end=END)
    return clean.users, clean.items, clean.events, taxonomy


def test_no_feature_of_a_return_visit_query_sees_the_visit(ratings_world, monkeypatch):
    users, items, events, taxonomy = ratings_world
    config = EngineConfig()
    config = dataclasses.replace(config, ranker=dataclasses.replace(config.ranker, return_visits=True))
    cut = events[C.TIMESTAMP].quantile(0.9)
    since = events[C.TIMESTAMP].quantile(0.5)
    trained_on: list[pd.DataFrame] = []
    real_train = recsys.training.train_model

    def spy_train(users_, items_, events_, **kw):
        trained_on.append(events_)
        return real_train(users_, items_, events_, **kw)

    built = {}
    real_build = RT.build_examples

    def spy_build(state, rows, positives, *args, **kw):
        built.update(state=state, rows=rows, positives=positives)
        return real_build(state, rows, positives, *args, **kw)

    monkeypatch.setattr(recsys.training, "train_model", spy_train)
    monkeypatch.setattr(RT, "build_examples", spy_build)
    feats = selected(config.ranker)
    ex = RT.return_visit_examples(
        users, items, events, pd.Timestamp(cut), pd.Timestamp(since), feats, config, taxonomy, None,
        np.random.default_rng(0), 0,
    )
    before = events[events[C.TIMESTAMP] < cut]
    visit = before[RT.return_visits(before, since)]
    assert len(visit) and len(ex.groups) > 0
    # the model behind the features was trained on the log before the cut minus every visit
    (seen_events,) = trained_on
    key = [C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP]
    overlap = seen_events[key].merge(visit[key], how="inner")
    assert overlap.empty
    assert len(seen_events) == len(before) - len(visit)
    # every label is a positive of the user's held-out visit, and each query is a warm user
    state, rows, positives = built["state"], built["rows"], built["positives"]
    user_ids = np.asarray(state.user_ids).astype(str)
    item_ids = np.asarray(state.catalog.item_ids[: state.catalog.n_bundle]).astype(str)
    wanted = set(
        zip(*visit.loc[visit[C.EVENT_TYPE].isin(C.EVENT_TYPES_POSITIVE), [C.USER_ID, C.ITEM_ID]].T.to_numpy())
    )
    got = positives.tocoo()
    assert {(user_ids[u], item_ids[i]) for u, i in zip(got.row, got.col)} == wanted
    assert set(user_ids[rows]) == {u for u, _ in wanted}
    assert ex.warm.all()
    assert set(ex.users.tolist()) <= set(rows.tolist())


def test_fit_ranker_adds_the_return_visit_queries_only_when_asked(ratings_world):
    users, items, events, taxonomy = ratings_world
    base = EngineConfig()
    reports = {}
    for on in (False, True):
        config = dataclasses.replace(base, ranker=dataclasses.replace(base.ranker, return_visits=on, min_label_users=2))
        _, reports[on] = RT.fit_ranker(users, items, events, config=config, taxonomy=taxonomy)
    assert reports[False]["return_visit_queries"] == 0
    added = reports[True]["return_visit_queries"]
    assert added > 0
    assert reports[True]["queries"] == reports[False]["queries"] + added
    assert reports[True]["warm_queries"] == reports[False]["warm_queries"] + added
    assert "return_visits" in reports[True]["timings_s"]


def test_a_log_with_impressions_adds_no_return_visit_queries():
    users, items, events, _ = make_world(n_users=120, n_items=40, days=30, seed=5)
    taxonomy = parse_taxonomy(TAXONOMY_TOML)
    clean = validate(tables=(users, items, events), taxonomy=taxonomy, end=END)
    base = EngineConfig()
    config = dataclasses.replace(base, ranker=dataclasses.replace(base.ranker, return_visits=True, min_label_users=2))
    _, report = RT.fit_ranker(clean.users, clean.items, clean.events, config=config, taxonomy=taxonomy)
    # impressions say what a user engages with when shown: the return visits are for ratings logs
    assert report["examples_from"] == "impressions"
    assert report["return_visit_queries"] == 0
    assert RT.return_visits(clean.events[clean.events[C.TIMESTAMP] < pd.Timestamp(report["cuts"][0])]).any()
