"""Fine-tuning task kinds: one module per head, and `TASKS`, the one registry of kinds.

    classification   one text -> a class, from [CLS]                 tasks/classification.py
    pair             [CLS] A [SEP] B [SEP] -> a class, from [CLS]     tasks/classification.py
    tagging          one text -> a class per token                    tasks/tagging.py
    qa               question + passage -> answer span, over windows  tasks/qa.py (qa_windows.py)

A builder takes (tokenizer, labels, task config, seed) and returns the task object: its head, its
encoding of examples into features, its batches, its metric and its predictions (tasks/base.py).
Adding a kind is one module with a head and a task class, and one line here. A builder imports
its module (torch) when it builds, so importing this package, e.g. for the QA window sizes that
`selfsup finetune --help` shows (tasks/qa_windows_config.py), imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TaskBuilder = Callable[[Any, list[str], Any, int], Any]  # (tokenizer, labels, cfg, seed) -> task


def _classification(tok, labels: list[str], cfg: Any, seed: int, pair: bool = False):
    from selfsup.tasks.classification import ClassificationTask

    return ClassificationTask(
        tok, labels, cfg.max_seq_len, pair=pair, pooling=getattr(cfg, "pooling", "cls")
    )


def _tagging(tok, labels: list[str], cfg: Any, seed: int):
    from selfsup.tasks.tagging import TaggingTask

    return TaggingTask(tok, labels, cfg.max_seq_len)


def _qa(tok, labels: list[str], cfg: Any, seed: int):
    from selfsup.tasks.qa import QuestionAnsweringTask
    from selfsup.tasks.qa_windows_config import WindowConfig

    return QuestionAnsweringTask(tok, WindowConfig.from_task(cfg), cfg.lang, seed)


TASKS: dict[str, TaskBuilder] = {
    "classification": _classification,
    "pair": lambda tok, labels, cfg, seed: _classification(tok, labels, cfg, seed, pair=True),
    "tagging": _tagging,
    "qa": _qa,
}
TASK_KINDS = tuple(TASKS)


def build_task(kind: str, tokenizer, labels: list[str], cfg: Any, seed: int):
    """The task object of a kind, for a fine-tuning task config (`recipes/finetune.TaskConfig`)."""
    return TASKS[kind](tokenizer, labels, cfg, seed)
