"""Batches for GPT pretraining: the token store read as one stream of text, cut into windows.

Shape legend: B batch, T tokens per window.

The stream. GPT-2 trains on documents joined by an end-of-text token; here the token store's
sentences and documents are joined with the tokenizer's own special tokens, so every tokenizer
kind works unchanged:

    [CLS] sentence [SEP] sentence [SEP] [CLS] sentence [SEP] ...

[CLS] opens every document (the beginning-of-text token a prompt also starts with) and [SEP] ends
every sentence, which in a .txt corpus is a line: Tiny Shakespeare keeps its line breaks and
speaker turns. `encode_text` and `decode_ids` map text to this layout and back ("\\n" <-> [SEP],
a blank line <-> [SEP] [CLS]). The stream is built in memory (2 or 4 bytes per token: 4 MB for
Tiny Shakespeare or People's Daily); a corpus larger than RAM would need it written to disk.

Windows (nanoGPT's sampler): training batch i takes B windows of T + 1 tokens at offsets drawn by
a generator seeded with (seed, i), so a batch is a pure function of its index and resuming is
exact. Inputs are the first T tokens, labels the last T. Held-out batches tile the held-out
stream with windows that overlap by one token, so every held-out token but the first is predicted
exactly once and the perplexity covers the whole split (the last window is padded, labels -100).
"""

from __future__ import annotations

import numpy as np
import torch

from selfsup.data.token_store import TokenStore
from selfsup.errors import UserError
from selfsup.objectives.mlm import IGNORE_INDEX


def clm_stream(store: TokenStore, bos_id: int, eos_id: int) -> np.ndarray:
    """All tokens of the store with bos_id before each document and eos_id after each sentence."""
    tokens = np.asarray(store.tokens, dtype=np.int64)
    sentence_ends = np.asarray(store.sentence_offsets[1:], dtype=np.int64)
    document_starts = np.asarray(store.sentence_offsets, dtype=np.int64)[
        np.asarray(store.document_offsets[:-1])
    ]
    positions = np.concatenate([document_starts, sentence_ends])
    values = np.concatenate(
        [np.full(len(document_starts), bos_id), np.full(len(sentence_ends), eos_id)]
    )
    # a document start and the previous sentence end share a position: the [SEP] goes first
    order = np.lexsort((values == bos_id, positions))
    return np.insert(tokens, positions[order], values[order])


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
    return {"input_ids": input_ids, "labels": labels, "counts": {"clm": count}, "num_tokens": count}


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
        starts = range(0, len(self.stream) - 1, self.seq_len)
        rows = [self.stream[s : s + self.seq_len + 1] for s in starts]
        return [
            _window_batch(rows[b : b + self.batch_size], self.pad_id)
            for b in range(0, min(len(rows), max_batches * self.batch_size), self.batch_size)
        ]


def ngram_heldout_loss(
    train_stream: np.ndarray, batches: list[dict], vocab_size: int, order: int
) -> float:
    """Mean held-out cross entropy (nats) of a unigram (order 1) or bigram (order 2) model with
    add-one smoothing, counted on the training stream and scored on exactly the labelled
    positions of `batches`: the context-blind baselines next to the model's loss."""
    train = np.asarray(train_stream, dtype=np.int64)
    unigram = np.bincount(train, minlength=vocab_size).astype(np.float64)
    # bigram counts kept sparse (sorted pair codes): a dense V x V table is 0.5 GB at V = 8000
    codes, pair_counts = np.unique(train[:-1] * vocab_size + train[1:], return_counts=True)
    context_counts = np.bincount(train[:-1], minlength=vocab_size).astype(np.float64)
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
