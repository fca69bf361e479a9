"""The settings and command line of `selfsup experiment icl-linear` (`LinearICLConfig` and its
presets), torch-free so that its --help and a bad flag import no torch; the experiment itself is
selfsup/experiments/icl_linear.py, which re-exports these names (`main` included)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfsup.config import option
from selfsup.errors import UserError
from selfsup.experiments.common import experiment_main, synthetic_model, synthetic_training
from selfsup.models.transformer_config import TransformerConfig
from selfsup.trainer_config import TrainConfig


@dataclass
class LinearICLConfig:
    dim: int = option(5, "input dimension d")
    points: int = option(15, "(x, f(x)) pairs per prompt")
    eval_prompts: int = option(2000, "fresh test prompts for the error curve")
    curriculum_every: int = option(
        400,  # all 5 dimensions from step 1,600 of 4,000: measured to leave the plateau (RESULTS)
        "curriculum: x starts 1-dimensional and gains a dimension every N steps (0: off)",
    )
    # vocab_size 1: inputs are read in as vectors, the token table is unused
    model: TransformerConfig = option(synthetic_model(128, 4, 4, max_position=30), "")
    train: TrainConfig = option(
        synthetic_training(
            4000,
            batch_size=64,  # the paper's batch size
            warmup_steps=200,
            min_lr_ratio=0.05,
            eval_every=500,
            eval_batches=8,
            checkpoint_every=250,
            log_every=50,
        ),
        "",
    )

    def validate(self) -> None:
        if self.dim < 1 or self.points < 1 or self.eval_prompts < 1:
            raise UserError("dim, points and eval_prompts must be positive")
        if 2 * self.points > self.model.max_position:
            raise UserError(
                f"model.max_position={self.model.max_position} must hold 2 * points = "
                f"{2 * self.points} tokens"
            )


def preset_gpu() -> LinearICLConfig:
    """The paper's sizes: d = 20, 40 points, GPT-2 small's 12 layers of width 256, batch 64."""
    cfg = LinearICLConfig(dim=20, points=40, curriculum_every=2000)
    cfg.model = synthetic_model(256, 12, 8, max_position=80)
    cfg.train.steps, cfg.train.warmup_steps, cfg.train.eval_every = 50_000, 1000, 2500
    cfg.train.threads, cfg.train.checkpoint_every = 0, 2500
    return cfg


def preset_quick() -> LinearICLConfig:
    """Seconds: the machinery (training, curves, table, plot), not the result."""
    cfg = LinearICLConfig(dim=3, points=6, eval_prompts=64, curriculum_every=2)
    cfg.model = synthetic_model(16, 1, 2, max_position=12)
    cfg.train.steps, cfg.train.warmup_steps, cfg.train.eval_every = 6, 1, 3
    cfg.train.eval_batches, cfg.train.checkpoint_every, cfg.train.log_every = 1, 3, 1
    return cfg


PRESETS = {"cpu": LinearICLConfig, "gpu": preset_gpu, "quick": preset_quick}


DESCRIPTION = (
    "Train a small GPT to learn linear functions in context (Garg et al. 2022) and compare "
    "its error with least squares, 3-NN and averaging as the number of examples grows."
)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`selfsup experiment icl-linear [--out DIR] [--preset P | --quick] [key=value ...]`."""
    return experiment_main(DESCRIPTION, "runs/icl-linear", PRESETS, _run, argv, prog)


def _run(cfg: LinearICLConfig, out: Path):
    # torch: imported once the flags are read
    from selfsup.experiments.icl_linear import run_linear_icl

    return run_linear_icl(cfg, out)
