"""MLM pretraining throughput on real text: selfsup vs transformers' BertForMaskedLM.

What is measured: real (non-pad) tokens per second of whole training steps (data path + forward +
backward + gradient clipping + AdamW step) on People's Daily, each library fed as its users feed
it, the two alternated in one process at the same thread count.

- selfsup, as `selfsup pretrain --preset small --objectives mlm` runs: the model of
  `selfsup.recipes.text.preset_small()` (read at run time: its widths, layers, heads, norm
  placement, masking rate, sequence length and batch size), MLM alone, batches from
  `BertPretrainingBatches` with `pack=<the preset's data.pack>`, the step `selfsup.trainer.train`
  takes (loss normalised by `item_counts`, clipping, `build_optimizer`'s AdamW).
- transformers, as its docs teach (the MLM example script and course): a tokenizer over the same
  character vocabulary (the files `selfsup convert` writes on export, loaded as
  BertTokenizerFast; checked to give selfsup's ids), one People's Daily sentence per example
  with its natural length (truncated to the same max length, [CLS] and [SEP] added by the
  tokenizer), a torch DataLoader (shuffled)
  with `DataCollatorForLanguageModeling` (the same mlm_probability as selfsup's training masks;
  padding to the longest sequence in the batch), `BertForMaskedLM` of the same widths, layers,
  heads, vocabulary and dropout, its own loss, the same clipping and a torch AdamW step. Hugging
  Face's BERT has post-LN and a learned position table only: where the preset says pre-LN (one
  more LayerNorm in all) or rotary positions (a few elementwise operations on q and k per layer,
  against one table lookup and add), those small costs fall on selfsup's side.
- same batch size in sequences, same thread count (`torch.set_num_threads`, each of --threads).

Each measurement is one warm-up step then --steps timed steps; the implementations take turns
(the order rotates every repeat) and each row reports the median of --repeats measurements. The
ratio to transformers is paired: the median over repeats of the two speeds measured in the same
repeat, seconds apart, so that a change in the machine's load between repeats cancels (on a
shared machine the speeds themselves move by +-20% from minute to minute).

Model FLOP utilisation (MFU). The model FLOPs of one real token, one training step (forward +
backward = 3 x forward), the same number for every row:
    F = 6 N + 12 L C T + 6 p (C^2 + C V)
with N the non-embedding parameters of the L transformer blocks (weights and biases), C the width,
T the sequence length (max_seq_len: the context a token attends over in a full row), p the masking
rate (the share of tokens predicted) and V the vocabulary. 6 N is the blocks' matmuls (Kaplan et
al. 2020), 12 L C T the attention scores and the weighted sum of values (PaLM, Chowdhery et al.
2022, appendix B), the last term the prediction head's dense layer and vocabulary projection at
the predicted positions only: what a model must compute to learn from a token. Padding,
logits at unpredicted positions and LayerNorm/softmax arithmetic are not model FLOPs.
MFU = tokens/s x F / peak, the peak being this machine's float32 matmul rate measured in the same
run: the best of several torch.mm of two --peak-size square matrices at the same thread count.

Where the difference comes from is measured, not guessed, by the ablation rows (--no-ablations
drops them): selfsup with packing toggled (padding), selfsup computing logits at every position
as transformers does (sparse vs dense prediction), and transformers fed selfsup's own batches
(the data path: padding and the collator, with the model and its loss left as they are).
Measured 2026-12-02 on one thread (docs/RESULTS.md), selfsup at 2.36x transformers:
- padding, ~1.4x. Sentences one per example, padded to the longest of the batch, leave 43% of
  the computed tokens as pads; packed windows leave none. transformers fed selfsup's packed
  batches runs at 1.70x itself; selfsup without packing (25% pads: whole sentences grouped up
  to the window) falls from 2.36x to 1.71x.
- sparse prediction, ~1.4x. selfsup computing the vocabulary projection at every position falls
  to 1.66x, level with transformers on the same packed batches (1.70x): at this size (width 128,
  vocabulary 4,260) the head at every position costs 3.4 MFLOP a token, 70% of the 4 blocks'
  4.8, against 1.3 at the 40% of positions predicted.
- fused attention: not a difference here. Both call PyTorch's scaled_dot_product_attention
  (transformers 5 defaults to it); selfsup's single q/k/v matmul against three shows no
  measurable gain once prediction is made dense too.

Usage:
    python benchmarks/mlm_throughput.py --out runs/mlm-throughput              # 1 and 2 threads
    python benchmarks/mlm_throughput.py --out runs/mlm-throughput --threads 1 --repeats 5
    python benchmarks/mlm_throughput.py --prepared runs/pd --out runs/mlm-throughput
The first run prepares People's Daily (tokenizer + token stores, ~30 s) in OUT/prepared and later
runs reuse it; --prepared reads those of an existing pretraining run folder instead.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.batch import count_labelled
from selfsup.config import parse_flat_settings
from selfsup.data.catalog import resolve_corpus
from selfsup.data.pretraining import BertPretrainingBatches
from selfsup.data.token_store import TokenStore
from selfsup.data.tokenizer import Tokenizer
from selfsup.interop.convert import write_hf_tokenizer
from selfsup.interop.huggingface import config_to_hf
from selfsup.models.transformer import TransformerConfig
from selfsup.objectives.base import LossTerm
from selfsup.objectives.bert_pretraining import BertPretrainer, MaskedLM
from selfsup.recipes.text import (
    PretrainConfig,
    build_tokenizer,
    prepare_data,
    preset_small,
    special_ids,
)
from selfsup.reporting import markdown_table
from selfsup.trainer import build_optimizer


# ---------------------------------------------------------------- settings
@dataclass
class Settings:
    threads: str = "1,2"  # comma-separated thread counts, each measured in turn
    repeats: int = 9  # measurements per implementation and thread count (median reported)
    steps: int = 6  # timed optimizer steps per measurement (after one warm-up step)
    peak_size: int = 2048  # side of the square matrices of the matmul peak
    ablations: bool = True
    seed: int = 0
    out: str = "runs/mlm-throughput"
    prepared: str = ""  # a run folder with tokenizer/ and data/ to read (default: OUT/prepared)


def preset_config(vocab_size: int) -> PretrainConfig:
    """`preset_small()` with MLM alone (BertForMaskedLM's objective), read at run time."""
    cfg = preset_small()
    cfg.objectives = ["mlm"]
    cfg.model.vocab_size = vocab_size
    cfg.validate()
    return cfg


# ---------------------------------------------------------------- FLOPs and counting
def block_parameters(cfg: TransformerConfig) -> int:
    """Weights and biases of one transformer block: q/k/v and output projections, the two
    feed-forward layers, two LayerNorms."""
    C, H = cfg.hidden_size, cfg.ffn_size
    return (3 * C * C + 3 * C) + (C * C + C) + (C * H + H) + (H * C + C) + 2 * (2 * C)


def model_flops_per_token(cfg: TransformerConfig, seq_len: int, mask_rate: float) -> float:
    """F = 6 N + 12 L C T + 6 p (C^2 + C V): training FLOPs of one real token (module doc)."""
    C, L, V = cfg.hidden_size, cfg.num_layers, cfg.vocab_size
    blocks = 6 * L * block_parameters(cfg)
    attention = 12 * L * C * seq_len
    head = 6 * mask_rate * (C * C + C * V)
    return float(blocks + attention + head)


def count_tokens(batch: dict) -> tuple[int, int]:
    """(real tokens, computed tokens) of a batch: attention-mask ones, and every position."""
    mask = batch["attention_mask"]
    return int(mask.sum()), int(mask.numel())


def matmul_peak(size: int, repeats: int = 3) -> float:
    """float32 FLOP/s of torch.mm on two size x size matrices, the best of `repeats` (after one
    warm-up), at the current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


# ---------------------------------------------------------------- data
def prepared_data(folder: Path) -> tuple[Tokenizer, TokenStore]:
    """People's Daily as `selfsup pretrain --preset small` prepares it: tokenizer and training
    token store read from `folder`, built there first if absent."""
    store = folder / "data" / "train" / "meta.json"
    if (folder / "tokenizer" / "tokenizer.json").is_file() and store.is_file():
        return Tokenizer.load(folder / "tokenizer"), TokenStore.open(store.parent)
    print(f"preparing People's Daily in {folder} (once, ~30 s)", flush=True)
    cfg = preset_small()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(cfg, folder)
    train_store, _ = prepare_data(cfg, tokenizer, folder)
    return tokenizer, train_store


def selfsup_batches(
    cfg: PretrainConfig, tokenizer: Tokenizer, store: TokenStore, pack: bool
) -> Iterator[dict]:
    """selfsup's training batches in run order: `BertPretrainingBatches.batch(0), (1), ...`."""
    data = BertPretrainingBatches(
        store,
        special_ids(tokenizer),
        cfg.objectives,
        cfg.masking,
        cfg.data.max_seq_len,
        cfg.train.batch_size,
        cfg.train.seed,
        pack,
    )
    index = 0
    while True:
        yield data.batch(index)
        index += 1


def hf_tokenizer(tokenizer: Tokenizer, folder: Path, max_length: int):
    """BertTokenizerFast over selfsup's vocabulary, from the files `selfsup convert` exports."""
    from transformers import BertTokenizerFast

    if not (folder / "tokenizer.json").is_file():
        write_hf_tokenizer(tokenizer, folder, max_length)
    return BertTokenizerFast.from_pretrained(str(folder))


def check_tokenizers_agree(hf_tok, tokenizer: Tokenizer, sentences: Sequence[str]) -> None:
    """The Hugging Face tokenizer must give selfsup's ids, between [CLS] and [SEP]."""
    for text in sentences:
        ours = [tokenizer.cls_id, *tokenizer.encode(text).ids, tokenizer.sep_id]
        theirs = hf_tok(text, verbose=False)["input_ids"]  # uncut: no warning on long ones
        if ours != theirs:
            raise RuntimeError(f"tokenizers disagree on {text!r}: {ours} vs {theirs}")


def hf_examples(hf_tok, sentences: Sequence[str], max_length: int) -> list[dict]:
    """One example per sentence, as the MLM example script's line-by-line mode tokenizes."""
    encoded = hf_tok(
        list(sentences), truncation=True, max_length=max_length, return_special_tokens_mask=True
    )
    return [dict(zip(encoded.keys(), values)) for values in zip(*encoded.values())]


def hf_batches(hf_tok, examples: list[dict], batch_size: int, mask_rate: float, seed: int):
    """A shuffled DataLoader with DataCollatorForLanguageModeling, repeated without end."""
    from transformers import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(tokenizer=hf_tok, mlm_probability=mask_rate)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        examples, batch_size=batch_size, shuffle=True, collate_fn=collator, generator=generator
    )
    while True:
        yield from loader


def as_hf_inputs(batches: Iterator[dict]) -> Iterator[dict]:
    """selfsup batches as BertForMaskedLM's keyword arguments (mlm_labels -> labels)."""
    for b in batches:
        yield {
            "input_ids": b["input_ids"],
            "attention_mask": b["attention_mask"],
            "token_type_ids": b["token_type_ids"],
            "labels": b["mlm_labels"],
        }


# ---------------------------------------------------------------- models and steps
class DenseMaskedLM(MaskedLM):
    """Ablation: selfsup's MLM head computing logits at every position, as BertForMaskedLM
    does, then the loss at the masked ones (the same loss; more work)."""

    def forward(self, encoder, hidden: torch.Tensor, batch: dict) -> LossTerm:
        labels = batch["mlm_labels"]
        logits = self.head(hidden, encoder.word_embeddings.weight)  # (B, T, V) everywhere
        loss_sum = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="sum")
        return LossTerm(loss_sum, count_labelled(labels))


def selfsup_model(cfg: PretrainConfig, dense: bool = False) -> BertPretrainer:
    model = BertPretrainer(cfg.model, cfg.objectives)
    if dense:
        model.objectives["mlm"] = DenseMaskedLM(cfg.model)
    return model.train()


def hf_model(cfg: TransformerConfig, pad_id: int) -> nn.Module:
    """BertForMaskedLM of the same sizes, with Hugging Face BERT's only choices: post-LN and a
    learned position table."""
    from transformers import BertConfig, BertForMaskedLM

    same = dataclasses.replace(cfg, norm_position="post", position_encoding="learned")
    hf_config = config_to_hf(same, ["BertForMaskedLM"], {"pad_token_id": pad_id})
    return BertForMaskedLM(BertConfig(**hf_config)).train()


def selfsup_step(model: nn.Module, optimizer, batch: dict, max_grad_norm: float) -> None:
    """The step `selfsup.trainer.train` takes on one micro-batch."""
    out = model(batch)
    out.total_loss(model.item_counts(batch)).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def hf_step(model: nn.Module, optimizer, batch: dict, max_grad_norm: float) -> None:
    """A Hugging Face training step: the model's own loss, clipping, AdamW."""
    model(**batch).loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# ---------------------------------------------------------------- measuring
@dataclass
class Arm:
    name: str
    batches: Iterator[dict]
    step: Callable[[dict], None]


@dataclass
class Measurement:
    real_tokens: int
    computed_tokens: int
    seconds: float


def measure(arm: Arm, steps: int) -> Measurement:
    """One warm-up step, then `steps` timed steps, each taking its batch from the data path."""
    arm.step(next(arm.batches))
    real = computed = 0
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(arm.batches)
        arm.step(batch)
        r, c = count_tokens(batch)
        real, computed = real + r, computed + c
    return Measurement(real, computed, time.perf_counter() - start)


@dataclass
class Row:
    name: str
    threads: int
    tokens_per_second: float  # median over the repeats
    padding_share: float  # of the computed tokens, over all measurements
    ratio: float  # median over repeats of tokens/s over the transformers arm's in that repeat
    mfu: float
    measurements: list[Measurement] = field(default_factory=list)


def measure_rows(
    arms: list[Arm], threads: int, s: Settings, flops_per_token: float, peak: float
) -> list[Row]:
    runs: dict[str, list[Measurement]] = {arm.name: [] for arm in arms}
    for r in range(s.repeats):
        shift = r % len(arms)  # rotate who goes first: drift in machine load hits all arms
        for arm in arms[shift:] + arms[:shift]:
            runs[arm.name].append(measure(arm, s.steps))
    reference = [m.real_tokens / m.seconds for m in runs[arms[1].name]]  # transformers' arm
    rows = []
    for arm in arms:
        ms = runs[arm.name]
        speeds = [m.real_tokens / m.seconds for m in ms]
        speed = statistics.median(speeds)
        padding = 1 - sum(m.real_tokens for m in ms) / sum(m.computed_tokens for m in ms)
        # paired within each repeat (measured seconds apart), so a change in machine load
        # between repeats cancels in the ratio
        ratio = statistics.median(a / b for a, b in zip(speeds, reference))
        rows.append(
            Row(arm.name, threads, speed, padding, ratio, speed * flops_per_token / peak, ms)
        )
    return rows


def results_table(rows: list[Row]) -> str:
    headers = [
        "implementation",
        "threads",
        "real tokens/s",
        "padding share of computed tokens",
        "ratio to transformers",
        "MFU",
    ]
    body = [
        [
            r.name,
            r.threads,
            f"{r.tokens_per_second:,.0f}",
            f"{100 * r.padding_share:.1f}%",
            f"{r.ratio:.2f}x",
            f"{100 * r.mfu:.1f}%",
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


# ---------------------------------------------------------------- main
def parse_settings(argv: Sequence[str] | None) -> Settings:
    s = parse_flat_settings(Settings, argv, __doc__)
    if s.repeats < 1 or s.steps < 1:
        raise SystemExit("mlm_throughput.py: error: --repeats and --steps must be at least 1")
    return s


def build_arms(
    s: Settings, cfg: PretrainConfig, tokenizer: Tokenizer, store: TokenStore, out: Path
) -> list[Arm]:
    """The main pair (selfsup as the preset runs it, transformers as its docs teach) first, then
    the ablations; every model seeded alike."""
    t = cfg.train
    rate, seq, clip = cfg.masking.rate, cfg.data.max_seq_len, t.max_grad_norm
    hf_tok = hf_tokenizer(tokenizer, out / "hf-tokenizer", cfg.model.max_position)
    sentences = [
        x for doc in resolve_corpus(cfg.data.corpus, cfg.data.text_field) for x in doc.sentences
    ]
    check_tokenizers_agree(hf_tok, tokenizer, sentences[:: max(1, len(sentences) // 200)])
    examples = hf_examples(hf_tok, sentences, seq)

    def selfsup_arm(name: str, pack: bool, dense: bool = False) -> Arm:
        torch.manual_seed(t.seed)
        model = selfsup_model(cfg, dense)
        optimizer = build_optimizer(model, t)
        return Arm(
            name,
            selfsup_batches(cfg, tokenizer, store, pack),
            lambda b: selfsup_step(model, optimizer, b, clip),
        )

    def hf_arm(name: str, batches: Iterator[dict]) -> Arm:
        torch.manual_seed(t.seed)
        model = hf_model(cfg.model, tokenizer.pad_id)
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=t.lr,
            betas=(t.adam_beta1, t.adam_beta2),
            weight_decay=t.weight_decay,
        )
        return Arm(name, batches, lambda b: hf_step(model, optimizer, b, clip))

    pack = cfg.data.pack
    arms = [
        selfsup_arm(f"selfsup (preset small: pack={str(pack).lower()}, sparse prediction)", pack),
        hf_arm(
            "transformers BertForMaskedLM + DataCollatorForLanguageModeling",
            hf_batches(hf_tok, examples, t.batch_size, rate, t.seed),
        ),
    ]
    if s.ablations:
        arms += [
            selfsup_arm(f"ablation: selfsup with pack={str(not pack).lower()}", not pack),
            selfsup_arm("ablation: selfsup with dense prediction (logits everywhere)", pack, True),
            hf_arm(
                f"ablation: transformers fed selfsup's batches (pack={str(pack).lower()})",
                as_hf_inputs(selfsup_batches(cfg, tokenizer, store, pack)),
            ),
        ]
    return arms


def main(argv: Sequence[str] | None = None) -> list[Row]:
    begin = time.perf_counter()
    s = parse_settings(argv)
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, store = prepared_data(Path(s.prepared) if s.prepared else out / "prepared")
    cfg = preset_config(tokenizer.vocab_size)
    cfg.train.seed = s.seed
    flops = model_flops_per_token(cfg.model, cfg.data.max_seq_len, cfg.masking.rate)
    m = cfg.model
    print(
        f"preset small, MLM: {m.num_layers} layers x {m.hidden_size}, {m.num_heads} heads, "
        f"{m.norm_position}-LN, {m.position_encoding} positions, vocab {m.vocab_size}; "
        f"{cfg.train.batch_size} sequences of up to {cfg.data.max_seq_len} tokens; "
        f"masking rate {cfg.masking.rate}; pack={cfg.data.pack}; "
        f"model FLOPs per real token {flops / 1e6:.2f} M",
        flush=True,
    )
    arms = build_arms(s, cfg, tokenizer, store, out)
    rows, peaks = [], {}
    for threads in (int(x) for x in s.threads.split(",")):
        torch.set_num_threads(threads)
        peaks[threads] = matmul_peak(s.peak_size)
        print(
            f"{threads} thread(s): float32 matmul peak {peaks[threads] / 1e9:.1f} GFLOP/s",
            flush=True,
        )
        rows += measure_rows(arms, threads, s, flops, peaks[threads])
    table = results_table(rows)
    print()
    print(table)
    per_repeat = {}
    for threads in peaks:
        ours, theirs = [r for r in rows if r.threads == threads][:2]
        per_repeat[threads] = [
            (a.real_tokens / a.seconds) / (b.real_tokens / b.seconds)
            for a, b in zip(ours.measurements, theirs.measurements)
        ]
        print(
            f"{threads} thread(s): selfsup / transformers = {ours.ratio:.2f}x real tokens/s "
            f"(median of repeats; range {min(per_repeat[threads]):.2f}-"
            f"{max(per_repeat[threads]):.2f}x; target >= 2x: "
            f"{'met' if ours.ratio >= 2 else 'NOT met'})"
        )
    import transformers

    payload = {
        "settings": dataclasses.asdict(s),
        "preset": dataclasses.asdict(cfg),
        "model_flops_per_real_token": flops,
        "matmul_peak_flops": peaks,
        "rows": [dataclasses.asdict(r) for r in rows],
        "selfsup_over_transformers_per_repeat": per_repeat,
        "table": table,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    (out / "mlm_throughput.json").write_text(json.dumps(payload, indent=1))
    print(f"wrote {out / 'mlm_throughput.json'}; wall time {time.perf_counter() - begin:.0f} s")
    return rows


if __name__ == "__main__":
    main()
