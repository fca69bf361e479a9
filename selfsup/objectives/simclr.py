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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.config import option
from selfsup.models.vision import MLPHead, VisionModelConfig, build_backbone
from selfsup.objectives.base import LossTerm, StepOutput
from selfsup.objectives.chunked import encode_in_chunks


@dataclass
class SimCLRConfig:
    temperature: float = option(
        0.5, "NT-Xent temperature tau (SimCLR's CIFAR-10 runs: 0.5; solo-learn: 0.2)"
    )


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, P) embeddings of view 1 and view 2 -> (loss summed over the 2N anchors, how many
    anchors rank their positive first among the other 2N - 1 views)."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2N, P), cosine similarity below
    sim = z @ z.T / temperature  # (2N, 2N)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)  # (2N,)
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
        z = encode_in_chunks(self, self.embed, batch["views"], self.chunk_size)  # (2, N, P)
        loss_sum, correct = nt_xent(z[0], z[1], self.temperature)
        return StepOutput({"simclr": LossTerm(loss_sum, 2 * z.shape[1], correct)})
