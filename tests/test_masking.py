"""MLM masking: rates, the 80/10/10 split, special tokens, whole words, reproducibility."""

import pytest
import torch

from selfsup.batch import IGNORE_INDEX
from selfsup.data.masking import MaskingConfig, mask_tokens, word_ids_from_starts
from selfsup.errors import UserError

MASK_ID, VOCAB = 4, 1000
RANDOM_IDS = torch.arange(5, VOCAB)


def _batch(B=64, T=256):
    ids = torch.randint(5, VOCAB, (B, T))
    maskable = torch.ones(B, T, dtype=torch.bool)
    maskable[:, 0] = False  # [CLS]
    maskable[:, -1] = False  # [SEP]
    maskable[: B // 2, T // 2 :] = False  # padding in half the rows
    return ids, maskable


def test_rate_and_80_10_10_split():
    ids, maskable = _batch()
    corrupted, labels = mask_tokens(
        ids, maskable, MaskingConfig(), MASK_ID, RANDOM_IDS, torch.Generator().manual_seed(0)
    )
    chosen = labels != IGNORE_INDEX
    n = int(maskable.sum())
    rate = chosen.sum().item() / n
    assert abs(rate - 0.15) < 0.01  # ~12k maskable tokens: std of the rate ~0.003
    to_mask = (corrupted == MASK_ID) & chosen
    unchanged = (corrupted == ids) & chosen
    changed = chosen & ~to_mask & ~unchanged
    m = chosen.sum().item()
    assert abs(to_mask.sum().item() / m - 0.8) < 0.03
    # a random replacement equals the original with probability 1/995: count it as "unchanged"
    assert abs(changed.sum().item() / m - 0.1) < 0.02
    assert abs(unchanged.sum().item() / m - 0.1) < 0.02
    # labels hold the original token at chosen positions
    assert torch.equal(labels[chosen], ids[chosen])
    # never outside maskable positions, and the unchosen inputs are untouched
    assert not chosen[~maskable].any()
    assert torch.equal(corrupted[~chosen], ids[~chosen])
    # random replacements come from the non-special vocabulary
    assert (corrupted[changed] >= 5).all()


@pytest.mark.parametrize("mask_share,random_share", [(1.0, 0.0), (0.0, 1.0)])
def test_pure_mask_and_pure_random(mask_share, random_share):
    ids, maskable = _batch()
    cfg = MaskingConfig(replace_with_mask=mask_share, replace_with_random=random_share)
    corrupted, labels = mask_tokens(
        ids, maskable, cfg, MASK_ID, RANDOM_IDS, torch.Generator().manual_seed(1)
    )
    chosen = labels != IGNORE_INDEX
    if mask_share == 1.0:
        assert (corrupted[chosen] == MASK_ID).all()
    else:
        assert not (corrupted[chosen] == MASK_ID).any()
        assert (corrupted[chosen] != ids[chosen]).float().mean() > 0.99


def test_same_seed_same_masks_other_seed_other_masks():
    ids, maskable = _batch(8, 64)
    a = mask_tokens(
        ids, maskable, MaskingConfig(), MASK_ID, RANDOM_IDS, torch.Generator().manual_seed(7)
    )
    b = mask_tokens(
        ids, maskable, MaskingConfig(), MASK_ID, RANDOM_IDS, torch.Generator().manual_seed(7)
    )
    c = mask_tokens(
        ids, maskable, MaskingConfig(), MASK_ID, RANDOM_IDS, torch.Generator().manual_seed(8)
    )
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_whole_word_masking_masks_whole_words():
    B, T = 200, 40
    ids = torch.randint(5, VOCAB, (B, T))
    # words of 1 to 4 tokens, e.g. 中华人民共和国 | 成立 | 了
    starts = torch.zeros(B, T, dtype=torch.long)
    g = torch.Generator().manual_seed(3)
    for r in range(B):
        pos = 0
        while pos < T:
            starts[r, pos] = 1
            pos += int(torch.randint(1, 5, (1,), generator=g))
    maskable = torch.ones(B, T, dtype=torch.bool)
    maskable[:, 0] = False
    starts[:, 1] = 1  # [CLS] is its own word
    word_ids = word_ids_from_starts(starts)
    cfg = MaskingConfig(whole_word=True)
    _, labels = mask_tokens(
        ids, maskable, cfg, MASK_ID, RANDOM_IDS, torch.Generator().manual_seed(0), word_ids
    )
    chosen = labels != IGNORE_INDEX
    for r in range(B):
        for w in word_ids[r].unique():
            members = (word_ids[r] == w) & maskable[r]
            picked = chosen[r][members]
            assert picked.all() or not picked.any(), "a word was masked in part"
    rate = chosen.sum().item() / maskable.sum().item()
    assert abs(rate - 0.15) < 0.02


def test_bad_masking_config_is_a_user_error():
    with pytest.raises(UserError, match="replace_with_mask"):
        MaskingConfig(replace_with_mask=0.9, replace_with_random=0.2).validate()
    with pytest.raises(UserError, match="rate"):
        MaskingConfig(rate=0.0).validate()
