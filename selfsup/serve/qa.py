"""Question answering in the playground: the answer `selfsup ask` gives, and the n-best list
behind it.

The passage is cut into windows by the run's own task (any length, as `selfsup ask` does), the
model reads every window once, and from the same logits come
- the answer: the task's own prediction (`tasks/qa_windows.predict_answer`, the best span over
  all windows), so the page and `selfsup ask` never disagree;
- the n-best list: every window's valid spans (`qa_windows.best_spans`: n-best starts x n-best
  ends, the max-context rule, the length limit) pooled over windows, ranked by score (start logit
  + end logit; ties: the earlier window, then the earlier span, as `predict_answer` breaks them,
  so the first entry is the answer), one entry per character span, with each entry's share of
  the softmax over the list's scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from selfsup.data.labelled import QAExample
from selfsup.errors import UserError
from selfsup.recipes import LoadedRun
from selfsup.tasks.base import predict_logits
from selfsup.tasks.qa_windows import SpanPrediction, Window, WindowConfig, best_spans


@dataclass
class AnswerWithAlternatives:
    answer: SpanPrediction  # window -1 when no window had a valid span
    n_best: list[SpanPrediction]  # best first; n_best[0] is the answer
    probabilities: list[float]  # softmax over the n-best scores
    windows: int  # how many windows the passage was read in


def n_best_spans(
    windows: Sequence[Window],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    context: str,
    context_offsets: Sequence[tuple[int, int]],
    cfg: WindowConfig,
    n: int,
) -> list[SpanPrediction]:
    """The n best distinct character spans over all windows of one example, best first."""
    ranked = []
    for index, window in enumerate(windows):
        for span in best_spans(start_logits[index], end_logits[index], window, cfg):
            ranked.append((-span.score, index, span.start_position, span.end_position))
    ranked.sort()
    out: list[SpanPrediction] = []
    seen: set[tuple[int, int]] = set()
    for neg_score, index, start, end in ranked:
        indices = windows[index].context_token_indices
        start_char = context_offsets[indices[start]][0]
        end_char = context_offsets[indices[end]][1]
        if (start_char, end_char) in seen:  # the same characters, read in another window
            continue
        seen.add((start_char, end_char))
        out.append(
            SpanPrediction(context[start_char:end_char], start_char, end_char, -neg_score, index)
        )
        if len(out) == n:
            break
    return out


def _softmax(scores: list[float]) -> list[float]:
    if not scores:
        return []
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    return [w / sum(weights) for w in weights]


def answer_with_alternatives(
    run: LoadedRun, question: str, context: str, n: int = 5
) -> AnswerWithAlternatives:
    """The answer of a QA run to one question on a passage of any length, and the n best spans."""
    if run.config.task.kind != "qa":
        raise UserError(
            f"this run was fine-tuned for {run.config.task.kind}, not for question answering"
        )
    example = QAExample("q", question, context, [])
    features = run.task.encode([example], training=False)
    device = next(run.model.parameters()).device
    outputs = predict_logits(run.model, features, run.task.collate, device=device)
    (answer,) = run.task.predict([example], features, outputs)
    offsets = run.tokenizer.encode(context).offsets
    alternatives = n_best_spans(
        features,
        [o[:, 0] for o in outputs],
        [o[:, 1] for o in outputs],
        context,
        offsets,
        run.task.windows,
        n,
    )
    return AnswerWithAlternatives(
        answer, alternatives, _softmax([a.score for a in alternatives]), len(features)
    )
