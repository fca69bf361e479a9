"""What a run or an experiment shows people: markdown tables, plain-text tables aligned by display
width (Chinese characters take two columns), mean +- std cells, figures, and the loss curve of a
run.

The run folders' loss curves, `selfsup probe`, `selfsup icl`, the demo and the experiments draw
their tables and figures with these, so they look alike. matplotlib is imported lazily by
`pyplot()`, with the Agg backend (no screen needed): it takes about a second to import, and
commands that draw nothing (`selfsup --help`) should not pay for it.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path
from typing import Any


# ---------------------------------------------------------------- tables
def mean_std(mean: float, std: float) -> str:
    """'0.850 +- 0.050': a score over seeds or draws, as every table writes it."""
    return f"{mean:.3f} +- {std:.3f}"


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub table; floats with 3 decimals, anything else as str() writes it."""

    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def display_width(text: str) -> int:
    """The terminal columns `text` takes: two for a wide or full-width character (Chinese,
    full-width punctuation), none for a combining mark, one for anything else."""
    return sum(
        2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1
        for c in text
    )


def pad(text: str, width: int, align: str = "<") -> str:
    """`text` padded with spaces to `width` display columns, on the right ("<") or left (">")."""
    fill = " " * max(0, width - display_width(text))
    return text + fill if align == "<" else fill + text


def text_table(headers: list[str], rows: list[list[str]], align: str) -> str:
    """A plain-text table for a terminal whose columns line up whatever the script (widths
    counted in display columns), two spaces apart; `align` has one "<" or ">" per column."""
    widths = [max(display_width(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(pad(cell, width, a) for cell, width, a in zip(row, widths, align)).rstrip()
        for row in [headers, *rows]
    )


# ---------------------------------------------------------------- figures
def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use."""
    import matplotlib  # lazy: matplotlib loads slowly; only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"), so no screen is needed

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
    plt = pyplot()
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
