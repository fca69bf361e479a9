"""`selfsup probe RUN`: the few-label judgement of a SimCLR/BYOL run's frozen backbone.

The run's backbone, the same architecture at its random initialisation (seeded by train.seed, as
training started it) and raw pixels are scored alike by selfsup/evaluation/probe.py: a linear
probe and k-NN with 1, 5, 10 or all labels per class, on the run's data set or another of the
same image shape.
"""

from __future__ import annotations

from pathlib import Path

from selfsup.data.images import load_images
from selfsup.errors import UserError
from selfsup.evaluation.probe import ProbeResult, extract_features, probe_features, raw_pixels
from selfsup.recipes import RECIPES, LoadedRun, initialised_model, load_run
from selfsup.runs import RunFolder

IMAGE_ARCHS = ("simclr", "byol")


def load_vision_run(run_dir: str | Path) -> LoadedRun:
    """A finished SimCLR/BYOL run: its config and final model, in eval mode."""
    run = RunFolder.open(
        run_dir, archs=IMAGE_ARCHS, refusal="{path}: a {arch} run; this needs a SimCLR or BYOL run"
    )
    return load_run(run)


def probe_run(
    run_dir: str | Path,
    dataset: str | None = None,
    labels_per_class: list[int | None] | None = None,
    seeds: list[int] | None = None,
    baselines: bool = True,
) -> list[ProbeResult]:
    """Probe a SimCLR/BYOL run's backbone (and, with `baselines`, the same architecture at random
    initialisation and raw pixels) on the run's data set or another one of the same shape."""
    run = load_vision_run(run_dir)
    cfg, model = run.config, run.model
    if dataset is not None:
        cfg.data.dataset = dataset
    data = load_images(cfg.data)
    if not (data.train.labelled and data.test.labelled):
        raise UserError(f"{cfg.data.dataset}: probing needs labels (images in class subfolders)")
    if data.shape != (cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size):
        raise UserError(
            f"{cfg.data.dataset}: images are {data.shape} (C, H, W) but {run_dir} was trained on "
            f"({cfg.model.in_channels}, {cfg.model.image_size}, {cfg.model.image_size})"
        )
    mean, std = data.channel_stats()
    backbones = {cfg.arch: model.backbone}
    if baselines:
        backbones["random init"] = initialised_model(RECIPES[cfg.arch], cfg).backbone
    features = {
        name: (
            extract_features(b, data.train.images, mean, std),
            extract_features(b, data.test.images, mean, std),
        )
        for name, b in backbones.items()
    }
    if baselines:
        features["raw pixels"] = (raw_pixels(data.train.images), raw_pixels(data.test.images))
    return probe_features(
        features,
        data.train.labels.numpy(),
        data.test.labels.numpy(),
        labels_per_class or [1, 5, 10, None],
        seeds or [0, 1, 2],
    )
