"""Image pretraining recipes: unlabelled images in, a pretrained backbone out.

`simclr` (Chen et al. 2020) contrasts two random views of every image against all others of the
step; `byol` (Grill et al. 2020) predicts an EMA target network's embedding of the other view,
with no negatives. Both share `VisionPretrainConfig`, its presets (scikit-learn's digits, MNIST
5k, CIFAR-10 on a CPU and the GPU recipe) and the held-out k-NN monitor. BYOL's EMA target is a
submodule, so it is in every checkpoint. The config, the presets and the two recipes' registry
entries are in selfsup/recipes/vision_config.py (torch-free, for --help), which names the
functions below.

Batch size and micro-batches mean what they mean for text: `train.batch_size` images go through
the network at once and `train.grad_accum` such micro-batches make one optimizer step. The data
source yields the step's whole batch and the model (`whole_step = True`) runs the micro-batches
under gradient caching (selfsup/objectives/chunked.py), so SimCLR's negatives span the whole step.
The run folder is described in selfsup/runs.py; the lifecycle in selfsup/recipes/base.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from selfsup.data.images import ImageData, load_images, stratified_subset
from selfsup.data.views import ViewBatches
from selfsup.errors import UserError
from selfsup.evaluation.probe import extract_features, knn_accuracy
from selfsup.objectives.byol import BYOL
from selfsup.objectives.simclr import SimCLR
from selfsup.recipes.base import LoadedRun, Plan
from selfsup.recipes.vision_config import (  # noqa: F401 (re-export: config, presets, recipes)
    BYOL_RECIPE,
    EPILOG,
    PRESETS,
    SIMCLR,
    VisionPretrainConfig,
    load_vision_config,
    preset_cifar,
    preset_cifar_cpu,
    preset_digits,
    preset_mnist,
    preset_tiny,
)
from selfsup.runs import RunFolder
from selfsup.trainer import resolve_device


# ---------------------------------------------------------------- model and run folder
def build_model(cfg: VisionPretrainConfig, state: dict | None = None) -> SimCLR | BYOL:
    """The objective module (backbone and heads); the caller seeds it (recipes.base)."""
    if cfg.arch == "simclr":
        return SimCLR(cfg.model, cfg.simclr, cfg.train.batch_size)
    return BYOL(cfg.model, cfg.byol, cfg.train.batch_size, cfg.train.steps)


def _knn_monitor(
    data: ImageData, mean: torch.Tensor, std: torch.Tensor, n: int
) -> Callable[[nn.Module], dict[str, float]] | None:
    """k-NN accuracy (all labels of n training images) of the backbone's features, or None."""
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


# ---------------------------------------------------------------- the recipes
def setup(cfg: VisionPretrainConfig, run: RunFolder) -> dict:
    """Check the config and read the images: their shape completes the model config."""
    cfg.validate()
    data = load_images(cfg.data)
    if len(data.train) < 2:
        raise UserError(f"{cfg.data.dataset}: {len(data.train)} training image(s); need 2 or more")
    cfg.model.in_channels, cfg.model.image_size, _ = data.shape
    return {"images": data}


def data(cfg: VisionPretrainConfig, run: RunFolder, state: dict) -> Plan:
    """Two random views of every image, made on the training device, a step's batch at a time."""
    images: ImageData = state["images"]
    mean, std = images.channel_stats()
    heldout = images.test if len(images.test) > 1 else images.train
    source = ViewBatches(
        images.train.images,
        images.train.labels,
        (heldout.images, heldout.labels),
        mean,
        std,
        cfg.views,
        cfg.train.batch_size * cfg.train.grad_accum,  # the step's batch: the model micro-batches
        cfg.train.seed,
        resolve_device(cfg.train.device),  # views made where the model trains
    )
    return Plan(
        source,
        cfg.arch,
        eval_extra=_knn_monitor(images, mean, std, cfg.data.knn_monitor),
        after_step=(lambda m, step: m.update_target(step)) if cfg.arch == "byol" else None,
    )


def load(run: RunFolder, device: str = "cpu") -> LoadedRun:
    """The config and the final model of a finished SimCLR/BYOL run."""
    cfg = run.config(VisionPretrainConfig)
    weights = run.weights(missing="{path}: no model.safetensors yet (finish it with --resume)")
    model = build_model(cfg)
    model.load_state_dict(weights)
    return LoadedRun(run, cfg, model.to(device).eval())
