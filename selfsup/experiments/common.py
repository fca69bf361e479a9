"""Pieces the experiment scripts share: a `python -m` entry with checked overrides and training a
synthetic-data model in a resumable run folder (tables and plots: selfsup.reporting). Importing
it imports no torch: an experiment's command line (`selfsup experiment NAME --help`) is built
from its torch-free X_config.py module, and the experiment runs once the flags are read."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfsup.config import apply_overrides, field_help, iter_fields
from selfsup.errors import UserError
from selfsup.models.transformer_config import TransformerConfig
from selfsup.trainer_config import TrainConfig


def synthetic_model(
    hidden_size: int, num_layers: int, num_heads: int, max_position: int, vocab_size: int = 1
):
    """A pre-LN GPT stack without dropout: synthetic tasks draw fresh data every step, so there
    is nothing to overfit, and pre-LN tolerates lr 1e-3 from the start."""
    return TransformerConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_position=max_position,
        norm_position="pre",
        dropout=0.0,
        attention_dropout=0.0,
        layer_norm_eps=1e-5,
    )


def synthetic_training(
    steps: int,
    batch_size: int,
    warmup_steps: int,
    min_lr_ratio: float,
    lr: float = 1e-3,
    **rest: Any,
):
    """Cosine schedule, no weight decay, one thread, no progress bar; `rest` sets eval_every,
    eval_batches, checkpoint_every, log_every (or anything else of TrainConfig)."""
    return TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        schedule="cosine",
        min_lr_ratio=min_lr_ratio,
        weight_decay=0.0,
        threads=1,
        progress=False,
        **rest,
    )


def train_in_folder(model, data, train_cfg, run_dir: Path, eval_extra=None) -> dict[str, float]:
    """Train with the shared loop, continuing from the folder's last checkpoint if it has one
    (an interrupted experiment is resumed by running the same command again)."""
    from selfsup.trainer import train

    return train(model, data, train_cfg, run_dir, resume=True, eval_extra=eval_extra)


def experiment_main(
    description: str,
    default_out: str,
    presets: dict[str, Callable[[], Any]],
    run: Callable[[Any, Path], Any],
    argv: list[str] | None = None,
    prog: str | None = None,
) -> int:
    """`selfsup experiment NAME [--out DIR] [--preset P | --quick] [key=value ...]` (also
    `python -m selfsup.experiments.X ...`): exit 2 on a user error, 130 on Ctrl-C.

    `presets` maps names to config builders; the first is the default (the CPU preset), and one
    named "quick" (the size the tests run) is what `--quick` picks."""
    names = list(presets)
    cfg = presets[names[0]]()
    keys = "\n".join(
        f"  {key}: {field_help(f, tp)}" for key, tp, f in iter_fields(type(cfg))
    ).replace("%", "%%")
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="config keys (set as key=value; defaults of the first preset):\n" + keys,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")
    parser.add_argument(
        "--preset", choices=names, default=names[0], help=f"sizes (default {names[0]})"
    )
    if "quick" in presets:
        parser.add_argument(
            "--quick", action="store_true", help="the tests' size: checks the machinery in seconds"
        )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        cfg = presets["quick" if getattr(args, "quick", False) else args.preset]()
        apply_overrides(cfg, args.overrides)
        run(cfg, Path(args.out))
    except UserError as error:
        print(f"selfsup: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue", file=sys.stderr)
        return 130
    return 0
