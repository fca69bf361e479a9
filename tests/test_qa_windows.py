"""QA windows tests: the window grid, the max-context rule, training labels, and postprocessing
invariants (answers are substrings of the context at their offsets, never in the question, within
the length limit, found whole across window edges), on synthetic and Chinese text."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from selfsup.data.tokenizer import train_tokenizer
from selfsup.errors import UserError
from selfsup.tasks.qa_windows import (
    FINETUNE_WINDOWS,
    SQUAD_WINDOWS,
    Window,
    WindowConfig,
    answer_token_span,
    best_spans,
    build_windows,
    context_windows,
    max_context_flags,
    pad_windows,
    predict_answer,
)

CLS, SEP, PAD = 2, 3, 0
HIGH = 10.0  # a logit that points at a token; the other positions get 0


# --- helpers -------------------------------------------------------------------------------------


def words_context(word_lengths: list[int], gaps: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """A text of words separated by runs of spaces; one token per word, offsets exact."""
    parts, offsets, position = [], [], 0
    for i, (length, gap) in enumerate(zip(word_lengths, gaps, strict=True)):
        word = "".join("abcdefgh"[(i + k) % 8] for k in range(length))
        offsets.append((position, position + length))
        parts.append(word + " " * gap)
        position += length + gap
    return "".join(parts), offsets


def fake_ids(n: int) -> list[int]:
    return [10 + i % 50 for i in range(n)]


def config(context_tokens: int, stride: int, max_question_len: int = 4, **kwargs) -> WindowConfig:
    """A config whose windows hold `context_tokens` context tokens with the longest question."""
    return WindowConfig(
        max_seq_len=max_question_len + 3 + context_tokens,
        max_question_len=max_question_len,
        stride=stride,
        **kwargs,
    )


def pointing_logits(windows: list[Window], first: int, last: int) -> tuple[list, list]:
    """Per window: a high start logit wherever context token `first` appears and a high end logit
    wherever token `last` appears, 0 elsewhere."""
    starts, ends = [], []
    for window in windows:
        indices = np.array(window.context_token_indices)
        starts.append(np.where(indices == first, HIGH, 0.0))
        ends.append(np.where(indices == last, HIGH, 0.0))
    return starts, ends


def window_range(window: Window) -> tuple[int, int]:
    """[start, end) of the context tokens in a window."""
    indices = [i for i in window.context_token_indices if i >= 0]
    return (indices[0], indices[-1] + 1) if indices else (0, 0)


@st.composite
def grids(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """(num_context_tokens, tokens_per_window, stride, offset)."""
    per_window = draw(st.integers(1, 40))
    stride = draw(st.integers(1, per_window))
    return draw(st.integers(0, 200)), per_window, stride, draw(st.integers(0, stride - 1))


@st.composite
def examples(draw: st.DrawFn) -> tuple[WindowConfig, list[int], str, list[tuple[int, int]]]:
    """A small config, question ids, and a words context with its offsets."""
    max_question_len = draw(st.integers(1, 8))
    context_tokens = draw(st.integers(1, 24))
    cfg = config(
        context_tokens,
        draw(st.integers(1, context_tokens)),
        max_question_len,
        max_answer_len=draw(st.integers(1, 8)),
        n_best=draw(st.integers(1, 8)),
    )
    question = fake_ids(draw(st.integers(1, 12)))
    n = draw(st.integers(0, 80))
    text, offsets = words_context(
        draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)),
        draw(st.lists(st.integers(1, 2), min_size=n, max_size=n)),
    )
    return cfg, question, text, offsets


def bert_max_context(windows: list[tuple[int, int]]) -> list[list[bool]]:
    """BERT's float score, min(left, right) + 0.01 * length, first window kept on ties."""
    best: dict[int, tuple[float, int]] = {}
    for w, (start, end) in enumerate(windows):
        for t in range(start, end):
            score = min(t - start, end - 1 - t) + 0.01 * (end - start)
            if t not in best or score > best[t][0]:
                best[t] = (score, w)
    return [[best[t][1] == w for t in range(s, e)] for w, (s, e) in enumerate(windows)]


# --- config --------------------------------------------------------------------------------------


def test_config_defaults_are_valid_and_bad_values_fail() -> None:
    cfg = WindowConfig()
    assert cfg.min_context_tokens == 384 - 64 - 3
    with pytest.raises(UserError, match="stride"):
        WindowConfig(max_seq_len=20, max_question_len=10, stride=8)  # 7 context tokens
    WindowConfig(max_seq_len=20, max_question_len=10, stride=7)
    with pytest.raises(UserError, match="max_seq_len"):
        WindowConfig(max_seq_len=13, max_question_len=10, stride=1)
    with pytest.raises(UserError, match="no_answer_window"):
        WindowConfig(no_answer_window="skip")
    with pytest.raises(UserError, match="stride"):
        WindowConfig(stride=0)


@pytest.mark.parametrize(
    ("max_position", "expected"),
    [(512, (384, 64, 128)), (384, (384, 64, 128)), (128, (128, 32, 46)), (64, (64, 16, 22))],
)
def test_squad_windows_shrink_to_the_model(max_position: int, expected: tuple) -> None:
    fitted = SQUAD_WINDOWS.fit(max_position)
    assert (fitted.max_seq_len, fitted.max_question_len, fitted.stride) == expected
    sizes = dict(max_seq_len=expected[0], max_question_len=expected[1], stride=expected[2])
    WindowConfig(**sizes)  # a valid grid: the stride skips no context token


def test_window_config_from_a_task_config() -> None:
    from selfsup.recipes.finetune import TaskConfig

    task = TaskConfig(max_answer_len=7, n_best=5, qa_loss_over="window", max_context_rule=False)
    windows = WindowConfig.from_task(task)
    assert (windows.max_seq_len, windows.max_question_len, windows.stride) == (128, 32, 32)
    assert FINETUNE_WINDOWS.max_seq_len == TaskConfig().max_seq_len == 128
    assert windows == WindowConfig(
        max_seq_len=128,
        max_question_len=32,
        stride=32,
        max_answer_len=7,
        n_best=5,
        loss_over="window",
        max_context_rule=False,
    )


# --- the window grid -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(grids())
def test_context_windows_cover_every_token_on_a_stride_grid(grid) -> None:
    n, per_window, stride, offset = grid
    windows = context_windows(n, per_window, stride, offset)
    covered = set()
    for start, end in windows:
        assert 0 <= start < end <= n or n == 0
        assert end - start <= per_window
        covered.update(range(start, end))
    assert covered == set(range(n))
    assert windows[-1][1] == n  # the last window ends at the end
    assert all(a[1] < b[1] for a, b in zip(windows, windows[1:]))  # no window is redundant
    # Every window after the first starts on the grid offset + k * stride.
    nominal = [start for start, _ in windows[1:]]
    first = offset if offset else stride
    assert nominal == [first + k * stride for k in range(len(nominal))]
    if n <= per_window and offset == 0:
        assert windows == [(0, n)]


def test_context_windows_known_values() -> None:
    assert context_windows(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert context_windows(11, 4, 4) == [(0, 4), (4, 8), (8, 11)]
    assert context_windows(9, 4, 3) == [(0, 4), (3, 7), (6, 9)]
    assert context_windows(9, 4, 3, offset=1) == [(0, 2), (1, 5), (4, 8), (7, 9)]
    assert context_windows(3, 4, 2) == [(0, 3)]
    assert context_windows(0, 4, 2) == [(0, 0)]
    with pytest.raises(ValueError):
        context_windows(10, 4, 5)  # would skip a token between windows


@settings(max_examples=200, deadline=None)
@given(grids())
def test_exactly_one_max_context_window_per_token(grid) -> None:
    windows = context_windows(*grid)
    flags = max_context_flags(windows)
    owners: dict[int, int] = {}
    for (start, end), window_flags in zip(windows, flags, strict=True):
        assert len(window_flags) == end - start
        for token, flag in zip(range(start, end), window_flags, strict=True):
            owners[token] = owners.get(token, 0) + flag
    assert all(count == 1 for count in owners.values())


@settings(max_examples=200, deadline=None)
@given(grids())
def test_max_context_matches_bert_when_window_lengths_differ_by_under_100(grid) -> None:
    windows = context_windows(*grid)  # at most 40 tokens per window
    assert max_context_flags(windows) == bert_max_context(windows)


def test_max_context_known_values_and_ties() -> None:
    # Token 4: window 0 sees 4 tokens left, 0 right; window 1 sees 1 left, 3 right -> window 1.
    # Token 3: window 0 has min(3, 1) = 1, window 1 has min(0, 4) = 0 -> window 0.
    assert max_context_flags([(0, 5), (3, 8)]) == [
        [True, True, True, True, False],
        [False, True, True, True, True],
    ]
    # Token 7 has min context 2 in both; the longer window (10 vs 7 tokens) wins.
    flags = max_context_flags([(0, 10), (5, 12)])
    assert flags[0][7] and not flags[1][2]
    # Token 4 has min(4, 1) = 1 in window 0 and min(1, 4) = 1 in window 1, both 6 tokens long:
    # the earlier window keeps it.
    flags = max_context_flags([(0, 6), (3, 9)])
    assert flags[0][4] and not flags[1][1]


@settings(max_examples=150, deadline=None)
@given(
    per_window=st.integers(1, 30),
    stride_fraction=st.floats(0, 1),
    answer_len=st.integers(1, 10),
    n=st.integers(1, 150),
    offset_fraction=st.floats(0, 0.999),
)
def test_answers_fit_in_their_start_tokens_window_when_overlap_is_large_enough(
    per_window, stride_fraction, answer_len, n, offset_fraction
) -> None:
    """With overlap >= 2 * answer length - 1, every span of that length lies whole in the
    max-context window of its start token (so that window can predict it)."""
    stride = max(1, round(stride_fraction * per_window))
    assume(per_window - stride >= 2 * answer_len - 1)
    windows = context_windows(n, per_window, stride, int(offset_fraction * stride))
    flags = max_context_flags(windows)
    for (start, end), window_flags in zip(windows, flags, strict=True):
        for token, owns in zip(range(start, end), window_flags, strict=True):
            if owns:
                assert min(token + answer_len, n) <= end


# --- building windows ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(examples())
def test_windows_layout_and_coverage(example) -> None:
    cfg, question, text, offsets = example
    context = fake_ids(len(offsets))
    windows = build_windows(question, context, offsets, cfg, cls_id=CLS, sep_id=SEP)
    kept = question[: cfg.max_question_len]
    owners = [0] * len(context)
    for window in windows:
        n = len(window.input_ids)
        assert n <= cfg.max_seq_len
        assert len(window.token_type_ids) == len(window.context_token_indices) == n
        assert len(window.max_context) == n
        assert window.input_ids[: len(kept) + 2] == [CLS, *kept, SEP]
        assert window.input_ids[-1] == SEP
        assert window.context_token_start == len(kept) + 2
        assert window.token_type_ids == [0] * (len(kept) + 2) + [1] * (n - len(kept) - 2)
        assert window.start_position is None and window.end_position is None
        for position, index in enumerate(window.context_token_indices):
            if index >= 0:
                assert window.input_ids[position] == context[index]
                owners[index] += window.max_context[position]
            else:
                assert not window.max_context[position]
    assert owners == [1] * len(context)  # every token covered, exactly one max-context window
    starts = [window_range(w)[0] for w in windows]
    assert starts == [k * cfg.stride for k in range(len(windows))]
    if len(context) <= cfg.max_seq_len - len(kept) - 3:
        assert len(windows) == 1


@settings(max_examples=150, deadline=None)
@given(examples(), st.data())
def test_training_labels_point_at_exactly_the_answer(example, data) -> None:
    cfg, question, text, offsets = example
    assume(offsets)
    first = data.draw(st.integers(0, len(offsets) - 1))
    last = data.draw(st.integers(first, min(first + 5, len(offsets) - 1)))
    answer = (offsets[first][0], offsets[last][1])
    context = fake_ids(len(offsets))
    labelled = build_windows(question, context, offsets, cfg, CLS, SEP, answer_char_span=answer)
    unlabelled = build_windows(question, context, offsets, cfg, CLS, SEP)
    assert [w.input_ids for w in labelled] == [w.input_ids for w in unlabelled]
    holding = []
    for window in labelled:
        start, end = window_range(window)
        if start <= first and last < end:
            holding.append(window)
            indices = window.context_token_indices
            chars = (
                offsets[indices[window.start_position]][0],
                offsets[indices[window.end_position]][1],
            )
            assert chars == answer
            assert text[chars[0] : chars[1]] == text[answer[0] : answer[1]]
        else:
            assert (window.start_position, window.end_position) == (0, 0)
    drop = replace(cfg, no_answer_window="drop")
    dropped = build_windows(question, context, offsets, drop, CLS, SEP, answer_char_span=answer)
    assert dropped == holding


def test_an_answer_no_token_covers_is_no_answer_everywhere() -> None:
    text, offsets = words_context([3, 3, 3], [2, 2, 2])  # "abc  bcd  cde  "
    cfg = config(2, 1, no_answer_window="cls")
    windows = build_windows([5], [7, 8, 9], offsets, cfg, CLS, SEP, answer_char_span=(3, 5))
    assert [(w.start_position, w.end_position) for w in windows] == [(0, 0)] * len(windows)
    drop = config(2, 1, no_answer_window="drop")
    assert build_windows([5], [7, 8, 9], offsets, drop, CLS, SEP, answer_char_span=(3, 5)) == []


@settings(max_examples=100, deadline=None)
@given(examples(), st.integers(0, 2**32 - 1))
def test_random_offset_is_reproducible_and_covers_the_context(example, seed) -> None:
    cfg, question, text, offsets = example
    assume(offsets)
    cfg = replace(cfg, random_offset=True)
    context = fake_ids(len(offsets))
    answer = offsets[len(offsets) // 2]

    def windows_with(rng: np.random.Generator) -> list[Window]:
        return build_windows(
            question, context, offsets, cfg, CLS, SEP, answer_char_span=answer, rng=rng
        )

    first = windows_with(np.random.default_rng(seed))
    assert first == windows_with(np.random.default_rng(seed))
    owners = [0] * len(context)
    for window in first:
        assert len(window.input_ids) <= cfg.max_seq_len
        for position, index in enumerate(window.context_token_indices):
            if index >= 0:
                owners[index] += window.max_context[position]
    assert owners == [1] * len(context)
    # At inference the grid is fixed: no rng needed, the same windows every time.
    plain = build_windows(question, context, offsets, cfg, CLS, SEP)
    assert [window_range(w)[0] for w in plain] == [k * cfg.stride for k in range(len(plain))]


def test_random_offset_moves_the_grid_and_needs_an_rng() -> None:
    cfg = config(8, 6, random_offset=True)
    offsets = [(i, i + 1) for i in range(40)]
    answer = (20, 21)
    grids_seen = {
        tuple(
            window_range(w)
            for w in build_windows(
                [5], fake_ids(40), offsets, cfg, CLS, SEP, answer, np.random.default_rng(seed)
            )
        )
        for seed in range(30)
    }
    assert len(grids_seen) == cfg.stride  # every phase of the grid shows up
    with pytest.raises(ValueError, match="rng"):
        build_windows([5], fake_ids(40), offsets, cfg, CLS, SEP, answer)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=30),
    st.integers(0, 120),
    st.integers(0, 10),
)
def test_answer_token_span_is_exactly_the_overlapping_tokens(pieces, answer_start, length) -> None:
    # Tokens with gaps and widths from 0 (a zero-width token) up; starts never decrease.
    offsets, position = [], 0
    for gap, width in pieces:
        offsets.append((position + gap, position + gap + width))
        position += gap + width
    answer_end = answer_start + length
    span = answer_token_span(offsets, answer_start, answer_end)
    overlapping = [i for i, (s, e) in enumerate(offsets) if s < answer_end and e > answer_start]
    if span is None:
        assert not overlapping
    else:
        assert span == (overlapping[0], overlapping[-1])
        assert overlapping == list(range(span[0], span[1] + 1))


def test_pad_windows_stacks_and_masks() -> None:
    offsets = [(i, i + 1) for i in range(12)]
    windows = build_windows([5, 6], fake_ids(12), offsets, config(8, 4), CLS, SEP, (9, 11))
    batch = pad_windows(windows, PAD, seq_len=20)
    assert batch.input_ids.shape == (len(windows), 20)
    lengths = batch.attention_mask.sum(axis=1).tolist()
    assert lengths == [len(w.input_ids) for w in windows]
    assert (batch.input_ids[batch.attention_mask == 0] == PAD).all()
    assert batch.start_positions.tolist() == [w.start_position for w in windows]
    assert batch.end_positions.tolist() == [w.end_position for w in windows]
    unlabelled = build_windows([5, 6], fake_ids(12), offsets, config(8, 4), CLS, SEP)
    assert pad_windows(unlabelled, PAD).start_positions is None


# --- postprocessing ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(examples(), st.integers(0, 2**32 - 1), st.booleans())
def test_predictions_are_context_substrings_within_the_limits(example, seed, loud_question):
    cfg, question, text, offsets = example
    windows = build_windows(question, fake_ids(len(offsets)), offsets, cfg, CLS, SEP)
    rng = np.random.default_rng(seed)
    starts, ends = [], []
    for window in windows:
        n = len(window.input_ids) + 3  # logits may be padded beyond the window
        start, end = rng.normal(size=n), rng.normal(size=n)
        if loud_question:  # the question and special tokens shout; they must still be ignored
            outside = np.array(window.context_token_indices + [-1, -1, -1]) < 0
            start[outside] += 100
            end[outside] += 100
        starts.append(start)
        ends.append(end)
    for window, start, end in zip(windows, starts, ends, strict=True):
        spans = best_spans(start, end, window, cfg)
        assert len(spans) <= cfg.n_best**2
        assert [s.score for s in spans] == sorted((s.score for s in spans), reverse=True)
        for span in spans:
            assert span.start_position <= span.end_position
            assert span.end_position - span.start_position + 1 <= cfg.max_answer_len
            assert window.context_token_indices[span.start_position] >= 0
            assert window.context_token_indices[span.end_position] >= 0
            assert window.token_type_ids[span.start_position] == 1
            assert window.max_context[span.start_position]
    prediction = predict_answer(windows, starts, ends, text, offsets, cfg)
    every_span = [
        span.score
        for window, start, end in zip(windows, starts, ends, strict=True)
        for span in best_spans(start, end, window, cfg)
    ]
    if not every_span:  # e.g. an empty context, or every n-best end before every n-best start
        assert (prediction.text, prediction.score, prediction.window) == ("", -math.inf, -1)
        return
    assert prediction.score == max(every_span)
    assert 0 <= prediction.start_char <= prediction.end_char <= len(text)
    assert text[prediction.start_char : prediction.end_char] == prediction.text
    inside = [s for s, e in offsets if prediction.start_char <= s and e <= prediction.end_char]
    assert 1 <= len(inside) <= cfg.max_answer_len


def test_no_valid_span_gives_an_empty_answer() -> None:
    cfg = config(4, 2)
    windows = build_windows([5, 6], [], [], cfg, CLS, SEP)  # empty context: one window, no span
    assert len(windows) == 1
    logits = [np.zeros(len(windows[0].input_ids))]
    prediction = predict_answer(windows, logits, logits, "", [], cfg)
    assert (prediction.text, prediction.score, prediction.window) == ("", -math.inf, -1)


def test_answer_straddling_a_window_edge_is_found_whole() -> None:
    # 20 one-token words; windows of 10 context tokens, stride 5: [0, 10) [5, 15) [10, 20).
    text, offsets = words_context([2] * 20, [1] * 20)
    cfg = config(10, 5, max_question_len=1, max_answer_len=6)
    windows = build_windows([5], fake_ids(20), offsets, cfg, CLS, SEP)
    assert [window_range(w) for w in windows] == [(0, 10), (5, 15), (10, 20)]
    first, last = 8, 11  # tokens 8, 9 at the end of window 0; 10, 11 only in windows 1 and 2
    starts, ends = pointing_logits(windows, first, last)
    # Window 0 also sees an answer end where its view of the answer stops (token 9).
    ends[0][windows[0].context_token_indices.index(9)] = HIGH
    prediction = predict_answer(windows, starts, ends, text, offsets, cfg)
    assert prediction.window == 1
    assert prediction.score == 2 * HIGH
    assert (prediction.start_char, prediction.end_char) == (offsets[first][0], offsets[last][1])
    assert prediction.text == text[offsets[first][0] : offsets[last][1]]


@settings(max_examples=150, deadline=None)
@given(examples(), st.data())
def test_pointed_answers_are_recovered_across_windows(example, data) -> None:
    """Logits pointing at an answer in every window that sees its ends recover that answer when
    the overlap leaves room for it (see the fit property above)."""
    cfg, question, text, offsets = example
    assume(offsets)
    kept = min(len(question), cfg.max_question_len)
    overlap = cfg.max_seq_len - kept - 3 - cfg.stride
    longest = min(cfg.max_answer_len, (overlap + 1) // 2)  # 2 * length - 1 <= overlap
    assume(longest >= 1)
    length = data.draw(st.integers(1, longest))
    first = data.draw(st.integers(0, len(offsets) - 1))
    last = min(first + length - 1, len(offsets) - 1)
    windows = build_windows(question, fake_ids(len(offsets)), offsets, cfg, CLS, SEP)
    starts, ends = pointing_logits(windows, first, last)
    prediction = predict_answer(windows, starts, ends, text, offsets, cfg)
    assert (prediction.start_char, prediction.end_char) == (offsets[first][0], offsets[last][1])
    assert prediction.score == 2 * HIGH
    window = windows[prediction.window]
    assert first in window.context_token_indices and last in window.context_token_indices


def test_max_context_window_wins_between_equal_logits() -> None:
    # Windows [0, 10) and [5, 15); token 6 has min context 3 in window 0 (6 left, 3 right) and 1
    # in window 1 (1 left, 8 right); token 8 has 1 in window 0 and 3 in window 1.
    text, offsets = words_context([1] * 15, [1] * 15)
    cfg = config(10, 5, max_question_len=1, max_answer_len=1)
    windows = build_windows([5], fake_ids(15), offsets, cfg, CLS, SEP)
    assert [window_range(w) for w in windows] == [(0, 10), (5, 15)]
    for token, owner in ((6, 0), (8, 1)):
        starts, ends = pointing_logits(windows, token, token)
        # Same logits in both windows: the score alone cannot choose.
        spans = [best_spans(*args, cfg) for args in zip(starts, ends, windows, strict=True)]
        prediction = predict_answer(windows, starts, ends, text, offsets, cfg)
        assert prediction.window == owner
        assert prediction.text == text[offsets[token][0] : offsets[token][1]]
        assert spans[1 - owner][0].score < 2 * HIGH  # the other window may not start there


def test_without_the_max_context_rule_the_higher_scoring_window_wins() -> None:
    # Same windows as above; token 6 is owned by window 0, but window 1 scores it higher.
    text, offsets = words_context([1] * 15, [1] * 15)
    ruled = config(10, 5, max_question_len=1, max_answer_len=1)
    free = config(10, 5, max_question_len=1, max_answer_len=1, max_context_rule=False)
    windows = build_windows([5], fake_ids(15), offsets, ruled, CLS, SEP)
    starts, ends = pointing_logits(windows, 6, 6)
    starts[1] = starts[1] * 2
    assert predict_answer(windows, starts, ends, text, offsets, ruled).window == 0
    prediction = predict_answer(windows, starts, ends, text, offsets, free)
    assert prediction.window == 1
    assert prediction.score == 3 * HIGH
    assert prediction.text == text[offsets[6][0] : offsets[6][1]]


def test_unknown_loss_scope_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="loss_over: must be one of"):
        config(10, 5, loss_over="question")


# --- Chinese text with characters missing from the vocabulary ------------------------------------

CHINESE_TRAIN = [
    "我们在北京见面，然后去公园散步。",
    "今天天气很好，我们去看花。",
    "北京的公园很大。",
]
CHINESE_CONTEXT = "我们在龘城见面，然后去鬱金香公园散步。今天天气很好 ABC 公园很大。"


@pytest.fixture(scope="module")
def chinese_tokenizer():
    tokenizer = train_tokenizer("char", CHINESE_TRAIN, min_frequency=1)
    for char in "龘鬱城金香":  # the point of the test: these are unknown
        assert tokenizer.token_to_id(char) is None
    return tokenizer


def predict_chinese(tokenizer, question: str, context: str, answer: str, cfg: WindowConfig):
    q, c = tokenizer.encode(question), tokenizer.encode(context)
    start = context.index(answer)
    first, last = answer_token_span(c.offsets, start, start + len(answer))
    windows = build_windows(q.ids, c.ids, c.offsets, cfg, tokenizer.cls_id, tokenizer.sep_id)
    starts, ends = pointing_logits(windows, first, last)
    return predict_answer(windows, starts, ends, context, c.offsets, cfg), c.ids[first : last + 1]


@pytest.mark.parametrize("answer", ["龘城", "鬱金香公园", "龘", "很好 ABC 公园", "散步。"])
def test_chinese_answers_are_copied_from_the_context(chinese_tokenizer, answer) -> None:
    cfg = config(12, 4, max_question_len=8, max_answer_len=12)
    prediction, ids = predict_chinese(
        chinese_tokenizer, "在哪里见面？", CHINESE_CONTEXT, answer, cfg
    )
    assert prediction.text == answer
    assert CHINESE_CONTEXT[prediction.start_char : prediction.end_char] == answer
    assert "[UNK]" not in prediction.text
    if chinese_tokenizer.unk_id in ids:  # decoding the ids instead would have lost characters
        assert "[UNK]" in chinese_tokenizer.decode(ids)


@settings(max_examples=60, deadline=None)
@given(
    st.text(alphabet="我们在北京龘城见鬱金香公园，", min_size=1, max_size=60),
    st.data(),
)
def test_chinese_answers_roundtrip_through_labels(chinese_tokenizer, context, data) -> None:
    cfg = config(10, 4, max_question_len=4, max_answer_len=3)
    start = data.draw(st.integers(0, len(context) - 1))
    answer = context[start : start + data.draw(st.integers(1, 3))]
    q, c = chinese_tokenizer.encode("哪里？"), chinese_tokenizer.encode(context)
    windows = build_windows(
        q.ids,
        c.ids,
        c.offsets,
        cfg,
        chinese_tokenizer.cls_id,
        chinese_tokenizer.sep_id,
        answer_char_span=(start, start + len(answer)),
    )
    # Logits from the labels of every window that holds the answer.
    starts = [np.eye(len(w.input_ids))[w.start_position] * HIGH for w in windows]
    ends = [np.eye(len(w.input_ids))[w.end_position] * HIGH for w in windows]
    prediction = predict_answer(windows, starts, ends, context, c.offsets, cfg)
    assert prediction.text == answer
    assert "[UNK]" not in prediction.text and " " not in prediction.text


# --- the loss scope of the QA head ---------------------------------------------------------------


@pytest.mark.parametrize("loss_over", ["passage", "window"])
def test_qa_loss_is_cross_entropy_over_its_scope(chinese_tokenizer, loss_over) -> None:
    import torch
    import torch.nn.functional as F

    from selfsup.data.labelled import QAExample
    from selfsup.tasks.qa import QuestionAnsweringHead, QuestionAnsweringTask

    cfg = WindowConfig(max_seq_len=16, max_question_len=4, stride=4, loss_over=loss_over)
    task = QuestionAnsweringTask(chinese_tokenizer, cfg)
    examples = [
        QAExample("a", "公园大吗", CHINESE_TRAIN[0], [("北京", 3)]),
        QAExample("b", "天气", CHINESE_TRAIN[1], [("天气", 2)]),
    ]
    batch = task.collate(task.encode(examples, training=True))
    torch.manual_seed(0)
    head = QuestionAnsweringHead(8)
    hidden = torch.randn(*batch["input_ids"].shape, 8)
    logits = head.span(hidden)  # (B, T, 2) unmasked
    if loss_over == "window":  # every position, question and padding included
        allowed = torch.ones_like(batch["input_ids"], dtype=torch.bool)
    else:  # context tokens and [CLS] only
        allowed = batch["token_type_ids"].bool() & batch["attention_mask"].bool()
        allowed[:, 0] = True
        is_sep = batch["input_ids"] == chinese_tokenizer.sep_id
        allowed &= ~is_sep
    assert batch["answer_mask"].bool().equal(allowed)
    masked = logits.masked_fill(~allowed[..., None], float("-inf"))
    expected = (
        F.cross_entropy(masked[..., 0], batch["start_positions"], reduction="sum")
        + F.cross_entropy(masked[..., 1], batch["end_positions"], reduction="sum")
    ) / 2
    term = head.loss(None, hidden, batch)
    assert term.loss_sum.item() == pytest.approx(expected.item(), rel=1e-5)
