"""No input or fault loses a user's data or gives a silently wrong result (issue 12, "Data loss
and silent wrong results"): each case turned into a test. docs/RELIABILITY.md lists them (the
input or fault, what selfsup does, the test)."""

import fcntl
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from selfsup.cli import main
from selfsup.config import option
from selfsup.errors import UserError
from selfsup.objectives.base import LossTerm, StepOutput
from selfsup.recipes import RECIPES, Plan, Recipe
from selfsup.trainer import TrainConfig, train

SENTENCES = ["中华人民共和国成立了。", "我们爱北京天安门。", "今天天气很好。", "人民日报发表社论。"]
TEXT = [
    "--preset",
    "tiny",
    "train.progress=false",
    "train.steps=2",
    "train.eval_batches=1",
    "tokenizer.min_frequency=1",
]


def _corpus(path: Path, copies: int = 4) -> Path:
    docs = ["\n".join(SENTENCES[i : i + 2]) for i in range(0, len(SENTENCES), 2)]
    path.write_text("\n\n".join(docs * copies) + "\n", encoding="utf-8")
    return path


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("selfsup: error: "), err
    return lines[0]


def _flip_bytes(path: Path, count: int = 200) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) - count, len(data)):  # the tensor data, at the end of the file
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- a run type that trains in seconds
@dataclass
class ToyConfig:
    arch: str = option("toy", "the recipe")
    dim: int = option(6, "width of the random vectors")
    nan_from: int = option(-1, "batches from this index hold a NaN input (-1: none)")
    train: TrainConfig = option(
        TrainConfig(steps=6, batch_size=16, lr=3e-2, checkpoint_every=2, progress=False), ""
    )


class ToyBatches:
    def __init__(self, cfg: ToyConfig) -> None:
        self.cfg = cfg

    def batch(self, index: int) -> dict:
        g = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + index)
        x = torch.randn(self.cfg.train.batch_size, self.cfg.dim, generator=g)
        if 0 <= self.cfg.nan_from <= index:
            x[0, 0] = float("nan")
        return {"x": x, "num_tokens": len(x)}

    def eval_batches(self, n: int) -> list[dict]:
        return [self.batch(10**9 + k) for k in range(n)]


class ToyAutoencoder(nn.Module):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.encode, self.decode = nn.Linear(cfg.dim, 2), nn.Linear(2, cfg.dim)

    def item_counts(self, batch: dict) -> dict[str, int]:
        return {"recon": batch["x"].numel()}

    def forward(self, batch: dict) -> StepOutput:
        error = (self.decode(self.encode(batch["x"])) - batch["x"]) ** 2
        return StepOutput({"recon": LossTerm(error.sum(), error.numel())})


def _toy_recipe(**changes) -> Recipe:
    fields = dict(
        name="toy",
        kind="pretraining",
        arch="toy",
        summary="a linear autoencoder on random vectors",
        config_class=ToyConfig,
        presets={"tiny": ToyConfig},
        setup=lambda cfg, run: {},
        data=lambda cfg, run, state: Plan(ToyBatches(cfg), "toy"),
        build_model=lambda cfg, state: ToyAutoencoder(cfg),
        load=lambda run, device: None,
    )
    return Recipe(**(fields | changes))


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(RECIPES, "toy", _toy_recipe())


def _toy_args(out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--arch", "toy", "--out", str(out), *extra]


# ---------------------------------------------------------------- 1. --out that is not a run
@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_out_holding_other_files_is_refused_untouched(tmp_path, capsys, command):
    out = tmp_path / "hf-model"
    out.mkdir()
    (out / "config.json").write_text('{"model_type": "bert"}\n')
    (out / "notes.txt").write_text("the user's own file\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    train_file = tmp_path / "train.jsonl"
    train_file.write_text('{"text": "好", "label": "pos"}\n{"text": "坏", "label": "neg"}\n')
    args = {
        "pretrain": ["pretrain", *TEXT, "--corpus", _corpus(tmp_path / "c.txt")],
        "finetune": ["finetune", "--task", "files", "--task.kind", "classification"]
        + ["--task.train_file", train_file],
    }[command]
    code, err = _run([*args, "--out", out], capsys)
    assert code == 2
    assert "not empty and not a selfsup run" in _one_line(err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # not even a .lock


def test_an_empty_out_folder_is_used(tmp_path, capsys, toy):
    out = tmp_path / "empty"
    out.mkdir()
    assert _run(_toy_args(out), capsys)[0] == 0
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("stop_in", ["train_tokenizer", "prepare_corpus"])
def test_a_stopped_start_is_retried_by_the_identical_command(
    tmp_path, capsys, monkeypatch, stop_in
):
    """Ctrl-C while the tokenizer trains (setup) or the corpus is tokenized (tokenizer/ written):
    the folder is a run with no checkpoint, which the identical command starts over."""
    from selfsup.recipes import text

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(text, stop_in, interrupted)
    out = tmp_path / "run"
    args = ["pretrain", *TEXT, "--corpus", _corpus(tmp_path / "c.txt"), "--out", out]
    assert _run(args, capsys)[0] == 130
    assert (out / "run.json").is_file() and (out / "config.json").is_file()
    assert (out / "tokenizer").is_dir() == (stop_in == "prepare_corpus")
    monkeypatch.undo()
    code, err = _run(args, capsys)
    assert code == 0, err
    assert (out / "model.safetensors").is_file()


def test_a_failure_before_the_first_checkpoint_is_retried_by_the_identical_command(
    tmp_path, capsys, monkeypatch
):
    from selfsup.recipes import text

    def disk_trouble(*args, **kwargs):
        raise OSError("I/O error")

    monkeypatch.setattr(text, "prepare_corpus", disk_trouble)
    out = tmp_path / "run"
    args = ["pretrain", *TEXT, "--corpus", _corpus(tmp_path / "c.txt"), "--out", out]
    with pytest.raises(OSError):
        main([str(a) for a in args])
    assert (out / "run.json").is_file()  # a run, with its tokenizer, but no checkpoint
    monkeypatch.undo()
    code, err = _run(args, capsys)
    assert code == 0, err


def test_a_finished_run_still_needs_resume(tmp_path, capsys, toy):
    out = tmp_path / "run"
    assert _run(_toy_args(out, "train.steps=2"), capsys)[0] == 0
    code, err = _run(_toy_args(out, "train.steps=2"), capsys)
    assert code == 2 and "already holds a run: add --resume" in _one_line(err)


# ---------------------------------------------------------------- 2. resume needs the run's config
def test_resume_after_a_stop_in_setup_trains_the_run_that_was_asked_for(
    tmp_path, capsys, monkeypatch
):
    from selfsup.recipes import text

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(text, "train_tokenizer", interrupted)
    out = tmp_path / "run"
    corpus = _corpus(tmp_path / "c.txt")
    args = ["pretrain", *TEXT, "--corpus", corpus, "--out", out, "model.hidden_size=48"]
    assert _run(args, capsys)[0] == 130
    monkeypatch.undo()
    code, err = _run(["pretrain", "--out", out, "--resume"], capsys)
    assert code == 0, err
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["hidden_size"] == 48 and saved["data"]["corpus"] == str(corpus)
    weights = load_file(out / "model.safetensors")
    assert weights["encoder.embeddings.tokens.weight"].shape[1] == 48


def test_resume_without_config_is_refused(tmp_path, capsys, toy):
    out = tmp_path / "run"
    assert _run(_toy_args(out, "train.steps=2"), capsys)[0] == 0
    (out / "config.json").unlink()
    code, err = _run(["pretrain", "--out", out, "--resume"], capsys)
    assert code == 2 and "no config.json to resume with" in _one_line(err)
    assert not (out / "checkpoints" / "step-0000004").exists()  # nothing trained


# ---------------------------------------------------------------- 3. checkpoint integrity
def _train_toy(run_dir: Path, resume: bool = False, kill_at: int | None = None):
    class Killed(Exception):
        pass

    def on_checkpoint(step: int) -> None:
        if step == kill_at:
            raise Killed

    cfg = ToyConfig()
    torch.manual_seed(0)
    model = ToyAutoencoder(cfg)
    try:
        train(model, ToyBatches(cfg), cfg.train, run_dir, resume, on_checkpoint=on_checkpoint)
    except Killed:
        return None
    return load_file(run_dir / "model.safetensors")


def _damage(checkpoint: Path, how: str) -> None:
    if how == "flipped bytes":
        _flip_bytes(checkpoint / "model.safetensors")
    elif how == "truncated":
        data = (checkpoint / "optimizer.safetensors").read_bytes()
        (checkpoint / "optimizer.safetensors").write_bytes(data[: len(data) // 2])
    else:
        (checkpoint / "state.json").write_text('{"step": 4, "optimizer"')


@pytest.mark.parametrize("how", ["flipped bytes", "truncated", "garbled state.json"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, capsys, how):
    full = _train_toy(tmp_path / "full")
    _train_toy(tmp_path / "cut", kill_at=4)  # checkpoints at steps 2 and 4
    _damage(tmp_path / "cut" / "checkpoints" / "step-0000004", how)
    capsys.readouterr()
    resumed = _train_toy(tmp_path / "cut", resume=True)
    err = capsys.readouterr().err
    assert "step-0000004" in err and "resuming from step-0000002 instead" in err
    for key in full:  # resuming from step 2 is as exact as from step 4
        assert torch.equal(full[key], resumed[key]), key


def test_no_intact_checkpoint_is_one_line(tmp_path, capsys, toy):
    out = tmp_path / "run"
    assert _run(_toy_args(out), capsys)[0] == 0
    for checkpoint in (out / "checkpoints").glob("step-*"):
        _flip_bytes(checkpoint / "model.safetensors")
    code, err = _run(["pretrain", "--out", out, "--resume", "train.steps=8"], capsys)
    assert code == 2 and "no intact checkpoint to resume from" in _one_line(err)


@pytest.fixture
def pretrained(tmp_path, capsys) -> Path:
    run = tmp_path / "pretrained"
    code, err = _run(
        ["pretrain", *TEXT, "--corpus", _corpus(tmp_path / "c.txt"), "--out", run], capsys
    )
    assert code == 0, err
    return run


def test_corrupt_final_weights_are_refused_in_one_line(tmp_path, capsys, pretrained):
    weights = pretrained / "model.safetensors"
    intact = weights.read_bytes()
    _flip_bytes(weights)
    train_file = tmp_path / "train.jsonl"
    train_file.write_text('{"text": "好", "label": "pos"}\n{"text": "坏", "label": "neg"}\n' * 10)
    finetune = ["finetune", "--init", pretrained, "--task", "files", "--task.kind"]
    finetune += ["classification", "--task.train_file", train_file, "--out", tmp_path / "ft"]
    for args in (
        ["fill-mask", pretrained, "中华人民[MASK]和国"],
        finetune,
        ["convert", pretrained, tmp_path / "hf"],
    ):
        code, err = _run(args, capsys)
        assert code == 2 and "model.safetensors: corrupt" in _one_line(err), args
    # a run written before checksums existed (no checksums.json) is read unchecked
    weights.write_bytes(intact)
    (pretrained / "checksums.json").unlink()
    assert _run(["fill-mask", pretrained, "中华人民[MASK]和国"], capsys)[0] == 0


# ---------------------------------------------------------------- 4. labels unseen in training
def _write_tagged(path: Path, tags: list[str]) -> Path:
    sentence = "".join(f"{ch} {tag}\n" for ch, tag in zip("甲乙丙丁", tags))
    path.write_text((sentence + "\n") * 10, encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["classification", "tagging"])
@pytest.mark.parametrize("split", ["dev", "test"])
def test_a_label_unseen_in_training_is_refused_before_training(tmp_path, capsys, kind, split):
    if kind == "classification":
        train_file, other = tmp_path / "train.jsonl", tmp_path / f"{split}.jsonl"
        lines = [{"text": t, "label": lab} for t, lab in (("好", "pos"), ("坏", "neg"))] * 10
        train_file.write_text("".join(json.dumps(r) + "\n" for r in lines))
        other.write_text(json.dumps({"text": "还行", "label": "neutral"}) + "\n")
        unseen = "'neutral'"
    else:
        train_file = _write_tagged(tmp_path / "train.bio", ["B-PER", "I-PER", "O", "O"])
        other = _write_tagged(tmp_path / f"{split}.bio", ["B-LOC", "I-LOC", "O", "O"])
        unseen = "'B-LOC', 'I-LOC'"
    out = tmp_path / "run"
    args = ["finetune", "--preset", "tiny", "--task", "files", "--task.kind", kind]
    args += ["--task.train_file", train_file, f"--task.{split}_file", other, "--out", out]
    code, err = _run([*args, "train.steps=2", "train.progress=false"], capsys)
    line = _one_line(err)
    assert code == 2 and f"{other}: label(s) {unseen} never occur in the training data" in line
    assert str(train_file) in line
    assert not (out / "checkpoints").exists() and not (out / "model.safetensors").exists()


# ---------------------------------------------------------------- 5. non-finite loss or weights
def test_a_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, capsys, toy
):
    out = tmp_path / "run"
    code, err = _run(_toy_args(out, "nan_from=4"), capsys)  # batch 4 is step 5's
    line = _one_line(err)
    assert code == 2 and "step 5: the loss is nan" in line and "step-0000004" in line
    assert not (out / "model.safetensors").exists()
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == [
        "step-0000002",
        "step-0000004",
    ]
    saved = load_file(out / "checkpoints" / "step-0000004" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in saved.values())


def test_a_learning_rate_that_blows_up_stops_in_one_line(tmp_path, capsys, toy):
    code, err = _run(_toy_args(tmp_path / "run", "train.lr=1e30"), capsys)
    line = _one_line(err)
    assert code == 2 and "training stopped without saving this model" in line
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_non_finite_weights_are_never_saved(tmp_path):
    cfg = ToyConfig()
    model = ToyAutoencoder(cfg)

    def poison(model: nn.Module, step: int) -> None:
        if step == 3:
            with torch.no_grad():
                model.decode.bias[0] = float("inf")

    cfg.train.checkpoint_every = 3
    with pytest.raises(UserError, match="step 3: the weights are not finite.*no checkpoint yet"):
        train(model, ToyBatches(cfg), cfg.train, tmp_path, after_step=poison)
    assert not list((tmp_path / "checkpoints").glob("step-*"))
    assert not (tmp_path / "model.safetensors").exists()


# ---------------------------------------------------------------- 6. one process per run folder
def _flock_fails(path: Path) -> bool:
    """Whether a second open file description cannot take the lock (another holder has it)."""
    with open(path / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def test_the_run_folder_is_locked_while_it_trains(tmp_path, capsys, monkeypatch):
    out, seen = tmp_path / "run", []
    plan = lambda cfg, run, state: Plan(  # noqa: E731
        ToyBatches(cfg), "toy", after_step=lambda model, step: seen.append(_flock_fails(out))
    )
    monkeypatch.setitem(RECIPES, "toy", _toy_recipe(data=plan))
    assert _run(_toy_args(out), capsys)[0] == 0
    assert seen and all(seen)
    assert not _flock_fails(out)  # released at the end


def test_a_second_process_on_a_run_folder_is_refused(tmp_path, capsys, toy):
    out = tmp_path / "run"
    assert _run(_toy_args(out, "train.steps=2"), capsys)[0] == 0
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom selfsup.runs import RunFolder\n"
            "with RunFolder(Path(sys.argv[1])).lock():\n    print('locked', flush=True)\n"
            "    time.sleep(300)\n",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        for args in (["pretrain", "--out", out, "--resume", "train.steps=4"], _toy_args(out)):
            code, err = _run(args, capsys)
            line = _one_line(err)
            assert code == 2 and f"is in use by another process (pid {holder.pid})" in line
        assert not (out / "checkpoints" / "step-0000004").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the lock died with the process: nothing stale is left to clear
    code, err = _run(["pretrain", "--out", out, "--resume", "train.steps=4"], capsys)
    assert code == 0, err


# ---------------------------------------------------------------- 8. a corpus edited in place
def test_a_corpus_edited_in_place_is_tokenized_again_on_resume(tmp_path, capsys):
    corpus, out = _corpus(tmp_path / "c.txt", copies=4), tmp_path / "run"
    assert _run(["pretrain", *TEXT, "--corpus", corpus, "--out", out], capsys)[0] == 0
    meta = out / "data" / "train" / "meta.json"
    before = json.loads(meta.read_text())
    code, err = _run(["pretrain", "--out", out, "--resume", "train.steps=3"], capsys)
    assert code == 0 and "changed" not in err  # unchanged: the store is reused
    assert json.loads(meta.read_text()) == before

    _corpus(corpus, copies=8)  # the corpus fixed in place
    code, err = _run(["pretrain", "--out", out, "--resume", "train.steps=4"], capsys)
    assert code == 0, err
    assert "changed since" in err
    after = json.loads(meta.read_text())
    assert after != before
    record = json.loads((out / "data" / "corpus.json").read_text())
    assert record["files"] == [
        [str(corpus.resolve()), corpus.stat().st_size, corpus.stat().st_mtime_ns]
    ]
