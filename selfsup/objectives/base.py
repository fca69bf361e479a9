"""The contract between objectives and the training loop.

An objective turns a batch into `StepOutput`: per loss term, the loss *summed* over the items it
covers (masked tokens, sentence pairs, images) and how many items that was. The model also says in
advance how many items each term will cover (`model.item_counts(batch)`, read from the labels), so
the trainer can divide every micro-batch's sum by the total over all micro-batches of the step
before it calls backward: the gradient with accumulation equals the gradient of one big batch,
even when micro-batches hold different numbers of masked tokens (selfsup/batch.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LossTerm:
    loss_sum: torch.Tensor  # scalar, summed over `count` items
    count: int
    num_correct: torch.Tensor | None = None  # for an accuracy, when the term is a classification
    num_top5: torch.Tensor | None = None  # items whose label is among the 5 highest scores


@dataclass
class StepOutput:
    terms: dict[str, LossTerm] = field(default_factory=dict)

    def total_loss(self, normalizers: dict[str, int]) -> torch.Tensor:
        """Sum over terms of loss_sum / normalizer (the item count over the whole step)."""
        return sum(t.loss_sum / max(normalizers[name], 1) for name, t in self.terms.items())
