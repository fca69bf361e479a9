"""`selfsup demo`: the table arithmetic, and a minimal end-to-end run (tiny step counts)."""

import json

import pytest

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


@pytest.mark.slow
def test_demo_end_to_end_tiny(tmp_path):
    cfg = DemoConfig(
        pretrain_steps=2,
        finetune_steps=2,
        finetune_batch_size=4,
        max_seq_len=32,
        learning_rates=[1e-3],
        max_train_examples=40,
        max_eval_examples=20,
    )
    lines = []
    rows = run_demo(cfg, tmp_path, progress=False, say=lines.append)
    assert [r["task"] for r in rows] == ["sentiment", "ner"]
    assert (tmp_path / "pretrained_vs_scratch.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "demo_results.json").read_text())
    assert len(saved["runs"]) == 4  # 2 tasks x 2 arms x 1 seed
    assert any("fill-mask before pretraining" in line for line in lines)
    # a second run reuses every finished part and gives the same table
    assert run_demo(cfg, tmp_path, progress=False, say=lambda _: None) == rows
