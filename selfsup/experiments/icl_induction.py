"""Induction-style copying in context: a small GPT learns to continue a repeated segment of
random tokens (Olsson et al. 2022, "In-context Learning and Induction Heads").

Shape legend: B sequences, T tokens, V vocabulary.

Every training sequence is T uniformly random tokens in which a random segment of L tokens
(L random) appears twice, both copies at random positions. Nothing about any one sequence can be
memorised, and the positions change every time, so the only way to predict a token is to look back
in the context: find the earlier occurrence of the current token and copy what followed it, the
"induction head" algorithm ([A][B] ... [A] -> [B]). The first token of the second copy is still
unpredictable; from the second on, a model that copies is right, one that does not is at chance
(1/V).

The claim measured: a 2-layer attention model learns the copy, a 1-layer one of the same width
cannot (an induction head needs a previous-token head in an earlier layer to compose with, as the
paper explains), trained the same number of steps on the same batches. Both use the standard GPT
stack and next-token loss on every position through the shared training loop.

    python -m selfsup.experiments.icl_induction --out runs/icl-induction
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.config import option, save_run_config
from selfsup.errors import UserError
from selfsup.experiments.common import (
    experiment_main,
    synthetic_model,
    synthetic_training,
    train_in_folder,
)
from selfsup.inference.generate import load_gpt
from selfsup.io import atomic_write_json
from selfsup.models.transformer import TransformerConfig
from selfsup.objectives.clm import GPTPretrainer
from selfsup.reporting import markdown_table, pyplot, save_figure
from selfsup.trainer import TrainConfig


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


def repeated_segments(
    batch: int, cfg: InductionConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """tokens (B, T + 1) and role (B, T + 1): 0 other, 1 first token of the second copy,
    2 a later token of the second copy (the ones an induction head can predict)."""
    T = cfg.seq_len + 1
    tokens = rng.integers(0, cfg.vocab, size=(batch, T))
    role = np.zeros((batch, T), dtype=np.int64)
    for b in range(batch):
        length = int(rng.integers(cfg.min_segment, cfg.max_segment + 1))
        first = int(rng.integers(0, T - 2 * length + 1))
        second = int(rng.integers(first + length, T - length + 1))
        tokens[b, second : second + length] = tokens[b, first : first + length]
        role[b, second] = 1
        role[b, second + 1 : second + length] = 2
    return tokens, role


class InductionBatches:
    """Batch i is a pure function of (seed, i), as the trainer's contract asks."""

    def __init__(self, cfg: InductionConfig) -> None:
        self.cfg = cfg

    def _batch(self, seed: list[int], batch: int) -> dict:
        tokens, _ = repeated_segments(batch, self.cfg, np.random.default_rng(seed))
        tokens = torch.as_tensor(tokens)
        n = tokens.shape[0] * (tokens.shape[1] - 1)
        return {
            "input_ids": tokens[:, :-1],
            "labels": tokens[:, 1:],
            "num_tokens": n,
        }

    def batch(self, index: int) -> dict:
        return self._batch([self.cfg.train.seed, index], self.cfg.train.batch_size)

    def eval_batches(self, max_batches: int) -> list[dict]:
        return [self._batch([10**9, b], self.cfg.train.batch_size) for b in range(max_batches)]


@torch.no_grad()
def accuracy_by_role(model, tokens: np.ndarray, role: np.ndarray) -> dict[str, float]:
    """Next-token accuracy on other positions, the first repeated token, later repeated ones."""
    model.eval()
    ids = torch.as_tensor(tokens)
    predicted = model.logits(ids[:, :-1]).argmax(-1).numpy()  # (B, T)
    correct = predicted == tokens[:, 1:]
    target_role = role[:, 1:]
    names = ("not repeated", "first token of the repeat", "rest of the repeat")
    return {name: float(correct[target_role == r].mean()) for r, name in enumerate(names)}


@torch.no_grad()
def copying_in_a_trained_run(
    run_dir: str, length: int = 40, sequences: int = 200, seed: int = 0
) -> dict[str, float]:
    """Olsson et al.'s test on a GPT trained on text: [CLS] + a random string of `length` tokens
    of its vocabulary (special tokens excluded), then the same string again. Next-token accuracy
    and loss on the first copy (nothing to go on) and on the second (copyable, from its second
    token on): a model with induction heads does much better on the second."""
    run = load_gpt(run_dir)
    tok = run.tokenizer
    length = min(length, (run.model.decoder.config.max_position - 1) // 2)
    ordinary = np.array([i for i in range(tok.vocab_size) if i not in tok.special_ids])
    rng = np.random.default_rng(seed)
    strings = ordinary[rng.integers(0, len(ordinary), size=(sequences, length))]
    ids = np.concatenate([np.full((sequences, 1), tok.cls_id), strings, strings], axis=1)
    ids = torch.as_tensor(ids)
    logp = run.model.logits(ids[:, :-1]).float().log_softmax(-1)  # (B, 2L, V)
    targets = ids[:, 1:]
    nll = -logp.gather(-1, targets[..., None])[..., 0]
    correct = (logp.argmax(-1) == targets).float()
    first, second = slice(1, length), slice(length + 1, 2 * length)  # skip each copy's 1st token
    return {
        "first copy accuracy": float(correct[:, first].mean()),
        "second copy accuracy": float(correct[:, second].mean()),
        "first copy loss": float(nll[:, first].mean()),
        "second copy loss": float(nll[:, second].mean()),
        "chance accuracy": 1.0 / len(ordinary),
    }


def run_induction(cfg: InductionConfig, out: Path, say=print) -> dict[int, dict[str, float]]:
    """Train one model per depth (or resume), then print and save the accuracy table and plot."""
    cfg.validate()
    out.mkdir(parents=True, exist_ok=True)
    save_run_config(cfg, out / "config.json", resume=True)  # always resumes
    tokens, role = repeated_segments(cfg.eval_sequences, cfg, np.random.default_rng(12345))
    results: dict[int, dict[str, float]] = {}
    for layers in cfg.layers:
        model_cfg = TransformerConfig(**{**cfg.model.__dict__, "num_layers": layers})
        model_cfg.vocab_size = cfg.vocab
        torch.manual_seed(cfg.train.seed)
        model = GPTPretrainer(model_cfg, ["clm"])
        train_in_folder(model, InductionBatches(cfg), cfg.train, out / f"layers-{layers}")
        results[layers] = accuracy_by_role(model, tokens, role)
    names = list(next(iter(results.values())))
    rows = [[f"{n} layer{'s' if n > 1 else ''}", *[results[n][k] for k in names]] for n in results]
    rows.append(["chance (1/V)", *[1.0 / cfg.vocab] * len(names)])
    table = markdown_table(["model", *names], rows)
    say(table)
    (out / "table.md").write_text(table + "\n")
    atomic_write_json(out / "results.json", {str(k): v for k, v in results.items()})
    _plot(results, names, 1.0 / cfg.vocab, out / "icl_induction.png")
    say(f"plot: {out / 'icl_induction.png'}")
    if cfg.lm_run:
        copying = copying_in_a_trained_run(cfg.lm_run)
        say(f"random string repeated, in {cfg.lm_run}:")
        say(markdown_table(list(copying), [list(copying.values())]))
        atomic_write_json(out / "lm_run_copying.json", {"run": cfg.lm_run, **copying})
    return results


def _plot(results: dict, names: list[str], chance: float, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    width = 0.8 / len(results)
    for i, (layers, accs) in enumerate(results.items()):
        x = np.arange(len(names)) + i * width
        ax.bar(x, [accs[n] for n in names], width, label=f"{layers}-layer GPT")
    ax.axhline(chance, color="grey", ls="--", label="chance")
    ax.set_xticks(np.arange(len(names)) + width * (len(results) - 1) / 2, names)
    ax.set(ylabel="next-token accuracy", ylim=(0, 1), title="copying a repeated segment in context")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    plt.close(fig)


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


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return experiment_main(
        "Train 1- and 2-layer GPTs on random tokens with a repeated segment and measure how well "
        "each continues the repeat in context (induction heads, Olsson et al. 2022).",
        "runs/icl-induction",
        PRESETS,
        lambda cfg, out: run_induction(cfg, out),
        argv,
        prog,
    )


if __name__ == "__main__":
    raise SystemExit(main())
