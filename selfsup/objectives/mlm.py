"""Masked language modelling (BERT): predict the hidden tokens from both sides.

Shape legend: B batch, T tokens, C width, V vocabulary, M masked positions in the batch.

Which tokens are hidden, and how (BERT's 80/10/10), is a data transform: `selfsup.data.masking`.
Here are the head and the loss. The vocabulary projection runs only at masked positions (sparse
prediction): about 7x less compute in the output layer at 15% masking, the same loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.batch import IGNORE_INDEX
from selfsup.memory import pad_prediction_rows


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
    num_top5: torch.Tensor  # the hidden token among the 5 most likely
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
    # rows padded to a multiple of 64, ignored by the loss: few buffer sizes, a flat CPU heap
    rows, row_targets = pad_prediction_rows(hidden_states[where], targets)  # (M', C), (M',)
    logits = head(rows, word_embeddings)  # (M', V)
    loss_sum = F.cross_entropy(logits.float(), row_targets, reduction="sum")
    logits = logits[: targets.numel()]  # (M, V): the masked positions
    with torch.no_grad():
        top5 = logits.topk(min(5, logits.shape[-1]), dim=-1).indices  # (M, 5)
        correct = (top5[:, 0] == targets).sum()
        in_top5 = (top5 == targets[:, None]).any(-1).sum()
    return MaskedLMResult(loss_sum, int(targets.numel()), correct, in_top5, logits)
