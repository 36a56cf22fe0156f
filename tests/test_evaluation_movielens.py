"""The MovieLens converter: header-less files, column mapping, a valid taxonomy, safe output."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys.config import RankingConfig
from recsys.evaluation.movielens import MANIFEST_FILE, convert_movielens, genre_code, read_ratings
from recsys.exceptions import SchemaError
from recsys.schema import validate
from recsys.taxonomy import load_taxonomy

# as in ../shared/data/ml-latest-small: no header row, a quoted title with a comma
RATINGS = "1,10,4.0,964982703\n1,20,0.5,964981247\n2,10,3.5,1445714835\n2,30,5.0,1445714900\n3,99,2.0,1445715000\n"
MOVIES = (
    '10,"American President, The (1995)",Comedy|Drama|Romance\n'
    "20,Blade Runner (1982),Action|Sci-Fi|Thriller|Film-Noir\n"
    "30,Some Film (2010),(no genres listed)\n"
    "40,Never Rated (1999),Children|Children\n"
)


def _source(tmp_path, header: bool = False):
    src = tmp_path / "ml"
    src.mkdir()
    r, m = RATINGS, MOVIES
    if header:
        r, m = "userId,movieId,rating,timestamp\n" + r, "movieId,title,genres\n" + m
    (src / "ratings.csv").write_text(r, encoding="utf-8")
    (src / "movies.csv").write_text(m, encoding="utf-8")
    return src


@pytest.mark.parametrize(
    "name, code",
    [("Sci-Fi", "sci_fi"), ("Film-Noir", "film_noir"), ("(no genres listed)", "no_genres"), ("IMAX", "imax"),
     ("Children's", "children_s"), ("Drama", "drama")],
)
def test_genre_codes_are_snake_case(name, code):
    assert genre_code(name) == code


@pytest.mark.parametrize("header", [False, True])
def test_conversion_maps_every_column(tmp_path, header):
    out = convert_movielens(_source(tmp_path, header), tmp_path / "data")
    assert (out.users, out.items, out.events) == (3, 4, 5)  # the first row is data, not a header, when header=False
    users = pd.read_parquet(out.folder / "users.parquet")
    items = pd.read_parquet(out.folder / "items.parquet")
    events = pd.read_parquet(out.folder / "events.parquet")
    assert users.to_dict("list") == {"user_id": ["1", "2", "3"], "group": ["viewer"] * 3, "region": ["online"] * 3}
    assert items["title"].tolist()[0] == "American President, The (1995)"
    assert [list(t) for t in items["topics"]] == [
        ["comedy", "drama", "romance"], ["action", "sci_fi", "thriller", "film_noir"], ["no_genres"], ["children"]
    ]
    assert set(events["event_type"]) == {"click"}  # every rating, whatever its stars
    assert events["user_id"].tolist() == ["1", "1", "2", "2", "3"]
    assert events["item_id"].tolist() == ["10", "20", "10", "30", "99"]
    assert events["timestamp"].iloc[0] == pd.Timestamp("2000-07-30T18:45:03Z")  # Unix seconds, UTC
    assert str(events["timestamp"].dtype) == "datetime64[us, UTC]"
    # the taxonomy written beside the data is valid and holds exactly the genres
    tax = load_taxonomy(out.taxonomy)
    assert set(tax.topics) == set(out.topics) == {
        "action", "children", "comedy", "drama", "film_noir", "no_genres", "romance", "sci_fi", "thriller"
    }
    assert tax.timezone == "UTC" and tuple(tax.groups) == ("viewer",) and tuple(tax.regions) == ("online",)
    # the contract's validator takes it as it is: only the rating of an unknown movie is quarantined
    result = validate(data=out.folder, taxonomy=tax, end="2020-01-01T00:00:00Z")
    assert result.counts() == {"unknown item": 1}
    assert len(result.events) == 4 and len(result.items) == 4


def test_output_folder_safety_and_bad_input(tmp_path):
    src = _source(tmp_path)
    other = tmp_path / "someone_elses"
    other.mkdir()
    (other / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(SchemaError, match="was not written by the MovieLens converter"):
        convert_movielens(src, other)
    assert (other / "notes.txt").read_text(encoding="utf-8") == "keep me"
    out = convert_movielens(src, tmp_path / "data")
    assert json.loads((out.folder / MANIFEST_FILE).read_text(encoding="utf-8"))["events"] == 5
    assert convert_movielens(src, tmp_path / "data").events == 5  # its own folder is replaced
    with pytest.raises(SchemaError, match="ratings.csv: file not found"):
        convert_movielens(tmp_path / "nowhere", tmp_path / "data2")
    (src / "ratings.csv").write_text("1,10,4.0,yesterday\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="row 1: timestamp='yesterday' is not a number"):
        read_ratings(src / "ratings.csv")


def test_quality_benchmark_end_to_end_on_a_small_log(tmp_path, capsys):
    """benchmarks/bench_quality.py on a MovieLens-shaped log made from the evaluation world."""
    import importlib.util
    from pathlib import Path

    from evaluation_world import make_world

    _, items, events, _ = make_world(n_users=120, n_items=40, seed=3)
    src = tmp_path / "ml"
    src.mkdir()
    pos = events[events["event_type"] != "impression"]
    ratings = pd.DataFrame(
        {
            "u": pos["user_id"].str[1:].astype(int),
            "m": pos["item_id"].str[1:].astype(int),
            "r": 4.0,
            "t": (pos["timestamp"] - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1),
        }
    )
    ratings.to_csv(src / "ratings.csv", header=False, index=False)
    pd.DataFrame({"m": items["item_id"].str[1:].astype(int), "title": items["title"], "g": "Drama|Sci-Fi"}).to_csv(
        src / "movies.csv", header=False, index=False
    )
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "out"
    config = tmp_path / "fast.toml"
    # the script's wiring is under test, not the ranker: the cheapest engine that runs end to end
    fast = "[collaborative]\niterations = 3\n"
    if hasattr(RankingConfig(), "ranker"):
        fast += '[ranking]\nranker = "linear"\n'
    config.write_text(fast, encoding="utf-8")
    code = bench.main(["--data", str(src), "--out", str(out), "--splits", "0.7", "--tune-models", "1",
                       "--tune-blends", "2", "--bootstrap", "50", "--config", str(config)])
    assert code == 0
    text = capsys.readouterr().out
    assert text.count("### Split at quantile") == 1
    assert "| **engine** |" in text and "| recent_popular |" in text
    assert "| all (n=" in text and "| cold (n=" in text and "engine − it [95% CI]" in text
    summary = json.loads((out / "quality.json").read_text(encoding="utf-8"))
    assert set(summary["splits"]) == {"0.7"}
    for split in summary["splits"].values():
        assert set(split["policies"]["engine"]) == {"all", "warm", "cold"}
        assert split["engine_minus_best_baseline"]["all"]["baseline"] != "engine"
        assert split["tuning"]["validation_scores"]["engine"]["ndcg@10"] >= 0
    assert (out / "eval-0.7" / "report.html").is_file() and (out / "quality.md").is_file()
    assert bench.main(["--data", str(src), "--out", str(out), "--splits", "x"]) == 2
