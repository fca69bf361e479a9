"""`selfsup pretrain --arch tera|apc`: the speech recipes end to end on synthetic WAVs written
here (gliding tones whose pitch says the digit and whose harmonics say the speaker, named as FSDD
names its files), the batch source's purity and crops, the utterance split, exact resume after a
kill, the CLI's one-line errors, and one run over the real FSDD when ../shared/data has it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import Killed
from safetensors.torch import load_file
from speech_helpers import write_digit_tones

import selfsup.recipes.base as recipe_base
import selfsup.trainer as trainer_module
from selfsup.cli import main
from selfsup.data.audio import (
    FSDD_NAME_PATTERN,
    NormStats,
    cached_feature_store,
    list_wav_folder,
)
from selfsup.data.frames import AcousticBatches, FrameMaskingConfig, split_utterances
from selfsup.data.sources import shared_data_dir
from selfsup.errors import UserError
from selfsup.models.acoustic import AcousticEncoder
from selfsup.recipes import RECIPES, load_run
from selfsup.recipes.audio import PRESETS, load_audio_inputs
from selfsup.runs import RunFolder

SPEAKERS = {"ann": 0.1, "bob": 0.4, "cyd": 0.8}  # weight of the second harmonic
DIGITS, TAKES = 3, 4
FSDD_PATTERN = FSDD_NAME_PATTERN.pattern


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    """36 WAVs `{digit}_{speaker}_{take}.wav`: 3 digits x 3 speakers x 4 takes of 0.25-0.55 s
    (23 to 53 frames: some shorter and some longer than the tiny preset's 32-frame crops)."""
    return write_digit_tones(tmp_path_factory.mktemp("tones"), SPEAKERS, DIGITS, TAKES, 0.1)


def _pretrain(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["pretrain", *args, "train.progress=false"])
    out, err = capsys.readouterr()
    return code, out, err


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the recipes through the CLI
@pytest.mark.parametrize("arch", ["tera", "apc"])
def test_tiny_preset_trains_through_the_cli_and_writes_the_run_folder(
    tones, tmp_path, capsys, arch
):
    run = tmp_path / arch
    args = ["--arch", arch, "--preset", "tiny", "--dataset", str(tones), "--out", str(run)]
    code, out, err = _pretrain([*args, "train.steps=60"], capsys)
    assert code == 0, err
    assert f"eval_{arch}_loss" in out and "features: 36 utterances" in err
    # logged every 2 steps of 8 crops: noisy (a TERA crop left unchanged is easy), so compare
    # the first and last five logs
    losses = [r[f"{arch}_loss"] for r in _records(run) if f"{arch}_loss" in r]
    assert len(losses) == 30 and np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses
    final = json.loads((run / "final_metrics.json").read_text())
    guess = final[f"eval_{arch}_{'mean' if arch == 'tera' else 'copy'}_guess_loss"]
    assert final[f"eval_{arch}_loss"] < guess  # it reads context (the guesses read none)
    for name in ("config.json", "model.safetensors", "loss_curve.png", "data/features/meta.json"):
        assert (run / name).exists(), name
    folder = RunFolder.open(run)
    assert (folder.kind, folder.arch) == ("pretraining", arch)
    loaded = load_run(run)
    encoder = loaded.model.encoder
    assert isinstance(encoder, AcousticEncoder) and not loaded.model.training
    assert encoder.causal == (arch == "apc") and encoder.num_features == 16
    # a finished run resumes without --arch: its config says which recipe it is
    code, out, err = _pretrain(["--out", str(run), "--resume"], capsys)
    assert code == 0 and f"eval_{arch}_loss" in out and "features:" not in err, err


def test_resume_after_a_kill_ends_with_the_weights_of_an_uninterrupted_run(
    tones, tmp_path, capsys, monkeypatch
):
    """6 steps in one go, against 3 steps, a kill right after the step-3 checkpoint, and
    `--resume`: the same final weights, bit for bit (batch order, crops, TERA's corruption,
    dropout and AdamW state all resumed), and the feature store reused, not rebuilt."""
    settings = [
        "--arch", "tera", "--preset", "tiny", "--dataset", str(tones),
        "train.steps=6", "train.checkpoint_every=3", "train.grad_accum=2",
        "model.dropout=0.1",  # the dropout stream must resume too
    ]  # fmt: skip
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _pretrain([*settings, "--out", str(full)], capsys)[0] == 0

    def killed(*_args) -> None:  # the loss curve is drawn at each checkpoint: die at the first
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(recipe_base, "plot_loss_curve", killed)
        with pytest.raises(Killed):
            main(["pretrain", *settings, "--out", str(cut), "train.progress=false"])
    capsys.readouterr()  # the killed run's output
    resumed_from: list[int] = []
    load_newest = trainer_module.load_newest_intact

    def spy(*args, **kwargs):
        state = load_newest(*args, **kwargs)
        resumed_from.append(state["step"] if state else 0)
        return state

    monkeypatch.setattr(trainer_module, "load_newest_intact", spy)
    code, _, err = _pretrain(["--out", str(cut), "--resume"], capsys)
    assert code == 0, err
    assert resumed_from == [3] and "features:" not in err  # continued; store reused
    expected, got = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert [r["step"] for r in _records(cut)] == [r["step"] for r in _records(full)]


# ---------------------------------------------------------------- batches and splits
@pytest.fixture(scope="module")
def store(tones, tmp_path_factory):
    features = PRESETS["tiny"]().data.features
    return cached_feature_store(list_wav_folder(tones), tmp_path_factory.mktemp("store"), features)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a
    )


@pytest.mark.parametrize("objective", ["tera", "apc"])
def test_batch_i_is_a_pure_function_of_seed_and_index(store, objective):
    def source(seed: int) -> AcousticBatches:
        masking = FrameMaskingConfig(channel_mask_max_width=3)
        return AcousticBatches(store, range(30), 32, 8, seed, objective, masking)

    first, again, other = source(0), source(0), source(1)
    for index in (0, 5, 17):  # 3 batches an epoch: 17 is in the sixth epoch
        assert _same(first.batch(index), again.batch(index))
        assert _same(first.batch(index), first.batch(index))
        assert not _same(first.batch(index), other.batch(index))
    assert not _same(first.batch(0), first.batch(1))
    for a, b in zip(first.eval_batches(3), again.eval_batches(3)):
        assert _same(a, b)


def test_rows_are_crops_padded_at_the_end(store):
    """Each row is a contiguous crop of its utterance, at most max_frames long, real frames
    first; num_tokens counts the real frames; short utterances are kept whole."""
    source = AcousticBatches(store, range(len(store)), 32, 8, 0, "apc")
    lengths = store.lengths()
    whole = cropped = 0
    for index in range(8):
        batch = source.batch(index)
        mask = batch["attention_mask"]
        assert mask.shape[1] <= 32 and batch["num_tokens"] == int(mask.sum())
        for row, utterance in enumerate(batch["utterances"].tolist()):
            n = int(mask[row].sum())
            assert bool(mask[row, :n].all()) and not bool(mask[row, n:].any())
            assert n == min(lengths[utterance], 32)
            frames = store.tensor(utterance)  # (T, F): find the crop in the whole utterance
            crop = batch["features"][row, :n]
            starts = [s for s in range(len(frames) - n + 1) if torch.equal(frames[s : s + n], crop)]
            assert starts, (utterance, n)
            assert not batch["features"][row, n:].any()
            whole += n == len(frames)
            cropped += n < len(frames)
    assert whole and cropped  # both cases happened


def test_heldout_never_meets_training_and_an_excluded_speaker_is_in_neither(store):
    speakers = [FSDD_NAME_PATTERN.fullmatch(p.name)["speaker"] for p in store.paths]
    split = split_utterances(len(store), 0.25, speakers, ["bob"])
    bob = {i for i, s in enumerate(speakers) if s == "bob"}
    assert set(split.excluded) == bob and len(bob) == DIGITS * TAKES
    assert not set(split.train) & set(split.heldout)
    assert set(split.train) | set(split.heldout) | bob == set(range(len(store)))
    assert len(split.heldout) == 6  # a quarter of the 24 utterances left
    assert split_utterances(len(store), 0.25, speakers, ["bob"]) == split  # fixed
    train = AcousticBatches(store, split.train, 32, 5, 0, "tera")
    heldout = AcousticBatches(store, split.heldout, 32, 5, 0, "tera")
    seen: list[int] = []
    for index in range(3 * train.batches_per_epoch):
        seen += train.batch(index)["utterances"].tolist()
    first_epoch = seen[: train.batches_per_epoch * 5]
    assert len(set(first_epoch)) == len(first_epoch)  # an epoch visits each utterance once
    evaluated = [u for b in heldout.eval_batches(10) for u in b["utterances"].tolist()]
    assert sorted(evaluated) == split.heldout  # every held-out utterance, once
    assert set(seen) <= set(split.train) and not set(seen) & bob
    # a fixed held-out list (FSDD's test takes) is kept as given, minus excluded speakers
    takes = [int(p.stem.split("_")[2]) == 0 for p in store.paths]
    fixed = split_utterances(len(store), 0.5, speakers, ["bob"], heldout=takes)
    assert fixed.heldout == [i for i in range(len(store)) if takes[i] and i not in bob]


@pytest.mark.parametrize("normalize", ["utterance", "global"])
def test_the_run_records_its_split_and_normalisation_for_probes(tones, tmp_path, capsys, normalize):
    run = tmp_path / "run"
    args = ["--arch", "apc", "--preset", "tiny", "--dataset", str(tones), "--out", str(run)]
    extra = [
        "train.steps=2", f"data.speaker_pattern={FSDD_PATTERN}", "data.exclude_speakers=cyd",
        f"data.features.normalize={normalize}",
    ]  # fmt: skip
    code, _, err = _pretrain([*args, *extra], capsys)
    assert code == 0, err
    inputs = load_audio_inputs(run)
    assert len(inputs.split.excluded) == DIGITS * TAKES
    assert all("_cyd_" in inputs.store.paths[i].name for i in inputs.split.excluded)
    assert inputs.frames(0).shape[1] == 16
    if normalize == "utterance":
        assert inputs.stats is None and not (run / "data" / "norm_stats.json").exists()
        return
    # fitted on the training side only: nothing of the held-out or excluded utterances leaks
    fitted = NormStats.fit(inputs.store.utterance(i) for i in inputs.split.train)
    assert inputs.stats is not None and np.allclose(inputs.stats.mean, fitted.mean)
    assert torch.allclose(inputs.frames(3), fitted.apply(inputs.store.utterance(3)))


# ---------------------------------------------------------------- mistakes
@pytest.mark.parametrize(
    "args,message",
    [
        (lambda t, w: ["--dataset", str(t / "nowhere")], "nowhere: no such folder or file"),
        (lambda t, w: ["--dataset", str(t)], "no audio files"),
        (lambda t, w: ["--dataset", str(w), "data.exclude_speakers=bob"], "names no speakers"),
        (
            lambda t, w: [
                "--dataset",
                str(w),
                f"data.speaker_pattern={FSDD_PATTERN}",
                "data.exclude_speakers=zed",
            ],
            "no speaker zed",
        ),  # fmt: skip
        (lambda t, w: ["--dataset", str(w), "data.speaker_pattern=x_(?P<who>.*)"], "(?P<speaker>"),
        (lambda t, w: ["--dataset", str(w), "data.speaker_pattern=(?P<speaker>a).wav"], "0_ann_0"),
        (lambda t, w: ["--dataset", str(w), "data.max_frames=0"], "data.max_frames"),
        (lambda t, w: ["--dataset", str(w), "model.max_position=16"], "max_position=16"),
        (lambda t, w: ["data.feature.n_mels=8"], "unknown config key 'data.feature.n_mels'"),
        (lambda t, w: ["--data.features.n_mels", "x"], "data.features.n_mels"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(tones, tmp_path, capsys, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    code, _, err = _pretrain(
        ["--arch", "tera", "--preset", "tiny", "--out", str(out), *args(empty, tones)], capsys
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("selfsup: error:"), err
    assert message in lines[0]
    assert not (out / "run.json").exists()  # no half-made run left behind


def test_an_unknown_preset_exits_2_naming_the_choices(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["pretrain", "--arch", "apc", "--preset", "nope", "--out", str(tmp_path / "r")])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # argparse prints its usage first
    assert stopped.value.code == 2 and last.startswith("selfsup pretrain: error:")
    assert "invalid choice: 'nope'" in last and "librispeech-gpu" in last


def test_every_preset_is_a_valid_config_of_both_archs():
    for arch in ("tera", "apc"):
        for name, make in RECIPES[arch].presets.items():
            cfg = make()
            assert cfg.arch == arch
            cfg.data.dataset = cfg.data.dataset or "some/folder"
            cfg.validate()
            assert cfg.model.position_encoding == "rotary", name
    with pytest.raises(UserError, match="data.dataset is empty"):
        RECIPES["tera"].presets["librispeech-gpu"]().validate()


# ---------------------------------------------------------------- the real data set
FSDD = (shared_data_dir() or Path("/nonexistent")) / "fsdd" / "recordings"


@pytest.mark.skipif(
    not FSDD.is_dir(),
    reason="needs ../shared/data/fsdd/recordings (Free Spoken Digit Dataset); absent here",
)
def test_fsdd_holds_out_its_test_takes_and_the_excluded_speaker(tmp_path, capsys):
    run = tmp_path / "fsdd"
    args = ["--arch", "tera", "--preset", "tiny", "--out", str(run), "train.steps=4"]
    code, out, err = _pretrain([*args, "--data.exclude_speakers", "theo"], capsys)
    assert code == 0, err
    assert "features: 3000 utterances" in err and "eval_tera_loss" in out
    inputs = load_audio_inputs(run)
    split, paths = inputs.split, inputs.store.paths
    assert (len(split.train), len(split.heldout), len(split.excluded)) == (2250, 250, 500)
    assert all(int(paths[i].stem.split("_")[2]) < 5 for i in split.heldout)
    assert all(int(paths[i].stem.split("_")[2]) >= 5 for i in split.train)
    assert {paths[i].stem.split("_")[1] for i in split.excluded} == {"theo"}
    assert sorted(set(inputs.store.labels)) == [str(d) for d in range(10)]
