"""Question answering in the playground: the answer `selfsup ask` gives, and the n-best list
behind it.

The passage is cut into windows by the run's own task (any length, as `selfsup ask` does), the
model reads every window once, and from the logits comes the n-best list (`tasks/qa_windows.n_best_spans`: every window's valid spans, n-best starts x
n-best ends, the max-context rule, the length limit, pooled over windows and ranked by score,
one entry per character span) with each entry's share of the softmax over the list's scores.
Its first entry is the answer: `selfsup ask` takes the same function's best span
(`predict_answer`), so the page and `selfsup ask` never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from selfsup.data.labelled import QAExample
from selfsup.errors import UserError
from selfsup.inference.answer import feature_logits
from selfsup.recipes import LoadedRun
from selfsup.tasks.qa_windows import NO_ANSWER, SpanPrediction, n_best_spans


@dataclass
class AnswerWithAlternatives:
    answer: SpanPrediction  # window -1 when no window had a valid span
    n_best: list[SpanPrediction]  # best first; n_best[0] is the answer
    probabilities: list[float]  # softmax over the n-best scores
    windows: int  # how many windows the passage was read in


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
    features, outputs = feature_logits(run, [example])
    alternatives = n_best_spans(
        features,
        [o[:, 0] for o in outputs],
        [o[:, 1] for o in outputs],
        context,
        run.tokenizer.encode(context).offsets,
        run.task.windows,
        n,
    )
    answer = alternatives[0] if alternatives else NO_ANSWER  # what predict_answer gives
    return AnswerWithAlternatives(
        answer, alternatives, _softmax([a.score for a in alternatives]), len(features)
    )
