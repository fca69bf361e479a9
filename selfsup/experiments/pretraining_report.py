"""Did pretraining learn anything? A report on a finished pretraining run.

`python -m selfsup.experiments.pretraining_report RUN` prints:
- held-out MLM accuracy and perplexity next to the best unigram baseline (always predicting the
  most frequent training token) on the *same* held-out masks;
- NSP and SOP accuracy next to chance (the majority label of the held-out pairs);
- fill-mask on held-out sentences: one character of each is masked (seeded), and we show the
  model's top 5 and whether the hidden character is among them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from selfsup.batch import IGNORE_INDEX
from selfsup.data.masking import MaskingConfig
from selfsup.data.pretraining import BertPretrainingBatches
from selfsup.data.text import CJK_UNIFIED, is_cjk
from selfsup.data.token_store import TokenStore
from selfsup.data.tokenizer import Tokenizer
from selfsup.errors import UserError
from selfsup.inference.fill_mask import fill_mask, load_pretrained
from selfsup.recipes.text import special_ids


def heldout_sentences(run_dir: Path, count: int, seed: int) -> list[str]:
    """Sentences of the held-out split, decoded, of 8 to 40 characters."""
    store = TokenStore.open(run_dir / "data" / "valid")
    tok = Tokenizer.load(run_dir / "tokenizer")
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    for s in rng.permutation(store.num_sentences):
        lo, hi = int(store.sentence_offsets[s]), int(store.sentence_offsets[s + 1])
        text = tok.decode(store.tokens[lo:hi].tolist())
        if (
            8 <= len(text) <= 40
            and "[UNK]" not in text
            and sum(is_cjk(c, CJK_UNIFIED) for c in text) >= 6
        ):
            chosen.append(text)
        if len(chosen) == count:
            break
    return chosen


def fill_mask_table(
    run_dir: Path, count: int = 12, seed: int = 0
) -> tuple[list[str], float, float]:
    """Lines of the fill-mask table, top-1 and top-5 hit rates on the masked characters."""
    run = load_pretrained(run_dir)
    rng = np.random.default_rng(seed + 1)
    lines, top1, top5 = [], 0, 0
    sentences = heldout_sentences(run_dir, count, seed)
    for text in sentences:
        positions = [i for i, c in enumerate(text) if is_cjk(c, CJK_UNIFIED)]
        i = int(rng.choice(positions))
        masked = text[:i] + "[MASK]" + text[i + 1 :]
        (pred,) = fill_mask(run, masked, top_k=5)
        guesses = [t for t, _ in pred.candidates]
        top1 += guesses[0] == text[i]
        top5 += text[i] in guesses
        shown = " ".join(f"{t}({p:.2f})" for t, p in pred.candidates)
        lines.append(f"| {masked} | {text[i]} | {shown} |")
    n = max(len(sentences), 1)
    return lines, top1 / n, top5 / n


def pair_scores(run_dir: Path) -> dict[str, tuple[float, float, float]]:
    """NSP/SOP on the held-out batches the run evaluated on: (accuracy, majority-label share,
    balanced accuracy). Balanced accuracy (mean recall of the two labels) has chance 0.5 whatever
    the label mix: with NSP and SOP both on, three quarters of pairs are "not next"."""
    run = load_pretrained(run_dir)
    cfg = run.config
    names = [n for n in ("nsp", "sop") if n in cfg.objectives]
    if not names:
        return {}
    data = BertPretrainingBatches(
        TokenStore.open(run_dir / "data" / "valid"),
        special_ids(run.tokenizer),
        cfg.objectives,
        MaskingConfig(whole_word=cfg.masking.whole_word),
        cfg.data.max_seq_len,
        cfg.train.batch_size,
        cfg.train.seed,
    )
    gold: dict[str, list] = {n: [] for n in names}
    pred: dict[str, list] = {n: [] for n in names}
    with torch.no_grad():
        for batch in data.eval_batches(cfg.train.eval_batches):
            hidden = run.model.encoder(
                batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
            )
            pooled = run.model.encoder.pool(hidden)
            for n in names:
                labels = batch[f"{n}_labels"]
                keep = labels != IGNORE_INDEX
                gold[n] += labels[keep].tolist()
                pred[n] += run.model.objectives[n].head(pooled).argmax(-1)[keep].tolist()
    out = {}
    for n in names:
        g, p = np.array(gold[n]), np.array(pred[n])
        recalls = [float((p[g == c] == c).mean()) for c in (0, 1) if (g == c).any()]
        share = float(max((g == 0).mean(), (g == 1).mean()))
        out[n] = (float((g == p).mean()), share, float(np.mean(recalls)))
    return out


def report(run_dir: str | Path, count: int = 12, seed: int = 0) -> str:
    run_dir = Path(run_dir)
    metrics_path = run_dir / "final_metrics.json"
    if not metrics_path.exists():
        raise UserError(f"{run_dir}: no final_metrics.json (has the run finished?)")
    m = json.loads(metrics_path.read_text())
    out = ["| metric | model | baseline |", "|---|---|---|"]
    if "eval_mlm_accuracy" in m:
        out.append(
            f"| held-out MLM accuracy | {m['eval_mlm_accuracy']:.3f} | {m['eval_mlm_unigram_accuracy']:.3f} (most frequent token) |"
        )
        out.append(f"| held-out MLM perplexity | {m['eval_mlm_perplexity']:.1f} | |")
    for name, (acc, share, balanced) in pair_scores(run_dir).items():
        out.append(
            f"| held-out {name.upper()} accuracy | {acc:.3f} | {share:.3f} (majority label) |"
        )
        out.append(
            f"| held-out {name.upper()} balanced accuracy | {balanced:.3f} | 0.500 (chance) |"
        )
    lines, top1, top5 = fill_mask_table(run_dir, count, seed)
    out += [
        "",
        f"fill-mask on {len(lines)} held-out sentences: top-1 {top1:.2f}, top-5 {top5:.2f}",
        "",
    ]
    out += ["| masked sentence | hidden | top 5 |", "|---|---|---|", *lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="a finished selfsup pretraining run folder")
    parser.add_argument(
        "--sentences", type=int, default=12, help="held-out sentences to fill (default 12)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        print(report(args.run, args.sentences, args.seed))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
