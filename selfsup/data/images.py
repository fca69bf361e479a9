"""Image data sets for SimCLR and BYOL: built-in sets, a CIFAR-10 zip read in place, any folder.

Shape legend: N images, C channels (1 or 3), H x W pixels. Every set is held in memory as uint8
(N, C, H, W) with int64 labels (N,) (-1 where there are none), split once into a train part (what
pretraining sees, and the pool labels are drawn from for probing) and a test part (what probes are
scored on). Splits are fixed by the data set, never by a run's seed, so every run and baseline is
scored on the same test images.

- `digits`: scikit-learn's 1,797 8x8 digits (pixel values 0-16, rescaled to 0-255); stratified
  75/25 split (1,347 / 450).
- `mnist-5k`: 5,000 28x28 MNIST digits, 500 per class (<root>/mnist-5k); stratified 80/20 split
  (4,000 / 1,000).
- `cifar10`: CIFAR-10 as JPEGs in one zip (<root>/cifar10-jpg/cifar10-jpg.zip), decoded from the
  zip without unpacking; its own 50,000 / 10,000 split.
- a folder path: images in class subfolders (`cat/1.jpg`, `dog/2.png`: labelled) or directly in
  the folder (no labels); resized to `image_size`; stratified 80/20 split when labelled.

`<root>` is `data.root`: by default ("auto") the shared data folder every built-in set is read
from (`selfsup.data.sources`: ../shared/data beside the repository, or $SELFSUP_DATA_DIR); a path
is taken as given, relative to the working directory.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from selfsup.data.images_config import ImageDataConfig
from selfsup.data.sources import DATA_DIR_ENV, missing_set_message, shared_data_dir
from selfsup.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
BUILT_IN = ("digits", "mnist-5k", "cifar10")


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64, -1 when unlabelled
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def labelled(self) -> bool:
        return bool(len(self)) and bool((self.labels >= 0).all())

    def subset(self, index: np.ndarray | torch.Tensor) -> ImageSet:
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index], self.classes)


@dataclass
class ImageData:
    name: str
    train: ImageSet
    test: ImageSet

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training pixels in [0, 1], shaped (1, C, 1, 1)."""
        x = self.train.images.float() / 255
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-3)
        return mean, std


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with every class split in the same proportion (sorted)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_subset(labels: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """About `limit` indices, the same share of every class (all indices when limit is 0)."""
    if limit <= 0 or limit >= len(labels):
        return np.arange(len(labels))
    if (labels < 0).any():
        return np.sort(np.random.default_rng(seed).permutation(len(labels))[:limit])
    keep, _ = stratified_split(labels, 1.0 - limit / len(labels), seed)
    return keep


def _split(images: np.ndarray, labels: np.ndarray, classes: list[str], test_fraction: float):
    tr, te = stratified_split(labels, test_fraction)
    full = ImageSet(torch.from_numpy(images), torch.from_numpy(labels).long(), classes)
    return full.subset(tr), full.subset(te)


_POINT = f"set --data.root DIR (or {DATA_DIR_ENV}=DIR with data.root=auto)"


def image_root(root: str, folder: str = "mnist-5k") -> Path:
    """The folder `data.root` names: "auto" is the shared data folder, a path is taken as given.
    `folder` is the set to be read from it, named (with its origin) when it is missing."""
    if root != "auto":
        return Path(root)
    found = shared_data_dir()
    if found is None:
        raise UserError(missing_set_message(f"data.root=auto ({folder})", folder, point=_POINT))
    return found


def load_digits() -> tuple[ImageSet, ImageSet]:
    from sklearn.datasets import load_digits as sk_digits  # lazy: scikit-learn imports slowly

    d = sk_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    return _split(images, d.target.astype(np.int64), [str(i) for i in range(10)], 0.25)


def load_mnist_5k(root: Path) -> tuple[ImageSet, ImageSet]:
    path = root / "mnist-5k" / "mnist_5k.csv.gz"
    if not path.exists():
        raise UserError(missing_set_message("--dataset mnist-5k", "mnist-5k", path, _POINT))
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    images = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    return _split(images, table[:, 784], [str(i) for i in range(10)], 0.2)


def _decode(data: bytes, name: str, size: int | None) -> np.ndarray:
    """(H, W, 3) uint8 from encoded bytes; a UserError naming the file when it is not an image."""
    from PIL import Image, UnidentifiedImageError  # lazy: only image files need Pillow

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{name}: not a readable image ({e.__class__.__name__})") from None


def _stack(pixels: list[np.ndarray]) -> np.ndarray:
    return np.stack(pixels).transpose(0, 3, 1, 2).copy()  # (N, H, W, 3) -> (N, 3, H, W)


def load_cifar10_zip(root: Path, train_limit: int = 0, test_limit: int = 0):
    """CIFAR-10 decoded straight from the zip (members `train/<class>/NNNN.jpg`, `test/...`)."""
    path = root / "cifar10-jpg" / "cifar10-jpg.zip"
    if not path.exists():
        raise UserError(missing_set_message("--dataset cifar10", "cifar10-jpg", path, _POINT))
    with zipfile.ZipFile(path) as z:
        members = [n for n in z.namelist() if n.lower().endswith(IMAGE_SUFFIXES)]
        classes = sorted({n.split("/")[1] for n in members})
        parts = []
        for split, limit in (("train", train_limit), ("test", test_limit)):
            names = sorted(n for n in members if n.startswith(split + "/"))
            labels = np.array([classes.index(n.split("/")[1]) for n in names], dtype=np.int64)
            keep = stratified_subset(labels, limit)
            pixels = [_decode(z.read(names[i]), f"{path}:{names[i]}", 32) for i in keep]
            parts.append(
                ImageSet(torch.from_numpy(_stack(pixels)), torch.from_numpy(labels[keep]), classes)
            )
    return parts[0], parts[1]


def load_image_folder(folder: Path, size: int) -> tuple[ImageSet, ImageSet]:
    """Class subfolders -> labelled (stratified 80/20 split); loose images -> unlabelled (90/10)."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no such image folder (built-in sets: {', '.join(BUILT_IN)})")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        files = [
            (f, k)
            for k, d in enumerate(subdirs)
            for f in sorted(d.iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
        classes = [d.name for d in subdirs]
    else:
        files = [(f, -1) for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        classes = []
    if not files:
        raise UserError(
            f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder or its class "
            "subfolders"
        )
    pixels = [_decode(f.read_bytes(), str(f), size) for f, _ in files]
    images, labels = _stack(pixels), np.array([k for _, k in files], dtype=np.int64)
    if classes:
        return _split(images, labels, classes, 0.2)
    tr, te = stratified_split(np.zeros(len(labels), dtype=np.int64), 0.1)
    full = ImageSet(torch.from_numpy(images), torch.from_numpy(labels))
    return full.subset(tr), full.subset(te)


def load_images(cfg: ImageDataConfig) -> ImageData:
    """The data set a config names, with its fixed split and the config's limits applied."""
    if cfg.dataset == "digits":
        train, test = load_digits()
    elif cfg.dataset == "mnist-5k":
        train, test = load_mnist_5k(image_root(cfg.root, "mnist-5k"))
    elif cfg.dataset == "cifar10":
        root = image_root(cfg.root, "cifar10-jpg")
        train, test = load_cifar10_zip(root, cfg.limit, cfg.test_limit)
    else:
        train, test = load_image_folder(Path(cfg.dataset), cfg.image_size)
    train = train.subset(stratified_subset(train.labels.numpy(), cfg.limit))
    test = test.subset(stratified_subset(test.labels.numpy(), cfg.test_limit))
    return ImageData(cfg.dataset, train, test)
