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


def _sentence_pieces(
    sentence_offsets: np.ndarray, document_offsets: np.ndarray, max_tokens: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every sentence cut into pieces of at most max_tokens tokens, in corpus order: (piece
    starts, piece ends, each piece's document, each piece's next-document piece index)."""
    lo, hi = sentence_offsets[:-1], sentence_offsets[1:]
    counts = -(-(hi - lo) // max_tokens)  # a long sentence becomes several pieces
    first = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=first[1:])
    within = np.arange(first[-1], dtype=np.int64) - np.repeat(first[:-1], counts)
    piece_lo = np.repeat(lo, counts) + max_tokens * within
    piece_hi = np.minimum(piece_lo + max_tokens, np.repeat(hi, counts))
    sentences_per_document = np.diff(document_offsets)
    document_of_sentence = np.repeat(np.arange(len(sentences_per_document)), sentences_per_document)
    piece_document = np.repeat(document_of_sentence, counts)
    document_end = first[document_offsets[1:]][piece_document]
    return piece_lo, piece_hi, piece_document, document_end


def _chain(following: np.ndarray, walk_bits: int = 17) -> np.ndarray:
    """The nodes 0, f(0), f(f(0)), ... below n of f = following (n + 1,), f(i) > i, f(n) = n.

    Pointer doubling: f^(2^k) for k up to K = bits(n) - walk_bits, a walk of f^(2^K) from 0 (at
    most ~2^walk_bits Python steps, whatever n), then each level fills in the nodes halfway
    between those it has: numpy over arrays, not a Python step or object per node."""
    n = len(following) - 1
    levels = [following.astype(np.int32 if n < 2**31 - 1 else np.int64)]
    for _ in range(max(0, n.bit_length() - walk_bits)):
        levels.append(levels[-1][levels[-1]])
    jump = levels[-1]
    # at most n // 2^K + 1 nodes a stride of 2^K apart (the chain has at most n nodes), written
    # into an array: one Python int alive at a time
    nodes = np.empty(n // 2 ** (len(levels) - 1) + 1, dtype=jump.dtype)
    count, node = 0, 0
    while node < n:
        nodes[count] = node
        count, node = count + 1, int(jump[node])
    nodes = nodes[:count]
    for level in reversed(levels[:-1]):  # the nodes 2^k steps after each one found so far
        both = np.empty(2 * len(nodes), dtype=nodes.dtype)
        both[0::2], both[1::2] = nodes, level[nodes]
        nodes = both[both < n]
    return nodes.astype(np.int64)


def build_instances(store: TokenStore, max_tokens: int) -> Instances:
    """Pack consecutive sentences of each document into instances of at most max_tokens tokens:
    an instance starts at a piece (a sentence, or a max_tokens piece of a longer one) and takes
    the pieces after it while they fit, never past its document's end.

    Vectorised: the piece each instance would end before follows from its first piece alone
    (np.searchsorted over the piece ends), so instance starts are the chain of that map from
    piece 0 (`_chain`); no Python object per sentence or document."""
    sentence_offsets = np.asarray(store.sentence_offsets, dtype=np.int64)
    document_offsets = np.asarray(store.document_offsets, dtype=np.int64)
    piece_lo, piece_hi, piece_document, document_end = _sentence_pieces(
        sentence_offsets, document_offsets, max_tokens
    )
    n = len(piece_lo)
    following = np.empty(n + 1, dtype=np.int64)
    following[:n] = np.minimum(
        np.searchsorted(piece_hi, piece_lo + max_tokens, side="right"), document_end
    )
    following[n] = n
    first = _chain(following)
    return Instances(
        piece_lo[first],
        piece_hi[following[first] - 1],
        piece_document[first],
        np.append(first, n),
        piece_lo,
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
        every_id = np.arange(store.vocab_size, dtype=np.int64)
        self.random_token_ids = torch.from_numpy(
            every_id[~np.isin(every_id, np.fromiter(special.all, np.int64))]
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
