"""Two random views of every image: the augmentations of SimCLR and BYOL, batched and seeded.

Shape legend: B images, C channels (1 or 3), H x W pixels. Every function takes a float batch
(B, C, H, W) with values in [0, 1], returns one of the same shape and range, and draws all its
randomness from an explicit `torch.Generator`. Each function draws the same amount of randomness
whatever its probabilities, so one seed gives one set of views, exactly, on any machine.

SimCLR (Chen et al. 2020, appendix A): "random crop with resize ... random color distortion ...
random Gaussian blur"; colour distortion is "a random color jittering with p=0.8 and a random
grayscale with p=0.2". BYOL (Grill et al. 2020, table 6) uses the same list with blur applied with
probability 1.0 to the first view and 0.1 to the second, and solarization 0.0 / 0.2.

Where this deviates from torchvision's transforms, on purpose:
- the crop box is sampled once and clipped to the image (torchvision retries up to 10 times, then
  falls back to a centre crop), and resized with bilinear `grid_sample`;
- colour jitter applies brightness, contrast, saturation and hue in that fixed order (torchvision
  shuffles the order per image) and shifts hue by a rotation in YIQ space rather than in HSV;
- on one-channel images only brightness and contrast apply (saturation, hue and grayscale need
  colour).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.data.views_config import ViewConfig


def _rand(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B,) uniform numbers for the images of x, drawn on the CPU generator and moved to x's
    device: the same seed gives the same views whether the pixels live on the CPU or a GPU."""
    return torch.rand(x.shape[0], generator=g).to(x.device)


def _uniform(x: torch.Tensor, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * _rand(x, g)


def _chosen(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """(B, 1, 1, 1) booleans: which images an operation applied with probability p touches."""
    return (_rand(x, g) < p).view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma (ITU-R 601, as PIL and torchvision)."""
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).clamp(0, 1)


def random_resized_crop(
    x: torch.Tensor,
    scale: tuple[float, float],
    g: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Crop a random box (area fraction in `scale`, aspect ratio in `ratio`) and resize it back to
    H x W, for every image at once through one affine sampling grid."""
    B = x.shape[0]
    area = _uniform(x, *scale, g)
    aspect = torch.exp(_uniform(x, math.log(ratio[0]), math.log(ratio[1]), g))
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # box width / image width
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = w / 2 + (1 - w) * _rand(x, g)  # box centre, as a fraction of the image
    cy = h / 2 + (1 - h) * _rand(x, g)
    theta = torch.zeros(B, 2, 3, device=x.device)  # output grid [-1, 1] -> input [-1, 1]
    theta[:, 0, 0], theta[:, 0, 2] = w, 2 * cx - 1
    theta[:, 1, 1], theta[:, 1, 2] = h, 2 * cy - 1
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def horizontal_flip(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.where(_chosen(x, p, g), x.flip(-1), x)


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma plane of YIQ by `turns` (B,) of a full circle: a hue shift."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        dtype=x.dtype,
        device=x.device,
    )
    yiq = torch.einsum("ij,bjhw->bihw", to_yiq, x)
    cos, sin = torch.cos(2 * math.pi * turns), torch.sin(2 * math.pi * turns)
    i, q = yiq[:, 1], yiq[:, 2]
    c, s = cos.view(-1, 1, 1), sin.view(-1, 1, 1)
    yiq = torch.stack([yiq[:, 0], c * i - s * q, s * i + c * q], dim=1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_yiq), yiq)


def color_jitter(x: torch.Tensor, cfg: ViewConfig, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation, hue (fixed order), the whole jitter with cfg.jitter_prob."""
    B = x.shape[0]
    apply = _chosen(x, cfg.jitter_prob, g)
    b = _uniform(x, 1 - cfg.brightness, 1 + cfg.brightness, g).view(B, 1, 1, 1)
    c = _uniform(x, 1 - cfg.contrast, 1 + cfg.contrast, g).view(B, 1, 1, 1)
    s = _uniform(x, 1 - cfg.saturation, 1 + cfg.saturation, g).view(B, 1, 1, 1)
    turns = _uniform(x, -cfg.hue, cfg.hue, g)
    y = (x * b).clamp(0, 1)
    mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = (mean + c * (y - mean)).clamp(0, 1)
    if x.shape[1] == 3:
        y = (_gray(y) + s * (y - _gray(y))).clamp(0, 1)
        y = _rotate_hue(y, turns).clamp(0, 1)
    return torch.where(apply, y, x)


def random_grayscale(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    apply = _chosen(x, p, g)
    return torch.where(apply, _gray(x).expand_as(x), x) if x.shape[1] == 3 else x


def gaussian_blur(
    x: torch.Tensor, p: float, sigma: tuple[float, float], g: torch.Generator
) -> torch.Tensor:
    """Blur with a per-image sigma; the kernel spans about 10% of the image side (SimCLR), at
    least 3 pixels, odd; separable, reflect padding."""
    B, C, H, W = x.shape
    apply = _chosen(x, p, g)
    sigmas = _uniform(x, *sigma, g)
    k = max(3, int(0.1 * min(H, W)) // 2 * 2 + 1)
    pos = torch.arange(k, dtype=x.dtype, device=x.device) - k // 2
    kernel = torch.exp(-(pos**2) / (2 * sigmas.view(B, 1) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(C, dim=0)  # (B*C, k)
    y = F.pad(x.reshape(1, B * C, H, W), (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    y = F.conv2d(y, kernel.view(B * C, 1, 1, k), groups=B * C)  # along W
    y = F.conv2d(y, kernel.view(B * C, 1, k, 1), groups=B * C)  # along H
    return torch.where(apply, y.view(B, C, H, W), x)


def solarize(x: torch.Tensor, p: float, g: torch.Generator, threshold: float = 0.5) -> torch.Tensor:
    apply = _chosen(x, p, g)
    return torch.where(apply & (x >= threshold), 1.0 - x, x)


def augment(x: torch.Tensor, cfg: ViewConfig, view: int, g: torch.Generator) -> torch.Tensor:
    """One random view (view 0 or 1: they differ only in blur and solarization probabilities)."""
    x = random_resized_crop(x, (cfg.crop_scale_min, cfg.crop_scale_max), g)
    x = horizontal_flip(x, 0.5 if cfg.flip else 0.0, g)
    x = color_jitter(x, cfg, g)
    x = random_grayscale(x, cfg.gray_prob, g)
    x = gaussian_blur(x, cfg.blur_prob[view], (cfg.blur_sigma_min, cfg.blur_sigma_max), g)
    return solarize(x, cfg.solarize_prob[view], g)


def two_views(
    x: torch.Tensor, cfg: ViewConfig, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) in [0, 1] -> two independently augmented (B, C, H, W) batches in [0, 1]."""
    return augment(x, cfg, 0, g), augment(x, cfg, 1, g)


def seed_of(*parts: int) -> int:
    """One 63-bit seed from several integers (run seed, epoch, batch position...)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


EVAL_SEED = 1_000_003  # held-out views draw their own fixed randomness


class ViewBatches:
    """Batches of two views, a pure function of (seed, batch index): resuming is exact.

    Every step's batch holds `batch_images` images (the whole batch: the objective cuts it into
    micro-batches itself, see selfsup/objectives/chunked.py). Each epoch visits the images in a
    fresh order seeded by (seed, epoch); the views of batch `position` come from a generator
    seeded by (seed, epoch, position). Views are standardised with the training set's channel
    mean and std after augmentation.

    With `device` a GPU, the images (uint8) are kept there and the views made there: on the CPU,
    augmenting a 256-image CIFAR batch takes about half a second, longer than a GPU step, so CPU
    views would starve it. The random numbers still come from a CPU generator, so the views are
    the CPU's up to floating-point rounding.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        heldout: tuple[torch.Tensor, torch.Tensor],
        mean: torch.Tensor,
        std: torch.Tensor,
        cfg: ViewConfig,
        batch_images: int,
        seed: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.images, self.labels = images.to(device), labels.to(device)
        self.heldout = (heldout[0].to(device), heldout[1].to(device))
        self.mean, self.std = mean.to(device), std.to(device)
        self.cfg, self.seed = cfg, seed
        self.batch_images = min(batch_images, len(images))

    @property
    def batches_per_epoch(self) -> int:
        return max(1, len(self.images) // self.batch_images)

    def _views(self, images: torch.Tensor, labels: torch.Tensor, seed: int) -> dict:
        v1, v2 = two_views(images.float() / 255, self.cfg, torch.Generator().manual_seed(seed))
        views = (torch.stack([v1, v2]) - self.mean) / self.std  # (2, B, C, H, W)
        n = images.shape[0]
        return {
            "views": views,
            "labels": labels,
            "num_tokens": n,  # images: the progress bar's rate is images per second
        }

    def batch(self, index: int) -> dict:
        epoch, position = divmod(index, self.batches_per_epoch)
        order = torch.randperm(
            len(self.images), generator=torch.Generator().manual_seed(seed_of(self.seed, epoch))
        )
        chosen = order[position * self.batch_images : (position + 1) * self.batch_images]
        chosen = chosen.to(self.images.device)
        return self._views(
            self.images[chosen], self.labels[chosen], seed_of(self.seed, epoch, position)
        )

    def eval_batches(self, max_batches: int) -> list[dict]:
        """Fixed held-out batches: held-out images in order, views from a fixed seed."""
        images, labels = self.heldout
        b = self.batch_images
        return [
            self._views(images[i : i + b], labels[i : i + b], seed_of(self.seed + EVAL_SEED, i))
            for i in range(0, min(len(images), max_batches * b), b)
            if len(images[i : i + b]) > 1  # a contrast needs two images
        ]
