"""What the `selfsup serve` tests share: one tiny run of every type the page shows, made once per
test session (whichever test file asks first), and a server on a free loopback port.

The runs are trained just enough that the page has something to show (fill-mask candidates,
answers copied from the passage, generated text); their quality is not what is tested.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from selfsup.cli import main

SENTENCES = [
    "中华人民共和国成立了。",
    "我们爱北京天安门。",
    "今天天气很好。",
    "人民日报发表社论。",
    "经济建设取得新成就。",
    "科学技术是第一生产力。",
]
QUIET = ["train.progress=false", "train.log_every=50", "train.eval_batches=1"]
FILLER = "一二三四五六七八九十"
RUN_NAMES = ("bert", "gpt", "sentiment", "tagger", "qa", "simclr")


def _jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return str(path)


def _check(args: list[str]) -> None:
    code = main(args)
    assert code == 0, f"selfsup {' '.join(args)} exited {code}"


def _pretrain_bert(root: Path) -> None:
    corpus = root / "corpus.txt"
    docs = ["\n".join(SENTENCES[i : i + 2]) for i in range(0, 6, 2)]
    docs.append(
        "括号里是什么？一二三四五六七八九十。\n好坏甲乙丙丁戊己【】。"
    )  # the tasks' characters
    corpus.write_text("\n\n".join(docs * 8) + "\n", encoding="utf-8")
    _check(
        ["pretrain", "--preset", "tiny", "--corpus", str(corpus), "--out", str(root / "bert")]
        + ["tokenizer.min_frequency=1", "train.steps=150", "train.lr=5e-3", "train.batch_size=16"]
        + ["data.heldout_fraction=0.2", *QUIET]
    )


def _pretrain_gpt(root: Path) -> None:
    corpus = root / "gpt.txt"
    turns = ["ROMEO:\nO she doth teach the torches", "JULIET:\nAy me", "ROMEO:\nShe speaks"]
    corpus.write_text("\n\n".join(turns * 6) + "\n", encoding="utf-8")
    _check(
        ["pretrain", "--preset", "gpt-tiny", "--corpus", str(corpus), "--out", str(root / "gpt")]
        + ["tokenizer.min_frequency=1", "train.steps=100", "train.lr=5e-3", "model.dropout=0"]
        + ["data.heldout_fraction=0.2", "train.batch_size=8", *QUIET]
    )


def _finetune(root: Path, name: str, kind: str, train_file: str, *extra: str) -> None:
    _check(
        ["finetune", "--preset", "tiny", "--init", str(root / "bert"), "--task", "files"]
        + ["--task.kind", kind, "--task.train_file", train_file, "--out", str(root / name)]
        + ["task.max_train_examples=0", "task.max_eval_examples=0", "train.lr=1e-3", *QUIET]
        + ["task.max_seq_len=64", *extra]  # the tiny BERT reads 64 positions
    )


def _qa_record(rng: random.Random, i: int, length: int) -> dict:
    """A passage with the answer in 【】 brackets (tests/test_finetune.py's toy task)."""
    answer = rng.choice("甲乙") + rng.choice("丙丁") + rng.choice("戊己")
    context = [rng.choice(FILLER) for _ in range(length)]
    at = rng.randrange(length)
    context = "".join(context[:at]) + "【" + answer + "】" + "".join(context[at:])
    return {
        "title": "t",
        "paragraphs": [
            {
                "context": context,
                "qas": [
                    {
                        "id": f"q{i}",
                        "question": "括号里是什么？",
                        "answers": [{"text": answer, "answer_start": at + 1}],
                    }
                ],
            }
        ],
    }


def _finetune_tasks(root: Path) -> None:
    rng = random.Random(0)
    sentiment = []
    for _ in range(200):
        label = rng.choice(["pos", "neg"])
        chars = [rng.choice(FILLER) for _ in range(rng.randint(4, 10))]
        chars.insert(rng.randrange(len(chars)), "好" if label == "pos" else "坏")
        sentiment.append({"text": "".join(chars), "label": label})
    _finetune(root, "sentiment", "classification", _jsonl(root / "sent.jsonl", sentiment))
    lines = []
    for _ in range(150):  # 北京 is a place (B-LOC I-LOC) among filler characters (O)
        chars = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        at = rng.randrange(len(chars))
        tagged = [(c, "O") for c in chars[:at]] + [("北", "B-LOC"), ("京", "I-LOC")]
        lines += [f"{c} {t}" for c, t in tagged + [(c, "O") for c in chars[at:]]] + [""]
    (root / "tags.bio").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _finetune(root, "tagger", "tagging", str(root / "tags.bio"))
    squad = {"data": [_qa_record(rng, i, rng.randint(5, 40)) for i in range(200)]}
    (root / "qa.json").write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    _finetune(
        root,
        "qa",
        "qa",
        str(root / "qa.json"),
        "task.max_seq_len=32",
        "task.max_question_len=8",
        "task.stride=8",
        "train.steps=150",
        "--task.lang",
        "zh",
    )


def _pretrain_simclr(root: Path) -> None:
    _check(
        ["pretrain", "--arch", "simclr", "--preset", "tiny", "--out", str(root / "simclr")]
        + ["train.steps=4", *QUIET]
    )


def write_digit_folder(folder: Path, count: int = 24) -> Path:
    """`count` of scikit-learn's 8x8 digits as PNG files: the neighbours the image page searches."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    for i in range(count):
        pixels = np.round(digits.images[i] * (255 / 16)).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"digit{digits.target[i]}-{i:02d}.png")
    return folder


def make_tiny_runs(root: Path) -> dict[str, Path]:
    """Every run type the page shows, under `root` (reused when already there), plus an image
    folder: {"bert": path, ..., "images": folder}."""
    root.mkdir(parents=True, exist_ok=True)
    done = lambda name: (root / name / "model.safetensors").exists()  # noqa: E731
    if not done("bert"):
        _pretrain_bert(root)
    if not done("gpt"):
        _pretrain_gpt(root)
    if not all(done(n) for n in ("sentiment", "tagger", "qa")):
        _finetune_tasks(root)
    if not done("simclr"):
        _pretrain_simclr(root)
    images = root / "digits"
    if not images.exists():
        write_digit_folder(images)
    return {**{name: root / name for name in RUN_NAMES}, "images": images}


@contextmanager
def running_server(runs: dict[str, Path]) -> Iterator[str]:
    """`selfsup serve` of every tiny run on a free loopback port, in a thread: yields its URL."""
    from selfsup.serve.app import build_app, listening_server
    from selfsup.serve.runs import load_served_runs

    served = load_served_runs([runs[n] for n in RUN_NAMES], images=runs["images"])
    server, sock = listening_server(build_app(served), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
