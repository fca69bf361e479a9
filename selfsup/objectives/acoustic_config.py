"""The speech objectives' own setting (`AcousticObjectiveConfig`, the `objective.*` keys of a speech
run), torch-free so that building a command's flags imports no torch; the objectives themselves
are selfsup/objectives/acoustic.py, which re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.config import option
from selfsup.errors import UserError


@dataclass
class AcousticObjectiveConfig:
    """Settings of the objectives themselves (the corruption is `FrameMaskingConfig`)."""

    time_shift: int = option(
        3, "APC: the output at frame t predicts frame t + time_shift (s3prl's APC recipe: 5)"
    )

    def validate(self) -> None:
        if self.time_shift < 1:
            raise UserError(f"objective.time_shift must be >= 1, got {self.time_shift}")
