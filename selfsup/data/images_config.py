"""Which images SimCLR and BYOL learn from (`ImageDataConfig`, the `data.*` keys of an image run),
torch-free so that building a command's flags imports no torch; the data sets themselves are
selfsup/data/images.py, which re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.config import option
from selfsup.data.sources import DATA_DIR_ENV


@dataclass
class ImageDataConfig:
    dataset: str = option(
        "digits",
        "digits (built in), mnist-5k, cifar10, or a folder of images (class subfolders or none)",
    )
    root: str = option(
        "auto",
        "where mnist-5k/ and cifar10-jpg/ live; auto: the shared data folder (../shared/data "
        f"beside the repository, or ${DATA_DIR_ENV})",
    )
    image_size: int = option(32, "side images of a folder are resized to (built-in sets: native)")
    limit: int = option(0, "use at most this many training images, stratified (0: all)")
    test_limit: int = option(0, "score probes on at most this many test images (0: all)")
    knn_monitor: int = option(
        1000, "labelled training images behind the k-NN accuracy at each evaluation (0: none)"
    )
