"""`selfsup pretrain --arch simclr|byol`: unlabelled images in, a pretrained backbone out, in a
run folder like a text run's.

Run folder layout:
    run.json            marks the folder as a selfsup run (kind pretraining, arch simclr or byol)
    config.json         the resolved config: `selfsup pretrain --config RUN/config.json` repeats it
    checkpoints/        step-NNNNNNN/ folders and a `latest` pointer, for --resume (BYOL's EMA
                        target is part of the model, so of every checkpoint)
    metrics.jsonl       training loss (and SimCLR's contrastive accuracy), held-out loss and the
                        k-NN accuracy of the backbone's features at each evaluation
    loss_curve.png      the metrics drawn
    model.safetensors   the final weights (backbone, heads, BYOL's target)
    final_metrics.json  the last evaluation

Batch size and micro-batches: `train.batch_size` images go through the network at once and
`train.grad_accum` such micro-batches make one optimizer step, as for text. The data source yields
the whole step's batch and the objective runs it in micro-batches under gradient caching
(selfsup/objectives/chunked.py), so SimCLR's negatives span the whole batch; the trainer itself
then runs one "micro-batch" per step.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from selfsup.config import load_config, option, save_run_config
from selfsup.data.images import ImageData, ImageDataConfig
from selfsup.data.views import ViewConfig
from selfsup.errors import UserError
from selfsup.models.vision import VisionModelConfig
from selfsup.objectives.byol import BYOL, BYOLConfig
from selfsup.objectives.simclr import SimCLR, SimCLRConfig
from selfsup.trainer import TrainConfig

VISION_ARCHS = ("simclr", "byol")


@dataclass
class VisionPretrainConfig:
    arch: Literal["simclr", "byol"] = option("simclr", "simclr (contrastive) or byol (EMA target)")
    data: ImageDataConfig = option(ImageDataConfig(), "")
    model: VisionModelConfig = option(VisionModelConfig(), "")
    views: ViewConfig = option(ViewConfig(), "")
    simclr: SimCLRConfig = option(SimCLRConfig(), "")
    byol: BYOLConfig = option(BYOLConfig(), "")
    train: TrainConfig = option(TrainConfig(), "")

    def validate(self) -> None:
        self.views.validate()
        self.train.validate()
        if self.train.batch_size * self.train.grad_accum < 2:
            raise UserError("a contrast needs at least 2 images per step (train.batch_size)")
        if self.simclr.temperature <= 0:
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


# ---------------------------------------------------------------- model and run folder
def build_model(cfg: VisionPretrainConfig) -> SimCLR | BYOL:
    """The objective module, initialised from train.seed."""
    torch.manual_seed(cfg.train.seed)
    if cfg.arch == "simclr":
        return SimCLR(cfg.model, cfg.simclr, cfg.train.batch_size)
    return BYOL(cfg.model, cfg.byol, cfg.train.batch_size, cfg.train.steps)


def load_vision_run(run_dir: str | Path) -> tuple[VisionPretrainConfig, SimCLR | BYOL]:
    """The config and the final model of a finished SimCLR/BYOL run."""
    from safetensors.torch import load_file

    from selfsup.pretrain import read_run_marker

    run_dir = Path(run_dir)
    info = read_run_marker(run_dir)
    if info.get("arch") not in VISION_ARCHS:
        raise UserError(f"{run_dir}: a {info.get('arch')} run; this needs a SimCLR or BYOL run")
    cfg = load_config(VisionPretrainConfig, run_dir / "config.json")
    if not (run_dir / "model.safetensors").exists():
        raise UserError(f"{run_dir}: no model.safetensors yet (finish it with --resume)")
    model = build_model(cfg)
    model.load_state_dict(load_file(run_dir / "model.safetensors"))
    return cfg, model.eval()


def config_arch(path: Path) -> str | None:
    """The arch a saved config.json names (None when unreadable): lets the CLI tell image runs
    from text runs on --resume and --config."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("arch")
    except (OSError, ValueError, AttributeError):
        return None


def _knn_monitor(
    data: ImageData, mean: torch.Tensor, std: torch.Tensor, n: int
) -> Callable[[nn.Module], dict[str, float]] | None:
    """k-NN accuracy (all labels of n training images) of the backbone's features, or None."""
    from selfsup.data.images import stratified_subset
    from selfsup.probe import extract_features, knn_accuracy

    if n <= 0 or not (data.train.labelled and data.test.labelled):
        return None
    train = data.train.subset(stratified_subset(data.train.labels.numpy(), n))
    test = data.test.subset(stratified_subset(data.test.labels.numpy(), n))

    def monitor(model: nn.Module) -> dict[str, float]:
        pool = extract_features(model.backbone, train.images, mean, std)
        held = extract_features(model.backbone, test.images, mean, std)
        acc = knn_accuracy(pool, train.labels.numpy(), held, test.labels.numpy())
        return {"eval_knn_accuracy": acc}

    return monitor


def pretrain_vision(
    cfg: VisionPretrainConfig, run_dir: str | Path, resume: bool = False
) -> dict[str, float]:
    """Build (or reopen) the run folder, train, and return the final held-out metrics."""
    from selfsup.data.images import load_images
    from selfsup.data.views import ViewBatches
    from selfsup.io import atomic_write_json
    from selfsup.plots import plot_loss_curve
    from selfsup.pretrain import check_run_dir, write_run_marker
    from selfsup.trainer import resolve_device, train

    run_dir = check_run_dir(run_dir, resume)
    cfg = copy.deepcopy(cfg)
    cfg.validate()
    data = load_images(cfg.data)
    if len(data.train) < 2:
        raise UserError(f"{cfg.data.dataset}: {len(data.train)} training image(s); need 2 or more")
    cfg.model.in_channels, cfg.model.image_size, _ = data.shape
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_marker(run_dir, "pretraining", cfg.arch)
    save_run_config(cfg, run_dir / "config.json", resume)
    mean, std = data.channel_stats()
    model = build_model(cfg)
    heldout = data.test if len(data.test) > 1 else data.train
    source = ViewBatches(
        data.train.images,
        data.train.labels,
        (heldout.images, heldout.labels),
        mean,
        std,
        cfg.views,
        cfg.train.batch_size * cfg.train.grad_accum,
        cfg.train.seed,
        model.term,
        model.items_per_image,
        resolve_device(cfg.train.device),  # views made where the model trains
    )

    def plot(_step: int) -> None:
        plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png", cfg.arch)

    metrics = train(
        model,
        source,
        dataclasses.replace(cfg.train, grad_accum=1),  # micro-batches: inside the objective
        run_dir,
        resume=resume,
        after_step=(lambda m, step: m.update_target(step)) if cfg.arch == "byol" else None,
        eval_extra=_knn_monitor(data, mean, std, cfg.data.knn_monitor),
        on_checkpoint=plot,
    )
    plot(cfg.train.steps)
    atomic_write_json(run_dir / "final_metrics.json", metrics)
    return metrics


def load_vision_config(path: str | Path) -> VisionPretrainConfig:
    return load_config(VisionPretrainConfig, path)
