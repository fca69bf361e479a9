"""The training loop's settings (`TrainConfig`, the `train.*` keys of every run config), torch-free
so that building a command's flags imports no torch; the loop itself is selfsup/trainer.py, which
re-exports it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from selfsup.config import option
from selfsup.errors import UserError


@dataclass
class TrainConfig:
    steps: int = option(100, "optimizer steps in the whole run")
    batch_size: int = option(8, "sequences (or images) per micro-batch")
    grad_accum: int = option(
        1, "micro-batches per optimizer step (effective batch = batch_size * grad_accum)"
    )
    lr: float = option(1e-3, "peak learning rate, reached at the end of warmup")
    weight_decay: float = option(
        0.01, "AdamW decoupled weight decay (not applied to biases and LayerNorm)"
    )
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2 (0.98 is steadier for short, high-lr runs)")
    warmup_steps: int = option(10, "steps of linear warmup from 0 to lr")
    schedule: Literal["linear", "cosine", "constant"] = option("linear", "decay after warmup")
    min_lr_ratio: float = option(0.0, "final learning rate as a fraction of lr")
    max_grad_norm: float = option(1.0, "clip the global gradient norm to this (0 disables)")
    eval_every: int = option(0, "evaluate every N steps (0: only at the end)")
    eval_batches: int = option(20, "held-out batches per evaluation")
    checkpoint_every: int = option(50, "write a checkpoint every N steps (and at the end)")
    checkpoint_seconds: float = option(
        0.0, "also write one when this many seconds of training passed since the last (0: off)"
    )
    keep_checkpoints: int = option(2, "how many recent checkpoints to keep")
    log_every: int = option(10, "append training metrics to metrics.jsonl every N steps")
    seed: int = option(0, "seed of initialisation, data order, masks and dropout")
    device: str = option("auto", "auto (cuda if available), cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = option(
        "auto", "auto: bf16 autocast on CUDA, fp32 on CPU"
    )
    threads: int = option(0, "CPU threads for torch (0: leave torch's default)")
    progress: bool = option(True, "show a progress bar")
    parallel: Literal["ddp", "fsdp"] = option(
        "ddp",
        "under torchrun: ddp (every rank holds the whole model, gradients averaged) or fsdp "
        "(weights, gradients and AdamW state sharded over the ranks, for a model too large for "
        "one device)",
    )
    dist_timeout_s: float = option(
        300.0,
        "under torchrun: how long a rank waits for the others in a collective before it stops "
        "with an error (a peer that dies is noticed at once)",
    )

    def validate(self) -> None:
        """Every value checked before any work starts (a NaN learning rate found after an hour of
        tokenizing is an hour lost); `not lo <= x` form so that NaN fails too."""
        for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise UserError(f"train.{name} must be positive, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "eval_batches", "keep_checkpoints", "threads"):
            if getattr(self, name) < 0:
                raise UserError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.dist_timeout_s < math.inf:
            raise UserError(f"train.dist_timeout_s must be positive, got {self.dist_timeout_s}")
        for name in ("lr", "weight_decay", "max_grad_norm", "checkpoint_seconds"):
            value = getattr(self, name)
            if not 0.0 <= value < math.inf:
                raise UserError(f"train.{name} must be a finite number >= 0, got {value}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"train.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise UserError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
