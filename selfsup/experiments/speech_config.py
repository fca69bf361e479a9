"""The settings and command line of `selfsup experiment speech` (`SpeechConfig` and its presets),
torch-free so that its --help and a bad flag import no torch; the experiment itself is
selfsup/experiments/speech.py, which re-exports these names (`main` included)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfsup.config import option
from selfsup.experiments.common import experiment_main

ARCHS = ("tera", "apc")


@dataclass
class SpeechConfig:
    archs: list[str] = option(list(ARCHS), "pretraining recipes to compare (tera, apc)")
    seeds: int = option(3, "pretraining, random-init and label-draw seeds 0..seeds-1")
    preset: str = option("fsdd", "the audio pretraining preset (selfsup/recipes/audio.py)")
    steps: int = option(1000, "pretraining steps of every run (the fsdd preset's 1000)")
    dataset: str = option("fsdd", "fsdd, or a folder of FSDD-named WAVs ({digit}_{who}_{take})")
    exclude_speaker: str = option(
        "george", "the speaker pretraining never hears; the digit probe tests on it"
    )
    labels_per_class: str = option("1,5,20,all", "labelled utterances per class, comma-separated")
    layer: str = option(
        "-1",
        "encoder output to pool: an index (-1 the last), all (equal weights) or weighted "
        "(weights learned with the probe)",
    )
    pooling: str = option(
        "segments",
        "utterance pooling for every method: segments (mean and std over each third) or mean",
    )
    task: str = option("both", "digit, speaker or both")


def preset_gpu() -> SpeechConfig:
    """Ten times the CPU preset's steps: the fsdd preset was still improving at 1000."""
    return SpeechConfig(steps=10_000)


def preset_quick() -> SpeechConfig:
    """The tests' size: the tiny model for a few steps, two seeds, two label settings."""
    return SpeechConfig(seeds=2, preset="tiny", steps=4, labels_per_class="1,all")


PRESETS = {"cpu": SpeechConfig, "gpu": preset_gpu, "quick": preset_quick}


DESCRIPTION = (
    "TERA and APC pretrained on FSDD without one speaker, probed with 1/5/20/all labels per "
    "class (digits of the unseen speaker, identity of the seen ones) against random init and "
    "log-mel; seeds x methods, a table and a plot; finished runs are reused"
)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`selfsup experiment speech [--out DIR] [--preset P | --quick] [key=value ...]`."""
    return experiment_main(DESCRIPTION, "runs/speech", PRESETS, _run, argv, prog)


def _run(cfg: SpeechConfig, out: Path):
    # torch: imported once the flags are read
    from selfsup.experiments.speech import run_speech

    return run_speech(cfg, out)
