"""In-context learning: candidate scoring with a cached prompt, the k-shot evaluation, the
regression baselines of the linear-function experiment, and the synthetic copy task."""

import json

import numpy as np
import pytest
import torch
from helpers import tiny_gpt_config

from selfsup.cli import main
from selfsup.data.labelled import TextExample
from selfsup.errors import UserError
from selfsup.evaluation.icl import ICLConfig, continuation_logprobs, parse_label_words, render
from selfsup.experiments.icl_induction import InductionConfig, repeated_segments
from selfsup.experiments.icl_linear import (
    LinearICLModel,
    averaging_predictions,
    knn_predictions,
    least_squares_predictions,
)
from selfsup.objectives.clm import GPTPretrainer

CFG = tiny_gpt_config()


def test_scores_of_a_context_blind_model_are_its_bias():
    model = GPTPretrainer(CFG, ["clm"]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        bias = model.objectives["clm"].head.bias
        bias.copy_(torch.randn(99))
    logp = bias.detach().log_softmax(-1)
    candidates = [[7], [8, 9], [10]]
    scores = continuation_logprobs(model, [2, 3, 4], [[5, 6], [11]], candidates, batch_size=4)
    expected = [float(logp[c].sum()) for c in candidates]
    np.testing.assert_allclose(scores, [expected, expected], rtol=1e-5)


def test_cached_prefix_scores_equal_full_sequences():
    torch.manual_seed(0)
    model = GPTPretrainer(CFG, ["clm"]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    prefix, queries, candidates = [2, 40, 41, 3], [[50, 51, 52], [60]], [[70], [71, 72]]
    scores = continuation_logprobs(model, prefix, queries, candidates, batch_size=3)
    for q, query in enumerate(queries):
        for c, cand in enumerate(candidates):
            ids = torch.tensor([prefix + query + cand])
            with torch.no_grad():
                logp = model.logits(ids)[0].log_softmax(-1)
            start = len(prefix) + len(query)
            want = sum(float(logp[start - 1 + i, t]) for i, t in enumerate(cand))
            assert scores[q, c] == pytest.approx(want, abs=1e-4)


def test_template_and_label_words():
    query, gap = render("{text} -> {label}", TextExample("很好用的东西", "pos"), 3)
    assert (query, gap) == ("很好用 ->", " ")
    assert parse_label_words("pos=好, neg=差", ["neg", "pos"]) == {"neg": "差", "pos": "好"}
    assert parse_label_words("", ["a", "b"]) == {"a": "a", "b": "b"}
    with pytest.raises(UserError, match="one distinct word"):
        parse_label_words("pos=好", ["neg", "pos"])
    with pytest.raises(UserError, match="must contain"):
        ICLConfig(template="{text}").validate()


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    """A tiny GPT run whose corpus is lines 'x -> x' over a few words: it learns the mapping."""
    base = tmp_path_factory.mktemp("icl")
    words = ["red", "blue", "green", "gold"]
    lines = [f"{a} -> {a}" for a in words] * 30
    rng = np.random.default_rng(0)
    text = "\n\n".join("\n".join(rng.permutation(lines)[:8]) for _ in range(40))
    (base / "corpus.txt").write_text(text + "\n")
    run = base / "run"
    args = ["pretrain", "--preset", "gpt-tiny", "--corpus", str(base / "corpus.txt")]
    args += ["--out", str(run), "train.progress=false", "train.steps=80", "train.lr=5e-3"]
    args += ["train.eval_batches=2", "model.dropout=0", "model.attention_dropout=0"]
    args += ["tokenizer.min_frequency=1", "data.heldout_fraction=0.1"]
    assert main(args) == 0
    rows = [f"{w},{w}" for i in range(10) for w in ("red", "blue")]
    (base / "train.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    (base / "test.csv").write_text("text,label\nred,red\nblue,blue\nred,red\nblue,blue\n")
    return base


def test_icl_command_on_a_labelled_file(gpt_run, capsys):
    out = gpt_run / "icl"
    args = ["icl", str(gpt_run / "run"), "--task", "files", "--task.kind", "classification"]
    args += ["--task.train_file", str(gpt_run / "train.csv")]
    args += ["--task.test_file", str(gpt_run / "test.csv"), "--out", str(out)]
    args += ["--shots", "0,2,4", "--draws", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "majority-class baseline" in printed
    results = json.loads((out / "results.json").read_text())
    assert [r["k"] for r in results["rows"]] == [0, 2, 4]
    assert [r["draws"] for r in results["rows"]] == [1, 2, 2]
    assert results["majority_accuracy"] == 0.5
    # the corpus taught "red -> red": with no demonstration the likeliest label after "red ->"
    # is red (with demonstrations this 80-step toy leans towards the labels it has just read) ...
    assert results["rows"][0]["accuracy_mean"] == 1.0
    assert all(0.0 <= r["accuracy_mean"] <= 1.0 for r in results["rows"])
    # ... a bias towards the last labels read that contextual calibration removes: under every
    # prompt the content-free inputs' label bias is divided out and each colour maps to itself
    assert [r["calibrated_mean"] for r in results["rows"]] == [1.0, 1.0, 1.0]
    assert "calibrated accuracy" in (out / "table.md").read_text()
    # split=dev scores the dev file instead (all 'blue' here: majority 'red' is always wrong)
    (gpt_run / "dev.csv").write_text("text,label\nblue,blue\nblue,blue\n")
    dev = ["icl", str(gpt_run / "run"), "--task", "files", "--task.kind", "classification"]
    dev += ["--task.train_file", str(gpt_run / "train.csv"), "--shots", "0", "--split", "dev"]
    dev += ["--task.dev_file", str(gpt_run / "dev.csv"), "--out", str(gpt_run / "icl-dev")]
    assert main(dev) == 0
    results = json.loads((gpt_run / "icl-dev" / "results.json").read_text())
    assert results["split"] == "dev" and results["num_test"] == 2
    assert results["majority_accuracy"] == 0.0
    assert (out / "icl_curve.png").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--template", "{label}: {text}"], "must come after"),
        (["--task.kind", "tagging"], "icl needs classification or pair"),
        (["--labels", "pos=x"], "one distinct word"),
    ],
)
def test_icl_user_errors_exit_2(gpt_run, capsys, extra, message):
    args = ["icl", str(gpt_run / "run"), "--task", "sentiment", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_least_squares_equals_numpy_lstsq():
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(7, 9, 4)), rng.normal(size=(7, 9))
    pred = least_squares_predictions(xs, ys)
    for n in range(7):
        for k in range(1, 9):  # k < d: the minimum-norm solution, as lstsq gives
            w = np.linalg.lstsq(xs[n, :k], ys[n, :k], rcond=None)[0]
            assert pred[n, k] == pytest.approx(xs[n, k] @ w, abs=1e-8)
    assert np.all(pred[:, 0] == 0)
    w = rng.normal(size=(7, 4, 1))
    exact = least_squares_predictions(xs, (xs @ w)[..., 0])
    np.testing.assert_allclose(exact[:, 4:], (xs @ w)[:, 4:, 0], atol=1e-8)  # noiseless, k >= d


def test_knn_and_averaging_known_answers():
    xs = np.array([[[0.0], [10.0], [1.0], [9.0], [0.5]]])
    ys = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    knn = knn_predictions(xs, ys, neighbours=2)
    # point 2 (x=1): the two earlier are x=0 and 10 -> mean(1, 2); point 4 (x=0.5): x=0 and 1
    assert knn[0, 1] == 1.0 and knn[0, 2] == 1.5 and knn[0, 4] == 2.0
    avg = averaging_predictions(xs, ys)
    assert avg[0, 2] == pytest.approx(1.0 * (1 * 0 + 2 * 10) / 2)


def test_regression_prediction_never_sees_its_own_answer():
    torch.manual_seed(0)
    cfg = tiny_gpt_config(vocab_size=1)
    model = LinearICLModel(3, cfg).eval()
    xs, ys = torch.randn(2, 6, 3), torch.randn(2, 6)
    changed = ys.clone()
    changed[:, 4] += 5.0
    with torch.no_grad():
        a, b = model.predict(xs, ys), model.predict(xs, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=0, rtol=0)  # prediction 4 sees y_0..y_3
    assert (a[:, 5] - b[:, 5]).abs().min() > 0


def test_repeated_segments_layout():
    cfg = InductionConfig(vocab=50, seq_len=40, min_segment=5, max_segment=8)
    tokens, role = repeated_segments(64, cfg, np.random.default_rng(0))
    for t, r in zip(tokens, role):
        start = int(np.flatnonzero(r == 1)[0])
        length = 1 + int((r == 2).sum())
        copy = t[start : start + length]
        earlier = [t[i : i + length] for i in range(0, start - length + 1)]
        assert 5 <= length <= 8 and any(np.array_equal(copy, e) for e in earlier)


def test_linear_curriculum_grows_the_subspace_and_keeps_ys_linear():
    from selfsup.experiments.icl_linear import LinearICLConfig, LinearPrompts

    cfg = LinearICLConfig(dim=4, points=6, curriculum_every=10)
    cfg.train.batch_size = 8
    prompts = LinearPrompts(cfg)
    assert [prompts.active_dims(s) for s in (0, 9, 10, 25, 1000)] == [1, 1, 2, 3, 4]
    for index, active in ((0, 1), (15, 2), (35, 4)):
        batch = prompts.batch(index)
        xs, ys = batch["xs"], batch["ys"]
        assert torch.all(xs[..., active:] == 0) and torch.all(xs[..., :active] != 0)
        # ys are an exact linear function of each prompt's xs (solve on the active coordinates)
        w = torch.linalg.lstsq(xs[..., :active], ys[..., None]).solution
        assert torch.allclose(xs[..., :active] @ w, ys[..., None], atol=1e-4)
    assert torch.equal(prompts.batch(15)["xs"], prompts.batch(15)["xs"])  # pure function of i
    off = LinearPrompts(LinearICLConfig(dim=4, points=6, curriculum_every=0))
    assert off.active_dims(0) == 4


def test_calibration_known_answer_and_uniform_content_free():
    from selfsup.evaluation.icl import calibrated_scores, label_distribution

    # the model prefers label 0 by a factor 3 under a content-free input
    content_free = np.log(np.array([[0.75, 0.25], [0.75, 0.25]]))
    scores = np.log(np.array([[0.6, 0.4], [0.8, 0.2]]))
    calibrated = calibrated_scores(scores, content_free)
    # 0.6/0.75 = 0.8 < 0.4/0.25 = 1.6 -> label 1; 0.8/0.75 = 1.07 > 0.2/0.25 = 0.8 -> label 0
    assert list(calibrated.argmax(1)) == [1, 0]
    assert list(scores.argmax(1)) == [0, 0]
    # a single content-free input becomes uniform (unnormalised log-scores are fine)
    raw = np.array([[-1.0, -3.0, -2.0]])
    np.testing.assert_allclose(label_distribution(calibrated_scores(raw, raw)), 1 / 3)


def test_icl_help_lists_the_data_options_only(capsys):
    with pytest.raises(SystemExit):
        main(["icl", "--help"])
    text = capsys.readouterr().out
    assert "--task.text_field" in text and "--task.max_eval_examples" in text
    for qa_only in ("--task.stride", "--task.max_seq_len", "--task.lang", "--task.n_best"):
        assert qa_only not in text
    assert "--task.max_train_examples" not in text  # demonstrations come from the whole split
