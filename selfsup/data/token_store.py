"""Tokenized corpus on disk, memory-mapped, so a corpus larger than RAM streams into pretraining.

Layout of a token store folder (the format nanoGPT's `train.bin` uses, plus the sentence and
document boundaries that BERT's NSP/SOP pair building and whole-word masking need):

    tokens.bin             all token ids back to back, uint16 (vocab <= 65536) or uint32
    word_starts.bin        uint8 per token: 1 where the token begins a word
    sentence_offsets.npy   int64 (num_sentences + 1): token index where each sentence starts
    document_offsets.npy   int64 (num_documents + 1): SENTENCE index where each document starts
    meta.json              format version, dtype, vocab size, counts, tokenizer; written LAST

Everything is written streaming (sentences tokenized in batches and appended to open files), and
meta.json is written last and atomically: a folder without it is an interrupted prepare, never
mistaken for a store. A batch is bounded in sentences and in characters, and a long document is
tokenized over several batches, so what one batch holds sets the peak memory, whatever the size of
a document (a 20 MB one took 2 GB before). A batch's tokens are numpy arrays from end to end
(`Tokenizer.encode_arrays`: ids, word-continuation flags, start offsets), never a Python object
per token: ~1 us and ~300 bytes a token before, the most of the time for Chinese text, where a
character is a token. Any other tokenizer object is read through its `encode_batch`.

Word starts. Whole-word masking for Chinese (Cui et al., "Pre-Training with Whole Word Masking
for Chinese BERT") masks all characters of a *word* ("中华人民共和国" as one unit, not
"中" alone). Some libraries instead mark as one "word" everything between spaces, and Chinese
has no spaces, so they mask whole clauses: far more than 15% of a sentence at once, which is a
different task. Here a token begins a word iff its first character is a word boundary, with
boundaries from (`word_segmenter`):

- the corpus's own segmentation (`Document.words`, e.g. People's Daily),
- "jieba": jieba's segmentation of each sentence,
- "none": no segmentation; a token begins a word unless the tokenizer says it continues one
  (WordPiece "##"), so for a character-level Chinese tokenizer every character is its own word,
- "auto" (default): the corpus's words where a document has them, else "none".

The held-out split of `prepare_corpus` is by document (sentences of one document never appear in
both), chosen by a seeded hash of the document index, so it needs no count in advance and is
stable when the corpus grows at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from selfsup.data.corpus import Document
from selfsup.data.token_arrays import TokenArrays, arrays_from_encodings, exclusive_cumsum
from selfsup.errors import UserError
from selfsup.io import atomic_write_json

FORMAT_NAME = "selfsup-token-store"
FORMAT_VERSION = 1
TOKENS_FILE = "tokens.bin"
WORD_STARTS_FILE = "word_starts.bin"
SENTENCE_OFFSETS_FILE = "sentence_offsets.npy"
DOCUMENT_OFFSETS_FILE = "document_offsets.npy"
META_FILE = "meta.json"
WORD_SEGMENTERS = ("auto", "jieba", "none")
_SPECIAL_ID_NAMES = ("pad_id", "unk_id", "cls_id", "sep_id", "mask_id")


class _Encoding(Protocol):
    ids: list[int]
    offsets: list[tuple[int, int]]
    continues_word: list[bool]


class _Tokenizer(Protocol):
    """What a store needs of a tokenizer; one with `encode_arrays` (selfsup's `Tokenizer`)
    gives the tokens as arrays directly."""

    vocab_size: int

    def encode_batch(self, texts: list[str]) -> list[_Encoding]: ...


def encode_arrays(tokenizer: _Tokenizer, texts: list[str], with_starts: bool) -> TokenArrays:
    """The tokens of `texts` as arrays: the tokenizer's own `encode_arrays` where its class has
    one, else its `encode_batch` converted."""
    if getattr(type(tokenizer), "encode_arrays", None) is not None:
        return tokenizer.encode_arrays(texts, with_starts=with_starts)  # type: ignore[attr-defined]
    return arrays_from_encodings(tokenizer.encode_batch(texts), with_starts)


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds ids 0 .. vocab_size-1 (halves the file for BERT's
    ~21k Chinese vocabulary compared with uint32)."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size <= 2**16:
        return np.dtype(np.uint16)
    if vocab_size <= 2**32:
        return np.dtype(np.uint32)
    raise ValueError(f"vocab_size {vocab_size} does not fit uint32 token ids")


# ---------------------------------------------------------------------------------------------
# Word starts
# ---------------------------------------------------------------------------------------------


def word_starts(
    arrays: TokenArrays, texts: list[str], words: list[list[str] | None] | None
) -> np.ndarray:
    """uint8 per token of `arrays` (the tokens of `texts`): whether the token begins a word.

    A text's words (a list that concatenates to it) decide where its words begin: a token does
    iff its first character is the first character of a word. A text without words (None) trusts
    the tokenizer: a token begins a word unless it continues the previous one (WordPiece "##").
    The first token of every text begins a word (its offset may be past stripped leading space).
    """
    starts = (~arrays.continues_word).astype(np.uint8)
    if words is not None and any(w is not None for w in words):
        # marks over the texts joined end to end: 1 where a word starts. Each text's words are
        # placed from the text's own start and only inside it, so words that do not add up to
        # their text (jieba's are not checked) touch no other text's marks.
        lists = [w if w is not None else () for w in words]
        word_lengths = np.fromiter(map(len, chain.from_iterable(lists)), np.int64)
        counts = np.fromiter(map(len, lists), np.int64, len(lists))
        text_lengths = np.fromiter(map(len, texts), np.int64, len(texts))
        text_offsets = exclusive_cumsum(text_lengths)
        word_text = np.repeat(np.arange(len(texts)), counts)
        ends = exclusive_cumsum(word_lengths)
        within = ends[:-1] - ends[exclusive_cumsum(counts)[:-1]][word_text]  # from the text start
        inside = within < text_lengths[word_text]
        marks = np.zeros(int(text_offsets[-1]) + 1, dtype=np.uint8)
        marks[text_offsets[word_text[inside]] + within[inside]] = 1
        row = np.repeat(np.arange(len(texts)), arrays.lengths)
        from_words = marks[text_offsets[row] + arrays.starts]
        has_words = np.fromiter((w is not None for w in words), bool, len(words))
        starts = np.where(has_words[row], from_words, starts)
    starts[exclusive_cumsum(arrays.lengths)[:-1][arrays.lengths > 0]] = 1
    return starts


def _jieba_cut() -> Any:
    try:
        import jieba  # lazy: importing jieba costs ~1 s and a dictionary load
    except ImportError:
        raise UserError('word_segmenter "jieba" needs jieba; run `pip install jieba`') from None
    jieba.setLogLevel(logging.WARNING)
    return jieba.cut


def _check_segmenter(word_segmenter: str) -> None:
    if word_segmenter not in WORD_SEGMENTERS:
        raise UserError(
            f"unknown word_segmenter {word_segmenter!r}; expected one of {', '.join(WORD_SEGMENTERS)}"
        )


def _sentence_words(document: Document, word_segmenter: str) -> list[list[str]] | None:
    """Per sentence, the words that decide word starts; None to trust the tokenizer."""
    if word_segmenter == "jieba":
        cut = _jieba_cut()
        return [list(cut(sentence)) for sentence in document.sentences]
    if word_segmenter == "auto" and document.words is not None:
        if len(document.words) != len(document.sentences):
            raise ValueError(
                f"Document has {len(document.sentences)} sentences but "
                f"{len(document.words)} word lists"
            )
        for sentence, words in zip(document.sentences, document.words, strict=True):
            if "".join(words) != sentence:
                raise ValueError(f"Document.words do not concatenate to the sentence {sentence!r}")
        return list(document.words)
    return None


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


@dataclass
class TokenStoreStats:
    """What a write produced, and what it dropped (sentences that tokenize to nothing)."""

    num_documents: int = 0
    num_sentences: int = 0
    num_tokens: int = 0
    num_unknown_tokens: int = 0
    dropped_sentences: int = 0
    dropped_documents: int = 0


# Characters per tokenizer batch: ~100 bytes of arrays a character on the array path (a few MB);
# a tokenizer read through `encode_batch` holds ~300 bytes of Python objects a token, ~100 MB at
# one token a character (Chinese). 4096 sentences of a usual corpus stay under it.
BATCH_CHARS = 1 << 18


def _sentence_slice(document: Document, first: int, last: int) -> Document:
    """Sentences first..last-1 of a document (with their words), or the document itself."""
    if first == 0 and last == len(document.sentences):
        return document
    words = document.words[first:last] if document.words is not None else None
    return Document(document.sentences[first:last], words)


def _tokenizer_kind(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "kind", type(tokenizer).__name__))


def _check_ids(ids: np.ndarray, vocab_size: int) -> None:
    """Never write an id the dtype would wrap or the embedding table lacks."""
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        bad = int(ids.max()) if int(ids.max()) >= vocab_size else int(ids.min())
        raise ValueError(f"tokenizer produced token id {bad} outside [0, vocab_size={vocab_size})")


def _npy_from_raw(raw_path: Path, npy_path: Path, count: int, chunk: int = 1 << 20) -> None:
    """Turn a raw int64 file into a .npy (whose header needs the length): the header numpy
    writes, then the raw bytes copied through a bounded buffer. No memory map: its pages would
    count as this process's memory, growing with the corpus."""
    header = {"descr": "<i8", "fortran_order": False, "shape": (count,)}
    with open(npy_path, "wb") as target:
        np.lib.format.write_array_header_1_0(target, header)
        with open(raw_path, "rb") as source:
            shutil.copyfileobj(source, target, chunk)
        target.flush()
        os.fsync(target.fileno())
    raw_path.unlink()


class _StoreWriter:
    """Appends documents to the files of one store; `close()` writes meta.json last."""

    def __init__(
        self,
        tokenizer: _Tokenizer,
        directory: str | Path,
        word_segmenter: str,
        batch_sentences: int,
        extra_meta: dict[str, Any] | None = None,
        batch_chars: int = BATCH_CHARS,
    ) -> None:
        _check_segmenter(word_segmenter)
        if batch_sentences < 1 or batch_chars < 1:
            raise ValueError(f"batch sizes must be positive, got {batch_sentences}, {batch_chars}")
        self.tokenizer = tokenizer
        self.directory = Path(directory)
        self.word_segmenter = word_segmenter
        self.batch_sentences = batch_sentences
        self.batch_chars = batch_chars
        self.extra_meta = extra_meta or {}
        self.vocab_size = int(tokenizer.vocab_size)
        self.dtype = token_dtype(self.vocab_size)
        self.unk_id = getattr(tokenizer, "unk_id", None)
        self.stats = TokenStoreStats()
        # documents, or slices of one, to tokenize next; True where the slice ends its document
        self.pending: list[tuple[Document, bool]] = []
        self.pending_sentences = 0
        self.pending_chars = 0
        # sentences written, those of a document whose end is still to come included
        self.kept_sentences = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        # An old meta.json would vouch for files about to be overwritten: remove it first.
        (self.directory / META_FILE).unlink(missing_ok=True)
        self.tokens_file = open(self.directory / TOKENS_FILE, "wb")
        self.word_starts_file = open(self.directory / WORD_STARTS_FILE, "wb")
        self.sentence_offsets_file = open(self._raw(SENTENCE_OFFSETS_FILE), "wb")
        self.document_offsets_file = open(self._raw(DOCUMENT_OFFSETS_FILE), "wb")
        self._write_offsets(self.sentence_offsets_file, [0])
        self._write_offsets(self.document_offsets_file, [0])

    def _raw(self, npy_name: str) -> Path:
        return self.directory / (npy_name + ".raw")

    @staticmethod
    def _write_offsets(file: BinaryIO, values: Any) -> None:
        file.write(np.ascontiguousarray(values, dtype=np.int64))

    def _full(self) -> bool:
        return (
            self.pending_sentences >= self.batch_sentences or self.pending_chars >= self.batch_chars
        )

    def add(self, document: Document) -> None:
        sentences = document.sentences
        if not sentences:
            self.stats.dropped_documents += 1
            return
        chars = sum(map(len, sentences))
        if (
            self.pending_sentences + len(sentences) < self.batch_sentences
            and self.pending_chars + chars < self.batch_chars
        ):  # the usual case: the whole document fits in the batch
            self.pending.append((document, True))
            self.pending_sentences += len(sentences)
            self.pending_chars += chars
            return
        first = 0  # the first sentence not yet pending
        for index, sentence in enumerate(sentences):
            self.pending_sentences += 1
            self.pending_chars += len(sentence)
            if self._full() and index + 1 < len(sentences):  # the document goes on
                self.pending.append((_sentence_slice(document, first, index + 1), False))
                first = index + 1
                self.flush()
        self.pending.append((_sentence_slice(document, first, len(sentences)), True))
        if self._full():
            self.flush()

    def _words(self) -> list[list[str] | None] | None:
        """Per pending sentence, the words that decide its word starts (None: the tokenizer's
        flags); None when no pending sentence has words."""
        per_document = [
            _sentence_words(document, self.word_segmenter) for document, _ in self.pending
        ]
        if all(words is None for words in per_document):
            return None
        out: list[list[str] | None] = []
        for (document, _), words in zip(self.pending, per_document, strict=True):
            out.extend(words if words is not None else [None] * len(document.sentences))
        return out

    def flush(self) -> None:
        """Tokenize the pending documents in one batch and append them to the files."""
        if not self.pending:
            return
        sentences = [sentence for document, _ in self.pending for sentence in document.sentences]
        words = self._words()
        arrays = encode_arrays(self.tokenizer, sentences, with_starts=words is not None)
        starts = word_starts(arrays, sentences, words)
        _check_ids(arrays.ids, self.vocab_size)
        if self.unk_id is not None:
            self.stats.num_unknown_tokens += int(np.count_nonzero(arrays.ids == self.unk_id))
        self.tokens_file.write(arrays.ids.astype(self.dtype))
        self.word_starts_file.write(starts)

        # sentences with no token are dropped, documents with no sentence left too
        kept = arrays.lengths > 0
        self.stats.dropped_sentences += int(len(kept) - np.count_nonzero(kept))
        sentence_ends = self.stats.num_tokens + np.cumsum(arrays.lengths[kept])
        self.stats.num_tokens += len(arrays.ids)
        self._write_offsets(self.sentence_offsets_file, sentence_ends)
        # sentences kept so far after each pending slice, at the slices that end a document
        slice_sizes = np.fromiter((len(d.sentences) for d, _ in self.pending), np.int64)
        ends_document = np.fromiter((ends for _, ends in self.pending), bool)
        kept_so_far = self.kept_sentences + exclusive_cumsum(kept)
        document_ends = kept_so_far[exclusive_cumsum(slice_sizes)[1:][ends_document]]
        previous = np.concatenate([[self.stats.num_sentences], document_ends[:-1]])
        with_sentences = document_ends > previous
        self.stats.dropped_documents += int(len(document_ends) - np.count_nonzero(with_sentences))
        self._write_offsets(self.document_offsets_file, document_ends[with_sentences])
        self.stats.num_documents += int(np.count_nonzero(with_sentences))
        if len(document_ends):
            self.stats.num_sentences = int(document_ends[-1])
        self.kept_sentences = int(kept_so_far[-1])
        self.pending = []
        self.pending_sentences = self.pending_chars = 0

    def _files(self) -> tuple[BinaryIO, ...]:
        return (
            self.tokens_file,
            self.word_starts_file,
            self.sentence_offsets_file,
            self.document_offsets_file,
        )

    def abort(self) -> None:
        """Close the files after a failure; with no meta.json the folder is not a store."""
        for file in self._files():
            file.close()

    def close(self) -> TokenStoreStats:
        """Flush, make the data durable, then write meta.json atomically."""
        self.flush()
        for file in self._files():
            file.flush()
            os.fsync(file.fileno())
            file.close()
        _npy_from_raw(
            self._raw(SENTENCE_OFFSETS_FILE),
            self.directory / SENTENCE_OFFSETS_FILE,
            self.stats.num_sentences + 1,
        )
        _npy_from_raw(
            self._raw(DOCUMENT_OFFSETS_FILE),
            self.directory / DOCUMENT_OFFSETS_FILE,
            self.stats.num_documents + 1,
        )
        special_ids = {
            name: int(getattr(self.tokenizer, name))
            for name in _SPECIAL_ID_NAMES
            if getattr(self.tokenizer, name, None) is not None
        }
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "dtype": self.dtype.name,
            "vocab_size": self.vocab_size,
            "num_tokens": self.stats.num_tokens,
            "num_sentences": self.stats.num_sentences,
            "num_documents": self.stats.num_documents,
            "tokenizer": _tokenizer_kind(self.tokenizer),
            "special_ids": special_ids,
            "word_segmenter": self.word_segmenter,
            "stats": asdict(self.stats),
            **self.extra_meta,
        }
        atomic_write_json(self.directory / META_FILE, meta)
        return self.stats


def write_token_store(
    documents: Iterable[Document],
    tokenizer: _Tokenizer,
    directory: str | Path,
    *,
    word_segmenter: str = "auto",
    batch_sentences: int = 4096,
    batch_chars: int = BATCH_CHARS,
) -> TokenStoreStats:
    """Tokenize `documents` into a token store at `directory` (created or overwritten), at most
    `batch_sentences` sentences or about `batch_chars` characters at a time.

    Sentences that tokenize to no tokens are dropped, and documents left with no sentences.
    """
    writer = _StoreWriter(
        tokenizer, directory, word_segmenter, batch_sentences, batch_chars=batch_chars
    )
    try:
        for document in documents:
            writer.add(document)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _read_meta(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise UserError(f"{directory}: no such folder; expected a token store (run prepare)")
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise UserError(
            f"{directory}: not a token store, {META_FILE} is missing "
            "(an interrupted prepare leaves none); run prepare again"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{meta_path}: unreadable ({error}); expected token store JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise UserError(f'{meta_path}: expected "format": "{FORMAT_NAME}"')
    if meta.get("version") != FORMAT_VERSION:
        raise UserError(
            f"{meta_path}: format version {meta.get('version')}, expected {FORMAT_VERSION}; "
            "run prepare again with this selfsup"
        )
    return meta


def _open_array(path: Path, dtype: np.dtype, length: int) -> np.ndarray:
    """Memory-map a raw file, checking its size (a truncated copy fails here, not mid-run)."""
    if not path.is_file():
        raise UserError(f"{path}: missing from the token store; run prepare again")
    expected = length * dtype.itemsize
    if path.stat().st_size != expected:
        raise UserError(
            f"{path}: {path.stat().st_size} bytes, expected {expected}; run prepare again"
        )
    if length == 0:  # mmap cannot map an empty file
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(length,))


def _open_offsets(path: Path, length: int) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"{path}: missing from the token store; run prepare again")
    offsets = np.load(path, mmap_mode="r")
    if offsets.shape != (length,) or offsets.dtype != np.int64:
        raise UserError(
            f"{path}: shape {offsets.shape} {offsets.dtype}, expected ({length},) int64; "
            "run prepare again"
        )
    return offsets


class TokenStore:
    """A prepared corpus, memory-mapped: opening is instant and costs no RAM for the tokens."""

    def __init__(
        self,
        directory: Path,
        meta: dict[str, Any],
        tokens: np.ndarray,
        word_starts: np.ndarray,
        sentence_offsets: np.ndarray,
        document_offsets: np.ndarray,
    ) -> None:
        self.directory = directory
        self.meta = meta
        self.tokens = tokens  # (num_tokens,) uint16/uint32
        self.word_starts = word_starts  # (num_tokens,) uint8
        self.sentence_offsets = sentence_offsets  # (num_sentences + 1,) token index
        self.document_offsets = document_offsets  # (num_documents + 1,) sentence index
        self.num_tokens = int(meta["num_tokens"])
        self.num_sentences = int(meta["num_sentences"])
        self.num_documents = int(meta["num_documents"])
        self.vocab_size = int(meta["vocab_size"])

    @classmethod
    def open(cls, directory: str | Path) -> TokenStore:
        directory = Path(directory)
        meta = _read_meta(directory)
        dtype = np.dtype(meta["dtype"])
        num_tokens = int(meta["num_tokens"])
        return cls(
            directory,
            meta,
            _open_array(directory / TOKENS_FILE, dtype, num_tokens),
            _open_array(directory / WORD_STARTS_FILE, np.dtype(np.uint8), num_tokens),
            _open_offsets(directory / SENTENCE_OFFSETS_FILE, int(meta["num_sentences"]) + 1),
            _open_offsets(directory / DOCUMENT_OFFSETS_FILE, int(meta["num_documents"]) + 1),
        )

    def sentence_tokens(self, s: int) -> np.ndarray:
        """Token ids of sentence `s` (a view into the memory map)."""
        if not 0 <= s < self.num_sentences:
            raise IndexError(f"sentence {s} out of range [0, {self.num_sentences})")
        return self.tokens[self.sentence_offsets[s] : self.sentence_offsets[s + 1]]

    def document_sentences(self, d: int) -> list[np.ndarray]:
        """Token arrays (views) of the sentences of document `d`."""
        if not 0 <= d < self.num_documents:
            raise IndexError(f"document {d} out of range [0, {self.num_documents})")
        first, last = int(self.document_offsets[d]), int(self.document_offsets[d + 1])
        return [self.sentence_tokens(s) for s in range(first, last)]

    def token_counts(self, chunk_tokens: int = 1 << 24) -> np.ndarray:
        """(vocab_size,) int64 frequency of every token id, counted in chunks of the memory map
        (the unigram baseline's distribution) so RAM stays bounded."""
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for begin in range(0, self.num_tokens, chunk_tokens):
            chunk = np.asarray(self.tokens[begin : begin + chunk_tokens])
            counts += np.bincount(chunk, minlength=self.vocab_size)[: self.vocab_size]
        return counts

    def __repr__(self) -> str:
        return (
            f"TokenStore({str(self.directory)!r}, documents={self.num_documents}, "
            f"sentences={self.num_sentences}, tokens={self.num_tokens}, vocab={self.vocab_size})"
        )


# ---------------------------------------------------------------------------------------------
# Train / held-out split
# ---------------------------------------------------------------------------------------------


def is_heldout(document_index: int, seed: int, heldout_fraction: float) -> bool:
    """Whether a document goes to the held-out split: a seeded hash of its index, uniform in
    [0, 1), below the fraction. Depends on nothing else, so the split streams and is stable."""
    digest = hashlib.blake2b(f"{seed}:{document_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < heldout_fraction


def _split_documents(
    documents: Iterable[Document], seed: int, heldout_fraction: float
) -> Iterator[tuple[bool, Document]]:
    """(held out?, document) for each document with at least one sentence."""
    for index, document in enumerate(documents):
        if document.sentences:
            yield is_heldout(index, seed, heldout_fraction), document


def prepare_corpus(
    documents: Iterable[Document],
    tokenizer: _Tokenizer,
    directory: str | Path,
    *,
    heldout_fraction: float = 0.01,
    min_heldout_documents: int = 1,
    seed: int = 0,
    word_segmenter: str = "auto",
    batch_sentences: int = 4096,
) -> tuple[TokenStore, TokenStore]:
    """Tokenize a corpus into `directory/train` and `directory/valid`, split by document.

    A document is held out when `is_heldout(index, seed, heldout_fraction)`. On a small corpus
    that may pick fewer than `min_heldout_documents`; so the first `min_heldout_documents`
    documents bound for train are kept back in memory and, at the end, as many of them as are
    missing move to valid (in corpus order; the rest go to the end of train). With the default
    of 1 that is document 0 when no document was picked. Deterministic for a given seed.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise UserError(f"heldout_fraction {heldout_fraction}: expected a number in [0, 1)")
    if min_heldout_documents < 0:
        raise UserError(f"min_heldout_documents {min_heldout_documents}: expected >= 0")
    directory = Path(directory)
    split_meta = {"heldout_fraction": heldout_fraction, "seed": seed}
    writers = {
        split: _StoreWriter(
            tokenizer,
            directory / split,
            word_segmenter,
            batch_sentences,
            {**split_meta, "split": split},
        )
        for split in ("train", "valid")
    }
    try:
        kept_back: list[Document] = []
        num_heldout = 0
        for heldout, document in _split_documents(documents, seed, heldout_fraction):
            if heldout:
                writers["valid"].add(document)
                num_heldout += 1
            elif len(kept_back) < min_heldout_documents:
                kept_back.append(document)
            else:
                writers["train"].add(document)
        missing = max(0, min_heldout_documents - num_heldout)
        for document in kept_back[:missing]:
            writers["valid"].add(document)
        for document in kept_back[missing:]:
            writers["train"].add(document)
        valid_stats = writers["valid"].close()
        train_stats = writers["train"].close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    if valid_stats.num_documents < min_heldout_documents or train_stats.num_documents == 0:
        raise UserError(
            f"{directory}: corpus too small to split, {train_stats.num_documents} train and "
            f"{valid_stats.num_documents} held-out documents; expected at least 1 train and "
            f"{min_heldout_documents} held-out documents with tokens (in a .txt corpus a blank "
            "line ends a document)"
        )
    return TokenStore.open(directory / "train"), TokenStore.open(directory / "valid")
