"""The training loop: LR schedule, accumulation equals one big batch, checkpoints, exact resume."""

import json

import pytest
import torch
from helpers import Killed, assert_resume_is_exact, kill_after_checkpoint
from safetensors.torch import load_file

from selfsup.batch import IGNORE_INDEX
from selfsup.checkpoint import flatten_state, unflatten_state
from selfsup.models.transformer import TransformerConfig
from selfsup.objectives.bert_pretraining import BertPretrainer
from selfsup.trainer import TrainConfig, lr_at, train

CFG = TransformerConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, max_position=32)


def _random_batch(g, B=4, T=12, rate=0.3):
    ids = torch.randint(5, 50, (B, T), generator=g)
    labels = torch.where(
        torch.rand(B, T, generator=g) < rate, ids, torch.full_like(ids, IGNORE_INDEX)
    )
    labels[0, 1] = ids[0, 1]  # at least one masked token
    inputs = torch.where(labels != IGNORE_INDEX, torch.full_like(ids, 4), ids)
    sop = torch.randint(0, 2, (B,), generator=g)
    return {
        "input_ids": inputs,
        "attention_mask": torch.ones(B, T, dtype=torch.long),
        "token_type_ids": torch.zeros(B, T, dtype=torch.long),
        "mlm_labels": labels,
        "sop_labels": sop,
        "num_tokens": B * T,
    }


class RandomData:
    """A counter-based batch source like the real one: batch i depends on i only."""

    def batch(self, index):
        return _random_batch(torch.Generator().manual_seed(1000 + index))

    def eval_batches(self, n):
        return [_random_batch(torch.Generator().manual_seed(7 + i)) for i in range(n)]


def test_lr_schedule():
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10, schedule="linear")
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.5) and lr_at(110, cfg) == pytest.approx(0.0)
    cos = TrainConfig(steps=110, lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(60, cos) == pytest.approx(0.55) and lr_at(110, cos) == pytest.approx(0.1)


def test_accumulation_equals_one_big_batch():
    torch.manual_seed(0)
    model = BertPretrainer(
        TransformerConfig(**{**CFG.__dict__, "dropout": 0.0, "attention_dropout": 0.0}),
        ["mlm", "sop"],
    )
    g = torch.Generator().manual_seed(0)
    a, b = _random_batch(g, rate=0.1), _random_batch(g, rate=0.5)  # different masked counts
    counts_a, counts_b = model.item_counts(a), model.item_counts(b)
    assert counts_a == {
        "mlm": int((a["mlm_labels"] != IGNORE_INDEX).sum()),
        "sop": len(a["sop_labels"]),
    }
    assert counts_a["mlm"] != counts_b["mlm"]
    totals = {k: counts_a[k] + counts_b[k] for k in counts_a}
    for mb in (a, b):
        model(mb).total_loss(totals).backward()
    accumulated = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    big = {
        k: torch.cat([a[k], b[k]])
        for k in ("input_ids", "attention_mask", "token_type_ids", "mlm_labels", "sop_labels")
    }
    model(big).total_loss(totals).backward()
    for p, g_acc in zip(model.parameters(), accumulated):
        torch.testing.assert_close(p.grad, g_acc, atol=1e-6, rtol=1e-5)


def test_checkpoint_state_round_trip():
    state = {
        "step": 3,
        "rng": {"torch": torch.get_rng_state()},
        "nested": [torch.ones(2), {"x": 1.5}],
    }
    tensors = {}
    layout = flatten_state(state, tensors)
    json.dumps(layout)  # everything but tensors is plain JSON
    back = unflatten_state(json.loads(json.dumps(layout)), tensors)
    assert back["step"] == 3 and torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    assert torch.equal(back["nested"][0], torch.ones(2)) and back["nested"][1] == {"x": 1.5}


def _train(run_dir, resume=False, on_checkpoint=None):
    torch.manual_seed(0)
    model = BertPretrainer(CFG, ["mlm", "sop"])  # dropout on: the RNG state must be resumed too
    cfg = TrainConfig(
        steps=8,
        batch_size=4,
        grad_accum=2,
        lr=3e-3,
        warmup_steps=2,
        checkpoint_every=3,
        log_every=1,
        eval_batches=2,
        progress=False,
    )
    train(model, RandomData(), cfg, run_dir, resume=resume, on_checkpoint=on_checkpoint)
    return load_file(run_dir / "model.safetensors")


def test_resume_reproduces_uninterrupted_run(tmp_path):
    assert_resume_is_exact(_train, tmp_path, kill_at=6)
    steps = [
        json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    ]
    assert sorted(set(steps)) == list(range(1, 9))
    assert (tmp_path / "cut" / "checkpoints" / "latest").read_text().strip() == "step-0000008"


def test_loss_goes_down():
    torch.manual_seed(0)
    model = BertPretrainer(
        TransformerConfig(**{**CFG.__dict__, "dropout": 0.0, "attention_dropout": 0.0}), ["mlm"]
    )

    class Fixed(RandomData):  # one batch, learned by heart
        def batch(self, index):
            return _random_batch(torch.Generator().manual_seed(1))

        def eval_batches(self, n):
            return [self.batch(0)]

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig(
            steps=100, batch_size=4, lr=3e-3, warmup_steps=5, log_every=10, progress=False
        )
        metrics = train(model, Fixed(), cfg, Path(d))
    assert (
        metrics["eval_mlm_loss"] < 0.2 and metrics["eval_mlm_accuracy"] == 1.0
    )  # from ~ln 50 = 3.9


def test_device_names_are_checked():
    from selfsup.errors import UserError
    from selfsup.trainer import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="expected auto, cpu"):
        resolve_device("gpu")
    with pytest.raises(UserError, match="train.device='cuda:99'"):
        resolve_device("cuda:99")  # no GPU here, or fewer than 100


def _checkpointed_steps(tmp_path, monkeypatch, seconds: float, clock_step: float) -> list[int]:
    """The steps `train` checkpoints at with `checkpoint_seconds=seconds`, when each step takes
    `clock_step` seconds of a fake clock."""
    import selfsup.trainer as trainer

    now = [0.0]

    def clock() -> float:
        now[0] += clock_step / 4  # the loop reads the clock a few times a step
        return now[0]

    monkeypatch.setattr(trainer.time, "perf_counter", clock)
    torch.manual_seed(0)
    model = BertPretrainer(CFG, ["mlm"])
    cfg = TrainConfig(
        steps=10, batch_size=2, checkpoint_every=100, checkpoint_seconds=seconds, progress=False
    )
    saved: list[int] = []
    train(model, RandomData(), cfg, tmp_path, on_checkpoint=saved.append)
    return saved


def test_checkpoint_seconds_bounds_the_training_a_stop_loses(tmp_path, monkeypatch):
    # 10 "seconds" a step: every 30 s is every third step or so, and always the last one
    every_30s = _checkpointed_steps(tmp_path / "a", monkeypatch, seconds=30.0, clock_step=10.0)
    assert every_30s[-1] == 10 and len(every_30s) >= 3
    assert all(b - a <= 4 for a, b in zip([0, *every_30s], every_30s))
    assert _checkpointed_steps(tmp_path / "b", monkeypatch, seconds=0.0, clock_step=10.0) == [10]
    with pytest.raises(Exception, match="checkpoint_seconds"):
        TrainConfig(checkpoint_seconds=float("nan")).validate()


def test_the_loop_hands_freed_memory_back_to_the_os(tmp_path, monkeypatch):
    import selfsup.trainer as trainer

    calls = []
    monkeypatch.setattr(trainer, "_MALLOC_TRIM", calls.append)
    monkeypatch.setattr(trainer, "TRIM_SECONDS", 0.0)  # every step
    torch.manual_seed(0)
    cfg = TrainConfig(steps=3, batch_size=2, progress=False)
    train(BertPretrainer(CFG, ["mlm"]), RandomData(), cfg, tmp_path)
    assert calls == [0] * 4  # after each step and once at the end
    monkeypatch.undo()
    trainer.release_freed_memory()  # the real one: malloc_trim on glibc, else nothing


def test_evaluations_record_the_runs_wall_time_across_a_resume(tmp_path, monkeypatch):
    """elapsed_s counts the run's training and evaluation time; a resumed process (its clock
    starting again at 0) continues from the checkpoint's count, so learning curves against wall
    time stay right after Ctrl-C."""
    import selfsup.trainer as trainer

    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(trainer.time, "perf_counter", clock)
    cfg = TrainConfig(steps=6, batch_size=2, eval_every=2, checkpoint_every=4, progress=False)

    def run(resume: bool, on_checkpoint=None) -> None:
        torch.manual_seed(0)
        train(
            BertPretrainer(CFG, ["mlm"]),
            RandomData(),
            cfg,
            tmp_path,
            resume,
            None,
            None,
            on_checkpoint,
        )

    with pytest.raises(Killed):
        run(False, kill_after_checkpoint(4))
    now[0] = 0.0  # a new process
    run(True)
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evaluations = [(r["step"], r["elapsed_s"]) for r in records if "elapsed_s" in r]
    assert [step for step, _ in evaluations] == [2, 4, 6]
    seconds = [s for _, s in evaluations]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert seconds[2] > seconds[1] + 1  # the resume added to the count, never restarted it
