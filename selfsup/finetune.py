"""`selfsup finetune`: a pretrained encoder (or a random one) + a fresh head, trained on labels.

The four task kinds of the lecture, one registry (`TASK_KINDS` below):
    classification   one text -> a class, from [CLS]                     (tasks/classification.py)
    pair             [CLS] A [SEP] B [SEP] -> a class, from [CLS]         (tasks/classification.py)
    tagging          one text -> a class per token (segmentation, POS, NER)   (tasks/tagging.py)
    qa               question + passage -> the answer span, over windows     (tasks/qa.py)

The head is randomly initialised and the whole model is trained. `init` names a selfsup run (its
tokenizer, sizes and encoder weights are taken) or "random" (a tokenizer is trained on the task's
own training texts); `random_init=true` keeps an init run's tokenizer and sizes but not its
weights: the "same model, no pretraining" arm of a fair comparison.

Run folder: run.json, config.json, tokenizer/, labels.json, model.safetensors (encoder + head),
metrics.jsonl, loss_curve.png, final_metrics.json, and test predictions (predictions.json).
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from selfsup.config import load_config, option, save_run_config
from selfsup.errors import UserError
from selfsup.io import atomic_write_json
from selfsup.models.bert import BertModel
from selfsup.models.transformer import TransformerConfig
from selfsup.pretrain import TokenizerConfig, check_run_dir, read_run_marker, write_run_marker
from selfsup.trainer import TrainConfig

KINDS = ("classification", "pair", "tagging", "qa")


@dataclass
class TaskConfig:
    name: str = option(
        "sentiment",
        "a built-in task (sentiment, seg, pos, ner; from ../shared/data: chnsenticorp, waimai, "
        "ocnli, msra-ner, peoples-daily-ner, weibo-ner, sst2, wnut17, drcd, squad-dev) or 'files'",
    )
    kind: Literal["auto", "classification", "pair", "tagging", "qa"] = option(
        "auto", "task kind; auto = the built-in task's own (required with name=files)"
    )
    train_file: str | None = option(
        None, "training data (name=files): CSV/TSV/JSONL, CoNLL/BIO, SQuAD JSON"
    )
    dev_file: str | None = option(None, "development data (name=files); default: 10% of train")
    test_file: str | None = option(None, "test data (name=files); default: the dev data")
    text_field: str = option("text", "column/field holding the text (classification, pair)")
    text_b_field: str | None = option(None, "column/field holding the second text (pair)")
    label_field: str = option("label", "column/field holding the label")
    skip_bad: bool = option(False, "skip (and count) bad records instead of stopping with an error")
    max_train_examples: int = option(0, "use only the first N training examples (0: all)")
    max_eval_examples: int = option(0, "evaluate on the first N dev/test examples (0: all)")
    max_seq_len: int = option(128, "tokens per input, [CLS] and [SEP] included")
    max_question_len: int = option(32, "qa: question tokens kept")
    stride: int = option(
        32, "qa: tokens between window starts (overlap = context tokens per window - stride)"
    )
    max_answer_len: int = option(30, "qa: longest answer in tokens")
    n_best: int = option(20, "qa: start and end candidates per window")
    no_answer_window: Literal["cls", "drop"] = option(
        "cls", "qa training: a window without the answer is labelled at [CLS] or dropped"
    )
    random_offset: bool = option(False, "qa training: shift the window grid randomly per example")
    qa_loss_over: Literal["passage", "window"] = option(
        "passage",
        "qa training: start/end softmax over passage tokens + [CLS], or over the whole padded "
        "window as transformers' BertForQuestionAnswering does",
    )
    max_context_rule: bool = option(
        True,
        "qa inference: score a start only in the window where it has the most context (BERT); "
        "false: best score over every window that holds it",
    )
    lang: Literal["auto", "en", "zh"] = option("auto", "qa metric language")


@dataclass
class FinetuneConfig:
    init: str = option("random", "a selfsup run folder to start from, or 'random'")
    random_init: bool = option(
        False, "keep init's tokenizer and sizes but start from random weights"
    )
    head_dropout: float = option(0.1, "dropout before the task head")
    task: TaskConfig = option(TaskConfig(), "")
    model: TransformerConfig = option(TransformerConfig(), "")
    tokenizer: TokenizerConfig = option(TokenizerConfig(), "")
    train: TrainConfig = option(TrainConfig(lr=1e-4, eval_every=0, checkpoint_every=200), "")


def preset_tiny() -> FinetuneConfig:
    """Seconds: tests and a first look."""
    cfg = FinetuneConfig()
    cfg.task.max_train_examples, cfg.task.max_eval_examples = 400, 200
    cfg.train.steps = 40
    return cfg


def preset_small() -> FinetuneConfig:
    """Minutes on 2 cores, for the small pretrained BERT (width 256)."""
    cfg = FinetuneConfig()
    cfg.train = TrainConfig(
        steps=300,
        batch_size=32,
        lr=3e-4,
        warmup_steps=30,
        eval_every=0,
        checkpoint_every=100,
        log_every=20,
        adam_beta2=0.98,
    )
    return cfg


PRESETS = {"tiny": preset_tiny, "small": preset_small}


# ---------------------------------------------------------------- data
def load_task_data(cfg: TaskConfig):
    """TaskData of a built-in task, or of the files named in the config."""
    from selfsup.data import tasks as data

    if cfg.name != "files":
        return data.builtin_task(cfg.name)
    if cfg.kind == "auto":
        raise UserError(
            "task.kind is required with task.name=files (classification, pair, tagging or qa)"
        )
    if not cfg.train_file:
        raise UserError("task.train_file is required with task.name=files")

    def read(path: str, training: bool):
        if cfg.kind in ("classification", "pair"):
            text_b = cfg.text_b_field if cfg.kind == "pair" else None
            if cfg.kind == "pair" and not text_b:
                raise UserError("task.text_b_field is required for a pair task")
            return data.read_classification(
                path, cfg.text_field, cfg.label_field, text_b, cfg.skip_bad
            )
        if cfg.kind == "tagging":
            return data.read_tagging(path, cfg.skip_bad)
        return data.read_squad(path, training, cfg.skip_bad)

    train, report = read(cfg.train_file, True)
    splits, reports = {"train": train}, {"train": report}
    if cfg.dev_file:
        splits["dev"], reports["dev"] = read(cfg.dev_file, False)
    else:  # hold out the last 10% of the training file
        cut = max(1, len(train) // 10)
        splits["train"], splits["dev"] = train[:-cut], train[-cut:]
    if cfg.test_file:
        splits["test"], reports["test"] = read(cfg.test_file, False)
    else:
        splits["test"] = splits["dev"]
    return data.TaskData("files", cfg.kind, splits, "test", reports, cfg.train_file)


_REPORTED: set[str] = set()


def describe_reports(data) -> list[str]:
    """One line per split saying what its reader skipped or repaired (nothing: no line)."""
    lines, seen = [], set()
    for split, report in data.reports.items():
        if id(report) in seen or not (report.skipped or report.realigned):
            continue
        seen.add(id(report))
        reasons = ", ".join(f"{n} {reason}" for reason, n in report.reasons.most_common())
        lines.append(
            f"{data.name} {split}: skipped {report.skipped} record(s), realigned {report.realigned} "
            f"answer(s) ({reasons})"
        )
    return lines


def label_set(kind: str, examples: list) -> list[str]:
    if kind in ("classification", "pair"):
        return sorted({e.label for e in examples})
    if kind == "tagging":
        tags = sorted({t for e in examples for t in e.tags})
        return (["O"] if "O" in tags else []) + [t for t in tags if t != "O"]
    return []


def build_task(kind: str, tokenizer, labels: list[str], cfg: TaskConfig, seed: int):
    from selfsup.tasks.classification import ClassificationTask
    from selfsup.tasks.qa import QuestionAnsweringTask
    from selfsup.tasks.qa_windows import WindowConfig
    from selfsup.tasks.tagging import TaggingTask

    if kind in ("classification", "pair"):
        return ClassificationTask(tokenizer, labels, cfg.max_seq_len, pair=kind == "pair")
    if kind == "tagging":
        return TaggingTask(tokenizer, labels, cfg.max_seq_len)
    windows = WindowConfig(
        max_seq_len=cfg.max_seq_len,
        max_question_len=cfg.max_question_len,
        stride=cfg.stride,
        max_answer_len=cfg.max_answer_len,
        n_best=cfg.n_best,
        no_answer_window=cfg.no_answer_window,
        random_offset=cfg.random_offset,
        loss_over=cfg.qa_loss_over,
        max_context_rule=cfg.max_context_rule,
    )
    return QuestionAnsweringTask(tokenizer, windows, cfg.lang, seed)


# ---------------------------------------------------------------- init
@dataclass
class Init:
    tokenizer: Any
    model: TransformerConfig
    encoder_state: dict[str, torch.Tensor] | None


def _texts(kind: str, examples: list) -> list[str]:
    if kind == "qa":
        return [t for e in examples for t in (e.question, e.context)]
    return [t for e in examples for t in (e.text, getattr(e, "text_b", None) or "") if t]


def is_hf_checkpoint(path: Path) -> bool:
    """A Hugging Face model folder (config.json, no selfsup run.json)."""
    return (path / "config.json").is_file() and not (path / "run.json").exists()


def resolve_init(cfg: FinetuneConfig, kind: str, train_examples: list) -> Init:
    """Tokenizer, sizes and (unless random) encoder weights to start from."""
    from safetensors.torch import load_file

    from selfsup.data.tokenizer import Tokenizer, train_tokenizer

    if cfg.init == "random":
        tok_cfg = cfg.tokenizer
        if tok_cfg.vocab_file:
            tokenizer = Tokenizer.from_vocab_file(tok_cfg.vocab_file, lowercase=tok_cfg.lowercase)
        else:
            tokenizer = train_tokenizer(
                tok_cfg.kind,
                _texts(kind, train_examples),
                tok_cfg.vocab_size,
                tok_cfg.min_frequency,
                tok_cfg.lowercase,
            )
        model = copy.deepcopy(cfg.model)
        model.vocab_size = tokenizer.vocab_size
        return Init(tokenizer, model, None)
    run = Path(cfg.init)
    if is_hf_checkpoint(run):
        from selfsup.interop.huggingface import load_hf_bert

        checkpoint = load_hf_bert(run)
        if checkpoint.tokenizer is None:
            raise UserError(f"{run}: has no vocab.txt or tokenizer.json to tokenize with")
        state = None if cfg.random_init else checkpoint.encoder_state
        return Init(checkpoint.tokenizer, checkpoint.config, state)
    marker = read_run_marker(run)
    if marker.get("kind") == "pretraining" and marker.get("arch", "bert") != "bert":
        raise UserError(
            f"{run}: a {marker['arch']} run; fine-tuning starts from a BERT encoder "
            "(selfsup pretrain --arch bert, a fine-tuned run, or a Hugging Face BERT folder)"
        )
    model = TransformerConfig(**json.loads((run / "config.json").read_text())["model"])
    tokenizer = Tokenizer.load(run / "tokenizer")
    if cfg.random_init:  # the run's tokenizer and sizes only: its weights are not needed
        return Init(tokenizer, model, None)
    weights = run / "model.safetensors"
    if not weights.exists():
        raise UserError(f"{run}: has no model.safetensors (did its training finish?)")
    state = {
        k[len("encoder.") :]: v for k, v in load_file(weights).items() if k.startswith("encoder.")
    }
    if not state:
        raise UserError(f"{weights}: holds no encoder weights")
    return Init(tokenizer, model, state)


# ---------------------------------------------------------------- the pipeline
def _limit(examples: list, n: int, seed: int = 0) -> list:
    """A seeded random subset of n examples, in their original order (all when n <= 0)."""
    if n <= 0 or n >= len(examples):
        return examples
    import numpy as np

    keep = np.sort(np.random.default_rng(seed).choice(len(examples), n, replace=False))
    return [examples[i] for i in keep]


def finetune(cfg: FinetuneConfig, run_dir: str | Path, resume: bool = False) -> dict[str, float]:
    """Fine-tune and evaluate; returns dev and test metrics (prefixed dev_ / test_)."""
    from selfsup.plots import plot_loss_curve
    from selfsup.tasks.base import FeatureBatches, FinetuneModel, predict_logits
    from selfsup.trainer import resolve_device, train

    run_dir = check_run_dir(run_dir, resume)
    cfg = copy.deepcopy(cfg)
    data = load_task_data(cfg.task)
    kind = data.kind if cfg.task.kind == "auto" else cfg.task.kind
    if kind not in KINDS:
        raise UserError(f"task.kind={kind!r}: expected one of {', '.join(KINDS)}")
    cfg.task.kind = kind
    for line in describe_reports(data):
        if line not in _REPORTED:  # once per process: the demo reads the same task many times
            _REPORTED.add(line)
            print(line, file=sys.stderr)
    train_examples = _limit(data.splits["train"], cfg.task.max_train_examples)
    dev_examples = _limit(
        data.splits.get("dev") or data.splits[data.eval_split], cfg.task.max_eval_examples
    )
    test_examples = _limit(data.splits[data.eval_split], cfg.task.max_eval_examples)
    init = resolve_init(cfg, kind, train_examples)
    cfg.model = init.model
    if cfg.task.max_seq_len > cfg.model.max_position:
        raise UserError(
            f"task.max_seq_len={cfg.task.max_seq_len} is larger than the position table "
            f"(model.max_position={cfg.model.max_position})"
        )
    labels = label_set(kind, train_examples)
    task = build_task(kind, init.tokenizer, labels, cfg.task, cfg.train.seed)

    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_marker(run_dir, "finetune", "bert")
    init.tokenizer.save(run_dir / "tokenizer")
    save_run_config(cfg, run_dir / "config.json", resume)
    atomic_write_json(
        run_dir / "labels.json", {"kind": kind, "labels": labels, "source": data.source}
    )

    torch.manual_seed(cfg.train.seed)
    encoder = BertModel(cfg.model)
    if init.encoder_state is not None:
        encoder.load_state_dict(init.encoder_state)
    model = FinetuneModel(encoder, task.build_head(cfg.model.hidden_size, cfg.head_dropout))

    train_features = task.encode(train_examples, training=True)
    dev_loss_features = task.encode(dev_examples, training=True) if kind == "qa" else None
    dev_features = task.encode(dev_examples, training=False)
    batches = FeatureBatches(
        train_features,
        dev_loss_features or dev_features,
        task.collate,
        cfg.train.batch_size,
        cfg.train.seed,
    )
    device = resolve_device(cfg.train.device)

    last_dev_outputs: list = []  # the latest dev predictions, reused when test is dev

    def scores(examples, features, prefix):
        outputs = predict_logits(model, features, task.collate, device=device)
        last_dev_outputs[:] = [outputs]
        return {f"{prefix}{k}": v for k, v in task.score(examples, features, outputs).items()}

    metrics = train(
        model,
        batches,
        cfg.train,
        run_dir,
        resume=resume,
        eval_extra=lambda _m: scores(dev_examples, dev_features, "dev_"),
        on_checkpoint=lambda _s: plot_loss_curve(
            run_dir / "metrics.jsonl", run_dir / "loss_curve.png", f"fine-tune {data.name}"
        ),
    )
    if test_examples == dev_examples and last_dev_outputs:  # e.g. drcd: scored at the last step
        test_features, test_outputs = dev_features, last_dev_outputs[0]
    else:
        test_features = task.encode(test_examples, training=False)
        test_outputs = predict_logits(model, test_features, task.collate, device=device)
    metrics.update(
        {f"test_{k}": v for k, v in task.score(test_examples, test_features, test_outputs).items()}
    )
    if kind == "qa":
        predicted = task.predict(test_examples, test_features, test_outputs)
        atomic_write_json(
            run_dir / "predictions.json", {e.id: p.text for e, p in zip(test_examples, predicted)}
        )
    atomic_write_json(run_dir / "final_metrics.json", metrics)
    plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png", f"fine-tune {data.name}")
    return metrics


def load_finetune_config(path: str | Path) -> FinetuneConfig:
    return load_config(FinetuneConfig, path)


# ---------------------------------------------------------------- using a fine-tuned run
@dataclass
class FinetunedRun:
    config: FinetuneConfig
    task: Any  # ClassificationTask | TaggingTask | QuestionAnsweringTask
    model: torch.nn.Module  # FinetuneModel in eval mode


def load_finetuned(run_dir: str | Path, device: str = "cpu") -> FinetunedRun:
    """Config, task (tokenizer, labels, windows) and weights of a fine-tuned run."""
    from safetensors.torch import load_file

    from selfsup.data.tokenizer import Tokenizer
    from selfsup.tasks.base import FinetuneModel

    run_dir = Path(run_dir)
    if is_hf_checkpoint(run_dir):
        return _load_hf_question_answering(run_dir, device)
    info = read_run_marker(run_dir)
    if info.get("kind") != "finetune":
        raise UserError(
            f"{run_dir}: a {info.get('kind')} run, not a fine-tuned one (selfsup finetune makes those)"
        )
    cfg = load_finetune_config(run_dir / "config.json")
    labels = json.loads((run_dir / "labels.json").read_text())["labels"]
    task = build_task(
        cfg.task.kind, Tokenizer.load(run_dir / "tokenizer"), labels, cfg.task, cfg.train.seed
    )
    model = FinetuneModel(
        BertModel(cfg.model), task.build_head(cfg.model.hidden_size, cfg.head_dropout)
    )
    weights = run_dir / "model.safetensors"
    if not weights.exists():
        raise UserError(f"{run_dir}: no model.safetensors yet (is the run finished?)")
    model.load_state_dict(load_file(weights))
    return FinetunedRun(cfg, task, model.to(device).eval())


def _load_hf_question_answering(directory: Path, device: str) -> FinetunedRun:
    """A Hugging Face BertForQuestionAnswering folder, ready for `answer_questions`."""
    from selfsup.interop.huggingface import load_hf_bert
    from selfsup.tasks.base import FinetuneModel

    checkpoint = load_hf_bert(directory)
    if "qa" not in checkpoint.head_states or checkpoint.tokenizer is None:
        raise UserError(
            f"{directory}: not a question-answering checkpoint with a tokenizer "
            f"(architectures: {', '.join(checkpoint.architectures) or 'unknown'})"
        )
    cfg = FinetuneConfig(init=str(directory), model=checkpoint.config)
    cfg.task.kind = "qa"
    # SQuAD's usual windows (384 tokens, questions up to 64, stride 128), shrunk to fit the model
    seq = cfg.task.max_seq_len = min(384, checkpoint.config.max_position)
    cfg.task.max_question_len = min(64, seq // 4)
    cfg.task.stride = max(1, min(128, (seq - cfg.task.max_question_len - 3) // 2))
    task = build_task("qa", checkpoint.tokenizer, [], cfg.task, 0)
    model = FinetuneModel(
        BertModel(checkpoint.config), task.build_head(checkpoint.config.hidden_size, 0.0)
    )
    model.encoder.load_state_dict(
        checkpoint.encoder_state, strict=False
    )  # a QA model has no pooler
    model.head.load_state_dict(checkpoint.head_states["qa"])
    return FinetunedRun(cfg, task, model.to(device).eval())


def answer_questions(run: FinetunedRun, examples: list) -> list:
    """SpanPrediction for every QAExample (passages of any length: windows, best span overall)."""
    if run.config.task.kind != "qa":
        raise UserError(
            f"this run was fine-tuned for {run.config.task.kind}, not for question answering"
        )
    return predict_split(run, examples)


def predict_split(run: FinetunedRun, examples: list) -> list:
    """Predictions of a fine-tuned run on examples: labels, per-unit tags, or answer spans."""
    from selfsup.tasks.base import predict_logits

    features = run.task.encode(examples, training=False)
    device = next(run.model.parameters()).device
    outputs = predict_logits(run.model, features, run.task.collate, device=device)
    if run.config.task.kind == "qa":
        return run.task.predict(examples, features, outputs)
    if run.config.task.kind == "tagging":
        return run.task.predict(features, outputs)
    return run.task.predict(outputs)
