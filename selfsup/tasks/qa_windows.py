"""Extractive QA over long contexts: sliding windows in, one answer span out.

A context longer than one input is cut into overlapping windows, each laid out as

    [CLS] question [SEP] context piece [SEP]      segment ids: 0 ... 0 | 1 ... 1

as in BERT's SQuAD fine-tuning (Devlin et al. 2019, section 4.2: "We represent the input question
and passage as a single packed sequence, with the question using the A embedding and the passage
using the B embedding"). This module holds the pure parts around the model:

- `WindowSizes` and its two presets, the only place window sizes are written: `SQUAD_WINDOWS`
  (what SQuAD checkpoints are fine-tuned with; `WindowConfig`'s defaults) and `FINETUNE_WINDOWS`
  (`selfsup finetune`'s defaults, sized for small pretrained models);
- `WindowConfig`: the sizes plus training and inference choices, built from a task config by
  `WindowConfig.from_task` (these two in qa_windows_config.py, free of numpy for `selfsup finetune
  --help`, and re-exported here);
- `context_windows`: where the windows go over the context tokens (BERT's doc_stride grid);
- `max_context_flags`: which window "owns" each context token (BERT's max-context rule);
- `answer_token_span` and `build_windows`: inputs and training labels of one example;
- `pad_windows`: a batch of windows as padded arrays;
- `best_spans` and `predict_answer`: the n-best spans of one window, then the best span over all
  windows of an example, returned as character offsets into the context.

Answers are always cut from the context string with the character offsets of their first and last
tokens, never decoded from token ids: decoding turns a character missing from the vocabulary into
"[UNK]" and, for WordPiece, loses or invents spaces (Chinese text has none between characters).

Deviations from BERT's run_squad.py, each on purpose:
- Ties in the max-context rule go to the longer window, as an explicit second key instead of
  BERT's `+ 0.01 * window length` bonus. Both agree whenever window lengths differ by fewer than
  100 tokens; beyond that BERT's bonus can outweigh a whole token of context, which it was not
  meant to do.
- The n-best starts are taken among positions that can start an answer (context tokens whose
  max-context window this is) and the n-best ends among context tokens, rather than over the whole
  window and filtered afterwards: a question full of high logits cannot crowd out every candidate.
- `random_offset` (training only) shifts the window grid by a seeded random amount, so the answer
  does not sit at the same distance from the window edges in every epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from selfsup.tasks.qa_windows_config import (  # noqa: F401 (re-export: sizes and settings)
    FINETUNE_WINDOWS,
    LOSS_SCOPES,
    NO_ANSWER_POLICIES,
    NUM_SPECIAL_TOKENS,
    SQUAD_WINDOWS,
    WindowConfig,
    WindowSizes,
)


@dataclass(frozen=True)
class Window:
    """One model input. Per-position lists have one entry per token of input_ids."""

    input_ids: list[int]
    token_type_ids: list[int]
    context_token_start: int  # position in input_ids of the window's first context token
    context_token_indices: list[int]  # index into the context's tokens, -1 for question/special
    max_context: list[bool]  # True where this window is the context token's max-context window
    start_position: int | None = None  # training label; 0 ([CLS]) = no answer in this window
    end_position: int | None = None
    example_index: int = 0


@dataclass(frozen=True)
class WindowBatch:
    """Windows padded to one length. Shapes: B windows, T positions."""

    input_ids: np.ndarray  # (B, T) int64
    token_type_ids: np.ndarray  # (B, T) int64, 0 on padding
    attention_mask: np.ndarray  # (B, T) int64, 1 on real tokens
    start_positions: np.ndarray | None  # (B,) int64, None unless every window has labels
    end_positions: np.ndarray | None
    example_index: np.ndarray  # (B,) int64


@dataclass(frozen=True)
class SpanCandidate:
    score: float  # start logit + end logit
    start_position: int  # positions in the window's input_ids, both inclusive
    end_position: int


@dataclass(frozen=True)
class SpanPrediction:
    text: str  # context[start_char:end_char]
    start_char: int
    end_char: int  # exclusive
    score: float  # -inf when no window had a valid span
    window: int  # index into the example's windows, -1 when there is no span


def context_windows(
    num_context_tokens: int, tokens_per_window: int, stride: int, offset: int = 0
) -> list[tuple[int, int]]:
    """[start, end) token ranges over the context: starts on the grid offset + k * stride, each
    window tokens_per_window long, the first clipped at 0 and the last stopping at the end of the
    context. With offset > 0 the first window is the grid window that starts before token 0, so
    it is shorter. An empty context gives one empty window, so every example gets a prediction."""
    if tokens_per_window < 1:
        raise ValueError(f"tokens_per_window must be at least 1, got {tokens_per_window}")
    if not 1 <= stride <= tokens_per_window:
        raise ValueError(f"stride must be in [1, {tokens_per_window}], got {stride}")
    if not 0 <= offset < stride:
        raise ValueError(f"offset must be in [0, {stride}), got {offset}")
    start = offset - stride if offset else 0
    windows = []
    while True:
        end = min(start + tokens_per_window, num_context_tokens)
        windows.append((max(start, 0), end))
        if end >= num_context_tokens:
            return windows
        start += stride


def _context_key(token: int, start: int, end: int) -> tuple[int, int]:
    """How well window [start, end) surrounds a token: its context on the thinner side, then the
    window length to break ties."""
    return min(token - start, end - 1 - token), end - start


def max_context_flags(windows: Sequence[tuple[int, int]]) -> list[list[bool]]:
    """For each window, one flag per token in it: True where this is the token's max-context
    window. A token seen by several windows is predicted only from the window where it has the
    most context on its thinner side, since a token near a window edge is predicted from half the
    evidence; ties go to the longer window, then to the earlier one. Exactly one window per token
    is flagged."""
    owner: dict[int, tuple[tuple[int, int], int]] = {}  # token -> (best key, window index)
    for index, (start, end) in enumerate(windows):
        for token in range(start, end):
            key = _context_key(token, start, end)
            if token not in owner or key > owner[token][0]:  # strict: earlier window keeps ties
                owner[token] = (key, index)
    return [
        [owner[token][1] == index for token in range(start, end)]
        for index, (start, end) in enumerate(windows)
    ]


def answer_token_span(
    context_offsets: Sequence[tuple[int, int]], answer_start_char: int, answer_end_char: int
) -> tuple[int, int] | None:
    """First and last context token overlapping the answer characters [start, end). None when no
    token overlaps them (an empty answer, or one made only of characters no token covers)."""
    if answer_end_char < answer_start_char:
        raise ValueError(f"answer end {answer_end_char} before its start {answer_start_char}")
    covering = [
        i
        for i, (start, end) in enumerate(context_offsets)
        if start < answer_end_char and end > answer_start_char
    ]
    return (covering[0], covering[-1]) if covering else None


def _labels(
    answer_tokens: tuple[int, int] | None,
    window: tuple[int, int],
    context_token_start: int,
    policy: str,
) -> tuple[int, int] | None:
    """(start, end) positions of the answer in the window, (0, 0) when the window does not hold
    the whole answer and policy is "cls", None when such a window is to be dropped."""
    if answer_tokens is not None and window[0] <= answer_tokens[0] <= answer_tokens[1] < window[1]:
        shift = context_token_start - window[0]
        return answer_tokens[0] + shift, answer_tokens[1] + shift
    return (0, 0) if policy == "cls" else None


def _layout(
    question_ids: Sequence[int],
    context_ids: Sequence[int],
    window: tuple[int, int],
    flags: list[bool],
    cls_id: int,
    sep_id: int,
) -> tuple[list[int], list[int], list[int], list[bool]]:
    """input_ids, token_type_ids, context_token_indices and max_context of one window."""
    start, end = window
    prefix = len(question_ids) + 2  # [CLS] question [SEP]
    input_ids = [cls_id, *question_ids, sep_id, *context_ids[start:end], sep_id]
    token_type_ids = [0] * prefix + [1] * (end - start + 1)
    context_token_indices = [-1] * prefix + list(range(start, end)) + [-1]
    max_context = [False] * prefix + flags + [False]
    return input_ids, token_type_ids, context_token_indices, max_context


def build_windows(
    question_ids: Sequence[int],
    context_ids: Sequence[int],
    context_offsets: Sequence[tuple[int, int]],
    cfg: WindowConfig,
    cls_id: int,
    sep_id: int,
    answer_char_span: tuple[int, int] | None = None,
    rng: np.random.Generator | None = None,
    example_index: int = 0,
) -> list[Window]:
    """The windows of one example. With answer_char_span (training) every window gets labels,
    and cfg.random_offset shifts the grid by rng.integers(stride); without it (inference) the grid
    always starts at token 0. An answer that covers no token counts as "no answer" in every
    window. Padding is left to `pad_windows`."""
    if len(context_ids) != len(context_offsets):
        raise ValueError(f"{len(context_ids)} context ids but {len(context_offsets)} offsets")
    question_ids = list(question_ids[: cfg.max_question_len])
    tokens_per_window = cfg.max_seq_len - len(question_ids) - NUM_SPECIAL_TOKENS
    training = answer_char_span is not None
    offset = 0
    if training and cfg.random_offset:
        if rng is None:
            raise ValueError("random_offset needs rng (a seeded numpy Generator)")
        offset = int(rng.integers(cfg.stride))
    spans = context_windows(len(context_ids), tokens_per_window, cfg.stride, offset)
    answer_tokens = answer_token_span(context_offsets, *answer_char_span) if training else None
    context_token_start = len(question_ids) + 2
    windows = []
    for span, flags in zip(spans, max_context_flags(spans), strict=True):
        labels = None
        if training:
            labels = _labels(answer_tokens, span, context_token_start, cfg.no_answer_window)
            if labels is None:
                continue
        input_ids, token_type_ids, indices, max_context = _layout(
            question_ids, context_ids, span, flags, cls_id, sep_id
        )
        windows.append(
            Window(
                input_ids=input_ids,
                token_type_ids=token_type_ids,
                context_token_start=context_token_start,
                context_token_indices=indices,
                max_context=max_context,
                start_position=labels[0] if labels else None,
                end_position=labels[1] if labels else None,
                example_index=example_index,
            )
        )
    return windows


def _int_array(values: Sequence[int | None]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def pad_windows(windows: Sequence[Window], pad_id: int, seq_len: int | None = None) -> WindowBatch:
    """Stack windows into (B, T) arrays, T = seq_len or the longest window."""
    if not windows:
        raise ValueError("no windows to pad")
    longest = max(len(w.input_ids) for w in windows)
    seq_len = longest if seq_len is None else seq_len
    if seq_len < longest:
        raise ValueError(f"seq_len {seq_len} is shorter than the longest window ({longest})")
    input_ids = np.full((len(windows), seq_len), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((len(windows), seq_len), dtype=np.int64)
    attention_mask = np.zeros((len(windows), seq_len), dtype=np.int64)
    for row, window in enumerate(windows):
        n = len(window.input_ids)
        input_ids[row, :n] = window.input_ids
        token_type_ids[row, :n] = window.token_type_ids
        attention_mask[row, :n] = 1
    labelled = all(w.start_position is not None for w in windows)
    return WindowBatch(
        input_ids=input_ids,
        token_type_ids=token_type_ids,
        attention_mask=attention_mask,
        start_positions=_int_array([w.start_position for w in windows]) if labelled else None,
        end_positions=_int_array([w.end_position for w in windows]) if labelled else None,
        example_index=_int_array([w.example_index for w in windows]),
    )


def _top_positions(logits: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    """The k allowed positions with the highest logits; ties go to the earlier position."""
    positions = np.flatnonzero(allowed)
    order = np.argsort(-logits[positions], kind="stable")[:k]
    return positions[order].tolist()


def _window_logits(logits: np.ndarray, window: Window) -> np.ndarray:
    """The window's part of one row of logits (the row may be padded beyond the window)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 1 or len(logits) < len(window.input_ids):
        raise ValueError(
            f"logits of shape {logits.shape} for a window of {len(window.input_ids)} tokens"
        )
    return logits[: len(window.input_ids)]


def best_spans(
    start_logits: np.ndarray, end_logits: np.ndarray, window: Window, cfg: WindowConfig
) -> list[SpanCandidate]:
    """Valid spans of one window from its n-best starts x n-best ends, best first.

    Valid: both ends on context tokens, start <= end, at most max_answer_len tokens, and the
    start token has its max context in this window (so each start is scored by one window only;
    with `cfg.max_context_rule` off, any context token may start).
    """
    start_logits = _window_logits(start_logits, window)
    end_logits = _window_logits(end_logits, window)
    in_context = np.asarray(window.context_token_indices) >= 0
    can_start = in_context & np.asarray(window.max_context, dtype=bool)
    if not cfg.max_context_rule:
        can_start = in_context
    starts = _top_positions(start_logits, can_start, cfg.n_best)
    ends = _top_positions(end_logits, in_context, cfg.n_best)
    spans = [
        SpanCandidate(float(start_logits[s] + end_logits[e]), s, e)
        for s in starts
        for e in ends
        if s <= e < s + cfg.max_answer_len
    ]
    return sorted(spans, key=lambda c: (-c.score, c.start_position, c.end_position))


def n_best_spans(
    windows: Sequence[Window],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    context: str,
    context_offsets: Sequence[tuple[int, int]],
    cfg: WindowConfig,
    n: int,
) -> list[SpanPrediction]:
    """The n best distinct character spans over all windows of one example, best first (ties:
    the earlier window, then the earlier span). A span runs from its first token's start offset
    to its last token's end offset; one read in two windows is listed once."""
    if not len(windows) == len(start_logits) == len(end_logits):
        raise ValueError(
            f"{len(windows)} windows, {len(start_logits)} start and {len(end_logits)} end logits"
        )
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


NO_ANSWER = SpanPrediction(text="", start_char=0, end_char=0, score=-math.inf, window=-1)


def predict_answer(
    windows: Sequence[Window],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    context: str,
    context_offsets: Sequence[tuple[int, int]],
    cfg: WindowConfig,
) -> SpanPrediction:
    """The best span over all windows of one example (NO_ANSWER when no window has a valid one)."""
    best = n_best_spans(windows, start_logits, end_logits, context, context_offsets, cfg, 1)
    return best[0] if best else NO_ANSWER
