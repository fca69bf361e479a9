"""Embeddings of a large batch computed in micro-batches, with gradients, in the memory of one
micro-batch: gradient caching (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size
under Memory Limited Setup") done with activation checkpointing.

Shape legend: N images, C channels, H x W pixels, P embedding width.

A contrastive loss needs every embedding of the batch at once (the negatives of one image are all
the others), so the batch cannot be split into independent micro-batches as the trainer does for
text. Instead every micro-batch is run through the network under `torch.utils.checkpoint`: the
forward pass keeps only the embeddings (N x P numbers), the loss is computed over all of them, and
backward recomputes each micro-batch's activations one at a time to push the embedding gradients
into the weights. The loss and gradients equal those of one big forward pass whenever the network
treats images independently (group norm, no norm, or batch norm in eval mode). With batch norm in
training mode each micro-batch is normalised with its own statistics, as each GPU does in
multi-GPU training without SyncBN. The recomputation restores the batch-norm running statistics
afterwards, so they are updated once per micro-batch, as without checkpointing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


@contextmanager
def buffers_restored(module: nn.Module) -> Iterator[None]:
    saved = [b.detach().clone() for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, s in zip(module.buffers(), saved):
                b.copy_(s)


def encode_in_chunks(
    module: nn.Module,
    embed: Callable[[torch.Tensor], torch.Tensor],
    views: torch.Tensor,
    chunk: int,
) -> torch.Tensor:
    """views (2, N, C, H, W) -> embeddings (2, N, P). Each forward pass holds both views of `chunk`
    images (a micro-batch); `module` owns every buffer `embed` updates."""
    n = views.shape[1]
    if chunk >= n:
        z = embed(views.flatten(0, 1))  # (2N, C, H, W) -> (2N, P)
        return z.view(2, n, -1)
    out = []
    for start in range(0, n, chunk):
        x = views[:, start : start + chunk].flatten(0, 1)  # (2b, C, H, W)
        if torch.is_grad_enabled():
            z = checkpoint(
                embed,
                x,
                use_reentrant=False,
                context_fn=lambda: (nullcontext(), buffers_restored(module)),
            )
        else:
            z = embed(x)
        out.append(z.view(2, x.shape[0] // 2, -1))
    return torch.cat(out, dim=1)
