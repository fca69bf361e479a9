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

from pathlib import Path

import numpy as np
import torch

from selfsup.config import save_run_config
from selfsup.experiments.common import train_in_folder
from selfsup.experiments.icl_induction_config import (  # noqa: F401 (re-export: settings, main)
    PRESETS,
    InductionConfig,
    main,
    preset_gpu,
    preset_quick,
)
from selfsup.inference.generate import load_gpt
from selfsup.io import atomic_write_json
from selfsup.models.transformer import TransformerConfig
from selfsup.objectives.clm import GPTPretrainer
from selfsup.reporting import markdown_table, pyplot, save_figure


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


if __name__ == "__main__":
    raise SystemExit(main())
