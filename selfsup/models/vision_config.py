"""The sizes of the vision backbones and heads (`VisionModelConfig`), torch-free so that building a
command's flags imports no torch; the models themselves are selfsup/models/vision.py, which
re-exports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from selfsup.config import option
from selfsup.errors import UserError

Norm = Literal["batch", "syncbatch", "group", "none"]


@dataclass
class VisionModelConfig:
    backbone: Literal["cnn", "resnet18"] = option(
        "cnn", "cnn: small CNN for 8x8 / 28x28 images; resnet18: CIFAR-style ResNet-18"
    )
    width: int = option(16, "channels of the first layer (cnn: features = 8 * width)")
    norm: Norm = option(
        "batch",
        "normalisation in the backbone: batch, syncbatch (batch statistics over every GPU of a "
        "multi-GPU run), group (8 groups) or none",
    )
    proj_hidden: int = option(256, "hidden width of the projection head (and BYOL's predictor)")
    proj_dim: int = option(64, "output width of the projection head (the embedding the loss sees)")
    in_channels: int = option(1, "image channels (set from the data set)")
    image_size: int = option(8, "image side in pixels (set from the data set)")

    def validate(self) -> None:
        for name in ("width", "proj_hidden", "proj_dim", "in_channels", "image_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"model.{name} must be positive, got {getattr(self, name)}")
