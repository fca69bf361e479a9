"""The settings and command line of `selfsup experiment dna` (`DnaConfig`, its arms and presets),
torch-free so that its --help and a bad flag import no torch; the experiment itself is
selfsup/experiments/dna.py, which re-exports these names (`main` included)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfsup.config import option
from selfsup.errors import UserError
from selfsup.experiments.common import experiment_main
from selfsup.experiments.jobs import JOBS_HELP

# arm -> (encoder, random init); the encoder pairs share a learning-rate grid
ARMS = {
    "minilm": ("minilm", False),
    "minilm random init": ("minilm", True),
    "chinese": ("chinese", False),
    "chinese random init": ("chinese", True),
}


@dataclass
class DnaConfig:
    arms: list[str] = option(list(ARMS), f"transformer arms (of {', '.join(ARMS)})")
    seeds: int = option(3, "mapping tables and fine-tuning seeds per arm")
    steps: int = option(300, "fine-tuning steps of every arm (batch 16: 1.7 epochs of 2,871)")
    batch_size: int = option(16, "fine-tuning batch size (the paper's effective batch)")
    minilm_learning_rates: list[float] = option(
        [1e-4, 3e-4], "the grid of the two MiniLM arms (chosen on dev, seed 0)"
    )
    chinese_learning_rates: list[float] = option(
        [1e-3, 3e-3], "the grid of the two Chinese-encoder arms (chosen on dev, seed 0)"
    )
    eval_every: int = option(50, "dev accuracy every N steps: the fine-tuning curve")
    chinese_run: str = option(
        "", "a selfsup BERT run to use as the Chinese encoder (empty: pretrain the demo's)"
    )
    chinese_pretrain_steps: int = option(1500, "steps of that pretraining when it is made here")
    cv_folds: int = option(5, "also score the chosen rates by k-fold cross-validation (0: off)")
    cv_arms: list[str] = option(
        ["chinese", "chinese random init"],
        "the arms cross-validated (MiniLM's 5 x 2 runs would double the CPU preset's time)",
    )
    kmer_max: int = option(4, "k-mer baseline: counts of k = 1..kmer_max")
    max_train_examples: int = option(0, "use the first N training sequences only (0: all)")
    threads: int = option(0, "CPU threads (0: torch's default)")
    jobs: int = option(0, JOBS_HELP)

    def validate(self) -> None:
        unknown = [a for a in self.arms + self.cv_arms if a not in ARMS]
        if unknown or not self.arms:
            raise UserError(f"arms: expected some of {', '.join(ARMS)}, got {self.arms}")
        if self.seeds < 1 or self.steps < 1 or self.cv_folds in (1,) or self.cv_folds < 0:
            raise UserError("seeds and steps must be >= 1, cv_folds 0 (off) or >= 2")
        if not self.minilm_learning_rates or not self.chinese_learning_rates:
            raise UserError("the learning-rate grids must not be empty")

    def learning_rates(self, arm: str) -> list[float]:
        encoder = ARMS[arm][0]
        return self.minilm_learning_rates if encoder == "minilm" else self.chinese_learning_rates


def preset_gpu() -> DnaConfig:
    """The paper's scale of training: lr 1e-5..1e-4 on MiniLM, 10 seeds, 5-fold CV."""
    return DnaConfig(
        seeds=10,
        steps=2000,
        minilm_learning_rates=[2e-5, 5e-5, 1e-4],
        chinese_learning_rates=[3e-4, 1e-3, 3e-3],
        eval_every=100,
        chinese_pretrain_steps=4000,
        cv_arms=list(ARMS),
    )


def preset_quick() -> DnaConfig:
    """Seconds: the machinery (every arm fine-tunes, the curve, the baseline), not the result."""
    return DnaConfig(
        arms=["chinese", "chinese random init"],
        seeds=1,
        steps=4,
        chinese_learning_rates=[1e-3],
        eval_every=2,
        chinese_pretrain_steps=4,
        cv_folds=2,
        kmer_max=2,
        max_train_examples=64,
        jobs=1,
    )


PRESETS = {"cpu": DnaConfig, "gpu": preset_gpu, "quick": preset_quick}


DESCRIPTION = (
    "A text-pretrained BERT (English MiniLM; selfsup's Chinese encoder) fine-tuned on DNA "
    "splice junctions with bases as random words, against random init and k-mer baselines "
    "(Kao & Lee 2021)."
)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`selfsup experiment dna [--out DIR] [--preset P | --quick] [key=value ...]`."""
    return experiment_main(DESCRIPTION, "runs/dna", PRESETS, _run, argv, prog)


def _run(cfg: DnaConfig, out: Path):
    # torch: imported once the flags are read
    from selfsup.experiments.dna import run_dna

    return run_dna(cfg, out)
