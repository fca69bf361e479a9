"""Judging a frozen speech encoder (TERA/APC) with few labels: `selfsup probe RUN` on an audio run.

Shape legend: N utterances, B batch, T frames, F mel bands, C width, L layers, S segments,
D pooled width, K classes.

Pooling (`pooling`), the same for every method, so the comparison is between what the frames say,
not how they were summed up; padding never counts:
- `segments` (the default): mean and std per channel over each third of the utterance's real
  frames, D = 2 * 3 * C. A spoken digit is a sequence of sounds ("sev-en"), and thirds keep that
  coarse time course. It is also the only choice under which the log-mel baseline says anything:
  under the default per-utterance normalisation every band's whole-utterance mean is 0 and std 1.
- `mean`: the mean over all real frames, D = C (log-mel: about 0 everywhere, so at chance).
Both baselines read the frames the encoder reads: the comparison measures what pretraining learned
to extract, not what normalisation removed.

Layers (`layer`): one of the L + 1 outputs (-1: the last; 0: the input representation), `all`:
the equal-weight mean of the L + 1 pooled outputs (for `mean` pooling the same as pooling the mean
hidden state), or `weighted`: SUPERB's learned weighted layer sum (Yang et al. 2021, "a
learnable weighted sum of the hidden states from all layers"), the softmax-normalised weights
trained with the linear classifier (`WeightedLayerProbe`) on each few-label draw, and reported. It
deviates from SUPERB in two ways. The weights mix pooled layer features, not frames: pooling is
linear, so for `mean` this is the same model, and for `segments` the std part becomes the mixed
per-layer stds. And each layer is standardised with the unlabelled pool's statistics before the
mix (the linear probe's standardisation, done per layer, as s3prl's featurizer can normalise each
layer), so a weight says how much of a layer is used, not how loud it is. A weight learned from one
label per class would mostly fit noise, so the layer logits carry the classifier's L2 penalty,
which keeps the mix near equal (`all`) when labels are few and lets it move as they grow
(`fit_weighted_probe`); the table says whether learning it helps.

Two baselines read the same frames: log-mel (the frames the encoder reads, pooled as above; under
`weighted` a one-layer stack, so that it meets the same probe as the encoders) and random init
(the same encoder as training started it, seeded by train.seed, under the same `layer`).

Tasks, on FSDD-named files (`{digit}_{speaker}_{take}.wav`; the FSDD set or a folder of them):
- digit: the training pool is every recording of the speakers pretraining saw; the test set is
  every recording of the excluded speakers (data.exclude_speakers), which pretraining never saw:
  do the features carry the word across a new voice?
- speaker: the speakers pretraining saw; the pool is the run's training side (FSDD: takes 5-49),
  the test set its held-out side (FSDD: takes 0-4).
Each draws k labelled utterances per class (the same draw for every method) for several seeds and
scores a linear probe and k-NN (selfsup/evaluation/probe.py's `probe_features`; `weighted`: the
same draws, a torch logistic regression with the same L2 strength as the scikit-learn probe's
C = 1, and k-NN on the learned mix of the standardised layers, for every method alike).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from selfsup.data.audio import fsdd_name
from selfsup.errors import UserError
from selfsup.evaluation.probe import (
    LINEAR_C,
    ProbeResult,
    few_label_indices,
    format_table,
    knn_accuracy,
    probe_features,
)
from selfsup.models.acoustic import WeightedLayerSum
from selfsup.recipes.audio import AudioInputs, load_audio_inputs
from selfsup.reporting import markdown_table

Layer = int | Literal["all", "weighted"]
Pooling = Literal["mean", "segments"]
TASKS = ("digit", "speaker")
AUDIO_ARCHS = ("tera", "apc")
LOG_MEL = "log-mel"
RANDOM_INIT = "random init"
POOLING_SEGMENTS = 3  # thirds of an utterance: see the module docstring
DEFAULT_POOLING: Pooling = "segments"
WEIGHTED_MAX_ITER = 500  # LBFGS iterations; a few-label fit converges in far fewer


# ---------------------------------------------------------------- choices
def parse_layer(text: str, num_layers: int | None = None) -> Layer:
    """'all', 'weighted', '-1' or an index -> the layer choice; with `num_layers` (L), checked
    against the L + 1 outputs (0: the input representation, L or -1: the last)."""
    text = text.strip().lower()
    if text in ("all", "weighted"):
        return text  # type: ignore[return-value]
    try:
        layer = int(text)
    except ValueError:
        raise UserError(f"--layer: {text!r} is not a layer number, 'all' or 'weighted'") from None
    if num_layers is not None and not -(num_layers + 1) <= layer <= num_layers:
        raise UserError(
            f"--layer {layer}: the encoder has {num_layers + 1} outputs (0 is the input "
            f"representation, {num_layers} or -1 the last); give one of them, 'all' or 'weighted'"
        )
    return layer


def parse_pooling(text: str) -> Pooling:
    """'mean' or 'segments' (module docstring)."""
    text = text.strip().lower()
    if text not in POOLINGS:
        raise UserError(f"--pooling: {text!r}; expected {' or '.join(POOLINGS)}")
    return text  # type: ignore[return-value]


# ---------------------------------------------------------------- pooling
def pool_real_frames(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, C), attention_mask (B, T) 1 on real frames -> (B, C) mean over real frames."""
    mask = attention_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def segment_masks(attention_mask: torch.Tensor, segments: int = POOLING_SEGMENTS) -> torch.Tensor:
    """attention_mask (B, T) -> (B, S, T) 1 where a real frame lies in segment s: the n real
    frames, counted in order wherever padding sits, cut at s * n // S. A segment that would be
    empty (an utterance of fewer than S frames) takes the frame it starts at, or the last one."""
    real = attention_mask > 0
    rank = real.long().cumsum(1) - 1  # (B, T) the frame's index among the real ones
    n = real.sum(1, keepdim=True)  # (B, 1)
    s = torch.arange(segments, device=rank.device)[None, :]  # (1, S)
    lo = torch.minimum(s * n // segments, n - 1).clamp(min=0)  # (B, S)
    hi = torch.maximum((s + 1) * n // segments, lo + 1)
    inside = (rank[:, None, :] >= lo[..., None]) & (rank[:, None, :] < hi[..., None])
    return (inside & real[:, None, :]).long()


def pool_segments(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, C) -> (B, 2 * S * C): mean and std (population) of every channel over each
    segment of the real frames (`segment_masks`), laid out [mean_0, std_0, mean_1, std_1, ...]."""
    weights = segment_masks(attention_mask).to(hidden.dtype)  # (B, S, T)
    count = weights.sum(2, keepdim=True).clamp(min=1.0)  # (B, S, 1)
    mean = weights @ hidden / count  # (B, S, C)
    centred = hidden[:, None] - mean[:, :, None]  # (B, S, T, C)
    var = (weights[..., None] * centred.square()).sum(2) / count  # (B, S, C)
    return torch.stack([mean, var.sqrt()], 2).flatten(1)  # (B, S * 2 * C)


POOLINGS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "segments": pool_segments,
    "mean": pool_real_frames,
}


def _pad(frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Utterances (T_i, F) -> features (B, T, F) padded at the end, attention_mask (B, T)."""
    longest = max(len(f) for f in frames)
    features = torch.zeros(len(frames), longest, frames[0].shape[1])
    mask = torch.zeros(len(frames), longest, dtype=torch.long)
    for row, f in enumerate(frames):
        features[row, : len(f)], mask[row, : len(f)] = f, 1
    return features, mask


def _pooled_rows(
    inputs: AudioInputs,
    indices: list[int],
    pool_batch: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    max_frames: int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """(N, ...) float32: `pool_batch(features (B, T, F), attention_mask (B, T))` of the utterances
    `indices`, each cut to its first `max_frames`. Batched in order of length, so a batch carries
    little padding; the rows come back in the order of `indices`."""
    order = sorted(range(len(indices)), key=lambda i: len(inputs.store.utterance(indices[i])))
    out: np.ndarray | None = None
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        features, mask = _pad([inputs.frames(indices[r])[:max_frames] for r in rows])
        pooled = pool_batch(features, mask).float().cpu().numpy()
        if out is None:
            out = np.zeros((len(indices), *pooled.shape[1:]), dtype=np.float32)
        out[rows] = pooled
    assert out is not None, "no utterances to pool"
    return out


# ---------------------------------------------------------------- features
@torch.no_grad()
def pooled_layer_outputs(
    encoder: nn.Module, features: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling
) -> torch.Tensor:
    """One padded batch (B, T, F) -> (B, L + 1, D): every layer output pooled over real frames."""
    outputs = encoder.layer_outputs(features, attention_mask)  # L + 1 of (B, T, C)
    return torch.stack([POOLINGS[pooling](h, attention_mask) for h in outputs], 1)


def select_layer(per_layer: torch.Tensor, layer: Layer) -> torch.Tensor:
    """(B, L + 1, D) pooled layer outputs -> (B, D) for one layer or `all` (their equal-weight
    mean); `weighted` keeps them all for the probe to mix."""
    if layer == "weighted":
        return per_layer
    return per_layer.mean(1) if layer == "all" else per_layer[:, layer]


@torch.no_grad()
def pooled_layer_features(
    encoder: nn.Module,
    features: torch.Tensor,
    attention_mask: torch.Tensor,
    layer: Layer,
    pooling: Pooling = DEFAULT_POOLING,
) -> torch.Tensor:
    """One padded batch (B, T, F) -> (B, D) (`weighted`: (B, L + 1, D)): the chosen layer (or the
    mean of all) pooled over the real frames."""
    return select_layer(pooled_layer_outputs(encoder, features, attention_mask, pooling), layer)


@torch.no_grad()
def encoder_features(
    encoder: nn.Module,
    inputs: AudioInputs,
    indices: list[int],
    layer: Layer = -1,
    pooling: Pooling = DEFAULT_POOLING,
    batch_size: int = 64,
) -> np.ndarray:
    """(N, D) (`weighted`: (N, L + 1, D)) float32 pooled features of the utterances `indices`,
    whole (an utterance longer than model.max_position is cut to its first max_position frames:
    the encoder reads no more)."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device

    def pool_batch(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return pooled_layer_features(encoder, features.to(device), mask.to(device), layer, pooling)

    out = _pooled_rows(inputs, indices, pool_batch, encoder.config.max_position, batch_size)
    encoder.train(was_training)
    return out


def log_mel_features(
    inputs: AudioInputs, indices: list[int], pooling: Pooling = DEFAULT_POOLING
) -> np.ndarray:
    """(N, D) float32: the frames the encoder reads, pooled as the encoders' hidden states."""
    return _pooled_rows(inputs, indices, POOLINGS[pooling])


# ---------------------------------------------------------------- the weighted layer sum
class WeightedLayerProbe(nn.Module):
    """SUPERB's learned weighted layer sum (`WeightedLayerSum`) over pooled layer features, then
    a linear classifier: (N, L + 1, D) -> (N, K) logits."""

    def __init__(self, num_outputs: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.mix = WeightedLayerSum(num_outputs)
        self.classifier = nn.Linear(width, num_classes)
        nn.init.zeros_(self.classifier.weight)  # scikit-learn's start: deterministic, no seed
        nn.init.zeros_(self.classifier.bias)

    def layer_weights(self) -> torch.Tensor:
        return self.mix.weights.softmax(0)

    def mixed(self, layers: torch.Tensor) -> torch.Tensor:
        """(N, L + 1, D) -> (N, D); a pooled utterance is a one-frame sequence to the mixer."""
        return self.mix(list(layers.transpose(0, 1)[:, :, None]))[:, 0]

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.mixed(layers))


def fit_weighted_probe(
    layers: torch.Tensor, labels: torch.Tensor, num_classes: int, c: float = LINEAR_C
) -> WeightedLayerProbe:
    """Layer weights and classifier trained jointly, full batch by LBFGS, on standardised
    (N, L + 1, D) features: mean cross entropy + (|W|^2 + |w|^2) / (2 C N), scikit-learn's
    C-scaled L2 on the classifier's weights W (not its bias) and on the layer logits w. The
    latter pulls the mix towards equal weights (`all`) the fewer labels there are: without it,
    LBFGS drove the softmax to a single layer even from one label per class (FSDD: the layer
    changed from draw to draw, and accuracy was no better)."""
    probe = WeightedLayerProbe(layers.shape[1], layers.shape[2], num_classes)
    optimizer = torch.optim.LBFGS(
        probe.parameters(), max_iter=WEIGHTED_MAX_ITER, line_search_fn="strong_wolfe"
    )
    penalty = 1.0 / (2.0 * c * len(labels))

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(probe(layers), labels)
        squares = probe.classifier.weight.square().sum() + probe.mix.weights.square().sum()
        loss = loss + penalty * squares
        loss.backward()
        return loss

    optimizer.step(closure)
    return probe.eval()


def standardise_layers(pool: np.ndarray, *arrays: np.ndarray) -> list[torch.Tensor]:
    """Every layer's channels to zero mean and unit std over the unlabelled pool (N, L + 1, D),
    as the linear probe standardises its features; constant channels stay at zero."""
    mean, std = pool.mean(axis=0), pool.std(axis=0)  # (L + 1, D)
    std[std < 1e-6] = 1.0
    return [torch.from_numpy((a - mean) / std).float() for a in arrays]


@dataclass
class LayerWeights:
    """The softmax layer weights one `weighted` probe learned (layer 0 first)."""

    method: str
    labels_per_class: str
    seed: int
    weights: list[float]


@torch.no_grad()
def _scores(
    probe: WeightedLayerProbe,
    train: torch.Tensor,
    train_y: np.ndarray,
    test: torch.Tensor,
    test_y: np.ndarray,
) -> tuple[float, float]:
    """(linear accuracy, k-NN accuracy on the learned mix) on the test set."""
    linear = float((probe(test).argmax(1).numpy() == test_y).mean())
    knn = knn_accuracy(probe.mixed(train).numpy(), train_y, probe.mixed(test).numpy(), test_y)
    return linear, knn


def probe_weighted_layers(
    features: dict[str, tuple[np.ndarray, np.ndarray]],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    labels_per_class: list[int | None],
    seeds: list[int],
) -> tuple[list[ProbeResult], list[LayerWeights]]:
    """`probe_features` for per-layer features: method -> (pool (N, L + 1, D), test), the same
    label draws, a `WeightedLayerProbe` fitted on each; results and the learned weights."""
    results, weights = [], []
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    for per_class in labels_per_class:
        for seed in seeds if per_class is not None else seeds[:1]:  # all labels: one draw
            chosen = few_label_indices(train_labels, per_class, seed)
            y = train_labels[chosen]
            name = "all" if per_class is None else str(per_class)
            for method, (pool, test) in features.items():
                train, test_x = standardise_layers(pool, pool[chosen], test)
                probe = fit_weighted_probe(train, torch.from_numpy(y).long(), num_classes)
                linear, knn = _scores(probe, train, y, test_x, test_labels)
                results.append(ProbeResult(method, "linear", name, seed, linear))
                results.append(ProbeResult(method, "knn", name, seed, knn))
                if pool.shape[1] > 1:  # a single layer's weight is 1: nothing learned
                    learned = probe.layer_weights().tolist()
                    weights.append(LayerWeights(method, name, seed, learned))
    return results, weights


# ---------------------------------------------------------------- tasks
@dataclass
class ProbeTask:
    """Store indices of the training pool and the test set, with integer labels (classes numbered
    in `classes` order)."""

    name: str
    pool: list[int]
    test: list[int]
    pool_labels: np.ndarray
    test_labels: np.ndarray
    classes: list[str]


def _labelled(name: str, pool: list[int], test: list[int], label_of: list[str]) -> ProbeTask:
    classes = sorted({label_of[i] for i in pool})
    number = {c: n for n, c in enumerate(classes)}
    unseen = sorted({label_of[i] for i in test} - set(classes))
    if unseen:
        raise UserError(f"{name} probe: test classes {unseen} have no training utterance")
    return ProbeTask(
        name,
        pool,
        test,
        np.array([number[label_of[i]] for i in pool]),
        np.array([number[label_of[i]] for i in test]),
        classes,
    )


def _names(inputs: AudioInputs):
    try:
        return [fsdd_name(path) for path in inputs.store.paths]
    except UserError as error:
        raise UserError(
            f"the speech probe reads digit and speaker from FSDD-style file names "
            f"({{digit}}_{{speaker}}_{{take}}.wav): {error}"
        ) from None


def digit_task(inputs: AudioInputs) -> ProbeTask:
    """Digits: pool = every utterance of the speakers pretraining saw, test = every utterance of
    the excluded speakers (none: a UserError, there is no unseen voice to test on)."""
    if not inputs.split.excluded:
        raise UserError(
            "the digit probe tests on a speaker pretraining never saw, and this run excluded "
            "none; pretrain with data.exclude_speakers=NAME or use --task speaker"
        )
    digits = [str(n.digit) for n in _names(inputs)]
    pool = sorted(inputs.split.train + inputs.split.heldout)
    return _labelled("digit", pool, list(inputs.split.excluded), digits)


def speaker_task(inputs: AudioInputs) -> ProbeTask:
    """Speakers pretraining saw: pool = the run's training side, test = its held-out side."""
    speakers = [n.speaker for n in _names(inputs)]
    return _labelled("speaker", list(inputs.split.train), list(inputs.split.heldout), speakers)


def probe_tasks(inputs: AudioInputs, task: str) -> list[ProbeTask]:
    """'digit', 'speaker' or 'both'."""
    if task not in (*TASKS, "both"):
        raise UserError(f"--task {task!r}: expected digit, speaker or both")
    wanted = TASKS if task == "both" else (task,)
    return [digit_task(inputs) if t == "digit" else speaker_task(inputs) for t in wanted]


# ---------------------------------------------------------------- probing
@dataclass
class TaskResults:
    task: str
    results: list[ProbeResult]
    layer_weights: list[LayerWeights] = field(default_factory=list)  # `weighted` only


def probe_encoders(
    encoders: dict[str, nn.Module],
    inputs: AudioInputs,
    tasks: list[ProbeTask],
    labels_per_class: list[int | None],
    seeds: list[int],
    layer: Layer = -1,
    log_mel: bool = True,
    pooling: Pooling = DEFAULT_POOLING,
) -> list[TaskResults]:
    """Every encoder (method name -> encoder) and the log-mel baseline on every task, with the
    same label draws and pooling for all methods. Features are computed once per utterance and
    method."""
    needed = sorted({i for t in tasks for i in (*t.pool, *t.test)})
    row = {index: r for r, index in enumerate(needed)}
    features = {
        name: encoder_features(e, inputs, needed, layer, pooling) for name, e in encoders.items()
    }
    if log_mel:
        frames = log_mel_features(inputs, needed, pooling)  # (N, D)
        # weighted: a one-layer stack, so that it meets the encoders' probe, not another one
        features[LOG_MEL] = frames[:, None] if layer == "weighted" else frames
    out = []
    for task in tasks:
        pool_rows, test_rows = [row[i] for i in task.pool], [row[i] for i in task.test]
        split = {name: (f[pool_rows], f[test_rows]) for name, f in features.items()}
        draws = (task.pool_labels, task.test_labels, labels_per_class, seeds)
        if layer == "weighted":
            out.append(TaskResults(task.name, *probe_weighted_layers(split, *draws)))
        else:
            out.append(TaskResults(task.name, probe_features(split, *draws)))
    return out


def probe_audio_run(
    run_dir: str | Path,
    labels_per_class: list[int | None] | None = None,
    seeds: list[int] | None = None,
    layer: str | Layer = -1,
    task: str = "both",
    baselines: bool = True,
    pooling: str = DEFAULT_POOLING,
) -> list[TaskResults]:
    """Probe a TERA/APC run's frozen encoder (and, with `baselines`, the same encoder at random
    initialisation and pooled log-mel frames) on FSDD digits and/or speakers."""
    from selfsup.recipes import RECIPES, initialised_model, load_run
    from selfsup.runs import RunFolder

    folder = RunFolder.open(
        run_dir, archs=AUDIO_ARCHS, refusal="{path}: a {arch} run; this needs a TERA or APC run"
    )
    loaded = load_run(folder)
    cfg = loaded.config
    encoder = loaded.model.encoder
    chosen = parse_layer(str(layer), encoder.num_layers)
    inputs = load_audio_inputs(folder)
    tasks = probe_tasks(inputs, task)
    encoders = {cfg.arch: encoder}
    if baselines:
        encoders[RANDOM_INIT] = initialised_model(RECIPES[cfg.arch], cfg).encoder.eval()
    return probe_encoders(
        encoders,
        inputs,
        tasks,
        labels_per_class or [1, 5, 20, None],
        seeds or [0, 1, 2],
        chosen,
        log_mel=baselines,
        pooling=parse_pooling(pooling),
    )


def format_layer_weights(weights: list[LayerWeights]) -> str:
    """Markdown: the learned weight of every layer, mean over seeds, a row per method and labels
    per class."""
    groups: dict[tuple[str, str], list[list[float]]] = {}
    for w in weights:
        groups.setdefault((w.method, w.labels_per_class), []).append(w.weights)
    layers = len(weights[0].weights)
    rows = [
        [method, labels, *np.mean(ws, axis=0).astype(float).tolist()]
        for (method, labels), ws in groups.items()
    ]
    headers = ["method", "labels / class", *(f"layer {n}" for n in range(layers))]
    return markdown_table(headers, rows)


def format_task_tables(results: list[TaskResults]) -> str:
    """A markdown table per task (method x labels per class), under a heading naming it, then
    the learned layer weights where the probe learned them."""
    parts = []
    for r in results:
        parts.append(f"{r.task}:\n{format_table(r.results)}")
        if r.layer_weights:
            weights = format_layer_weights(r.layer_weights)
            parts.append(f"{r.task}, learned layer weights (mean over seeds):\n{weights}")
    return "\n\n".join(parts)


def results_json(results: list[TaskResults]) -> list[dict]:
    """Every single result, with its task (and, for `weighted`, the layer weights its probe
    learned): what --json and the experiment write."""
    out = []
    for r in results:
        learned = {(w.method, w.labels_per_class, w.seed): w.weights for w in r.layer_weights}
        for p in r.results:
            weights = learned.get((p.method, p.labels_per_class, p.seed))
            extra = {} if weights is None else {"layer_weights": weights}
            out.append({"task": r.task, **asdict(p), **extra})
    return out
