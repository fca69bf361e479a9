"""The fine-tuning recipe: a pretrained encoder (or a random one) + a fresh head, trained on labels.

The four task kinds, registered in selfsup/tasks/__init__.py (`TASKS`):
    classification   one text -> a class, from [CLS]                     (tasks/classification.py)
    pair             [CLS] A [SEP] B [SEP] -> a class, from [CLS]         (tasks/classification.py)
    tagging          one text -> a class per token (segmentation, POS, NER)   (tasks/tagging.py)
    qa               question + passage -> the answer span, over windows     (tasks/qa.py)

The head is randomly initialised and the whole model is trained. `init` names a selfsup run (its
tokenizer, sizes and encoder weights are taken), a Hugging Face BERT folder, or "random" (a
tokenizer is trained on the task's own training texts); `random_init=true` keeps an init run's
tokenizer and sizes but not its weights: the "same model, no pretraining" arm of a fair
comparison. The config, its presets and the recipe's registry entry are in
selfsup/recipes/finetune_config.py (torch-free, for --help), which names the functions below. The
run folder (with tokenizer/, labels.json and, for QA, predictions.json) is described in
selfsup/runs.py; the lifecycle in selfsup/recipes/base.py.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup import distributed
from selfsup.data.catalog import load_task_data
from selfsup.data.labelled import describe_reports, label_set
from selfsup.data.splits import seeded_subset
from selfsup.data.tokenizer import Tokenizer, train_tokenizer
from selfsup.errors import UserError
from selfsup.interop.huggingface import load_hf_bert
from selfsup.io import atomic_write_json
from selfsup.models.bert import BertModel
from selfsup.models.transformer import TransformerConfig
from selfsup.recipes.base import LoadedRun, Plan, run_recipe
from selfsup.recipes.finetune_config import (  # noqa: F401 (re-export: config, presets, recipe)
    FINETUNE,
    PRESETS,
    FinetuneConfig,
    TaskConfig,
    load_finetune_config,
    preset_small,
    preset_tiny,
)
from selfsup.runs import RunFolder, is_hf_checkpoint, saved_config
from selfsup.tasks import TASK_KINDS, build_task
from selfsup.tasks.base import FeatureBatches, FinetuneModel, predict_logits
from selfsup.trainer import resolve_device


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


def resolve_init(cfg: FinetuneConfig, kind: str, train_examples: list) -> Init:
    """Tokenizer, sizes and (unless random) encoder weights to start from."""
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
        checkpoint = load_hf_bert(run)
        if checkpoint.tokenizer is None:
            raise UserError(f"{run}: has no vocab.txt or tokenizer.json to tokenize with")
        state = None if cfg.random_init else checkpoint.encoder_state
        return Init(checkpoint.tokenizer, checkpoint.config, state)
    folder = RunFolder.open(
        run,
        archs=("bert",),
        refusal="{path}: a {arch} run; fine-tuning starts from a BERT encoder "
        "(selfsup pretrain --arch bert, a fine-tuned run, or a Hugging Face BERT folder)",
    )
    model = TransformerConfig(**saved_config(run)["model"])
    tokenizer = folder.tokenizer()
    if cfg.random_init:  # the run's tokenizer and sizes only: its weights are not needed
        return Init(tokenizer, model, None)
    state = folder.weights(
        prefix="encoder.", missing="{path}: has no model.safetensors (did its training finish?)"
    )
    return Init(tokenizer, model, state)


# ---------------------------------------------------------------- the recipe
_REPORTED: set[str] = set()  # reader reports already printed by this process


def _split_origin(task: TaskConfig, split: str) -> str:
    """Where a split's examples come from, as a message names them."""
    if task.name != "files":
        return f"the {split} split of task {task.name}"
    if split == "train":
        return str(task.train_file)
    if split == "test" and task.test_file:
        return task.test_file
    return task.dev_file or f"the last 10% of {task.train_file} (held out as dev)"


def check_labels_seen(task: TaskConfig, labels: list[str], evaluated: dict[str, list]) -> None:
    """A dev or test label the training data lacks can never be predicted: an IndexError after
    training (classification) or an answer silently counted wrong (tagging). Refused up front."""
    for split, examples in evaluated.items():
        unseen = sorted(set(label_set(task.kind, examples)) - set(labels))
        if unseen:
            named = ", ".join(map(repr, unseen[:10])) + (
                f" and {len(unseen) - 10} more" if len(unseen) > 10 else ""
            )
            raise UserError(
                f"{_split_origin(task, split)}: label(s) {named} never occur in the training "
                f"data ({_split_origin(task, 'train')}), so no model trained on it can predict "
                f"them; add training examples with them, or remove them from the {split} data"
            )


def sequence_tokenizer(task: TaskConfig, kind: str, tokenizer, data) -> tuple[Any, Any]:
    """task.sequence_mapping: the init's tokenizer reading texts as bases, and the mapping (the
    bases are those of every split, so a test base is never missing)."""
    from selfsup.data.dna import BaseVocabularyMapping, MappedSequenceTokenizer, alphabet

    if kind != "classification":
        raise UserError(
            f"task.sequence_mapping reads one sequence per example; task kind {kind!r} has "
            "other inputs (expected classification)"
        )
    bases = alphabet(e.text for split in data.splits.values() for e in split)
    mapping = BaseVocabularyMapping.build(
        task.sequence_mapping, tokenizer, bases, task.mapping_seed
    )
    print(f"bases as tokens ({mapping.describe()})", file=sys.stderr)
    return MappedSequenceTokenizer(tokenizer, mapping), mapping


def setup(cfg: FinetuneConfig, run: RunFolder) -> dict:
    """Check the config, read the task's data, take the init run's tokenizer, sizes and weights,
    build the task."""
    cfg.validate()
    data = load_task_data(cfg.task)
    kind = data.kind if cfg.task.kind == "auto" else cfg.task.kind
    if kind not in TASK_KINDS:
        raise UserError(f"task.kind={kind!r}: expected one of {', '.join(TASK_KINDS)}")
    cfg.task.kind = kind
    for line in describe_reports(data):
        if line not in _REPORTED:  # once per process: the demo reads the same task many times
            _REPORTED.add(line)
            print(line, file=sys.stderr)
    train_examples = seeded_subset(data.splits["train"], cfg.task.max_train_examples)
    dev_examples = seeded_subset(
        data.splits.get("dev") or data.splits[data.eval_split], cfg.task.max_eval_examples
    )
    test_examples = seeded_subset(data.splits[data.eval_split], cfg.task.max_eval_examples)
    init = resolve_init(cfg, kind, train_examples)
    cfg.model = init.model
    if cfg.task.max_seq_len > cfg.model.max_position:
        raise UserError(
            f"task.max_seq_len={cfg.task.max_seq_len} is larger than the position table "
            f"(model.max_position={cfg.model.max_position})"
        )
    # the labels of the whole training split: a max_train_examples subset may miss a rare one
    labels = label_set(kind, data.splits["train"])
    dev_split = "dev" if data.splits.get("dev") else data.eval_split
    check_labels_seen(cfg.task, labels, {dev_split: dev_examples, data.eval_split: test_examples})
    tokenizer, mapping = init.tokenizer, None
    if cfg.task.sequence_mapping:
        tokenizer, mapping = sequence_tokenizer(cfg.task, kind, init.tokenizer, data)
    return {
        "data": data,
        "labels": labels,
        "init": init,
        "mapping": mapping,
        "task": build_task(kind, tokenizer, labels, cfg.task, cfg.train.seed),
        "examples": {"train": train_examples, "dev": dev_examples, "test": test_examples},
    }


def data(cfg: FinetuneConfig, run: RunFolder, state: dict) -> Plan:
    """Save the tokenizer and labels; features for training and dev; dev scores at each eval."""
    task, examples = state["task"], state["examples"]
    if distributed.is_main():  # the other ranks of a torchrun run write nothing
        state["init"].tokenizer.save(run.path / "tokenizer")
        if state["mapping"] is not None:  # which token stood for which base
            atomic_write_json(run.path / "sequence_mapping.json", state["mapping"].to_json())
        run.write_labels(cfg.task.kind, state["labels"], state["data"].source)
    train_features = task.encode(examples["train"], training=True)
    dev_loss_features = (
        task.encode(examples["dev"], training=True) if cfg.task.kind == "qa" else None
    )
    dev_features = task.encode(examples["dev"], training=False)
    batches = FeatureBatches(
        train_features,
        dev_loss_features or dev_features,
        task.collate,
        cfg.train.batch_size,
        cfg.train.seed,
    )
    device = resolve_device(cfg.train.device)
    last_dev_outputs: list = []  # the latest dev predictions, reused when test is dev

    def dev_scores(model: nn.Module) -> dict[str, float]:
        outputs = predict_logits(model, dev_features, task.collate, device=device)
        last_dev_outputs[:] = [outputs]
        scores = task.score(examples["dev"], dev_features, outputs)
        return {f"dev_{k}": v for k, v in scores.items()}

    return Plan(
        batches,
        f"fine-tune {state['data'].name}",
        eval_extra=dev_scores,
        state=state
        | {"dev_features": dev_features, "last_dev_outputs": last_dev_outputs, "device": device},
    )


def build_model(cfg: FinetuneConfig, state: dict) -> FinetuneModel:
    """The encoder (with the init run's weights unless random) and the task's fresh head."""
    encoder = BertModel(cfg.model)
    init = state.get("init")
    if init is not None and init.encoder_state is not None:
        encoder.load_state_dict(init.encoder_state)
    if cfg.freeze_embeddings:
        encoder.word_embeddings.weight.requires_grad_(False)
    return FinetuneModel(encoder, state["task"].build_head(cfg.model.hidden_size, cfg.head_dropout))


def score_test(cfg: FinetuneConfig, run: RunFolder, model, plan: Plan, metrics: dict) -> dict:
    """Test metrics (prefixed test_) and, for QA, the test answers in predictions.json."""
    state, task = plan.state, plan.state["task"]
    dev, test = state["examples"]["dev"], state["examples"]["test"]
    if test == dev and state["last_dev_outputs"]:  # e.g. drcd: scored at the last step
        test_features, test_outputs = state["dev_features"], state["last_dev_outputs"][0]
    else:
        test_features = task.encode(test, training=False)
        test_outputs = predict_logits(model, test_features, task.collate, device=state["device"])
    scores = task.score(test, test_features, test_outputs)
    metrics.update({f"test_{k}": v for k, v in scores.items()})
    if cfg.task.kind == "qa" and distributed.is_main():
        predicted = task.predict(test, test_features, test_outputs)
        atomic_write_json(
            run.path / "predictions.json", {e.id: p.text for e, p in zip(test, predicted)}
        )
    return metrics


def load(run: RunFolder, device: str = "cpu") -> LoadedRun:
    """Config, task (tokenizer, labels, windows) and weights of a fine-tuned run."""
    cfg = run.config(FinetuneConfig)
    labels = run.labels()["labels"]
    task = build_task(cfg.task.kind, run.tokenizer(), labels, cfg.task, cfg.train.seed)
    model = build_model(cfg, {"task": task})
    model.load_state_dict(run.weights())
    return LoadedRun(run, cfg, model.to(device).eval(), tokenizer=task.tokenizer, task=task)


def finetune(cfg: FinetuneConfig, run_dir: str | Path, resume: bool = False) -> dict[str, float]:
    """Fine-tune and evaluate; returns dev and test metrics (prefixed dev_ / test_)."""
    return run_recipe(FINETUNE, cfg, run_dir, resume)
