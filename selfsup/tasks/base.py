"""What every fine-tuning task shares: encoder + head as one module, batches, prediction.

Shape legend: B batch, T tokens, C width, L labels.

A task (classification, tagging, QA) is a small class with four parts:
- `build_head(model_cfg)`: the randomly initialised head (a linear layer on [CLS], on every
  token, or the two QA vectors);
- `encode(examples, training)`: examples -> features (token ids and labels, one or more per example);
- `collate(features)`: features -> a padded batch dict (the contract: selfsup/batch.py);
- `score(examples, features, outputs)`: per-feature logits -> the task's metrics.
The head computes `loss(hidden, batch)` and `logits(hidden, batch)`; the encoder and the head are
trained together (the whole model is fine-tuned, not only the head).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from selfsup.data.order import EpochOrder
from selfsup.errors import UserError
from selfsup.models.bert import BertModel
from selfsup.objectives.base import LossTerm, StepOutput
from selfsup.trainer import to_device


class TaskHead(Protocol):
    def item_count(self, batch: dict) -> int: ...
    def loss(self, encoder: BertModel, hidden: torch.Tensor, batch: dict) -> LossTerm: ...
    def logits(self, encoder: BertModel, hidden: torch.Tensor, batch: dict) -> torch.Tensor: ...


class FinetuneModel(nn.Module):
    """An encoder and one task head; batch -> StepOutput with the single term "task"."""

    def __init__(self, encoder: BertModel, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def _hidden(self, batch: dict) -> torch.Tensor:
        return self.encoder(
            batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        )

    def item_counts(self, batch: dict) -> dict[str, int]:
        return {"task": self.head.item_count(batch)}

    def forward(self, batch: dict) -> StepOutput:
        return StepOutput({"task": self.head.loss(self.encoder, self._hidden(batch), batch)})

    def logits(self, batch: dict) -> torch.Tensor:
        return self.head.logits(self.encoder, self._hidden(batch), batch)


def pad_rows(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Lists of unequal length -> (B, T) long tensor padded with `value`."""
    out = torch.full((len(rows), max(map(len, rows))), value, dtype=torch.long)
    for r, row in enumerate(rows):
        out[r, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def padded_inputs(features: Sequence[Any], pad_id: int) -> dict:
    """input_ids, token_type_ids and attention_mask of features with those two id lists."""
    input_ids = pad_rows([f.input_ids for f in features], pad_id)
    attention_mask = pad_rows([[1] * len(f.input_ids) for f in features], 0)
    return {
        "input_ids": input_ids,
        "token_type_ids": pad_rows([f.token_type_ids for f in features], 0),
        "attention_mask": attention_mask,
        "num_tokens": int(attention_mask.sum()),
    }


class FeatureBatches:
    """Counter-based batches over a list of features (see data/pretraining.py for why):
    micro-batch i is a pure function of (seed, i), so fine-tuning resumes exactly too."""

    def __init__(
        self,
        train: Sequence[Any],
        dev: Sequence[Any],
        collate: Callable[[Sequence[Any]], dict],
        batch_size: int,
        seed: int,
    ) -> None:
        if not train:
            raise UserError("the training split produced no features (is it empty?)")
        self.train, self.dev, self.collate = train, dev, collate
        self.batch_size, self.seed = batch_size, seed
        self._order = EpochOrder(len(train), batch_size, seed)
        self.per_epoch = self._order.batches_per_epoch

    def batch(self, index: int) -> dict:
        chosen, _, _ = self._order.rows(index)
        return self.collate([self.train[i] for i in chosen])

    def eval_batches(self, max_batches: int) -> list[dict]:
        n = min(len(self.dev), max_batches * self.batch_size)
        return [
            self.collate(self.dev[i : i + self.batch_size]) for i in range(0, n, self.batch_size)
        ]


PREDICT_BATCH = 32  # on CPU, 16-32 windows a batch ran 12-20% faster than 64 (docs/PERFORMANCE.md)


@torch.inference_mode()
def predict_logits(
    model: FinetuneModel,
    features: Sequence[Any],
    collate: Callable[[Sequence[Any]], dict],
    batch_size: int = PREDICT_BATCH,
    device: torch.device | str = "cpu",
    longest_first: bool = True,
) -> list[np.ndarray]:
    """The head's logits for every feature, unpadded: one array per feature, in their order.

    Features are batched longest first, so each batch is padded only to its own longest and holds
    inputs of similar length (in the given order a quarter of a QA batch was padding). A
    feature's logits do not depend on its batch: padding is masked out of attention.
    `longest_first=False` keeps the given order (the earlier path, kept for comparisons)."""
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    was_training = model.training
    model.eval()
    order = list(range(len(features)))
    if longest_first:
        order.sort(key=lambda i: -len(features[i].input_ids))
    outputs: list[np.ndarray | None] = [None] * len(features)
    for i in range(0, len(order), batch_size):
        chosen = order[i : i + batch_size]
        batch = to_device(collate([features[j] for j in chosen]), torch.device(device))
        logits = model.logits(batch).float().cpu().numpy()
        lengths = batch["attention_mask"].sum(1).tolist()
        for j, row, n in zip(chosen, logits, lengths):
            outputs[j] = row[:n] if row.ndim > 1 else row  # per-token outputs lose their padding
    model.train(was_training)
    return outputs  # type: ignore[return-value]
