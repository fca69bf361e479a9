"""Tracebacks where a one-line error belongs: bad values in a --config file or an override, bad
generation flags, a model too big for the machine, an --out that cannot be written, a full disk
while checkpointing, an empty question, and the mode of atomically written files.

Each case goes through `selfsup.cli.main` and expects exit code 2 and one line `selfsup: error:
...` naming the key, file or flag; where the check must come before any work, the run is pointed
at an input that does not exist, so a check made too late would fail on that input instead.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from selfsup.cli import main
from selfsup.errors import UserError
from selfsup.io import atomic_write_bytes, atomic_write_text
from selfsup.memory import training_bytes

TINY = ["--preset", "tiny", "train.progress=false", "train.eval_batches=2"]
SENTENCES = ["中华人民共和国成立了。", "我们爱北京天安门。", "今天天气很好。", "人民日报发表社论。"]


def _corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    docs = ["\n".join(SENTENCES[:2]), "\n".join(SENTENCES[2:])]
    path.write_text("\n\n".join(docs * 4) + "\n", encoding="utf-8")
    return path


def _one_line_error(code: int, err: str) -> str:
    """The single error line of a failed command (and that there is exactly one)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("selfsup: error:"), err
    return lines[0]


# ---------------------------------------------------------------- --config FILE value types
@pytest.mark.parametrize(
    "saved,message",
    [
        ({"train": {"steps": "abc"}}, 'train.steps must be int, got "abc"'),
        ({"train": {"steps": [1, 2]}}, "train.steps must be int, got [1, 2]"),
        ({"train": {"steps": 2.5}}, "train.steps must be int, got 2.5"),
        ({"train": {"steps": None}}, "train.steps must be int, got null"),
        ({"train": {"lr": True}}, "train.lr must be float, got true"),
        ({"train": {"progress": 1}}, "train.progress must be bool, got 1"),
        ({"train": 3}, "train must be a JSON object of TrainConfig keys, got 3"),
        ({"objectives": "mlm"}, 'objectives must be a list of strs, got "mlm"'),
        ({"objectives": ["mlm", 3]}, "objectives[1] must be str, got 3"),
        ({"tokenizer": {"vocab_file": 3}}, "tokenizer.vocab_file must be str or null, got 3"),
        ({"model": {"norm_position": "middle"}}, "model.norm_position must be one of post|pre"),
    ],
)
def test_config_file_value_of_wrong_type_is_one_line(tmp_path, capsys, saved, message):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(saved))
    code = main(["pretrain", "--config", str(path), "--out", str(tmp_path / "run")])
    line = _one_line_error(code, capsys.readouterr().err)
    assert str(path) in line and message in line, line


def test_config_file_accepts_what_the_types_allow(tmp_path):
    from selfsup.config import load_config
    from selfsup.recipes.text import PretrainConfig

    path = tmp_path / "cfg.json"
    saved = {"train": {"lr": 1, "steps": 1e3}, "tokenizer": {"vocab_file": None}}
    path.write_text(json.dumps(saved))
    cfg = load_config(PretrainConfig, path)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)  # an int is a float too
    assert cfg.train.steps == 1000 and isinstance(cfg.train.steps, int)  # 1e3 is integral
    assert cfg.tokenizer.vocab_file is None
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="expected a JSON object of PretrainConfig keys"):
        load_config(PretrainConfig, tmp_path / "list.json")


# ---------------------------------------------------------------- values checked before any work
BAD_TRAINING_VALUES = [
    ("train.lr=nan", "train.lr must be a finite number >= 0, got nan"),
    ("train.lr=-1e-3", "train.lr must be a finite number >= 0, got -0.001"),
    ("train.lr=inf", "train.lr must be a finite number >= 0, got inf"),
    ("train.weight_decay=-0.1", "train.weight_decay must be a finite number >= 0"),
    ("train.adam_beta1=1", "train.adam_beta1 must be in [0, 1), got 1.0"),
    ("train.adam_beta2=1.5", "train.adam_beta2 must be in [0, 1), got 1.5"),
    ("train.adam_beta2=nan", "train.adam_beta2 must be in [0, 1), got nan"),
    ("train.warmup_steps=-1", "train.warmup_steps must be >= 0, got -1"),
    ("train.max_grad_norm=-1", "train.max_grad_norm must be a finite number >= 0"),
    ("train.max_grad_norm=nan", "train.max_grad_norm must be a finite number >= 0, got nan"),
    ("train.min_lr_ratio=1.5", "train.min_lr_ratio must be in [0, 1], got 1.5"),
    ("train.min_lr_ratio=-0.1", "train.min_lr_ratio must be in [0, 1], got -0.1"),
]
BAD_MODEL_VALUES = [
    ("model.dropout=1.5", "model.dropout must be in [0, 1), got 1.5"),
    ("model.attention_dropout=-0.1", "model.attention_dropout must be in [0, 1), got -0.1"),
    ("model.hidden_size=31", "model.hidden_size=31 must be divisible by model.num_heads=2"),
    ("model.num_heads=0", "model.num_heads must be positive, got 0"),
    ("model.num_layers=0", "model.num_layers must be positive, got 0"),
    ("model.intermediate_size=-1", "model.intermediate_size must be >= 0"),
]


@pytest.mark.parametrize("override,message", BAD_TRAINING_VALUES + BAD_MODEL_VALUES)
def test_bad_pretraining_values_fail_before_the_corpus_is_read(tmp_path, capsys, override, message):
    out = tmp_path / "run"
    code = main(
        ["pretrain", *TINY, "--corpus", str(tmp_path / "no.txt"), "--out", str(out), override]
    )
    assert message in _one_line_error(code, capsys.readouterr().err)
    assert not (out / "run.json").exists()


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.lr=nan", "train.lr must be a finite number >= 0, got nan"),
        ("train.adam_beta2=1.5", "train.adam_beta2 must be in [0, 1), got 1.5"),
        ("model.width=0", "model.width must be positive, got 0"),
        ("simclr.temperature=nan", "simclr.temperature must be positive, got nan"),
    ],
)
def test_bad_image_pretraining_values_fail_before_the_images_are_read(
    tmp_path, capsys, override, message
):
    argv = ["pretrain", "--arch", "simclr", *TINY, "--dataset", str(tmp_path / "no_images")]
    code = main([*argv, "--out", str(tmp_path / "run"), override])
    assert message in _one_line_error(code, capsys.readouterr().err)


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.lr=nan", "train.lr must be a finite number >= 0, got nan"),
        ("train.min_lr_ratio=2", "train.min_lr_ratio must be in [0, 1], got 2.0"),
        ("model.dropout=1.5", "model.dropout must be in [0, 1), got 1.5"),
        ("head_dropout=1", "head_dropout must be in [0, 1), got 1.0"),
    ],
)
def test_bad_finetuning_values_fail_before_the_data_is_read(tmp_path, capsys, override, message):
    argv = ["finetune", "--task", "files", "--task.kind", "classification"]
    argv += ["--task.train_file", str(tmp_path / "no.csv"), "--out", str(tmp_path / "run")]
    code = main([*argv, override])
    assert message in _one_line_error(code, capsys.readouterr().err)


# ---------------------------------------------------------------- a model too big for the machine
def test_training_bytes_counts_weights_gradients_and_adamw_state():
    model = nn.Sequential(nn.Linear(10, 10), nn.BatchNorm1d(10))  # 110 + 20 trainable
    model[1].weight.requires_grad_(False)  # 10 frozen
    buffers = 10 + 10 + 1  # running mean, running var, batch count
    assert training_bytes(model) == 120 * 16 + 10 * 4 + buffers * 4


def test_model_too_big_for_memory_is_refused_before_allocating(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["pretrain", *TINY, "--corpus", str(_corpus(tmp_path)), "--out", str(out)]
    code = main([*argv, "model.hidden_size=100000", "tokenizer.min_frequency=1"])
    line = _one_line_error(code, capsys.readouterr().err)
    assert "billion parameters" in line and "GiB" in line and "model.hidden_size" in line, line
    assert not (out / "run.json").exists() and not (out / "data").exists()


# ---------------------------------------------------------------- generate flags
@pytest.mark.parametrize(
    "flags,message",
    [
        (["--temperature", "nan"], "--temperature must be >= 0 and finite (0: greedy), got nan"),
        (["--temperature", "-1"], "--temperature must be >= 0"),
        (["--temperature", "inf"], "--temperature must be >= 0 and finite"),
        (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
        (["--top-p", "nan"], "--top-p must be in (0, 1], got nan"),
        (["--top-k", "-1"], "--top-k must be >= 0 (0: all tokens), got -1"),
        (["--max-tokens", "0"], "--max-tokens must be positive, got 0"),
        (["--max-tokens", "-5"], "--max-tokens must be positive, got -5"),
    ],
)
def test_generate_flags_are_checked_before_the_run_is_loaded(tmp_path, capsys, flags, message):
    code = main(["generate", str(tmp_path / "no_run"), "--prompt", "a", *flags])
    assert message in _one_line_error(code, capsys.readouterr().err)


# ---------------------------------------------------------------- ask
@pytest.mark.parametrize(
    "flags,message",
    [
        (["--question", ""], "--question is empty"),
        (["--question", "  "], "--question is empty"),
        ([], "--context FILE needs --question TEXT"),
    ],
)
def test_ask_names_the_question_flag(tmp_path, capsys, flags, message):
    passage = tmp_path / "passage.txt"
    passage.write_text("蔡倫發明了紙。", encoding="utf-8")
    code = main(["ask", str(tmp_path / "no_run"), "--context", str(passage), *flags])
    line = _one_line_error(code, capsys.readouterr().err)
    assert message in line, line
    if flags:
        assert "--context" not in line


# ---------------------------------------------------------------- --out that cannot be written
def test_out_under_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    for out in (blocker, blocker / "run"):
        code = main(["pretrain", *TINY, "--corpus", str(tmp_path / "no.txt"), "--out", str(out)])
        line = _one_line_error(code, capsys.readouterr().err)
        assert str(out) in line and f"{blocker} is a file, not a folder" in line, line
    assert blocker.read_text() == "mine"


def test_out_on_a_read_only_file_system_is_one_line(tmp_path, capsys, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)  # the probe of the folder
    out = tmp_path / "ro" / "run"
    code = main(["pretrain", *TINY, "--corpus", str(tmp_path / "no.txt"), "--out", str(out)])
    line = _one_line_error(code, capsys.readouterr().err)
    assert str(out) in line and "Read-only file system" in line, line
    assert not out.parent.exists()  # the check creates nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        out = locked / "run"
        code = main(["pretrain", *TINY, "--corpus", str(tmp_path / "no.txt"), "--out", str(out)])
        line = _one_line_error(code, capsys.readouterr().err)
        assert str(out) in line and "Permission denied" in line, line
    finally:
        locked.chmod(0o755)


def test_atomic_write_into_an_unwritable_place_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        UserError, match="out.json: cannot write it: .*/file is a file, not a folder"
    ):
        atomic_write_text(tmp_path / "file" / "out.json", "{}")
    with pytest.raises(UserError, match="cannot write it"):
        atomic_write_text(tmp_path, "{}")  # a folder where the file should go


# ---------------------------------------------------------------- a full disk
def _no_space(monkeypatch, when=lambda fd_path: True):
    """os.fsync raises ENOSPC for files whose path passes `when`."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if when(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_disk_full_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    atomic_write_text(target, "old\n")
    _no_space(monkeypatch)
    with pytest.raises(UserError, match=r"config.json: cannot write it, the disk is full"):
        atomic_write_bytes(target, b"new\n")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["config.json"]


def test_disk_full_while_checkpointing_is_one_line_and_resumable(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = ["pretrain", *TINY, "--corpus", str(_corpus(tmp_path)), "--out", str(out)]
    argv += ["tokenizer.min_frequency=1", "train.steps=4", "train.checkpoint_every=2"]
    _no_space(monkeypatch, when=lambda path: ".tmp-step-0000004" in path)
    line = _one_line_error(main(argv), capsys.readouterr().err)
    assert "the disk is full" in line and ".tmp-step-0000004" in line, line
    checkpoints = out / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "step-0000002"
    assert not list(out.rglob(".*.tmp"))  # the atomic writer's temporary file is gone
    monkeypatch.undo()  # space again: the run continues from step 2
    assert main([*argv, "--resume"]) == 0
    assert (out / "model.safetensors").exists()
    assert torch.isfinite(
        torch.tensor(json.loads((out / "final_metrics.json").read_text())["eval_mlm_loss"])
    )


# ---------------------------------------------------------------- file modes
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_open_would_give(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == mode


def test_atomic_rewrite_keeps_the_files_mode(tmp_path):
    path = tmp_path / "secret.json"
    path.write_text("{}")
    path.chmod(0o640)
    atomic_write_text(path, '{"a": 1}')
    assert path.stat().st_mode & 0o777 == 0o640 and path.read_text() == '{"a": 1}'
