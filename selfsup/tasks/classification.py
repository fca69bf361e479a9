"""Sequence classification (one text -> a class) and pair classification (two texts -> a class).

Shape legend: B batch, C width, L labels.

Devlin et al. 2019, 4.1: "the final hidden vector C corresponding to the first input token ([CLS])
[is] the aggregate representation. The only new parameters introduced during fine-tuning are
classification layer weights W ∈ R^{K×H}". We read the pooled [CLS] vector (dense + tanh, part
of the pretrained encoder, as BERT does) through dropout and one linear layer. With
`pooling="mean"` the sequence vector is the average of its token vectors instead: those are what
masked-LM pretraining trains, while the pooler is trained only by NSP/SOP, so after MLM alone the
[CLS] summary must be learnt from the labels (Reimers & Gurevych 2019 average for the same reason). A pair is packed as
`[CLS] A [SEP] B [SEP]` with segment ids 0 for A and 1 for B; when it does not fit, tokens are
taken from the end of the longer text first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.models.bert import BertModel
from selfsup.objectives.base import LossTerm
from selfsup.tasks.base import padded_inputs
from selfsup.tasks.metrics import accuracy, macro_f1


@dataclass
class ClassificationFeature:
    input_ids: list[int]
    token_type_ids: list[int]
    label: int  # -1 when the example has no known label


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, C) token vectors -> (B, C), the average over each row's real tokens."""
    weights = attention_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class SequenceClassificationHead(nn.Module):
    def __init__(
        self, hidden_size: int, num_labels: int, dropout: float, pooling: str = "cls"
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def item_count(self, batch: dict) -> int:
        return int(batch["labels"].numel())  # one label per sequence

    def logits(self, encoder: BertModel, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
        if self.pooling == "mean":
            pooled = mean_pool(hidden, batch["attention_mask"])
        else:
            pooled = encoder.pool(hidden)
        return self.classifier(self.dropout(pooled))  # (B, C) -> (B, L)

    def loss(self, encoder: BertModel, hidden: torch.Tensor, batch: dict) -> LossTerm:
        logits, labels = self.logits(encoder, hidden, batch), batch["labels"]
        loss = F.cross_entropy(logits.float(), labels, reduction="sum")
        return LossTerm(loss, int(labels.numel()), (logits.argmax(-1) == labels).sum())


def truncate_pair(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Drop tokens from the end of the longer of the two until both fit in `budget`."""
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        (a if len(a) >= len(b) else b).pop()
    return a, b


class ClassificationTask:
    """One text or a pair of texts -> one of `labels`."""

    kind = "classification"

    def __init__(
        self,
        tokenizer,
        labels: list[str],
        max_seq_len: int,
        pair: bool = False,
        pooling: str = "cls",
    ) -> None:
        self.tokenizer, self.labels, self.max_seq_len, self.pair = (
            tokenizer,
            labels,
            max_seq_len,
            pair,
        )
        self.pooling = pooling
        self.label_ids = {label: i for i, label in enumerate(labels)}
        if pair:
            self.kind = "pair"

    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return SequenceClassificationHead(hidden_size, len(self.labels), dropout, self.pooling)

    def encode(self, examples: Sequence, training: bool) -> list[ClassificationFeature]:
        tok = self.tokenizer
        texts_a = tok.encode_batch([e.text for e in examples])
        texts_b = tok.encode_batch([e.text_b or "" for e in examples]) if self.pair else None
        features = []
        for i, example in enumerate(examples):
            if self.pair:
                a, b = truncate_pair(texts_a[i].ids, texts_b[i].ids, self.max_seq_len - 3)
                ids = [tok.cls_id, *a, tok.sep_id, *b, tok.sep_id]
                types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
            else:
                a = texts_a[i].ids[: self.max_seq_len - 2]
                ids = [tok.cls_id, *a, tok.sep_id]
                types = [0] * len(ids)
            features.append(
                ClassificationFeature(ids, types, self.label_ids.get(example.label, -1))
            )
        return features

    def collate(self, features: Sequence[ClassificationFeature]) -> dict:
        batch = padded_inputs(features, self.tokenizer.pad_id)
        batch["labels"] = torch.tensor([f.label for f in features], dtype=torch.long)
        return batch

    def score(
        self, examples: Sequence, features: Sequence, outputs: list[np.ndarray]
    ) -> dict[str, float]:
        predicted = self.predict(outputs)
        gold = [e.label for e in examples]
        return {"accuracy": accuracy(gold, predicted), "macro_f1": macro_f1(gold, predicted)}

    def predict(self, outputs: list[np.ndarray]) -> list[str]:
        return [self.labels[int(np.argmax(o))] for o in outputs]
