"""Per-user lookups as arrays: the sorted-id search answers what the per-user dict answered.

The oracle is a plain ``dict`` of id -> row, the structure serving held before: every
lookup (known, unknown, prefixes of known ids, non-ASCII ids) must agree with it, and a
loaded bundle must serve users without reading its users table into Python objects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys import Recommender
from recsys.exceptions import ArtifactError, ConfigError, SchemaError, UnknownCodeError
from recsys.idmap import SortedIds
from recsys.training.model import TrainedModel

from ranking_world import hand_model, items_frame, users_frame

IDS = ["u10", "u1", "u2", "用户甲", "u100", "b", "u1 ", "a" * 40]


def _oracle(ids: list[str]) -> dict[str, int]:
    return {u: i for i, u in enumerate(ids)}


def test_lookups_agree_with_a_dict_on_known_unknown_and_prefix_ids():
    lookup = SortedIds.from_ids(IDS)
    oracle = _oracle(IDS)
    asked = IDS + ["u", "u0", "u1000", "用户", "用户甲乙", "", "a" * 41, "a" * 39, "U1", "u1  "]
    assert lookup.positions(asked).tolist() == [oracle.get(u, -1) for u in asked]
    for u in asked:
        assert (u in lookup) == (u in oracle)
        assert lookup.get(u) == oracle.get(u)
        assert lookup.get(u, -1) == oracle.get(u, -1)
    assert lookup["用户甲"] == 3
    with pytest.raises(KeyError):
        lookup["u0"]
    assert lookup.positions([]).shape == (0,)
    assert lookup.get(17) is None and 17 not in lookup  # not a string: never found
    assert lookup.ids_at([3, 0, 7]).tolist() == ["用户甲", "u10", "a" * 40]


def test_random_ids_agree_with_a_dict():
    rng = np.random.default_rng(5)
    ids = list(dict.fromkeys(f"{rng.choice(['u', 'v', '号'])}{rng.integers(0, 10**6)}" for _ in range(3000)))
    lookup, oracle = SortedIds.from_ids(ids), _oracle(ids)
    asked = list(rng.choice(ids, 500)) + [f"u{rng.integers(10**6, 10**7)}" for _ in range(100)]
    rng.shuffle(asked)
    assert lookup.positions(np.asarray(asked, dtype=object)).tolist() == [oracle.get(u, -1) for u in asked]


@pytest.mark.parametrize(
    ("ids", "message"),
    [(["u1", "u2", "u1"], "'u1' repeats"), (["u1", 7], "ids must be strings, got 7"), (["u1\x00"], "NUL")],
)
def test_ids_a_lookup_cannot_hold_are_refused(ids, message):
    with pytest.raises(SchemaError, match=message):
        SortedIds.from_ids(ids)


def _model():
    rng = np.random.default_rng(4)
    users = users_frame(["farmer", "youth", "farmer", "resident"], ["qinglong", "haigang", "haigang", "qinglong"])
    users["user_id"] = ["u0", "用户一", "u00", "u000"]
    items = items_frame(12, topics=[[("earthquake", "ocean_coast", "ecology")[j % 3]] for j in range(12)])
    return hand_model(users, items, rng.normal(size=(4, 6)), rng.normal(size=(12, 6)))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return _model().save(tmp_path_factory.mktemp("models"), version="20260601T000000Z")


def test_a_loaded_bundle_serves_users_without_reading_its_users_table(bundle):
    rec = Recommender.load(bundle)
    model = rec.state.model
    assert "users" not in model.__dict__  # nothing per user was read into Python objects
    # plain views over the memory maps (a memmap's own indexing pays Python overhead per probe)
    assert all(isinstance(getattr(model.user_lookup, "_" + name).base, np.memmap) for name in ("ids", "sorted", "order"))
    table = pd.read_parquet(bundle / "users.parquet")
    oracle = _oracle(table["user_id"].tolist())
    asked = [*oracle, "u", "u0000", "用户"]
    assert rec.state.user_pos.positions(asked).tolist() == [oracle.get(u, -1) for u in asked]
    codes = pd.Categorical(table["group"], categories=list(model.taxonomy.groups)).codes
    assert rec.state.user_group.tolist() == codes.tolist()
    # read from the Parquet column alone (dictionary-encoded); a value outside the codes is -1
    assert model.user_codes("group", ("youth", "resident")).tolist() == [-1, 0, -1, 1]
    assert "users" not in model.__dict__
    assert rec.state.user_ids.tolist() == table["user_id"].tolist()
    # the lists are those of the model in memory (whose lookup is built from its users table)
    in_memory = Recommender.from_model(_model())
    pd.testing.assert_frame_equal(rec.recommend_many(list(oracle), k=5), in_memory.recommend_many(list(oracle), k=5))
    # the table is still there for whoever reads it
    pd.testing.assert_frame_equal(model.users, table)


def test_unknown_users_are_handled_as_before(bundle):
    rec = Recommender.load(bundle)
    with pytest.raises(ConfigError, match=r"unknown user 'u0000': a user the model has not seen needs group and region"):
        rec.recommend("u0000", k=3)
    cold = rec.recommend("u0000", k=3, group="youth", region="haigang")
    assert len(cold) == 3
    # a known user given only a sub-group: it is checked against their stored group (youth)
    assert len(rec.recommend("用户一", k=3, sub_group="pupil")) == 3
    with pytest.raises(UnknownCodeError, match="sub_group 'rural_woman' is not in group 'youth'"):
        rec.recommend("用户一", k=3, sub_group="rural_woman")


def test_a_lookup_that_does_not_fit_the_users_is_refused(bundle, tmp_path):
    import shutil

    copy = shutil.copytree(bundle, tmp_path / "20260601T000000Z")
    np.save(copy / "user_lookup" / "order.npy", np.arange(3, dtype=np.int64))
    with pytest.raises(ArtifactError, match=r"order\.npy: shapes .* differ"):
        TrainedModel.load(copy, verify=False)
