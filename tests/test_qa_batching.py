"""QA prediction batches windows longest first and pads each batch to its own longest: the
answers must not depend on the batch size, and every window's logits come back in its place."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
import torch
from serve_helpers import _qa_record, make_tiny_runs

from selfsup.data.labelled import QAExample
from selfsup.errors import UserError
from selfsup.inference import precision
from selfsup.inference.answer import answer_questions, load_finetuned
from selfsup.inference.precision import check_inference_dtype, has_fast_bfloat16
from selfsup.tasks.base import predict_logits


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    runs = make_tiny_runs(tmp_path_factory.getbasetemp() / "serve-runs")  # shared with test_serve
    return load_finetuned(runs["qa"])


def _examples(count: int) -> list[QAExample]:
    rng = random.Random(1)
    out = []
    for i in range(count):  # passages of 1 to ~10 windows
        paragraph = _qa_record(rng, i, rng.randint(3, 120))["paragraphs"][0]
        out.append(QAExample(f"q{i}", paragraph["qas"][0]["question"], paragraph["context"], []))
    return out


def test_answers_do_not_depend_on_the_batch_size(qa_run):
    examples = _examples(40)
    answers = {
        size: [(p.text, p.start_char, p.end_char) for p in answer_questions(qa_run, examples, size)]
        for size in (1, 5, 64)
    }
    assert answers[1] == answers[5] == answers[64]
    assert sum(text != "" for text, _, _ in answers[1]) > 30


def test_logits_come_back_in_the_features_order(qa_run):
    features = qa_run.task.encode(_examples(12), training=False)
    lengths = [len(f.input_ids) for f in features]
    assert len(set(lengths)) > 2  # windows of several lengths, so sorting reorders them
    batched = predict_logits(qa_run.model, features, qa_run.task.collate, batch_size=4)
    for feature, logits in zip(features, batched):
        (alone,) = predict_logits(qa_run.model, [feature], qa_run.task.collate, batch_size=1)
        assert logits.shape == alone.shape and logits.shape[0] == len(feature.input_ids)
        # float32 sums of a few hundred terms of O(1): differences of order 1e-6
        np.testing.assert_allclose(logits, alone, atol=1e-4, rtol=1e-4)


def test_batch_size_must_be_positive(qa_run):
    with pytest.raises(UserError, match="batch size"):
        answer_questions(qa_run, _examples(1), 0)


def test_ask_batch_size_flag(qa_run, tmp_path, capsys):
    from selfsup.cli import main

    passage = tmp_path / "passage.txt"
    passage.write_text(_examples(1)[0].context, encoding="utf-8")
    base = [
        "ask",
        str(qa_run.folder.path),
        "--context",
        str(passage),
        "--question",
        "括号里是什么？",
    ]
    assert main([*base, "--batch-size", "0"]) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err
    answers = []
    for size in ("1", "8"):
        assert main([*base, "--batch-size", size]) == 0
        answers.append(capsys.readouterr().out)
    assert answers[0] == answers[1] and answers[0].strip()
    with pytest.warns() if not has_fast_bfloat16("cpu") else contextlib.nullcontext():
        assert main([*base, "--dtype", "bfloat16"]) == 0
    assert capsys.readouterr().out.strip()
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--dtype", "float16"])
    assert exit_info.value.code == 2 and "invalid choice: 'float16'" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:.*no bf16 matrix units")  # slower there, not wrong
def test_bfloat16_inference_keeps_the_head_in_float32_and_close_to_float32(qa_run, tmp_path):
    bf16_run = load_finetuned(qa_run.folder.path, dtype="bfloat16")
    encoder = bf16_run.model.encoder
    assert all(p.dtype == torch.bfloat16 for p in encoder.layers.parameters())
    assert encoder.pooler.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in bf16_run.model.head.parameters())
    features = qa_run.task.encode(_examples(8), training=False)
    exact = predict_logits(qa_run.model, features, qa_run.task.collate)
    approximate = predict_logits(bf16_run.model, features, bf16_run.task.collate)
    for a, b in zip(exact, approximate):
        assert b.dtype == np.float32 and a.shape == b.shape
        # bfloat16 keeps 8 mantissa bits (relative rounding 2^-9 per value); a few roundings
        # through two blocks and LayerNorms stay within a few percent of the logits' scale
        np.testing.assert_allclose(b, a, atol=0.05 * float(np.abs(a).max()), rtol=0)
    assert not np.array_equal(exact[0], approximate[0])  # it did run in another precision


def test_inference_dtype_is_checked(monkeypatch):
    with pytest.raises(UserError, match="float32, bfloat16"):
        check_inference_dtype("float16", "cpu")
    assert has_fast_bfloat16("meta") is False
    monkeypatch.setattr(precision, "has_fast_bfloat16", lambda device: False)
    with pytest.warns(UserWarning, match="slower than float32"):
        assert check_inference_dtype("bfloat16", "cpu") == "bfloat16"
