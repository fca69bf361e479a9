"""Speech pretraining recipes: unlabelled WAV files in, a pretrained acoustic encoder out.

`tera` (Liu, Li & Lee 2021; Mockingjay, Liu et al. 2020) corrupts log-mel frames (time spans,
a channel band, noise) and reconstructs them with a bidirectional encoder; `apc` (Chung et al.
2019; the Transformer form of Chung & Glass 2020) predicts the frame `objective.time_shift` steps
ahead with a causal encoder. Both share `AudioPretrainConfig`, the presets below and the data path:

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

import dataclasses
import functools
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from selfsup.config import load_config, option
from selfsup.data.audio import (
    FSDD_TEST_INDICES,
    AudioItem,
    FeatureStore,
    LogMelConfig,
    NormStats,
    cached_feature_store,
    fsdd_items,
    fsdd_log_mel_config,
    fsdd_name,
    list_audio,
    name_fields,
)
from selfsup.data.frames import (
    AcousticBatches,
    FrameMaskingConfig,
    UtteranceSplit,
    split_utterances,
)
from selfsup.errors import UserError
from selfsup.io import atomic_write_json
from selfsup.models.transformer import TransformerConfig
from selfsup.objectives.acoustic import (
    AcousticObjectiveConfig,
    AcousticPretrainer,
    apc_l1,
    masked_l1,
)
from selfsup.recipes.base import LoadedRun, Plan, Recipe
from selfsup.runs import RunFolder
from selfsup.trainer import BatchSource, TrainConfig

FSDD = "fsdd"
FEATURES_FOLDER = "features"  # RUN/data/features: the feature store
NORM_STATS_FILE = "norm_stats.json"  # RUN/data/: global normalisation fitted on the training side

EPILOG = """\
examples:
  selfsup pretrain --arch tera --preset tiny --out runs/tera-tiny      # seconds, on FSDD
  selfsup pretrain --arch tera --preset fsdd --out runs/tera           # FSDD, minutes on 1 core
  selfsup pretrain --arch apc --preset fsdd --out runs/apc --data.exclude_speakers theo
  selfsup pretrain --arch tera --dataset my_wavs/ --out runs/mine      # any folder of WAVs
  selfsup pretrain --arch tera --preset librispeech-gpu --dataset /data/ls-wav --out runs/base
  selfsup pretrain --out runs/tera --resume                            # after Ctrl-C / kill

Data sets: fsdd (the Free Spoken Digit Dataset under ../shared/data or $SELFSUP_DATA_DIR: 3,000
recordings at 8 kHz by 6 speakers; its test takes 0-4 are held out), or a folder of audio files
(PCM .wav; .flac and other formats with the `audio` extra; searched recursively) or a list file
of their paths (one per line). Files at another sample rate are resampled to data.features.sample_rate. data.exclude_speakers leaves speakers out of training
and held-out data: FSDD names them in its file names ({digit}_{speaker}_{take}.wav); a folder needs
data.speaker_pattern, a regular expression with a (?P<speaker>...) group matched on the file name.
"""


@dataclass
class AudioDataConfig:
    dataset: str = option(
        FSDD,
        "fsdd (the shared Free Spoken Digit Dataset) or a path: a folder of audio files "
        "(recursive) or a list file of audio paths, one per line",
    )
    features: LogMelConfig = option(fsdd_log_mel_config(), "")
    max_frames: int = option(
        64, "longest crop of an utterance per training row, in frames (longer ones are cropped)"
    )
    heldout_share: float = option(
        0.05, "share of utterances held out for evaluation (fsdd: its test takes 0-4 instead)"
    )
    exclude_speakers: list[str] = option(
        [], "speakers left out of training and held-out data, comma-separated (e.g. theo)"
    )
    speaker_pattern: str = option(
        "",
        "regex with a (?P<speaker>...) group matched on each file name: who speaks, for "
        "exclude_speakers; empty: FSDD's names for fsdd, no speakers for a folder",
    )
    skip_bad: bool = option(
        False, "skip unreadable or non-PCM WAV files (counted) instead of stopping at the first"
    )


@dataclass
class AudioPretrainConfig:
    arch: Literal["tera", "apc"] = option(
        "tera",
        "tera (masked frame reconstruction, bidirectional) or apc (predict a later frame, "
        "causal); bert, gpt, simclr and byol have their own options (selfsup pretrain --arch "
        "bert --help)",
    )
    data: AudioDataConfig = option(AudioDataConfig(), "")
    model: TransformerConfig = option(TransformerConfig(), "")
    masking: FrameMaskingConfig = option(FrameMaskingConfig(), "")
    objective: AcousticObjectiveConfig = option(AcousticObjectiveConfig(), "")
    train: TrainConfig = option(TrainConfig(), "")

    def validate(self) -> None:
        """Every setting checked before any audio is read."""
        if not self.data.dataset.strip():
            raise UserError(
                "data.dataset is empty; give --dataset DIR (a folder of .wav files) or fsdd"
            )
        self.data.features.validate()
        self.model.validate()
        self.masking.validate()
        self.objective.validate()
        self.train.validate()
        if self.data.max_frames < 1:
            raise UserError(f"data.max_frames must be positive, got {self.data.max_frames}")
        if self.data.max_frames > self.model.max_position:
            raise UserError(
                f"data.max_frames={self.data.max_frames} is longer than the model reads "
                f"(model.max_position={self.model.max_position})"
            )
        if self.arch == "apc" and self.data.max_frames <= self.objective.time_shift:
            raise UserError(
                f"data.max_frames={self.data.max_frames} leaves APC no frame to predict "
                f"(objective.time_shift={self.objective.time_shift})"
            )
        if self.data.speaker_pattern:
            try:
                groups = re.compile(self.data.speaker_pattern).groupindex
            except re.error as error:
                raise UserError(
                    f"data.speaker_pattern {self.data.speaker_pattern!r}: not a regex ({error})"
                ) from None
            if "speaker" not in groups:
                raise UserError(
                    f"data.speaker_pattern {self.data.speaker_pattern!r} has no (?P<speaker>...) "
                    "group"
                )
        if not 0.0 < self.data.heldout_share < 1.0:
            raise UserError(f"data.heldout_share must be in (0, 1), got {self.data.heldout_share}")


# ---------------------------------------------------------------- presets
def preset_tiny(arch: str = "tera") -> AudioPretrainConfig:
    """Seconds: tests and a first look (2 layers of width 32, 16 mel bands, crops of 32 frames)."""
    cfg = AudioPretrainConfig()
    cfg.arch = arch  # type: ignore[assignment]  # tera or apc: the recipe's own name
    cfg.data.features = dataclasses.replace(fsdd_log_mel_config(), n_mels=16)
    cfg.data.max_frames = 32
    cfg.model = TransformerConfig(
        hidden_size=32,
        num_layers=2,
        num_heads=2,  # heads of 16: rotary needs an even head width
        max_position=64,
        position_encoding="rotary",
        norm_position="pre",  # stable at the high learning rate a few steps need
        dropout=0.0,
        attention_dropout=0.0,
    )
    cfg.masking.channel_mask_max_width = 3  # TERA's 20% of the channels, of 16
    cfg.train = TrainConfig(
        steps=20,
        batch_size=8,
        # measured on the tests' tones: TERA's training loss fell 40% in 60 steps at 1e-2 and
        # 15% at 3e-3; on FSDD both end at the same held-out loss after 20 steps
        lr=1e-2,
        warmup_steps=2,
        schedule="cosine",
        eval_batches=2,
        checkpoint_every=10,
        log_every=2,
        threads=1,  # ops this small run fastest on one thread (see text's tiny preset)
    )
    return cfg


def preset_fsdd(arch: str = "tera") -> AudioPretrainConfig:
    """FSDD at 8 kHz on one CPU thread in about 2.5 minutes: 3 pre-LN layers of width 128
    (TERA's base is 3 layers of 768) on crops of 64 frames, batches of 32 utterances.

    Sized by measurement on one busy thread: a step takes 0.12 s at width 128 (0.6M
    parameters), 0.20 s at 192 and 0.33 s at 256. At equal wall time (about 135 s) width 128 for
    1000 steps ended at held-out TERA L1 0.397 and width 256 for 400 steps at 0.457 (the mean
    guess: 0.831): more steps of the small model, not a wider one."""
    cfg = AudioPretrainConfig()
    cfg.arch = arch  # type: ignore[assignment]  # tera or apc: the recipe's own name
    cfg.data.features = fsdd_log_mel_config()  # 40 bands up to 4 kHz, 25 ms / 10 ms frames
    # FSDD's median recording is 0.42 s (42 frames), 90% are under 0.61 s: 64 frames keep ~95%
    # whole, and a batch is only as long as its longest crop
    cfg.data.max_frames = 64
    cfg.model = TransformerConfig(
        hidden_size=128,
        num_layers=3,  # TERA's depth at a sixth of its width
        num_heads=2,  # heads of 64, as BERT's
        max_position=256,  # rotary has no table: probes may read whole recordings (up to 2.3 s)
        position_encoding="rotary",
        norm_position="pre",  # pre-LN tolerates the high learning rate a short run needs
        dropout=0.0,  # too few steps to overfit 2,700 recordings
        attention_dropout=0.0,
        layer_norm_eps=1e-6,
    )
    cfg.masking.channel_mask_max_width = 8  # TERA's 20% of the channels, of 40
    cfg.train = TrainConfig(
        steps=1000,  # ~12 epochs of the 2,700 training recordings; still improving at 1000
        batch_size=32,
        lr=2e-3,  # short runs want a high peak after a short warmup
        warmup_steps=50,
        schedule="cosine",
        min_lr_ratio=0.1,
        adam_beta2=0.98,
        eval_every=100,
        eval_batches=10,  # the whole held-out side: 300 test takes (250 with a speaker out)
        checkpoint_every=100,
        checkpoint_seconds=60,
        log_every=20,
    )
    return cfg


def preset_librispeech_gpu(arch: str = "tera") -> AudioPretrainConfig:
    """TERA base (s3prl's logMelBase-T-F-M) for a GPU and a LibriSpeech-size folder of 16 kHz
    WAVs (--dataset DIR; LibriSpeech's FLAC is read with `pip install "selfsup[audio]"`): 3
    layers of width 768, 80 mel bands, up to 1500 frames, batches of 32, AdamW at 2e-4."""
    cfg = AudioPretrainConfig()
    cfg.arch = arch  # type: ignore[assignment]  # tera or apc: the recipe's own name
    cfg.data.dataset = ""  # no default: a folder must be named
    cfg.data.features = LogMelConfig(sample_rate=16000, n_mels=80)  # TERA: 80 log-mel, CMVN
    cfg.data.max_frames = 1500  # s3prl's sequence_length
    cfg.data.heldout_share = 0.01
    cfg.model = TransformerConfig(
        hidden_size=768,
        num_layers=3,
        num_heads=12,
        intermediate_size=3072,
        max_position=1500,
        position_encoding="rotary",  # TERA: fixed sinusoids; see the module docstring
        norm_position="post",  # TERA's (pre_layer_norm: False)
        dropout=0.1,  # Mockingjay's and TERA's "drop1" runs (s3prl's yaml: 0.3)
        attention_dropout=0.1,
        layer_norm_eps=1e-12,
    )
    cfg.masking = FrameMaskingConfig()  # s3prl's logMelBase-T-F-M: 15% in 7-frame spans, ...
    cfg.train = TrainConfig(
        steps=1_000_000,  # s3prl's total_steps
        batch_size=32,  # s3prl: 8 utterances x 4 accumulated steps
        lr=2e-4,
        warmup_steps=70_000,  # s3prl's warmup_proportion 0.07
        schedule="linear",  # AdamW_with_schedule: linear warmup, then linear decay to zero
        max_grad_norm=5.0,  # s3prl's gradient_clipping
        eval_every=10_000,
        eval_batches=40,
        checkpoint_every=10_000,
        checkpoint_seconds=600,
        log_every=100,
    )
    return cfg


PRESETS = {
    "tiny": preset_tiny,
    "fsdd": preset_fsdd,
    "librispeech-gpu": preset_librispeech_gpu,
}


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


def _audio_recipe(arch: str, summary: str) -> Recipe:
    return Recipe(
        name=arch,
        kind="pretraining",
        arch=arch,
        summary=summary,
        config_class=AudioPretrainConfig,
        presets={name: functools.partial(make, arch) for name, make in PRESETS.items()},
        setup=setup,
        data=data,
        build_model=build_model,
        load=load,
        shortcuts={
            "--dataset": ("data.dataset", "speech to learn from (fsdd or a folder of WAVs)")
        },
        epilog=EPILOG,
    )


TERA = _audio_recipe("tera", "TERA on speech: reconstruct masked log-mel frames (bidirectional)")
APC = _audio_recipe("apc", "APC on speech: predict the log-mel frame n steps ahead (causal)")


def load_audio_config(path: str | Path) -> AudioPretrainConfig:
    return load_config(AudioPretrainConfig, path)
