"""Judging a frozen speech encoder (TERA/APC) with few labels: `selfsup probe RUN` on an audio run.

Shape legend: N utterances, B batch, T frames, F mel bands, C width, L layers.

An utterance's feature is the encoder's hidden states mean-pooled over its real frames (padding
never counts), from one layer (`layer=-1`: the last; 0 is the input representation) or
`layer="all"`: the equal-weight mean of all L + 1 layer outputs. SUPERB (Yang et al. 2021) learns
the layer weights with the probe (`WeightedLayerSum`); here they stay equal, because a weight
learned from one label per class would mostly fit noise, and the scikit-learn probe it would
replace is the one the image probe uses (selfsup/evaluation/probe.py), so both judge alike.

Two baselines read the same frames:
- log-mel: mean and std per band over each third of the utterance of the frames the encoder
  reads. Under the default per-utterance normalisation the whole utterance's mean is 0 and its
  std 1 in every band, so pooling the whole would say nothing; thirds keep the coarse time course
  a spoken digit has, and reading the same normalised frames as the encoder means the comparison
  measures what pretraining learned to extract, not what normalisation removed.
- random init: the same encoder as training started it (seeded by train.seed).

Tasks, on FSDD-named files (`{digit}_{speaker}_{take}.wav`; the FSDD set or a folder of them):
- digit: the training pool is every recording of the speakers pretraining saw; the test set is
  every recording of the excluded speakers (data.exclude_speakers), which pretraining never saw:
  do the features carry the word across a new voice?
- speaker: the speakers pretraining saw; the pool is the run's training side (FSDD: takes 5-49),
  the test set its held-out side (FSDD: takes 0-4).
Each draws k labelled utterances per class (the same draw for every method) for several seeds and
scores a linear probe and k-NN (selfsup/evaluation/probe.py's `probe_features`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from selfsup.data.audio import fsdd_name
from selfsup.errors import UserError
from selfsup.evaluation.probe import ProbeResult, format_table, probe_features
from selfsup.recipes.audio import AudioInputs, load_audio_inputs

Layer = int | Literal["all"]
TASKS = ("digit", "speaker")
AUDIO_ARCHS = ("tera", "apc")
LOG_MEL = "log-mel"
RANDOM_INIT = "random init"
LOG_MEL_SEGMENTS = 3  # thirds of an utterance: see the module docstring


# ---------------------------------------------------------------- features
def parse_layer(text: str, num_layers: int | None = None) -> Layer:
    """'all', '-1' or an index -> the layer choice; with `num_layers` (L), checked against the
    L + 1 outputs (0: the input representation, L or -1: the last)."""
    text = text.strip().lower()
    if text == "all":
        return "all"
    try:
        layer = int(text)
    except ValueError:
        raise UserError(f"--layer: {text!r} is not a layer number or 'all'") from None
    if num_layers is not None and not -(num_layers + 1) <= layer <= num_layers:
        raise UserError(
            f"--layer {layer}: the encoder has {num_layers + 1} outputs (0 is the input "
            f"representation, {num_layers} or -1 the last); give one of them or 'all'"
        )
    return layer


def pool_real_frames(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, C), attention_mask (B, T) 1 on real frames -> (B, C) mean over real frames."""
    mask = attention_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def _pad(frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Utterances (T_i, F) -> features (B, T, F) padded at the end, attention_mask (B, T)."""
    longest = max(len(f) for f in frames)
    features = torch.zeros(len(frames), longest, frames[0].shape[1])
    mask = torch.zeros(len(frames), longest, dtype=torch.long)
    for row, f in enumerate(frames):
        features[row, : len(f)], mask[row, : len(f)] = f, 1
    return features, mask


@torch.no_grad()
def pooled_layer_features(
    encoder: nn.Module, features: torch.Tensor, attention_mask: torch.Tensor, layer: Layer
) -> torch.Tensor:
    """One padded batch (B, T, F) -> (B, C): the chosen layer (or the mean of all) pooled over
    the real frames."""
    outputs = encoder.layer_outputs(features, attention_mask)  # L + 1 of (B, T, C)
    hidden = torch.stack(outputs).mean(0) if layer == "all" else outputs[layer]
    return pool_real_frames(hidden, attention_mask)


@torch.no_grad()
def encoder_features(
    encoder: nn.Module,
    inputs: AudioInputs,
    indices: list[int],
    layer: Layer = -1,
    batch_size: int = 64,
) -> np.ndarray:
    """(N, C) float32 pooled features of the utterances `indices`, whole (an utterance longer than
    model.max_position is cut to its first max_position frames: the encoder reads no more).

    Utterances are batched in order of length, so a batch carries little padding."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    longest = encoder.config.max_position
    order = sorted(range(len(indices)), key=lambda i: len(inputs.store.utterance(indices[i])))
    out = np.zeros((len(indices), encoder.config.hidden_size), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        features, mask = _pad([inputs.frames(indices[r])[:longest] for r in rows])
        pooled = pooled_layer_features(encoder, features.to(device), mask.to(device), layer)
        out[rows] = pooled.float().cpu().numpy()
    encoder.train(was_training)
    return out


def log_mel_features(inputs: AudioInputs, indices: list[int]) -> np.ndarray:
    """(N, 2 * 3 * F) float32: mean and std per band over each third of the frames the encoder
    reads (why thirds: the module docstring). An utterance under three frames repeats frames."""
    out = []
    for i in indices:
        frames = inputs.frames(i)  # (T, F)
        T = len(frames)
        parts = []
        for s in range(LOG_MEL_SEGMENTS):
            lo = min(s * T // LOG_MEL_SEGMENTS, T - 1)
            hi = max((s + 1) * T // LOG_MEL_SEGMENTS, lo + 1)
            segment = frames[lo:hi]
            parts += [segment.mean(0), segment.std(0, unbiased=False)]
        out.append(torch.cat(parts))
    return torch.stack(out).numpy().astype(np.float32)


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


def probe_encoders(
    encoders: dict[str, nn.Module],
    inputs: AudioInputs,
    tasks: list[ProbeTask],
    labels_per_class: list[int | None],
    seeds: list[int],
    layer: Layer = -1,
    log_mel: bool = True,
) -> list[TaskResults]:
    """Every encoder (method name -> encoder) and the log-mel baseline on every task, with the
    same label draws for all methods. Features are computed once per utterance and method."""
    needed = sorted({i for t in tasks for i in (*t.pool, *t.test)})
    row = {index: r for r, index in enumerate(needed)}
    features = {name: encoder_features(e, inputs, needed, layer) for name, e in encoders.items()}
    if log_mel:
        features[LOG_MEL] = log_mel_features(inputs, needed)
    out = []
    for task in tasks:
        pool_rows, test_rows = [row[i] for i in task.pool], [row[i] for i in task.test]
        split = {name: (f[pool_rows], f[test_rows]) for name, f in features.items()}
        results = probe_features(split, task.pool_labels, task.test_labels, labels_per_class, seeds)
        out.append(TaskResults(task.name, results))
    return out


def probe_audio_run(
    run_dir: str | Path,
    labels_per_class: list[int | None] | None = None,
    seeds: list[int] | None = None,
    layer: str | Layer = -1,
    task: str = "both",
    baselines: bool = True,
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
    )


def format_task_tables(results: list[TaskResults]) -> str:
    """A markdown table per task (method x labels per class), under a heading naming it."""
    return "\n\n".join(f"{r.task}:\n{format_table(r.results)}" for r in results)


def results_json(results: list[TaskResults]) -> list[dict]:
    """Every single result, with its task: what --json and the experiment write."""
    return [{"task": r.task, **asdict(p)} for r in results for p in r.results]
