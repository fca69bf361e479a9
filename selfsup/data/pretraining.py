"""Batches for BERT pretraining, drawn from a memory-mapped token store.

Shape legend: B batch, T tokens (longest sequence in the batch; padding added to it).

The corpus is cut once into *instances*: runs of consecutive sentences of one document that fit the
window (a sentence longer than the window is cut into window-sized pieces). Each epoch visits the
instances in a fresh seeded order.

Every micro-batch is a pure function of (seed, micro-batch index): the epoch and the order come from
the index, and the pairs and masks from generators seeded with (seed, epoch, index). That is a
counter-based generator: its whole state is the index, which the checkpoint stores, so a resumed
run sees exactly the batches, pairs and masks of an uninterrupted one, and no generator state can go
stale across a kill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from selfsup.batch import IGNORE_INDEX
from selfsup.data.masking import MaskingConfig, mask_tokens, word_ids_from_starts
from selfsup.data.order import EpochOrder
from selfsup.data.sentence_pairs import PAIR_OBJECTIVES, sample_pair
from selfsup.data.token_store import TokenStore
from selfsup.errors import UserError

EVAL_SEED_OFFSET = 1_000_003  # evaluation draws its own fixed pairs and masks


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    cls: int
    sep: int
    mask: int
    all: frozenset[int]


@dataclass
class Instances:
    """Instance i covers tokens [starts[i], ends[i]) of document documents[i]; its sentence pieces
    start at piece_starts[first_piece[i]:first_piece[i + 1]]."""

    starts: np.ndarray
    ends: np.ndarray
    documents: np.ndarray
    first_piece: np.ndarray
    piece_starts: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def boundaries(self, i: int) -> np.ndarray:
        pieces = self.piece_starts[self.first_piece[i] : self.first_piece[i + 1]]
        return np.append(pieces, self.ends[i])


def packed_instances(store: TokenStore, max_tokens: int) -> Instances:
    """Windows of exactly max_tokens tokens (the last may be shorter) over the whole token stream,
    across sentence and document boundaries (RoBERTa's FULL-SENTENCES, cramming's packing): no
    padding, so every token a step computes is one it learns from. For MLM alone; sentence-pair
    objectives need instances that end at sentence boundaries (`build_instances`)."""
    total = int(store.sentence_offsets[-1])
    starts = np.arange(0, total, max_tokens, dtype=np.int64)
    ends = np.minimum(starts + max_tokens, total)
    document_starts = np.asarray(store.sentence_offsets)[np.asarray(store.document_offsets)[:-1]]
    documents = np.searchsorted(document_starts, starts, side="right") - 1
    return Instances(starts, ends, documents, np.arange(len(starts) + 1), starts.copy())


def build_instances(store: TokenStore, max_tokens: int) -> Instances:
    """Pack consecutive sentences of each document into instances of at most max_tokens tokens."""
    sentence_offsets = np.asarray(store.sentence_offsets)
    document_offsets = np.asarray(store.document_offsets)
    starts, ends, documents, first_piece, piece_starts = [], [], [], [], []
    for d in range(store.num_documents):
        current_start = current_end = None
        for s in range(int(document_offsets[d]), int(document_offsets[d + 1])):
            lo, hi = int(sentence_offsets[s]), int(sentence_offsets[s + 1])
            for piece_lo in range(lo, hi, max_tokens):  # a long sentence becomes several pieces
                piece_hi = min(hi, piece_lo + max_tokens)
                if current_start is not None and piece_hi - current_start <= max_tokens:
                    current_end = piece_hi
                else:
                    if current_start is not None:
                        ends.append(current_end)
                    current_start, current_end = piece_lo, piece_hi
                    starts.append(piece_lo)
                    documents.append(d)
                    first_piece.append(len(piece_starts))
                piece_starts.append(piece_lo)
        if current_start is not None:
            ends.append(current_end)
    first_piece.append(len(piece_starts))
    as_int = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
    return Instances(
        as_int(starts), as_int(ends), as_int(documents), as_int(first_piece), as_int(piece_starts)
    )


def check_packing(objectives: list[str], pack: bool) -> None:
    """Packed windows cross sentence ends; NSP and SOP need pairs of whole sentences."""
    pairs = sorted(PAIR_OBJECTIVES & set(objectives))
    if pack and pairs:
        raise UserError(
            f"data.pack=true fills windows across sentence ends, but {' and '.join(pairs)} "
            f"need{'s' if len(pairs) == 1 else ''} pairs of whole sentences: add "
            "data.pack=false (or train mlm alone)"
        )


class BertPretrainingBatches:
    """Random access to pretraining micro-batches: `batch(i)` for training, `eval_batches()`."""

    def __init__(
        self,
        store: TokenStore,
        special: SpecialIds,
        objectives: list[str],
        masking: MaskingConfig,
        max_seq_len: int,
        batch_size: int,
        seed: int,
        pack: bool = False,
    ) -> None:
        self.store = store
        self.special = special
        self.masking = masking
        self.batch_size = batch_size
        self.seed = seed
        self.mlm = "mlm" in objectives
        self.nsp = "nsp" in objectives
        self.sop = "sop" in objectives
        self.pairs = bool(PAIR_OBJECTIVES & set(objectives))
        # [CLS] A [SEP] B [SEP] or [CLS] A [SEP]
        self.max_tokens = max_seq_len - (3 if self.pairs else 2)
        if self.max_tokens < 2:
            raise UserError(f"data.max_seq_len={max_seq_len} is too short for these objectives")
        check_packing(objectives, pack)
        build = packed_instances if pack else build_instances
        self.instances = build(store, self.max_tokens)
        if self.pairs:  # a pair needs two tokens to split
            keep = np.flatnonzero(self.instances.ends - self.instances.starts >= 2)
            self.order_pool = keep
        else:
            self.order_pool = np.arange(len(self.instances))
        if len(self.order_pool) == 0:
            raise UserError("corpus has no text long enough to build a training example")
        self._order = EpochOrder(self.order_pool, self.batch_size, self.seed)
        if self.nsp and store.num_documents < 2:
            raise UserError(
                "nsp needs a corpus of at least 2 documents (B is drawn from another one)"
            )
        sentence_offsets = np.asarray(store.sentence_offsets)
        document_offsets = np.asarray(store.document_offsets)
        self.document_ranges = np.stack(
            [sentence_offsets[document_offsets[:-1]], sentence_offsets[document_offsets[1:]]],
            axis=1,
        )
        self.random_token_ids = torch.tensor(
            [i for i in range(store.vocab_size) if i not in special.all], dtype=torch.long
        )

    @property
    def batches_per_epoch(self) -> int:
        return self._order.batches_per_epoch

    def _sentence_starts_of(self, d: int) -> np.ndarray:
        s0, s1 = self.store.document_offsets[d], self.store.document_offsets[d + 1]
        return np.asarray(self.store.sentence_offsets[s0:s1])

    def batch(self, index: int) -> dict:
        """Micro-batch number `index` of the whole run (epochs follow each other)."""
        chosen, epoch, position = self._order.rows(index)
        return self._assemble(chosen, [self.seed, epoch, position])

    def eval_batches(self, max_batches: int) -> list[dict]:
        """Fixed held-out batches: instances in corpus order, pairs and masks from a fixed seed."""
        out = []
        for b in range(min(max_batches, -(-len(self.order_pool) // self.batch_size))):
            chosen = self.order_pool[b * self.batch_size : (b + 1) * self.batch_size]
            out.append(self._assemble(chosen, [self.seed + EVAL_SEED_OFFSET, b]))
        return out

    def _assemble(self, chosen: np.ndarray, seed: list[int]) -> dict:
        rng = np.random.default_rng(seed)
        tokens, word_starts = self.store.tokens, self.store.word_starts
        rows_ids, rows_types, rows_starts, nsp_labels, sop_labels = [], [], [], [], []
        for i in chosen:
            segments = [(int(self.instances.starts[i]), int(self.instances.ends[i]))]
            nsp = sop = IGNORE_INDEX
            if self.pairs:
                pair = sample_pair(
                    self.instances.boundaries(i),
                    int(self.instances.documents[i]),
                    self.document_ranges,
                    self.max_tokens,
                    rng,
                    self.nsp,
                    self.sop,
                    self._sentence_starts_of,
                )
                segments, nsp, sop = [pair.a, pair.b], pair.nsp_label, pair.sop_label
            ids, types, starts = [self.special.cls], [0], [1]
            for segment_id, (lo, hi) in enumerate(segments):
                ids += tokens[lo:hi].tolist() + [self.special.sep]
                types += [segment_id] * (hi - lo + 1)
                starts += word_starts[lo:hi].tolist() + [1]
            types[0] = 0
            rows_ids.append(ids)
            rows_types.append(types)
            rows_starts.append(starts)
            nsp_labels.append(nsp)
            sop_labels.append(sop)
        return self._collate(rows_ids, rows_types, rows_starts, nsp_labels, sop_labels, seed)

    def _collate(self, rows_ids, rows_types, rows_starts, nsp_labels, sop_labels, seed) -> dict:
        B, T = len(rows_ids), max(map(len, rows_ids))
        input_ids = torch.full((B, T), self.special.pad, dtype=torch.long)
        token_type_ids = torch.zeros((B, T), dtype=torch.long)
        word_starts = torch.ones((B, T), dtype=torch.long)
        attention_mask = torch.zeros((B, T), dtype=torch.long)
        for r, (ids, types, starts) in enumerate(zip(rows_ids, rows_types, rows_starts)):
            n = len(ids)
            input_ids[r, :n] = torch.tensor(ids)
            token_type_ids[r, :n] = torch.tensor(types)
            word_starts[r, :n] = torch.tensor(starts)
            attention_mask[r, :n] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "num_tokens": int(attention_mask.sum()),
        }
        if self.mlm:
            special = torch.tensor(sorted(self.special.all))
            maskable = attention_mask.bool() & ~torch.isin(input_ids, special)
            generator = torch.Generator().manual_seed(
                int(np.random.default_rng(seed).integers(2**62))
            )
            batch["input_ids"], batch["mlm_labels"] = mask_tokens(
                input_ids,
                maskable,
                self.masking,
                self.special.mask,
                self.random_token_ids,
                generator,
                word_ids_from_starts(word_starts),
            )
        for name, labels, on in (("nsp", nsp_labels, self.nsp), ("sop", sop_labels, self.sop)):
            if on:
                batch[f"{name}_labels"] = torch.tensor(labels, dtype=torch.long)
        return batch
