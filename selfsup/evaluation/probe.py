"""Judging frozen features with few labels: a linear probe and k-NN, next to raw pixels and the
same backbone at random initialisation. `selfsup probe RUN`.

Shape legend: N images, C channels, H x W pixels, F feature width, K classes.

The backbone is never fine-tuned: its features (global average pool, before the projection head)
are computed once for the training pool and the test set. For every number of labels per class
(1, 5, 10, all) and every seed, that many labelled images per class are drawn from the training
pool (the same draw for every method), then
- linear probe: scikit-learn's multinomial LogisticRegression (L2, C=1, fixed: with one label per
  class there is nothing to tune it on) on features standardised with the whole unlabelled
  training pool's mean and std (the unlabelled images are what self-supervision may use anyway);
- k-NN: cosine similarity to the labelled images, the k = 20 nearest (fewer when fewer are
  labelled) vote with weights exp(similarity / 0.07) (Wu et al. 2018, as solo-learn and DINO).
Both are scored on the data set's fixed test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from selfsup.errors import UserError
from selfsup.reporting import markdown_table, mean_std

KNN_K = 20
KNN_TEMPERATURE = 0.07
LINEAR_C = 1.0


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    images: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int = 256,
) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 (N, F) features of a frozen backbone (eval mode)."""
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = (images[i : i + batch_size].float() / 255 - mean) / std
        out.append(backbone(x.to(device)).float().cpu())
    backbone.train(was_training)
    return torch.cat(out).numpy()


def raw_pixels(images: torch.Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 (N, C*H*W) in [0, 1]."""
    return (images.float() / 255).flatten(1).numpy()


def few_label_indices(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """`per_class` random indices of every class (all of them for None), sorted."""
    rng = np.random.default_rng([seed, per_class or 0])
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def linear_probe_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    pool_x: np.ndarray,
) -> float:
    from sklearn.linear_model import LogisticRegression  # lazy: scikit-learn imports slowly

    mean, std = pool_x.mean(axis=0), pool_x.std(axis=0)
    std[std < 1e-6] = 1.0  # constant features (blank pixels) stay at zero

    clf = LogisticRegression(C=LINEAR_C, max_iter=2000)
    clf.fit((train_x - mean) / std, train_y)
    return float((clf.predict((test_x - mean) / std) == test_y).mean())


def knn_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
) -> float:
    train = torch.nn.functional.normalize(torch.from_numpy(train_x).float(), dim=1)
    test = torch.nn.functional.normalize(torch.from_numpy(test_x).float(), dim=1)
    labels = torch.from_numpy(train_y).long()
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    k = min(k, len(train))
    correct = 0
    for i in range(0, len(test), 1024):
        sim, idx = (test[i : i + 1024] @ train.T).topk(k, dim=1)  # (b, k)
        votes = torch.zeros(len(sim), num_classes)  # (b, K)
        votes.scatter_add_(1, labels[idx], torch.exp(sim / temperature))
        correct += int((votes.argmax(dim=1).numpy() == test_y[i : i + 1024]).sum())
    return correct / len(test)


@dataclass
class ProbeResult:
    method: str  # e.g. "simclr", "random init", "raw pixels"
    evaluator: str  # "linear" or "knn"
    labels_per_class: str  # "1", "5", "10", "all"
    seed: int
    accuracy: float


def probe_features(
    features: dict[str, tuple[np.ndarray, np.ndarray]],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    labels_per_class: list[int | None],
    seeds: list[int],
) -> list[ProbeResult]:
    """features: method -> (train pool (N, F), test (M, F)); the same label draws for all."""
    results = []
    for per_class in labels_per_class:
        for seed in seeds if per_class is not None else seeds[:1]:  # all labels: one draw
            chosen = few_label_indices(train_labels, per_class, seed)
            y = train_labels[chosen]
            for method, (pool, test) in features.items():
                name = "all" if per_class is None else str(per_class)
                linear = linear_probe_accuracy(pool[chosen], y, test, test_labels, pool)
                knn = knn_accuracy(pool[chosen], y, test, test_labels)
                results.append(ProbeResult(method, "linear", name, seed, linear))
                results.append(ProbeResult(method, "knn", name, seed, knn))
    return results


def parse_labels_per_class(text: str) -> list[int | None]:
    """'1,5,10,all' -> [1, 5, 10, None]."""
    out: list[int | None] = []
    for item in text.split(","):
        item = item.strip().lower()
        if item == "all":
            out.append(None)
        elif item.isdigit() and int(item) > 0:
            out.append(int(item))
        else:
            raise UserError(f"--labels-per-class: {item!r} is not a positive number or 'all'")
    return out


def summarize(results: list[ProbeResult]) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    """(method, evaluator, labels per class) -> (mean, std, number of seeds)."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in results:
        groups.setdefault((r.method, r.evaluator, r.labels_per_class), []).append(r.accuracy)
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in groups.items()}


def format_table(results: list[ProbeResult]) -> str:
    """Markdown: a row per (method, evaluator), a column per labels-per-class, mean +- std (the
    mean alone where one seed was drawn)."""
    summary = summarize(results)
    columns = list(dict.fromkeys(r.labels_per_class for r in results))
    rows = list(dict.fromkeys((r.method, r.evaluator) for r in results))
    rows.sort(key=lambda r: r[1] != "linear")  # linear probes first, then k-NN

    def cell(mean: float, std: float, n: int) -> str:
        return mean_std(mean, std) if n > 1 else f"{mean:.3f}"

    table = [[m, e, *(cell(*summary[(m, e, c)]) for c in columns)] for m, e in rows]
    return markdown_table(["method", "probe", *(f"{c} / class" for c in columns)], table)
