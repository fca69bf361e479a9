"""Audio input for speech self-supervised learning: WAV files, data set lists, log-mel features,
and a memory-mapped store of the features.

Shape legend: N samples, T frames, F frequency bins (n_fft // 2 + 1), M mel bands.

- Reading (`read_wav`): PCM WAV through the standard library's `wave` module, so no audio package
  is needed: 8-bit unsigned, 16-, 24- and 32-bit signed, any sample rate, any number of channels,
  mixed down to mono by the mean of the channels and scaled to float32 in [-1, 1] (a b-bit sample
  is divided by 2^(b-1)). Compressed or float WAVs (A-law, mu-law, ADPCM, IEEE float, and
  WAVE_FORMAT_EXTENSIBLE headers, which Python's `wave` reads only from 3.12), zero frames and a
  data chunk shorter than its header says are refused as a one-line `UserError` naming the file,
  or counted in a `ReadReport` and skipped with `skip_bad=True` (as the text readers of
  `selfsup.data.labelled` do). FLAC (LibriSpeech's format), Ogg and AIFF files are read through
  the optional `soundfile` package (libsndfile; `pip install "selfsup[audio]"`), mixed and scaled
  the same way (libsndfile also divides a b-bit sample by 2^(b-1)); without it such a file is a
  one-line `UserError` saying so, whatever `skip_bad` says, since every such file would fail.
- Resampling (`resample`): a windowed-sinc (Kaiser) polyphase resampler written with torch, the
  method of resampy and torchaudio: the rates are reduced by their gcd, and each of the `new`
  output phases gets its own band-limited interpolation kernel, applied with one strided conv1d.
  Defaults (32 zero crossings, cut-off at 0.94 of the lower Nyquist frequency, Kaiser beta 8.6)
  keep a tone at 0.85 of the new Nyquist frequency within 1e-5 and attenuate everything above it
  by more than 85 dB, so no alias folds into speech bands. Linear or nearest interpolation (what
  `torch.nn.functional.interpolate` does) has no anti-aliasing filter, so downsampling folds high
  frequencies into the speech band. Rates whose reduced ratio is very fine (44100 -> 16001) would
  need a huge kernel table and are refused.
- Listing (`list_audio`): a folder of .wav files (recursive, sorted) or a list file (one path per
  line, relative to the list file, optionally `path<TAB>label`); labels from a file-name regex
  (`label_from_name`; `FSDD_NAME_PATTERN` for the Free Spoken Digit Dataset's
  `{digit}_{speaker}_{index}.wav`, `fsdd_items` for the shared copy) or from a CSV `path,label`.
- Features (`log_mel`, `LogMelConfig`): pre-emphasis (optional), frames of `win_ms` every `hop_ms`
  with a periodic Hann or Hamming window, the power spectrum |STFT|^2 by `torch.stft`, an HTK mel
  filterbank, then log(mel power + floor), and per-utterance mean/variance normalisation or
  statistics fitted over a training set (`NormStats`). Choices, and where they deviate from Kaldi:
  * HTK mel scale, mel(f) = 2595 log10(1 + f / 700) (= Kaldi's 1127 ln(1 + f / 700), and
    torchaudio's default), with triangles of peak 1 and no area normalisation; Slaney's scale
    (librosa's default) is not offered, one scale keeps stored features comparable.
  * Frames lie wholly inside the signal (Kaldi's snip-edges): T = 1 + (N - win) // hop, and an
    utterance shorter than one window is zero-padded to one frame. Each frame of `win` samples is
    zero-padded at its end to `n_fft` (the next power of two by default).
  * Pre-emphasis y[n] = x[n] - a x[n-1] runs over the whole utterance (Kaldi: per frame), no DC
    removal per frame and no dither: the features are deterministic.
- Store (`cached_feature_store`, `FeatureStore`): features computed once for a list of files and
  memory-mapped from disk, in the design of `selfsup.data.token_store`. It is reopened without
  recomputation while the config, the dtype, `skip_bad` and every file's path, size,
  modification time and label are what they were; any change recomputes the whole store.

Layout of a feature store folder:

    features.bin    all frames of all utterances back to back, float16 (default) or float32,
                    row-major (num_frames, n_mels)
    offsets.npy     int64 (num_utterances + 1): frame index where each utterance starts
    meta.json       format, version, dtype, n_mels, counts, the LogMelConfig, skip_bad, every
                    listed source {path, size, mtime_ns, label}, `kept` (the source index of each
                    stored utterance, so labels and paths live here), the skipped files and the
                    reasons; written LAST and atomically, so a folder without it is an
                    interrupted build, never mistaken for a store

float16 rounds a log-mel value by at most 2^-11 of its size (under 0.01 for |x| < 16), far below
the frame-to-frame variation of speech, and halves the file.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import re
import struct
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from selfsup.config import from_dict, to_dict
from selfsup.data.audio_config import LogMelConfig, fsdd_log_mel_config  # noqa: F401 (re-export)
from selfsup.data.labelled import ReadReport
from selfsup.data.sources import shared_set_path
from selfsup.data.text import decoded_lines
from selfsup.errors import UserError
from selfsup.io import atomic_write_bytes, atomic_write_json, check_writable_folder

WAV_SUFFIX = ".wav"
SOUNDFILE_SUFFIXES = (".flac", ".ogg", ".aiff", ".aif")  # read through the optional soundfile
AUDIO_SUFFIXES = (WAV_SUFFIX, *SOUNDFILE_SUFFIXES)
INSTALL_SOUNDFILE = 'pip install "selfsup[audio]"'

# ---------------------------------------------------------------------------------------------
# Resampling
# ---------------------------------------------------------------------------------------------

# Largest polyphase kernel table (phases x taps) accepted: 4M float32 = 16 MB.
_MAX_KERNEL_ELEMENTS = 1 << 22


@functools.lru_cache(maxsize=16)
def _sinc_kernel(
    orig: int, new: int, zero_crossings: int, rolloff: float, beta: float
) -> tuple[torch.Tensor, int]:
    """((new, 1, taps) float32 kernels, width) for rates already reduced by their gcd.

    Output sample j of each block of `new` sits at time j/new, input sample i at i/orig (in units
    of one block); kernel j weights input i by h(j/new - i/orig), with h a sinc of cut-off
    `rolloff * min(orig, new) / 2` under a Kaiser window `zero_crossings` lobes wide on each side,
    scaled for unit gain at DC. Input offsets run from -width to width + orig - 1.
    """
    base = rolloff * min(orig, new)
    width = math.ceil(zero_crossings * orig / base)
    taps = 2 * width + orig
    if new * taps > _MAX_KERNEL_ELEMENTS:
        raise UserError(
            f"resampling ratio {new}/{orig} (after dividing out the gcd) needs a {new}x{taps} "
            "kernel table; expected common rates (8/16/22.05/44.1/48 kHz) or resample beforehand"
        )
    inputs = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    outputs = torch.arange(new, dtype=torch.float64)[:, None] / new
    z = base * (outputs - inputs[None, :])  # (new, taps) time in zero crossings of the sinc
    ratio = (z / zero_crossings).clamp(-1.0, 1.0)
    window = torch.special.i0(beta * torch.sqrt(1.0 - ratio**2)) / torch.special.i0(
        torch.tensor(beta, dtype=torch.float64)
    )
    kernel = torch.special.sinc(z) * window * (base / orig)
    kernel = torch.where(z.abs() <= zero_crossings, kernel, torch.zeros(()))
    return kernel.to(torch.float32)[:, None, :], width


def resample(
    samples: np.ndarray | torch.Tensor,
    orig_rate: int,
    new_rate: int,
    zero_crossings: int = 32,
    rolloff: float = 0.94,
    beta: float = 8.6,
) -> np.ndarray:
    """(N,) samples at `orig_rate` -> (ceil(N * new_rate / orig_rate),) float32 at `new_rate`,
    band-limited by a Kaiser-windowed sinc (module docstring) and clipped to [-1, 1].

    The signal is taken as zero outside the given samples, so the first and last
    `zero_crossings / (rolloff * min rate)` seconds (4 ms at 8 kHz) see a soft edge.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise UserError(f"resample: rates must be positive, got {orig_rate} -> {new_rate} Hz")
    x = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
    if orig_rate == new_rate:
        return x.numpy().copy()
    gcd = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // gcd, new_rate // gcd
    kernel, width = _sinc_kernel(orig, new, zero_crossings, rolloff, beta)
    padded = torch.nn.functional.pad(x[None, None, :], (width, width + orig))  # (1, 1, N + pad)
    blocks = torch.nn.functional.conv1d(padded, kernel, stride=orig)  # (1, new, N // orig + 1)
    out = blocks[0].T.reshape(-1)  # interleave the phases: block k, phase j -> k * new + j
    length = math.ceil(len(x) * new / orig)
    return out[:length].clamp(-1.0, 1.0).numpy()


# ---------------------------------------------------------------------------------------------
# Reading WAV files
# ---------------------------------------------------------------------------------------------

# WAV format tags `wave` refuses, named for the message (Microsoft's registered values)
_FORMAT_NAMES = {
    2: "Microsoft ADPCM",
    3: "IEEE float",
    6: "A-law",
    7: "mu-law",
    17: "IMA ADPCM",
    85: "MPEG layer 3",
    65534: "WAVE_FORMAT_EXTENSIBLE, which Python's wave module reads only from Python 3.12",
}
_EXPECTED = "expected a PCM WAV file (8-, 16-, 24- or 32-bit)"


@dataclass
class Waveform:
    """Mono samples as float32 in [-1, 1] (N,), and their sample rate in Hz."""

    samples: np.ndarray
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


class _BadAudio(Exception):
    """One unreadable file: `reason` is its short kind (a report key), `message` says what was
    found and what was expected (the caller prefixes the file)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _pcm_to_float(data: bytes, sample_width: int, channels: int) -> np.ndarray:
    """Little-endian PCM bytes -> (frames,) float32 mono in [-1, 1]."""
    if sample_width == 1:  # 8-bit WAV is unsigned, 128 is silence
        values = np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0
    elif sample_width == 3:  # no numpy dtype: put the 3 bytes at the top of an int32
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3)
        padded = np.zeros((len(raw), 4), dtype=np.uint8)
        padded[:, 1:] = raw
        values = (padded.view("<i4")[:, 0] >> 8).astype(np.float32)
    else:
        values = np.frombuffer(data, dtype=f"<i{sample_width}").astype(np.float32)
    values /= float(2 ** (8 * sample_width - 1))
    if channels > 1:
        values = values.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return values


def _wave_error(error: Exception) -> _BadAudio:
    """The `wave` module's error for a file it cannot read, as what was found and expected."""
    text = str(error)
    tag = re.fullmatch(r"unknown format: (\d+)", text)
    if tag:
        number = int(tag.group(1))
        name = _FORMAT_NAMES.get(number, "not PCM")
        return _BadAudio(
            "not PCM", f"format tag {number} ({name}); expected PCM WAV (format tag 1)"
        )
    if isinstance(error, (EOFError, struct.error)):
        return _BadAudio("truncated header", f"the header ends early; {_EXPECTED}")
    if "RIFF" in text or "WAVE" in text:
        return _BadAudio("not a WAV file", f"not a RIFF/WAVE file ({text}); {_EXPECTED}")
    return _BadAudio("bad WAV header", f"unreadable WAV header ({text}); {_EXPECTED}")


def _read_pcm(path: Path) -> Waveform:
    """The file's samples at its own rate, or _BadAudio saying what is wrong."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width = wav.getnchannels(), wav.getsampwidth()
            rate, frames = wav.getframerate(), wav.getnframes()
            data = wav.readframes(frames)
    except FileNotFoundError:
        raise _BadAudio("missing", f"no such file; {_EXPECTED}") from None
    except IsADirectoryError:
        raise _BadAudio("missing", f"a folder, not a file; {_EXPECTED}") from None
    except PermissionError:
        raise _BadAudio("unreadable", "permission denied; expected a readable WAV file") from None
    except (wave.Error, EOFError, struct.error) as error:
        raise _wave_error(error) from None
    if rate <= 0:
        raise _BadAudio("bad WAV header", f"sample rate {rate} Hz; {_EXPECTED} with a rate > 0")
    if width not in (1, 2, 3, 4):
        raise _BadAudio("bad WAV header", f"{8 * width}-bit samples; {_EXPECTED}")
    if frames == 0:
        raise _BadAudio("no frames", f"no audio frames (empty data chunk); {_EXPECTED}")
    got = len(data) // (width * channels)
    if got < frames:
        raise _BadAudio(
            "truncated data",
            f"truncated: the data chunk announces {frames} frames but the file holds {got}; "
            "expected a complete WAV file",
        )
    return Waveform(_pcm_to_float(data, width, channels), rate)


def _read_soundfile(path: Path) -> Waveform:
    """A FLAC/Ogg/AIFF file's samples at its own rate through soundfile, or _BadAudio saying what
    is wrong; without soundfile a UserError, which no `skip_bad` should swallow."""
    try:
        import soundfile  # optional: only these formats need it
    except (ImportError, OSError):  # OSError: the package is there but libsndfile is not
        raise UserError(
            f"{path}: {path.suffix} files are read through the optional soundfile package, "
            f"which is not installed; {INSTALL_SOUNDFILE} (or convert the files to PCM WAV)"
        ) from None
    expected = f"expected a readable {path.suffix.lstrip('.').upper()} file"
    if not path.exists():
        raise _BadAudio("missing", f"no such file; {expected}")
    if path.is_dir():
        raise _BadAudio("missing", f"a folder, not a file; {expected}")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except soundfile.SoundFileError as error:  # libsndfile's refusal, e.g. a damaged stream
        message = " ".join(str(error).split())  # one line
        reason = f"soundfile cannot read it ({message}); {expected}"
        raise _BadAudio("unreadable audio", reason) from None
    if len(samples) == 0:
        raise _BadAudio("no frames", f"no audio frames; {expected}")
    mono = samples.mean(axis=1, dtype=np.float32)  # (N,)
    return Waveform(np.clip(mono, -1.0, 1.0), int(rate))  # lossy codecs may overshoot


def _read_samples(path: Path) -> Waveform:
    """The file's samples at its own rate: soundfile for its suffixes, `wave` for the rest."""
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        return _read_soundfile(path)
    return _read_pcm(path)


def _read_at_rate(path: Path, sample_rate: int | None, allow_resample: bool = True) -> Waveform:
    """`_read_samples`, resampled to `sample_rate` (None: as stored), or refused when resampling
    is not allowed and the rates differ."""
    waveform = _read_samples(path)
    if sample_rate is None or waveform.sample_rate == sample_rate:
        return waveform
    if not allow_resample:
        raise _BadAudio(
            "other sample rate",
            f"sample rate {waveform.sample_rate} Hz, expected {sample_rate} Hz "
            "(features.sample_rate); set features.resample=true or resample the files",
        )
    return Waveform(resample(waveform.samples, waveform.sample_rate, sample_rate), sample_rate)


def read_wav(path: str | Path, sample_rate: int | None = None) -> Waveform:
    """A PCM WAV file (or FLAC, Ogg, AIFF with soundfile) as mono float32 in [-1, 1], resampled
    to `sample_rate` when that is given and differs; a bad file is a one-line UserError naming it
    and what was expected."""
    path = Path(path)
    try:
        return _read_at_rate(path, sample_rate)
    except _BadAudio as bad:
        raise UserError(f"{path}: {bad.message}") from None


def read_wavs(
    paths: Iterable[str | Path], sample_rate: int | None = None, skip_bad: bool = False
) -> tuple[list[tuple[Path, Waveform]], ReadReport]:
    """(path, waveform) of each readable file, and a report of the skipped ones. A bad file is a
    UserError (as `read_wav`) unless `skip_bad`, in which case it is counted by reason."""
    report = ReadReport()
    kept = []
    for name in paths:
        path = Path(name)
        try:
            kept.append((path, _read_at_rate(path, sample_rate)))
        except _BadAudio as bad:
            if not skip_bad:
                raise UserError(f"{path}: {bad.message}") from None
            report.skip(bad.reason)
    return kept, report


# ---------------------------------------------------------------------------------------------
# Listing a data set, and labels
# ---------------------------------------------------------------------------------------------


@dataclass
class AudioItem:
    """One audio file of a data set and its label (None where the source gives none)."""

    path: Path
    label: str | None = None


def list_wav_folder(folder: str | Path) -> list[AudioItem]:
    """Every audio file (.wav, and .flac/.ogg/.aiff for soundfile) under `folder` (recursive, any
    case of the suffix), sorted by path so the order never depends on the file system."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; expected a folder of .wav files")
    paths = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )
    if not paths:
        raise UserError(
            f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in it or its subfolders; "
            "expected .wav files"
        )
    return [AudioItem(p) for p in paths]


def read_list_file(path: str | Path) -> list[AudioItem]:
    """Items of a list file: one path per line, relative to the list file's folder (or absolute),
    optionally followed by a tab and a label. Blank lines and lines starting with # are skipped;
    a listed file that does not exist is a UserError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; expected a list of WAV paths, one per line")
    items = []
    for number, line in decoded_lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, tab, label = line.partition("\t")
        if tab and not label.strip():
            raise UserError(f"{path}:{number}: empty label after the tab; expected path<TAB>label")
        if "\t" in label:
            raise UserError(f"{path}:{number}: more than one tab; expected path<TAB>label")
        audio = path.parent / name.strip()
        if not audio.is_file():
            raise UserError(
                f"{path}:{number}: {audio} does not exist; expected a WAV path relative to "
                "the list file's folder"
            )
        items.append(AudioItem(audio, label.strip() if tab else None))
    if not items:
        raise UserError(f"{path}: no paths in it; expected one WAV path per line")
    return items


def list_audio(source: str | Path) -> list[AudioItem]:
    """The items of a data set: a folder of .wav files, or a list file (`read_list_file`)."""
    source = Path(source)
    return list_wav_folder(source) if source.is_dir() else read_list_file(source)


def name_fields(path: str | Path, pattern: str | re.Pattern[str]) -> dict[str, str]:
    """The named groups of `pattern` matched against the whole file name (not the folder), or a
    UserError naming the file and the pattern."""
    name = Path(path).name
    match = re.fullmatch(pattern, name)
    if match is None:
        shown = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        raise UserError(f"{path}: file name {name!r} does not match the label pattern {shown!r}")
    return match.groupdict()


def label_from_name(
    items: Iterable[AudioItem], pattern: str | re.Pattern[str], group: str
) -> list[AudioItem]:
    """The items labelled by the named group `group` of `pattern` in their file names."""
    compiled = re.compile(pattern)
    if group not in compiled.groupindex:
        names = ", ".join(compiled.groupindex) or "none"
        raise UserError(
            f"label pattern {compiled.pattern!r} has no group (?P<{group}>...); its groups: {names}"
        )
    return [AudioItem(item.path, name_fields(item.path, compiled)[group]) for item in items]


def read_label_csv(path: str | Path) -> dict[Path, str]:
    """{audio path: label} from a CSV of `path,label` rows (paths relative to the CSV's folder,
    an optional header row `path,label`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; expected a CSV of path,label rows")
    labels: dict[Path, str] = {}
    reader = csv.reader(line + "\n" for _, line in decoded_lines(path))
    for row in reader:
        number = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        if number == 1 and [c.lower() for c in cells] == ["path", "label"]:
            continue
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise UserError(f"{path}:{number}: {len(cells)} fields; expected path,label")
        labels[(path.parent / cells[0]).resolve()] = cells[1]
    if not labels:
        raise UserError(f"{path}: no rows; expected path,label rows")
    return labels


def label_from_csv(items: Iterable[AudioItem], csv_path: str | Path) -> list[AudioItem]:
    """The items labelled from a `path,label` CSV; an item the CSV does not list is a UserError."""
    labels = read_label_csv(csv_path)
    out = []
    for item in items:
        label = labels.get(item.path.resolve())
        if label is None:
            raise UserError(f"{csv_path}: no row for {item.path}; expected a label for every file")
        out.append(AudioItem(item.path, label))
    return out


# The Free Spoken Digit Dataset names each recording {digit}_{speaker}_{index}.wav.
FSDD_NAME_PATTERN = re.compile(r"(?P<digit>[0-9])_(?P<speaker>[a-z]+)_(?P<index>[0-9]+)\.wav")
FSDD_FOLDER = "fsdd"
FSDD_TEST_INDICES = range(5)  # FSDD's README: recordings 0-4 of each digit and speaker are test


@dataclass(frozen=True)
class FsddName:
    """What an FSDD file name says: the spoken digit, the speaker, the take."""

    digit: int
    speaker: str
    index: int


def fsdd_name(path: str | Path) -> FsddName:
    """Parse an FSDD file name, e.g. `3_jackson_12.wav` -> FsddName(3, "jackson", 12)."""
    fields = name_fields(path, FSDD_NAME_PATTERN)
    return FsddName(int(fields["digit"]), fields["speaker"], int(fields["index"]))


def fsdd_items(
    label: Literal["digit", "speaker"] = "digit",
    split: Literal["all", "train", "test"] = "all",
) -> list[AudioItem]:
    """The shared copy of FSDD (<shared data>/fsdd/recordings, 3,000 WAVs at 8 kHz) labelled by
    digit or speaker; `split` keeps FSDD's official train (takes 5-49) or test (takes 0-4) part."""
    if label not in ("digit", "speaker") or split not in ("all", "train", "test"):
        raise UserError(
            f"fsdd: label {label!r}, split {split!r}; expected label digit or speaker and split "
            "all, train or test"
        )
    folder = shared_set_path(FSDD_FOLDER, "the FSDD speech set") / "recordings"
    items = label_from_name(list_wav_folder(folder), FSDD_NAME_PATTERN, label)
    if split == "all":
        return items
    want_test = split == "test"
    return [
        item for item in items if (fsdd_name(item.path).index in FSDD_TEST_INDICES) == want_test
    ]


# ---------------------------------------------------------------------------------------------
# Log-mel features
# ---------------------------------------------------------------------------------------------


def hz_to_mel(hz: float | torch.Tensor) -> float | torch.Tensor:
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    if isinstance(hz, torch.Tensor):
        return 2595.0 * torch.log10(1.0 + hz / 700.0)
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: float | torch.Tensor) -> float | torch.Tensor:
    """Inverse of `hz_to_mel`."""
    if isinstance(mel, torch.Tensor):
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float
) -> torch.Tensor:
    """(M, F) float32 triangular filters on the HTK mel scale: band m rises linearly from edge m
    to a peak of 1 at edge m + 1 and falls to 0 at edge m + 2, the M + 2 edges evenly spaced in
    mel from fmin to fmax; FFT bin k sits at k * sample_rate / n_fft Hz."""
    edges = mel_to_hz(
        torch.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2, dtype=torch.float64)
    )
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft  # (F,)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1)
    rising = (bins - lower) / (center - lower)
    falling = (upper - bins) / (upper - center)
    return torch.minimum(rising, falling).clamp(min=0.0).to(torch.float32)


_WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window}


def num_frames(num_samples: int, cfg: LogMelConfig) -> int:
    """Frames of an utterance: those wholly inside it, at least one."""
    return 1 + max(0, num_samples - cfg.win_samples) // cfg.hop_samples


def normalize_utterance(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(T, M) -> (T, M) with zero mean and unit variance per band over the utterance's frames (a
    band of standard deviation below eps is only centred, not blown up)."""
    mean = features.mean(dim=0, keepdim=True)
    std = features.std(dim=0, unbiased=False, keepdim=True)
    return (features - mean) / std.clamp(min=eps)


@dataclass
class NormStats:
    """Per-band mean and standard deviation over the frames of a training set, for
    `normalize="global"` (fitted on training utterances only, so no test statistic leaks)."""

    mean: np.ndarray  # (M,) float64
    std: np.ndarray  # (M,) float64
    num_frames: int

    @classmethod
    def fit(cls, utterances: Iterable[np.ndarray | torch.Tensor]) -> NormStats:
        """Mean and variance streamed over (T, M) arrays, merged in float64 by Chan et al.'s
        pairwise update, so a large store never sits in memory and no sum of squares cancels."""
        count, mean, m2 = 0, None, None
        for utterance in utterances:
            if isinstance(utterance, torch.Tensor):
                x = utterance.detach().to(torch.float64).numpy()
            else:
                x = np.asarray(utterance, dtype=np.float64)
            if len(x) == 0:
                continue
            n_b, mean_b = len(x), x.mean(axis=0)
            m2_b = ((x - mean_b) ** 2).sum(axis=0)
            if mean is None or m2 is None:
                count, mean, m2 = n_b, mean_b, m2_b
                continue
            delta = mean_b - mean
            total = count + n_b
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta**2 * (count * n_b / total)
            count = total
        if mean is None or m2 is None:
            raise UserError("normalisation statistics: no frames to fit them on")
        return cls(mean, np.sqrt(m2 / count), count)

    def apply(self, features: np.ndarray | torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
        """(T, M) -> (T, M) float32 standardised with the fitted statistics."""
        if isinstance(features, torch.Tensor):
            x = features.to(torch.float32)
        else:  # a copy: a memory-mapped store is read-only
            x = torch.from_numpy(np.array(features, dtype=np.float32))
        mean = torch.as_tensor(self.mean, dtype=torch.float32)
        std = torch.as_tensor(self.std, dtype=torch.float32).clamp(min=eps)
        return (x - mean) / std

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "num_frames": self.num_frames}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormStats:
        return cls(np.asarray(data["mean"]), np.asarray(data["std"]), int(data["num_frames"]))


def log_mel(
    samples: np.ndarray | torch.Tensor, cfg: LogMelConfig, stats: NormStats | None = None
) -> torch.Tensor:
    """(N,) mono samples at cfg.sample_rate -> (T, M) float32 log-mel features.

    Normalised per utterance when cfg.normalize is "utterance"; with "global", by `stats` when
    given (raw otherwise, as the feature store keeps them); raw with "none".
    """
    x = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)  # (N,)
    if cfg.pre_emphasis > 0.0 and len(x) > 1:
        x = torch.cat([x[:1], x[1:] - cfg.pre_emphasis * x[:-1]])
    win, hop, n_fft = cfg.win_samples, cfg.hop_samples, cfg.fft_size
    if len(x) < win:  # shorter than one frame: one zero-padded frame
        x = torch.nn.functional.pad(x, (0, win - len(x)))
    # A window of `win` samples zero-padded at its end to n_fft, over a signal padded by the same
    # n_fft - win: frame t is samples [t*hop, t*hop + win) then zeros, as when framing by hand.
    x = torch.nn.functional.pad(x, (0, n_fft - win))
    window = torch.nn.functional.pad(_WINDOWS[cfg.window](win, periodic=True), (0, n_fft - win))
    spectrum = torch.stft(
        x,
        n_fft,
        hop_length=hop,
        win_length=n_fft,
        window=window,
        center=False,
        return_complex=True,
    )  # (F, T)
    power = spectrum.real**2 + spectrum.imag**2  # (F, T)
    mel = cfg.filterbank() @ power  # (M, T)
    features = torch.log(mel + cfg.log_floor).T.contiguous()  # (T, M)
    if cfg.normalize == "utterance":
        return normalize_utterance(features)
    if cfg.normalize == "global" and stats is not None:
        return stats.apply(features)
    return features


# ---------------------------------------------------------------------------------------------
# Feature store
# ---------------------------------------------------------------------------------------------

FORMAT_NAME = "selfsup-audio-features"
FORMAT_VERSION = 1
FEATURES_FILE = "features.bin"
OFFSETS_FILE = "offsets.npy"
META_FILE = "meta.json"
STORE_DTYPES = ("float16", "float32")


def _source(item: AudioItem) -> dict[str, Any]:
    """What identifies a file's contents cheaply: its path, size and modification time (in ns,
    so a rewrite within the same second still counts), and the label it was given."""
    path = item.path.resolve()
    try:
        info = path.stat()
        size, mtime = info.st_size, info.st_mtime_ns
    except OSError:  # missing: the build reads it as a bad file
        size, mtime = -1, -1
    return {"path": str(path), "size": size, "mtime_ns": mtime, "label": item.label}


def _as_saved(value: Any) -> Any:
    """A value as it reads back from meta.json (tuples as lists, no numpy scalars)."""
    return json.loads(json.dumps(value))


def _load_meta(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise UserError(f"{directory}: no such folder; expected an audio feature store")
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise UserError(
            f"{directory}: not a feature store, {META_FILE} is missing (an interrupted build "
            "leaves none); build it again"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{meta_path}: unreadable ({error}); expected feature store JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise UserError(f'{meta_path}: expected "format": "{FORMAT_NAME}"')
    if meta.get("version") != FORMAT_VERSION:
        raise UserError(
            f"{meta_path}: format version {meta.get('version')}, expected {FORMAT_VERSION}; "
            "build it again with this selfsup"
        )
    return meta


class FeatureStore:
    """Log-mel features of a list of files, memory-mapped (module docstring: the layout).

    `features` is (num_frames, n_mels); utterance i is rows offsets[i]:offsets[i + 1]. `paths` and
    `labels` are per stored utterance; `report` counts the files skipped as bad. `reused` says
    whether the last `cached_feature_store` call opened it as it was, and `built_because` why it
    was (re)computed otherwise.
    """

    def __init__(
        self, directory: Path, meta: dict[str, Any], features: np.ndarray, offsets: np.ndarray
    ) -> None:
        self.directory = directory
        self.meta = meta
        self.features = features  # (num_frames, n_mels) float16/float32
        self.offsets = offsets  # (num_utterances + 1,) int64
        self.config = from_dict(LogMelConfig, meta["config"], str(directory / META_FILE))
        sources = meta["sources"]
        self.paths = [Path(sources[i]["path"]) for i in meta["kept"]]
        self.labels: list[str | None] = [sources[i]["label"] for i in meta["kept"]]
        self.report = ReadReport()
        for reason, count in meta["skipped"].items():
            self.report.skip(reason, count)
        self.reused = False
        self.built_because: str | None = None

    @classmethod
    def open(cls, directory: str | Path) -> FeatureStore:
        directory = Path(directory)
        meta = _load_meta(directory)
        num_frames_, n_mels = int(meta["num_frames"]), int(meta["n_mels"])
        dtype = np.dtype(meta["dtype"])
        path = directory / FEATURES_FILE
        expected = num_frames_ * n_mels * dtype.itemsize
        if not path.is_file() or path.stat().st_size != expected:
            size = path.stat().st_size if path.is_file() else "no"
            raise UserError(f"{path}: {size} bytes, expected {expected}; build the store again")
        features = np.memmap(path, dtype=dtype, mode="r", shape=(num_frames_, n_mels))
        offsets = np.load(directory / OFFSETS_FILE, mmap_mode="r")
        num_utterances = int(meta["num_utterances"])
        if offsets.shape != (num_utterances + 1,) or int(offsets[-1]) != num_frames_:
            raise UserError(
                f"{directory / OFFSETS_FILE}: shape {offsets.shape}, expected "
                f"({num_utterances + 1},) ending at {num_frames_}; build the store again"
            )
        return cls(directory, meta, features, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    def utterance(self, i: int) -> np.ndarray:
        """(T, M) features of utterance i, a view into the memory map (stored dtype)."""
        if not 0 <= i < len(self):
            raise IndexError(f"utterance {i} out of range [0, {len(self)})")
        return self.features[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def tensor(self, i: int, stats: NormStats | None = None) -> torch.Tensor:
        """(T, M) float32 features of utterance i, standardised by `stats` when given."""
        if stats is not None:
            return stats.apply(self.utterance(i))
        return torch.from_numpy(np.array(self.utterance(i), dtype=np.float32))

    def lengths(self) -> np.ndarray:
        """(num_utterances,) int64 frames per utterance."""
        return np.diff(np.asarray(self.offsets))

    def norm_stats(self, indices: Sequence[int] | None = None) -> NormStats:
        """Global normalisation statistics over the utterances `indices` (the training part;
        None: all)."""
        chosen = range(len(self)) if indices is None else indices
        return NormStats.fit(self.utterance(i) for i in chosen)

    def __repr__(self) -> str:
        return (
            f"FeatureStore({str(self.directory)!r}, utterances={len(self)}, "
            f"frames={self.num_frames}, n_mels={self.meta['n_mels']}, dtype={self.meta['dtype']})"
        )


def _wanted(
    items: Sequence[AudioItem], cfg: LogMelConfig, skip_bad: bool, dtype: str
) -> dict[str, Any]:
    """The part of meta.json that decides whether a store can be reused."""
    return _as_saved(
        {
            "config": to_dict(cfg),
            "dtype": dtype,
            "skip_bad": skip_bad,
            "sources": [_source(item) for item in items],
        }
    )


def _why_stale(directory: Path, wanted: dict[str, Any]) -> str | None:
    """Why the store at `directory` cannot serve `wanted` (None: it can)."""
    if not (directory / META_FILE).is_file():
        return "no store there yet"
    try:
        meta = _load_meta(directory)
    except UserError as error:
        return str(error)
    for key in ("config", "dtype", "skip_bad"):
        if meta.get(key) != wanted[key]:
            return f"{key} changed"
    saved, now = meta.get("sources", []), wanted["sources"]
    if len(saved) != len(now):
        return f"{len(now)} files listed, {len(saved)} stored"
    changed = [new["path"] for old, new in zip(saved, now) if old != new]
    if changed:
        return f"{len(changed)} files changed or relabelled (first: {changed[0]})"
    return None


def _check_store_args(items: Sequence[AudioItem], cfg: LogMelConfig, dtype: str) -> None:
    cfg.validate()
    if dtype not in STORE_DTYPES:
        raise UserError(f"feature store dtype {dtype!r}: expected one of {', '.join(STORE_DTYPES)}")
    if not items:
        raise UserError("feature store: no audio files listed; expected at least one WAV file")


def build_feature_store(
    items: Sequence[AudioItem],
    directory: str | Path,
    cfg: LogMelConfig,
    *,
    skip_bad: bool = False,
    dtype: str = "float16",
) -> FeatureStore:
    """Compute the features of every item into a store at `directory` (created or overwritten),
    one file at a time, so memory holds one utterance whatever the data set's size. A bad file is
    a UserError naming it, unless `skip_bad` (then counted in the store's report)."""
    _check_store_args(items, cfg, dtype)
    directory = Path(directory)
    check_writable_folder(directory)
    wanted = _wanted(items, cfg, skip_bad, dtype)
    directory.mkdir(parents=True, exist_ok=True)
    # An old meta.json would vouch for a features file about to be overwritten: remove it first.
    (directory / META_FILE).unlink(missing_ok=True)
    np_dtype = np.dtype(dtype)
    report = ReadReport()
    kept: list[int] = []
    skipped_files: list[dict[str, str]] = []
    offsets = [0]
    with open(directory / FEATURES_FILE, "wb") as out:
        for index, item in enumerate(items):
            try:
                waveform = _read_at_rate(item.path, cfg.sample_rate, cfg.resample)
            except _BadAudio as bad:
                if not skip_bad:
                    raise UserError(f"{item.path}: {bad.message}") from None
                report.skip(bad.reason)
                skipped_files.append({"path": str(item.path), "reason": bad.message})
                continue
            features = log_mel(waveform.samples, cfg)  # (T, M); raw when normalize="global"
            out.write(features.numpy().astype(np_dtype).tobytes())
            offsets.append(offsets[-1] + len(features))
            kept.append(index)
        out.flush()
        os.fsync(out.fileno())
    if not kept:
        raise UserError(
            f"{directory}: all {len(items)} files were unreadable ({dict(report.reasons)}); "
            "expected at least one PCM WAV file"
        )
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(offsets, dtype=np.int64))
    atomic_write_bytes(directory / OFFSETS_FILE, buffer.getvalue())
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "n_mels": cfg.n_mels,
        "num_frames": offsets[-1],
        "num_utterances": len(kept),
        **wanted,
        "kept": kept,
        "skipped": dict(report.reasons),
        "skipped_files": skipped_files,
    }
    atomic_write_json(directory / META_FILE, meta)
    return FeatureStore.open(directory)


def cached_feature_store(
    items: Sequence[AudioItem],
    directory: str | Path,
    cfg: LogMelConfig,
    *,
    skip_bad: bool = False,
    dtype: str = "float16",
) -> FeatureStore:
    """The store at `directory` when it was built from the same files (paths, sizes,
    modification times, labels), config, dtype and `skip_bad`; else built anew (the reason in
    `built_because`). Checking costs one stat per file, no audio is read."""
    _check_store_args(items, cfg, dtype)
    directory = Path(directory)
    stale = _why_stale(directory, _wanted(items, cfg, skip_bad, dtype))
    if stale is None:
        store = FeatureStore.open(directory)
        store.reused = True
        return store
    store = build_feature_store(items, directory, cfg, skip_bad=skip_bad, dtype=dtype)
    store.built_because = stale
    return store
