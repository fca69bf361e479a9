"""Masked language modelling (BERT): hide some tokens, predict them from both sides.

Shape legend: B batch, T tokens, C width, V vocabulary, M masked positions in the batch.

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
- The vocabulary projection runs only at masked positions (sparse prediction): about 7x less
  compute in the output layer at 15% masking, the same loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.config import option
from selfsup.errors import UserError

IGNORE_INDEX = -100  # label of positions that carry no loss (PyTorch's cross_entropy default)


@dataclass
class MaskingConfig:
    rate: float = option(0.15, "fraction of tokens chosen for prediction (BERT: 0.15)")
    replace_with_mask: float = option(0.8, "share of chosen tokens replaced by [MASK] (BERT: 0.8)")
    replace_with_random: float = option(
        0.1, "share replaced by a random token (BERT: 0.1); the rest stay unchanged"
    )
    whole_word: bool = option(
        False, "choose whole words (corpus or jieba segmentation), not single tokens"
    )

    def validate(self) -> None:
        if not 0.0 < self.rate < 1.0:
            raise UserError(f"masking.rate must be in (0, 1), got {self.rate}")
        if self.replace_with_mask < 0 or self.replace_with_random < 0:
            raise UserError(
                "masking.replace_with_mask and masking.replace_with_random must be >= 0"
            )
        if self.replace_with_mask + self.replace_with_random > 1.0 + 1e-9:
            raise UserError(
                "masking.replace_with_mask + masking.replace_with_random must be <= 1 "
                f"(got {self.replace_with_mask} + {self.replace_with_random})"
            )


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


class MaskedLMHead(nn.Module):
    """BERT's prediction head: dense + GELU + LayerNorm, then a projection onto the vocabulary
    whose weight is the input embedding matrix (tied, as in BERT) plus a per-token bias."""

    def __init__(self, hidden_size: int, vocab_size: int, eps: float) -> None:
        super().__init__()
        self.transform = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden_states: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., V) logits. The tied weight is passed in, not stored, so a state dict
        holds it once (safetensors refuses shared tensors)."""
        h = self.norm(F.gelu(self.transform(hidden_states)))
        return F.linear(h, word_embeddings, self.bias)


@dataclass
class MaskedLMResult:
    loss_sum: torch.Tensor  # summed over masked positions (normalised by the trainer)
    num_masked: int
    num_correct: torch.Tensor
    logits: torch.Tensor  # (M, V) at the masked positions only


def masked_lm_loss(
    head: MaskedLMHead,
    hidden_states: torch.Tensor,
    word_embeddings: torch.Tensor,
    labels: torch.Tensor,
) -> MaskedLMResult:
    """Cross entropy at the masked positions only, with the projection computed only there."""
    where = labels != IGNORE_INDEX  # (B, T)
    targets = labels[where]  # (M,)
    logits = head(hidden_states[where], word_embeddings)  # (M, C) -> (M, V)
    loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
    correct = (logits.argmax(-1) == targets).sum()
    return MaskedLMResult(loss_sum, int(targets.numel()), correct, logits)
