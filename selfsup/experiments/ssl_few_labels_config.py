"""The command line of `selfsup experiment ssl-few-labels` (the vision preset, seeds, methods and
config overrides), torch-free so that its --help and a bad flag import no torch; the experiment
itself is selfsup/experiments/ssl_few_labels.py, which re-exports `main`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.errors import UserError
from selfsup.recipes.vision_config import PRESETS


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="SimCLR and BYOL vs random init and raw pixels with 1/5/10/all labels per "
        "class, seeds x methods, a table and a plot; finished runs are reused",
    )
    parser.add_argument(
        "--preset",
        default="digits",
        choices=sorted(PRESETS),
        help="a selfsup vision preset: digits (CPU, the default), mnist (CPU), cifar (GPU)",
    )
    parser.add_argument("--quick", action="store_true", help="the tests' size (tiny, seconds)")
    parser.add_argument(
        "--out", default="runs/ssl-few-labels", help="folder for the runs, table and plot"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--archs", default="simclr,byol")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.steps=100")
    args = parser.parse_args(argv)
    preset = "tiny" if args.quick else args.preset
    # torch: imported once the flags are read
    from selfsup.experiments.ssl_few_labels import run_experiment

    try:
        table = run_experiment(preset, args.out, args.seeds, args.archs.split(","), args.overrides)
    except UserError as error:
        print(f"selfsup: error: {error}", file=sys.stderr)
        return 2
    print(table)
    print(f"plot: {Path(args.out) / 'accuracy_vs_labels.png'}")
    return 0
