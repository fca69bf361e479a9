"""Plots people would rather look at than read: the loss curve of a run.

matplotlib is imported here, lazily, with the Agg backend (no screen needed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> None:
    """Save atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)


def plot_loss_curve(metrics_path: str | Path, png_path: str | Path, title: str = "") -> None:
    """Training loss of every term against step (solid), held-out loss (dots), accuracies beside."""
    if not Path(metrics_path).exists():  # nothing logged yet
        return
    records = [
        json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()
    ]
    if not records:
        return
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    keys = sorted({k for r in records for k in r if k.endswith("_loss") or k.endswith("_accuracy")})
    for key in keys:
        points = [(r["step"], r[key]) for r in records if key in r]
        ax = ax_loss if key.endswith("_loss") else ax_acc
        held_out = key.startswith("eval_")
        ax.plot(*zip(*points), "o--" if held_out else "-", label=key, markersize=4)
    ax_loss.set(xlabel="step", ylabel="loss (cross entropy, nats)", title=title or "loss")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    save_figure(fig, png_path)
    plt.close(fig)
