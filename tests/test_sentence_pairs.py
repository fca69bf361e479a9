"""NSP / SOP pair construction: balanced labels, SOP pairs adjacent, NSP negatives from elsewhere."""

import numpy as np

from selfsup.batch import IGNORE_INDEX
from selfsup.data.sentence_pairs import (
    IN_ORDER,
    IS_NEXT,
    NOT_NEXT,
    SWAPPED,
    choose_split,
    sample_pair,
)

# 30 documents of 5 sentences of 10 tokens: document d covers tokens [50 d, 50 d + 50)
DOC_RANGES = np.array([[50 * d, 50 * d + 50] for d in range(30)])


def _starts_of(d):
    return np.arange(50 * d, 50 * d + 50, 10)


def _draw(n, nsp, sop, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        d = i % 30
        boundaries = np.append(_starts_of(d)[:4], 50 * d + 40)  # 4 sentences of the document
        out.append((d, sample_pair(boundaries, d, DOC_RANGES, 60, rng, nsp, sop, _starts_of)))
    return out


def test_sop_pairs_adjacent_and_balanced():
    pairs = _draw(4000, nsp=False, sop=True)
    labels = np.array([p.sop_label for _, p in pairs])
    assert abs((labels == SWAPPED).mean() - 0.5) < 0.03
    for d, p in pairs:
        assert p.nsp_label == IGNORE_INDEX
        first, second = (p.a, p.b) if p.sop_label == IN_ORDER else (p.b, p.a)
        assert first[1] == second[0], "SOP segments must be adjacent"
        assert 50 * d <= first[0] and second[1] <= 50 * d + 50, "same document"
        assert (first[1] - 50 * d) % 10 == 0, "split on a sentence boundary"


def test_nsp_balanced_and_negatives_from_other_documents():
    pairs = _draw(4000, nsp=True, sop=False)
    labels = np.array([p.nsp_label for _, p in pairs])
    assert abs((labels == NOT_NEXT).mean() - 0.5) < 0.03
    for d, p in pairs:
        assert p.sop_label == IGNORE_INDEX
        if p.nsp_label == IS_NEXT:
            assert p.a[1] == p.b[0]
        else:
            other = p.b[0] // 50
            assert other != d
            assert p.b[1] <= DOC_RANGES[other, 1], "B stays inside its document"
        assert (p.a[1] - p.a[0]) + (p.b[1] - p.b[0]) <= 60, "budget respected"
        assert p.b[1] > p.b[0] and p.a[1] > p.a[0]


def test_nsp_and_sop_together_are_consistent():
    for _, p in _draw(2000, nsp=True, sop=True):
        if p.sop_label == SWAPPED:
            assert p.nsp_label == NOT_NEXT and p.b[1] == p.a[0]
        elif p.sop_label == IN_ORDER:
            assert p.nsp_label == IS_NEXT and p.a[1] == p.b[0]
        else:
            assert p.nsp_label == NOT_NEXT


def test_single_sentence_is_split_inside():
    rng = np.random.default_rng(0)
    splits = {choose_split(np.array([100, 110]), rng) for _ in range(500)}
    assert splits == set(range(101, 110))
    assert choose_split(np.array([5, 6]), rng) is None
