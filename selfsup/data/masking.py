"""Masking for masked language modelling (BERT): which tokens to hide and what to put instead.

Shape legend: B batch, T tokens, R ids a random replacement is drawn from.

Devlin et al. 2019, section 3.1: "we mask 15% of all WordPiece tokens in each sequence at random
[...] If the i-th token is chosen, we replace the i-th token with (1) the [MASK] token 80% of the
time (2) a random token 10% of the time (3) the unchanged i-th token 10% of the time."
The lecture's two ways of hiding a token (a special [MASK] token, or a random token) are the
settings `replace_with_mask=1.0` and `replace_with_random=1.0`.

Choices made here:
- Each maskable token (or whole word, with `whole_word=True`) is chosen independently with
  probability `rate`, so the expected masked fraction is exactly `rate` and masks are cheap to draw
  for a whole batch at once. Special tokens and padding are never chosen.
- Whole-word masking chooses words, then masks every token of a chosen word; word boundaries come
  from the corpus (its own segmentation, or jieba) through the token store's `word_starts`, so a
  Chinese word like 共和国 is masked as its three characters together, never a whole clause.
- Masks are a pure function of the batch and a `torch.Generator`: the data pipeline seeds the
  generator from (seed, epoch, batch index), so a resumed run redraws exactly the same masks.

The prediction head and its loss are in `selfsup.objectives.mlm`.
"""

from __future__ import annotations

import torch

from selfsup.batch import IGNORE_INDEX
from selfsup.data.masking_config import MaskingConfig


def word_ids_from_starts(word_starts: torch.Tensor) -> torch.Tensor:
    """(B, T) 0/1 word-start flags -> (B, T) word index per token (tokens of one word share it)."""
    return torch.cumsum(word_starts.long(), dim=1)


def choose_positions(
    maskable: torch.Tensor,
    rate: float,
    generator: torch.Generator,
    word_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, T) bool of positions to predict; with word_ids, a word is chosen whole or not at all."""
    if word_ids is None:
        draw = torch.rand(maskable.shape, generator=generator)
        return (draw < rate) & maskable
    # one draw per word: index a per-(sequence, word) table of draws with each token's word id
    B, T = maskable.shape
    draws = torch.rand((B, T + 1), generator=generator)
    chosen_word = draws < rate
    return torch.gather(chosen_word, 1, word_ids.clamp(max=T)) & maskable


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    cfg: MaskingConfig,
    mask_id: int,
    random_token_ids: torch.Tensor,
    generator: torch.Generator,
    word_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch for MLM.

    input_ids (B, T); maskable (B, T) bool, False at special tokens and padding; random_token_ids
    (R,) the ids a "random token" is drawn from (the vocabulary minus special tokens).
    Returns (corrupted input ids (B, T), labels (B, T): original id at chosen positions, else -100).
    """
    chosen = choose_positions(maskable, cfg.rate, generator, word_ids if cfg.whole_word else None)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    action = torch.rand(input_ids.shape, generator=generator)
    to_mask = chosen & (action < cfg.replace_with_mask)
    to_random = chosen & ~to_mask & (action < cfg.replace_with_mask + cfg.replace_with_random)
    picks = torch.randint(len(random_token_ids), input_ids.shape, generator=generator)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    corrupted = torch.where(to_random, random_token_ids[picks], corrupted)
    return corrupted, labels
