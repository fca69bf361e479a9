"""The speech probe (selfsup/evaluation/audio_probe.py), `selfsup probe` on a TERA run and the
`speech` experiment, on synthetic FSDD-named WAVs written here (tones whose pitch says the digit
and whose harmonics say the speaker), so they run without the real data set."""

from __future__ import annotations

import dataclasses
import json
import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.cli import main
from selfsup.data.frames import UtteranceSplit
from selfsup.errors import UserError
from selfsup.evaluation.audio_probe import (
    digit_task,
    encoder_features,
    parse_layer,
    pooled_layer_features,
    speaker_task,
)
from selfsup.evaluation.probe import few_label_indices
from selfsup.experiments import speech
from selfsup.models.acoustic import AcousticEncoder
from selfsup.recipes import load_run
from selfsup.recipes.audio import PRESETS, load_audio_inputs

RATE = 8000
SPEAKERS = {"ann": 0.1, "bob": 0.5, "cyd": 0.9}  # weight of the second harmonic
DIGITS, TAKES = 3, 6


def _tone(digit: int, harmonic: float, take: int) -> np.ndarray:
    """A 0.25-0.5 s glide from 300 + 250 * digit Hz, faded in and out (23 to 48 frames)."""
    seconds = 0.25 + 0.05 * take
    t = np.arange(int(RATE * seconds)) / RATE
    phase = 2 * math.pi * np.cumsum(300.0 + 250.0 * digit + 1000.0 * t / seconds) / RATE
    envelope = np.sin(math.pi * t / seconds) ** 0.5
    return envelope * (np.sin(phase) + harmonic * np.sin(2 * phase)) * 0.4


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    """54 WAVs `{digit}_{speaker}_{take}.wav`: 3 digits x 3 speakers x 6 takes."""
    folder = tmp_path_factory.mktemp("tones")
    for digit in range(DIGITS):
        for speaker, harmonic in SPEAKERS.items():
            for take in range(TAKES):
                samples = _tone(digit, harmonic, take)
                with wave.open(str(folder / f"{digit}_{speaker}_{take}.wav"), "wb") as out:
                    out.setnchannels(1)
                    out.setsampwidth(2)
                    out.setframerate(RATE)
                    out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return folder


@pytest.fixture(scope="module")
def tera_run(tones, tmp_path_factory) -> Path:
    """A tiny TERA run of 4 steps that never heard cyd."""
    run = tmp_path_factory.mktemp("runs") / "tera"
    pattern = r"(?P<digit>[0-9])_(?P<speaker>[a-z]+)_(?P<index>[0-9]+)\.wav"
    args = ["pretrain", "--arch", "tera", "--preset", "tiny", "--dataset", str(tones)]
    extra = ["train.steps=4", f"data.speaker_pattern={pattern}", "data.exclude_speakers=cyd"]
    assert main([*args, "--out", str(run), *extra, "train.progress=false"]) == 0
    return run


# ---------------------------------------------------------------- features
@pytest.mark.parametrize("causal", [False, True])
def test_pooled_features_ignore_padding(causal):
    """An utterance alone and the same utterance padded beside a longer one pool to the same
    vector, for every layer choice (bidirectional: padding keys masked; causal: padding last)."""
    torch.manual_seed(0)
    cfg = PRESETS["tiny"]().model
    encoder = AcousticEncoder(cfg, 16, causal=causal).eval()
    short, long = torch.randn(1, 9, 16), torch.randn(1, 20, 16)
    batch = torch.zeros(2, 20, 16)
    batch[0, :9], batch[1] = short[0], long[0]
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[0, 9:] = 0
    batch[0, 9:] = 5.0  # garbage in the padding must not matter either
    for layer in (-1, 0, 1, "all"):
        alone = pooled_layer_features(encoder, short, torch.ones(1, 9, dtype=torch.long), layer)
        padded = pooled_layer_features(encoder, batch, mask, layer)
        assert alone.shape == (1, cfg.hidden_size)
        torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)


def test_features_of_a_run_have_one_row_per_utterance(tera_run):
    loaded, inputs = load_run(tera_run), load_audio_inputs(tera_run)
    encoder = loaded.model.encoder
    indices = [0, 5, 7, 30]
    for layer in (-1, 0, "all"):
        features = encoder_features(encoder, inputs, indices, layer, batch_size=3)
        assert features.shape == (4, 32) and np.isfinite(features).all()
        # batching (and the length sort inside) changes nothing: one at a time gives the same
        alone = np.concatenate([encoder_features(encoder, inputs, [i], layer) for i in indices])
        np.testing.assert_allclose(features, alone, atol=1e-5)
    assert not np.allclose(
        encoder_features(encoder, inputs, indices, 0), encoder_features(encoder, inputs, indices)
    )


def test_layer_choices_are_checked():
    assert parse_layer("all") == "all" and parse_layer("-1", 2) == -1 and parse_layer("2", 2) == 2
    for bad in ("3", "-4", "last"):
        with pytest.raises(UserError, match="--layer"):
            parse_layer(bad, 2)


# ---------------------------------------------------------------- tasks
def test_the_digit_probe_trains_on_seen_speakers_and_tests_on_the_excluded_one(tera_run):
    inputs = load_audio_inputs(tera_run)
    names = [p.name for p in inputs.store.paths]
    cyd = sorted(i for i, n in enumerate(names) if "_cyd_" in n)
    task = digit_task(inputs)
    assert sorted(task.test) == cyd and len(cyd) == DIGITS * TAKES  # every recording of cyd
    assert not any("_cyd_" in names[i] for i in task.pool)
    assert len(task.pool) == 2 * DIGITS * TAKES and task.classes == ["0", "1", "2"]
    assert [int(names[i][0]) for i in task.test] == task.test_labels.tolist()
    speakers = speaker_task(inputs)
    assert speakers.classes == ["ann", "bob"]  # only the speakers pretraining saw
    assert set(speakers.pool) == set(inputs.split.train)
    assert set(speakers.test) == set(inputs.split.heldout) and speakers.test
    for k in (1, 3):
        for seed in (0, 1):
            chosen = few_label_indices(task.pool_labels, k, seed)
            assert np.bincount(task.pool_labels[chosen]).tolist() == [k] * DIGITS
    no_exclusion = dataclasses.replace(
        inputs, split=UtteranceSplit(inputs.split.train, inputs.split.heldout, [])
    )
    with pytest.raises(UserError, match="excluded\\s+none"):
        digit_task(no_exclusion)


# ---------------------------------------------------------------- the CLI
def test_selfsup_probe_on_a_tera_run_prints_tables_and_writes_json(tera_run, tmp_path, capsys):
    out = tmp_path / "probe.json"
    args = ["probe", str(tera_run), "--seeds", "2", "--labels-per-class", "1,all"]
    assert main([*args, "--layer", "all", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "digit:" in printed and "speaker:" in printed
    for row in ("| tera | linear |", "| random init | knn |", "| log-mel | linear |"):
        assert row in printed, printed
    results = json.loads(out.read_text())
    assert {r["task"] for r in results} == {"digit", "speaker"}
    # 3 methods x 2 probes x (2 seeds at 1 / class + 1 draw of all)
    assert sum(r["task"] == "digit" for r in results) == 3 * 2 * 3
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in results)


@pytest.mark.parametrize("layer", ["3", "x"])
def test_a_bad_layer_is_one_line_and_exit_2(tera_run, capsys, layer):
    code = main(["probe", str(tera_run), "--layer", layer, "--task", "speaker"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("selfsup: error:"), err
    assert "--layer" in lines[0]


# ---------------------------------------------------------------- the experiment
def test_the_quick_speech_experiment_runs_end_to_end_and_reuses_its_runs(tones, tmp_path, capsys):
    out = tmp_path / "speech"
    settings = ["--quick", "--out", str(out), f"dataset={tones}", "exclude_speaker=cyd"]
    assert speech.main(settings) == 0
    printed = capsys.readouterr().out
    assert printed.count("pretraining ") == 4  # 2 archs x 2 seeds
    for name in ("table.md", "results.json", "accuracy_vs_labels.png", "timings.json"):
        assert (out / name).is_file(), name
    table = (out / "table.md").read_text()
    for row in ("| tera | linear |", "| apc | knn |", "| random init (apc) |", "| log-mel |"):
        assert row in table, table
    assert "+-" in table  # two seeds: mean +- std
    results = json.loads((out / "results.json").read_text())
    assert {r["seed"] for r in results} == {0, 1}
    assert speech.main(settings) == 0  # finished runs are reused, not retrained
    assert "pretraining " not in capsys.readouterr().out
    assert speech.main([*settings, "steps=5"]) == 2  # other settings: refused, not reused
    assert "other settings" in capsys.readouterr().err
