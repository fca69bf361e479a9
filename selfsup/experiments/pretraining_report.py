"""Did pretraining learn anything? A report on a finished pretraining run.

`python -m selfsup.experiments.pretraining_report RUN` prints:
- held-out MLM accuracy (top 1 and top 5) and perplexity next to the best unigram baseline (always
  predicting the most frequent training token) on the *same* held-out masks;
- NSP and SOP accuracy next to chance (the majority label of the held-out pairs);
- the fixed cloze list (`selfsup.evaluation.cloze`, for a run on Chinese text): how many hidden
  characters come back in the top 5;
- fill-mask on held-out sentences: one character of each is masked (seeded), and we show the
  model's top 5 and whether the hidden character is among them.

With `--curve PNG [--compare RUN ...]` it also draws held-out MLM accuracy against the run's wall
time (minutes since the run started, reading and tokenizing the corpus included) for this run and
the others, so two presets can be compared at equal time.
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
from selfsup.evaluation.cloze import describe_cloze, run_cloze
from selfsup.inference.fill_mask import fill_mask, load_pretrained
from selfsup.recipes.text import special_ids
from selfsup.reporting import pyplot, save_figure


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


def heldout_curve(run_dir: Path) -> list[tuple[float, float, float]]:
    """(minutes since the run started, held-out MLM accuracy, top-5 accuracy) per evaluation."""
    points = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "elapsed_s" in record and "eval_mlm_accuracy" in record:
            points.append(
                (
                    record["elapsed_s"] / 60,
                    record["eval_mlm_accuracy"],
                    record.get("eval_mlm_top5_accuracy", float("nan")),
                )
            )
    return points


def plot_curves(runs: list[Path], path: Path) -> None:
    """Held-out MLM accuracy vs wall minutes, one line per run (runs without timed evaluations,
    from before elapsed_s was recorded, are skipped with a note)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for run_dir in runs:
        points = heldout_curve(run_dir)
        if not points:
            print(f"note: {run_dir} has no timed evaluations; left out of {path}", file=sys.stderr)
            continue
        minutes, accuracy, _ = zip(*points)
        ax.plot(minutes, accuracy, marker="o", markersize=3, label=run_dir.name)
    ax.set(
        xlabel="wall-clock minutes (data preparation included)",
        ylabel="held-out MLM accuracy (15% masks)",
        title="BERT pretraining on People's Daily",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    plt.close(fig)


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
        if "eval_mlm_top5_accuracy" in m:
            out.append(f"| held-out MLM top-5 accuracy | {m['eval_mlm_top5_accuracy']:.3f} | |")
        out.append(f"| held-out MLM perplexity | {m['eval_mlm_perplexity']:.1f} | |")
    for name, (acc, share, balanced) in pair_scores(run_dir).items():
        out.append(
            f"| held-out {name.upper()} accuracy | {acc:.3f} | {share:.3f} (majority label) |"
        )
        out.append(
            f"| held-out {name.upper()} balanced accuracy | {balanced:.3f} | 0.500 (chance) |"
        )
    run = load_pretrained(run_dir)
    if "mlm" in run.config.objectives and run.config.data.corpus == "peoples-daily":
        out += ["", "cloze check (the fixed list in selfsup/evaluation/cloze.py):"]
        out += describe_cloze(run_cloze(run))
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
    parser.add_argument(
        "--curve", metavar="PNG", help="draw held-out MLM accuracy vs wall minutes into PNG"
    )
    parser.add_argument(
        "--compare", nargs="*", default=[], metavar="RUN", help="other runs to draw beside it"
    )
    args = parser.parse_args(argv)
    try:
        print(report(args.run, args.sentences, args.seed))
        if args.curve:
            plot_curves([Path(args.run), *map(Path, args.compare)], Path(args.curve))
            print(f"curve: {args.curve}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
