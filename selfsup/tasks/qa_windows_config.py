"""How extractive QA cuts passages into windows: `WindowSizes` with its two presets and
`WindowConfig` (selfsup/tasks/qa_windows.py explains them), free of numpy and torch so that
`selfsup finetune --help` can show the QA defaults without importing either; qa_windows.py, which
cuts and reads the windows, re-exports these names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from selfsup.errors import UserError

NUM_SPECIAL_TOKENS = 3  # [CLS], [SEP] after the question, [SEP] after the context piece
NO_ANSWER_POLICIES = ("cls", "drop")
LOSS_SCOPES = ("passage", "window")


@dataclass(frozen=True)
class WindowSizes:
    """The three numbers that size windows (what they do: `WindowConfig`)."""

    max_seq_len: int  # tokens per window, [CLS] and both [SEP] included
    max_question_len: int  # question tokens kept; a longer question loses its tail
    stride: int  # tokens between the starts of consecutive windows over the context

    def fit(self, max_position: int) -> WindowSizes:
        """These sizes shrunk to a model that reads at most `max_position` tokens: the window is
        cut to the position table, the question to a quarter of the window, and the stride to at
        most half the context tokens a window holds, so consecutive windows overlap by half."""
        seq = min(self.max_seq_len, max_position)
        question = min(self.max_question_len, seq // 4)
        stride = max(1, min(self.stride, (seq - question - NUM_SPECIAL_TOKENS) // 2))
        return WindowSizes(seq, question, stride)


# BERT's SQuAD fine-tuning (run_squad.py: max_seq_length 384, max_query_length 64, doc_stride
# 128), which Hugging Face SQuAD checkpoints keep
SQUAD_WINDOWS = WindowSizes(max_seq_len=384, max_question_len=64, stride=128)
# selfsup finetune: the small pretrained BERTs read 128 positions
FINETUNE_WINDOWS = WindowSizes(max_seq_len=128, max_question_len=32, stride=32)


@dataclass(frozen=True)
class WindowConfig:
    """How examples are cut into windows and how answers are read back.

    Each window holds `max_seq_len - len(question) - 3` context tokens. Consecutive windows start
    `stride` tokens apart, so they overlap by (context tokens per window - stride) tokens. `stride`
    may not exceed the context tokens per window of the longest kept question
    (`max_seq_len - max_question_len - 3`), or tokens between two windows would be seen by none.
    An answer is predicted only from the max-context window of its first token; with an overlap of
    at least 2 * max_answer_len - 1 tokens that window always holds the whole answer (the defaults
    overlap by 189 or more), while with less a long answer may be cut at a window edge.
    """

    max_seq_len: int = SQUAD_WINDOWS.max_seq_len  # as in WindowSizes
    max_question_len: int = SQUAD_WINDOWS.max_question_len
    stride: int = SQUAD_WINDOWS.stride
    max_answer_len: int = 30  # longest answer span in tokens at inference
    n_best: int = 20  # start and end candidates per window
    no_answer_window: str = "cls"  # training: a window without the whole answer: "cls" or "drop"
    random_offset: bool = False  # training: shift the window grid by a seeded random amount
    # training: the start/end softmax covers the passage tokens and [CLS] ("passage"), or every
    # position of the padded window, question and padding included ("window": what transformers'
    # BertForQuestionAnswering computes, kept for like-for-like comparisons)
    loss_over: str = "passage"
    # inference: score a start only in the window where it has the most context (BERT's rule), or
    # in every window that holds it, the best score winning (what a plain best-over-windows does)
    max_context_rule: bool = True

    def __post_init__(self) -> None:
        if self.max_question_len < 1:
            raise UserError(f"max_question_len: must be at least 1, got {self.max_question_len}")
        room = self.min_context_tokens
        if room < 1:
            raise UserError(
                f"max_seq_len: {self.max_seq_len} leaves no room for context after "
                f"max_question_len={self.max_question_len} and 3 special tokens"
            )
        if not 1 <= self.stride <= room:
            raise UserError(
                f"stride: must be between 1 and {room} (context tokens per window with the "
                f"longest question), got {self.stride}; a larger stride skips tokens"
            )
        if self.max_answer_len < 1:
            raise UserError(f"max_answer_len: must be at least 1, got {self.max_answer_len}")
        if self.n_best < 1:
            raise UserError(f"n_best: must be at least 1, got {self.n_best}")
        if self.loss_over not in LOSS_SCOPES:
            raise UserError(f"loss_over: must be one of {LOSS_SCOPES}, got {self.loss_over!r}")
        if self.no_answer_window not in NO_ANSWER_POLICIES:
            raise UserError(
                f"no_answer_window: must be one of {NO_ANSWER_POLICIES}, "
                f"got {self.no_answer_window!r}"
            )

    @classmethod
    def from_task(cls, task: Any) -> WindowConfig:
        """The windows a fine-tuning task config asks for (selfsup finetune's TaskConfig, whose
        QA fields carry the same names, except loss_over, there qa_loss_over)."""
        return cls(
            max_seq_len=task.max_seq_len,
            max_question_len=task.max_question_len,
            stride=task.stride,
            max_answer_len=task.max_answer_len,
            n_best=task.n_best,
            no_answer_window=task.no_answer_window,
            random_offset=task.random_offset,
            loss_over=task.qa_loss_over,
            max_context_rule=task.max_context_rule,
        )

    @property
    def min_context_tokens(self) -> int:
        """Context tokens per window when the question has max_question_len tokens."""
        return self.max_seq_len - self.max_question_len - NUM_SPECIAL_TOKENS
