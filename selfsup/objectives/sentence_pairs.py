"""Sentence-pair objectives on the [CLS] vector: next sentence prediction (NSP) and sentence order
prediction (SOP). Both are two-class problems with one head each.

How pairs are built and labelled (B from another document for NSP, swapped segments for SOP) is a
data transform: `selfsup.data.sentence_pairs`. Here are the head and the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.batch import IGNORE_INDEX


class SentencePairHead(nn.Module):
    """A linear layer on the pooled [CLS] vector: two classes (NSP: is-next / not-next; SOP:
    in-order / swapped)."""

    def __init__(self, hidden_size: int, num_classes: int = 2) -> None:
        super().__init__()
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled)  # (B, C) -> (B, 2)


def pair_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int, torch.Tensor]:
    """(summed cross entropy, number of labelled pairs, number correct); -100 labels are skipped."""
    keep = labels != IGNORE_INDEX
    logits, labels = logits[keep], labels[keep]
    loss_sum = F.cross_entropy(logits.float(), labels, reduction="sum")
    return loss_sum, int(labels.numel()), (logits.argmax(-1) == labels).sum()
