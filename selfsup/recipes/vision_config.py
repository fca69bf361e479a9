"""The image recipes' config (`VisionPretrainConfig`, shared by `simclr` and `byol`), its presets and
the two recipes' registry entries, free of torch so that `selfsup pretrain --arch simclr --help`
imports none. Views, models and the k-NN monitor: selfsup/recipes/vision.py, which re-exports
these names; the recipes name its functions, imported when a run starts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from selfsup.config import load_config, option
from selfsup.data.images_config import ImageDataConfig
from selfsup.data.views_config import ViewConfig
from selfsup.errors import UserError
from selfsup.models.vision_config import VisionModelConfig
from selfsup.objectives.byol_config import BYOLConfig
from selfsup.objectives.simclr_config import SimCLRConfig
from selfsup.recipes.recipe import Recipe, lazy_recipe
from selfsup.trainer_config import TrainConfig

EPILOG = """\
examples:
  selfsup pretrain --arch simclr --preset tiny --out runs/simclr-tiny       # seconds
  selfsup pretrain --arch simclr --preset digits --out runs/simclr-digits   # ~1 min on 1 core
  selfsup pretrain --arch byol --preset mnist --out runs/byol-mnist         # MNIST 5k, ~2.5 min
  selfsup pretrain --arch simclr --dataset my_photos/ --data.image_size 64 --out runs/mine
  selfsup pretrain --arch simclr --preset cifar --out runs/cifar train.batch_size=128 train.grad_accum=4
  selfsup pretrain --out runs/simclr-digits --resume                        # after Ctrl-C / kill
  selfsup probe runs/simclr-digits                      # linear probe and k-NN with few labels

Data sets: digits (scikit-learn's 8x8 digits, built in), mnist-5k and cifar10 (under --data.root,
default: ../shared/data beside the repository or $SELFSUP_DATA_DIR; the CIFAR-10 zip is read in
place), or a folder of images: class subfolders give labels (needed by probe), loose images give
none. train.batch_size images go through the
network at once and train.grad_accum such micro-batches make one step; SimCLR's negatives span the
whole step's batch (gradient caching), BYOL needs none.
"""


@dataclass
class VisionPretrainConfig:
    arch: Literal["simclr", "byol"] = option(
        "simclr",
        "simclr (contrastive) or byol (EMA target); bert and gpt are the text architectures, "
        "with their own options (selfsup pretrain --arch bert --help)",
    )
    data: ImageDataConfig = option(ImageDataConfig(), "")
    model: VisionModelConfig = option(VisionModelConfig(), "")
    views: ViewConfig = option(ViewConfig(), "")
    simclr: SimCLRConfig = option(SimCLRConfig(), "")
    byol: BYOLConfig = option(BYOLConfig(), "")
    train: TrainConfig = option(TrainConfig(), "")

    def validate(self) -> None:
        self.views.validate()
        self.model.validate()
        self.train.validate()
        if self.train.batch_size * self.train.grad_accum < 2:
            raise UserError("a contrast needs at least 2 images per step (train.batch_size)")
        if not 0.0 < self.simclr.temperature < float("inf"):
            raise UserError(f"simclr.temperature must be positive, got {self.simclr.temperature}")
        if not 0.0 <= self.byol.tau_base <= 1.0:
            raise UserError(f"byol.tau_base must be in [0, 1], got {self.byol.tau_base}")


# ---------------------------------------------------------------- presets
def _for_arch(cfg: VisionPretrainConfig, arch: str) -> VisionPretrainConfig:
    cfg.arch = arch
    if arch == "byol":
        cfg.views.solarize_prob = [0.0, 0.2]  # BYOL table 6 (solo-learn's CIFAR recipe too)
    return cfg


def _digit_views(crop_scale_min: float) -> ViewConfig:
    """Grayscale digits: crops and brightness/contrast; no flip (a mirrored 2 is no 2)."""
    return ViewConfig(
        crop_scale_min=crop_scale_min,
        flip=False,
        saturation=0.0,  # no colour to jitter
        hue=0.0,
        gray_prob=0.0,
    )


def preset_tiny(arch: str = "simclr") -> VisionPretrainConfig:
    """Seconds: tests and a first look (digits, a 4-wide CNN, 20 steps of 32 images)."""
    cfg = VisionPretrainConfig()
    cfg.data = ImageDataConfig(dataset="digits", knn_monitor=200)
    cfg.model = VisionModelConfig(width=4, proj_hidden=32, proj_dim=16)
    cfg.views = _digit_views(0.5)
    cfg.train = TrainConfig(
        steps=20, batch_size=32, lr=3e-3, warmup_steps=2, eval_batches=2, checkpoint_every=10
    )
    return _for_arch(cfg, arch)


def preset_digits(arch: str = "simclr") -> VisionPretrainConfig:
    """scikit-learn's 8x8 digits on one CPU core in about a minute."""
    cfg = VisionPretrainConfig()
    cfg.data = ImageDataConfig(dataset="digits", knn_monitor=1347)  # the whole training pool
    cfg.model = VisionModelConfig(width=16, proj_hidden=256, proj_dim=64)  # 128 features
    # an 8x8 digit cropped to 8% of its area is 2x2 pixels of stroke: keep at least half of it
    cfg.views = _digit_views(0.5)
    cfg.train = TrainConfig(
        steps=200,  # ~38 epochs of the 1,347 training digits; ~1 min a run on one core
        batch_size=256,  # 510 negatives per anchor; larger batches help SimCLR (Chen et al. fig. 9)
        lr=2e-3,
        weight_decay=1e-4,
        warmup_steps=30,
        schedule="cosine",
        eval_every=100,
        eval_batches=2,
        checkpoint_every=100,
        log_every=10,
    )
    return _for_arch(cfg, arch)


def preset_mnist(arch: str = "simclr") -> VisionPretrainConfig:
    """MNIST 5k (28x28) on one CPU core in a few minutes."""
    cfg = preset_digits(arch)
    cfg.data = ImageDataConfig(dataset="mnist-5k", knn_monitor=1000)
    cfg.views = _digit_views(0.3)  # 28x28 strokes survive tighter crops than 8x8 ones
    cfg.train.steps = 200  # ~13 epochs of the 4,000 training digits; ~2.5 min on one core
    return _for_arch(cfg, arch)


def preset_cifar_cpu(arch: str = "simclr") -> VisionPretrainConfig:
    """A short CPU look at CIFAR-10: 10k training images, the small CNN, full-strength views."""
    cfg = preset_digits(arch)
    cfg.data = ImageDataConfig(dataset="cifar10", limit=10_000, test_limit=2_000, knn_monitor=2000)
    cfg.model = VisionModelConfig(width=16, proj_hidden=512, proj_dim=128)
    cfg.views = ViewConfig()  # SimCLR's CIFAR views: crop 0.08-1, flip, jitter, grayscale
    cfg.simclr.temperature = 0.2  # solo-learn's CIFAR value
    cfg.train.steps = 200
    return _for_arch(cfg, arch)


def preset_cifar(arch: str = "simclr") -> VisionPretrainConfig:
    """The GPU recipe: ResNet-18, batch 256, 1000 epochs (solo-learn's CIFAR-10 setting; it
    trains with LARS, selfsup with AdamW)."""
    cfg = VisionPretrainConfig()
    cfg.data = ImageDataConfig(dataset="cifar10", knn_monitor=10_000)
    hidden = 2048 if arch == "simclr" else 4096  # solo-learn's projector widths
    cfg.model = VisionModelConfig(backbone="resnet18", width=64, proj_hidden=hidden, proj_dim=256)
    cfg.views = ViewConfig()
    cfg.simclr.temperature = 0.2
    cfg.byol.tau_base = 0.99
    cfg.train = TrainConfig(
        steps=195_000,  # 1000 epochs of 50,000 images in batches of 256 (195 steps an epoch)
        batch_size=256,
        lr=1e-3,
        weight_decay=1e-6,
        warmup_steps=1950,  # 10 epochs
        schedule="cosine",
        eval_every=9750,  # every 50 epochs
        eval_batches=10,
        checkpoint_every=1950,
        log_every=50,
    )
    return _for_arch(cfg, arch)


PRESETS = {
    "tiny": preset_tiny,
    "digits": preset_digits,
    "mnist": preset_mnist,
    "cifar-cpu": preset_cifar_cpu,
    "cifar": preset_cifar,
}


# ---------------------------------------------------------------- the recipes
FUNCTIONS = "selfsup.recipes.vision"  # the recipes' images, views and models (torch)


def _vision_recipe(arch: str, summary: str) -> Recipe:
    return lazy_recipe(
        FUNCTIONS,
        name=arch,
        kind="pretraining",
        arch=arch,
        summary=summary,
        config_class=VisionPretrainConfig,
        presets={name: functools.partial(make, arch) for name, make in PRESETS.items()},
        shortcuts={"--dataset": ("data.dataset", "images to learn from")},
        epilog=EPILOG,
    )


SIMCLR = _vision_recipe("simclr", "SimCLR on images: contrast two views of every image")
BYOL_RECIPE = _vision_recipe(
    "byol", "BYOL on images: predict an EMA target network's view, no negatives"
)


def load_vision_config(path: str | Path) -> VisionPretrainConfig:
    return load_config(VisionPretrainConfig, path)
