"""The augmentations of SimCLR's and BYOL's two views (`ViewConfig`, the `views.*` keys), torch-free
so that building a command's flags imports no torch; the augmentations themselves are
selfsup/data/views.py, which re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.config import option
from selfsup.errors import UserError


@dataclass
class ViewConfig:
    crop_scale_min: float = option(0.08, "smallest crop, as a fraction of the image's area")
    crop_scale_max: float = option(1.0, "largest crop, as a fraction of the image's area")
    flip: bool = option(True, "random horizontal flip with p=0.5 (off for digits: 2 and 5 differ)")
    jitter_prob: float = option(0.8, "probability of colour jitter (SimCLR: 0.8)")
    brightness: float = option(0.4, "brightness factor drawn from [1-b, 1+b]")
    contrast: float = option(0.4, "contrast factor drawn from [1-c, 1+c]")
    saturation: float = option(0.2, "saturation factor drawn from [1-s, 1+s] (RGB only)")
    hue: float = option(0.1, "hue shift drawn from [-h, h] turns of the colour wheel (RGB only)")
    gray_prob: float = option(0.2, "probability of turning an RGB view to grayscale")
    blur_prob: list[float] = option(
        [0.0, 0.0], "Gaussian blur probability of view 1 and view 2 (BYOL on ImageNet: 1.0,0.1)"
    )
    blur_sigma_min: float = option(0.1, "smallest blur sigma, in pixels")
    blur_sigma_max: float = option(2.0, "largest blur sigma, in pixels")
    solarize_prob: list[float] = option(
        [0.0, 0.0], "solarization probability of view 1 and view 2 (BYOL: 0.0,0.2)"
    )

    def validate(self) -> None:
        if not 0.0 < self.crop_scale_min <= self.crop_scale_max <= 1.0:
            raise UserError(
                f"views.crop_scale_min/max must satisfy 0 < min <= max <= 1, got "
                f"{self.crop_scale_min}, {self.crop_scale_max}"
            )
        for name in ("blur_prob", "solarize_prob"):
            probs = getattr(self, name)
            if len(probs) != 2 or not all(0.0 <= p <= 1.0 for p in probs):
                raise UserError(
                    f"views.{name} needs two probabilities (view 1,view 2), got {probs}"
                )
        for name in ("jitter_prob", "gray_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"views.{name} must be in [0, 1], got {getattr(self, name)}")
