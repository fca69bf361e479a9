"""SimCLR (Chen et al. 2020): two views of each image, a backbone and a projection head, and the
NT-Xent loss over the 2N views of the whole batch.

Shape legend: N images, C channels, H x W pixels, F feature width, P projection width.

"Given a set {x_k} including a positive pair of examples x_i and x_j, the contrastive prediction
task aims to identify x_j in {x_k}_{k != i} for a given x_i ... We randomly sample a minibatch of N
examples and define the contrastive prediction task on pairs of augmented examples derived from
the minibatch, resulting in 2N data points. ... we treat the other 2(N - 1) augmented examples
within a minibatch as negative examples."

  l(i, j) = -log [ exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) ]

summed over all 2N anchors (the trainer divides by 2N). A batch larger than memory is split into
micro-batches of `chunk_size` images whose embeddings are computed under gradient caching
(selfsup/objectives/chunked.py), so the negatives always span the whole batch.

Several processes: each embeds its share of the batch (selfsup/batch.py), gathers every rank's
embeddings with a gradient (`distributed.gather_rows`) and sums the loss of its own anchors
against all 2N views: the negatives are the global batch, as in one process (SimCLR's own code
concatenates the projections across TPU replicas the same way), and the gradients reach every
rank's images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.batch import per_rank
from selfsup.distributed import gather_rows
from selfsup.models.vision import MLPHead, VisionModelConfig, build_backbone
from selfsup.objectives.base import LossTerm, StepOutput
from selfsup.objectives.chunked import encode_in_chunks
from selfsup.objectives.simclr_config import SimCLRConfig


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, anchors: slice | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, P) embeddings of view 1 and view 2 -> (loss summed over the anchors, how many anchors
    rank their positive first among the other 2N - 1 views). The anchors are both views of every
    image, or of the images `anchors` selects (a rank's own, against every rank's views)."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2N, P), cosine similarity below
    rows = torch.arange(2 * n, device=z.device)  # (A,) the anchors' rows of z
    if anchors is not None:
        rows = torch.cat([rows[:n][anchors], rows[n:][anchors]])
    sim = (z if anchors is None else z[rows]) @ z.T / temperature  # (A, 2N)
    sim = sim.masked_fill(F.one_hot(rows, 2 * n).bool(), float("-inf"))  # not itself
    positive = (rows + n) % (2 * n)  # (A,) the other view of the same image
    loss_sum = F.cross_entropy(sim, positive, reduction="sum")
    return loss_sum, (sim.argmax(dim=1) == positive).sum()


class SimCLR(nn.Module):
    """Backbone + projection head; batch["views"] (2, N, C, H, W) -> StepOutput("simclr")."""

    whole_step = True  # negatives span the step's whole batch: micro-batches run inside

    def __init__(self, model: VisionModelConfig, cfg: SimCLRConfig, chunk_size: int) -> None:
        super().__init__()
        self.backbone = build_backbone(model)
        self.projector = MLPHead(
            self.backbone.num_features, model.proj_hidden, model.proj_dim, model.norm
        )
        self.temperature = cfg.temperature
        self.chunk_size = chunk_size

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))  # (B, C, H, W) -> (B, F) -> (B, P)

    def item_counts(self, batch: dict) -> dict[str, int]:
        return {"simclr": 2 * batch["views"].shape[1]}  # every view is an anchor

    def forward(self, batch: dict) -> StepOutput:
        chunk = per_rank(batch, self.chunk_size)  # this rank's share of each micro-batch
        z = encode_in_chunks(self, self.embed, batch["views"], chunk)  # (2, n, P): its images
        z, first = gather_rows(z, batch, dim=1)  # (2, N, P): every rank's
        n = batch["views"].shape[1]
        loss_sum, correct = nt_xent(z[0], z[1], self.temperature, slice(first, first + n))
        return StepOutput({"simclr": LossTerm(loss_sum, 2 * n, correct)})
