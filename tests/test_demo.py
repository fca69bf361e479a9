"""`selfsup demo`: the table arithmetic, and a minimal end-to-end run (tiny step counts) whose
table must hold the arms' own final metrics."""

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfsup.experiments.demo import ArmResult, DemoConfig, format_table, run_demo, summarise


def test_summary_mean_and_std_per_arm():
    results = [
        ArmResult("sentiment", "pretrained", 0, 1e-3, 0.8, 0.80),
        ArmResult("sentiment", "pretrained", 1, 1e-3, 0.8, 0.90),
        ArmResult("sentiment", "scratch", 0, 3e-4, 0.7, 0.60),
        ArmResult("sentiment", "scratch", 1, 3e-4, 0.7, 0.70),
    ]
    (row,) = summarise(results)
    assert row["pretrained"] == pytest.approx((0.85, 0.05, 2))
    assert row["scratch"] == pytest.approx((0.65, 0.05, 2))
    assert "0.850 +- 0.050 (n=2)" in format_table([row])


def _encoder(weights: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(weights).items() if k.startswith("encoder.")}


def _moved(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest change of any encoder weight between two states of the same encoder."""
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_demo_end_to_end_tiny(tmp_path):
    # fine-tuning's lr is 100x below pretraining's (1e-3), so two fine-tuning steps move an
    # encoder far less than pretraining did: where each arm started stays visible in its weights
    lr = 1e-5
    cfg = DemoConfig(
        pretrain_steps=2,
        finetune_steps=2,
        finetune_batch_size=4,
        max_seq_len=32,
        learning_rates=[lr],
        max_train_examples=40,
        max_eval_examples=20,
    )
    lines = []
    rows = run_demo(cfg, tmp_path, progress=False, say=lines.append)
    assert [r["task"] for r in rows] == ["sentiment", "ner"]
    assert any("fill-mask before pretraining" in line for line in lines)
    saved = json.loads((tmp_path / "demo_results.json").read_text())
    assert len(saved["runs"]) == 4  # 2 tasks x 2 arms x 1 seed
    assert (tmp_path / "pretrained_vs_scratch.png").is_file()

    pretrained = _encoder(tmp_path / "pretrained" / "model.safetensors")
    table = (tmp_path / "demo_table.txt").read_text(encoding="utf-8")
    assert table.rstrip("\n") in lines  # the printed table is the saved one
    for row in rows:
        task, metric = row["task"], f"test_{row['metric']}"
        arms = {arm: tmp_path / f"{task}-{arm}-seed0-lr{lr:g}" for arm in ("pretrained", "scratch")}
        finals = {}
        for arm, run in arms.items():
            logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            assert any(r["step"] == cfg.finetune_steps and "task_loss" in r for r in logged)
            finals[arm] = json.loads((run / "final_metrics.json").read_text())
            assert row[arm] == (finals[arm][metric], 0.0, 1)  # one seed: its own test score
        # the table row holds each arm's own final test score
        (line,) = [line for line in table.splitlines() if line.startswith(f"{task} ")]
        cells = re.findall(r"(\d\.\d{3}) \+- 0\.000 \(n=1\)", line)
        assert cells == [f"{finals[arm][metric]:.3f}" for arm in ("pretrained", "scratch")]
        # the pretrained arm starts from the pretrained encoder and trains away from it; the
        # random-init arm starts elsewhere
        tuned = _moved(_encoder(arms["pretrained"] / "model.safetensors"), pretrained)
        scratch = _moved(_encoder(arms["scratch"] / "model.safetensors"), pretrained)
        assert 0 < tuned < scratch / 10, (tuned, scratch)
    # a second run reuses every finished part and gives the same table
    assert run_demo(cfg, tmp_path, progress=False, say=lambda _: None) == rows
