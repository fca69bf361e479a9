"""Fine-tuning task kinds: one module per head, and `TASKS`, the one registry of kinds.

    classification   one text -> a class, from [CLS]                 tasks/classification.py
    pair             [CLS] A [SEP] B [SEP] -> a class, from [CLS]     tasks/classification.py
    tagging          one text -> a class per token                    tasks/tagging.py
    qa               question + passage -> answer span, over windows  tasks/qa.py (qa_windows.py)

A builder takes (tokenizer, labels, task config, seed) and returns the task object: its head, its
encoding of examples into features, its batches, its metric and its predictions (tasks/base.py).
Adding a kind is one module with a head and a task class, and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from selfsup.tasks.classification import ClassificationTask
from selfsup.tasks.qa import QuestionAnsweringTask
from selfsup.tasks.qa_windows import WindowConfig
from selfsup.tasks.tagging import TaggingTask

TaskBuilder = Callable[[Any, list[str], Any, int], Any]  # (tokenizer, labels, cfg, seed) -> task

TASKS: dict[str, TaskBuilder] = {
    "classification": lambda tok, labels, cfg, seed: ClassificationTask(
        tok, labels, cfg.max_seq_len, pooling=getattr(cfg, "pooling", "cls")
    ),
    "pair": lambda tok, labels, cfg, seed: ClassificationTask(
        tok, labels, cfg.max_seq_len, pair=True, pooling=getattr(cfg, "pooling", "cls")
    ),
    "tagging": lambda tok, labels, cfg, seed: TaggingTask(tok, labels, cfg.max_seq_len),
    "qa": lambda tok, labels, cfg, seed: QuestionAnsweringTask(
        tok, WindowConfig.from_task(cfg), cfg.lang, seed
    ),
}
TASK_KINDS = tuple(TASKS)


def build_task(kind: str, tokenizer, labels: list[str], cfg: Any, seed: int):
    """The task object of a kind, for a fine-tuning task config (`recipes/finetune.TaskConfig`)."""
    return TASKS[kind](tokenizer, labels, cfg, seed)
