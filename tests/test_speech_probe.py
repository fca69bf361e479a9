"""The speech probe (selfsup/evaluation/audio_probe.py), `selfsup probe` on a TERA run and the
`speech` experiment, on synthetic FSDD-named WAVs written here (tones whose pitch says the digit
and whose harmonics say the speaker), so they run without the real data set."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from speech_helpers import write_digit_tones

from selfsup.cli import main
from selfsup.data.frames import UtteranceSplit
from selfsup.errors import UserError
from selfsup.evaluation.audio_probe import (
    LOG_MEL,
    digit_task,
    encoder_features,
    fit_weighted_probe,
    log_mel_features,
    parse_layer,
    parse_pooling,
    pool_real_frames,
    pool_segments,
    pooled_layer_features,
    probe_encoders,
    probe_weighted_layers,
    speaker_task,
    standardise_layers,
)
from selfsup.evaluation.probe import LINEAR_C, few_label_indices, probe_features
from selfsup.experiments import speech
from selfsup.models.acoustic import AcousticEncoder
from selfsup.recipes import load_run
from selfsup.recipes.audio import PRESETS, load_audio_inputs

SPEAKERS = {"ann": 0.1, "bob": 0.5, "cyd": 0.9}  # weight of the second harmonic
DIGITS, TAKES = 3, 6


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    """54 WAVs `{digit}_{speaker}_{take}.wav`: 3 digits x 3 speakers x 6 takes of 0.25-0.5 s
    (23 to 48 frames)."""
    return write_digit_tones(tmp_path_factory.mktemp("tones"), SPEAKERS, DIGITS, TAKES, 0.05)


@pytest.fixture(scope="module")
def tera_run(tones, tmp_path_factory) -> Path:
    """A tiny TERA run of 4 steps that never heard cyd."""
    run = tmp_path_factory.mktemp("runs") / "tera"
    pattern = r"(?P<digit>[0-9])_(?P<speaker>[a-z]+)_(?P<index>[0-9]+)\.wav"
    args = ["pretrain", "--arch", "tera", "--preset", "tiny", "--dataset", str(tones)]
    extra = ["train.steps=4", f"data.speaker_pattern={pattern}", "data.exclude_speakers=cyd"]
    assert main([*args, "--out", str(run), *extra, "train.progress=false"]) == 0
    return run


# ---------------------------------------------------------------- pooling
def test_pooling_by_hand_on_a_padded_batch():
    """Utterance 0: 7 real frames 1..7 (channel 1: ten times channel 0), then one padding frame;
    utterance 1: 2 real frames, 10 and 20, then 6 of padding. Padding holds 1000: never counted."""
    hidden = torch.full((2, 8, 2), 1000.0)
    hidden[0, :7, 0] = torch.arange(1.0, 8.0)
    hidden[1, :2, 0] = torch.tensor([10.0, 20.0])
    hidden[:, :, 1] = 10 * hidden[:, :, 0]
    mask = torch.tensor([[1] * 7 + [0], [1] * 2 + [0] * 6])
    torch.testing.assert_close(pool_real_frames(hidden, mask), torch.tensor([[4.0, 40], [15, 150]]))
    # 7 frames cut at 7 // 3 = 2 and 14 // 3 = 4: {1, 2}, {3, 4}, {5, 6, 7};
    # 2 frames: the empty first and second thirds take the frame they start at: {10}, {10}, {20}
    third = (2 / 3) ** 0.5  # population std of 5, 6, 7
    expected = [
        [1.5, 15, 0.5, 5, 3.5, 35, 0.5, 5, 6, 60, third, 10 * third],
        [10, 100, 0, 0, 10, 100, 0, 0, 20, 200, 0, 0],
    ]  # [mean_s, std_s] per third, channels inside
    torch.testing.assert_close(pool_segments(hidden, mask), torch.tensor(expected))
    one_frame = pool_segments(torch.tensor([[[3.0], [9.0]]]), torch.tensor([[1, 0]]))
    torch.testing.assert_close(one_frame, torch.tensor([[3.0, 0, 3, 0, 3, 0]]))


def test_pooling_choices_are_checked():
    assert parse_pooling(" Segments") == "segments" and parse_pooling("mean") == "mean"
    with pytest.raises(UserError, match="--pooling: 'max'; expected segments or mean"):
        parse_pooling("max")


# ---------------------------------------------------------------- features
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pooling", ["mean", "segments"])
def test_pooled_features_ignore_padding(causal, pooling):
    """An utterance alone and the same utterance padded beside a longer one pool to the same
    vector, for every layer choice (bidirectional: padding keys masked; causal: padding last)."""
    torch.manual_seed(0)
    cfg = PRESETS["tiny"]().model
    width = cfg.hidden_size * (1 if pooling == "mean" else 6)
    encoder = AcousticEncoder(cfg, 16, causal=causal).eval()
    short, long = torch.randn(1, 9, 16), torch.randn(1, 20, 16)
    batch = torch.zeros(2, 20, 16)
    batch[0, :9], batch[1] = short[0], long[0]
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[0, 9:] = 0
    batch[0, 9:] = 5.0  # garbage in the padding must not matter either
    for layer in (-1, 0, 1, "all", "weighted"):
        ones = torch.ones(1, 9, dtype=torch.long)
        alone = pooled_layer_features(encoder, short, ones, layer, pooling)
        padded = pooled_layer_features(encoder, batch, mask, layer, pooling)
        layers = (cfg.num_layers + 1,) if layer == "weighted" else ()
        assert alone.shape == (1, *layers, width)
        torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling,width", [("mean", 32), ("segments", 6 * 32)])
def test_features_of_a_run_have_one_row_per_utterance(tera_run, pooling, width):
    loaded, inputs = load_run(tera_run), load_audio_inputs(tera_run)
    encoder = loaded.model.encoder
    indices = [0, 5, 7, 30]
    for layer in (-1, 0, "all", "weighted"):
        features = encoder_features(encoder, inputs, indices, layer, pooling, batch_size=3)
        layers = (encoder.num_layers + 1,) if layer == "weighted" else ()
        assert features.shape == (4, *layers, width) and np.isfinite(features).all()
        # batching (and the length sort inside) changes nothing: one at a time gives the same
        alone = [encoder_features(encoder, inputs, [i], layer, pooling) for i in indices]
        np.testing.assert_allclose(features, np.concatenate(alone), atol=1e-5)
    last = encoder_features(encoder, inputs, indices, -1, pooling)
    assert not np.allclose(encoder_features(encoder, inputs, indices, 0, pooling), last)
    # the log-mel baseline goes through the same pooling: 16 bands, one row per utterance
    baseline = log_mel_features(inputs, indices, pooling)
    assert baseline.shape == (4, width // 32 * 16)


def test_the_equal_weight_layer_mean_is_what_it_was(tera_run):
    """`all` with mean pooling: the mean hidden state over layers, pooled (the definition before
    pooling choices and learned weights), one utterance at a time."""
    encoder, inputs = load_run(tera_run).model.encoder, load_audio_inputs(tera_run)
    indices = [0, 5, 7, 30]
    with torch.no_grad():
        expected = []
        for i in indices:
            frames = inputs.frames(i)[None]  # (1, T, F)
            mask = torch.ones(frames.shape[:2], dtype=torch.long)
            hidden = torch.stack(encoder.layer_outputs(frames, mask)).mean(0)  # (1, T, C)
            expected.append(pool_real_frames(hidden, mask)[0].numpy())
    features = encoder_features(encoder, inputs, indices, "all", "mean", batch_size=3)
    np.testing.assert_allclose(features, np.stack(expected), atol=1e-5)


def test_layer_choices_are_checked():
    assert parse_layer("all") == "all" and parse_layer("-1", 2) == -1 and parse_layer("2", 2) == 2
    assert parse_layer("Weighted", 2) == "weighted"
    for bad in ("3", "-4", "last"):
        with pytest.raises(UserError, match="--layer"):
            parse_layer(bad, 2)


# ---------------------------------------------------------------- the learned layer weights
def _one_layer_carries_the_label(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features (N, 4 layers, 16) of 3 classes: layer 2 holds the class centre plus unit
    noise, layers 0, 1 and 3 only the noise."""
    labels = np.repeat(np.arange(3), per_class)
    layers = np.random.default_rng(seed).normal(size=(len(labels), 4, 16))
    layers[:, 2] += np.random.default_rng(99).normal(size=(3, 16))[labels]
    return layers.astype(np.float32), labels


def test_the_learned_weights_find_the_one_layer_that_carries_the_label():
    (pool, pool_y), (test, test_y) = (
        _one_layer_carries_the_label(n, s) for n, s in [(100, 0), (50, 1)]
    )
    results, weights = probe_weighted_layers({"m": (pool, test)}, pool_y, test_y, [20], [0, 1])
    assert [(w.labels_per_class, w.seed) for w in weights] == [("20", 0), ("20", 1)]
    for w in weights:
        assert sum(w.weights) == pytest.approx(1.0) and w.weights[2] > 0.6, w.weights
    accuracy = {(r.evaluator, r.seed): r.accuracy for r in results}
    assert len(accuracy) == 4 and min(accuracy.values()) > 0.85, accuracy
    # equal weights dilute the label with three layers of noise: k-NN reads the learned mix
    equal = probe_features({"all": (pool.mean(1), test.mean(1))}, pool_y, test_y, [20], [0, 1])
    equal_knn = np.mean([r.accuracy for r in equal if r.evaluator == "knn"])
    assert np.mean([accuracy["knn", s] for s in (0, 1)]) > equal_knn + 0.15


def test_one_layer_weighted_probe_is_scikit_learns_logistic_regression():
    """With nothing to mix (log-mel under `weighted`), the torch probe solves the linear probe's
    problem: multinomial logistic regression with L2 at C = 1 on standardised features."""
    from sklearn.linear_model import LogisticRegression

    (pool, pool_y), (test, test_y) = (
        _one_layer_carries_the_label(n, s) for n, s in [(20, 0), (50, 1)]
    )
    layer = pool[:, 2:3]  # (N, 1, D)
    train, test_x = standardise_layers(layer, layer, test[:, 2:3])
    probe = fit_weighted_probe(train, torch.from_numpy(pool_y).long(), 3)
    reference = LogisticRegression(C=LINEAR_C, max_iter=5000, tol=1e-8).fit(train[:, 0], pool_y)
    with torch.no_grad():
        logits = probe(test_x).numpy()
    expected = reference.decision_function(test_x[:, 0].numpy())
    # softmax logits are defined up to a constant per row
    centred = logits - logits.mean(1, keepdims=True)
    np.testing.assert_allclose(centred, expected - expected.mean(1, keepdims=True), atol=2e-3)


def test_few_labels_keep_the_learned_weights_near_equal():
    """The layer logits share the classifier's L2: one label per class moves them little."""
    (pool, pool_y), (test, test_y) = (
        _one_layer_carries_the_label(n, s) for n, s in [(100, 0), (50, 1)]
    )
    _, weights = probe_weighted_layers({"m": (pool, test)}, pool_y, test_y, [1, None], [0])
    few, every = weights
    assert max(few.weights) - min(few.weights) < 0.1 < every.weights[2] - 0.25


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


def test_selfsup_probe_weighted_reports_the_learned_weights(tera_run, tmp_path, capsys):
    out = tmp_path / "probe.json"
    args = ["probe", str(tera_run), "--seeds", "2", "--labels-per-class", "1,all", "--task"]
    assert (
        main([*args, "digit", "--layer", "weighted", "--pooling", "mean", "--json", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "digit, learned layer weights (mean over seeds):" in printed, printed
    assert "| tera | 1 |" in printed and "| random init | all |" in printed
    results = json.loads(out.read_text())
    for r in results:  # the encoders learned weights over their 3 outputs, log-mel has no layers
        assert ("layer_weights" in r) == (r["method"] != "log-mel"), r
        if "layer_weights" in r:
            assert len(r["layer_weights"]) == 3 and sum(r["layer_weights"]) == pytest.approx(1)


def test_every_method_is_pooled_alike(tera_run):
    """Under each pooling, the log-mel rows are the probe of `log_mel_features` with that
    pooling, and the encoder rows of `encoder_features`: one choice for all."""
    loaded, inputs = load_run(tera_run), load_audio_inputs(tera_run)
    task = digit_task(inputs)
    for pooling in ("mean", "segments"):
        results = probe_encoders(
            {"tera": loaded.model.encoder}, inputs, [task], [2], [0], pooling=pooling
        )[0].results
        features = {
            "tera": encoder_features(
                loaded.model.encoder, inputs, task.pool + task.test, -1, pooling
            ),
            LOG_MEL: log_mel_features(inputs, task.pool + task.test, pooling),
        }
        split = {m: (f[: len(task.pool)], f[len(task.pool) :]) for m, f in features.items()}
        expected = probe_features(split, task.pool_labels, task.test_labels, [2], [0])
        assert [r.accuracy for r in results] == pytest.approx([r.accuracy for r in expected])


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
    # probe settings reuse the runs: learned layer weights over whole-utterance means
    assert speech.main([*settings, "layer=weighted", "pooling=mean"]) == 0
    printed = capsys.readouterr().out
    assert "pretraining " not in printed and "learned layer weights" in printed
    results = json.loads((out / "results.json").read_text())
    assert {len(r["layer_weights"]) for r in results if "layer_weights" in r} == {3}  # tiny: L = 2
    assert speech.main([*settings, "pooling=max"]) == 2  # fails before any pretraining
    assert "--pooling: 'max'" in capsys.readouterr().err
