"""What a SimCLR/BYOL recipe costs: time a few optimizer steps of a preset on the device at hand
and extrapolate to an epoch and to the whole run.

    python -m selfsup.experiments.ssl_step_time --preset cifar --arch simclr --steps 3
    python -m selfsup.experiments.ssl_step_time --preset cifar --arch byol train.batch_size=64

Views come from random pixels of the preset's image shape (the cost of a step does not depend on
the pictures), so no data set is needed. Augmentation is timed on the CPU and, on a GPU, where
training makes the views (selfsup.data.views.ViewBatches keeps the images on the training
device); the run estimate adds the views' time to the step's. The first step (allocation, cuDNN
autotuning) is not counted.
"""

from __future__ import annotations

import argparse
import time

import torch

from selfsup.config import apply_overrides
from selfsup.data.views import two_views
from selfsup.recipes import RECIPES, initialised_model
from selfsup.recipes.vision import PRESETS
from selfsup.trainer import autocast, build_optimizer, resolve_device

EPOCH_IMAGES = {"cifar10": 50_000, "mnist-5k": 4_000, "digits": 1_347}


def time_steps(preset: str, arch: str, steps: int, overrides: list[str]) -> dict[str, float]:
    cfg = apply_overrides(PRESETS[preset](arch), overrides)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    shape = {"digits": (1, 8), "mnist-5k": (1, 28)}.get(cfg.data.dataset, (3, 32))
    cfg.model.in_channels, cfg.model.image_size = shape
    device = resolve_device(cfg.train.device)
    model = initialised_model(RECIPES[arch], cfg).to(device).train()
    optimizer = build_optimizer(model, cfg.train)
    n = cfg.train.batch_size * cfg.train.grad_accum
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, shape[0], shape[1], shape[1], generator=g)
    start = time.perf_counter()
    v1, v2 = two_views(images, cfg.views, g)
    augment_cpu_s = time.perf_counter() - start
    augment_s = augment_cpu_s
    if device.type != "cpu":
        on_device = images.to(device)
        for _ in range(2):  # the first call warms the kernels up
            torch.cuda.synchronize()
            start = time.perf_counter()
            v1, v2 = two_views(on_device, cfg.views, g)
            torch.cuda.synchronize()
            augment_s = time.perf_counter() - start
    batch = {"views": torch.stack([v1, v2]).to(device)}
    times = []
    for _ in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast(device, cfg.train.precision):
            out = model(batch)
        out.total_loss(model.item_counts(batch)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if arch == "byol":
            model.update_target(1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step_s = sum(times[1:]) / steps + augment_s
    epoch_steps = EPOCH_IMAGES.get(cfg.data.dataset, 50_000) / n
    return {
        "images_per_step": n,
        "step_s": step_s,
        "augment_s_per_step_cpu": augment_cpu_s,
        "augment_s_per_step": augment_s,
        "epoch_min": step_s * epoch_steps / 60,
        "run_h": step_s * cfg.train.steps / 3600,
        "run_epochs": cfg.train.steps / epoch_steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="seconds per SimCLR/BYOL step, per epoch, per run")
    parser.add_argument("--preset", default="cifar")
    parser.add_argument("--arch", default="simclr", choices=["simclr", "byol"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.batch_size=64")
    args = parser.parse_args(argv)
    result = time_steps(args.preset, args.arch, args.steps, args.overrides)
    print(f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}")
    for key, value in result.items():
        print(f"  {key:26s} {value:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
