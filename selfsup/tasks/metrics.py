"""Evaluation metrics for the fine-tuning tasks: classification, tagging, segmentation and QA.

Each metric is a small pure function over plain Python values (no torch), so a task head, a
benchmark and a test all score predictions the same way. Published numbers are only comparable
when the metric matches the one the benchmark's authors ran, so each family follows a reference:

- Classification: `accuracy`, and `macro_f1` computed like scikit-learn's
  `f1_score(average="macro")`: classes are those seen in gold or predictions, and a zero
  denominator scores 0.
- Tagging: `bio_spans` and `span_prf` follow conlleval's lenient chunking as implemented by
  seqeval's default mode: an I- (or E-) tag after O, after an E-/S- tag or after a tag of another
  type starts a new chunk instead of being dropped; scores are micro-averaged over chunks.
  Deviation: a tag that is not O or B-/I-/E-/S- with a type raises ValueError (seqeval warns
  and guesses).
- Word segmentation: a predicted word is correct when its character span equals a gold word's
  span (the SIGHAN bakeoff rule), from word lists (`segmentation_prf`) or BMES tags (`bmes_prf`).
- English QA: `normalize_answer_en`, `exact_match_en` and `f1_en` reproduce the official SQuAD
  v1.1 evaluation script (Rajpurkar et al., 2016): lowercase, drop ASCII punctuation, drop the
  articles a/an/the, collapse whitespace; F1 over the bag of whitespace tokens; maximum over the
  gold answers; a question without a prediction scores 0.
- Chinese QA: `normalize_answer_zh`, `exact_match_zh`, `mixed_segmentation` and `f1_zh` reproduce
  the CMRC 2018 evaluation script (v5, Cui et al., 2019), quirks included, because published
  CMRC/DRCD numbers come from it:
    * Its punctuation list is fixed: 11 ASCII marks (- : _ * ^ / \\ ~ ` + =) and 21 full-width
      ones. ASCII . , ! ? ( ) and quotes are kept. Its list holds the ellipsis as one two-character
      entry, which never equals a single character, so "…" is never removed.
    * EM lowercases, strips the ends and removes those marks; inner whitespace still counts.
    * F1 tokens: each character in U+4E00..U+9FA5 is one token; any other run of characters
      (Latin letters, digits, spaces, rarer CJK) is handed to an English word tokenizer, so
      "iPhone 6" is two tokens and "1990年" is "1990", "年". Marks are dropped before the runs
      are cut, so "ω-force" becomes the one token "ωforce". F1 uses the longest common
      *substring* of the two token lists (not the bag overlap SQuAD uses).
    * Deviation: the script's English tokenizer is nltk.word_tokenize; `_latin_tokens` rebuilds
      the rules of it that matter inside short answers (whitespace; ? ! ; @ # $ % & brackets and
      double quotes split off; a comma split off unless a digit follows, keeping "1,000"; a final
      period and "..." split off; n't 's 'm 'd 'll 're 've split off). It differs from nltk only
      on rarer cases (e.g. "cannot", quotes turned into `` and '', abbreviations before a
      sentence break), which change token counts, never the EM.
  `exact_match_nospace` is a plainer score: equal once all whitespace is removed, nothing else
  normalised.
- `squad_scores` and `score_qa_files` walk a SQuAD-format gold file; `score_qa_files` turns every
  problem with the user's files into a one-line `UserError` naming the file.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from selfsup.errors import UserError

# --- shared arithmetic ------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    # Every reference here (seqeval, scikit-learn, both QA scripts) scores an undefined ratio 0.
    return numerator / denominator if denominator else 0.0


def _prf(true_positives: int, num_predicted: int, num_gold: int) -> tuple[float, float, float]:
    precision = _ratio(true_positives, num_predicted)
    recall = _ratio(true_positives, num_gold)
    return precision, recall, _ratio(2 * precision * recall, precision + recall)


def _check_same_length(gold: Sequence[Any], pred: Sequence[Any], what: str) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{what}: {len(gold)} gold items but {len(pred)} predictions")


class TypeScores(NamedTuple):
    """Scores of one class or entity type; `support` is its number of gold items."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class SpanScores:
    """Micro-averaged span scores, and per entity type (types from gold or predictions)."""

    precision: float
    recall: float
    f1: float
    per_type: dict[str, TypeScores] = field(default_factory=dict)


# --- classification ---------------------------------------------------------------------------


def accuracy(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """Fraction of positions where the prediction equals the gold label (0 for no items)."""
    _check_same_length(gold, pred, "accuracy")
    return _ratio(sum(g == p for g, p in zip(gold, pred, strict=True)), len(gold))


def per_class_scores(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> dict[Any, TypeScores]:
    """Precision/recall/F1 of every class that occurs in gold or predictions."""
    _check_same_length(gold, pred, "per_class_scores")
    gold_counts, pred_counts = Counter(gold), Counter(pred)
    hits = Counter(g for g, p in zip(gold, pred, strict=True) if g == p)
    scores = {}
    for label in gold_counts.keys() | pred_counts.keys():
        p, r, f = _prf(hits[label], pred_counts[label], gold_counts[label])
        scores[label] = TypeScores(p, r, f, gold_counts[label])
    return scores


def macro_f1(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """Unweighted mean of per-class F1 over the classes seen in gold or predictions.

    A class that is predicted but never gold counts (with F1 0), as in scikit-learn; a class in
    neither cannot be seen and so does not count.
    """
    scores = per_class_scores(gold, pred)
    return _ratio(sum(s.f1 for s in scores.values()), len(scores))


# --- BIO / BIOES span tagging -----------------------------------------------------------------

_SPAN_PREFIXES = frozenset("BIES")


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''). Only the first '-' separates, as in seqeval."""
    if tag == "O":
        return "O", ""
    prefix, sep, entity_type = tag.partition("-")
    if prefix not in _SPAN_PREFIXES or not sep or not entity_type:
        raise ValueError(f"tag {tag!r}: expected O or B-/I-/E-/S- followed by a type")
    return prefix, entity_type


def _chunk_ends(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    """Does the chunk holding the previous tag end before the current one? (conlleval rules)"""
    if prev == "O":
        return False
    return prev in "ES" or cur in "BSO" or prev_type != cur_type


def _chunk_starts(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    """Does a chunk start at the current tag? An I-/E- that cannot continue one starts one."""
    if cur == "O":
        return False
    return cur in "BS" or prev in "OES" or prev_type != cur_type


def bio_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Chunks of one tag sequence as (type, start, end), end exclusive.

    Reads B/I/O and also E/S tags (BIOES) with conlleval's lenient rules, e.g.
    ["I-PER", "I-PER", "B-LOC", "I-ORG"] -> {("PER", 0, 2), ("LOC", 2, 3), ("ORG", 3, 4)}.
    """
    spans: set[tuple[str, int, int]] = set()
    prev, prev_type, start = "O", "", 0
    # A trailing O closes a chunk that runs to the end.
    for i, tag in enumerate([*tags, "O"]):
        cur, cur_type = _split_tag(tag)
        if _chunk_ends(prev, prev_type, cur, cur_type):
            spans.add((prev_type, start, i))
        if _chunk_starts(prev, prev_type, cur, cur_type):
            start = i
        prev, prev_type = cur, cur_type
    return spans


def span_prf(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> SpanScores:
    """Chunk-level precision/recall/F1 over sentences of tags; equals seqeval's default mode.

    A predicted chunk counts when its type, start and end all match a gold chunk of the same
    sentence. Per-type scores cover every type seen in gold or predictions.
    """
    _check_same_length(gold, pred, "span_prf")
    hits: Counter[str] = Counter()
    num_gold: Counter[str] = Counter()
    num_pred: Counter[str] = Counter()
    for i, (gold_tags, pred_tags) in enumerate(zip(gold, pred, strict=True)):
        _check_same_length(gold_tags, pred_tags, f"span_prf sentence {i}")
        gold_spans, pred_spans = bio_spans(gold_tags), bio_spans(pred_tags)
        num_gold.update(t for t, _, _ in gold_spans)
        num_pred.update(t for t, _, _ in pred_spans)
        hits.update(t for t, _, _ in gold_spans & pred_spans)
    per_type = {
        t: TypeScores(*_prf(hits[t], num_pred[t], num_gold[t]), num_gold[t])
        for t in sorted(num_gold.keys() | num_pred.keys())
    }
    p, r, f = _prf(hits.total(), num_pred.total(), num_gold.total())
    return SpanScores(p, r, f, per_type)


# --- word segmentation ------------------------------------------------------------------------


def words_to_spans(words: Iterable[str]) -> set[tuple[int, int]]:
    """Character spans (start, end exclusive) of consecutive words.

    ["我们", "好"] -> {(0, 2), (2, 3)}.
    """
    spans, start = set(), 0
    for word in words:
        spans.add((start, start + len(word)))
        start += len(word)
    return spans


def bmes_to_spans(tags: Sequence[str]) -> set[tuple[int, int]]:
    """Word spans (start, end exclusive) from B/M/E/S character tags.

    A word starts at B or S and after E or S, so an ill-formed sequence still splits every
    character into exactly one word: ["M", "E", "B", "B"] -> {(0, 2), (2, 3), (3, 4)}.
    """
    for tag in tags:
        if tag not in ("B", "M", "E", "S"):
            raise ValueError(f"tag {tag!r}: expected one of B, M, E, S")
    starts = [i for i, tag in enumerate(tags) if i == 0 or tag in "BS" or tags[i - 1] in "ES"]
    return set(zip(starts, [*starts[1:], len(tags)], strict=True))


def _span_set_prf(gold: Sequence[set], pred: Sequence[set]) -> PRF:
    hits = sum(len(g & p) for g, p in zip(gold, pred, strict=True))
    return PRF(*_prf(hits, sum(map(len, pred)), sum(map(len, gold))))


def segmentation_prf(
    gold_words: Sequence[Sequence[str]], pred_words: Sequence[Sequence[str]]
) -> PRF:
    """Word-level P/R/F1: a predicted word is correct when its span equals a gold word's."""
    _check_same_length(gold_words, pred_words, "segmentation_prf")
    for i, (g, p) in enumerate(zip(gold_words, pred_words, strict=True)):
        if "".join(g) != "".join(p):
            raise ValueError(f"segmentation_prf sentence {i}: gold and predicted text differ")
    return _span_set_prf(
        [words_to_spans(g) for g in gold_words], [words_to_spans(p) for p in pred_words]
    )


def bmes_prf(gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> PRF:
    """Word-level P/R/F1 from BMES tags of the same characters."""
    _check_same_length(gold_tags, pred_tags, "bmes_prf")
    for i, (g, p) in enumerate(zip(gold_tags, pred_tags, strict=True)):
        _check_same_length(g, p, f"bmes_prf sentence {i}")
    return _span_set_prf(
        [bmes_to_spans(g) for g in gold_tags], [bmes_to_spans(p) for p in pred_tags]
    )


# --- English QA (SQuAD v1.1) ------------------------------------------------------------------

_ASCII_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _as_list(golds: str | Sequence[str]) -> Sequence[str]:
    # A bare string is a Sequence[str] too; without this it would be scored char by char.
    return [golds] if isinstance(golds, str) else golds


def normalize_answer_en(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop ASCII punctuation, then articles, then extra
    whitespace (the same order as the official script: "a.b" loses its dot, keeps both letters)."""
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1_one_en(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer_en(prediction).split()
    gold_tokens = normalize_answer_en(gold).split()
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    # No shared token scores 0, even when both are empty (as the official script does).
    if common == 0:
        return 0.0
    return _prf(common, len(pred_tokens), len(gold_tokens))[2]


def exact_match_en(prediction: str, golds: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer, else 0.0."""
    norm = normalize_answer_en(prediction)
    return float(any(norm == normalize_answer_en(g) for g in _as_list(golds)))


def f1_en(prediction: str, golds: str | Sequence[str]) -> float:
    """Best bag-of-tokens F1 of the normalised prediction against any gold answer."""
    return max((_f1_one_en(prediction, g) for g in _as_list(golds)), default=0.0)


# --- Chinese QA (CMRC 2018) -------------------------------------------------------------------

# The CMRC 2018 script's list; its two-character ellipsis entry can never match one character,
# so it is left out here to the same effect.
_CMRC_PUNCTUATION = frozenset("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
_CMRC_HAN = re.compile(r"[\u4e00-\u9fa5]")

_FINAL_PERIOD = re.compile(r"(?<=[^.])\.(?=[\])}>\"']*\s*$)")
_ALWAYS_SPLIT = re.compile(r"\.\.\.|[?!;@#$%&()\[\]{}<>\"«»‘„]|,(?!\d)")
_CLITIC = re.compile(r"(?<=[^' ])(n't|'s|'m|'d|'ll|'re|'ve|')(?= )")


def _latin_tokens(run: str) -> list[str]:
    """English tokens of a non-Han run, after the main rules of nltk.word_tokenize."""
    text = _FINAL_PERIOD.sub(" . ", run)
    text = _ALWAYS_SPLIT.sub(lambda m: f" {m.group(0)} ", text)
    text = _CLITIC.sub(lambda m: f" {m.group(1)}", f" {text} ")
    return text.split()


def mixed_segmentation(text: str, remove_punctuation: bool = True) -> list[str]:
    """CMRC 2018 tokens: one per Han character, English tokens for the runs in between.

    Lowercased and stripped first. With `remove_punctuation` (as F1 uses it) the CMRC marks are
    dropped without cutting the run they sit in; without it each mark is a token of its own.
    "苹果iPhone 6" -> ["苹", "果", "iphone", "6"].
    """
    tokens: list[str] = []
    run: list[str] = []
    for ch in text.lower().strip():
        is_mark = ch in _CMRC_PUNCTUATION
        if is_mark and remove_punctuation:
            continue
        if is_mark or _CMRC_HAN.match(ch):
            tokens += _latin_tokens("".join(run))
            run = []
            tokens.append(ch)
        else:
            run.append(ch)
    return tokens + _latin_tokens("".join(run))


def normalize_answer_zh(text: str) -> str:
    """CMRC 2018 EM normalisation: lowercase, strip the ends, remove the CMRC punctuation marks.

    Inner whitespace is kept (the script keeps it); see `exact_match_nospace` for a score that
    ignores it.
    """
    return "".join(ch for ch in text.lower().strip() if ch not in _CMRC_PUNCTUATION)


def longest_common_substring_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest contiguous run shared by two sequences (O(len(a) * len(b)))."""
    best = 0
    # run_ending[j]: length of the common run ending at a[i-1] and b[j-1]; one row is enough.
    run_ending = [0] * (len(b) + 1)
    for x in a:
        next_row = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                next_row[j] = run_ending[j - 1] + 1
                best = max(best, next_row[j])
        run_ending = next_row
    return best


def _f1_one_zh(pred_tokens: Sequence[str], gold: str) -> float:
    gold_tokens = mixed_segmentation(gold)
    common = longest_common_substring_length(gold_tokens, pred_tokens)
    return _prf(common, len(pred_tokens), len(gold_tokens))[2]


def exact_match_zh(prediction: str, golds: str | Sequence[str]) -> float:
    """CMRC 2018 EM: 1.0 when the prediction equals any gold answer after `normalize_answer_zh`."""
    norm = normalize_answer_zh(prediction)
    return float(any(norm == normalize_answer_zh(g) for g in _as_list(golds)))


def f1_zh(prediction: str, golds: str | Sequence[str]) -> float:
    """CMRC 2018 F1: longest common token substring / length, best over the gold answers.

    "北京" against "北京大学": common 2, precision 2/2, recall 2/4, F1 2/3.
    """
    pred_tokens = mixed_segmentation(prediction)
    return max((_f1_one_zh(pred_tokens, g) for g in _as_list(golds)), default=0.0)


def exact_match_nospace(prediction: str, golds: str | Sequence[str]) -> float:
    """1.0 when the prediction equals any gold answer once all whitespace is removed."""

    def squeeze(s: str) -> str:
        return "".join(s.split())

    return float(any(squeeze(prediction) == squeeze(g) for g in _as_list(golds)))


# --- scoring a SQuAD-format data set ----------------------------------------------------------

AnswerMetric = Callable[[str, Sequence[str]], float]

# The per-question scores reported for each language, in the order they are reported.
QA_METRICS: dict[str, dict[str, AnswerMetric]] = {
    "en": {"exact_match": exact_match_en, "f1": f1_en},
    "zh": {
        "exact_match": exact_match_zh,
        "f1": f1_zh,
        "exact_match_nospace": exact_match_nospace,
    },
}


def _qa_metrics(lang: str) -> dict[str, AnswerMetric]:
    if lang not in QA_METRICS:
        raise UserError(f"QA language {lang!r}: expected one of {', '.join(QA_METRICS)}")
    return QA_METRICS[lang]


def iter_questions(dataset: Mapping[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """(question id, gold answer texts) for every question of a SQuAD-format data set.

    Raises ValueError naming the place (e.g. data[3].paragraphs[0].qas[2]) of a malformed entry.
    """
    articles = dataset.get("data") if isinstance(dataset, Mapping) else None
    if not isinstance(articles, list):
        raise ValueError('expected a JSON object with a "data" list (SQuAD format)')
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(_list_field(article, "paragraphs", f"data[{a}]")):
            where = f"data[{a}].paragraphs[{p}]"
            for q, qa in enumerate(_list_field(paragraph, "qas", where)):
                where_q = f"{where}.qas[{q}]"
                qid = qa.get("id") if isinstance(qa, dict) else None
                if not isinstance(qid, str):
                    raise ValueError(f'{where_q}: expected an "id" string')
                answers = _list_field(qa, "answers", where_q)
                texts = [ans.get("text") if isinstance(ans, dict) else None for ans in answers]
                if not all(isinstance(t, str) for t in texts):
                    raise ValueError(f'{where_q}: every answer needs a "text" string')
                yield qid, texts


def _list_field(obj: Any, key: str, where: str) -> list:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, list):
        raise ValueError(f'{where}: expected a "{key}" list')
    return value


def squad_scores(
    dataset: Mapping[str, Any], predictions: Mapping[str, str], lang: str = "en"
) -> dict[str, float | int]:
    """Scores (percentages) of predictions {question id: answer text} against a SQuAD data set.

    Returns the language's metrics (en: exact_match, f1; zh: exact_match, f1 in CMRC 2018 style,
    exact_match_nospace), then "total" questions, "missing" ones without a prediction (scored 0,
    as both official scripts do) and "unknown_ids", predictions for no gold question (ignored).
    """
    metrics = _qa_metrics(lang)
    sums = dict.fromkeys(metrics, 0.0)
    seen: set[str] = set()
    total = missing = 0
    for qid, golds in iter_questions(dataset):
        total += 1
        seen.add(qid)
        if qid not in predictions:
            missing += 1
            continue
        for name, metric in metrics.items():
            sums[name] += metric(predictions[qid], golds)
    scores: dict[str, float | int] = {name: 100.0 * _ratio(s, total) for name, s in sums.items()}
    scores.update(
        total=total, missing=missing, unknown_ids=sum(qid not in seen for qid in predictions)
    )
    return scores


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(
            f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None


def _check_predictions(predictions: Any, path: Path) -> dict[str, str]:
    if not isinstance(predictions, dict):
        raise UserError(
            f"{path}: expected a JSON object of question id -> answer text, "
            f"got a {type(predictions).__name__}"
        )
    for qid, answer in predictions.items():
        if not isinstance(answer, str):
            raise UserError(
                f"{path}: answer of id {qid!r} is a {type(answer).__name__}, expected a string"
            )
    return predictions


def score_qa_files(
    gold_path: str | Path, predictions_path: str | Path, lang: str = "en"
) -> dict[str, float | int]:
    """`squad_scores` of a predictions JSON file ({id: text}) against a SQuAD-format gold file."""
    gold_path, predictions_path = Path(gold_path), Path(predictions_path)
    _qa_metrics(lang)  # a bad language fails before any file is read
    dataset = _read_json(gold_path)
    predictions = _check_predictions(_read_json(predictions_path), predictions_path)
    try:
        return squad_scores(dataset, predictions, lang)
    except ValueError as e:  # only iter_questions raises it: a malformed gold entry
        raise UserError(f"{gold_path}: {e}") from None
