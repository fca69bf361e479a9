"""SimCLR/BYOL runs in the playground: the nearest neighbours of an uploaded image among the
images of a folder named on the command line (`selfsup serve RUN --images DIR`).

Shape legend: N images, C channels, S image side, F feature width.

The folder is read once when the server starts: every image (in subfolders too, sorted by path)
is converted to the run's channels (grey or RGB), resized to its image side, and put through the
frozen backbone, as `selfsup probe` does (global average pool, before the projection head). An
uploaded image goes the same way and its neighbours are the folder images with the highest
cosine similarity of features. The pixels are standardised with the folder's own per-channel mean
and std: the run's training set may not be on this machine (a run folder holds no statistics).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.data.images import IMAGE_SUFFIXES
from selfsup.errors import UserError
from selfsup.evaluation.probe import extract_features
from selfsup.recipes import LoadedRun

MAX_INDEX_IMAGES = 20_000  # an index is held in memory: the folder's features and its paths
MAX_PIXELS = 40_000_000  # a larger upload is refused before it is decoded (a "decompression bomb")


@dataclass
class ImageIndex:
    folder: Path
    files: list[Path]  # sorted; the index of a file is its id in the API
    features: torch.Tensor  # (N, F), unit length
    mean: torch.Tensor  # (1, C, 1, 1) the folder's pixel statistics in [0, 1]
    std: torch.Tensor


def decode_image(data: bytes, name: str, channels: int, size: int) -> torch.Tensor:
    """Encoded bytes -> uint8 (C, S, S): grey for a 1-channel run, RGB for a 3-channel one."""
    from PIL import Image, UnidentifiedImageError  # lazy: only image runs need Pillow

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise UserError(
                    f"{name}: {im.width}x{im.height} pixels; at most {MAX_PIXELS:,} are read"
                )
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            pixels = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{name}: not a readable image ({e.__class__.__name__})") from None
    return torch.from_numpy(pixels.reshape(size, size, channels).transpose(2, 0, 1).copy())


def _image_shape(run: LoadedRun) -> tuple[int, int]:
    return run.config.model.in_channels, run.config.model.image_size


def _features(run: LoadedRun, images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, C, S, S) -> (N, F) unit-length features of the run's backbone."""
    features = torch.from_numpy(extract_features(run.model.backbone, images, mean, std))
    return torch.nn.functional.normalize(features, dim=1)


def build_index(run: LoadedRun, folder: str | Path) -> ImageIndex:
    """Features of every image under `folder` (a UserError when it holds none, or too many)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--images {folder}: no such folder")
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise UserError(f"--images {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    if len(files) > MAX_INDEX_IMAGES:
        raise UserError(
            f"--images {folder}: {len(files):,} images; name a folder of at most "
            f"{MAX_INDEX_IMAGES:,}"
        )
    channels, size = _image_shape(run)
    images = torch.stack([decode_image(p.read_bytes(), str(p), channels, size) for p in files])
    x = images.float() / 255
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).nan_to_num(1.0).clamp(min=1e-3)  # one image: no std
    return ImageIndex(folder, files, _features(run, images, mean, std), mean, std)


def nearest_images(
    run: LoadedRun, index: ImageIndex, data: bytes, k: int
) -> list[tuple[int, float]]:
    """(file id, cosine similarity) of the k folder images nearest to an uploaded one, nearest
    first."""
    channels, size = _image_shape(run)
    image = decode_image(data, "the uploaded file", channels, size)
    query = _features(run, image[None], index.mean, index.std)[0]  # (F,)
    similarity = index.features @ query  # (N,)
    top = similarity.topk(min(k, len(similarity)))
    return [(int(i), float(s)) for s, i in zip(top.values, top.indices)]
