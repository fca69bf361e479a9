"""Log-mel features of speech (`LogMelConfig`, the `data.features.*` keys of a speech run),
torch-free so that building a command's flags imports no torch; computing them is
selfsup/data/audio.py, which re-exports these names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from selfsup.config import option
from selfsup.errors import UserError

if TYPE_CHECKING:
    import torch

Window = Literal["hann", "hamming"]  # analysis windows (selfsup/data/audio.py: torch's, periodic)


@dataclass
class LogMelConfig:
    """Log-mel filterbank features (module docstring: HTK mel scale, frames inside the signal)."""

    sample_rate: int = option(16000, "sample rate features are computed at, in Hz (FSDD: 8000)")
    resample: bool = option(
        True, "resample files at another rate (windowed sinc); false refuses them"
    )
    pre_emphasis: float = option(0.97, "pre-emphasis y[n] = x[n] - a x[n-1]; 0 turns it off")
    window: Window = option("hann", "analysis window (periodic)")
    win_ms: float = option(25.0, "frame (window) length in milliseconds")
    hop_ms: float = option(10.0, "hop between frame starts in milliseconds")
    n_fft: int | None = option(None, "FFT size; none: the next power of two >= the window")
    n_mels: int = option(40, "number of mel bands")
    fmin: float = option(0.0, "lowest mel filter edge in Hz")
    fmax: float | None = option(None, "highest mel filter edge in Hz; none: sample_rate / 2")
    log_floor: float = option(1e-6, "added to the mel power before the log: log(power + floor)")
    normalize: Literal["utterance", "global", "none"] = option(
        "utterance",
        "utterance: zero mean, unit variance per band within each utterance; global: raw "
        "features, normalised later with NormStats fitted on the training set; none: raw",
    )

    @property
    def win_samples(self) -> int:
        return round(self.win_ms * self.sample_rate / 1000.0)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_ms * self.sample_rate / 1000.0)

    @property
    def fft_size(self) -> int:
        return self.n_fft if self.n_fft is not None else 1 << (self.win_samples - 1).bit_length()

    @property
    def top_hz(self) -> float:
        return self.fmax if self.fmax is not None else self.sample_rate / 2.0

    def filterbank(self) -> torch.Tensor:
        """(M, F) mel filters for this config (computed by selfsup/data/audio.py, with torch)."""
        from selfsup.data.audio import mel_filterbank

        return mel_filterbank(
            self.n_mels, self.fft_size, self.sample_rate, float(self.fmin), float(self.top_hz)
        )

    def validate(self) -> None:
        if self.sample_rate <= 0:
            raise UserError(f"features.sample_rate must be > 0 Hz, got {self.sample_rate}")
        if not 0.0 <= self.pre_emphasis < 1.0:
            raise UserError(f"features.pre_emphasis must be in [0, 1), got {self.pre_emphasis}")
        if self.window not in get_args(Window):
            raise UserError(f"features.window {self.window!r}: expected one of hann, hamming")
        if self.win_samples < 2 or self.hop_samples < 1:
            raise UserError(
                f"features.win_ms={self.win_ms}, hop_ms={self.hop_ms} give {self.win_samples} "
                f"and {self.hop_samples} samples at {self.sample_rate} Hz; expected at least 2 "
                "and 1"
            )
        if self.fft_size < self.win_samples:
            raise UserError(
                f"features.n_fft={self.n_fft} is shorter than the window ({self.win_samples} "
                "samples); expected n_fft >= window length, or none"
            )
        if self.n_mels < 1:
            raise UserError(f"features.n_mels must be >= 1, got {self.n_mels}")
        if not 0.0 <= self.fmin < self.top_hz <= self.sample_rate / 2.0:
            raise UserError(
                f"features.fmin={self.fmin}, fmax={self.fmax}: expected 0 <= fmin < fmax <= "
                f"sample_rate / 2 = {self.sample_rate / 2:g} Hz"
            )
        if self.log_floor <= 0.0:
            raise UserError(f"features.log_floor must be > 0, got {self.log_floor}")
        if self.normalize not in ("utterance", "global", "none"):
            raise UserError(
                f"features.normalize {self.normalize!r}: expected one of utterance, global, none"
            )
        peaks = self.filterbank().amax(dim=1).tolist()
        empty = [band for band, peak in enumerate(peaks) if peak <= 0.0]
        if empty:  # a band narrower than the FFT bin spacing catches no bin at all
            raise UserError(
                f"features.n_mels={self.n_mels}: mel band {int(empty[0])} gets no FFT bin at "
                f"n_fft={self.fft_size}, {self.sample_rate} Hz; lower n_mels, raise fmin or "
                "raise n_fft"
            )


def fsdd_log_mel_config() -> LogMelConfig:
    """Log-mel settings for FSDD: its own 8 kHz (no resampling), 25 ms / 10 ms frames, 40 bands
    up to its 4 kHz Nyquist frequency."""
    return dataclasses.replace(LogMelConfig(), sample_rate=8000)
