"""Tests of recsys.training.content: tokenization, ContentEmbedder fit/transform/save/load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys.bundle import read_part, write_part
from recsys.config import ContentConfig
from recsys.training.content import ContentEmbedder, load_stopwords, tokenize
from recsys.exceptions import ArtifactError, ConfigError, NotFittedError, SchemaError, UnknownCodeError
from recsys.taxonomy import load_taxonomy

# the files an embedder writes into its part of a bundle
META_FILE, VOCAB_FILE, IDF_FILE, COMPONENTS_FILE = "content.json", "vocabulary.json", "idf.npy", "components.npy"
STOPWORDS_FILE = "stopwords.txt"

# (title, summary, tags, topics, format); rows 0/1 and 2/3 are the same story reworded,
# row 4 shares topic and format with 0/1 but is another story
ROWS = [
    ("暴雨蓝色预警：市民注意防范城市内涝", "今天夜间有暴雨，低洼地区注意积水，减少外出。",
     ["暴雨", "内涝"], ["weather_climate"], "article"),
    ("气象台发布暴雨预警，提醒市民防范内涝", "夜间暴雨，低洼路段可能积水，请减少外出。",
     ["暴雨", "预警"], ["weather_climate"], "article"),
    ("春耕前拖拉机检修要点", "农机手在春耕之前要检修拖拉机的发动机和刹车。",
     ["农机", "拖拉机"], ["farm_machinery"], "video"),
    ("拖拉机春耕检修指南", "春耕开始前，农机手应检查拖拉机发动机、刹车和轮胎。",
     ["拖拉机", "春耕"], ["farm_machinery"], "video"),
    ("台风登陆前后如何做好防风准备", "台风来临时要加固门窗，远离广告牌和大树。",
     ["台风"], ["weather_climate"], "article"),
    ("青少年机器人大赛在海港区举行", "全市中小学生组队参加机器人编程比赛。",
     ["机器人", "科创"], ["robotics_youth"], "event"),
    ("老年人如何识别保健品骗局", "保健品不能代替药品，购买前要查看批准文号。",
     ["保健品", "防骗"], ["health_literacy", "food_drug_safety"], "article"),
    ("地震来了怎么办", "地震时躲在坚固的桌子下面，保护头部。",
     ["地震", "避险"], ["earthquake", "disaster_prevention"], "short_video"),
    ("智能手机网上缴费教程", "教农村老人用手机缴纳电费和医保。",
     ["智能手机", "缴费"], ["smartphone_skills"], "video"),
    ("海水养殖病害防治", "夏季高温时扇贝养殖要注意病害防治和水质监测。",
     ["养殖", "扇贝"], ["modern_agriculture", "ocean_coast"], "audio"),
]

CONFIG = ContentConfig(svd_components=8, seed=3)


def make_items(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(len(rows))],
            "title": [r[0] for r in rows],
            "summary": [r[1] for r in rows],
            "tags": [r[2] for r in rows],
            "topics": [r[3] for r in rows],
            "format": [r[4] for r in rows],
        }
    )


@pytest.fixture(scope="module")
def items() -> pd.DataFrame:
    return make_items()


@pytest.fixture(scope="module")
def fitted(items) -> ContentEmbedder:
    return ContentEmbedder(config=CONFIG, taxonomy=load_taxonomy()).fit(items)


def test_tokenize_drops_stop_words_punctuation_and_numbers():
    words = tokenize("2024年，我们的暴雨预警和地震 Safety 知识！")
    assert "暴雨" in words and "预警" in words and "地震" in words
    assert "safety" in words  # Latin letters are lower-cased
    for dropped in ("我们", "的", "和", "，", "！", "2024"):
        assert dropped not in words
    assert "的" in load_stopwords()


def test_custom_stopwords_file(tmp_path, items):
    path = tmp_path / "stop.txt"
    path.write_text("# comment\n暴雨\n", encoding="utf-8")
    stop = load_stopwords(path)
    assert stop == frozenset({"暴雨"})
    assert "暴雨" not in tokenize("暴雨预警", stop)
    embedder = ContentEmbedder(config=ContentConfig(svd_components=4, stopwords=str(path))).fit(items)
    assert "暴雨" not in embedder.vectorizer_.vocabulary_
    assert "的" in embedder.vectorizer_.vocabulary_  # the shipped list is replaced, not extended


def test_shape_dtype_and_unit_rows(fitted, items):
    vectors = fitted.transform(items)
    taxonomy = load_taxonomy()
    assert fitted.dim_ == 8 + len(taxonomy.topics) + len(taxonomy.formats)
    assert vectors.shape == (len(items), fitted.dim_)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert fitted.topic_codes_ == taxonomy.codes("topic")
    assert fitted.format_codes_ == taxonomy.codes("format")


def test_topic_and_format_blocks_follow_taxonomy_order(fitted, items):
    vectors = fitted.transform(items)
    topic_block = vectors[:, 8 : 8 + len(fitted.topic_codes_)]
    format_block = vectors[:, 8 + len(fitted.topic_codes_) :]
    earthquake = fitted.topic_codes_.index("earthquake")
    prevention = fitted.topic_codes_.index("disaster_prevention")
    row = 7  # topics earthquake + disaster_prevention, format short_video
    assert set(np.flatnonzero(topic_block[row])) == {earthquake, prevention}
    assert topic_block[row, earthquake] == pytest.approx(topic_block[row, prevention])
    assert np.flatnonzero(format_block[row]).tolist() == [fitted.format_codes_.index("short_video")]


@pytest.mark.parametrize("components", [8, 64])  # compressed, and full rank (capped at 10 items)
def test_near_duplicates_are_closer_than_unrelated(items, components):
    vectors = ContentEmbedder(config=ContentConfig(svd_components=components)).fit_transform(items)
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    for a, b in ((0, 1), (2, 3)):
        assert sim[a].argmax() == b and sim[b].argmax() == a
    # the reworded storm warning is closer than the typhoon item of the same topic and format
    assert sim[0, 1] > sim[0, 4] + 0.1
    assert sim[0, 1] > 0.5 and sim[2, 3] > 0.5


def test_same_items_same_vectors(items):
    a = ContentEmbedder(config=CONFIG).fit_transform(items)
    b = ContentEmbedder(config=CONFIG).fit_transform(items)
    np.testing.assert_array_equal(a, b)


def test_unseen_words_and_new_items(fitted):
    new = make_items(
        [
            ("暴雨内涝预警", "", [], ["weather_climate"], "article"),
            ("完全陌生的词汇组合", "", [], ["astronomy_space"], "ebook"),
        ]
    )
    vectors = fitted.transform(new)
    assert vectors.shape == (2, fitted.dim_)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # no known word: the text block is zero, topic and format still place the item
    assert not vectors[1, :8].any()


def test_optional_columns_and_csv_style_lists(fitted):
    frame = pd.DataFrame(
        {"title": ["地震避险", "暴雨预警"], "topics": ["earthquake|disaster_prevention", None]}
    )
    vectors = fitted.transform(frame)
    article = 8 + len(fitted.topic_codes_) + fitted.format_codes_.index("article")
    assert (vectors[:, article] > 0).all()  # format defaults to article
    topics = vectors[0, 8 : 8 + len(fitted.topic_codes_)]
    assert np.count_nonzero(topics) == 2


def test_save_load_identical_vectors(fitted, items, tmp_path):
    folder = write_part(tmp_path / "content", fitted)
    assert {p.name for p in folder.iterdir()} == {META_FILE, VOCAB_FILE, IDF_FILE, COMPONENTS_FILE, STOPWORDS_FILE,
                                                  "part.json"}
    loaded = read_part(folder, ContentEmbedder)
    np.testing.assert_array_equal(loaded.transform(items), fitted.transform(items))
    new = make_items(
        [("台风暴雨双重预警", "沿海地区注意防范", ["台风"], ["weather_climate", "ocean_coast"], "audio")]
    )
    np.testing.assert_array_equal(loaded.transform(new), fitted.transform(new))
    assert loaded.dim_ == fitted.dim_
    assert loaded.vectorizer_.vocabulary_ == fitted.vectorizer_.vocabulary_


def test_a_loaded_embedder_saved_again_unused_needs_no_vectorizer(fitted, items, tmp_path):
    loaded = read_part(write_part(tmp_path / "content", fitted), ContentEmbedder)
    again = write_part(tmp_path / "again", loaded)
    # saved as loaded: the vectorizer (scikit-learn) was never built, and the files are the same
    assert "_vectorizer" not in loaded.__dict__
    for name in (VOCAB_FILE, IDF_FILE, COMPONENTS_FILE, STOPWORDS_FILE, META_FILE):
        assert (again / name).read_bytes() == (tmp_path / "content" / name).read_bytes(), name
    np.testing.assert_array_equal(read_part(again, ContentEmbedder).transform(items), fitted.transform(items))
    assert loaded.vectorizer_.vocabulary_ == fitted.vectorizer_.vocabulary_  # built on first use


def test_small_catalogue_caps_components(items):
    embedder = ContentEmbedder(config=ContentConfig(svd_components=50)).fit(items.head(3))
    assert embedder.components_.shape[0] == 3
    assert embedder.transform(items).shape[1] == 50 + len(embedder.topic_codes_) + len(embedder.format_codes_)


def test_input_errors(items, fitted):
    with pytest.raises(SchemaError, match="lacks required column 'title'"):
        fitted.transform(items.drop(columns=["title"]))
    with pytest.raises(SchemaError, match="lacks required column 'topics'"):
        ContentEmbedder(config=CONFIG).fit(items.drop(columns=["topics"]))
    with pytest.raises(SchemaError, match="must be a pandas DataFrame"):
        fitted.transform([{"title": "x"}])
    with pytest.raises(SchemaError, match="items table is empty"):
        ContentEmbedder(config=CONFIG).fit(items.head(0))
    bad_topic = make_items([("标题", "", [], ["weather"], "article")])
    message = r"unknown topic 'weather' in column 'topics' \(row 0\); valid: .*weather_climate"
    with pytest.raises(UnknownCodeError, match=message):
        fitted.transform(bad_topic)
    with pytest.raises(UnknownCodeError, match="unknown topic 'weather'"):
        ContentEmbedder(config=CONFIG).fit(pd.concat([items, bad_topic]))
    bad_format = make_items([("标题", "", [], ["earthquake"], "podcast")])
    with pytest.raises(UnknownCodeError, match=r"unknown format 'podcast' in column 'format'.*valid: article"):
        fitted.transform(bad_format)


@pytest.mark.parametrize(
    "config, match",
    [
        (ContentConfig(svd_components=0), r"\[content\] svd_components = 0 is out of range; valid: 1..1024"),
        (ContentConfig(min_df=0), r"\[content\] min_df = 0 is out of range"),
        (ContentConfig(topic_weight=-1.0), r"\[content\] topic_weight = -1.0 is out of range; valid: 0..100"),
        (ContentConfig(seed=-1), r"\[content\] seed = -1 is out of range"),
        (ContentConfig(min_df=100), r"no words left to embed \(min_df=100"),
        (
            ContentConfig(stopwords="/nonexistent/stop.txt"),
            "ContentConfig.stopwords: cannot read '/nonexistent/stop.txt'",
        ),
    ],
)
def test_config_errors(items, config, match):
    with pytest.raises(ConfigError, match=match):
        ContentEmbedder(config=config).fit(items)


def test_not_fitted(items, tmp_path):
    with pytest.raises(NotFittedError, match="ContentEmbedder is not fitted"):
        ContentEmbedder().transform(items)
    with pytest.raises(NotFittedError, match="nothing to save"):
        write_part(tmp_path / "c", ContentEmbedder())


@pytest.mark.parametrize("name", [META_FILE, VOCAB_FILE, IDF_FILE, COMPONENTS_FILE, STOPWORDS_FILE])
def test_load_missing_file_names_it(fitted, tmp_path, name):
    folder = write_part(tmp_path / "content", fitted)
    (folder / name).unlink()
    with pytest.raises(ArtifactError, match=f"{name}: missing"):
        read_part(folder, ContentEmbedder)
    with pytest.raises(ArtifactError, match=f"{name}: missing"):
        read_part(folder, ContentEmbedder, verify=False)


@pytest.mark.parametrize("name", [VOCAB_FILE, IDF_FILE, COMPONENTS_FILE, STOPWORDS_FILE])
def test_load_corrupted_file_names_it(fitted, tmp_path, name):
    folder = write_part(tmp_path / "content", fitted)
    raw = bytearray((folder / name).read_bytes())
    raw[-2] ^= 0x01
    (folder / name).write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match=f"{name}: checksum mismatch"):
        read_part(folder, ContentEmbedder)


def test_load_bad_metadata(fitted, tmp_path):
    folder = write_part(tmp_path / "content", fitted)
    (folder / META_FILE).write_text("[1, 2", encoding="utf-8")
    with pytest.raises(ArtifactError, match="content.json: checksum mismatch"):
        read_part(folder, ContentEmbedder)
    with pytest.raises(ArtifactError, match="content.json: unreadable"):
        read_part(folder, ContentEmbedder, verify=False)
    (folder / META_FILE).write_text(json.dumps({"format_version": 2}), encoding="utf-8")
    with pytest.raises(ArtifactError, match="content.json: incomplete metadata"):
        read_part(folder, ContentEmbedder, verify=False)


# ---- text caps (issue 10, item 13: one 1M-character title hung training) ----------------
def test_text_is_capped_before_tokenising(items, fitted):
    import time

    from recsys.columns import MAX_SUMMARY_CHARS, MAX_TAG_CHARS, MAX_TAGS, MAX_TITLE_CHARS

    huge = items.copy()
    # rare CJK characters are jieba's slowest case (~30 us each uncapped: 1M would take ~30 s)
    rng = np.random.default_rng(0)
    rare = "".join(chr(c) for c in rng.integers(0x4E00, 0x9FA5, 1_000_000))
    huge.loc[0, "title"] = rare
    huge.at[0, "summary"] = rare
    huge.at[0, "tags"] = [rare[:5_000]] * 10_000
    start = time.perf_counter()
    vectors = ContentEmbedder(config=CONFIG, taxonomy=load_taxonomy()).fit(huge).transform(huge)
    elapsed = time.perf_counter() - start
    assert elapsed < 5, f"fit + transform of a 1M-character title took {elapsed:.1f} s"
    assert np.isfinite(vectors).all()
    # what is embedded is exactly the capped text: cutting it first gives the same vectors
    cut = huge.copy()
    cut.loc[0, "title"] = rare[:MAX_TITLE_CHARS]
    cut.at[0, "summary"] = rare[:MAX_SUMMARY_CHARS]
    cut.at[0, "tags"] = [rare[:MAX_TAG_CHARS]] * MAX_TAGS
    np.testing.assert_array_equal(fitted.transform(cut), fitted.transform(huge))


def test_text_cap_is_exact(fitted):
    from recsys.columns import MAX_TITLE_CHARS

    def text_norm(title: str) -> float:
        frame = pd.DataFrame({"title": [title], "topics": [["weather_climate"]]})
        return float(np.linalg.norm(fitted.transform(frame)[0, :8]))

    assert text_norm(" " * (MAX_TITLE_CHARS - 2) + "暴雨") > 0  # the last two characters inside the cap
    assert text_norm(" " * (MAX_TITLE_CHARS - 1) + "暴雨") == 0  # cut to "暴": not a known word
    assert text_norm(" " * MAX_TITLE_CHARS + "暴雨") == 0
