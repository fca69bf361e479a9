"""Metrics: parity with the official SQuAD v1.1 numbers, seqeval and scikit-learn; known answers
for segmentation and the CMRC 2018 Chinese QA metric; file errors of score_qa_files."""

import json
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfsup.errors import UserError
from selfsup.tasks.metrics import (
    PRF,
    accuracy,
    bio_spans,
    bmes_prf,
    bmes_to_spans,
    exact_match_en,
    exact_match_nospace,
    exact_match_zh,
    f1_en,
    f1_zh,
    iter_questions,
    longest_common_substring_length,
    macro_f1,
    mixed_segmentation,
    normalize_answer_en,
    normalize_answer_zh,
    per_class_scores,
    score_qa_files,
    segmentation_prf,
    span_prf,
    squad_scores,
)

# ../shared/data relative to the repo root, which holds this tests/ folder.
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SQUAD = DATA / "squad-v1.1-dev"
CMRC = DATA / "cmrc2018"
DRCD = DATA / "drcd"


def _need(folder: Path) -> None:
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the shared public data sets are not checked out here")


# --- classification ---------------------------------------------------------------------------


def test_accuracy_known():
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    assert accuracy([], []) == 0.0
    with pytest.raises(ValueError, match="3 gold items but 2"):
        accuracy(["a", "b", "c"], ["a", "b"])


def test_macro_f1_known():
    gold = ["a", "a", "b", "c"]
    pred = ["a", "b", "b", "d"]
    # a: p 1, r 1/2 -> 2/3; b: p 1/2, r 1 -> 2/3; c: 0 (never predicted); d: 0 (never gold).
    assert macro_f1(gold, pred) == pytest.approx((2 / 3 + 2 / 3 + 0 + 0) / 4)
    assert per_class_scores(gold, pred)["c"].support == 1
    assert per_class_scores(gold, pred)["d"].support == 0
    assert macro_f1(["x", "y"], ["x", "y"]) == 1.0


_labels = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(_labels)
def test_classification_matches_sklearn(pairs):
    skm = pytest.importorskip("sklearn.metrics")
    gold = [g for g, _ in pairs]
    pred = [p for _, p in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = skm.f1_score(gold, pred, average="macro", zero_division=0)
    assert macro_f1(gold, pred) == pytest.approx(expected, abs=1e-12)
    assert accuracy(gold, pred) == pytest.approx(skm.accuracy_score(gold, pred), abs=1e-12)


# --- BIO spans: known examples and seqeval parity ---------------------------------------------


def test_bio_spans_lenient_chunking():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-ORG", "I-PER", "B-LOC"]
    assert bio_spans(tags) == {
        ("PER", 0, 2),
        ("LOC", 3, 5),  # I- after O starts a chunk
        ("ORG", 5, 6),
        ("PER", 6, 7),  # I- after another type starts a chunk
        ("LOC", 7, 8),  # a chunk that runs to the end
    }
    assert bio_spans([]) == set()
    assert bio_spans(["O", "O"]) == set()
    assert bio_spans(["S-PER", "B-LOC", "E-LOC", "I-LOC"]) == {
        ("PER", 0, 1),
        ("LOC", 1, 3),
        ("LOC", 3, 4),  # I- after E- starts a chunk
    }
    with pytest.raises(ValueError, match="X-PER"):
        bio_spans(["X-PER"])
    with pytest.raises(ValueError, match="'B'"):
        bio_spans(["B"])


def test_span_prf_known():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-LOC"]]
    scores = span_prf(gold, pred)
    # gold 3 chunks, predicted 4, 2 right (PER, the second sentence's ORG).
    assert (scores.precision, scores.recall) == (0.5, 2 / 3)
    assert scores.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert scores.per_type["PER"] == (1.0, 1.0, 1.0, 1)
    assert scores.per_type["LOC"] == (0.0, 0.0, 0.0, 1)
    assert scores.per_type["ORG"] == (0.5, 1.0, pytest.approx(2 / 3), 1)
    # A chunk in the same place of another sentence is not a hit.
    assert span_prf([["B-PER"], ["O"]], [["O"], ["B-PER"]]).f1 == 0.0
    with pytest.raises(ValueError, match="sentence 0"):
        span_prf([["O"]], [["O", "O"]])


@st.composite
def _tag_pairs(draw: st.DrawFn, prefixes: str) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted sentences of the same shape; predictions copy gold often, so that
    hits and near misses (shifted ends, wrong types, ill-formed I- tags) are all common."""
    types = draw(st.sampled_from([["PER", "LOC"], ["PER", "LOC", "ORG"]]))
    tags = ["O"] + [f"{p}-{t}" for p in prefixes for t in types]
    lengths = draw(st.lists(st.integers(0, 12), min_size=1, max_size=5))
    gold = [draw(st.lists(st.sampled_from(tags), min_size=n, max_size=n)) for n in lengths]
    pred = [[draw(st.sampled_from([g, *tags])) for g in sentence] for sentence in gold]
    return gold, pred


def _seqeval_entities(tags: list[str]) -> set[tuple[str, int, int]]:
    from seqeval.metrics.sequence_labeling import get_entities

    return {
        (t, start, end + 1) for t, start, end in get_entities(tags)
    }  # seqeval's end is inclusive


def _assert_matches_seqeval(gold: list[list[str]], pred: list[list[str]]) -> None:
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    ours = span_prf(gold, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns on 0/0, which both sides score 0
        assert ours.precision == pytest.approx(precision_score(gold, pred), abs=1e-9)
        assert ours.recall == pytest.approx(recall_score(gold, pred), abs=1e-9)
        assert ours.f1 == pytest.approx(f1_score(gold, pred), abs=1e-9)
        if ours.per_type:  # seqeval's per-type arrays come in sorted type order, as ours do
            p, r, f, support = precision_recall_fscore_support(gold, pred)
            expected = list(zip(p, r, f, support, strict=True))
            for got, want in zip(ours.per_type.values(), expected, strict=True):
                assert got == pytest.approx(want, abs=1e-9)
    for sentence in gold + pred:
        assert bio_spans(sentence) == _seqeval_entities(sentence)


@settings(max_examples=400, deadline=None)
@given(_tag_pairs("BI"))
def test_span_prf_matches_seqeval_bio(pair):
    pytest.importorskip("seqeval")
    _assert_matches_seqeval(*pair)


@settings(max_examples=200, deadline=None)
@given(_tag_pairs("BIES"))
def test_span_prf_matches_seqeval_bioes(pair):
    pytest.importorskip("seqeval")
    _assert_matches_seqeval(*pair)


# --- word segmentation ------------------------------------------------------------------------


def test_segmentation_known():
    gold = [["我们", "在", "北京", "大学"]]
    pred = [["我们", "在", "北京大学"]]
    # gold 4 words, predicted 3, 2 right.
    assert segmentation_prf(gold, pred) == PRF(2 / 3, 0.5, pytest.approx(4 / 7))
    assert segmentation_prf(gold, gold) == PRF(1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="text differ"):
        segmentation_prf([["我们"]], [["你们"]])


def test_bmes_known():
    assert bmes_to_spans(["B", "E", "S", "B", "M", "E"]) == {(0, 2), (2, 3), (3, 6)}
    # Ill-formed tags still cut every character into exactly one word.
    assert bmes_to_spans(["M", "E", "B", "B"]) == {(0, 2), (2, 3), (3, 4)}
    assert bmes_to_spans(["E", "E", "S"]) == {(0, 1), (1, 2), (2, 3)}
    gold = [["B", "E", "S", "B", "E"]]
    pred = [["B", "E", "B", "M", "E"]]
    assert bmes_prf(gold, pred) == PRF(0.5, 1 / 3, pytest.approx(0.4))
    with pytest.raises(ValueError, match="'I'"):
        bmes_to_spans(["B", "I"])


# --- English QA -------------------------------------------------------------------------------


def test_english_known():
    assert normalize_answer_en("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer_en("an apple a day") == "apple day"
    assert normalize_answer_en("theatre") == "theatre"  # articles only as whole words
    assert normalize_answer_en("U.S.") == "us"
    assert exact_match_en("the Denver Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert exact_match_en("Denver", "Denver Broncos") == 0.0
    # "denver" in common: p 1, r 1/2.
    assert f1_en("Denver", ["Denver Broncos"]) == pytest.approx(2 / 3)
    assert f1_en("Denver", ["Denver Broncos", "denver"]) == 1.0
    # Both empty after normalisation: EM 1 but F1 0, as in the official script.
    assert exact_match_en("the", ["a"]) == 1.0
    assert f1_en("the", ["a"]) == 0.0


# The official leaderboard scores of the staged prediction files, as printed (3 decimals) in
# ../shared/data/squad-v1.1-dev/SOURCE.md, computed there with the official v1.1 script.
SQUAD_GOLDEN = {
    "BERT_ensemble_Google_AI_Language.json": (86.206, 92.196),
    "Match-LSTM_with_Ans-Ptr_Boundary+Ensemble_Singapore_Management_University.json": (
        67.635,
        76.756,
    ),
    "Logistic_Regression_Baseline_Stanford_University.json": (40.142, 50.982),
    "r-net+_ensemble_Microsoft_Research_Asia.json": (82.469, 88.478),
    "SLQA+_ensemble_Alibaba_iDST_NLP.json": (81.949, 88.384),
}


@pytest.fixture(scope="module")
def squad_dev() -> dict:
    _need(SQUAD)
    return json.loads((SQUAD / "dev-v1.1-reconstructed.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("name", "golden"), SQUAD_GOLDEN.items())
def test_squad_matches_official_numbers(squad_dev, name, golden):
    predictions = json.loads((SQUAD / "predictions" / name).read_text(encoding="utf-8"))
    scores = squad_scores(squad_dev, predictions)
    assert (f"{scores['exact_match']:.3f}", f"{scores['f1']:.3f}") == tuple(
        f"{g:.3f}" for g in golden
    )
    assert scores["total"] == 10570
    if name.startswith("Logistic"):  # SOURCE.md: 13 dev ids missing, 28 ids not in dev
        assert (scores["missing"], scores["unknown_ids"]) == (13, 28)
    else:
        assert (scores["missing"], scores["unknown_ids"]) == (0, 0)


def test_score_qa_files_on_squad():
    _need(SQUAD)
    name = "BERT_ensemble_Google_AI_Language.json"
    scores = score_qa_files(
        SQUAD / "dev-v1.1-reconstructed.json", SQUAD / "predictions" / name, "en"
    )
    assert round(scores["exact_match"], 3) == SQUAD_GOLDEN[name][0]


# --- Chinese QA -------------------------------------------------------------------------------


def test_chinese_normalisation_known():
    assert exact_match_zh("北京大学", ["北京大学。"]) == 1.0
    assert exact_match_zh("《北京大学》", "北京大学") == 1.0
    assert exact_match_zh(" iPhone 6 ", "iphone 6") == 1.0  # lowercased, ends stripped
    assert exact_match_zh("iPhone6", "iPhone 6") == 0.0  # inner whitespace counts in CMRC's EM
    assert exact_match_zh("北京大学.", "北京大学") == 0.0  # ASCII "." is not in CMRC's list
    assert normalize_answer_zh("「ω-force」") == "ωforce"
    assert normalize_answer_zh("好……") == "好……"  # CMRC's list never matches a lone "…"


def test_mixed_segmentation_known():
    assert mixed_segmentation("苹果iPhone 6") == ["苹", "果", "iphone", "6"]
    assert mixed_segmentation("1990年") == ["1990", "年"]
    assert mixed_segmentation("2,000万元") == ["2,000", "万", "元"]
    assert mixed_segmentation("3.5%的人") == ["3.5", "%", "的", "人"]
    assert mixed_segmentation("《战国无双3》") == ["战", "国", "无", "双", "3"]
    assert mixed_segmentation("ω-force") == ["ωforce"]  # marks dropped before the run is cut
    assert mixed_segmentation("ω-force", remove_punctuation=False) == ["ω", "-", "force"]
    assert mixed_segmentation("Hello, world.") == ["hello", ",", "world", "."]
    assert mixed_segmentation("don't") == ["do", "n't"]
    assert mixed_segmentation("") == []


def test_chinese_f1_known():
    assert f1_zh("北京", ["北京大学"]) == pytest.approx(2 * (2 / 2 * 2 / 4) / (1 + 0.5))
    assert f1_zh("北京", ["北京大学", "北京"]) == 1.0
    # Longest common substring, not bag overlap: "京北" shares no run longer than 1 with "北京".
    assert f1_zh("京北", ["北京"]) == pytest.approx(0.5)
    # "iPhone 6 Plus": 3 tokens, 2 shared in a row with "iPhone 6": p 2/3, r 1.
    assert f1_zh("iPhone 6 Plus", "iPhone 6") == pytest.approx(0.8)
    # "iPhone6" is one token, so only 苹果 is shared: p 2/3, r 2/4.
    assert f1_zh("苹果iPhone6", "苹果iPhone 6") == pytest.approx(4 / 7)
    assert f1_zh("", ["北京"]) == 0.0
    assert f1_zh("。", ["。"]) == 0.0  # nothing left after removing marks
    assert longest_common_substring_length("abcde", "xbcdy") == 3


def test_exact_match_nospace_known():
    assert exact_match_nospace("北京 大学", ["北京大学"]) == 1.0
    assert exact_match_nospace("iPhone6", ["iPhone 6"]) == 1.0
    assert exact_match_nospace("iphone6", ["iPhone 6"]) == 0.0  # no lowercasing
    assert exact_match_nospace("北京大学", ["北京大学。"]) == 0.0  # no punctuation removal


def test_squad_scores_zh_small():
    dataset = {
        "data": [
            {
                "paragraphs": [
                    {
                        "qas": [
                            {"id": "q1", "answers": [{"text": "北京大学。"}]},
                            {"id": "q2", "answers": [{"text": "北京大学"}]},
                            {"id": "q3", "answers": [{"text": "1990年"}]},
                        ]
                    }
                ]
            }
        ]
    }
    scores = squad_scores(dataset, {"q1": "北京大学", "q2": "北京", "zz": "x"}, lang="zh")
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert scores["exact_match_nospace"] == 0.0
    assert (scores["total"], scores["missing"], scores["unknown_ids"]) == (3, 1, 1)


@pytest.mark.parametrize(("folder", "name"), [(CMRC, "cmrc2018_dev.json"), (DRCD, "DRCD_dev.json")])
def test_chinese_golds_score_themselves(folder, name):
    _need(folder)
    dataset = json.loads((folder / name).read_text(encoding="utf-8"))
    first_gold = {qid: golds[0] for qid, golds in iter_questions(dataset)}
    perfect = squad_scores(dataset, first_gold, lang="zh")
    assert (perfect["exact_match"], perfect["f1"], perfect["exact_match_nospace"]) == (100.0,) * 3
    assert perfect["missing"] == 0
    empty = squad_scores(dataset, dict.fromkeys(first_gold, ""), lang="zh")
    assert (empty["exact_match"], empty["f1"], empty["exact_match_nospace"]) == (0.0,) * 3


# --- score_qa_files errors --------------------------------------------------------------------

GOLD = {"data": [{"paragraphs": [{"qas": [{"id": "q1", "answers": [{"text": "Paris"}]}]}]}]}


def _write(path: Path, obj: object) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def test_score_qa_files_small(tmp_path):
    gold = _write(tmp_path / "gold.json", GOLD)
    preds = _write(tmp_path / "preds.json", {"q1": "paris.", "q9": "x"})
    scores = score_qa_files(gold, preds, "en")
    assert scores == {
        "exact_match": 100.0,
        "f1": 100.0,
        "total": 1,
        "missing": 0,
        "unknown_ids": 1,
    }


@pytest.mark.parametrize(
    ("which", "content", "message"),
    [
        ("gold", None, r"gold\.json: no such file"),
        ("preds", None, r"preds\.json: no such file"),
        ("gold", '{"data": [\n  {"paragraphs": ]}', r"gold\.json: invalid JSON at line 2"),
        ("preds", '{"q1": "a",\n\n "q2" "b"}', r"preds\.json: invalid JSON at line 3"),
        ("gold", {"version": "1.1"}, r'gold\.json: .*"data" list'),
        ("gold", {"data": {}}, r'gold\.json: .*"data" list'),
        ("gold", {"data": [{"paragraphs": [{"qas": [{}]}]}]}, r"gold\.json: .*qas\[0\].*id"),
        ("preds", ["Paris"], r"preds\.json: expected a JSON object .* got a list"),
        ("preds", {"q1": "Paris", "q2": ["x"]}, r"preds\.json: answer of id 'q2' is a list"),
        ("preds", {"q1": None}, r"preds\.json: answer of id 'q1' is a NoneType"),
    ],
)
def test_score_qa_files_errors(tmp_path, which, content, message):
    paths = {
        "gold": tmp_path / "gold.json",
        "preds": tmp_path / "preds.json",
    }
    _write(paths["gold"], GOLD)
    _write(paths["preds"], {"q1": "Paris"})
    if content is None:
        paths[which].unlink()
    else:
        _write(paths[which], content)
    with pytest.raises(UserError, match=message) as info:
        score_qa_files(paths["gold"], paths["preds"], "en")
    assert "\n" not in str(info.value)


def test_score_qa_files_unknown_language(tmp_path):
    with pytest.raises(UserError, match="'fr'.*en, zh"):
        score_qa_files(tmp_path / "gold.json", tmp_path / "preds.json", "fr")
