"""Helpers shared by several test files: the tiny GPT configuration and the kill-and-resume check
that every training loop (BERT, GPT, SimCLR/BYOL) must pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from selfsup.models.transformer import TransformerConfig


def tiny_config(**changes) -> TransformerConfig:
    """A 2-layer, width-32 transformer without dropout (tests flip fields with `changes`)."""
    fields = dict(
        vocab_size=99,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        max_position=64,
        dropout=0.0,
        attention_dropout=0.0,
    )
    return TransformerConfig(**(fields | changes))


def tiny_gpt_config(**changes) -> TransformerConfig:
    """The tiny transformer with GPT-2's pre-norm blocks."""
    return tiny_config(**({"norm_position": "pre"} | changes))


class Killed(Exception):
    """Stands in for a process killed right after a checkpoint was written."""


def kill_after_checkpoint(step: int | None) -> Callable[[int], None]:
    def on_checkpoint(saved_step: int) -> None:
        if saved_step == step:
            raise Killed

    return on_checkpoint


TrainRun = Callable[..., dict[str, torch.Tensor]]


def assert_resume_is_exact(train_run: TrainRun, tmp_path: Path, kill_at: int) -> dict:
    """`train_run(run_dir, resume=..., on_checkpoint=...)` returns the final weights. Train once
    uninterrupted, once killed after the checkpoint at step `kill_at` and then resumed: the two
    final weights must be bit-identical (data order, dropout RNG and optimizer state resumed)."""
    full = train_run(tmp_path / "full", resume=False, on_checkpoint=None)
    with pytest.raises(Killed):
        train_run(tmp_path / "cut", resume=False, on_checkpoint=kill_after_checkpoint(kill_at))
    saved_after_resume: list[int] = []
    resumed = train_run(tmp_path / "cut", resume=True, on_checkpoint=saved_after_resume.append)
    # it went on from the checkpoint rather than training again from step 0
    assert saved_after_resume and min(saved_after_resume) > kill_at, saved_after_resume
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key
    return full
