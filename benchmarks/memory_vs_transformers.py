"""Resident memory of a BERT pretraining run: selfsup vs transformers' BertForMaskedLM (issue 18).

What is measured: the resident set size (RSS, what the OS counts against the machine's memory) of
one process training a BERT for --steps steps on People's Daily, sampled every --sample-every
steps, for two arms, each in a child process of its own:

- selfsup: `selfsup pretrain` as its users run it (`selfsup.recipes.pretrain`: the run folder,
  config, checkpoints every 250 steps, an evaluation every 500 and at the end, metrics.jsonl and
  its plot, the final save), MLM alone on People's Daily sentences (not packed: each batch is padded
  to its own longest sequence, so the activation shapes change from step to step, as do the number
  of masked tokens that selfsup's sparse prediction computes logits for). The tokenizer and token
  stores are prepared once (`data.reuse_from`), so that both arms start from the same files.
- transformers: `BertForMaskedLM` with the BertConfig of the same shape (selfsup's model is post-LN
  with learned positions, the one configuration that maps 1:1 onto Hugging Face's BERT), a plain
  loop as the library's examples write it (forward with `labels`, backward, clipping, torch AdamW
  with no decay on biases and LayerNorm, `get_linear_schedule_with_warmup`), fed the very same
  micro-batches (`BertPretrainingBatches.batch(i)` from the same token store: the same ids, lengths
  and masks; `mlm_labels` as `labels`).

Both arms run on one thread (`torch.set_num_threads(1)`), one after the other. The steps are
sampled without adding work to selfsup's loop: the child wraps `selfsup.trainer.lr_at`, which the
loop calls once at the start of every step, and there, every --sample-every steps, reads from
/proc/self/status the RSS between steps (VmRSS) and the peak since the previous sample (VmHWM,
reset after each reading through /proc/self/clear_refs: the activations live inside the steps),
with CPU time and minor page faults (`resource.getrusage`).

Output: for each arm the RSS between steps and the peak inside the steps near warm-up (step
--warmup), the middle and the end, each the median of the 5 samples nearest that step (one
checkpoint's or evaluation's spike is not growth), the largest peak (spikes included), the growth
of the peak after warm-up, the median wall and CPU seconds per step and page faults per step
(each costs ~2 us of CPU on this project's machines); then the ratios selfsup / transformers.
--child-env runs both children with extra environment variables (e.g. MALLOC_ARENA_MAX=1) to
compare allocator settings; --arms runs one arm. Measured: docs/PERFORMANCE.md, "Memory".

Usage:
    python benchmarks/memory_vs_transformers.py          # ~22 min on a quiet core, 40 on a busy one
    python benchmarks/memory_vs_transformers.py --steps 200 --warmup 50
    python benchmarks/memory_vs_transformers.py --arms selfsup --child-env MALLOC_TRIM_THRESHOLD_=0
The first run prepares People's Daily (tokenizer + token stores, ~30 s) in OUT/prepared-seedN.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve()


# ---------------------------------------------------------------- settings
@dataclass
class Settings:
    steps: int = 1000  # optimizer steps of each arm
    warmup: int = 100  # the step whose RSS growth is counted from (capped at steps // 5)
    sample_every: int = 10  # read RSS every this many steps
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    max_seq_len: int = 128  # tokens per sequence at most ([CLS] and [SEP] included)
    batch_size: int = 16
    mask_rate: float = 0.15
    dropout: float = 0.1
    lr: float = 1e-3
    seed: int = 0
    threads: int = 1
    arms: str = "selfsup,transformers"
    child_env: str = ""  # extra environment of both children: NAME=VALUE,NAME=VALUE
    out: str = "runs/memory-vs-transformers"
    child: str = ""  # internal: run one arm in this process (prepare, selfsup or transformers)


def warmup_step(s: Settings) -> int:
    return max(1, min(s.warmup, s.steps // 5))


def pretrain_config(s: Settings, steps: int | None = None):
    """The selfsup config of the comparison: a BERT of the given shape, MLM alone, sentences
    padded per batch (not packed), checkpoints, evaluations and logs as preset small writes them."""
    from selfsup.models.transformer import TransformerConfig
    from selfsup.recipes.text import PretrainConfig
    from selfsup.trainer import TrainConfig

    cfg = PretrainConfig(objectives=["mlm"])
    cfg.model = TransformerConfig(
        hidden_size=s.hidden_size,
        num_layers=s.num_layers,
        num_heads=s.num_heads,
        max_position=s.max_seq_len,
        dropout=s.dropout,
        attention_dropout=s.dropout,
    )  # post-LN, learned positions: Hugging Face's BERT
    cfg.masking.rate = s.mask_rate
    cfg.data.max_seq_len = s.max_seq_len
    cfg.train = TrainConfig(
        steps=steps or s.steps,
        batch_size=s.batch_size,
        lr=s.lr,
        warmup_steps=max(1, (steps or s.steps) // 10),
        eval_every=500,
        eval_batches=20,
        checkpoint_every=250,
        checkpoint_seconds=60,
        log_every=50,
        seed=s.seed,
        threads=s.threads,
        progress=False,
    )
    return cfg


# ---------------------------------------------------------------- measuring (in a child)
def memory_now() -> tuple[int, int]:
    """(resident bytes now, peak resident bytes) of this process."""
    try:
        fields = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) * 1024
        return fields["VmRSS"], fields["VmHWM"]
    except (OSError, KeyError, ValueError):  # not Linux: the peak only (bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024
        return peak, peak


def reset_peak() -> bool:
    """Start VmHWM again from the current RSS (Linux 4.0+), so that the next reading is the peak
    since now; False where that is not possible (the peak then stays the whole run's)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Recorder:
    """At the start of every `every`-th step and of the last one: RSS, the peak RSS since the
    previous sample (inside the steps, where activations live), wall and CPU time, page faults."""

    def __init__(self, every: int, steps: int) -> None:
        self.every, self.last = every, steps - 1
        self.samples = []  # (step, rss, peak since last sample, wall s, cpu s, minor page faults)
        self.window_peaks = reset_peak()

    def at(self, step: int) -> None:
        if step % self.every == 0 or step == self.last:
            use = resource.getrusage(resource.RUSAGE_SELF)
            cpu = use.ru_utime + use.ru_stime
            self.samples.append((step, *memory_now(), time.perf_counter(), cpu, use.ru_minflt))
            reset_peak()

    def result(self, arm: str) -> dict:
        return {"arm": arm, "samples": self.samples, "window_peaks": self.window_peaks}


def prepared(s: Settings) -> Path:
    """Where the tokenizer and token stores are (they depend on the seed: its held-out split)."""
    return Path(s.out) / f"prepared-seed{s.seed}"


def run_prepare(s: Settings, folder: Path) -> None:
    """Tokenizer and token stores of People's Daily for this config, via a 1-step run."""
    from selfsup.recipes import pretrain

    if (folder / "config.json").is_file() and (folder / "data" / "train" / "meta.json").is_file():
        return
    print(f"preparing People's Daily in {folder} (once)", flush=True)
    pretrain(pretrain_config(s, steps=1), folder)


def run_selfsup(s: Settings, out: Path, recorder: Recorder) -> None:
    import shutil

    import selfsup.trainer as trainer
    from selfsup.recipes import pretrain

    cfg = pretrain_config(s)
    cfg.data.reuse_from = str(prepared(s))
    run_dir = out / "selfsup-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    lr_at = trainer.lr_at  # called once at the start of each step: sample there

    def sampled_lr_at(step: int, train_cfg) -> float:
        recorder.at(step)
        return lr_at(step, train_cfg)

    trainer.lr_at = sampled_lr_at
    pretrain(cfg, run_dir)


def run_transformers(s: Settings, out: Path, recorder: Recorder) -> None:
    import torch
    from transformers import BertConfig, BertForMaskedLM, get_linear_schedule_with_warmup

    from selfsup.data.pretraining import BertPretrainingBatches
    from selfsup.data.token_store import TokenStore
    from selfsup.data.tokenizer import Tokenizer
    from selfsup.interop.huggingface import config_to_hf
    from selfsup.recipes.text import special_ids

    cfg = pretrain_config(s)
    tokenizer = Tokenizer.load(prepared(s) / "tokenizer")
    cfg.model.vocab_size = tokenizer.vocab_size
    store = TokenStore.open(prepared(s) / "data" / "train")
    data = BertPretrainingBatches(
        store,
        special_ids(tokenizer),
        ["mlm"],
        cfg.masking,
        s.max_seq_len,
        s.batch_size,
        s.seed,
        False,
    )
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    hf = config_to_hf(cfg.model, ["BertForMaskedLM"], {"pad_token_id": tokenizer.pad_id})
    model = BertForMaskedLM(BertConfig(**hf)).train()
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not any(p is q for q in no_decay)]
    t = cfg.train
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay}],
        lr=t.lr,
        betas=(t.adam_beta1, t.adam_beta2),
        weight_decay=0.0,
    )
    schedule = get_linear_schedule_with_warmup(optimizer, t.warmup_steps, t.steps)
    for step in range(t.steps):
        recorder.at(step)
        b = data.batch(step)
        loss = model(
            input_ids=b["input_ids"],
            attention_mask=b["attention_mask"],
            token_type_ids=b["token_type_ids"],
            labels=b["mlm_labels"],
        ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)


def child_main(s: Settings) -> None:
    out = Path(s.out)
    if s.child == "prepare":
        run_prepare(s, prepared(s))
        return
    recorder = Recorder(s.sample_every, s.steps)
    started = time.perf_counter()
    {"selfsup": run_selfsup, "transformers": run_transformers}[s.child](s, out, recorder)
    result = recorder.result(s.child)
    result["wall_s"] = time.perf_counter() - started
    (out / f"{s.child}.json").write_text(json.dumps(result))


# ---------------------------------------------------------------- the parent
def spawn(s: Settings, child: str, env: dict[str, str]) -> None:
    argv = [sys.executable, str(HERE), "--child", child]
    for f in dataclasses.fields(Settings):
        if f.name not in ("child",):
            argv += [f"--{f.name.replace('_', '-')}", str(getattr(s, f.name))]
    print(f"running {child}" + (f" with {s.child_env}" if s.child_env else ""), flush=True)
    subprocess.run(argv, check=True, env={**os.environ, **env})


def summarise(result: dict, s: Settings) -> dict:
    """Levels of RSS between steps and of the peak inside the steps at warm-up, the middle and
    the end: each the median over the 5 samples nearest that step (50 steps at the default
    sampling), so that the window of one checkpoint or evaluation (a spike that does not grow)
    does not pass for growth; the largest peak includes those."""
    samples = result["samples"]
    warm = warmup_step(s)
    points = [warm, (warm + s.steps) // 2, samples[-1][0]]

    def level(step: int, column: int) -> float:
        nearest = sorted(samples[1:], key=lambda x: abs(x[0] - step))[:5]
        return statistics.median(x[column] for x in nearest)

    windows = [(a, b) for a, b in zip(samples, samples[1:]) if a[0] >= warm]

    def per_step(column: int) -> float:
        """Median over the windows between samples after warm-up (skips checkpoint windows)."""
        values = [(b[column] - a[column]) / (b[0] - a[0]) for a, b in windows]
        return statistics.median(values) if values else float("nan")

    peaks = [level(p, 2) for p in points]
    return {
        "arm": result["arm"],
        "points": points,
        "rss": [level(p, 1) for p in points],
        "peak": peaks,
        "largest": max(x[2] for x in samples),
        "growth": [peaks[1] / peaks[0] - 1, peaks[2] / peaks[0] - 1],
        "s_per_step": per_step(3),  # wall
        "cpu_s_per_step": per_step(4),  # user + system CPU seconds: less moved by other jobs
        "faults_per_step": per_step(5),  # minor page faults: memory the OS had to hand back
    }


def table(rows: list[dict], s: Settings) -> str:
    from selfsup.reporting import markdown_table

    steps = " / ".join(str(p) for p in rows[0]["points"])
    headers = [
        "arm",
        f"RSS between steps, near step {steps}",
        f"peak RSS inside the steps, near step {steps}",
        "largest peak",
        "peak growth after warm-up: middle / end",
        "s/step: wall / CPU",
        "page faults/step",
    ]

    def mb(values: list[float]) -> str:
        return " / ".join(f"{n / 2**20:,.0f}" for n in values) + " MB"

    body = [
        [
            r["arm"],
            mb(r["rss"]),
            mb(r["peak"]),
            mb([r["largest"]]),
            " / ".join(f"{100 * g:+.1f}%" for g in r["growth"]),
            f"{r['s_per_step']:.3f} / {r['cpu_s_per_step']:.3f}",
            f"{r['faults_per_step']:,.0f}",
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def parse_settings(argv: Sequence[str] | None) -> Settings:
    from selfsup.config import parse_flat_settings

    s = parse_flat_settings(Settings, argv, __doc__)
    if s.steps < 1 or s.sample_every < 1:
        raise SystemExit("memory_vs_transformers.py: error: --steps, --sample-every must be >= 1")
    return s


def main(argv: Sequence[str] | None = None) -> list[dict]:
    s = parse_settings(argv)
    if s.child:
        child_main(s)
        return []
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(x.split("=", 1) for x in s.child_env.split(",") if x)
    arms = [a for a in s.arms.split(",") if a]
    if not arms or set(arms) - {"selfsup", "transformers"}:
        raise SystemExit("memory_vs_transformers.py: error: --arms takes selfsup,transformers")
    spawn(s, "prepare", {})
    rows = []
    for arm in arms:
        (out / f"{arm}.json").unlink(missing_ok=True)
        spawn(s, arm, env)
        rows.append(summarise(json.loads((out / f"{arm}.json").read_text()), s))
    print(
        f"\nBERT MLM, {s.num_layers} layers x {s.hidden_size}, {s.num_heads} heads, batch "
        f"{s.batch_size} x up to {s.max_seq_len} tokens, {s.steps} steps, {s.threads} thread(s)"
        + (f", env {s.child_env}" if s.child_env else "")
    )
    text = table(rows, s)
    print(text)
    by_arm = {r["arm"]: r for r in rows}
    if {"selfsup", "transformers"} <= set(by_arm):
        ours, theirs = by_arm["selfsup"], by_arm["transformers"]
        ratio = {key: ours[key][2] / theirs[key][2] for key in ("peak", "rss")}
        print(
            f"selfsup / transformers: peak RSS at the end {ratio['peak']:.2f}x, "
            f"RSS between steps at the end {ratio['rss']:.2f}x, "
            f"largest peak {ours['largest'] / theirs['largest']:.2f}x, "
            f"CPU s/step {ours['cpu_s_per_step'] / theirs['cpu_s_per_step']:.2f}x"
        )
    payload = {"settings": dataclasses.asdict(s), "rows": rows, "table": text}
    (out / "memory_vs_transformers.json").write_text(json.dumps(payload, indent=1))
    return rows


if __name__ == "__main__":
    main()
