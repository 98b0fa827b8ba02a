import json

import duckdb
import numpy as np
import pytest

from runners.corpus import (
    EMBEDDED_SHA256,
    VALIDATION_BLOCK,
    decode,
    encode,
    load_corpus,
    split,
)
from runners.errors import RunnerError


def test_embedded_corpus_is_the_frozen_python_source():
    corpus = load_corpus()
    assert corpus.sha256 == EMBEDDED_SHA256
    assert corpus.n_tokens > 10_000_000
    text = decode(corpus.train[:20_000])
    assert "# file: " in text and "def " in text and "import " in text


@pytest.mark.slow
def test_split_is_deterministic_disjoint_and_interleaved():
    tokens = np.arange(200 * VALIDATION_BLOCK, dtype=np.int64)
    train, val = split(tokens)
    train2, val2 = split(tokens)
    assert np.array_equal(train, train2) and np.array_equal(val, val2)
    assert len(train) + len(val) == len(tokens)
    assert not set(train.tolist()) & set(val.tolist())
    assert 0.01 < len(val) / len(tokens) < 0.05
    # validation blocks come from all over the corpus, not only its tail
    assert val.min() < len(tokens) / 2 < val.max()


def test_byte_tokenizer_round_trips_unicode():
    text = "naïve café — ∑ x²"
    assert decode(encode(text)) == text
    assert encode(text).max() < 256


@pytest.fixture
def text(tmp_path):
    body = "the quick brown fox jumps over the lazy dog\n" * 200
    return body


def test_user_corpus_from_text_file_folder_jsonl_and_parquet(tmp_path, text):
    (tmp_path / "a.txt").write_text(text)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "one.md").write_text(text)
    (folder / "two.txt").write_text(text)
    jsonl = tmp_path / "c.jsonl"
    docs = [text[i * 100 :] for i in range(3)]
    jsonl.write_text("\n".join(json.dumps({"text": doc}) for doc in docs))
    parquet = tmp_path / "d.parquet"
    duckdb.sql(f"COPY (SELECT ? AS text) TO '{parquet}' (FORMAT parquet)", params=[text])
    for path in (tmp_path / "a.txt", folder, jsonl, parquet):
        corpus = load_corpus(str(path))
        assert len(corpus.train) > len(corpus.val) > 0
        assert "quick brown" in decode(np.concatenate([corpus.train, corpus.val]))
    assert load_corpus(str(folder)).n_tokens == 2 * len(text) + 1


def test_bad_corpora_give_clear_errors(tmp_path):
    with pytest.raises(RunnerError, match="not found"):
        load_corpus(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(RunnerError, match="line 2"):
        load_corpus(str(bad))
    small = tmp_path / "small.txt"
    small.write_text("tiny")
    with pytest.raises(RunnerError, match="too small"):
        load_corpus(str(small))
