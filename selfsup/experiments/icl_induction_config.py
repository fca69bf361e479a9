"""The settings and command line of `selfsup experiment icl-induction` (`InductionConfig` and its
presets), torch-free so that its --help and a bad flag import no torch; the experiment itself is
selfsup/experiments/icl_induction.py, which re-exports these names (`main` included)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfsup.config import option
from selfsup.errors import UserError
from selfsup.experiments.common import experiment_main, synthetic_model, synthetic_training
from selfsup.models.transformer_config import TransformerConfig
from selfsup.trainer_config import TrainConfig


@dataclass
class InductionConfig:
    vocab: int = option(32, "random tokens are drawn from this many ids")
    seq_len: int = option(64, "tokens per sequence")
    # long segments: about a third of the positions can be copied, a strong enough signal to
    # leave the uniform-output plateau within a few thousand steps (measured: with 6..20 token
    # segments a 2-layer model was still at ln V after 1,100 steps)
    min_segment: int = option(16, "shortest repeated segment")
    max_segment: int = option(30, "longest repeated segment")
    layers: list[int] = option([2, 1], "model depths compared (same width, same batches)")
    eval_sequences: int = option(2000, "fresh sequences for the accuracy table")
    lm_run: str = option("", "also test copying in this GPT run trained on text (e.g. Shakespeare)")
    model: TransformerConfig = option(synthetic_model(64, 2, 4, max_position=64), "")
    train: TrainConfig = option(
        # 10,000 steps: the 2-layer model's copy accuracy jumps between steps 2,000 and 3,500 (the
        # induction-head phase change) and settles near 0.74; at 2,500 steps the cosine schedule
        # had decayed before the jump was over (0.24)
        synthetic_training(
            10_000,
            batch_size=32,
            warmup_steps=100,
            min_lr_ratio=0.1,
            # lr 1e-3: at 3e-3 the 2-layer model stayed at the uniform output (loss ln V) for all
            # 2,500 steps; at 1e-3 it leaves it within 500
            eval_every=500,
            eval_batches=4,
            checkpoint_every=500,
            log_every=100,
        ),
        "",
    )

    def validate(self) -> None:
        if not 2 <= self.min_segment <= self.max_segment or 2 * self.max_segment > self.seq_len:
            raise UserError(
                "need 2 <= min_segment <= max_segment and 2 * max_segment <= seq_len "
                f"(got {self.min_segment}, {self.max_segment}, {self.seq_len})"
            )
        if self.seq_len + 1 > self.model.max_position + 1:
            raise UserError(f"model.max_position must be at least seq_len={self.seq_len}")


def preset_gpu() -> InductionConfig:
    """Wider and longer: width 256, 8 heads, sequences of 256 with a vocabulary of 256."""
    cfg = InductionConfig(vocab=256, seq_len=256, min_segment=32, max_segment=100)
    cfg.model = synthetic_model(256, 2, 8, max_position=256)
    cfg.train.steps, cfg.train.batch_size, cfg.train.threads = 20_000, 64, 0
    return cfg


def preset_quick() -> InductionConfig:
    """Seconds: the machinery (both depths train, table, plot), not the result."""
    cfg = InductionConfig(vocab=8, seq_len=12, min_segment=2, max_segment=4, eval_sequences=16)
    cfg.model = synthetic_model(16, 2, 2, max_position=12)
    cfg.train.steps, cfg.train.warmup_steps, cfg.train.eval_every = 4, 1, 2
    cfg.train.eval_batches, cfg.train.checkpoint_every, cfg.train.log_every = 1, 2, 1
    return cfg


PRESETS = {"cpu": InductionConfig, "gpu": preset_gpu, "quick": preset_quick}


DESCRIPTION = (
    "Train 1- and 2-layer GPTs on random tokens with a repeated segment and measure how well "
    "each continues the repeat in context (induction heads, Olsson et al. 2022)."
)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`selfsup experiment icl-induction [--out DIR] [--preset P | --quick] [key=value ...]`."""
    return experiment_main(DESCRIPTION, "runs/icl-induction", PRESETS, _run, argv, prog)


def _run(cfg: InductionConfig, out: Path):
    # torch: imported once the flags are read
    from selfsup.experiments.icl_induction import run_induction

    return run_induction(cfg, out)
