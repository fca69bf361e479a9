"""Labelled data for fine-tuning: the file readers for the four task kinds, and what they return.

Readers return plain dataclasses that any tokenizer can consume:

- `TextExample` (sequence and pair classification) from CSV, TSV or JSON Lines with named fields;
- `TaggedExample` (token classification) from CoNLL columns, one-character-per-line BIO files or
  JSON Lines `{"tokens": [...], "tags": [...]}`. Character-level sources give one tag per
  character of `text`; word-level sources keep their tokens, tags per token and each token's
  character span in `text`, so a subword tokenizer aligns through offsets either way;
- `QAExample` (extractive QA) from SQuAD v1.1-style JSON (also DRCD and CMRC 2018), with answer
  positions in characters. `squad_paragraphs` is the one parser of that format's outer structure;
  the corpus reader takes its passages from it too.

Every reader also returns a `ReadReport` of what it skipped or repaired, for the log. A bad record
is a `UserError` naming the file and line (or the question id) and what was expected, unless the
caller passes `skip_bad=True`; then it is counted in the report instead.

A whole task is a `TaskData`: examples by split, the reports, and the source to credit. The
built-in tasks are in `selfsup.data.catalog`, the seeded splits in `selfsup.data.splits`.
"""

from __future__ import annotations

import collections
import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfsup.data.text import decoded_lines, is_cjk
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


def existing_file(path: Path) -> Path:
    """`path` itself when it is a file, else a one-line UserError saying so."""
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
    lines = decoded_lines(path)
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
    for number, line in decoded_lines(path):
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
    path = existing_file(Path(path))
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
        if index and not (is_cjk(tokens[index - 1][-1]) or is_cjk(token[0])):
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


def read_tagged_columns(
    lines: Iterable[tuple[int, str]],
    where: str,
    report: ReadReport,
    skip_bad: bool = False,
    strip_position_digits: bool = False,
) -> list[TaggedExample]:
    """Tagged sentences of numbered column-file lines (see `read_tagging`), for a source that is
    not a plain file (a member of a zip archive); `where` names it in messages."""
    sentences = _column_sentences(lines, where, report, skip_bad, strip_position_digits)
    return _tagged_examples(sentences)


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
    path = existing_file(Path(path))
    report = ReadReport()
    if path.name.lower().endswith(_JSON_LINES_SUFFIXES):
        examples = _tagged_examples(_json_sentences(path, report, skip_bad))
    else:
        lines = decoded_lines(path)
        examples = read_tagged_columns(lines, str(path), report, skip_bad, strip_position_digits)
    if not examples and not report.skipped:  # one example per sentence
        raise UserError(f"{path}: no sentences; expected tagged tokens")
    return examples, report


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


class SquadFormatError(UserError):
    """A file that is not SQuAD v1.1 JSON as a whole: bad UTF-8 or JSON (then `decode_error` holds
    the decoder's error), or no "data", "paragraphs" or "qas" list where the format has one."""

    def __init__(self, message: str, decode_error: ValueError | None = None) -> None:
        super().__init__(message)
        self.decode_error = decode_error


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise SquadFormatError(
            f"{path}:{error.lineno}: invalid JSON ({error.msg} at column {error.colno}); "
            "expected SQuAD v1.1 JSON",
            error,
        ) from None
    except UnicodeDecodeError as error:
        raise SquadFormatError(
            f"{path}: invalid UTF-8 at byte {error.start}; expected UTF-8", error
        ) from None


def squad_paragraphs(path: Path) -> Iterator[tuple[int, int, Any]]:
    """(article number, paragraph number, paragraph object) of a SQuAD v1.1 file, in file order.

    The one parser of the format's outer structure (`{"data": [{"paragraphs": [...]}]}`), shared
    by `read_squad` and the corpus reader's passages; a paragraph is yielded as found, each caller
    checks the fields it needs. The whole file is parsed at once (JSON has no line structure; QA
    files are MBs).
    """
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise SquadFormatError(f'{path}: no "data" list at the top; expected SQuAD v1.1 JSON')
    for article_number, article in enumerate(data["data"], start=1):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise SquadFormatError(f'{path}: article {article_number} has no "paragraphs" list')
        for paragraph_number, paragraph in enumerate(paragraphs, start=1):
            yield article_number, paragraph_number, paragraph


def _squad_questions(path: Path) -> Iterator[tuple[str, Any, Any]]:
    """(name of the question for messages, question object, paragraph context) in file order."""
    for article_number, paragraph_number, paragraph in squad_paragraphs(path):
        qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
        if not isinstance(qas, list):
            raise SquadFormatError(
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
    path = existing_file(Path(path))
    examples = []
    report = ReadReport()
    seen: set[str] = set()
    for name, raw, context in _squad_questions(path):
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
# A whole task
# ---------------------------------------------------------------------------------------------


@dataclass
class TaskData:
    """A labelled task: its examples by split and what the readers left out or repaired.

    `kind` is "classification", "pair", "tagging" or "qa" (the kinds of `selfsup.tasks`);
    `eval_split` is the split results are reported on; `reports`
    are by split, or under "all" for a source read whole and then split; `source` names the data
    and its licence, to be shown next to any result built on it.
    """

    name: str
    kind: str
    splits: dict[str, list[Any]]
    eval_split: str
    reports: dict[str, ReadReport]
    source: str


# what a skipped record is, by task kind
_RECORD_NAMES = {"qa": "question", "tagging": "sentence"}


def describe_reports(data: TaskData) -> list[str]:
    """One line per split saying what its reader dropped or repaired (nothing: no line), in the
    task's words: "sentiment (before splitting): dropped 17761 examples (exact duplicate: 17535,
    ...)"; realigned answers are mentioned for QA only."""
    lines, seen = [], set()
    record = _RECORD_NAMES.get(data.kind, "example")
    for split, report in data.reports.items():
        if id(report) in seen or not (report.skipped or report.realigned):
            continue
        seen.add(id(report))
        reasons = ", ".join(f"{reason}: {n}" for reason, n in report.reasons.most_common())
        where = "(before splitting)" if split == "all" else split
        done = f"dropped {report.skipped} {record}{'' if report.skipped == 1 else 's'}"
        if data.kind == "qa":
            done += f", realigned {report.realigned} answer{'' if report.realigned == 1 else 's'}"
        lines.append(f"{data.name} {where}: {done} ({reasons})")
    return lines


def label_set(kind: str, examples: list) -> list[str]:
    """The labels a head predicts, sorted: classes, or tags with "O" first; none for QA."""
    if kind in ("classification", "pair"):
        return sorted({e.label for e in examples})
    if kind == "tagging":
        tags = sorted({t for e in examples for t in e.tags})
        return (["O"] if "O" in tags else []) + [t for t in tags if t != "O"]
    return []
