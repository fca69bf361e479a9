"""Speech pretraining recipes: unlabelled WAV files in, a pretrained acoustic encoder out.

`tera` (Liu, Li & Lee 2021; Mockingjay, Liu et al. 2020) corrupts log-mel frames (time spans,
a channel band, noise) and reconstructs them with a bidirectional encoder; `apc` (Chung et al.
2019; the Transformer form of Chung & Glass 2020) predicts the frame `objective.time_shift` steps
ahead with a causal encoder. Both share `AudioPretrainConfig` and its presets (with the two
recipes' registry entries in selfsup/recipes/audio_config.py: torch-free, for --help) and the data
path:

    WAVs          data.dataset: fsdd (the shared Free Spoken Digit Dataset), a folder of .wav
                  files (recursive) or a list file (one path per line; selfsup/data/audio.py)
    features      log-mel frames (data.features), computed once into a memory-mapped store in
                  RUN/data/features/ and reused while the files and settings are unchanged, so
                  --resume reads no audio
    split         by utterance (selfsup/data/frames.py): FSDD holds out its test takes 0-4, a
                  folder a seeded share; data.exclude_speakers leaves speakers out of both
    batches       random crops of at most data.max_frames frames, a pure function of (seed,
                  batch index); TERA's corruption drawn from the same seeded generator

Positions are rotary in every preset: TERA adds fixed sinusoids and BERT a learned table, but a
tiny TERA model with a learned table interpolated across 7-frame gaps far worse in the same steps
(held-out L1 0.49 against 0.15 after 300 steps, tests/test_acoustic.py).

Beside the held-out loss, each evaluation logs the loss of a context-blind guess on the same
batches: for TERA the zero frame (each band's mean under the default per-utterance
normalisation), for APC the current frame copied forward. A model below that line uses context.
The run folder is described in selfsup/runs.py; the lifecycle in selfsup/recipes/base.py.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from selfsup.data.audio import (
    FSDD_TEST_INDICES,
    AudioItem,
    FeatureStore,
    NormStats,
    cached_feature_store,
    fsdd_items,
    fsdd_name,
    list_audio,
    name_fields,
)
from selfsup.data.frames import (
    AcousticBatches,
    UtteranceSplit,
    split_utterances,
)
from selfsup.errors import UserError
from selfsup.io import atomic_write_json
from selfsup.objectives.acoustic import (
    AcousticPretrainer,
    apc_l1,
    masked_l1,
)
from selfsup.recipes.audio_config import (  # noqa: F401 (re-export: config, presets, recipes)
    APC,
    EPILOG,
    FSDD,
    PRESETS,
    TERA,
    AudioDataConfig,
    AudioPretrainConfig,
    load_audio_config,
    preset_fsdd,
    preset_librispeech_gpu,
    preset_tiny,
)
from selfsup.recipes.base import LoadedRun, Plan
from selfsup.runs import RunFolder
from selfsup.trainer import BatchSource

FEATURES_FOLDER = "features"  # RUN/data/features: the feature store
NORM_STATS_FILE = "norm_stats.json"  # RUN/data/: global normalisation fitted on the training side


# ---------------------------------------------------------------- inputs
def list_items(data: AudioDataConfig) -> list[AudioItem]:
    """The files of data.dataset: FSDD labelled by digit, or a folder / list file."""
    if data.dataset == FSDD:
        return fsdd_items(label="digit")
    path = Path(data.dataset)
    if not path.exists():
        raise UserError(
            f"data.dataset={data.dataset}: no such folder or file; expected fsdd, a folder of "
            "audio files (.wav, or .flac with the audio extra) or a list file of their paths"
        )
    return list_audio(path)


def speaker_of(data: AudioDataConfig) -> Callable[[Path], str] | None:
    """A function path -> speaker name, or None when the data set names no speakers."""
    if data.speaker_pattern:
        return lambda path: name_fields(path, data.speaker_pattern)["speaker"]
    if data.dataset == FSDD:
        return lambda path: fsdd_name(path).speaker
    return None


def check_speakers(data: AudioDataConfig, items: list[AudioItem]) -> None:
    """Every file name gives a speaker (when speakers are asked for), and data.exclude_speakers
    names speakers the data set has (a typo would exclude none), before any audio is read."""
    speaker = speaker_of(data)
    if speaker is None and data.exclude_speakers:
        raise UserError(
            f"data.exclude_speakers: {data.dataset} names no speakers; set data.speaker_pattern "
            "to a regex with a (?P<speaker>...) group matching the file names"
        )
    if speaker is None:
        return
    known = sorted({speaker(item.path) for item in items})
    if not data.exclude_speakers:
        return
    unknown = [name for name in data.exclude_speakers if name not in known]
    if unknown:
        shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise UserError(
            f"data.exclude_speakers: no speaker {', '.join(unknown)} in {data.dataset} "
            f"(its speakers: {shown})"
        )
    if set(data.exclude_speakers) >= set(known):
        raise UserError(f"data.exclude_speakers excludes every speaker of {data.dataset}")


def utterance_split(data: AudioDataConfig, store: FeatureStore) -> UtteranceSplit:
    """Training, held-out and excluded utterances of the store (selfsup/data/frames.py)."""
    speaker = speaker_of(data)
    speakers = [speaker(path) for path in store.paths] if speaker is not None else None
    heldout = (
        [fsdd_name(path).index in FSDD_TEST_INDICES for path in store.paths]
        if data.dataset == FSDD
        else None
    )
    return split_utterances(
        len(store), data.heldout_share, speakers, data.exclude_speakers, heldout
    )


def open_store(cfg: AudioPretrainConfig, run_dir: Path, items: list[AudioItem]) -> FeatureStore:
    """The run's feature store, RUN/data/features: built on the first start, reused after."""
    started = time.perf_counter()
    store = cached_feature_store(
        items, run_dir / "data" / FEATURES_FOLDER, cfg.data.features, skip_bad=cfg.data.skip_bad
    )
    if not store.reused:
        skipped = f", {store.report.skipped} bad files skipped" if store.report.skipped else ""
        print(
            f"features: {len(store)} utterances, {store.num_frames} frames of "
            f"{cfg.data.features.n_mels} bands in {store.directory} "
            f"({time.perf_counter() - started:.1f} s{skipped})",
            file=sys.stderr,
        )
    return store


def normalisation(
    cfg: AudioPretrainConfig, store: FeatureStore, split: UtteranceSplit
) -> NormStats | None:
    """features.normalize=global: mean and std per band over the training side, fitted once and
    kept in RUN/data/norm_stats.json (probes read them there); None otherwise (the store's frames
    are already normalised per utterance, or raw by choice)."""
    if cfg.data.features.normalize != "global":
        return None
    path = store.directory.parent / NORM_STATS_FILE
    if store.reused and path.is_file():
        return NormStats.from_dict(json.loads(path.read_text(encoding="utf-8")))
    stats = store.norm_stats(split.train)
    atomic_write_json(path, stats.to_dict())
    return stats


@dataclass
class AudioInputs:
    """What a run's probe needs beside the encoder: the feature store of every listed file
    (excluded speakers too: labels, paths), the split the run trained on, and the global
    normalisation when features.normalize=global (None: the stored frames are ready)."""

    store: FeatureStore
    split: UtteranceSplit
    stats: NormStats | None

    def frames(self, utterance: int) -> torch.Tensor:
        """(T, F) float32 frames of a whole stored utterance, as the encoder read them."""
        return self.store.tensor(utterance, self.stats)


def batch_sources(
    cfg: AudioPretrainConfig, inputs: AudioInputs
) -> tuple[AcousticBatches, AcousticBatches]:
    """Training batches of the training side, fixed evaluation batches of the held-out side."""

    def source(indices: list[int]) -> AcousticBatches:
        return AcousticBatches(
            inputs.store,
            indices,
            cfg.data.max_frames,
            cfg.train.batch_size,
            cfg.train.seed,
            cfg.arch,
            cfg.masking,
            inputs.stats,
        )

    return source(inputs.split.train), source(inputs.split.heldout)


class TrainAndHeldOut:
    """Training batches from one source, evaluation batches from the other."""

    def __init__(self, train: BatchSource, heldout: BatchSource) -> None:
        self.batch, self.eval_batches = train.batch, heldout.eval_batches


def context_blind_losses(arch: str, batches: list[dict], time_shift: int) -> dict[str, float]:
    """Mean L1 of a guess that reads no context, on the held-out batches: TERA's zero frame (the
    band means under per-utterance normalisation), APC's current frame copied forward."""
    total, count = 0.0, 0
    for batch in batches:
        if arch == "tera":
            targets = batch["targets"]
            loss, n = masked_l1(torch.zeros_like(targets), targets, batch["reconstruction_mask"])
        else:
            features = batch["features"]
            loss, n = apc_l1(features, features, batch["attention_mask"], time_shift)
        total, count = total + float(loss), count + n
    name = "mean_guess" if arch == "tera" else "copy_guess"
    return {f"eval_{arch}_{name}_loss": total / max(count, 1)}


# ---------------------------------------------------------------- the recipes
def setup(cfg: AudioPretrainConfig, run: RunFolder) -> dict:
    """Check the config and list the files (no audio read yet): a missing or empty data set, or
    an excluded speaker it does not have, stops the run before it starts."""
    cfg.validate()
    items = list_items(cfg.data)
    check_speakers(cfg.data, items)
    return {"items": items}


def data(cfg: AudioPretrainConfig, run: RunFolder, state: dict) -> Plan:
    """The feature store (built or reused), the split, and the batch sources."""
    store = open_store(cfg, run.path, state["items"])
    split = utterance_split(cfg.data, store)
    inputs = AudioInputs(store, split, normalisation(cfg, store, split))
    train_data, heldout_data = batch_sources(cfg, inputs)
    baseline = context_blind_losses(
        cfg.arch, heldout_data.eval_batches(cfg.train.eval_batches), cfg.objective.time_shift
    )
    return Plan(
        TrainAndHeldOut(train_data, heldout_data),
        f"{cfg.arch} on {Path(cfg.data.dataset).name or cfg.data.dataset}",
        eval_extra=lambda _model: baseline,
        state={"inputs": inputs},
    )


def build_model(cfg: AudioPretrainConfig, state: dict | None = None) -> AcousticPretrainer:
    """The encoder (causal for APC) and the objective's head; the caller seeds it."""
    return AcousticPretrainer(cfg.model, cfg.data.features.n_mels, cfg.arch, cfg.objective)


def load(run: RunFolder, device: str = "cpu") -> LoadedRun:
    """Config and final weights (or the latest checkpoint's) of a TERA/APC run; the encoder is
    `loaded.model.encoder` (`layer_outputs` gives every layer, for SUPERB-style probes)."""
    cfg = run.config(AudioPretrainConfig)
    model = build_model(cfg)
    model.load_state_dict(run.weights(latest_checkpoint=True))
    return LoadedRun(run, cfg, model.to(device).eval())


def load_audio_inputs(run: str | Path | RunFolder) -> AudioInputs:
    """The feature store, split and normalisation a TERA/APC run trained with, reopened from
    RUN/data without reading audio (a probe's inputs: `AudioInputs.frames(i)`, store labels)."""
    folder = run if isinstance(run, RunFolder) else RunFolder.open(run, archs=("tera", "apc"))
    cfg = folder.config(AudioPretrainConfig)
    store = FeatureStore.open(folder.path / "data" / FEATURES_FOLDER)
    split = utterance_split(cfg.data, store)
    stats = None
    if cfg.data.features.normalize == "global":
        stats_path = folder.path / "data" / NORM_STATS_FILE
        stats = NormStats.from_dict(json.loads(stats_path.read_text(encoding="utf-8")))
    return AudioInputs(store, split, stats)
