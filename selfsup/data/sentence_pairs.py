"""Sentence pairs for next sentence prediction and sentence order prediction: segments A and B of
an instance, and their labels.

NSP (Devlin et al. 2019, 3.1): "when choosing the sentences A and B for each pretraining example,
50% of the time B is the actual next sentence that follows A (labeled as IsNext), and 50% of the
time it is a random sentence from the corpus (labeled as NotNext)." We draw B from another
*document*, so a NotNext pair never happens to be a true continuation.

SOP (Lan et al. 2020, ALBERT 4.1): "uses as positive examples [...] two consecutive segments from
the same document, and as negative examples the same two consecutive segments but with their
order swapped." Topic cues cannot solve it, unlike NSP.

Both may be on at once: B is first drawn as NSP says; when it is the true continuation, the pair is
swapped half the time for SOP (a swapped pair is also NotNext, since B then precedes A). When B is
random, the SOP label is ignored.

A pair is a set of token ranges into the token store: sampling is a pure function of the instance
and a numpy Generator, so a resumed run draws the same pairs. The head and loss on the [CLS]
vector are in `selfsup.objectives.sentence_pairs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selfsup.batch import IGNORE_INDEX

PAIR_OBJECTIVES = frozenset({"nsp", "sop"})  # the objectives that read a pair, not one segment
IS_NEXT, NOT_NEXT = 0, 1  # NSP labels, the convention of BERT's checkpoints
IN_ORDER, SWAPPED = 0, 1  # SOP labels


@dataclass(frozen=True)
class PairSample:
    a: tuple[int, int]  # token range [start, end) of segment A in the store
    b: tuple[int, int]
    nsp_label: int  # IS_NEXT / NOT_NEXT, or -100 when NSP is off
    sop_label: int  # IN_ORDER / SWAPPED, or -100 when SOP is off or B is random


def choose_split(boundaries: np.ndarray, rng: np.random.Generator) -> int | None:
    """Where A ends and B starts inside an instance.

    boundaries: token indices [s0, s1, ..., end] of the instance's sentence starts and its end.
    With two or more sentences the split falls on a sentence boundary, chosen uniformly; a single
    sentence is cut at a uniform token position. None if the instance has under two tokens.
    """
    if len(boundaries) > 2:
        return int(boundaries[rng.integers(1, len(boundaries) - 1)])
    start, end = int(boundaries[0]), int(boundaries[-1])
    if end - start < 2:
        return None
    return start + int(rng.integers(1, end - start))


def sample_pair(
    boundaries: np.ndarray,
    document: int,
    document_ranges: np.ndarray,
    max_tokens: int,
    rng: np.random.Generator,
    nsp: bool,
    sop: bool,
    sentence_starts_of: callable,
) -> PairSample | None:
    """Build one (A, B, labels) pair from an instance.

    document_ranges: (D, 2) token range of every document; sentence_starts_of(d) gives the token
    indices where document d's sentences start (a random B starts at one of them).
    max_tokens: the budget for A + B together (the window minus [CLS] and two [SEP]).
    """
    split = choose_split(boundaries, rng)
    if split is None:
        return None
    a = (int(boundaries[0]), split)
    b = (split, int(boundaries[-1]))
    nsp_label = sop_label = IGNORE_INDEX
    if nsp:
        nsp_label = IS_NEXT
        if rng.random() < 0.5:
            other = int(rng.integers(len(document_ranges) - 1))
            other += other >= document  # any document but this one
            starts = sentence_starts_of(other)
            b_start = int(starts[rng.integers(len(starts))])
            budget = max_tokens - (a[1] - a[0])
            b = (b_start, min(int(document_ranges[other, 1]), b_start + budget))
            nsp_label = NOT_NEXT
    if sop and nsp_label != NOT_NEXT:
        sop_label = IN_ORDER
        if rng.random() < 0.5:
            a, b = b, a
            sop_label = SWAPPED
            if nsp:
                nsp_label = NOT_NEXT
    return PairSample(a, b, nsp_label, sop_label)
