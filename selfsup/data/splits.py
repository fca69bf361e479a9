"""Seeded splits and subsets of labelled examples: the same seed gives the same split on every
machine, so runs and baselines are scored on the same examples.

- `split_groups` / `split_by_label`: 80/10/10 train/dev/test for sources that have no split of
  their own, by whole groups (a document's sentences stay together) or stratified by label;
- `deduplicate`: one copy of each text, none of a text with two labels;
- `without_overlap`: a training set without the sentences that share text with the test set;
- `seeded_subset`: a seeded random subset in original order, nested across sizes
  (`max_train_examples` and friends).
"""

from __future__ import annotations

import collections
import random
from typing import TypeVar

import numpy as np

from selfsup.data.labelled import ReadReport, TaggedExample, TextExample

SPLIT_NAMES = ("train", "dev", "test")
_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
T = TypeVar("T")


def _cut(count: int) -> tuple[int, int]:
    """Where train ends and dev ends among `count` shuffled items (dev and test rounded, train
    takes the rest)."""
    dev = round(count * _SPLIT_FRACTIONS[1])
    test = round(count * _SPLIT_FRACTIONS[2])
    return count - dev - test, count - test


def split_groups(groups: list[list[T]], seed: int) -> dict[str, list[T]]:
    """Split whole groups 80/10/10 by a seeded shuffle of the groups; items keep file order.

    Used for stratified splits (a group per label, split separately) through `split_by_label`,
    and for document splits (every group one document, so its items stay together).
    """
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    train_end, dev_end = _cut(len(order))
    chosen = (order[:train_end], order[train_end:dev_end], order[dev_end:])
    splits = {}
    for name, indices in zip(SPLIT_NAMES, chosen):
        splits[name] = [item for index in sorted(indices) for item in groups[index]]
    return splits


def split_by_label(examples: list[TextExample], seed: int) -> dict[str, list[TextExample]]:
    """Stratified 80/10/10 split: each label's examples are split on their own, so every split
    has the labels in the file's proportions; examples keep file order within a split."""
    by_label: dict[str, list[int]] = collections.defaultdict(list)
    for index, example in enumerate(examples):
        by_label[example.label].append(index)
    chosen: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for offset, label in enumerate(sorted(by_label)):
        indices = by_label[label]
        # Singleton groups, so split_groups shuffles this label's examples one by one.
        parts = split_groups([[index] for index in indices], seed + offset)
        for name in SPLIT_NAMES:
            chosen[name].extend(parts[name])
    return {name: [examples[index] for index in sorted(chosen[name])] for name in SPLIT_NAMES}


def deduplicate(examples: list[TextExample], report: ReadReport) -> list[TextExample]:
    """Keep the first copy of each text (or text pair) and drop its exact repeats; drop every
    copy of a text that carries two labels (it would teach and test both answers)."""
    labels: dict[tuple[str, str | None], set[str]] = collections.defaultdict(set)
    for example in examples:
        labels[(example.text, example.text_b)].add(example.label)
    kept = []
    seen = set()
    for example in examples:
        key = (example.text, example.text_b)
        if len(labels[key]) > 1:
            report.skip("text with conflicting labels")
        elif key in seen:
            report.skip("exact duplicate")
        else:
            seen.add(key)
            kept.append(example)
    return kept


# MSRA's dump shares most of its text with the test file (sentences split differently), so a
# training sentence that shares any run of this many characters with the test text is dropped.
_OVERLAP_CHARS = 16


def _windows(text: str) -> set[str]:
    """Every run of _OVERLAP_CHARS characters of `text` (the whole text when shorter)."""
    count = max(1, len(text) - _OVERLAP_CHARS + 1)
    return {text[start : start + _OVERLAP_CHARS] for start in range(count)}


def without_overlap(
    train: list[TaggedExample], test: list[TaggedExample], report: ReadReport
) -> list[TaggedExample]:
    """`train` without the sentences that share a 16-character run with any `test` sentence."""
    test_windows = set().union(*(_windows(example.text) for example in test))
    kept = [example for example in train if not _windows(example.text) & test_windows]
    if len(kept) < len(train):
        report.skip("shares text with the test file", len(train) - len(kept))
    return kept


def seeded_subset(examples: list[T], n: int, seed: int = 0) -> list[T]:
    """A seeded random subset of n examples, in their original order (all when n <= 0).

    Nested: the first n of one seeded permutation, so with the same seed the subset of 50 lies
    inside the subset of 200, which lies inside that of 1,000: a label-budget curve adds
    examples instead of drawing new ones at every point."""
    if n <= 0 or n >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(seed).permutation(len(examples))[:n])
    return [examples[i] for i in keep]
