"""Text pretraining recipes: raw text in, a BERT encoder or a GPT decoder out.

`bert` trains an encoder with any of masked LM, next sentence and sentence order prediction;
`gpt` trains a decoder with next-token prediction. Both share one config (`PretrainConfig`) and
its presets, the tokenizer (trained on the corpus unless a vocab.txt is given) and the
memory-mapped token store under RUN/data/; they differ in their batches (masked pairs of
sentences vs windows of one token stream), their model and their held-out baselines (the
unigram guess and the NSP/SOP majority label for BERT; unigram and bigram models for GPT). The
config, the presets and the two recipes' registry entries are in selfsup/recipes/text_config.py
(torch-free, for --help), which names the functions below; the run folder is described in
selfsup/runs.py; the lifecycle in selfsup/recipes/base.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from selfsup.batch import IGNORE_INDEX
from selfsup.config import config_differences
from selfsup.data.catalog import corpus_identity, resolve_corpus
from selfsup.data.clm import CausalLMBatches, clm_stream, ngram_heldout_loss
from selfsup.data.masking import MaskingConfig
from selfsup.data.pretraining import BertPretrainingBatches, SpecialIds
from selfsup.data.token_store import TokenStore, prepare_corpus
from selfsup.data.tokenizer import Tokenizer, train_tokenizer
from selfsup.errors import UserError
from selfsup.io import atomic_write_json
from selfsup.objectives.bert_pretraining import BertPretrainer
from selfsup.objectives.clm import GPTPretrainer
from selfsup.recipes.base import LoadedRun, Plan
from selfsup.recipes.text_config import (  # noqa: F401 (re-export: config, presets, recipes)
    BERT,
    DEFAULT_OBJECTIVES,
    EPILOG,
    GPT,
    PRESETS,
    DataConfig,
    PretrainConfig,
    TokenizerConfig,
    load_pretrain_config,
    preset_base,
    preset_gpt_small,
    preset_gpt_tiny,
    preset_small,
    preset_tiny,
)
from selfsup.runs import RunFolder
from selfsup.trainer import BatchSource

CORPUS_RECORD = "corpus.json"  # in RUN/data/: the corpus files the token stores came from


# ---------------------------------------------------------------- inputs and batches
# what the tokenizer and the token stores depend on: a run reused by data.reuse_from must agree
_PREPARED_BY = (
    "tokenizer.",
    "data.corpus",
    "data.text_field",
    "data.heldout_fraction",
    "data.word_segmenter",
    "train.seed",
)


def _link_prepared(cfg: PretrainConfig, run_dir: Path) -> None:
    """data.reuse_from: hard-link (or copy) the other run's tokenizer and token stores here, once
    its config is checked to have made them the way this config would."""
    source = Path(cfg.data.reuse_from)
    if not (source / "tokenizer" / "tokenizer.json").exists() or not (source / "data").is_dir():
        raise UserError(
            f"data.reuse_from={source}: no tokenizer/ and data/ there; expected a text pretraining "
            "run that has prepared its corpus"
        )
    differ = [
        change.split(":", 1)[0]
        for change in config_differences(cfg, source / "config.json")
        if change.startswith(_PREPARED_BY)
    ]
    if differ:
        raise UserError(
            f"data.reuse_from={source}: made with other {', '.join(differ)}; its tokenized "
            "corpus is not the one this config asks for"
        )
    for part in ("tokenizer", "data"):
        if not (run_dir / part).exists():
            try:
                shutil.copytree(source / part, run_dir / part, copy_function=os.link)
            except OSError:  # another file system: copy
                shutil.rmtree(run_dir / part, ignore_errors=True)
                shutil.copytree(source / part, run_dir / part)


def build_tokenizer(cfg: PretrainConfig, run_dir: Path):
    tok_dir = run_dir / "tokenizer"
    if cfg.data.reuse_from:
        _link_prepared(cfg, run_dir)
    if (tok_dir / "tokenizer.json").exists():
        return Tokenizer.load(tok_dir)
    if cfg.tokenizer.vocab_file:
        tok = Tokenizer.from_vocab_file(cfg.tokenizer.vocab_file, lowercase=cfg.tokenizer.lowercase)
    else:
        sentences = (
            s for doc in resolve_corpus(cfg.data.corpus, cfg.data.text_field) for s in doc.sentences
        )
        tok = train_tokenizer(
            cfg.tokenizer.kind,
            sentences,
            cfg.tokenizer.vocab_size,
            cfg.tokenizer.min_frequency,
            cfg.tokenizer.lowercase,
        )
    tok.save(tok_dir)
    return tok


def _read_corpus_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def prepare_data(cfg: PretrainConfig, tokenizer, run_dir: Path):
    """The token stores of RUN/data/, built from the corpus unless built already from the same
    files: data/corpus.json records their path, size and mtime, so a corpus edited in place
    (fixed after a failed run, say) is tokenized again on --resume. A store without the record
    (written by an older selfsup) is reused as it is."""
    data_dir = run_dir / "data"
    record = {"corpus": cfg.data.corpus, "files": corpus_identity(cfg.data.corpus)}
    built = all((data_dir / split / "meta.json").exists() for split in ("train", "valid"))
    if built:
        saved = _read_corpus_record(data_dir / CORPUS_RECORD)
        if saved is None or saved == record:
            return TokenStore.open(data_dir / "train"), TokenStore.open(data_dir / "valid")
        print(
            f"note: corpus {cfg.data.corpus} changed since {data_dir} was built from it; "
            "tokenizing it again (the tokenizer is kept)",
            file=sys.stderr,
        )
        for split in ("train", "valid"):  # a kill from here on leaves no store to reuse
            (data_dir / split / "meta.json").unlink()
    # the record first: a store counts as built only once its own meta.json is written, last
    atomic_write_json(data_dir / CORPUS_RECORD, record)
    segmenter = cfg.data.word_segmenter
    if segmenter == "auto" and cfg.masking.whole_word and cfg.data.corpus != "peoples-daily":
        segmenter = "jieba"  # whole words asked for and the corpus brings no segmentation
    return prepare_corpus(
        resolve_corpus(cfg.data.corpus, cfg.data.text_field),
        tokenizer,
        data_dir,
        heldout_fraction=cfg.data.heldout_fraction,
        seed=cfg.train.seed,
        word_segmenter=segmenter,
    )


def special_ids(tokenizer):
    return SpecialIds(
        tokenizer.pad_id,
        tokenizer.cls_id,
        tokenizer.sep_id,
        tokenizer.mask_id,
        frozenset(tokenizer.special_ids),
    )


def heldout_baselines(
    train_store, eval_batches: list[dict], special: frozenset[int]
) -> dict[str, float]:
    """What a model blind to context scores on the held-out batches: for MLM, always predicting
    the most frequent training token (on the same masks); for NSP/SOP, the majority label."""
    out: dict[str, float] = {}
    if eval_batches and "mlm_labels" in eval_batches[0]:
        counts = np.asarray(train_store.token_counts(), dtype=np.int64).copy()
        counts[list(special)] = -1
        best = int(counts.argmax())
        labels = torch.cat([b["mlm_labels"][b["mlm_labels"] != IGNORE_INDEX] for b in eval_batches])
        out["eval_mlm_unigram_accuracy"] = float((labels == best).float().mean())
    for name in ("nsp", "sop"):
        if eval_batches and f"{name}_labels" in eval_batches[0]:
            labels = torch.cat([b[f"{name}_labels"] for b in eval_batches])
            share = (labels[labels != IGNORE_INDEX] == 0).float().mean().item()
            out[f"eval_{name}_majority"] = max(share, 1.0 - share)
    return out


class TrainAndHeldOut:
    """Training batches from the train split's source, evaluation from the held-out one's."""

    def __init__(self, train: BatchSource, heldout: BatchSource) -> None:
        self.batch, self.eval_batches = train.batch, heldout.eval_batches


def bert_batches(cfg: PretrainConfig, tokenizer, train_store, valid_store):
    """BERT's batches (masks, pairs) and the held-out unigram / majority baselines."""
    special = special_ids(tokenizer)

    def batches(store, seed, masking, pack=False):
        return BertPretrainingBatches(
            store,
            special,
            cfg.objectives,
            masking,
            cfg.data.max_seq_len,
            cfg.train.batch_size,
            seed,
            pack,
        )

    # held-out masks are BERT's standard 15% / 80-10-10 whatever the training masks, so held-out
    # accuracy compares across runs (only whole-word choice follows the training config)
    eval_masking = MaskingConfig(whole_word=cfg.masking.whole_word)
    train_data = batches(train_store, cfg.train.seed, cfg.masking, cfg.data.pack)
    valid_data = batches(valid_store, cfg.train.seed, eval_masking)

    baseline = heldout_baselines(
        train_store, valid_data.eval_batches(cfg.train.eval_batches), special.all
    )
    return TrainAndHeldOut(train_data, valid_data), baseline


def gpt_batches(cfg: PretrainConfig, tokenizer, train_store, valid_store):
    """GPT's windows of the token stream and the held-out unigram / bigram baselines."""

    def batches(store):
        stream = clm_stream(store, tokenizer.cls_id, tokenizer.sep_id)
        return CausalLMBatches(
            stream, cfg.data.max_seq_len, cfg.train.batch_size, cfg.train.seed, tokenizer.pad_id
        )

    train_data, valid_data = batches(train_store), batches(valid_store)
    held_out = valid_data.eval_batches(cfg.train.eval_batches)
    baseline = {
        f"eval_clm_{name}_loss": ngram_heldout_loss(
            train_data.stream, held_out, tokenizer.vocab_size, order
        )
        for name, order in (("unigram", 1), ("bigram", 2))
    }
    return TrainAndHeldOut(train_data, valid_data), baseline


# ---------------------------------------------------------------- the recipes
def setup(cfg: PretrainConfig, run: RunFolder) -> dict:
    """Check the config and train (or reopen) the tokenizer: it sets the vocabulary size."""
    cfg.validate()
    tokenizer = build_tokenizer(cfg, run.path)
    cfg.model.vocab_size = tokenizer.vocab_size
    return {"tokenizer": tokenizer}


def make_data(batches: Callable) -> Callable[[PretrainConfig, RunFolder, dict], Plan]:
    def data(cfg: PretrainConfig, run: RunFolder, state: dict) -> Plan:
        train_store, valid_store = prepare_data(cfg, state["tokenizer"], run.path)
        source, baseline = batches(cfg, state["tokenizer"], train_store, valid_store)
        title = f"{cfg.arch} {'+'.join(cfg.objectives)}"
        return Plan(source, title, eval_extra=lambda _model: baseline)

    return data


bert_data = make_data(bert_batches)  # the recipes' data functions (text_config.py names them)
gpt_data = make_data(gpt_batches)


def build_model(cfg: PretrainConfig, state: dict | None = None) -> nn.Module:
    """The pretraining model of a (validated) config: encoder or decoder with its heads."""
    pretrainer = BertPretrainer if cfg.arch == "bert" else GPTPretrainer
    return pretrainer(cfg.model, cfg.objectives)


def add_perplexity(cfg, run, model, plan, metrics: dict[str, float]) -> dict[str, float]:
    for key in list(metrics):
        if key.endswith("_loss") and key.startswith(("eval_mlm", "eval_clm")):
            metrics[key.replace("_loss", "_perplexity")] = float(np.exp(metrics[key]))
    return metrics


def load(run: RunFolder, device: str = "cpu") -> LoadedRun:
    """Config, tokenizer and the final weights (or the latest checkpoint's) of a text run."""
    cfg = run.config(PretrainConfig)
    model = build_model(cfg)
    model.load_state_dict(run.weights(latest_checkpoint=True))
    return LoadedRun(run, cfg, model.to(device).eval(), tokenizer=run.tokenizer())
