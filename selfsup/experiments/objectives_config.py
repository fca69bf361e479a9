"""The settings and command line of `selfsup experiment objectives` (`ObjectivesConfig`, its arms
and presets), torch-free so that its --help and a bad flag import no torch; the experiment itself
is selfsup/experiments/objectives.py, which re-exports these names (`main` included)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfsup.config import option
from selfsup.errors import UserError
from selfsup.experiments.common import experiment_main
from selfsup.experiments.demo_config import DemoConfig
from selfsup.experiments.jobs import JOBS_HELP
from selfsup.recipes.text_config import PRESETS as PRETRAIN_PRESETS


@dataclass(frozen=True)
class Arm:
    objectives: tuple[str, ...] = ("mlm",)
    replace_with_mask: float = 0.8
    replace_with_random: float = 0.1
    whole_word: bool = False


ARMS = {
    "mlm": Arm(),  # BERT's 80/10/10 character masking, no sentence-pair task
    "mlm+nsp": Arm(objectives=("mlm", "nsp")),
    "mlm+sop": Arm(objectives=("mlm", "sop")),
    "mask-only": Arm(replace_with_mask=1.0, replace_with_random=0.0),
    "random-only": Arm(replace_with_mask=0.0, replace_with_random=1.0),
    "whole-word": Arm(whole_word=True),
}


@dataclass
class ObjectivesConfig:
    arms: list[str] = option(list(ARMS), f"arms to pretrain (of {', '.join(ARMS)})")
    seeds: int = option(3, "pretraining and fine-tuning seeds per arm")
    preset: str = option("small", "selfsup pretrain preset the arms start from")
    pretrain_steps: int = option(500, "pretraining steps of every arm")
    max_seq_len: int = option(64, "pretraining sequence length of every arm")
    probe_train_pairs: int = option(2000, "NSP/SOP probe: pairs from the training articles")
    probe_test_pairs: int = option(1000, "NSP/SOP probe: pairs from the held-out articles")
    tasks: list[str] = option(["sentiment", "ner"], "downstream tasks (the demo's; empty: none)")
    finetune_steps: int = option(100, "fine-tuning steps per downstream run")
    task_steps: list[str] = option(
        ["ner=300"], "fine-tuning steps of some tasks, e.g. ner=300 (others: finetune_steps)"
    )
    finetune_lr: float = option(1e-3, "fine-tuning learning rate of every arm")
    max_train_examples: int = option(4000, "downstream training examples (0: all)")
    max_eval_examples: int = option(1000, "downstream dev and test examples (0: all)")
    threads: int = option(0, "CPU threads (0: torch's default)")
    jobs: int = option(0, JOBS_HELP)
    pretrain_overrides: list[str] = option(
        [], "key=value changes to every arm's pretraining config (e.g. train.batch_size=32)"
    )

    def validate(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or not self.arms:
            raise UserError(f"arms: expected some of {', '.join(ARMS)}, got {self.arms}")
        if self.seeds < 1 or self.pretrain_steps < 1 or self.probe_train_pairs < 16:
            raise UserError("seeds and pretrain_steps must be >= 1, probe_train_pairs >= 16")
        if self.preset not in PRETRAIN_PRESETS:
            raise UserError(f"preset: expected one of {', '.join(PRETRAIN_PRESETS)}")

    def downstream(self) -> DemoConfig:
        """The demo's fine-tuning settings, with this experiment's steps and rate."""
        return DemoConfig(
            finetune_steps=self.finetune_steps,
            task_steps=self.task_steps,
            learning_rates=[self.finetune_lr],
            tasks=self.tasks,
            seeds=self.seeds,
            max_train_examples=self.max_train_examples,
            max_eval_examples=self.max_eval_examples,
            label_budgets=[],
            threads=self.threads,
        )


def preset_gpu() -> ObjectivesConfig:
    """BERT-Base sizes on a GPU: 20k steps of 128 sequences of 128 tokens per arm."""
    return ObjectivesConfig(
        preset="base",
        pretrain_steps=20_000,
        max_seq_len=128,
        probe_train_pairs=10_000,
        probe_test_pairs=2000,
        finetune_steps=1000,
        task_steps=[],
        finetune_lr=5e-5,
        max_train_examples=0,
        max_eval_examples=0,
    )


def preset_quick() -> ObjectivesConfig:
    """Seconds per arm: the machinery (every arm trains, probes, fine-tunes), not the result."""
    return ObjectivesConfig(
        arms=["mlm", "mlm+sop"],
        seeds=1,
        preset="tiny",
        pretrain_steps=6,
        probe_train_pairs=64,
        probe_test_pairs=32,
        tasks=["sentiment"],
        finetune_steps=3,
        task_steps=[],
        max_train_examples=40,
        max_eval_examples=20,
        jobs=1,
        pretrain_overrides=["train.log_every=1", "train.progress=false"],
    )


PRESETS = {"cpu": ObjectivesConfig, "gpu": preset_gpu, "quick": preset_quick}


DESCRIPTION = (
    "MLM alone vs MLM+NSP vs MLM+SOP, [MASK]-only vs random-only vs 80/10/10, whole-word vs "
    "character masking: same data, steps and seeds; held-out MLM, NSP/SOP probes, downstream."
)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`selfsup experiment objectives [--out DIR] [--preset P | --quick] [key=value ...]`."""
    return experiment_main(DESCRIPTION, "runs/objectives", PRESETS, _run, argv, prog)


def _run(cfg: ObjectivesConfig, out: Path):
    # torch: imported once the flags are read
    from selfsup.experiments.objectives import run_objectives

    return run_objectives(cfg, out)
