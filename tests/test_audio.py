"""Audio input: WAV reading, resampling, data set lists and labels, log-mel features checked
against an independent numpy computation, normalisation, and the cached feature store."""

from __future__ import annotations

import math
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from speech_helpers import write_wav

from selfsup.data import audio
from selfsup.data.audio import AudioItem, LogMelConfig
from selfsup.data.sources import SHARED_SETS, shared_data_dir
from selfsup.errors import UserError

# --- helpers ------------------------------------------------------------------------------------


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)


def write_tone(path: Path, freq: float, seconds: float = 0.3, rate: int = 8000) -> Path:
    return write_wav(path, np.round(tone(freq, seconds, rate) * 32767).astype(np.int16), rate=rate)


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for word in words:
        assert word in message, message


# --- reading ------------------------------------------------------------------------------------


def test_16_bit_pcm_reads_back_exactly(tmp_path):
    values = np.array([0, 1, -1, 1000, 32767, -32768], dtype=np.int16)
    wav = audio.read_wav(write_wav(tmp_path / "a.wav", values, rate=16000))
    assert wav.sample_rate == 16000 and wav.samples.dtype == np.float32
    np.testing.assert_array_equal(wav.samples, values / 32768.0)  # exact: powers of two


def test_8_bit_pcm_is_unsigned_around_128(tmp_path):
    wav = audio.read_wav(write_wav(tmp_path / "a.wav", np.array([0, 128, 255, 64]), width=1))
    np.testing.assert_array_equal(wav.samples, [-1.0, 0.0, 127 / 128, -0.5])


@pytest.mark.parametrize("width", [3, 4])
def test_24_and_32_bit_pcm(tmp_path, width):
    top = 2 ** (8 * width - 1)
    values = np.array([0, 1, -1, top - 1, -top, top // 2])
    wav = audio.read_wav(write_wav(tmp_path / "a.wav", values, width=width))
    np.testing.assert_allclose(wav.samples, values / top, rtol=1e-7, atol=0)


def test_stereo_is_mixed_down_to_the_mean_of_the_channels(tmp_path):
    frames = np.array([[1000, 3000], [-2000, 0], [32767, 32767], [-32768, 32767]], dtype=np.int16)
    wav = audio.read_wav(write_wav(tmp_path / "a.wav", frames))
    np.testing.assert_allclose(wav.samples, frames.mean(axis=1) / 32768.0, atol=1e-7)
    assert wav.samples.shape == (4,)


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Broken files, each with a word its error message must contain."""
    good = write_tone(tmp_path / "good.wav", 440.0).read_bytes()
    files = {
        "garbage": (b"this is a text file, not audio at all", "RIFF"),
        "riff but not wave": (b"RIFF\x10\x00\x00\x00AVI LIST\x00\x00\x00\x00", "WAVE"),
        "empty": (b"", "header"),
        "header cut": (good[:30], "header"),
        "data cut": (good[: len(good) // 2], "truncated"),
        "float": (good[:20] + struct.pack("<H", 3) + good[22:], "IEEE float"),
        "a-law": (good[:20] + struct.pack("<H", 6) + good[22:], "A-law"),
    }
    out = {}
    for name, (data, word) in files.items():
        path = tmp_path / "bad" / (name.replace(" ", "_") + ".wav")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        out[name] = (path, word)
    out["no frames"] = (write_wav(tmp_path / "bad" / "silent.wav", np.zeros(0)), "no audio frames")
    return out


def test_bad_files_are_one_line_errors_naming_the_file_and_what_was_expected(tmp_path):
    for path, word in _bad_files(tmp_path).values():
        with pytest.raises(UserError) as error:
            audio.read_wav(path)
        assert_one_line_naming(error, path, word, "expected")
    with pytest.raises(UserError) as error:
        audio.read_wav(tmp_path / "absent.wav")
    assert_one_line_naming(error, tmp_path / "absent.wav", "no such file")


def test_skip_bad_counts_and_skips_bad_files(tmp_path):
    bad = _bad_files(tmp_path)
    good = tmp_path / "good.wav"
    paths = [good, *(path for path, _ in bad.values()), good]
    with pytest.raises(UserError, match="garbage.wav"):
        audio.read_wavs(paths)
    kept, report = audio.read_wavs(paths, skip_bad=True)
    assert [path for path, _ in kept] == [good, good]
    assert report.skipped == len(bad) == sum(report.reasons.values())
    assert report.reasons["not PCM"] == 2 and report.reasons["truncated data"] == 1


def _soundfile():
    return pytest.importorskip(
        "soundfile", reason='FLAC input needs the optional soundfile: pip install "selfsup[audio]"'
    )


def test_flac_reads_as_the_same_samples_written_as_wav(tmp_path):
    soundfile = _soundfile()
    frames = np.round(tone(440.0, 0.2, 16000)[:, None] * [32767, -16000]).astype(np.int16)
    soundfile.write(tmp_path / "a.flac", frames, 16000, subtype="PCM_16")
    flac = audio.read_wav(tmp_path / "a.flac")
    wav = audio.read_wav(write_wav(tmp_path / "a.wav", frames, rate=16000))
    assert flac.sample_rate == wav.sample_rate == 16000 and flac.samples.dtype == np.float32
    np.testing.assert_array_equal(flac.samples, wav.samples)  # lossless, and scaled alike
    resampled = audio.read_wav(tmp_path / "a.flac", sample_rate=8000)
    np.testing.assert_array_equal(
        resampled.samples, audio.read_wav(tmp_path / "a.wav", 8000).samples
    )
    listed = audio.list_audio(tmp_path)
    assert [item.path.name for item in listed] == ["a.flac", "a.wav"]


def test_a_bad_flac_is_a_one_line_error_or_skipped(tmp_path):
    _soundfile()
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC but not really a stream")
    with pytest.raises(UserError) as error:
        audio.read_wav(bad)
    assert_one_line_naming(error, bad, "soundfile cannot read it", "expected a readable FLAC")
    with pytest.raises(UserError) as error:
        audio.read_wav(tmp_path / "absent.flac")
    assert_one_line_naming(error, tmp_path / "absent.flac", "no such file")
    kept, report = audio.read_wavs([bad, write_tone(tmp_path / "good.wav", 300.0)], skip_bad=True)
    assert len(kept) == 1 and report.reasons == {"unreadable audio": 1}


def test_without_soundfile_a_flac_says_how_to_install_it_even_with_skip_bad(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile -> ImportError
    path = tmp_path / "a.flac"
    path.write_bytes(b"")
    for read in (lambda: audio.read_wav(path), lambda: audio.read_wavs([path], skip_bad=True)):
        with pytest.raises(UserError) as error:
            read()
        assert_one_line_naming(error, path, "soundfile", 'pip install "selfsup[audio]"')
    wav = write_tone(tmp_path / "b.wav", 300.0)
    assert audio.read_wav(wav).sample_rate == 8000  # WAV never needs it


# --- resampling ---------------------------------------------------------------------------------


def test_resampling_keeps_the_speech_band_and_removes_what_would_alias():
    x = tone(440.0, 1.0, 16000, 0.3) + tone(3000.0, 1.0, 16000, 0.3)
    y = audio.resample(x, 16000, 8000)
    assert y.dtype == np.float32 and len(y) == 8000
    expected = tone(440.0, 1.0, 8000, 0.3) + tone(3000.0, 1.0, 8000, 0.3)
    # away from the edges (the signal is zero outside), within 1e-4 of the ideal band-limited
    # result: the filter passes 0.85 of the new Nyquist frequency within 1e-5
    np.testing.assert_allclose(y[200:-200], expected[200:-200], atol=1e-4)
    # a 6 kHz tone is above the new 4 kHz Nyquist frequency: linear interpolation would fold it
    # onto 2 kHz at full strength; the anti-aliasing filter leaves less than -60 dB of it
    aliased = audio.resample(tone(6000.0, 1.0, 16000, 0.5), 16000, 8000)
    assert np.sqrt(np.mean(aliased[200:-200] ** 2)) < 0.5 / math.sqrt(2) * 1e-3
    # upsampling a band-limited tone gives the tone at the new rate; odd ratios reduce by the gcd
    up = audio.resample(tone(1000.0, 0.5, 8000), 8000, 22050)
    assert len(up) == math.ceil(4000 * 22050 / 8000)
    np.testing.assert_allclose(up[500:-500], tone(1000.0, 0.5, 22050)[500:-500], atol=1e-4)


def test_read_wav_resamples_to_the_rate_asked_for(tmp_path):
    path = write_tone(tmp_path / "a.wav", 500.0, seconds=0.25, rate=16000)
    wav = audio.read_wav(path, sample_rate=8000)
    assert wav.sample_rate == 8000 and len(wav.samples) == 2000
    assert np.abs(wav.samples).max() <= 1.0


# --- listing and labels -------------------------------------------------------------------------


def test_the_fsdd_rule_parses_digit_speaker_and_take():
    assert audio.fsdd_name("3_jackson_12.wav") == audio.FsddName(3, "jackson", 12)
    assert audio.fsdd_name(Path("some/where/0_yweweler_49.wav")).speaker == "yweweler"
    with pytest.raises(UserError, match=r"jackson_3\.wav.*does not match the label pattern"):
        audio.fsdd_name("jackson_3.wav")
    items = [AudioItem(Path("r/3_jackson_12.wav")), AudioItem(Path("r/7_theo_0.wav"))]
    labelled = audio.label_from_name(items, audio.FSDD_NAME_PATTERN, "speaker")
    assert [item.label for item in labelled] == ["jackson", "theo"]
    with pytest.raises(UserError, match=r"no group \(\?P<accent>"):
        audio.label_from_name(items, audio.FSDD_NAME_PATTERN, "accent")


def test_a_folder_is_listed_recursively_and_sorted(tmp_path):
    for name in ["b/2.wav", "a/1.WAV", "c.wav", "notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    items = audio.list_audio(tmp_path)
    assert [item.path.relative_to(tmp_path).as_posix() for item in items] == [
        "a/1.WAV",
        "b/2.wav",
        "c.wav",
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no audio files \(.wav, .flac"):
        audio.list_audio(tmp_path / "empty")


def test_a_list_file_is_relative_to_itself_with_optional_labels(tmp_path):
    write_tone(tmp_path / "data" / "x.wav", 300.0)
    write_tone(tmp_path / "data" / "sub" / "y.wav", 300.0)
    listing = tmp_path / "data" / "list.txt"
    listing.write_text("# a comment\nx.wav\tyes\n\nsub/y.wav\n", encoding="utf-8")
    items = audio.list_audio(listing)
    assert items == [
        AudioItem(tmp_path / "data" / "x.wav", "yes"),
        AudioItem(tmp_path / "data" / "sub" / "y.wav", None),
    ]
    listing.write_text("x.wav\nmissing.wav\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"list\.txt:2: .*missing\.wav does not exist"):
        audio.list_audio(listing)


def test_labels_from_a_csv(tmp_path):
    items = [AudioItem(write_tone(tmp_path / n, 300.0)) for n in ("a.wav", "b.wav")]
    (tmp_path / "labels.csv").write_text("path,label\na.wav,cat\nb.wav,dog\n", encoding="utf-8")
    labelled = audio.label_from_csv(items, tmp_path / "labels.csv")
    assert [item.label for item in labelled] == ["cat", "dog"]
    (tmp_path / "labels.csv").write_text("a.wav,cat\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"labels\.csv: no row for .*b\.wav"):
        audio.label_from_csv(items, tmp_path / "labels.csv")


# --- log-mel features ---------------------------------------------------------------------------


def numpy_log_mel(
    x: np.ndarray,
    rate: int,
    win: int,
    hop: int,
    n_fft: int,
    n_mels: int,
    window: str,
    pre_emphasis: float,
    floor: float,
) -> tuple[np.ndarray, ...]:
    """The log-mel recipe written out in float64 numpy, sharing no code with selfsup: framing by
    slicing, the window and the mel triangles from their formulas, loop by loop. Returns (log-mel
    (T, M), mel power (T, M), frame norms (T,), filter weight sums (M,), band edges in Hz)."""
    x = x.astype(np.float64)
    if pre_emphasis:
        x = np.concatenate([x[:1], x[1:] - pre_emphasis * x[:-1]])
    a = 0.5 if window == "hann" else 0.54
    w = a - (1 - a) * np.cos(2 * np.pi * np.arange(win) / win)  # periodic
    frames = np.stack([x[t * hop : t * hop + win] * w for t in range(1 + (len(x) - win) // hop)])
    power = np.abs(np.fft.rfft(frames, n=n_fft)) ** 2
    mel_points = np.linspace(0.0, 2595 * np.log10(1 + rate / 2 / 700), n_mels + 2)
    edges = 700 * (10 ** (mel_points / 2595) - 1)
    bank = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        low, mid, high = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * rate / n_fft
            if low < f <= mid:
                bank[m, k] = (f - low) / (mid - low)
            elif mid < f < high:
                bank[m, k] = (high - f) / (high - mid)
    mel = power @ bank.T
    return np.log(mel + floor), mel, np.linalg.norm(frames, axis=1), bank.sum(axis=1), edges


@pytest.mark.parametrize("window,pre_emphasis", [("hann", 0.0), ("hamming", 0.97)])
def test_log_mel_of_a_tone_matches_an_independent_numpy_computation(window, pre_emphasis):
    rng = np.random.default_rng(0)
    x = (tone(1000.0, 0.5, 8000) + 0.01 * rng.standard_normal(4000)).astype(np.float32)
    cfg = LogMelConfig(sample_rate=8000, window=window, pre_emphasis=pre_emphasis, normalize="none")
    assert (cfg.win_samples, cfg.hop_samples, cfg.fft_size) == (200, 80, 256)
    got = audio.log_mel(x, cfg).numpy().astype(np.float64)
    ref, mel, norms, weights, _ = numpy_log_mel(
        x, 8000, 200, 80, 256, 40, window, pre_emphasis, cfg.log_floor
    )
    assert got.shape == ref.shape == (48, 40)
    # Tolerance from float32 rounding: a float32 FFT errs by about eps * log2(n_fft) * |frame|
    # per bin (eps = 2^-23); through the mel sum (Cauchy-Schwarz with weights <= 1) the mel power
    # errs by at most 2 * that * sqrt(W_m * p_m), and log(p + floor) turns it into
    # 2 * eps * log2(n_fft) * |frame| * sqrt(W_m * p_m) / (p_m + floor), largest near the floor;
    # plus eps * |log| for the float32 log itself. The measured error is under 0.4 of this.
    eps = float(np.finfo(np.float32).eps)
    bound = 2 * eps * math.log2(256) * norms[:, None] * np.sqrt(weights * mel) / (mel + 1e-6)
    bound += eps * np.abs(ref)
    assert np.all(np.abs(got - ref) <= bound), np.max(np.abs(got - ref) / bound)


def test_the_energy_of_a_1_khz_tone_peaks_in_the_band_around_1_khz():
    cfg = LogMelConfig(sample_rate=8000, normalize="none")
    features = audio.log_mel(tone(1000.0, 0.5, 8000), cfg)
    edges = numpy_log_mel(np.zeros(400), 8000, 200, 80, 256, 40, "hann", 0.0, 1e-6)[4]
    peak = int(features.mean(dim=0).argmax())
    assert edges[peak] < 1000.0 < edges[peak + 2]  # the triangle of the peak band holds 1 kHz
    assert peak == int(np.argmin(np.abs(edges[1:-1] - 1000.0)))  # and its centre is nearest


def test_per_utterance_normalisation_gives_zero_mean_and_unit_variance_per_band():
    x = np.random.default_rng(1).uniform(-0.5, 0.5, 8000)
    features = audio.log_mel(x, LogMelConfig(sample_rate=8000))
    assert features.shape == (audio.num_frames(8000, LogMelConfig(sample_rate=8000)), 40)
    torch.testing.assert_close(features.mean(dim=0), torch.zeros(40), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        features.std(dim=0, unbiased=False), torch.ones(40), atol=1e-4, rtol=0
    )


def test_global_statistics_are_those_of_all_training_frames():
    cfg = LogMelConfig(sample_rate=8000, normalize="global")
    rng = np.random.default_rng(2)
    utterances = [
        audio.log_mel(rng.uniform(-a, a, n), cfg)
        for a, n in ((0.1, 1000), (0.5, 3000), (0.9, 2000))
    ]
    stats = audio.NormStats.fit(utterances)
    frames = torch.cat(utterances).double()
    assert stats.num_frames == len(frames)
    np.testing.assert_allclose(stats.mean, frames.mean(0).numpy(), rtol=1e-10)
    np.testing.assert_allclose(stats.std, frames.std(0, unbiased=False).numpy(), rtol=1e-9)
    standardised = torch.cat([stats.apply(u) for u in utterances])
    torch.testing.assert_close(standardised.mean(0), torch.zeros(40), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        standardised.std(0, unbiased=False), torch.ones(40), atol=1e-5, rtol=0
    )
    assert audio.NormStats.from_dict(stats.to_dict()).std.tolist() == stats.std.tolist()


def test_an_utterance_shorter_than_a_window_gives_one_frame():
    assert audio.log_mel(np.full(50, 0.1), LogMelConfig(sample_rate=8000)).shape == (1, 40)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"n_mels": 128}, r"mel band 0 gets no FFT bin at n_fft=256"),
        ({"fmax": 5000.0}, r"fmax <= sample_rate / 2 = 4000 Hz"),
        ({"n_fft": 128}, r"n_fft=128 is shorter than the window \(200 samples\)"),
        ({"pre_emphasis": 1.0}, r"pre_emphasis must be in \[0, 1\)"),
        ({"log_floor": 0.0}, r"log_floor must be > 0"),
    ],
)
def test_config_mistakes_are_one_line_errors(changes, message):
    with pytest.raises(UserError, match=message) as error:
        LogMelConfig(sample_rate=8000, **changes).validate()
    assert "\n" not in str(error.value)


# --- feature store ------------------------------------------------------------------------------


def _items(tmp_path: Path) -> list[AudioItem]:
    return [
        AudioItem(write_tone(tmp_path / "wav" / f"{i}_x_0.wav", f, 0.2 + 0.05 * i), str(i))
        for i, f in enumerate((300.0, 700.0, 1500.0))
    ]


def test_the_store_holds_each_files_features_and_labels(tmp_path):
    items = _items(tmp_path)
    cfg = LogMelConfig(sample_rate=8000)
    store = audio.cached_feature_store(items, tmp_path / "store", cfg, dtype="float32")
    assert not store.reused and store.built_because == "no store there yet"
    assert len(store) == 3 and store.labels == ["0", "1", "2"]
    assert store.paths == [item.path.resolve() for item in items]
    for i, item in enumerate(items):
        expected = audio.log_mel(audio.read_wav(item.path).samples, cfg)
        torch.testing.assert_close(store.tensor(i), expected)
    assert store.num_frames == int(store.lengths().sum()) == store.features.shape[0]
    half = audio.build_feature_store(items, tmp_path / "half", cfg)  # float16: 2^-11 relative
    assert half.features.dtype == np.float16
    np.testing.assert_allclose(half.features, store.features, rtol=2**-11, atol=1e-6)


def test_the_store_reopens_without_recomputing_and_recomputes_when_a_file_changes(
    tmp_path, monkeypatch
):
    items = _items(tmp_path)
    cfg = LogMelConfig(sample_rate=8000)
    first = audio.cached_feature_store(items, tmp_path / "store", cfg)
    frames = first.num_frames

    def no_features(*args, **kwargs):
        raise AssertionError("features recomputed")

    with monkeypatch.context() as patch:
        patch.setattr(audio, "log_mel", no_features)
        again = audio.cached_feature_store(items, tmp_path / "store", cfg)
        assert again.reused and again.num_frames == frames
        # a new label, a new setting: recomputed (and here the patched function says so)
        relabelled = [AudioItem(items[0].path, "other"), *items[1:]]
        with pytest.raises(AssertionError, match="recomputed"):
            audio.cached_feature_store(relabelled, tmp_path / "store", cfg)
    audio.cached_feature_store(items, tmp_path / "store", cfg)  # meta.json was removed: rebuild
    changed = write_tone(items[1].path, 700.0, seconds=1.0)
    os.utime(changed, ns=(1, 1))  # a modification time unlike any the store recorded
    rebuilt = audio.cached_feature_store(items, tmp_path / "store", cfg)
    assert not rebuilt.reused and "1_x_0.wav" in (rebuilt.built_because or "")
    assert rebuilt.num_frames > frames
    other = audio.cached_feature_store(items, tmp_path / "store", LogMelConfig(8000, n_mels=20))
    assert other.built_because == "config changed" and other.features.shape[1] == 20


def test_the_store_skips_bad_files_only_when_asked(tmp_path):
    items = _items(tmp_path)
    garbage = tmp_path / "wav" / "garbage.wav"
    garbage.write_bytes(b"not audio")
    other_rate = write_tone(tmp_path / "wav" / "fast.wav", 300.0, rate=16000)
    listed = [items[0], AudioItem(garbage, "g"), items[1], AudioItem(other_rate, "f")]
    cfg = LogMelConfig(sample_rate=8000, resample=False)
    with pytest.raises(UserError) as error:
        audio.cached_feature_store(listed, tmp_path / "store", cfg)
    assert_one_line_naming(error, garbage, "RIFF")
    store = audio.cached_feature_store(listed, tmp_path / "store", cfg, skip_bad=True)
    assert store.labels == ["0", "1"] and store.report.skipped == 2
    assert dict(store.report.reasons) == {"not a WAV file": 1, "other sample rate": 1}
    assert "16000 Hz, expected 8000 Hz" in store.meta["skipped_files"][1]["reason"]
    resampled = audio.cached_feature_store(listed[2:], tmp_path / "r", LogMelConfig(8000))
    assert len(resampled) == 2 and resampled.report.skipped == 0


# --- the shared FSDD copy -----------------------------------------------------------------------

FSDD = (shared_data_dir() or Path("/nonexistent")) / "fsdd" / "recordings"
needs_fsdd = pytest.mark.skipif(
    not FSDD.is_dir(),
    reason="needs ../shared/data/fsdd/recordings (Free Spoken Digit Dataset); absent here",
)


@needs_fsdd
def test_fsdd_lists_3000_labelled_recordings_and_builds_features(tmp_path):
    items = audio.fsdd_items()
    assert len(items) == 3000
    assert sorted({item.label for item in items}) == [str(d) for d in range(10)]
    assert all(sum(item.label == str(d) for item in items) == 300 for d in range(10))
    speakers = audio.fsdd_items(label="speaker", split="test")
    assert len(speakers) == 300 and len({item.label for item in speakers}) == 6
    assert len(audio.fsdd_items(split="train")) == 2700
    sample = items[::150]  # 20 files across digits and speakers
    cfg = audio.fsdd_log_mel_config()
    store = audio.cached_feature_store(sample, tmp_path / "fsdd", cfg)
    lengths = [len(audio.read_wav(item.path).samples) for item in sample]
    assert store.lengths().tolist() == [audio.num_frames(n, cfg) for n in lengths]
    assert store.labels == [item.label for item in sample] and store.report.skipped == 0


def test_a_missing_fsdd_says_where_it_comes_from(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path))
    with pytest.raises(UserError) as error:
        audio.fsdd_items()
    message = str(error.value)
    assert "\n" not in message and "fsdd/" in message and SHARED_SETS["fsdd"] in message
