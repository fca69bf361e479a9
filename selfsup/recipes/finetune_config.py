"""The fine-tuning recipe's config (`FinetuneConfig`, with the task's `TaskConfig`), its presets and
its registry entry, free of torch so that `selfsup finetune --help` imports none. Init, tasks,
batches and test scoring: selfsup/recipes/finetune.py, which re-exports these names; the recipe
names its functions, imported when a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from selfsup.config import load_config, option
from selfsup.data.catalog_config import LabelledDataConfig
from selfsup.errors import UserError
from selfsup.models.transformer_config import TransformerConfig
from selfsup.recipes.recipe import lazy_recipe
from selfsup.recipes.text_config import TokenizerConfig
from selfsup.tasks.qa_windows_config import FINETUNE_WINDOWS, WindowConfig
from selfsup.trainer_config import TrainConfig


@dataclass
class TaskConfig(LabelledDataConfig):
    """Which labelled data (the fields of `LabelledDataConfig`, first), then the inputs and the QA
    windows the model sees."""

    max_seq_len: int = option(
        FINETUNE_WINDOWS.max_seq_len, "tokens per input, [CLS] and [SEP] included"
    )
    pooling: Literal["cls", "mean"] = option(
        "cls",
        "classification and pair: the sequence vector a head reads: BERT's pooled [CLS] (trained "
        "by NSP/SOP) or the mean of the token vectors (what MLM alone trains)",
    )
    sequence_mapping: Literal["", "random", "letters", "chars"] = option(
        "",
        "classification of DNA (or any base sequence): read each text as bases, one token per "
        "base: random = a seeded random vocabulary token per base and for [CLS]/[SEP] (Kao & Lee "
        "2021's shift table), letters = the base's own letter token, chars = what the tokenizer "
        "makes of it; empty: ordinary text",
    )
    mapping_seed: int = option(
        0, "the seed of sequence_mapping=random (another seed, another table)"
    )
    max_question_len: int = option(FINETUNE_WINDOWS.max_question_len, "qa: question tokens kept")
    stride: int = option(
        FINETUNE_WINDOWS.stride,
        "qa: tokens between window starts (overlap = context tokens per window - stride)",
    )
    max_answer_len: int = option(WindowConfig.max_answer_len, "qa: longest answer in tokens")
    n_best: int = option(WindowConfig.n_best, "qa: start and end candidates per window")
    no_answer_window: Literal["cls", "drop"] = option(
        "cls", "qa training: a window without the answer is labelled at [CLS] or dropped"
    )
    random_offset: bool = option(False, "qa training: shift the window grid randomly per example")
    qa_loss_over: Literal["passage", "window"] = option(
        "passage",
        "qa training: start/end softmax over passage tokens + [CLS], or over the whole padded "
        "window as transformers' BertForQuestionAnswering does",
    )
    max_context_rule: bool = option(
        True,
        "qa inference: score a start only in the window where it has the most context (BERT); "
        "false: best score over every window that holds it",
    )
    lang: Literal["auto", "en", "zh"] = option("auto", "qa metric language")


@dataclass
class FinetuneConfig:
    init: str = option("random", "a selfsup run folder to start from, or 'random'")
    random_init: bool = option(
        False, "keep init's tokenizer and sizes but start from random weights"
    )
    head_dropout: float = option(0.1, "dropout before the task head")
    freeze_embeddings: bool = option(
        False,
        "keep the token embedding table as the init has it: languages stay in the shared space "
        "they were pretrained in (zero-shot cross-lingual transfer), and a large vocabulary "
        "needs no optimizer state",
    )
    task: TaskConfig = option(TaskConfig(), "")
    model: TransformerConfig = option(TransformerConfig(), "")
    tokenizer: TokenizerConfig = option(TokenizerConfig(), "")
    train: TrainConfig = option(TrainConfig(lr=1e-4, eval_every=0, checkpoint_every=200), "")

    def validate(self) -> None:
        """What can be checked before reading any data (the init run's sizes come later)."""
        self.train.validate()
        self.model.validate()
        if not 0.0 <= self.head_dropout < 1.0:
            raise UserError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        for name in ("max_train_examples", "max_eval_examples"):
            if getattr(self.task, name) < 0:
                raise UserError(f"task.{name} must be >= 0, got {getattr(self.task, name)}")
        if self.task.max_seq_len <= 0:
            raise UserError(f"task.max_seq_len must be positive, got {self.task.max_seq_len}")


def preset_tiny() -> FinetuneConfig:
    """Seconds: tests and a first look."""
    cfg = FinetuneConfig()
    cfg.task.max_train_examples, cfg.task.max_eval_examples = 400, 200
    cfg.train.steps = 40
    return cfg


def preset_small() -> FinetuneConfig:
    """Minutes on 2 cores, for the encoder of `selfsup pretrain --preset small`."""
    cfg = FinetuneConfig()
    cfg.train = TrainConfig(
        steps=300,
        batch_size=32,
        lr=3e-4,
        warmup_steps=30,
        eval_every=0,
        checkpoint_every=100,
        log_every=20,
        adam_beta2=0.98,
    )
    return cfg


PRESETS = {"tiny": preset_tiny, "small": preset_small}


# ---------------------------------------------------------------- the recipe
FUNCTIONS = "selfsup.recipes.finetune"  # the recipe's init, tasks, batches and scoring (torch)

FINETUNE = lazy_recipe(
    FUNCTIONS,
    name="finetune",
    kind="finetune",
    arch="bert",
    summary="an encoder and a fresh task head, trained on labelled data",
    config_class=FinetuneConfig,
    presets={"small": preset_small, "tiny": preset_tiny},
    finish="score_test",
)


def load_finetune_config(path: str | Path) -> FinetuneConfig:
    return load_config(FinetuneConfig, path)
