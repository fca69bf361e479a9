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

Several processes (selfsup/distributed.py) each build the same whole batch and keep their share,
`shard_batch(batch, rank, world_size, micro_batch)`. The rule, one for every data source:

- a batch's items lie along dimension 0 of every tensor, except `views` (2, N, C, H, W), whose
  items lie along dimension 1 (`ITEM_DIM`); every tensor holds the same N items;
- the N items are cut into micro-batches of `micro_batch` (train.batch_size) items, the last one
  possibly shorter, and rank r of W keeps the r-th of W equal consecutive slices of each: a
  text micro-batch is one such run, a SimCLR/BYOL step batch (grad_accum micro-batches) several,
  so each rank's own micro-batches are its shares of the very micro-batches of one process (batch
  norm, SyncBatchNorm over the ranks, sees the same images together);
- plain values (`num_tokens`) are left as they are: they describe the whole batch; the shard
  gets `shard = (rank, world_size)`, by which an objective that needs the whole batch (SimCLR's
  negatives) knows it holds a share, and gathers the others' (`distributed.gather_rows`);
- the item counts of loss terms are taken from the whole batch, before sharding, so every rank
  divides by the step's global totals with no communication.

A micro-batch whose size is not a multiple of the number of ranks cannot be cut evenly: a
UserError (train.batch_size must be a multiple of it).
"""

from __future__ import annotations

import torch

from selfsup.errors import UserError

IGNORE_INDEX = -100  # label of positions that carry no loss (PyTorch's cross_entropy default)


def count_labelled(labels: torch.Tensor) -> int:
    """Items that carry a loss in a label tensor: every entry that is not IGNORE_INDEX."""
    return int((labels != IGNORE_INDEX).sum())


ITEM_DIM = {"views": 1}  # (2, N, C, H, W): the two views of each image come first


def shard_batch(batch: dict, rank: int, world_size: int, micro_batch: int) -> dict:
    """Rank `rank`'s share of `batch`, by the rule in this module's docstring (the batch itself
    for one process)."""
    if world_size == 1:
        return batch
    sizes = {v.shape[ITEM_DIM.get(k, 0)] for k, v in batch.items() if isinstance(v, torch.Tensor)}
    if len(sizes) != 1:
        raise ValueError(f"a batch whose tensors hold different numbers of items: {sizes}")
    (n,) = sizes
    rows = []
    for start in range(0, n, micro_batch):
        size = min(micro_batch, n - start)
        if size % world_size:
            raise UserError(
                f"a micro-batch of {size} items cannot be split evenly over {world_size} "
                "processes; make train.batch_size (and a step's images) a multiple of their number"
            )
        share = size // world_size
        rows.append(torch.arange(start + rank * share, start + (rank + 1) * share))
    index = torch.cat(rows)
    shard = {
        k: v.index_select(ITEM_DIM.get(k, 0), index.to(v.device))
        if isinstance(v, torch.Tensor)
        else v
        for k, v in batch.items()
    }
    shard["shard"] = (rank, world_size)
    return shard


def per_rank(batch: dict, items: int) -> int:
    """How many of the whole batch's `items` this rank holds: all of them in a whole batch, a
    1/W share in a shard (a micro-batch's images, for gradient caching)."""
    return items // batch.get("shard", (0, 1))[1]
