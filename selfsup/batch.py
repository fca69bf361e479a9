"""The batch contract between data sources, objectives and the training loop.

A batch is a plain dict of tensors, built by a data source as a pure function of its index (so a
resumed run sees the very batches of an uninterrupted one). The loop reads two things from it and
leaves the rest to the model:

- labels use `IGNORE_INDEX` at positions that carry no loss (PyTorch's cross-entropy default), so
  one tensor says both what to predict and how many items a loss term covers;
- `batch["num_tokens"]` (optional) counts input tokens or images, for the throughput display.

How many items each loss term covers is the model's business, not the data source's: a model
passed to `selfsup.trainer.train` answers `item_counts(batch) -> {term: items}` (masked tokens,
sentence pairs, next tokens, images). The loop sums those over every micro-batch of a step before
any backward pass and divides each term's summed loss by its step total, so gradient accumulation
gives exactly the gradient of one large batch, however unevenly the masks fall (see
`objectives/base.py`). A data source therefore names no loss term.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # label of positions that carry no loss (PyTorch's cross_entropy default)


def count_labelled(labels: torch.Tensor) -> int:
    """Items that carry a loss in a label tensor: every entry that is not IGNORE_INDEX."""
    return int((labels != IGNORE_INDEX).sum())
