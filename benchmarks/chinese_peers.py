"""selfsup's Chinese models next to the peers people already use, on the same test splits.

- Word segmentation: jieba (default mode, HMM on) vs a selfsup run fine-tuned on the built-in
  "seg" task (BMES tags per character), word-level P/R/F1 on the People's Daily test split.
- Sentiment: snownlp's own classifier (`SnowNLP(text).sentiments >= 0.5`) vs a selfsup run
  fine-tuned on the built-in "sentiment" task, accuracy on the same test split. Note: snownlp's
  classifier was trained on all of this data, test split included, so its number is optimistic.

Usage:
    python benchmarks/chinese_peers.py --seg-run runs/seg --sentiment-run runs/sentiment
Either run may be left out; the peer is measured anyway.
"""

from __future__ import annotations

import argparse
import time

from selfsup.data.catalog import builtin_task
from selfsup.tasks.metrics import accuracy, bmes_to_spans, segmentation_prf


def words_from_bmes(text: str, tags: list[str]) -> list[str]:
    return [text[s:e] for s, e in sorted(bmes_to_spans(tags))]


def segmentation_rows(seg_run: str | None) -> list[tuple[str, float, float, float, float]]:
    import jieba

    jieba.setLogLevel(60)
    test = builtin_task("seg").splits["test"]
    gold = [words_from_bmes(e.text, e.tags) for e in test]
    rows = []
    start = time.perf_counter()
    predicted = [list(jieba.cut(e.text)) for e in test]
    prf = segmentation_prf(gold, predicted)
    rows.append(
        ("jieba 0.42 (peer)", prf.precision, prf.recall, prf.f1, time.perf_counter() - start)
    )
    if seg_run:
        from selfsup.inference.answer import load_finetuned, predict_split

        run = load_finetuned(seg_run)
        start = time.perf_counter()
        tags = predict_split(run, test)
        predicted = [words_from_bmes(e.text, t) for e, t in zip(test, tags)]
        prf = segmentation_prf(gold, predicted)
        rows.append(
            (f"selfsup ({seg_run})", prf.precision, prf.recall, prf.f1, time.perf_counter() - start)
        )
    return rows


def sentiment_rows(sentiment_run: str | None) -> list[tuple[str, float, float]]:
    from snownlp import SnowNLP

    test = builtin_task("sentiment").splits["test"]
    gold = [e.label for e in test]
    start = time.perf_counter()
    predicted = ["pos" if SnowNLP(e.text).sentiments >= 0.5 else "neg" for e in test]
    rows = [
        (
            "snownlp 0.12 (peer; trained on this test split too)",
            accuracy(gold, predicted),
            time.perf_counter() - start,
        )
    ]
    if sentiment_run:
        from selfsup.inference.answer import load_finetuned, predict_split

        run = load_finetuned(sentiment_run)
        start = time.perf_counter()
        predicted = predict_split(run, test)
        rows.append(
            (f"selfsup ({sentiment_run})", accuracy(gold, predicted), time.perf_counter() - start)
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seg-run", help="a selfsup run fine-tuned on the seg task")
    parser.add_argument("--sentiment-run", help="a selfsup run fine-tuned on the sentiment task")
    args = parser.parse_args()
    seg = segmentation_rows(args.seg_run)
    print("| word segmentation, People's Daily test split | precision | recall | F1 | seconds |")
    print("|---|---|---|---|---|")
    for name, p, r, f, s in seg:
        print(f"| {name} | {p:.4f} | {r:.4f} | {f:.4f} | {s:.1f} |")
    if len(seg) > 1:
        print(f"\nselfsup / jieba F1 ratio: {seg[1][3] / seg[0][3]:.3f}")
    sent = sentiment_rows(args.sentiment_run)
    print("\n| sentiment, snownlp reviews test split | accuracy | seconds |")
    print("|---|---|---|")
    for name, acc, s in sent:
        print(f"| {name} | {acc:.4f} | {s:.1f} |")
    if len(sent) > 1:
        print(f"\nselfsup / snownlp accuracy ratio: {sent[1][1] / sent[0][1]:.3f}")


if __name__ == "__main__":
    main()
