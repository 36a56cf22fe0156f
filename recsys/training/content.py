"""Content embedding: Chinese text plus topic and format -> dense item vectors.

An item's title, summary and tags are cut into words with jieba (its fixed
default dictionary, one tokenizer initialised once per process), stop words
and tokens without a letter or Chinese character are dropped, and the words go
through TF-IDF and TruncatedSVD (a scikit-learn ``Pipeline`` at fit time). The
text vector is joined by a multi-hot topic block and a one-hot format block in
the taxonomy's code order, and the row is L2-normalised::

    [ text_svd / |text_svd| , topic_weight * topics / |topics| , format_weight * format ]

so two rewordings of one story (shared key words, same topics and format) end
up close, and items with nothing in common score near 0.

Text is capped before tokenising: the first ``MAX_TITLE_CHARS`` (1,000)
characters of a title, ``MAX_SUMMARY_CHARS`` (5,000) of a summary, the first
``MAX_TAGS`` (50) tags of at most ``MAX_TAG_CHARS`` (100) characters each
(constants defined once in ``recsys.columns``); the rest is ignored. jieba costs up to ~30 us a character, so one 1M-character title used to
stall training; the caps sit far above real texts (titles of tens of
characters, summaries of a few hundred) and bound one item to ~0.2 s.
``recsys validate`` counts the rows over a cap (see ``recsys.columns``).

Persistence has no pickle: the vocabulary (JSON), the IDF weights and the SVD
components (``.npy``) and the stop words are written out, and :meth:`load`
rebuilds a ``TfidfVectorizer`` from the vocabulary and IDF and applies the SVD
as a plain ``components_`` matrix product -- the same code path ``transform``
uses after ``fit``, so a loaded embedder gives the same vectors, and cold-start
items added the same night can be embedded without refitting.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import jieba
import numpy as np
import pandas as pd

from recsys.columns import (
    FORMAT,
    MAX_SUMMARY_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TITLE_CHARS,
    SUMMARY,
    TAGS,
    TITLE,
    TOPICS,
)
from recsys.config import ContentConfig, check_section
from recsys.exceptions import ConfigError, NotFittedError, SchemaError, UnknownCodeError
from recsys.seeds import check_random_state
from recsys.taxonomy import Taxonomy, load_taxonomy

if TYPE_CHECKING:
    from recsys.bundle import BundleReader, BundleWriter

#: names of the embedder's files in its part of the bundle (recsys.bundle adds the suffixes)
META_NAME = "content"
VOCAB_NAME = "vocabulary"
IDF_NAME = "idf"
COMPONENTS_NAME = "components"
STOPWORDS_FILE = "stopwords.txt"
#: 2: saved through the bundle protocol (no checksums of its own: the bundle checks them once)
FORMAT_VERSION = 2
DEFAULT_FORMAT = "article"

# A token is kept only if it has a Latin letter or a CJK character: this drops
# punctuation, whitespace and bare numbers (dates, counts) in one rule.
_WORDLIKE = re.compile(r"[A-Za-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

_TOKENIZER: jieba.Tokenizer | None = None
_TOKENIZER_LOCK = threading.Lock()


def _tokenizer() -> jieba.Tokenizer:
    """The process's jieba tokenizer: default dictionary, loaded once, quietly.

    A private ``jieba.Tokenizer`` rather than the global one, so words another
    module adds to jieba's global dictionary cannot change our vectors.
    """
    global _TOKENIZER
    with _TOKENIZER_LOCK:
        if _TOKENIZER is None:
            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            _TOKENIZER = tokenizer
    return _TOKENIZER


@lru_cache(maxsize=8)
def _read_stopwords(path: str) -> frozenset[str]:
    if path == "":
        text = resources.files("recsys").joinpath("data/stopwords_zh.txt").read_text(encoding="utf-8")
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"ContentConfig.stopwords: cannot read {path!r} ({exc})") from None
    return _parse_stopwords(text)


def _parse_stopwords(text: str) -> frozenset[str]:
    words = (line.strip().lower() for line in text.splitlines())
    return frozenset(w for w in words if w and not w.startswith("#"))


def load_stopwords(path: str | Path | None = None) -> frozenset[str]:
    """Return the stop words of ``path`` (one a line, ``#`` comments).

    ``None`` or ``""`` gives the list shipped in ``recsys/data/stopwords_zh.txt``.

    Raises
    ------
    ConfigError
        If the file cannot be read.
    """
    return _read_stopwords("" if path is None else str(path))


def tokenize(text: str, stopwords: frozenset[str] | None = None) -> list[str]:
    """Cut ``text`` into words with jieba; drop stop words and non-words.

    Parameters
    ----------
    text : str
        Chinese (or mixed) text; Latin letters are lower-cased.
    stopwords : frozenset of str, optional
        Words to drop; the shipped list if omitted.

    Returns
    -------
    list of str
        The kept words, in text order.
    """
    stop = load_stopwords() if stopwords is None else stopwords
    # HMM on: it joins unknown words (place names, new terms) for ~10% more time
    words = _tokenizer().lcut(text, HMM=True)
    out = []
    for word in words:
        word = word.strip().lower()
        if word and word not in stop and _WORDLIKE.search(word):
            out.append(word)
    return out


# ---- reading the items table --------------------------------------------
def _as_list(value: Any) -> list[str]:
    """A multi-valued cell as a list of strings (CSV ``a|b`` strings too)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.split("|") if v]
    if isinstance(value, float) and np.isnan(value):
        return []
    return [str(v) for v in value]


def _as_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _item_columns(items: pd.DataFrame) -> dict[str, list]:
    """Pull the columns the embedder reads; fill the optional ones."""
    if not isinstance(items, pd.DataFrame):
        raise SchemaError(f"items must be a pandas DataFrame, got {type(items).__name__}")
    for column in (TITLE, TOPICS):
        if column not in items.columns:
            raise SchemaError(f"items table lacks required column {column!r}")
    n = len(items)
    # Text is cut to its cap here, before any tokenising (see the module docstring).
    return {
        TITLE: [_as_text(v)[:MAX_TITLE_CHARS] for v in items[TITLE]],
        SUMMARY: [_as_text(v)[:MAX_SUMMARY_CHARS] for v in items[SUMMARY]] if SUMMARY in items.columns else [""] * n,
        TAGS: [[t[:MAX_TAG_CHARS] for t in _as_list(v)[:MAX_TAGS]] for v in items[TAGS]]
        if TAGS in items.columns
        else [[] for _ in range(n)],
        TOPICS: [_as_list(v) for v in items[TOPICS]],
        FORMAT: [_as_text(v) or DEFAULT_FORMAT for v in items[FORMAT]]
        if FORMAT in items.columns
        else [DEFAULT_FORMAT] * n,
    }


def _documents(columns: dict[str, list], stopwords: frozenset[str]) -> list[list[str]]:
    """One token list per item: title twice (it is the most deliberate text),
    the summary, and each tag both whole and cut into words."""
    cache: dict[str, list[str]] = {}  # tags and titles repeat across a catalogue

    def cut(text: str) -> list[str]:
        if text not in cache:
            cache[text] = tokenize(text, stopwords)
        return cache[text]

    docs = []
    for title, summary, tags in zip(columns[TITLE], columns[SUMMARY], columns[TAGS]):
        title_words = cut(title)
        words = title_words + title_words + cut(summary)
        for tag in tags:
            whole = tag.strip().lower()
            if whole and whole not in stopwords and _WORDLIKE.search(whole):
                words.append(whole)
            words.extend(w for w in cut(tag) if w != whole)
        docs.append(words)
    return docs


def _identity(doc: list[str]) -> list[str]:
    """The TF-IDF analyzer: documents arrive already tokenized."""
    return doc


def _stored_vectorizer(vocabulary: list[str], idf: np.ndarray) -> Any:
    """A ``TfidfVectorizer`` with a stored vocabulary (terms in column order) and IDF weights."""
    # heavy: sklearn, imported when a loaded embedder first embeds an item
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(
        analyzer=_identity,
        vocabulary={term: i for i, term in enumerate(vocabulary)},
        sublinear_tf=True,
        dtype=np.float32,
    )
    # a fixed vocabulary needs a (dummy) fit to become usable; the real IDF
    # weights are then set through the public idf_ setter
    vectorizer.fit([vocabulary])
    vectorizer.idf_ = idf
    return vectorizer


def _code_block(
    values: Sequence[Iterable[str]], codes: Sequence[str], column: str, kind: str
) -> np.ndarray:
    """Multi-hot (n, len(codes)) float32 block, rows scaled to unit length."""
    position = {code: i for i, code in enumerate(codes)}
    block = np.zeros((len(values), len(codes)), dtype=np.float32)
    for row, row_values in enumerate(values):
        for value in row_values:
            if value not in position:
                raise UnknownCodeError(
                    f"unknown {kind} {value!r} in column {column!r} (row {row}); valid: {', '.join(codes)}"
                )
            block[row, position[value]] = 1.0
    return _l2(block)


def _l2(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class ContentEmbedder:
    """Item vectors from text, topics and format.

    Parameters
    ----------
    config : ContentConfig, optional
        SVD size, TF-IDF limits, block weights, stop-word file, seed; the
        defaults if omitted.
    taxonomy : Taxonomy, optional
        Fixes the order (and the valid codes) of the topic and format
        columns; the default taxonomy if omitted.

    Attributes
    ----------
    vectorizer_ : sklearn.feature_extraction.text.TfidfVectorizer
        Fitted on token lists (sublinear tf, L2-normalised rows).
    components_ : ndarray of float32, shape (c, V)
        SVD components, ``c <= config.svd_components`` (fewer when the
        vocabulary or the catalogue is smaller).
    topic_codes_, format_codes_ : tuple of str
        Column order of the topic and format blocks.
    stopwords_ : frozenset of str
    dim_ : int
        ``config.svd_components + len(topic_codes_) + len(format_codes_)``.
    """

    def __init__(self, *, config: ContentConfig | None = None, taxonomy: Taxonomy | None = None) -> None:
        self.config = config
        self.taxonomy = taxonomy

    @property
    def vectorizer_(self) -> Any:
        """The fitted TF-IDF vectorizer; a loaded embedder builds it on first use.

        A night whose catalogue did not change loads the embedder and saves it again without
        embedding an item: it then never imports scikit-learn (~1 s) nor builds the vectorizer.
        """
        found = self.__dict__.get("_vectorizer")
        if found is None and "_stored_vocabulary" in self.__dict__:
            found = self._vectorizer = _stored_vectorizer(self._stored_vocabulary, self._stored_idf)
        if found is None:
            raise AttributeError("vectorizer_")
        return found

    @vectorizer_.setter
    def vectorizer_(self, vectorizer: Any) -> None:
        self._vectorizer = vectorizer

    # ---- fitting -------------------------------------------------------
    def fit(self, items: pd.DataFrame) -> "ContentEmbedder":
        """Learn vocabulary, IDF and SVD from an items table.

        Parameters
        ----------
        items : pandas.DataFrame
            Columns per the data contract: ``title`` and ``topics`` required;
            ``summary``, ``tags`` and ``format`` (default ``article``) optional.

        Returns
        -------
        ContentEmbedder
            ``self``.

        Raises
        ------
        SchemaError
            If a required column is missing.
        UnknownCodeError
            If a topic or format is not in the taxonomy.
        ConfigError
            On a bad config value, or if no word survives ``min_df`` /
            ``max_features`` and the stop words.
        """
        self._fit(items)
        return self

    def fit_transform(self, items: pd.DataFrame) -> np.ndarray:
        """``fit(items).transform(items)``, tokenizing the items once."""
        columns, docs = self._fit(items)
        return self._embed(columns, docs)

    def _fit(self, items: pd.DataFrame) -> tuple[dict[str, list], list[list[str]]]:
        """Fit; return the item columns and token lists for reuse."""
        config = check_section(self.config if self.config is not None else ContentConfig(), ContentConfig)
        taxonomy = self.taxonomy if self.taxonomy is not None else load_taxonomy()
        columns = _item_columns(items)
        if not columns[TITLE]:
            raise SchemaError("items table is empty; the embedder needs at least one item to fit")
        self.topic_codes_ = taxonomy.codes("topic")
        self.format_codes_ = taxonomy.codes("format")
        # check codes before the slow part
        self._code_blocks(columns)
        self.stopwords_ = load_stopwords(config.stopwords)
        docs = _documents(columns, self.stopwords_)

        # sklearn wants an int seed; derive it through the one seed helper
        svd_seed = int(check_random_state(config.seed).integers(2**31 - 1))
        # heavy: sklearn, imported only to fit or embed (a loaded, unused embedder never needs it)
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import Pipeline

        pipeline = Pipeline(
            [
                (
                    "tfidf",
                    TfidfVectorizer(
                        analyzer=_identity,
                        min_df=config.min_df,
                        max_features=config.max_features,
                        sublinear_tf=True,
                        dtype=np.float32,
                    ),
                ),
                ("svd", TruncatedSVD(algorithm="randomized", random_state=svd_seed)),
            ]
        )
        # the steps are fitted one after the other (not pipeline.fit) because
        # TruncatedSVD cannot return more components than there are terms or
        # items, and the number of terms is known only after TF-IDF is fitted
        try:
            tfidf = pipeline.named_steps["tfidf"].fit_transform(docs)
        except ValueError as exc:
            raise ConfigError(
                f"no words left to embed (min_df={config.min_df}, max_features={config.max_features}, "
                f"{len(docs)} items): {exc}"
            ) from None
        pipeline.set_params(svd__n_components=min(config.svd_components, *tfidf.shape))
        pipeline.named_steps["svd"].fit(tfidf)
        self.config_ = config
        self.vectorizer_ = pipeline.named_steps["tfidf"]
        self.components_ = np.ascontiguousarray(pipeline.named_steps["svd"].components_, dtype=np.float32)
        self.dim_ = config.svd_components + len(self.topic_codes_) + len(self.format_codes_)
        return columns, docs

    # ---- transforming --------------------------------------------------
    def _code_blocks(self, columns: dict[str, list]) -> tuple[np.ndarray, np.ndarray]:
        topics = _code_block(columns[TOPICS], self.topic_codes_, TOPICS, "topic")
        formats = _code_block([[f] for f in columns[FORMAT]], self.format_codes_, FORMAT, "format")
        return topics, formats

    def transform(self, items: pd.DataFrame) -> np.ndarray:
        """Embed items (seen at fit time or new ones).

        Parameters
        ----------
        items : pandas.DataFrame
            Same columns as for :meth:`fit`.

        Returns
        -------
        ndarray of float32, shape (n, dim_)
            L2-normalised rows. Words unseen at fit time are ignored.

        Raises
        ------
        NotFittedError
            If neither ``fit`` nor ``load`` was called.
        SchemaError
            If a required column is missing.
        UnknownCodeError
            If a topic or format is not among the fitted codes.
        """
        if not hasattr(self, "components_"):
            raise NotFittedError("ContentEmbedder is not fitted; call fit(items) or ContentEmbedder.load(path)")
        columns = _item_columns(items)
        self._code_blocks(columns)  # check codes before the slow part
        return self._embed(columns, _documents(columns, self.stopwords_))

    def _embed(self, columns: dict[str, list], docs: list[list[str]]) -> np.ndarray:
        topics, formats = self._code_blocks(columns)
        tfidf = self.vectorizer_.transform(docs)
        text = np.zeros((len(columns[TITLE]), self.config_.svd_components), dtype=np.float32)
        text[:, : self.components_.shape[0]] = np.asarray(tfidf @ self.components_.T, dtype=np.float32)
        blocks = [
            _l2(text),
            np.float32(self.config_.topic_weight) * topics,
            np.float32(self.config_.format_weight) * formats,
        ]
        return _l2(np.hstack(blocks)).astype(np.float32, copy=False)

    # ---- persistence ---------------------------------------------------
    def save(self, writer: "BundleWriter") -> None:
        """Write the fitted state through a bundle writer (the component protocol, :mod:`recsys.bundle`).

        Parts: ``vocabulary`` (JSON, terms in column order), ``idf`` and
        ``components`` (arrays), ``stopwords.txt`` and ``content`` (JSON:
        config, code order, sizes, jieba version).

        Raises
        ------
        NotFittedError
            If the embedder is not fitted.
        """
        if not hasattr(self, "components_"):
            raise NotFittedError("ContentEmbedder is not fitted; nothing to save")
        if "_vectorizer" not in self.__dict__ and "_stored_vocabulary" in self.__dict__:
            vocabulary, idf = self._stored_vocabulary, self._stored_idf  # as loaded: the vectorizer is not needed
        else:
            vocabulary = sorted(self.vectorizer_.vocabulary_, key=self.vectorizer_.vocabulary_.__getitem__)
            idf = np.asarray(self.vectorizer_.idf_)
        writer.json(VOCAB_NAME, vocabulary)
        writer.array(IDF_NAME, idf)
        writer.array(COMPONENTS_NAME, self.components_)
        writer.text(STOPWORDS_FILE, "\n".join(sorted(self.stopwords_)) + "\n")
        writer.json(META_NAME, {
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(self.config_),
            "topic_codes": list(self.topic_codes_),
            "format_codes": list(self.format_codes_),
            "n_terms": len(vocabulary),
            "n_components": int(self.components_.shape[0]),
            "dim": self.dim_,
            "jieba_version": jieba.__version__,
        })

    @classmethod
    def load(cls, reader: "BundleReader") -> "ContentEmbedder":
        """Rebuild a fitted embedder from what :meth:`save` wrote (checksums are the bundle's to check).

        Raises
        ------
        ArtifactError
            If a file is missing or cannot be parsed, or the files disagree in
            size; the message names the file.
        """
        meta = reader.json(META_NAME)
        meta_file = f"{META_NAME}.json"
        try:
            version = meta["format_version"]
            stored = meta["config"]
            topic_codes = tuple(meta["topic_codes"])
            format_codes = tuple(meta["format_codes"])
        except (KeyError, TypeError) as exc:
            raise reader.error(meta_file, f"incomplete metadata ({exc})") from None
        if version != FORMAT_VERSION:
            raise reader.error(meta_file, f"content format version {version!r}; this code reads {FORMAT_VERSION}")

        vocabulary = reader.json(VOCAB_NAME)
        idf = reader.array(IDF_NAME, mmap=False)
        components = reader.array(COMPONENTS_NAME, mmap=False)
        if not isinstance(vocabulary, list) or idf.shape != (len(vocabulary),):
            n_terms = len(vocabulary) if isinstance(vocabulary, list) else 0
            raise reader.error(f"{IDF_NAME}.npy", f"{idf.shape[0] if idf.ndim else 0} weights for {n_terms} terms")
        if components.ndim != 2 or components.shape[1] != len(vocabulary):
            raise reader.error(f"{COMPONENTS_NAME}.npy", f"shape {components.shape} does not match the vocabulary")

        fields = {f.name for f in dataclasses.fields(ContentConfig)}
        config = ContentConfig(**{k: v for k, v in stored.items() if k in fields})
        self = cls(config=config)
        self.config_ = config
        # the vectorizer is built from these on first use (vectorizer_)
        self._stored_vocabulary, self._stored_idf = vocabulary, idf
        self.components_ = np.ascontiguousarray(components, dtype=np.float32)
        self.topic_codes_ = topic_codes
        self.format_codes_ = format_codes
        self.stopwords_ = _parse_stopwords(reader.text(STOPWORDS_FILE))
        self.dim_ = config.svd_components + len(topic_codes) + len(format_codes)
        return self
