"""The one training loop: pretraining and fine-tuning, BERT, GPT and SimCLR/BYOL alike.

It talks to the rest through a small contract:
- `data.batch(i) -> dict` gives micro-batch i of the run (a pure function of i, so resuming is
  exact; the dict follows selfsup/batch.py); `data.eval_batches(n)` gives fixed held-out batches;
- `model(batch) -> StepOutput` gives summed loss terms (selfsup.objectives.base), and
  `model.item_counts(batch)` how many items each term covers, known before any backward pass;
- `train.batch_size` items per micro-batch, `train.grad_accum` micro-batches per optimizer step,
  for every model; one that sets `whole_step = True` is handed the step's whole batch (index
  `step`) and runs the micro-batches itself;
- an optional `after_step(model, step)` hook (BYOL's EMA target update).

AdamW with decoupled weight decay (none on biases and LayerNorm), linear warmup then linear or
cosine decay, gradient clipping, gradient accumulation normalised by the items of the whole step,
bf16 autocast on CUDA, periodic atomic checkpoints holding model, optimizer, RNG and data position.

A non-finite loss or gradient norm stops the run with a UserError naming the step, before the
optimizer applies it; weights are checked finite before each checkpoint and the final save, so no
NaN model is ever written and the last checkpoint stays the last good one. The per-step cost is
one isfinite on the gradient norm (the loss is already read as a float for the metrics).

Under torchrun (selfsup/distributed.py) the same loop runs on every rank: each keeps its share of
every micro-batch (selfsup/batch.py), divides by the step's global item counts and multiplies by
the number of ranks, so the gradients that DDP or FSDP average over the ranks are those of one
process; only the last micro-batch of a step synchronises them. Rank 0 alone writes metrics and
plots; checkpoints hold every rank's RNG (selfsup/checkpoint.py decides who writes which file).
Logged metrics are summed over the ranks at each log line; the progress bar between them shows
rank 0's share. Every rank evaluates the whole held-out set (identical weights, identical
numbers; no communication).
"""

from __future__ import annotations

import ctypes
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from selfsup import distributed
from selfsup.batch import shard_batch
from selfsup.checkpoint import (
    full_weights,
    latest_checkpoint,
    load_newest_intact,
    save_checked_safetensors,
    save_checkpoint,
)
from selfsup.errors import UserError
from selfsup.objectives.base import StepOutput
from selfsup.trainer_config import TrainConfig


class BatchSource(Protocol):
    def batch(self, index: int) -> dict: ...
    def eval_batches(self, max_batches: int) -> list[dict]: ...


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    shape = (
        1.0 - progress if cfg.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    )
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when there is one, else cpu; a device this machine lacks is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device={name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device={name!r}: no CUDA GPU on this machine (use auto or cpu)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"train.device={name!r}: only {torch.cuda.device_count()} GPU(s) here")
    return device


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))


def to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


@dataclass
class RunningMetrics:
    """Sums of loss and correct counts per term, over any number of micro-batches."""

    loss: dict[str, float] = field(default_factory=dict)
    correct: dict[str, float] = field(default_factory=dict)
    top5: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    tokens: int = 0

    def add(self, out: StepOutput, num_tokens: int) -> float:
        """Count one micro-batch's output; return its summed loss (all terms)."""
        self.tokens += num_tokens
        total = 0.0
        for name, term in out.terms.items():
            loss = float(term.loss_sum.detach())
            total += loss
            self.loss[name] = self.loss.get(name, 0.0) + loss
            self.count[name] = self.count.get(name, 0) + term.count
            if term.num_correct is not None:
                self.correct[name] = self.correct.get(name, 0.0) + float(term.num_correct)
            if term.num_top5 is not None:
                self.top5[name] = self.top5.get(name, 0.0) + float(term.num_top5)
        return total

    def summed_over_ranks(self) -> RunningMetrics:
        """The same sums over every rank's share of the batches (itself for one process)."""
        if distributed.world_size() == 1:
            return self
        names = sorted(self.count)  # the same terms on every rank
        parts = [self.loss, self.count, self.correct, self.top5]
        values = [float(part[n]) for part in parts for n in names if n in part]
        totals = iter(distributed.all_sum(values))
        out = RunningMetrics(tokens=self.tokens)  # counted from whole batches already
        for part, into in zip(parts, [out.loss, out.count, out.correct, out.top5]):
            for n in names:
                if n in part:
                    into[n] = type(part[n])(next(totals))
        return out

    def summary(self, prefix: str = "") -> dict[str, float]:
        out = {}
        for name, total in self.loss.items():
            n = max(self.count[name], 1)
            out[f"{prefix}{name}_loss"] = total / n
            if name in self.correct:
                out[f"{prefix}{name}_accuracy"] = self.correct[name] / n
            if name in self.top5:
                out[f"{prefix}{name}_top5_accuracy"] = self.top5[name] / n
        return out


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: list[dict], device: torch.device, precision: str
) -> dict[str, float]:
    was_training = model.training
    model.eval()
    metrics = RunningMetrics()
    for batch in batches:
        with autocast(device, precision):
            metrics.add(model(to_device(batch, device)), batch.get("num_tokens", 0))
    model.train(was_training)
    return metrics.summary("eval_")


def evaluate_all(
    model: nn.Module,
    batches: list[dict],
    device: torch.device,
    precision: str,
    extra: Callable[[nn.Module], dict[str, float]] | None,
) -> dict[str, float]:
    """Held-out metrics and the recipe's extras (k-NN accuracy, dev scores), on every rank; the
    weights of a sharded model gathered for the extras, which call more than forward."""
    with distributed.unsharded(model):
        metrics = evaluate(model, batches, device, precision)
        if extra is not None:
            metrics.update(extra(model))
    return metrics


def autocast(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)


def step_batches(model: nn.Module, data: BatchSource, step: int, grad_accum: int) -> list[dict]:
    """The micro-batches of optimizer step `step`: `grad_accum` of them, or the step's whole batch
    at once for a model that runs its micro-batches itself (`whole_step`: SimCLR needs every
    image of the step for its negatives, and computes them under gradient caching)."""
    if getattr(model, "whole_step", False):
        return [data.batch(step)]
    return [data.batch(step * grad_accum + j) for j in range(grad_accum)]


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _resume_rng(state: dict[str, Any], seed: int) -> None:
    """This rank's RNG from a checkpoint: its own when the run that wrote it had this rank (rank
    0's is "rng", the others' "other_ranks_rng"), else a stream of its own from the step on."""
    saved = [state["rng"], *state.get("other_ranks_rng", [])]
    rank = distributed.rank()
    if rank < len(saved):
        _set_rng_state(saved[rank])
    else:
        torch.manual_seed(distributed.rank_seed(seed, rank, state["step"]))


def _rng_states() -> dict[str, Any]:
    """Every rank's RNG state, for the checkpoint (a collective: called on every rank)."""
    states = distributed.gather_objects(_rng_state())
    return {"rng": states[0], **({"other_ranks_rng": states[1:]} if len(states) > 1 else {})}


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be written again)."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line and json.loads(line).get("step", 0) <= last_step
    ]
    path.write_text("".join(line + "\n" for line in kept))


def _stopped(step: int, what: str, checkpoints: Path) -> UserError:
    """The error that ends a run gone non-finite: the step, what went wrong, what is kept."""
    last = latest_checkpoint(checkpoints)
    kept = f"the last good checkpoint, {last.name}, is kept" if last else "no checkpoint yet"
    return UserError(
        f"step {step}: {what}; training stopped without saving this model "
        f"({kept}); lower train.lr or check the inputs"
    )


def _weights_finite(model: nn.Module) -> bool:
    """Whether every weight is finite, on every rank (each checks its shard of a sharded model)."""
    checks = [torch.isfinite(distributed.local(p)).all() for p in model.parameters()]
    return distributed.all_true(not checks or bool(torch.stack(checks).all()))


def _malloc_trim() -> Callable[[], Any]:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return lambda _pad: 0


_MALLOC_TRIM = _malloc_trim()
TRIM_SECONDS = 30.0  # how often the loop hands freed memory back (see release_freed_memory)


def release_freed_memory() -> None:
    """Hand the memory of freed tensors back to the OS (glibc's malloc_trim; elsewhere nothing).
    It lowers the resident memory between steps and between the phases of one process (the
    demo's pretraining, then its fine-tuning), not the peak inside the steps: the next steps
    touch the released pages of the heap again, one page fault per 4 KB (~130,000 after a call
    in BERT pretraining: ~0.25 s, half a step, on this project's machines). So the loop calls it
    every TRIM_SECONDS (~1% of the time); every 10 steps it cost 5% and the peak kept growing.
    What keeps the peak flat is buffers of few sizes, whose heap blocks are reused
    (selfsup.memory.pad_prediction_rows; docs/PERFORMANCE.md, "Memory")."""
    _MALLOC_TRIM(0)


def train(
    model: nn.Module,
    data: BatchSource,
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    after_step: Callable[[nn.Module, int], None] | None = None,
    eval_extra: Callable[[nn.Module], dict[str, float]] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    started: float | None = None,
) -> dict[str, float]:
    """Train `model` for cfg.steps optimizer steps, writing to run_dir; return the last eval metrics.

    Evaluations record `elapsed_s`, the run's wall seconds so far: counted from `started` (a
    `time.perf_counter()` value; the caller's start, so reading and tokenizing data count too) or
    from this call, plus what the resumed checkpoint had counted."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = distributed.rank_device(resolve_device(cfg.device))
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    model.to(device).train()
    wrapped = distributed.parallelize(model, cfg.parallel, device)  # what forward is called on
    optimizer = build_optimizer(model, cfg)
    checkpoints, metrics_path = run_dir / "checkpoints", run_dir / "metrics.jsonl"
    step = 0
    # the newest checkpoint that passes its checksums (a corrupt newer one is named on stderr)
    state = load_newest_intact(checkpoints, model, optimizer) if resume else None
    trained_before = 0.0  # seconds of this run before a resume (its checkpoint says)
    if state is not None:
        step = state["step"]
        trained_before = float(state.get("elapsed_s", 0.0))
        _resume_rng(state, cfg.seed)
        if main:
            _truncate_metrics(metrics_path, step)
    else:
        # dropout stream (weights were initialised by the caller): the seed itself on rank 0
        torch.manual_seed(distributed.rank_seed(cfg.seed, rank))
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            metrics_path.unlink(missing_ok=True)
    eval_set = data.eval_batches(cfg.eval_batches)

    started = time.perf_counter() if started is None else started

    def elapsed_seconds() -> float:
        """Wall seconds this run has spent in training and evaluation, resumes included."""
        return trained_before + time.perf_counter() - started

    def log(record: dict[str, Any]) -> None:
        if main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def checkpoint(at: int) -> None:
        if not _weights_finite(model):
            raise _stopped(at, "the weights are not finite", checkpoints)
        save_checkpoint(
            checkpoints,
            at,
            model,
            optimizer,
            {"step": at, **_rng_states(), "elapsed_s": elapsed_seconds()},
            cfg.keep_checkpoints,
        )
        nonlocal last_checkpoint
        last_checkpoint = time.perf_counter()
        if on_checkpoint is not None:
            on_checkpoint(at)

    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not (cfg.progress and main),
        unit="step",
        dynamic_ncols=True,
    )
    window, window_start = RunningMetrics(), time.perf_counter()
    last_checkpoint = last_trim = window_start  # checkpoint_seconds counts training time from here
    last_eval: dict[str, float] = {}
    while step < cfg.steps:
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro = step_batches(model, data, step, cfg.grad_accum)
        totals: dict[str, int] = {}
        for mb in micro:
            for name, n in model.item_counts(mb).items():
                totals[name] = totals.get(name, 0) + n
        step_loss = 0.0
        for j, mb in enumerate(micro):
            # this rank's rows; the ranks' gradients are averaged after the last micro-batch
            mine = to_device(shard_batch(mb, rank, world, cfg.batch_size), device)
            with distributed.gradient_sync(wrapped, j == len(micro) - 1):
                with autocast(device, cfg.precision):
                    out = wrapped(mine)
                (out.total_loss(totals) * world).backward()
            step_loss += window.add(out, mb["num_tokens"])
        grad_norm = distributed.whole(
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            if cfg.max_grad_norm > 0
            else torch.tensor(0.0)
        )
        if not math.isfinite(step_loss):
            raise _stopped(step + 1, f"the loss is {step_loss}", checkpoints)
        if not torch.isfinite(grad_norm):
            raise _stopped(step + 1, f"the gradient norm is {float(grad_norm)}", checkpoints)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if time.perf_counter() - last_trim >= TRIM_SECONDS:
            release_freed_memory()
            last_trim = time.perf_counter()
        step += 1
        if after_step is not None:
            after_step(model, step)
        summary = window.summary()
        elapsed = time.perf_counter() - window_start
        bar.set_postfix(
            loss=f"{sum(v for k, v in summary.items() if k.endswith('_loss')):.3f}",
            tok_s=f"{window.tokens / max(elapsed, 1e-9):.0f}",
            lr=f"{lr:.2e}",
        )
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            log(
                {
                    "step": step,
                    "lr": lr,
                    "grad_norm": float(grad_norm),
                    "tokens_per_s": window.tokens / elapsed,
                    **window.summed_over_ranks().summary(),
                }
            )
            window, window_start = RunningMetrics(), time.perf_counter()
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
            last_eval = evaluate_all(model, eval_set, device, cfg.precision, eval_extra)
            log({"step": step, "elapsed_s": round(elapsed_seconds(), 2), **last_eval})
            if main:
                bar.write(
                    f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in last_eval.items())
                )
        # read from a clock, so rank 0's answer for every rank: they checkpoint at the same steps
        overdue = cfg.checkpoint_seconds > 0 and distributed.main_says(
            time.perf_counter() - last_checkpoint >= cfg.checkpoint_seconds
        )
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or overdue:
            checkpoint(step)
    bar.close()
    release_freed_memory()  # the next run or phase of this process starts lean
    if not last_eval:  # resumed a finished run: report its final evaluation again
        last_eval = evaluate_all(model, eval_set, device, cfg.precision, eval_extra)
    if not _weights_finite(model):
        raise _stopped(step, "the weights are not finite", checkpoints)
    weights = full_weights(model)  # a sharded model's gathered on rank 0
    if main:
        save_checked_safetensors(run_dir / "model.safetensors", weights)
    return last_eval
