"""The settings of `selfsup demo` (`DemoConfig`, the `demo.*` keys, and the tests' `quick_config`),
free of torch so that `selfsup demo --help` imports none; the demo itself is
selfsup/experiments/demo.py, which re-exports these names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from selfsup.config import option
from selfsup.errors import UserError
from selfsup.recipes.text_config import preset_small as pretrain_preset


def _no_repeats(name: str, values: list) -> None:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise UserError(f"demo.{name}: {', '.join(repeated)} listed twice")


def _is_builtin_task(name: str) -> bool:
    from selfsup.data.catalog import BUILTIN_TASKS  # numpy: read when a config is checked

    return name in BUILTIN_TASKS


def _unknown_task(name: str, task: str) -> UserError:
    from selfsup.data.catalog import builtin_task_names

    return UserError(
        f"demo.{name}: unknown task {task!r}; expected built-in tasks "
        f"({', '.join(builtin_task_names())})"
    )


def parse_task_steps(entries: list[str]) -> dict[str, int]:
    """`task_steps` as {task: steps}: "ner=300" entries, each a built-in task listed once with
    positive steps, else a one-line UserError naming the field."""
    steps: dict[str, int] = {}
    for entry in entries:
        task, _, count = entry.partition("=")
        task, count = task.strip(), count.strip()
        if not task or not count.lstrip("-").isdigit():
            raise UserError(f"demo.task_steps: {entry!r} is not TASK=STEPS, e.g. ner=300")
        if not _is_builtin_task(task):
            raise _unknown_task("task_steps", task)
        if task in steps:
            raise UserError(f"demo.task_steps: {task} listed twice")
        if int(count) < 1:
            raise UserError(f"demo.task_steps: {entry}: the steps must be at least 1")
        steps[task] = int(count)
    return steps


@dataclass
class DemoConfig:
    pretrain_steps: int = option(
        1500, "pretraining steps of the small preset (batch 16 x 64 tokens; the preset has 4000)"
    )
    finetune_steps: int = option(100, "fine-tuning steps per run, the same for both arms")
    task_steps: list[str] = option(
        ["ner=150"], "fine-tuning steps of some tasks, e.g. ner=300 (others: finetune_steps)"
    )
    finetune_batch_size: int = option(16, "fine-tuning batch size")
    max_seq_len: int = option(64, "fine-tuning sequence length")
    learning_rates: list[float] = option(
        [1e-3, 3e-3], "the learning-rate grid, searched on seed 0 for each task and arm"
    )
    tasks: list[str] = option(["sentiment", "ner"], "built-in tasks to fine-tune on")
    seeds: int = option(3, "fine-tuning seeds per arm (the table shows mean +- std)")
    max_train_examples: int = option(4000, "training examples per task (0: all)")
    label_budgets: list[int] = option(
        [50, 200, 1000],
        "the few-label view: fewer training examples per task, each below max_train_examples "
        "(whose runs are the view's last point); empty: no view",
    )
    few_label_seeds: int = option(
        1, "fine-tuning seeds of each few-label point (seeds 0..n-1; at most demo.seeds)"
    )
    max_eval_examples: int = option(1000, "dev and test examples per task (0: all)")
    max_epochs: int = option(
        20, "at most this many passes over a run's training examples (caps a run's steps)"
    )
    threads: int = option(0, "CPU threads (0: torch's default)")

    def steps_for(self, task: str, train_examples: int = 0) -> int:
        """A run's fine-tuning steps: its task's `task_steps` entry, else `finetune_steps`; with
        `train_examples` (0: unknown) at most `max_epochs` passes over them, i.e.
        ceil(max_epochs x train_examples / finetune_batch_size) steps."""
        steps = parse_task_steps(self.task_steps).get(task, self.finetune_steps)
        if train_examples:
            batch = self.finetune_batch_size
            steps = min(steps, (self.max_epochs * train_examples + batch - 1) // batch)
        return steps

    def validate(self) -> None:
        """Every value checked before any work (a task name found wrong after 13 minutes of
        pretraining is 13 minutes lost); the configs of the runs are checked in `check_runs`."""
        for name in (
            "pretrain_steps",
            "finetune_steps",
            "finetune_batch_size",
            "seeds",
            "max_epochs",
            "few_label_seeds",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"demo.{name} must be at least 1, got {getattr(self, name)}")
        if self.few_label_seeds > self.seeds:
            raise UserError(
                f"demo.few_label_seeds ({self.few_label_seeds}) must be at most demo.seeds "
                f"({self.seeds}): a few-label run uses its seed's learning rate and run"
            )
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
            if not _is_builtin_task(task):
                raise _unknown_task("tasks", task)
        _no_repeats("tasks", self.tasks)
        parse_task_steps(self.task_steps)  # a task not in `tasks` is allowed (and unused)
        for budget in self.label_budgets:
            if budget < 1:
                raise UserError(
                    f"demo.label_budgets: {budget} is not a positive number of training examples"
                )
            if self.max_train_examples and budget >= self.max_train_examples:
                raise UserError(
                    f"demo.label_budgets: {budget} is not below demo.max_train_examples "
                    f"({self.max_train_examples}), whose runs the view shows anyway"
                )
        _no_repeats("label_budgets", self.label_budgets)


def quick_config() -> DemoConfig:
    """The tests' size (`--quick`): every part runs, on a few examples, in about a minute."""
    return DemoConfig(
        pretrain_steps=10,
        finetune_steps=4,
        task_steps=[],
        learning_rates=[1e-3],
        seeds=2,
        max_train_examples=40,
        max_eval_examples=20,
        label_budgets=[10],
    )


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`selfsup experiment pretrained-vs-scratch ...`: the demo's command line."""
    from selfsup.cli import main as cli_main

    return cli_main(["demo", *(argv or [])])
