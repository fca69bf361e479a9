"""Extractive question answering: the answer is a span copied from the passage.

Shape legend: B windows, T tokens, C width.

Devlin et al. 2019, 4.2: "We only introduce a start vector S ∈ R^H and an end vector E ∈ R^H
during fine-tuning. The probability of word i being the start of the answer span is computed as a
dot product between T_i and S followed by a softmax over all of the words in the paragraph". The
two vectors are the rows of one (2, C) linear layer. The softmax runs over the passage tokens of
the window and [CLS] (the label of a window that does not hold the answer); question tokens and
padding are masked out. Windows, labels and the choice of the best span over all windows of a
long passage live in `qa_windows`; the answer text is cut from the passage by character offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.text import CJK_UNIFIED, is_cjk
from selfsup.models.bert import BertModel
from selfsup.objectives.base import LossTerm
from selfsup.tasks.base import pad_rows
from selfsup.tasks.metrics import squad_scores
from selfsup.tasks.qa_windows import (
    SpanPrediction,
    Window,
    WindowConfig,
    build_windows,
    predict_answer,
)


class QuestionAnsweringHead(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.span = nn.Linear(hidden_size, 2)  # row 0: start vector S, row 1: end vector E

    def item_count(self, batch: dict) -> int:
        return len(batch["start_positions"])  # one answer span per window

    def logits(self, encoder: BertModel, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
        logits = self.span(hidden)  # (B, T, C) -> (B, T, 2)
        allowed = batch["answer_mask"].bool()[..., None]
        return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)

    def loss(self, encoder: BertModel, hidden: torch.Tensor, batch: dict) -> LossTerm:
        logits = self.logits(encoder, hidden, batch).float()
        start = F.cross_entropy(logits[..., 0], batch["start_positions"], reduction="sum")
        end = F.cross_entropy(logits[..., 1], batch["end_positions"], reduction="sum")
        correct = (logits[..., 0].argmax(-1) == batch["start_positions"]) & (
            logits[..., 1].argmax(-1) == batch["end_positions"]
        )
        return LossTerm((start + end) / 2, len(batch["start_positions"]), correct.sum())


def guess_language(examples: Sequence) -> str:
    """'zh' when the passages are mostly Chinese, else 'en' (selects the metric)."""
    sample = "".join(e.context[:200] for e in examples[:50])
    chinese = sum(is_cjk(char, CJK_UNIFIED) for char in sample)
    return "zh" if chinese > 0.3 * max(len(sample), 1) else "en"


def as_squad(examples: Sequence) -> dict:
    """Examples as a SQuAD-format data set (only what scoring reads)."""
    qas = [{"id": e.id, "answers": [{"text": t} for t, _ in e.answers]} for e in examples]
    return {"data": [{"paragraphs": [{"qas": qas}]}]}


class QuestionAnsweringTask:
    kind = "qa"

    def __init__(self, tokenizer, windows: WindowConfig, lang: str = "auto", seed: int = 0) -> None:
        self.tokenizer, self.windows, self.lang, self.seed = tokenizer, windows, lang, seed
        self.labels: list[str] = []
        # context offsets of the examples last encoded for inference, so predict() need not
        # tokenize them again; keyed by id() but checked by identity (ids are reused)
        self._context_offsets: dict[int, tuple[Any, list[tuple[int, int]]]] = {}

    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return QuestionAnsweringHead(hidden_size)

    def encode(self, examples: Sequence, training: bool) -> list[Window]:
        tok = self.tokenizer
        questions = tok.encode_batch([e.question for e in examples])
        contexts = tok.encode_batch([e.context for e in examples])
        rng = np.random.default_rng(self.seed)
        features: list[Window] = []
        if not training:
            self._context_offsets = {}  # only the latest inference set is kept
        for index, (example, q, c) in enumerate(zip(examples, questions, contexts)):
            answer = None
            if training:
                if not example.answers:
                    continue
                text, start = example.answers[0]
                answer = (start, start + len(text))
            else:
                self._context_offsets[id(example)] = (example, c.offsets)
            features += build_windows(
                q.ids, c.ids, c.offsets, self.windows, tok.cls_id, tok.sep_id, answer, rng, index
            )
        return features

    def collate(self, features: Sequence[Window]) -> dict:
        input_ids = pad_rows([w.input_ids for w in features], self.tokenizer.pad_id)
        attention_mask = pad_rows([[1] * len(w.input_ids) for w in features], 0)
        if self.windows.loss_over == "window":  # every position, padding included (as in HF)
            answer_mask = torch.ones_like(input_ids)
        else:
            answer_mask = pad_rows(
                [[int(i >= 0) for i in w.context_token_indices] for w in features], 0
            )
            answer_mask[:, 0] = 1  # [CLS]: "no answer in this window"
        batch = {
            "input_ids": input_ids,
            "token_type_ids": pad_rows([w.token_type_ids for w in features], 0),
            "attention_mask": attention_mask,
            "answer_mask": answer_mask,
            "num_tokens": int(attention_mask.sum()),
        }
        if all(w.start_position is not None for w in features):
            batch["start_positions"] = torch.tensor([w.start_position for w in features])
            batch["end_positions"] = torch.tensor([w.end_position for w in features])
        return batch

    def predict(
        self, examples: Sequence, features: Sequence[Window], outputs: list[np.ndarray]
    ) -> list[SpanPrediction]:
        """The best span of every example over all of its windows."""
        by_example: dict[int, list[int]] = {}
        for f, window in enumerate(features):
            by_example.setdefault(window.example_index, []).append(f)
        predictions = []
        for index, example in enumerate(examples):
            chosen = by_example.get(index, [])
            cached = self._context_offsets.get(id(example))
            if cached is not None and cached[0] is example:
                offsets = cached[1]
            else:
                offsets = self.tokenizer.encode(example.context).offsets
            predictions.append(
                predict_answer(
                    [features[f] for f in chosen],
                    [outputs[f][:, 0] for f in chosen],
                    [outputs[f][:, 1] for f in chosen],
                    example.context,
                    offsets,
                    self.windows,
                )
            )
        return predictions

    def score(
        self, examples: Sequence, features: Sequence, outputs: list[np.ndarray]
    ) -> dict[str, float]:
        answers = {
            e.id: p.text for e, p in zip(examples, self.predict(examples, features, outputs))
        }
        lang = guess_language(examples) if self.lang == "auto" else self.lang
        scores = squad_scores(as_squad(examples), answers, lang)
        return {
            k: float(v) for k, v in scores.items() if k not in ("total", "missing", "unknown_ids")
        }
