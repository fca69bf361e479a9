"""The `selfsup` command end to end on tiny corpora: overfitting, kill -9 and resume, fill-mask,
and one-line errors with exit code 2 for user mistakes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfsup.cli import main

SENTENCES = [
    "中华人民共和国成立了。",
    "我们爱北京天安门。",
    "今天天气很好。",
    "人民日报发表社论。",
    "经济建设取得新成就。",
    "科学技术是第一生产力。",
]
TINY = ["--preset", "tiny", "train.progress=false", "train.log_every=10", "train.eval_batches=2"]


def _write_corpus(path: Path, copies: int = 8) -> Path:
    # the same three documents repeated: held-out documents are copies of training ones, so the
    # held-out loss measures memorisation (what "overfit a tiny corpus" means)
    docs = ["\n".join(SENTENCES[i : i + 2]) for i in range(0, 6, 2)]
    path.write_text("\n\n".join(docs * copies) + "\n", encoding="utf-8")
    return path


def _run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_tiny_model_overfits_tiny_corpus_and_fills_masks(tmp_path, capsys):
    corpus = _write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    code, out, err = _run(
        [
            "pretrain",
            *TINY,
            "--corpus",
            str(corpus),
            "--out",
            str(run),
            "tokenizer.min_frequency=1",
            "train.steps=300",
            "train.lr=5e-3",
            "model.dropout=0",
            "model.attention_dropout=0",
            "train.batch_size=16",
            "data.heldout_fraction=0.2",
        ],
        capsys,
    )
    assert code == 0, err
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["eval_mlm_loss"] < 0.3, final  # from ln(vocab) ~ 3.9
    assert final["eval_mlm_accuracy"] > 0.9
    for name in (
        "run.json",
        "config.json",
        "tokenizer/tokenizer.json",
        "model.safetensors",
        "metrics.jsonl",
        "loss_curve.png",
        "data/train/meta.json",
    ):
        assert (run / name).exists(), name
    code, out, _ = _run(
        ["fill-mask", str(run), "中华人民共[MASK]国成立了。我们爱北京天安门。", "--top-k", "3"],
        capsys,
    )
    assert code == 0
    assert out.splitlines()[1].split("\t")[0].strip() == "和"


def _pretrain_subprocess(corpus: Path, run: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    args = [
        "pretrain",
        *TINY,
        "--corpus",
        str(corpus),
        "--out",
        str(run),
        "tokenizer.min_frequency=1",
        "--objectives",
        "mlm,sop",
        "train.steps=120",
        "train.checkpoint_every=10",
        *extra,
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "selfsup.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_kill_minus_9_then_resume_equals_uninterrupted_run(tmp_path):
    corpus = _write_corpus(tmp_path / "corpus.txt")
    full = _pretrain_subprocess(corpus, tmp_path / "full")
    assert full.wait(timeout=300) == 0, full.stderr.read().decode()

    cut = tmp_path / "cut"
    proc = _pretrain_subprocess(corpus, cut)
    latest = cut / "checkpoints" / "latest"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step-0000030":
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "model.safetensors").exists()

    resumed = _pretrain_subprocess(corpus, cut, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [json.loads(line)["step"] for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 120

    # the pretraining report re-scores the held-out pairs the run evaluated on
    from selfsup.experiments.pretraining_report import report

    table = report(cut, count=3)
    final = json.loads((cut / "final_metrics.json").read_text())
    assert f"| held-out SOP accuracy | {final['eval_sop_accuracy']:.3f} |" in table
    assert "SOP balanced accuracy" in table and "held-out MLM accuracy" in table
    assert f"| held-out MLM top-5 accuracy | {final['eval_mlm_top5_accuracy']:.3f} |" in table

    # the curve: one point per evaluation, minutes rising across the kill and the resume
    from selfsup.experiments.pretraining_report import heldout_curve, plot_curves

    curve = heldout_curve(cut)
    evaluations = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in evaluations if "eval_mlm_accuracy" in r]
    assert [a for _, a, _ in curve] == [r["eval_mlm_accuracy"] for r in evaluations]
    minutes = [m for m, _, _ in curve]
    assert minutes == sorted(minutes) and minutes[0] > 0
    assert final["eval_mlm_top5_accuracy"] >= final["eval_mlm_accuracy"]
    plot_curves([cut, tmp_path / "full"], tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0


def _bad_utf8(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("第一句。\n".encode() + b"\xff\xfe oops\n")
    return path


@pytest.mark.parametrize(
    "make_args,message",
    [
        (lambda t: ["--corpus", str(t / "missing.txt")], "missing.txt"),
        (
            lambda t: ["--corpus", str((t / "empty.txt", (t / "empty.txt").write_text("\n\n"))[0])],
            "empty",
        ),
        (lambda t: ["--corpus", str(_bad_utf8(t))], "byte 13"),
        (lambda t: ["model.num_layerz=2"], "unknown config key 'model.num_layerz'"),
        (lambda t: ["--model.max_position", "32", "--data.max_seq_len", "64"], "position table"),
        (lambda t: ["--objectives", "mlm,xyz"], "unknown xyz"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, make_args, message):
    code, _, err = _run(
        ["pretrain", *TINY, "--out", str(tmp_path / "run"), *make_args(tmp_path)], capsys
    )
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("selfsup: error:"), err
    assert message in lines[0]


def test_fill_mask_on_a_fine_tuned_run_is_a_clear_error(tmp_path, capsys):
    from selfsup.runs import RunFolder

    RunFolder(tmp_path).write_marker("finetune", "bert")
    code, _, err = _run(["fill-mask", str(tmp_path), "a[MASK]"], capsys)
    assert code == 2 and "needs a run from selfsup pretrain" in err


def test_fill_mask_on_an_image_run_is_a_clear_error(tmp_path, capsys):
    from selfsup.runs import RunFolder

    RunFolder(tmp_path).write_marker("pretraining", "simclr")
    code, _, err = _run(["fill-mask", str(tmp_path), "a[MASK]"], capsys)
    assert code == 2 and "an image run (simclr)" in err and "selfsup probe" in err


def test_finetune_from_a_gpt_run_is_a_clear_error(tmp_path, capsys):
    from selfsup.runs import RunFolder

    run = tmp_path / "gpt"
    RunFolder(run).write_marker("pretraining", "gpt")
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "好", "label": "pos"}\n{"text": "坏", "label": "neg"}\n')
    args = ["finetune", "--init", str(run), "--task", "files", "--task.kind", "classification"]
    code, _, err = _run(
        [*args, "--task.train_file", str(train), "--out", str(tmp_path / "ft")], capsys
    )
    assert code == 2 and "a gpt run; fine-tuning starts from a BERT encoder" in err


def test_not_a_run_folder(tmp_path, capsys):
    code, _, err = _run(["fill-mask", str(tmp_path), "a[MASK]"], capsys)
    assert code == 2 and "not a selfsup run" in err
    code, _, err = _run(["pretrain", *TINY, "--out", str(tmp_path), "--resume"], capsys)
    assert code == 2 and "not a selfsup run" in err


def test_existing_run_needs_resume(tmp_path, capsys):
    corpus = _write_corpus(tmp_path / "corpus.txt", copies=2)
    args = [
        "pretrain",
        *TINY,
        "--corpus",
        str(corpus),
        "--out",
        str(tmp_path / "r"),
        "train.steps=2",
    ]
    assert _run(args, capsys)[0] == 0
    code, _, err = _run(args, capsys)
    assert code == 2 and "--resume" in err


@pytest.mark.parametrize("command", ["pretrain", "finetune", "demo"])
def test_help_documents_every_config_key(command, capsys):
    from selfsup.config import iter_fields
    from selfsup.experiments.demo import DemoConfig
    from selfsup.recipes.finetune import FinetuneConfig
    from selfsup.recipes.text import PretrainConfig

    cfg_cls = {"pretrain": PretrainConfig, "finetune": FinetuneConfig, "demo": DemoConfig}[command]
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for key, _, _ in iter_fields(cfg_cls):
        assert key.replace("_", "-") in text or key in text, key
