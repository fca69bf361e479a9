"""The settings of `selfsup icl` (`ICLConfig`: the task, the shots, the template, calibration), free
of torch and numpy so that `selfsup icl --help` imports neither; the measurement itself is
selfsup/evaluation/icl.py, which re-exports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from selfsup.config import option
from selfsup.data.catalog_config import LabelledDataConfig
from selfsup.errors import UserError


@dataclass
class ICLConfig:
    task: LabelledDataConfig = option(LabelledDataConfig(max_eval_examples=200), "")
    shots: list[int] = option([0, 1, 2, 4, 8, 16], "numbers of demonstrations k")
    draws: int = option(5, "random draws of the demonstrations per k (k = 0 has one)")
    template: str = option(
        "{text} -> {label}", "how one example is written; {text}, {text_b} (pair tasks), {label}"
    )
    labels: str = option(
        "", "label words, e.g. 'pos=好,neg=差' (default: the label names themselves)"
    )
    score: Literal["sum", "mean"] = option(
        "sum", "candidate score: sum or mean of its label tokens' log-probabilities"
    )
    max_text_chars: int = option(48, "cut every text to this many characters (0: no cut)")
    batch_size: int = option(32, "test examples scored together")
    calibrate: bool = option(
        True, "also report contextual calibration: divide by the label bias of content-free inputs"
    )
    content_free: list[str] = option(
        ["N/A", "[MASK]"], "content-free inputs for calibration (the empty text is always added)"
    )
    seed: int = option(0, "seed of the demonstration draws")
    split: Literal["test", "dev"] = option(
        "test", "split scored: dev to choose a template or label words, test to report"
    )

    def validate(self) -> None:
        if "{label}" not in self.template or "{text}" not in self.template:
            raise UserError(
                f"template {self.template!r} must contain {{text}} and {{label}}, "
                "e.g. '{text} -> {label}'"
            )
        if self.template.index("{label}") < self.template.index("{text}"):
            raise UserError(
                "template: {label} must come after {text} (the model reads left to right)"
            )
        if any(k < 0 for k in self.shots) or not self.shots:
            raise UserError(f"shots must be numbers >= 0, got {self.shots}")
        if self.draws < 1 or self.batch_size < 1:
            raise UserError("draws and batch_size must be positive")
