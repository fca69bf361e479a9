"""In-context learning made visible at CPU scale: a GPT that learns linear functions from its
prompt (Garg, Tsipras, Liang, Valiant 2022, "What can transformers learn in-context? A case study
of simple function classes").

Shape legend: B prompts, n points per prompt, d input dimension, C width.

Every training prompt is (x_1, f(x_1), x_2, f(x_2), ..., x_n, f(x_n)) with a fresh linear
function f(x) = w.x, w ~ N(0, I_d), x_i ~ N(0, I_d), so nothing about any one function can be
memorised: the model must infer w from the examples in front of it. As in the paper, x_i is read
in as a d-vector, f(x_i) as the vector (f(x_i), 0, ..., 0), both through one linear read-in; a
linear read-out at every x position predicts f(x_i) from the prefix, and the loss is the squared
error averaged over the n predictions ("we train the model to minimize the expected loss over all
prompt prefixes").

At test time, on fresh prompts, the squared error of the prediction for the (k+1)-th x given k
examples, divided by d (the paper's normalisation: predicting 0 scores 1), is compared with
estimators that see the same k examples: least squares (minimum-norm when k < d), 3-nearest
neighbours, and averaging (w = mean of y_i x_i), as in the paper's Figure 2.

Deviations, for a CPU budget: d = 5 and n = 3d = 15 points instead of d = 20 and 40; 4 layers of
width 128 instead of GPT-2's 12 of 256; a few thousand steps at lr 1e-3 instead of 500k at 1e-4.
The paper's curriculum is on by default (`curriculum_every`, 0 turns it off): prompts start with x in a
1-dimensional subspace (the other coordinates zero) and gain a dimension every
`curriculum_every` steps until all d are used (the paper's curriculum, paraphrased: train first
on inputs from a smaller subspace, then grow it); unlike the paper, the number of points stays n.
Evaluation always uses all d dimensions.

    python -m selfsup.experiments.icl_linear --out runs/icl-linear
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from selfsup.config import save_run_config
from selfsup.experiments.common import train_in_folder
from selfsup.experiments.icl_linear_config import (  # noqa: F401 (re-export: settings, main)
    PRESETS,
    LinearICLConfig,
    main,
    preset_gpu,
    preset_quick,
)
from selfsup.io import atomic_write_json
from selfsup.models.gpt import CausalDecoder, scale_residual_init
from selfsup.models.transformer import TransformerConfig, init_weights
from selfsup.objectives.base import LossTerm, StepOutput
from selfsup.reporting import markdown_table, pyplot, save_figure


# ---------------------------------------------------------------- data
def sample_ys(xs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """ys (B, n) = xs @ w for a fresh w ~ N(0, I) per prompt."""
    w = torch.randn(xs.shape[0], xs.shape[2], 1, generator=generator)
    return (xs @ w)[..., 0]


def sample_prompts(batch: int, points: int, dim: int, generator: torch.Generator):
    """xs (B, n, d) and ys (B, n) with ys = xs @ w, one fresh w ~ N(0, I) per prompt."""
    xs = torch.randn(batch, points, dim, generator=generator)
    return xs, sample_ys(xs, generator)


class LinearPrompts:
    """Batch i is a pure function of (seed, i): the trainer's contract, so resume is exact."""

    def __init__(self, cfg: LinearICLConfig) -> None:
        self.cfg = cfg

    def _batch(self, seed: int, active_dims: int | None = None) -> dict:
        g = torch.Generator().manual_seed(seed)
        xs, ys = sample_prompts(self.cfg.train.batch_size, self.cfg.points, self.cfg.dim, g)
        if active_dims is not None and active_dims < self.cfg.dim:
            xs[..., active_dims:] = 0.0  # x in a smaller subspace: f depends on fewer weights
            ys = sample_ys(xs, g)
        n = xs.shape[0] * xs.shape[1]
        return {"xs": xs, "ys": ys, "num_tokens": 2 * n}

    def active_dims(self, step: int) -> int:
        """Dimensions in use at optimizer step `step` under the curriculum (all d without one)."""
        if self.cfg.curriculum_every <= 0:
            return self.cfg.dim
        return min(self.cfg.dim, 1 + step // self.cfg.curriculum_every)

    def batch(self, index: int) -> dict:
        step = index // self.cfg.train.grad_accum
        return self._batch(self.cfg.train.seed * 1_000_003 + index, self.active_dims(step))

    def eval_batches(self, max_batches: int) -> list[dict]:
        return [self._batch(-1 - b) for b in range(max_batches)]  # never a training seed


# ---------------------------------------------------------------- model
def interleave(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """(B, n, d), (B, n) -> (B, 2n, d): x_1, (y_1, 0..0), x_2, (y_2, 0..0), ..."""
    B, n, d = xs.shape
    y_tokens = torch.zeros_like(xs)
    y_tokens[..., 0] = ys
    return torch.stack([xs, y_tokens], dim=2).reshape(B, 2 * n, d)


class LinearICLModel(nn.Module):
    """Read-in (d -> C), the GPT decoder stack, read-out (C -> 1) at the x positions."""

    def __init__(self, dim: int, cfg: TransformerConfig) -> None:
        super().__init__()
        self.read_in = nn.Linear(dim, cfg.hidden_size)
        self.decoder = CausalDecoder(cfg)
        self.read_out = nn.Linear(cfg.hidden_size, 1)
        init_weights(self, cfg.initializer_range)
        scale_residual_init(self.decoder, cfg.initializer_range)

    def predict(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """(B, n) predictions: entry k sees x_1, y_1, ..., x_k, y_k and x_{k+1} (k from 0)."""
        hidden = self.decoder(self.read_in(interleave(xs, ys)))  # (B, 2n, C)
        return self.read_out(hidden[:, ::2])[..., 0]  # x positions -> (B, n)

    def item_counts(self, batch: dict) -> dict[str, int]:
        return {"mse": batch["ys"].numel()}  # one squared error per point

    def forward(self, batch: dict) -> StepOutput:
        error = (self.predict(batch["xs"], batch["ys"]) - batch["ys"]) ** 2
        return StepOutput({"mse": LossTerm(error.sum(), error.numel())})


# ---------------------------------------------------------------- baselines
def least_squares_predictions(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(N, n) predictions: for point k, x_k . w where w is the minimum-norm least-squares fit of
    the k earlier points (pinv, as numpy.linalg.lstsq); 0 with no example."""
    N, n, _ = xs.shape
    out = np.zeros((N, n))
    for k in range(1, n):
        w = np.linalg.pinv(xs[:, :k]) @ ys[:, :k, None]  # (N, d, k) @ (N, k, 1) -> (N, d, 1)
        out[:, k] = (xs[:, k : k + 1] @ w)[:, 0, 0]
    return out


def knn_predictions(xs: np.ndarray, ys: np.ndarray, neighbours: int = 3) -> np.ndarray:
    """(N, n): mean y of the `neighbours` earlier points nearest to x_k (all of them if fewer)."""
    N, n, _ = xs.shape
    out = np.zeros((N, n))
    for k in range(1, n):
        distances = np.linalg.norm(xs[:, :k] - xs[:, k : k + 1], axis=-1)  # (N, k)
        nearest = np.argsort(distances, axis=1, kind="stable")[:, :neighbours]
        out[:, k] = np.take_along_axis(ys[:, :k], nearest, axis=1).mean(1)
    return out


def averaging_predictions(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(N, n): x_k . w with w = mean over the earlier points of y_i x_i (0 with no example)."""
    N, n, _ = xs.shape
    out = np.zeros((N, n))
    for k in range(1, n):
        w = (ys[:, :k, None] * xs[:, :k]).mean(1)  # (N, d)
        out[:, k] = (w * xs[:, k]).sum(-1)
    return out


BASELINES = {
    "least squares": least_squares_predictions,
    "3-nearest neighbours": knn_predictions,
    "averaging": averaging_predictions,
}


@torch.no_grad()
def error_curves(
    model: LinearICLModel, xs: torch.Tensor, ys: torch.Tensor
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per estimator: (mean, standard error) over prompts of the squared error / d at each k."""
    model.eval()
    dim = xs.shape[-1]
    predictions = {"transformer": model.predict(xs, ys).numpy()}
    for name, estimator in BASELINES.items():
        predictions[name] = estimator(xs.double().numpy(), ys.double().numpy())
    curves = {}
    for name, pred in predictions.items():
        error = (pred - ys.numpy()) ** 2 / dim  # (N, n)
        curves[name] = (error.mean(0), error.std(0) / np.sqrt(len(error)))
    return curves


def plot_curves(curves: dict, dim: int, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, (mean, se) in curves.items():
        k = np.arange(len(mean))
        ax.plot(k, mean, "o-" if name == "transformer" else "--", label=name, markersize=3)
        ax.fill_between(k, mean - se, mean + se, alpha=0.2)
    ax.axvline(dim, color="grey", lw=0.8, ls=":")
    ax.set(
        xlabel="in-context examples k",
        ylabel="squared error / d",
        title=f"in-context linear regression, d={dim}",
        ylim=(0, 1.6),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    plt.close(fig)


def run_linear_icl(cfg: LinearICLConfig, out: Path, say=print) -> dict:
    """Train (or resume) in `out`, then print and save the error table and plot."""
    cfg.validate()
    out.mkdir(parents=True, exist_ok=True)
    save_run_config(cfg, out / "config.json", resume=True)  # always resumes
    torch.manual_seed(cfg.train.seed)
    model = LinearICLModel(cfg.dim, cfg.model)
    g = torch.Generator().manual_seed(12345)
    xs, ys = sample_prompts(cfg.eval_prompts, cfg.points, cfg.dim, g)

    def probe(m: nn.Module) -> dict[str, float]:  # the error at k = d while training
        curve = error_curves(m, xs[:256], ys[:256])["transformer"][0]
        m.train()
        return {f"eval_error_at_k{cfg.dim}": float(curve[min(cfg.dim, cfg.points - 1)])}

    train_in_folder(model, LinearPrompts(cfg), cfg.train, out, eval_extra=probe)
    curves = error_curves(model, xs, ys)
    names = list(curves)
    rows = [[k, *[float(curves[n][0][k]) for n in names]] for k in range(cfg.points)]
    table = markdown_table(["k", *names], rows)
    say(table)
    atomic_write_json(
        out / "results.json",
        {name: {"mean": m.tolist(), "stderr": s.tolist()} for name, (m, s) in curves.items()},
    )
    (out / "table.md").write_text(table + "\n")
    plot_curves(curves, cfg.dim, out / "icl_linear.png")
    say(f"plot: {out / 'icl_linear.png'}")
    return {name: m for name, (m, _) in curves.items()}


if __name__ == "__main__":
    raise SystemExit(main())
