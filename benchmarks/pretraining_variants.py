"""Which pretraining settings learn fastest on CPU? Short MLM runs on the same prepared corpus,
scored on the same held-out 15% masks.

Usage (needs a finished `selfsup pretrain --preset small ... --out runs/pd-small` for its corpus):
    python benchmarks/pretraining_variants.py runs/pd-small --variants mask15,mask15-lr5e-4,mask40 --steps 200
    python benchmarks/pretraining_variants.py runs/pd-small --variants mask40,mask40-batch8 --steps 200
    python benchmarks/pretraining_variants.py runs/pd-small --variants learned-padded,rotary-packed --steps 450

The mask* variants use the model of the `small` preset before 2026-12 (4 layers of width 256,
learned positions, sentences padded to 128 tokens); learned-padded and rotary-packed the current
preset's sizes (4 layers of width 128, batch 16 of 64 tokens), with a learned position table and
padded sentences, or rotary positions and packed windows.

`--steps` counts steps of batch 32; a variant with a smaller batch takes proportionally more steps,
so every variant sees the same number of sequences. Prints one line per variant: held-out MLM
accuracy and loss (15% masks), and wall seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from selfsup.data.masking import MaskingConfig
from selfsup.data.pretraining import BertPretrainingBatches
from selfsup.data.token_store import TokenStore
from selfsup.data.tokenizer import Tokenizer
from selfsup.objectives.bert_pretraining import BertPretrainer
from selfsup.recipes.text import preset_small, special_ids
from selfsup.trainer import train

OLD_SMALL = dict(hidden=256, heads=4, positions="learned", pack=False, seq=128)
NEW_SMALL = dict(hidden=128, heads=2, seq=64, batch=16, lr=2e-3, rate=0.4)
VARIANTS = {
    "learned-padded": NEW_SMALL | dict(positions="learned", pack=False),
    "rotary-packed": NEW_SMALL | dict(positions="rotary", pack=True),
    "mask15": dict(**OLD_SMALL, lr=1e-3, rate=0.15),
    "mask15-lr5e-4": dict(**OLD_SMALL, lr=5e-4, rate=0.15),
    "mask40": dict(**OLD_SMALL, lr=1e-3, rate=0.4),
    "mask40-batch8": dict(**OLD_SMALL, lr=1e-3, rate=0.4, batch=8),
    "mask40-postln-lr5e-4": dict(**OLD_SMALL, lr=5e-4, rate=0.4, norm="post"),
}


def run_variant(run: Path, name: str, steps_at_32: int, out: Path) -> dict[str, float]:
    v = VARIANTS[name]
    tok = Tokenizer.load(run / "tokenizer")
    train_store, valid_store = (
        TokenStore.open(run / "data/train"),
        TokenStore.open(run / "data/valid"),
    )
    special = special_ids(tok)
    batch = v.get("batch", 32)
    cfg = preset_small()
    cfg.model.vocab_size = tok.vocab_size
    cfg.model.norm_position = v.get("norm", cfg.model.norm_position)
    cfg.model.hidden_size, cfg.model.num_heads = v["hidden"], v["heads"]
    cfg.model.position_encoding = v["positions"]
    seq = v["seq"]
    cfg.train.steps = steps_at_32 * 32 // batch
    cfg.train.lr, cfg.train.warmup_steps = v["lr"], cfg.train.steps // 10
    cfg.train.eval_every, cfg.train.checkpoint_every, cfg.train.progress = 0, 10**9, False
    train_data = BertPretrainingBatches(
        train_store, special, ["mlm"], MaskingConfig(rate=v["rate"]), seq, batch, 0, v["pack"]
    )
    eval_data = BertPretrainingBatches(valid_store, special, ["mlm"], MaskingConfig(), seq, 32, 0)

    class Data:
        batch = train_data.batch
        eval_batches = eval_data.eval_batches

    torch.manual_seed(0)
    model = BertPretrainer(cfg.model, ["mlm"])
    start = time.perf_counter()
    metrics = train(model, Data(), cfg.train, out / name)
    metrics["seconds"] = time.perf_counter() - start
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "run", type=Path, help="a pretraining run folder (its tokenizer and data are reused)"
    )
    parser.add_argument(
        "--variants", default="mask15,mask40", help=f"comma-separated, from {', '.join(VARIANTS)}"
    )
    parser.add_argument("--steps", type=int, default=200, help="steps of batch 32 (default 200)")
    parser.add_argument("--out", type=Path, default=Path("runs/variants"))
    args = parser.parse_args()
    print("| variant | held-out MLM accuracy | held-out MLM loss | seconds |\n|---|---|---|---|")
    for name in args.variants.split(","):
        m = run_variant(args.run, name, args.steps, args.out)
        print(
            f"| {name} | {m['eval_mlm_accuracy']:.3f} | {m['eval_mlm_loss']:.3f} | {m['seconds']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
