"""Token classification: one class per token (word segmentation, POS tagging, NER).

Shape legend: B batch, T tokens, C width, L labels.

The same linear layer reads every token's output (Devlin et al. 2019, 4.3: "we feed the final
hidden representation of each token into a classification layer over the NER label set").

Labels live on *units* of the source text (characters for character-level data such as Chinese
NER, words for CoNLL data), and the tokenizer cuts the text its own way. Units and tokens meet
through character offsets: a unit's label goes to the first token that starts inside it (the other
tokens of that unit carry no loss, as in BERT's NER). At prediction time a unit takes the tag of
its first token; a unit with no token of its own (inside a token that spans several units, such as
an [UNK] covering a whole word) continues the tag of the token that covers it. Metrics are then
computed on the units, so they do not depend on the tokenizer: span-level P/R/F1 for BIO tags (the
same numbers as seqeval), word-level P/R/F1 for BMES segmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.batch import IGNORE_INDEX, count_labelled
from selfsup.models.bert import BertModel
from selfsup.objectives.base import LossTerm
from selfsup.tasks.base import pad_rows, padded_inputs
from selfsup.tasks.metrics import accuracy, bmes_prf, span_prf

BMES = frozenset("BMES")


@dataclass
class TaggingFeature:
    input_ids: list[int]
    token_type_ids: list[int]
    labels: list[int]  # per input position; -100 where no unit starts
    unit_positions: list[int]  # per unit, see align_units (token positions exclude [CLS])
    num_units: int


NO_TOKEN = -(10**9)  # a unit outside every token (whitespace, or cut off by max_seq_len)


class TokenClassificationHead(nn.Module):
    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def item_count(self, batch: dict) -> int:
        return count_labelled(batch["labels"])  # tokens that start a tagged unit

    def logits(self, encoder: BertModel, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))  # (B, T, C) -> (B, T, L)

    def loss(self, encoder: BertModel, hidden: torch.Tensor, batch: dict) -> LossTerm:
        labels = batch["labels"]
        where = labels != IGNORE_INDEX
        logits = self.logits(encoder, hidden, batch)[where]  # (N, L) at labelled positions only
        loss = F.cross_entropy(logits.float(), labels[where], reduction="sum")
        return LossTerm(loss, int(where.sum()), (logits.argmax(-1) == labels[where]).sum())


def units_of(example) -> tuple[list[tuple[int, int]], list[str]]:
    """The labelled units of an example: (char spans, tags). Characters for character-level data
    (whitespace characters are not units), the source's tokens for word-level data."""
    if example.tokens is not None:
        return list(example.token_char_spans), list(example.tags)
    spans, tags = [], []
    for i, (char, tag) in enumerate(zip(example.text, example.tags)):
        if not char.isspace():
            spans.append((i, i + 1))
            tags.append(tag)
    return spans, tags


def align_units(unit_spans: list[tuple[int, int]], offsets: list[tuple[int, int]]) -> list[int]:
    """For each unit: the position of the first token that starts inside it; failing that,
    -(position of the token covering its first character) - 1; failing that, NO_TOKEN."""
    starts_at: dict[int, int] = {}
    covers: dict[int, int] = {}
    for t, (s, e) in enumerate(offsets):
        starts_at.setdefault(s, t)
        for c in range(s, e):
            covers.setdefault(c, t)
    out = []
    for start, end in unit_spans:
        own = next((starts_at[c] for c in range(start, end) if c in starts_at), None)
        if own is not None:
            out.append(own)
        elif start in covers:
            out.append(-covers[start] - 1)
        else:
            out.append(NO_TOKEN)
    return out


def continue_tag(tag: str) -> str:
    """The tag of a unit inside a token whose first unit got `tag`."""
    if tag in BMES:
        return "M" if tag in "BM" else "E"
    if tag[:2] in ("B-", "I-"):
        return "I-" + tag[2:]
    return tag


class TaggingTask:
    """One text -> one tag per unit (character or source token)."""

    kind = "tagging"

    def __init__(self, tokenizer, labels: list[str], max_seq_len: int) -> None:
        self.tokenizer, self.labels, self.max_seq_len = tokenizer, labels, max_seq_len
        self.label_ids = {label: i for i, label in enumerate(labels)}
        self.outside = "O" if "O" in self.label_ids else ("S" if set(labels) <= BMES else labels[0])

    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return TokenClassificationHead(hidden_size, len(self.labels), dropout)

    def encode(self, examples: Sequence, training: bool) -> list[TaggingFeature]:
        tok = self.tokenizer
        encodings = tok.encode_batch([e.text for e in examples])
        features = []
        for example, enc in zip(examples, encodings):
            kept = self.max_seq_len - 2
            offsets = enc.offsets[:kept]
            spans, tags = units_of(example)
            positions = align_units(spans, offsets)
            labels = [IGNORE_INDEX] * len(offsets)
            for pos, tag in zip(positions, tags):
                if pos >= 0:
                    labels[pos] = self.label_ids.get(tag, IGNORE_INDEX)
            features.append(
                TaggingFeature(
                    input_ids=[tok.cls_id, *enc.ids[:kept], tok.sep_id],
                    token_type_ids=[0] * (len(offsets) + 2),
                    labels=[IGNORE_INDEX, *labels, IGNORE_INDEX],
                    unit_positions=positions,
                    num_units=len(spans),
                )
            )
        return features

    def collate(self, features: Sequence[TaggingFeature]) -> dict:
        batch = padded_inputs(features, self.tokenizer.pad_id)
        batch["labels"] = pad_rows([f.labels for f in features], IGNORE_INDEX)
        return batch

    def predict(
        self, features: Sequence[TaggingFeature], outputs: list[np.ndarray]
    ) -> list[list[str]]:
        """Predicted tag of every unit of every example."""
        predictions = []
        for feature, logits in zip(features, outputs):
            token_tags = [self.labels[i] for i in logits.argmax(-1)[1:-1]]  # drop [CLS] / [SEP]
            unit_tags = []
            for pos in feature.unit_positions:
                if pos == NO_TOKEN or -pos - 1 >= len(token_tags) or pos >= len(token_tags):
                    unit_tags.append(self.outside)
                elif pos >= 0:
                    unit_tags.append(token_tags[pos])
                else:
                    unit_tags.append(continue_tag(token_tags[-pos - 1]))
            predictions.append(unit_tags)
        return predictions

    def score(
        self, examples: Sequence, features: Sequence, outputs: list[np.ndarray]
    ) -> dict[str, float]:
        gold = [units_of(e)[1] for e in examples]
        pred = self.predict(features, outputs)
        flat_gold = [t for tags in gold for t in tags]
        flat_pred = [t for tags in pred for t in tags]
        scores = {"unit_accuracy": accuracy(flat_gold, flat_pred)}
        if set(self.labels) <= BMES:
            prf = bmes_prf(gold, pred)
            scores.update(word_precision=prf.precision, word_recall=prf.recall, word_f1=prf.f1)
        else:
            spans = span_prf(gold, pred)
            scores.update(
                span_precision=spans.precision, span_recall=spans.recall, span_f1=spans.f1
            )
        return scores
