"""BYOL (Grill et al. 2020): an online network predicts a slowly moving target network's
projection of the other view. No negatives.

Shape legend: N images, C channels, H x W pixels, F feature width, P projection width.

"The online network is defined by a set of weights theta and is comprised of three stages: an
encoder f_theta, a projector g_theta and a predictor q_theta. The target network has the same
architecture as the online network, but uses a different set of weights xi ... xi <- tau xi +
(1 - tau) theta." The loss is "the mean squared error between the normalized predictions and
target projections", 2 - 2 cos(q(z), z'), symmetrised by swapping the views; "the exponential
moving average parameter tau starts from tau_base and is increased to one during training":
tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, with k the current step and K the last.

The target is a submodule without gradients: its weights (and batch-norm statistics) are in the
model's state dict, so checkpoints hold it and resuming continues it exactly. The trainer calls
`update_target` after every optimizer step (its `after_step` hook). Deviation: the papers train
with LARS; selfsup's one loop uses AdamW (`train.*`).

Several processes: the loss of an image needs no other image, so each rank sums its share's
(selfsup/batch.py). The target's weights stay identical on every rank with no communication of
their own: their update reads only the online weights, which the gradient all-reduce keeps
identical. (Its batch-norm running statistics, used only in evaluation, are rank 0's under DDP,
which broadcasts buffers at every forward, or global with model.norm=syncbatch.)
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.batch import per_rank
from selfsup.models.vision import MLPHead, VisionModelConfig, build_backbone
from selfsup.objectives.base import LossTerm, StepOutput
from selfsup.objectives.byol_config import BYOLConfig
from selfsup.objectives.chunked import encode_in_chunks


def target_decay(step: int, total_steps: int, tau_base: float) -> float:
    """tau after optimizer step `step` (0-based k) of `total_steps` (K)."""
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0


def regression_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(N, P) predictions and target projections -> (N,) 2 - 2 cos(p, z)."""
    return 2.0 - 2.0 * (F.normalize(p.float(), dim=1) * F.normalize(z.float(), dim=1)).sum(dim=1)


class BYOL(nn.Module):
    """Online backbone + projector + predictor, EMA target backbone + projector."""

    whole_step = True  # one pass over the step's batch, micro-batched inside (as SimCLR)

    def __init__(
        self, model: VisionModelConfig, cfg: BYOLConfig, chunk_size: int, total_steps: int
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(model)
        self.projector = MLPHead(
            self.backbone.num_features, model.proj_hidden, model.proj_dim, model.norm
        )
        self.predictor = MLPHead(model.proj_dim, model.proj_hidden, model.proj_dim, model.norm)
        self.target = nn.ModuleDict(
            {"backbone": copy.deepcopy(self.backbone), "projector": copy.deepcopy(self.projector)}
        )
        self.target.requires_grad_(False)
        self.tau_base, self.total_steps, self.chunk_size = cfg.tau_base, total_steps, chunk_size

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.projector(self.backbone(x)))  # (B, C, H, W) -> (B, P)

    def embed_target(self, x: torch.Tensor) -> torch.Tensor:
        return self.target["projector"](self.target["backbone"](x))  # (B, C, H, W) -> (B, P)

    def item_counts(self, batch: dict) -> dict[str, int]:
        return {"byol": batch["views"].shape[1]}  # one symmetric loss per image

    def forward(self, batch: dict) -> StepOutput:
        views = batch["views"]  # (2, N, C, H, W)
        chunk = per_rank(batch, self.chunk_size)  # this rank's share of each micro-batch
        p = encode_in_chunks(self, self.embed, views, chunk)  # (2, N, P)
        with torch.no_grad():
            z = encode_in_chunks(self, self.embed_target, views, chunk)
        loss = regression_loss(p[0], z[1]) + regression_loss(p[1], z[0])  # (N,)
        return StepOutput({"byol": LossTerm(loss.sum(), views.shape[1])})

    @torch.no_grad()
    def update_target(self, step: int) -> float:
        """xi <- tau xi + (1 - tau) theta after optimizer step `step` (1-based); returns tau."""
        tau = target_decay(step - 1, self.total_steps, self.tau_base)
        for online, name in ((self.backbone, "backbone"), (self.projector, "projector")):
            for o, t in zip(online.parameters(), self.target[name].parameters()):
                t.mul_(tau).add_(o.detach(), alpha=1.0 - tau)
        return tau
