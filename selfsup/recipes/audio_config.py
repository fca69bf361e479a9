"""The speech recipes' config (`AudioPretrainConfig`, shared by `tera` and `apc`), its presets and
the two recipes' registry entries, free of torch so that `selfsup pretrain --arch tera --help`
imports none. Features, splits, batches and models: selfsup/recipes/audio.py, which re-exports
these names; the recipes name its functions, imported when a run starts.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from selfsup.config import load_config, option
from selfsup.data.audio_config import LogMelConfig, fsdd_log_mel_config
from selfsup.data.frames_config import FrameMaskingConfig
from selfsup.errors import UserError
from selfsup.models.transformer_config import TransformerConfig
from selfsup.objectives.acoustic_config import AcousticObjectiveConfig
from selfsup.recipes.recipe import Recipe, lazy_recipe
from selfsup.trainer_config import TrainConfig

FSDD = "fsdd"

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


# ---------------------------------------------------------------- the recipes
FUNCTIONS = "selfsup.recipes.audio"  # the recipes' features, batches and models (torch)


def _audio_recipe(arch: str, summary: str) -> Recipe:
    return lazy_recipe(
        FUNCTIONS,
        name=arch,
        kind="pretraining",
        arch=arch,
        summary=summary,
        config_class=AudioPretrainConfig,
        presets={name: functools.partial(make, arch) for name, make in PRESETS.items()},
        shortcuts={
            "--dataset": ("data.dataset", "speech to learn from (fsdd or a folder of WAVs)")
        },
        epilog=EPILOG,
    )


TERA = _audio_recipe("tera", "TERA on speech: reconstruct masked log-mel frames (bidirectional)")
APC = _audio_recipe("apc", "APC on speech: predict the log-mel frame n steps ahead (causal)")


def load_audio_config(path: str | Path) -> AudioPretrainConfig:
    return load_config(AudioPretrainConfig, path)
