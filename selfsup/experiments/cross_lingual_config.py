"""The settings and command line of `selfsup experiment cross-lingual` (`CrossLingualConfig`, its
parts and presets), torch-free so that its --help and a bad flag import no torch; the experiment
itself is selfsup/experiments/cross_lingual.py, which re-exports these names (`main` included)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from selfsup.config import option
from selfsup.errors import UserError
from selfsup.experiments.common import experiment_main
from selfsup.experiments.jobs import JOBS_HELP
from selfsup.recipes.text_config import PRESETS as PRETRAIN_PRESETS

PARTS = ("fake-language", "qa")


@dataclass
class CrossLingualConfig:
    parts: list[str] = option(
        ["fake-language"],
        f"which parts to run ({', '.join(PARTS)}); qa fine-tunes a 12-layer encoder 12 times: "
        "hours on 2 CPU cores, minutes on a GPU (the gpu preset runs both)",
    )
    seeds: int = option(3, "fine-tuning seeds per arm")
    # fake-language
    pretrain_preset: str = option("small", "fake-language: selfsup pretrain preset")
    pretrain_steps: int = option(1500, "fake-language: pretraining steps of both corpora")
    finetune_steps: int = option(200, "fake-language: sentiment fine-tuning steps")
    finetune_lr: float = option(3e-3, "fake-language: sentiment learning rate")
    max_train_examples: int = option(4000, "fake-language: Chinese training reviews")
    max_eval_examples: int = option(1000, "fake-language: test reviews (in both languages)")
    # qa
    english_questions: int = option(1000, "qa: English training questions (whole articles)")
    english_eval_questions: int = option(300, "qa: English held-out questions (later articles)")
    chinese_train_questions: int = option(1000, "qa: CMRC 2018 trial questions (the upper bound)")
    chinese_eval_questions: int = option(300, "qa: CMRC 2018 dev questions scored zero-shot")
    qa_steps: int = option(60, "qa: fine-tuning steps of every arm")
    qa_batch_size: int = option(16, "qa: windows per step")
    qa_lr: float = option(1e-4, "qa: learning rate of every arm")
    qa_max_seq_len: int = option(192, "qa: tokens per window")
    qa_stride: int = option(128, "qa: tokens between window starts")
    qa_no_answer_windows: Literal["drop", "cls"] = option(
        "drop",
        "qa: training windows that miss their answer: drop (every arm learns from answered "
        "windows only, so equal steps are equal answered examples in both languages) or cls "
        "(kept, labelled at [CLS]: 3 of the 4 windows of a CMRC passage)",
    )
    threads: int = option(0, "CPU threads (0: torch's default)")
    jobs: int = option(0, JOBS_HELP)
    pretrain_overrides: list[str] = option([], "key=value changes to both pretraining configs")

    def validate(self) -> None:
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown or not self.parts:
            raise UserError(f"parts: expected some of {', '.join(PARTS)}, got {self.parts}")
        if self.seeds < 1:
            raise UserError("seeds must be >= 1")
        if self.pretrain_preset not in PRETRAIN_PRESETS:
            raise UserError(f"pretrain_preset: expected one of {', '.join(PRETRAIN_PRESETS)}")


def preset_gpu() -> CrossLingualConfig:
    """More of everything: all of SQuAD dev but the eval articles, 2 epochs, all of CMRC dev."""
    return CrossLingualConfig(
        parts=list(PARTS),
        pretrain_steps=20_000,
        finetune_steps=1000,
        finetune_lr=1e-3,
        max_train_examples=0,
        english_questions=8000,
        english_eval_questions=2000,
        chinese_train_questions=1000,
        chinese_eval_questions=3219,
        qa_steps=2000,
        qa_batch_size=32,
        qa_lr=5e-5,
        qa_max_seq_len=384,
        qa_stride=128,
    )


def preset_quick() -> CrossLingualConfig:
    """Seconds: the fake-language machinery (pretraining, files, both test languages)."""
    return CrossLingualConfig(
        parts=["fake-language"],
        seeds=1,
        pretrain_preset="tiny",
        pretrain_steps=3,
        finetune_steps=3,
        max_train_examples=40,
        max_eval_examples=20,
        jobs=1,
        pretrain_overrides=["train.progress=false"],
    )


PRESETS = {"cpu": CrossLingualConfig, "gpu": preset_gpu, "quick": preset_quick}


DESCRIPTION = (
    "Cross-lingual transfer: a BERT pretrained on Chinese and a disjoint 'fake' Chinese "
    "fine-tuned in one, tested in the other; multilingual-e5 fine-tuned for QA in English, "
    "tested on Chinese (Hsu, Liu & Lee 2019)."
)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`selfsup experiment cross-lingual [--out DIR] [--preset P | --quick] [key=value ...]`."""
    return experiment_main(DESCRIPTION, "runs/cross-lingual", PRESETS, _run, argv, prog)


def _run(cfg: CrossLingualConfig, out: Path):
    # torch: imported once the flags are read
    from selfsup.experiments.cross_lingual import run_cross_lingual

    return run_cross_lingual(cfg, out)
