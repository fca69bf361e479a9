"""Vision backbones and the MLP heads of SimCLR and BYOL. Models return features; objectives make
losses of them (selfsup/objectives/simclr.py, byol.py).

Shape legend: B images, C channels, H x W pixels, F feature width, P projection width.

- `SmallCNN`: conv-norm-ReLU layers, width doubling after each 2x max-pool, then global average
  pooling: for 8x8 digits and 28x28 MNIST on a CPU (F = 8 * width).
- `ResNet18`: the CIFAR variant used by SimCLR's CIFAR-10 experiments and solo-learn: "we replace
  the first 7x7 Conv of stride 2 with 3x3 Conv of stride 1, and also remove the first max pooling
  operation" (Chen et al. 2020, appendix B.9); F = 512.
- `MLPHead`: Linear-BN-ReLU-Linear, SimCLR's projection head g(.) and BYOL's projector and predictor.

`norm` chooses batch norm (the papers' choice), group norm or none. Batch norm makes an image's
features depend on the other images of its forward pass; group norm does not, so a batch cut into
micro-batches gives exactly the features of one big batch (selfsup/objectives/simclr.py).
`syncbatch` is batch norm whose statistics span every process's share of a micro-batch
(torch's SyncBatchNorm: CUDA only), so several GPUs normalise as one process would; in one
process it is plain batch norm, with the same weights and statistics in the state dict.
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.models.vision_config import Norm, VisionModelConfig


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "syncbatch":
        return nn.SyncBatchNorm(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


def _conv(c_in: int, c_out: int, norm: Norm, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm == "none"),
        _norm(norm, c_out),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """A conv layer at full resolution, then three (2x max-pool while the side is above 4, conv
    doubling the width) stages, then global average pooling. 8x8 -> 4x4; 28x28 -> 3x3."""

    def __init__(self, cfg: VisionModelConfig) -> None:
        super().__init__()
        layers, size, width = _conv(cfg.in_channels, cfg.width, cfg.norm), cfg.image_size, cfg.width
        for _ in range(3):
            if size > 4:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            layers += _conv(width, 2 * width, cfg.norm)
            width *= 2
        self.layers = nn.Sequential(*layers)
        self.num_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=(2, 3))  # (B, C, H, W) -> (B, F)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: Norm) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv(c_in, c_out, norm, stride),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=norm == "none"),
            _norm(norm, c_out),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(norm, c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool (CIFAR); 32x32 -> 4x4 -> (B, 512)."""

    def __init__(self, cfg: VisionModelConfig) -> None:
        super().__init__()
        widths = [cfg.width, 2 * cfg.width, 4 * cfg.width, 8 * cfg.width]  # width 64: 64..512
        layers: list[nn.Module] = _conv(cfg.in_channels, widths[0], cfg.norm)
        c_in = widths[0]
        for i, c_out in enumerate(widths):
            for j in range(2):
                layers.append(BasicBlock(c_in, c_out, 2 if i > 0 and j == 0 else 1, cfg.norm))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.num_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=(2, 3))  # (B, C, H, W) -> (B, F)


BACKBONES: dict[str, type[nn.Module]] = {"cnn": SmallCNN, "resnet18": ResNet18}


def build_backbone(cfg: VisionModelConfig) -> nn.Module:
    return BACKBONES[cfg.backbone](cfg)


class MLPHead(nn.Module):
    """Linear-BN-ReLU-Linear: (B, F) -> (B, P). With norm "group" the hidden layer gets a
    LayerNorm instead (per image, like group norm), with "none" no normalisation."""

    def __init__(self, in_features: int, hidden: int, out_features: int, norm: Norm) -> None:
        super().__init__()
        norm_layer = {
            "batch": nn.BatchNorm1d,
            "syncbatch": nn.SyncBatchNorm,
            "group": nn.LayerNorm,
        }.get(norm)
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden, bias=norm == "none"),
            norm_layer(hidden) if norm_layer else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
