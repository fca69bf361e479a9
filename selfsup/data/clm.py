"""Batches for GPT pretraining: the token store read as one stream of text, cut into windows.

Shape legend: B batch, T tokens per window.

The stream. GPT-2 trains on documents joined by an end-of-text token; here the token store's
sentences and documents are joined with the tokenizer's own special tokens, so every tokenizer
kind works unchanged:

    [CLS] sentence [SEP] sentence [SEP] [CLS] sentence [SEP] ...

[CLS] opens every document (the beginning-of-text token a prompt also starts with) and [SEP] ends
every sentence, which in a .txt corpus is a line: Tiny Shakespeare keeps its line breaks and
speaker turns. `encode_text` and `decode_ids` map text to this layout and back ("\\n" <-> [SEP],
a blank line <-> [SEP] [CLS]). The stream is written once beside the token store (2 or 4 bytes
per token) and memory-mapped, so a corpus larger than RAM trains, as nanoGPT's train.bin does.

Windows (nanoGPT's sampler): training batch i takes B windows of T + 1 tokens at offsets drawn by
a generator seeded with (seed, i), so a batch is a pure function of its index and resuming is
exact. Inputs are the first T tokens, labels the last T. Held-out batches tile the held-out
stream with windows that overlap by one token, so every held-out token but the first is predicted
exactly once and the perplexity covers the whole split (the last window is padded, labels -100).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from selfsup.batch import IGNORE_INDEX
from selfsup.data.token_store import TokenStore
from selfsup.errors import UserError

STREAM_CHUNK_DOCUMENTS = 1 << 14


def _interleave(
    tokens: np.ndarray, sentence_offsets: np.ndarray, document_offsets: np.ndarray, bos, eos
) -> np.ndarray:
    """Tokens of whole documents with bos before each document and eos after each sentence;
    offsets are local (sentence_offsets[0] == 0 and document_offsets[0] == 0)."""
    sentence_ends = sentence_offsets[1:]
    document_starts = sentence_offsets[document_offsets[:-1]]
    positions = np.concatenate([document_starts, sentence_ends])
    values = np.concatenate(
        [np.full(len(document_starts), bos), np.full(len(sentence_ends), eos)]
    ).astype(tokens.dtype)
    # a document start and the previous sentence end share a position: the [SEP] goes first
    order = np.lexsort((values == bos, positions))
    return np.insert(tokens, positions[order], values[order])


def clm_stream(store: TokenStore, bos_id: int, eos_id: int) -> np.ndarray:
    """All tokens of the store with bos_id before each document and eos_id after each sentence,
    memory-mapped from `clm_stream-<bos>-<eos>.npy` beside the store (nanoGPT's train.bin).

    The file is written once, a chunk of documents at a time in the store's token dtype, so a
    corpus larger than RAM trains, and a resumed run reuses it; it is rebuilt if the store was
    prepared again after it was written."""
    path = store.directory / f"clm_stream-{bos_id}-{eos_id}.npy"
    length = store.num_tokens + store.num_documents + store.num_sentences
    meta = store.directory / "meta.json"
    if path.exists() and path.stat().st_mtime >= meta.stat().st_mtime:
        stream = np.load(path, mmap_mode="r")
        if stream.shape == (length,) and stream.dtype == store.tokens.dtype:
            return stream
    fd, tmp = tempfile.mkstemp(dir=store.directory, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=store.tokens.dtype, shape=(length,))
        written = 0
        for first in range(0, store.num_documents, STREAM_CHUNK_DOCUMENTS):
            last = min(first + STREAM_CHUNK_DOCUMENTS, store.num_documents)
            documents = np.asarray(store.document_offsets[first : last + 1], dtype=np.int64)
            sentences = np.asarray(
                store.sentence_offsets[documents[0] : documents[-1] + 1], dtype=np.int64
            )
            tokens = np.asarray(store.tokens[sentences[0] : sentences[-1]])
            piece = _interleave(
                tokens, sentences - sentences[0], documents - documents[0], bos_id, eos_id
            )
            out[written : written + len(piece)] = piece
            written += len(piece)
        assert written == length, (written, length)
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return np.load(path, mmap_mode="r")


def encode_text(tokenizer, text: str, bos: bool = True) -> list[int]:
    """Text in the stream's layout: each line's tokens, [SEP] at each line break, [SEP] [CLS] at a
    blank line, and [CLS] in front (bos=True) as at the start of a training document."""
    ids = [tokenizer.cls_id] if bos else []
    paragraphs = text.split("\n\n")
    for p, paragraph in enumerate(paragraphs):
        if p:
            ids.append(tokenizer.cls_id)
        lines = paragraph.split("\n")
        for n, line in enumerate(lines):
            ids += tokenizer.encode(line).ids
            if n < len(lines) - 1 or (p < len(paragraphs) - 1 and line):
                ids.append(tokenizer.sep_id)
    return ids


def decode_ids(tokenizer, ids: list[int]) -> str:
    """The inverse of `encode_text`: [SEP] and a [CLS] after text become line breaks."""
    pieces: list[str] = []
    run: list[int] = []
    for i in [*ids, None]:
        if i is None or i in (tokenizer.sep_id, tokenizer.cls_id):
            pieces.append(tokenizer.decode(run, skip_special_tokens=True))
            run = []
            if i is not None and (pieces != [""] or i == tokenizer.sep_id):
                pieces.append("\n")
        else:
            run.append(i)
    return "".join(pieces)


def _window_batch(rows: list[np.ndarray], pad_id: int) -> dict:
    """Windows of up to T + 1 tokens -> inputs (B, T), labels (B, T), right-padded."""
    B, T = len(rows), max(len(r) for r in rows) - 1
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    for b, row in enumerate(rows):
        row = torch.as_tensor(row.astype(np.int64))
        input_ids[b, : len(row) - 1] = row[:-1]
        labels[b, : len(row) - 1] = row[1:]
    count = int((labels != IGNORE_INDEX).sum())
    return {"input_ids": input_ids, "labels": labels, "num_tokens": count}


class CausalLMBatches:
    """Random access to GPT training windows (`batch(i)`) and the held-out tiling."""

    def __init__(
        self, stream: np.ndarray, seq_len: int, batch_size: int, seed: int, pad_id: int
    ) -> None:
        if len(stream) < 2:
            raise UserError("corpus has too little text for next-token prediction (under 2 tokens)")
        self.stream = stream
        self.seq_len = min(seq_len, len(stream) - 1)  # a tiny corpus gives shorter windows
        self.batch_size = batch_size
        self.seed = seed
        self.pad_id = pad_id

    def batch(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        starts = rng.integers(0, len(self.stream) - self.seq_len, size=self.batch_size)
        return _window_batch([self.stream[s : s + self.seq_len + 1] for s in starts], self.pad_id)

    def eval_batches(self, max_batches: int) -> list[dict]:
        """The first `max_batches` batches of the held-out tiling (only their windows are cut:
        a window per seq_len tokens of the whole stream would be O(corpus) Python objects)."""
        windows = max(0, max_batches) * self.batch_size
        starts = range(0, len(self.stream) - 1, self.seq_len)[:windows]
        rows = [self.stream[s : s + self.seq_len + 1] for s in starts]
        return [
            _window_batch(rows[b : b + self.batch_size], self.pad_id)
            for b in range(0, len(rows), self.batch_size)
        ]


def _ngram_counts(stream: np.ndarray, vocab_size: int, chunk: int = 1 << 24):
    """Unigram counts (V,) and sparse bigram counts (sorted pair codes a * V + b, counts) of a
    (memory-mapped) stream, counted chunk by chunk so RAM stays bounded: a dense V x V table
    would be 0.5 GB at V = 8000."""
    unigram = np.zeros(vocab_size, dtype=np.float64)
    codes, counts = [], []
    for begin in range(0, len(stream), chunk):
        piece = np.asarray(stream[begin : begin + chunk + 1], dtype=np.int64)  # +1: the seam pair
        unigram += np.bincount(piece[:chunk], minlength=vocab_size)[:vocab_size]
        c, n = np.unique(piece[:-1] * vocab_size + piece[1:], return_counts=True)
        codes.append(c)
        counts.append(n)
    if not codes:
        return unigram, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    merged, inverse = np.unique(np.concatenate(codes), return_inverse=True)
    return unigram, merged, np.bincount(inverse, weights=np.concatenate(counts)).astype(np.int64)


def ngram_heldout_loss(
    train_stream: np.ndarray, batches: list[dict], vocab_size: int, order: int
) -> float:
    """Mean held-out cross entropy (nats) of a unigram (order 1) or bigram (order 2) model with
    add-one smoothing, counted on the training stream and scored on exactly the labelled
    positions of `batches`: the context-blind baselines next to the model's loss."""
    unigram, codes, pair_counts = _ngram_counts(train_stream, vocab_size)
    context_counts = unigram.copy()  # counts of each token as the first of a pair
    context_counts[int(train_stream[-1])] -= 1
    total, n = 0.0, 0
    for batch in batches:
        labels = batch["labels"].numpy()
        where = labels != IGNORE_INDEX
        targets = labels[where]
        if order == 1:
            p = (unigram[targets] + 1.0) / (unigram.sum() + vocab_size)
        else:
            previous = batch["input_ids"].numpy()[where]
            query = previous * vocab_size + targets
            found = np.minimum(np.searchsorted(codes, query), len(codes) - 1)
            count = np.where(codes[found] == query, pair_counts[found], 0)
            p = (count + 1.0) / (context_counts[previous] + vocab_size)
        total -= float(np.log(p).sum())
        n += len(targets)
    return total / max(n, 1)
