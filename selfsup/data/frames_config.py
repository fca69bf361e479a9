"""TERA's alterations of log-mel frames (`FrameMaskingConfig`, the `masking.*` keys of a speech run),
torch-free so that building a command's flags imports no torch; the corruption itself is
selfsup/data/frames.py, which re-exports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from selfsup.config import option
from selfsup.errors import UserError


@dataclass
class FrameMaskingConfig:
    """TERA's input alterations. Defaults: TERA's s3prl recipe logMelBase-T-F-M (80 log-mel
    channels), which is also Mockingjay's time masking plus the channel and magnitude parts."""

    time_mask_share: float = option(
        0.15, "share of each utterance's frames to alter in time (TERA, Mockingjay: 0.15)"
    )
    span_length: int = option(7, "consecutive frames per time span (TERA, Mockingjay: 7)")
    replace_with_zero: float = option(0.8, "share of time alterations that zero the frames (0.8)")
    replace_with_random: float = option(
        0.1,
        "share that copies a random segment of the same utterance (0.1); the rest stay unchanged",
    )
    alteration_unit: Literal["utterance", "span"] = option(
        "utterance",
        "roll the zero/random/unchanged die once per utterance (s3prl's TERA) or once per span",
    )
    channel_mask_max_width: int = option(
        16, "widest band of mel channels zeroed (TERA: 20% of the channels, 16 of 80); 0: none"
    )
    channel_mask_count: int = option(1, "channel bands per utterance (TERA: 1)")
    noise_share: float = option(
        0.15, "share of utterances whose input gets Gaussian noise (TERA's magnitude alteration)"
    )
    noise_std: float = option(0.2, "std of that noise, in normalised log-mel units (TERA: 0.2)")

    def validate(self) -> None:
        """Shares in range, sizes non-negative, and something left to reconstruct."""
        if not 0.0 <= self.time_mask_share < 1.0:
            raise UserError(
                f"frame_masking.time_mask_share must be in [0, 1), got {self.time_mask_share}"
            )
        if self.span_length < 1:
            raise UserError(f"frame_masking.span_length must be >= 1, got {self.span_length}")
        if not (self.replace_with_zero >= 0 and self.replace_with_random >= 0):
            raise UserError(
                "frame_masking.replace_with_zero and frame_masking.replace_with_random must be >= 0"
            )
        if self.replace_with_zero + self.replace_with_random > 1.0 + 1e-9:
            raise UserError(
                "frame_masking.replace_with_zero + frame_masking.replace_with_random must be "
                f"<= 1 (got {self.replace_with_zero} + {self.replace_with_random})"
            )
        for name in ("channel_mask_max_width", "channel_mask_count"):
            if getattr(self, name) < 0:
                raise UserError(f"frame_masking.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.noise_share <= 1.0:
            raise UserError(f"frame_masking.noise_share must be in [0, 1], got {self.noise_share}")
        if not 0.0 <= self.noise_std < float("inf"):
            raise UserError(
                f"frame_masking.noise_std must be finite and >= 0, got {self.noise_std}"
            )
        channels = self.channel_mask_max_width > 0 and self.channel_mask_count > 0
        if self.time_mask_share == 0 and not channels:
            raise UserError(
                "frame_masking: nothing to reconstruct; set time_mask_share > 0 or a channel band"
            )
