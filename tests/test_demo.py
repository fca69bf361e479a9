"""`selfsup demo`: options checked before any work, the plan and its time estimate, what a rerun
reuses, what stays on disk, the table (aligned by display width, its notes), an interrupted
pretraining that continues, and a minimal end-to-end run (tiny step counts) whose table must hold
the arms' own final metrics."""

import json
import re
from pathlib import Path

import pytest
import torch
from helpers import assert_resume_is_exact
from safetensors.torch import load_file

import selfsup.trainer
from selfsup.cli import main
from selfsup.data.labelled import ReadReport, TaskData, TextExample, describe_reports
from selfsup.errors import UserError
from selfsup.experiments import demo
from selfsup.experiments.demo import (
    ArmResult,
    DemoConfig,
    Eta,
    describe_plan,
    format_table,
    make_plan,
    run_demo,
    summarise,
    table_notes,
)
from selfsup.recipes.text import preset_tiny as pretrain_tiny
from selfsup.reporting import display_width, text_table


def _results(seeds: int) -> list[ArmResult]:
    scores = {"pretrained": [0.80, 0.90], "scratch": [0.60, 0.70]}
    return [
        ArmResult("sentiment", arm, seed, 1e-3, 0.8, scores[arm][seed], {"test_accuracy": 0.0})
        for arm in ("pretrained", "scratch")
        for seed in range(seeds)
    ]


# --- the table -----------------------------------------------------------------------------------


def test_summary_mean_and_std_per_arm_and_the_difference():
    (row,) = summarise(_results(seeds=2))
    assert row["pretrained"] == pytest.approx((0.85, 0.05, 2))
    assert row["scratch"] == pytest.approx((0.65, 0.05, 2))
    assert row["difference"] == pytest.approx(0.2)
    assert row["metric"] == "accuracy"  # from the test_ key of the runs' metrics
    table = format_table([row])
    assert "0.850 +- 0.050" in table and "+0.200" in table


def test_one_seed_shows_no_spread():
    (row,) = summarise(_results(seeds=1))
    table = format_table([row])
    assert "+-" not in table and "n=" not in table
    assert "0.800" in table and "0.600" in table


def test_table_columns_line_up_in_a_terminal_with_chinese_text():
    rows = [
        {**row, "task": task}
        for task, row in zip(["情感分析", "ner"], summarise(_results(1)) * 2, strict=True)
    ]
    lines = format_table(rows).splitlines()
    # the metric column starts, and the last (right-aligned) column ends, at one display column
    starts = {
        display_width(line[: line.index(metric)])
        for line, metric in zip(lines, ["metric", "accuracy", "accuracy"], strict=True)
    }
    assert len(starts) == 1 and len({display_width(line) for line in lines}) == 1, lines
    assert starts == {display_width("情感分析") + 2}  # 4 characters, 8 columns, then 2 spaces
    table = text_table(["a", "b"], [["中文", "x"], ["abc", "y"]], "<>").splitlines()
    assert table == ["a     b", "中文  x", "abc   y"]


def test_table_notes_say_what_the_arms_metric_and_verdict_mean():
    notes = [" ".join(note.split()) for note in table_notes(summarise(_results(1)))]
    assert len(notes) == 3
    assert "random init: the same model" in notes[0] and "chosen on dev" in notes[0]
    assert "accuracy: share of test examples given the right label" in notes[1]
    assert "difference = pretrained - random init" in notes[2] and "--seeds 3" in notes[2]
    several = table_notes(summarise(_results(2)))
    assert "Mean +- std over 2 seeds" in several[2]
    assert all(len(line) <= 100 for note in several for line in note.splitlines())


def test_the_sentiment_tasks_drops_are_said_in_its_words():
    report = ReadReport()
    report.skip("exact duplicate", 3)
    report.skip("text with conflicting labels", 2)
    data = TaskData("sentiment", "classification", {"train": []}, "test", {"all": report}, "")
    (line,) = describe_reports(data)
    assert line == (
        "sentiment (before splitting): dropped 5 examples "
        "(exact duplicate: 3, text with conflicting labels: 2)"
    )
    qa = ReadReport(realigned=1)
    qa.reasons["answer start realigned"] += 1
    qa_data = TaskData("drcd", "qa", {"train": []}, "dev", {"train": qa}, "")
    assert describe_reports(qa_data) == [
        "drcd train: dropped 0 questions, realigned 1 answer (answer start realigned: 1)"
    ]


# --- options checked before any work -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tasks": ["foo"]}, "demo.tasks: unknown task 'foo'; expected built-in tasks ("),
        ({"tasks": []}, "demo.tasks is empty"),
        ({"tasks": ["ner", "ner"]}, "demo.tasks: ner listed twice"),
        ({"learning_rates": []}, "demo.learning_rates is empty"),
        ({"learning_rates": [1e-3, float("nan")]}, "demo.learning_rates: nan is not a positive"),
        ({"learning_rates": [0.0]}, "demo.learning_rates: 0.0 is not a positive"),
        ({"seeds": 0}, "demo.seeds must be at least 1, got 0"),
        ({"pretrain_steps": 0}, "demo.pretrain_steps must be at least 1"),
        ({"finetune_batch_size": -1}, "demo.finetune_batch_size must be at least 1"),
        ({"max_seq_len": 512}, "demo.max_seq_len must be between 4 and 128"),
        ({"max_train_examples": -5}, "demo.max_train_examples must be >= 0"),
    ],
)
def test_a_bad_option_fails_before_any_work(tmp_path, monkeypatch, change, message):
    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(demo, "pretrain", no_work)
    monkeypatch.setattr(demo, "builtin_task", no_work)  # not even a task's data is read
    with pytest.raises(UserError, match=re.escape(message)):
        run_demo(DemoConfig(**change), tmp_path / "out", progress=False, say=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_an_unknown_task_on_the_command_line_is_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "out"), "--demo.tasks", "foo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown task 'foo'" in err and "sentiment" in err


def test_an_evaluation_only_task_is_refused_before_pretraining(tmp_path, monkeypatch):
    dev = [TextExample("好", "pos")]
    eval_only = TaskData("peoples-daily-ner", "tagging", {"dev": dev}, "dev", {}, "")
    monkeypatch.setattr(demo, "builtin_task", lambda name: eval_only)
    monkeypatch.setattr(demo, "pretrain", lambda *a, **k: pytest.fail("pretraining started"))
    cfg = DemoConfig(tasks=["peoples-daily-ner"])
    with pytest.raises(UserError, match="'peoples-daily-ner' has no training split"):
        run_demo(cfg, tmp_path / "out", progress=False, say=lambda _: None)


# --- plan, time estimate, reuse ------------------------------------------------------------------


def _unwrapped(text: str) -> str:
    return " ".join(text.split())


def _finish(run: Path, metrics: dict | None = None) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "final_metrics.json").write_text(json.dumps(metrics or {}))


def test_the_plan_counts_the_runs_and_estimates_the_time(tmp_path):
    cfg = DemoConfig()
    plan = make_plan(cfg, tmp_path)
    assert len(plan.runs) == 8 and not plan.pretrained and not plan.finished
    (line,) = map(_unwrapped, describe_plan(cfg, plan, tmp_path))  # nothing to reuse
    assert line.startswith("plan: pretrain 300 steps, then 8 fine-tuning runs of 100 steps")
    assert "2 tasks x 2 arms (pretrained, random init) x 2 learning rates x 1 seed)" in line
    assert re.search(r"about 1\d min on 2 quiet CPU cores", line), line  # ~15 min, as measured


def test_a_rerun_says_what_it_reuses(tmp_path):
    cfg = DemoConfig()
    _finish(tmp_path / "pretrained")
    runs = [demo.run_name(*run) for run in demo.finetune_runs(cfg)]
    for run in runs[:3]:
        _finish(tmp_path / run)
    (tmp_path / runs[3] / "checkpoints" / "step-0000040").mkdir(parents=True)
    plan = make_plan(cfg, tmp_path)
    assert plan.pretrained and plan.finished == runs[:3] and plan.started == [runs[3]]
    reuse = _unwrapped(describe_plan(cfg, plan, tmp_path)[1])
    assert reuse == (
        f"reusing what an earlier run left in {tmp_path}: the finished pretraining; "
        "3 of 8 finished fine-tuning runs; 1 started fine-tuning runs (they continue)"
    )
    (tmp_path / "pretrained" / "final_metrics.json").unlink()
    (tmp_path / "pretrained" / "checkpoints" / "step-0000120").mkdir(parents=True)
    reuse = _unwrapped(describe_plan(cfg, make_plan(cfg, tmp_path), tmp_path)[1])
    assert "the pretraining's checkpoint at step 120 (it continues)" in reuse


def test_the_estimate_follows_the_measured_speed():
    now = [0.0]
    plan = make_plan(DemoConfig(pretrain_steps=100, finetune_steps=10), Path("/nonexistent"))
    eta = Eta(plan, clock=lambda: now[0])
    pretrain_cost = 100 + demo.PREPARE_COST
    run_cost = demo.FINETUNE_RUN_COST[0] + demo.FINETUNE_RUN_COST[1] * 10
    reference = demo.REFERENCE_STEP_SECONDS
    assert eta.remaining() == pytest.approx((pretrain_cost + 8 * run_cost) * reference)
    now[0] = 2 * pretrain_cost  # this machine: 2 s a pretraining step
    eta.pretrained(now[0])
    assert eta.remaining() == pytest.approx(8 * run_cost * 2.0)
    eta.finetuned(30.0)
    eta.finetuned(None)  # reused: no time measured
    assert eta.remaining() == pytest.approx(6 * 30.0)
    assert eta.status() == f"elapsed {2 * pretrain_cost / 60:.0f} min, about 3 min to go"


# --- what stays on disk --------------------------------------------------------------------------


def _fake_finetune(dev_scores: dict[float, float]):
    def finetune(cfg, run: Path, resume: bool = False) -> dict:
        (run / "checkpoints" / "step-0000010").mkdir(parents=True)
        (run / "model.safetensors").write_bytes(b"weights")
        (run / "checksums.json").write_text("{}")
        score = dev_scores[cfg.train.lr]
        metrics = {"dev_accuracy": score, "test_accuracy": score}
        _finish(run, metrics)
        return metrics

    return finetune


def test_only_the_chosen_learning_rates_weights_stay_and_no_checkpoints(tmp_path, monkeypatch):
    cfg = DemoConfig(learning_rates=[1e-4, 1e-3, 1e-2])
    monkeypatch.setattr(demo, "finetune", _fake_finetune({1e-4: 0.5, 1e-3: 0.7, 1e-2: 0.6}))
    plan = make_plan(cfg, tmp_path)
    eta = Eta(plan)

    def arm():
        return demo._finetune_arm(
            cfg, tmp_path / "p", tmp_path, "sentiment", "accuracy", "scratch", 0, False, eta
        )

    result = arm()
    assert (result.learning_rate, result.dev, result.reused) == (1e-3, 0.7, False)
    for lr in cfg.learning_rates:
        run = tmp_path / demo.run_name("sentiment", "scratch", 0, lr)
        assert (run / "final_metrics.json").exists() and not (run / "checkpoints").exists()
        assert (run / "model.safetensors").exists() == (lr == 1e-3)
        assert (run / "checksums.json").exists() == (lr == 1e-3)
    monkeypatch.setattr(demo, "finetune", lambda *a, **k: pytest.fail("a finished run retrained"))
    again = arm()
    assert (again.learning_rate, again.reused) == (1e-3, True)


# --- interrupting and rerunning ------------------------------------------------------------------


def test_the_pretraining_checkpoints_every_30_seconds_at_most():
    assert demo.pretrain_config(DemoConfig()).train.checkpoint_seconds <= 30
    finetune = demo.finetune_config(DemoConfig(), Path("p"), "ner", "scratch", 0, 1e-3)
    assert finetune.train.checkpoint_seconds <= 30


def test_an_interrupted_pretraining_continues_where_it_stopped(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    documents = [
        "今天天气很好。\n我们去公园。",
        "中华人民共和国。\n北京是首都。",
        "改革开放。\n人民很高兴。",
    ]
    corpus.write_text("\n\n".join(documents * 6) + "\n", encoding="utf-8")

    def tiny():
        cfg = pretrain_tiny()
        cfg.data.corpus, cfg.data.heldout_fraction = str(corpus), 0.2
        cfg.tokenizer.min_frequency = 1
        cfg.train.eval_batches, cfg.train.batch_size = 1, 4
        return cfg

    monkeypatch.setattr(demo, "pretrain_preset", tiny)
    monkeypatch.setattr(demo, "CHECKPOINT_SECONDS", 1e-9)  # a checkpoint after every step
    real_save = selfsup.trainer.save_checkpoint

    def train_run(out: Path, resume: bool, on_checkpoint) -> dict[str, torch.Tensor]:
        def save(directory, step, *args, **kwargs):
            path = real_save(directory, step, *args, **kwargs)
            if on_checkpoint is not None:
                on_checkpoint(step)  # a kill right after this checkpoint
            return path

        monkeypatch.setattr(selfsup.trainer, "save_checkpoint", save)
        # the demo decides itself whether to resume: a rerun of the same command
        run = demo._pretrain(DemoConfig(pretrain_steps=8), out, progress=False)
        assert not (run / "checkpoints").exists()  # a finished run keeps no checkpoints
        return load_file(run / "model.safetensors")

    assert_resume_is_exact(train_run, tmp_path, kill_at=3)


# --- end to end ----------------------------------------------------------------------------------


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
    assert _unwrapped(lines[0]).startswith("plan: pretrain 2 steps, then 4 fine-tuning runs of 2")
    assert any("fill-mask before pretraining" in line for line in lines)
    assert any(re.search(r"\[4/4 runs; elapsed [^,\]]+\]$", line) for line in lines), lines
    saved = json.loads((tmp_path / "demo_results.json").read_text())
    assert len(saved["runs"]) == 4  # 2 tasks x 2 arms x 1 seed
    assert (tmp_path / "pretrained_vs_scratch.png").is_file()
    assert not list(tmp_path.glob("*/checkpoints"))  # finished runs keep no checkpoints

    pretrained = _encoder(tmp_path / "pretrained" / "model.safetensors")
    table = (tmp_path / "demo_table.txt").read_text(encoding="utf-8")
    assert table.rstrip("\n") in lines  # the printed table (and its notes) is the saved one
    for row in rows:
        task, metric = row["task"], f"test_{row['metric']}"
        arms = {arm: tmp_path / f"{task}-{arm}-seed0-lr{lr:g}" for arm in ("pretrained", "scratch")}
        finals = {}
        for arm, run in arms.items():
            logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            assert any(r["step"] == cfg.finetune_steps and "task_loss" in r for r in logged)
            finals[arm] = json.loads((run / "final_metrics.json").read_text())
            assert row[arm] == (finals[arm][metric], 0.0, 1)  # one seed: its own test score
        # the table row holds each arm's own final test score, and their difference
        (line,) = [line for line in table.splitlines() if line.startswith(f"{task} ")]
        cells = line.split()[2:]
        assert cells[:2] == [f"{finals[arm][metric]:.3f}" for arm in ("pretrained", "scratch")]
        assert cells[2] == f"{finals['pretrained'][metric] - finals['scratch'][metric]:+.3f}"
        # the pretrained arm starts from the pretrained encoder and trains away from it; the
        # random-init arm starts elsewhere
        tuned = _moved(_encoder(arms["pretrained"] / "model.safetensors"), pretrained)
        scratch = _moved(_encoder(arms["scratch"] / "model.safetensors"), pretrained)
        assert 0 < tuned < scratch / 10, (tuned, scratch)
    # a second run reuses every finished part, says so, and gives the same table
    again = []
    assert run_demo(cfg, tmp_path, progress=False, say=again.append) == rows
    assert _unwrapped(again[0]).endswith(
        f"reusing what an earlier run left in {tmp_path}: the finished pretraining; "
        "4 of 4 finished fine-tuning runs"
    )
    assert sum("(reused)" in line for line in again) == 4
