"""Synthetic speech for the audio tests: PCM WAV files and "spoken digits" made of tones.

A digit is a glide from 300 + 250 * digit Hz up by 1 kHz (its second harmonic stays under 4 kHz at
8 kHz sampling), faded in and out; a speaker is the weight of the second harmonic. No noise:
per-utterance normalisation would blow the noise of bands the tone never reaches up to unit
variance, and TERA's loss would be mostly unpredictable noise.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

RATE = 8000


def write_wav(path: Path, values: np.ndarray, width: int = 2, rate: int = RATE) -> Path:
    """Integer sample values (frames, channels) or (frames,) as a PCM WAV of `width` bytes."""
    values = np.asarray(values)
    channels = 1 if values.ndim == 1 else values.shape[1]
    if width == 1:
        data = values.astype(np.uint8).tobytes()
    elif width == 3:
        data = b"".join(int(v).to_bytes(3, "little", signed=True) for v in values.reshape(-1))
    else:
        data = values.astype(f"<i{width}").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(data)
    return path


def write_float_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Samples in [-1, 1] as 16-bit PCM (clipped)."""
    return write_wav(path, (np.clip(samples, -1, 1) * 32767).astype(np.int16), rate=rate)


def digit_glide(digit: int, harmonic: float, seconds: float) -> np.ndarray:
    """One synthetic spoken digit of `seconds`, the speaker's second harmonic at `harmonic`."""
    t = np.arange(int(RATE * seconds)) / RATE
    phase = 2 * math.pi * np.cumsum(300.0 + 250.0 * digit + 1000.0 * t / seconds) / RATE
    envelope = np.sin(math.pi * t / seconds) ** 0.5
    return envelope * (np.sin(phase) + harmonic * np.sin(2 * phase)) * 0.4


def write_digit_tones(
    folder: Path, speakers: dict[str, float], digits: int, takes: int, seconds_per_take: float
) -> Path:
    """`{digit}_{speaker}_{take}.wav` for every digit, speaker and take (FSDD's naming); take t
    lasts 0.25 + seconds_per_take * t seconds."""
    for digit in range(digits):
        for speaker, harmonic in speakers.items():
            for take in range(takes):
                samples = digit_glide(digit, harmonic, 0.25 + seconds_per_take * take)
                write_float_wav(folder / f"{digit}_{speaker}_{take}.wav", samples)
    return folder
