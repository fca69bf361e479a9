"""Training on several processes: torchrun with gloo on loopback, against one process.

Tolerance. Two processes compute the same step as one, in another order: each sums the loss of
half the batch, DDP (or FSDP) averages two half-batch gradients, and every float32 sum rounds
differently (relative error ~1e-7 per operation). AdamW divides each update by the root of its
second moment, so these roundings are not damped, but neither do they grow within a few steps:
after 6 steps the weights differ from one process's by at most ~1.2e-6 (measured, BERT tiny) and
the losses by ~1e-7 relative. The tests allow 10x that: WEIGHT_TOL on any weight, LOSS_RTOL on any
logged loss. Zero would need the same summation order, i.e. one process.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfsup.batch import shard_batch
from selfsup.checkpoint import (
    checkpoint_weights,
    consolidate_checkpoint,
    is_sharded_checkpoint,
    load_newest_intact,
)
from selfsup.cli import main
from selfsup.distributed import rank_seed
from selfsup.errors import UserError
from selfsup.objectives.simclr import nt_xent
from selfsup.recipes import RECIPES
from selfsup.runs import RunFolder
from selfsup.trainer import build_optimizer

WEIGHT_TOL = 1e-5
LOSS_RTOL = 1e-5
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONWARNINGS="ignore")

BERT = [
    "pretrain",
    "--preset",
    "tiny",
    "train.steps=6",
    "train.batch_size=8",
    "train.grad_accum=2",  # two micro-batches a step: the first accumulates without syncing
    "train.warmup_steps=2",
    "train.log_every=1",
    "train.checkpoint_every=3",
    "train.keep_checkpoints=5",
    "train.eval_batches=2",
    "train.progress=false",
    "data.heldout_fraction=0.1",
]
SIMCLR = [
    "pretrain",
    "--arch",
    "simclr",
    "--preset",
    "tiny",
    "train.steps=6",
    "train.batch_size=8",
    "train.grad_accum=2",  # 16 images a step, micro-batches of 8: gradient caching on each rank
    "train.log_every=1",
    "train.checkpoint_every=6",
    "train.eval_batches=1",
    "train.progress=false",
    "model.norm=group",  # batch norm would normalise each rank's 4 images, not the 8 of one
    "data.knn_monitor=0",
]


# ---------------------------------------------------------------- helpers
def _torchrun(args: list[str], nproc: int = 2) -> None:
    """`torchrun --standalone --nproc_per_node=N -m selfsup ARGS`, which must succeed."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={nproc}", "-m", "selfsup", *args]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def _train_log(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if "grad_norm" in r]


def _assert_same_run(run: Path, reference: Path, loss: str) -> None:
    """The same loss trajectory and final weights as the reference run, within tolerance."""
    got, want = _train_log(run), _train_log(reference)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        assert g[loss] == pytest.approx(w[loss], rel=LOSS_RTOL), (g["step"], g[loss], w[loss])
        assert g["grad_norm"] == pytest.approx(w["grad_norm"], rel=1e-4)
    _assert_same_weights(
        load_file(run / "model.safetensors"), load_file(reference / "model.safetensors")
    )


def _assert_same_weights(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    worst = max(float((got[k].float() - want[k].float()).abs().max()) for k in want)
    assert worst < WEIGHT_TOL, worst


def _cut(run: Path, to: Path, step: int) -> Path:
    """A copy of a finished run as if it had been stopped right after checkpoint `step`."""
    shutil.copytree(run, to)
    for later in (to / "checkpoints").glob("step-*"):
        if int(later.name.split("-")[1]) > step:
            shutil.rmtree(later)
    for name in ("model.safetensors", "checksums.json", "final_metrics.json"):
        (to / name).unlink()
    (to / "checkpoints" / "latest").write_text(f"step-{step:07d}\n")
    return to


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """40 short documents of 6 sentences: tokenized in a blink, enough for 6 steps of 8."""
    rng = random.Random(0)
    chars = "天地人你我他山水日月风云花草木火土金石田"
    docs = [
        "\n".join("".join(rng.choice(chars) for _ in range(rng.randint(8, 20))) for _ in range(6))
        for _ in range(40)
    ]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def one_process(corpus, tmp_path_factory) -> Path:
    """The reference: BERT tiny trained by one process (this one), checkpoints at 3 and 6."""
    run = tmp_path_factory.mktemp("bert") / "one"
    assert main([*BERT, "--corpus", str(corpus), "--out", str(run)]) == 0
    return run


# ---------------------------------------------------------------- the batch contract
def test_shards_of_every_rank_make_the_batch_micro_batch_by_micro_batch():
    batch = {
        "views": torch.arange(2 * 16).view(2, 16, 1, 1, 1),  # items on dimension 1
        "labels": torch.arange(16),
        "num_tokens": 16,
    }
    shards = [shard_batch(batch, r, 2, micro_batch=8) for r in range(2)]
    # rank 0 holds images 0-3 and 8-11: its share of each of the two micro-batches of 8
    assert shards[0]["labels"].tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert shards[1]["views"][0].flatten().tolist() == [4, 5, 6, 7, 12, 13, 14, 15]
    assert shards[1]["views"][1].flatten().tolist() == [20, 21, 22, 23, 28, 29, 30, 31]
    assert shards[0]["num_tokens"] == 16 and shards[1]["shard"] == (1, 2)
    assert shard_batch(batch, 0, 1, 8) is batch  # one process: the batch itself
    with pytest.raises(UserError, match="cannot be split evenly over 3 processes"):
        shard_batch(batch, 0, 3, micro_batch=8)


def test_nt_xent_of_the_whole_batch_is_the_sum_over_the_ranks_anchors():
    z1, z2 = torch.randn(8, 5), torch.randn(8, 5)
    whole, correct = nt_xent(z1, z2, 0.5)
    parts = [nt_xent(z1, z2, 0.5, slice(lo, lo + 4)) for lo in (0, 4)]
    assert float(sum(p[0] for p in parts)) == pytest.approx(float(whole), rel=1e-6)
    assert int(sum(p[1] for p in parts)) == int(correct)


def test_rank_0_keeps_the_runs_own_dropout_seed_and_other_ranks_get_their_own():
    assert rank_seed(7, 0) == 7
    seeds = {rank_seed(7, r, s) for r in range(4) for s in (0, 100)}
    assert len(seeds) == 8


# ---------------------------------------------------------------- 2 processes against 1
def test_bert_on_two_processes_follows_one_process_and_resumes_on_one(
    corpus, one_process, tmp_path
):
    two = tmp_path / "two"
    _torchrun([*BERT, "--corpus", str(corpus), "--out", str(two)])
    _assert_same_run(two, one_process, "mlm_loss")
    # 2 -> 1: stopped after step 3, resumed by one process, it ends where one process ends
    cut = _cut(two, tmp_path / "two-to-one", 3)
    assert main(["pretrain", "--out", str(cut), "--resume"]) == 0
    _assert_same_run(cut, one_process, "mlm_loss")


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_a_one_process_checkpoint_resumes_on_two(one_process, tmp_path, parallel):
    """Every rank reads the whole checkpoint; under FSDP each cuts its shards out of it, the
    optimizer state re-keyed from positions to parameter names."""
    cut = _cut(one_process, tmp_path / "one-to-two", 3)
    _torchrun(["pretrain", "--out", str(cut), "--resume", f"train.parallel={parallel}"])
    _assert_same_run(cut, one_process, "mlm_loss")


def test_fsdp_shards_and_its_checkpoints_load_on_one_process(corpus, one_process, tmp_path):
    sharded = tmp_path / "fsdp"
    _torchrun([*BERT, "--corpus", str(corpus), "--out", str(sharded), "train.parallel=fsdp"])
    _assert_same_run(sharded, one_process, "mlm_loss")  # model.safetensors: gathered whole
    # the sharded optimizer (and model) of 2 ranks resumes on one process, to the same end
    cut = _cut(sharded, tmp_path / "fsdp-to-one", 3)
    assert main(["pretrain", "--out", str(cut), "--resume"]) == 0
    _assert_same_run(cut, one_process, "mlm_loss")
    # the shards read by one process are the weights one process had at step 3
    step3 = sharded / "checkpoints" / "step-0000003"
    assert is_sharded_checkpoint(step3) and (step3 / "__1_0.distcp").exists()
    reference = load_file(one_process / "checkpoints" / "step-0000003" / "model.safetensors")
    _assert_same_weights(checkpoint_weights(step3), reference)
    _assert_same_weights(load_file(consolidate_checkpoint(step3)), reference)
    assert RunFolder.open(sharded).weights(latest_checkpoint=True).keys() == reference.keys()


def test_simclr_negatives_span_both_processes(tmp_path):
    """Each rank holds 4 of a micro-batch's 8 images; its anchors are contrasted against all 16
    views of the step, gathered from both ranks, and the gradient goes back to both."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*SIMCLR, "--out", str(one)]) == 0
    _torchrun([*SIMCLR, "--out", str(two)])
    _assert_same_run(two, one, "simclr_loss")


# ---------------------------------------------------------------- faults
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
def test_a_rank_that_dies_or_hangs_stops_the_other_within_the_timeout(corpus, tmp_path, fault):
    """Two ranks started the way torchrun starts them; rank 1 is killed (its sockets close) or
    stopped (nothing closes: only the timeout can tell) after a checkpoint. Rank 0 must exit
    non-zero with a one-line error within train.dist_timeout_s, and the newest checkpoint on
    disk must load and resume."""
    run, timeout_s = tmp_path / "run", 5
    args = [*BERT, "--corpus", str(corpus), "--out", str(run)]
    args += ["train.steps=100000", "train.checkpoint_every=2", f"train.dist_timeout_s={timeout_s}"]
    env = ENV | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    ranks = [
        subprocess.Popen(
            [sys.executable, "-m", "selfsup", *args],
            env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    try:
        deadline = time.monotonic() + 90
        while not (run / "checkpoints" / "latest").exists():
            assert time.monotonic() < deadline and ranks[0].poll() is None, "no checkpoint"
            time.sleep(0.1)
        ranks[1].send_signal(fault)
        stopped = time.monotonic()
        _, err = ranks[0].communicate(timeout=timeout_s + 30)
        waited = time.monotonic() - stopped
    finally:
        for p in ranks:
            p.kill()
            p.communicate()
    assert ranks[0].returncode == 2 and waited < timeout_s + 10, (ranks[0].returncode, waited)
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("selfsup: error: rank 0 of 2: another process of this run died"), err
    # the newest checkpoint loads, and --resume continues from it (here on one process)
    folder = RunFolder.open(run)
    cfg = folder.config(RECIPES["bert"].config_class)
    model = RECIPES["bert"].build_model(cfg, {})
    state = load_newest_intact(run / "checkpoints", model, build_optimizer(model, cfg.train))
    assert state is not None and state["step"] >= 2
    resumed_to = state["step"] + 2
    assert main(["pretrain", "--out", str(run), "--resume", f"train.steps={resumed_to}"]) == 0
    assert _train_log(run)[-1]["step"] == resumed_to
