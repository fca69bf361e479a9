"""Fine-tuning end to end on tiny synthetic tasks: each of the four task kinds beats chance, the
QA pipeline answers across windows, and `ask` / `score-qa` work from the command line."""

import json
import random

import pytest

from selfsup.cli import main

COMMON = [
    "--preset",
    "tiny",
    "--task",
    "files",
    "train.progress=false",
    "train.log_every=20",
    "task.max_train_examples=0",
    "task.max_eval_examples=0",
    "tokenizer.min_frequency=1",
    "model.dropout=0",
    "model.attention_dropout=0",
    "head_dropout=0",
    "train.lr=1e-3",
    "model.norm_position=pre",  # pre-LN learns these toy tasks reliably at a high learning rate
    "train.warmup_steps=10",
    "train.batch_size=16",
]
FILLER = "一二三四五六七八九十"


def _finetune(tmp_path, capsys, *args):
    out = tmp_path / "run"
    code = main(["finetune", *COMMON, "--out", str(out), *args])
    _, err = capsys.readouterr()
    assert code == 0, err
    return json.loads((out / "final_metrics.json").read_text()), out


def _write_jsonl(path, records):
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    return str(path)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classification_beats_chance(tmp_path, capsys, pooling):
    rng = random.Random(0)

    def example():
        label = rng.choice(["pos", "neg"])
        chars = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
        chars.insert(rng.randrange(len(chars)), "好" if label == "pos" else "坏")
        return {"text": "".join(chars), "label": label}

    train = _write_jsonl(tmp_path / "train.jsonl", [example() for _ in range(400)])
    test = _write_jsonl(tmp_path / "test.jsonl", [example() for _ in range(100)])
    metrics, _ = _finetune(
        tmp_path,
        capsys,
        "--task.kind",
        "classification",
        "--task.train_file",
        train,
        "--task.test_file",
        test,
        "train.steps=60",
        f"task.pooling={pooling}",
    )
    assert metrics["test_accuracy"] > 0.9  # chance: 0.5


def test_mean_pooling_averages_the_real_tokens_only():
    import torch

    from selfsup.tasks.classification import mean_pool

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # the last is padding
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))
    # a row of padding only (never built, but no division by zero)
    assert torch.isfinite(mean_pool(hidden, torch.zeros(1, 3, dtype=torch.long))).all()


def test_pair_classification_beats_chance(tmp_path, capsys):
    rng = random.Random(1)

    def example():  # the label needs both texts: is B about the same thing (甲 or 乙) as A?
        a_topic, b_topic = rng.choice("甲乙"), rng.choice("甲乙")
        a = "".join(rng.choice(FILLER + a_topic * 4) for _ in range(rng.randint(4, 8)))
        b = "".join(rng.choice(FILLER + b_topic * 4) for _ in range(rng.randint(4, 8)))
        a, b = a + a_topic, b_topic + b
        return {
            "premise": a,
            "hypothesis": b,
            "label": "same" if a_topic == b_topic else "different",
        }

    train = _write_jsonl(tmp_path / "train.jsonl", [example() for _ in range(800)])
    test = _write_jsonl(tmp_path / "test.jsonl", [example() for _ in range(200)])
    metrics, _ = _finetune(
        tmp_path,
        capsys,
        "--task.kind",
        "pair",
        "--task.train_file",
        train,
        "--task.test_file",
        test,
        "--task.text_field",
        "premise",
        "--task.text_b_field",
        "hypothesis",
        "train.steps=300",
    )
    assert metrics["test_accuracy"] > 0.75  # chance: 0.5


def test_tagging_beats_chance(tmp_path, capsys):
    rng = random.Random(2)

    def sentence():
        lines = []
        for _ in range(rng.randint(2, 5)):
            for _ in range(rng.randint(1, 3)):
                lines.append(f"{rng.choice(FILLER)} O")
            # an entity starts with 甲 or 乙 and continues with 丙 or 丁: the tag follows from the
            # character, so this checks alignment and span decoding, not model capacity
            lines.append(f"{rng.choice('甲乙')} B-ENT")
            for _ in range(rng.randint(0, 2)):
                lines.append(f"{rng.choice('丙丁')} I-ENT")
        return "\n".join(lines) + "\n\n"

    (tmp_path / "train.bio").write_text("".join(sentence() for _ in range(300)), encoding="utf-8")
    (tmp_path / "test.bio").write_text("".join(sentence() for _ in range(60)), encoding="utf-8")
    metrics, _ = _finetune(
        tmp_path,
        capsys,
        "--task.kind",
        "tagging",
        "--task.train_file",
        str(tmp_path / "train.bio"),
        "--task.test_file",
        str(tmp_path / "test.bio"),
        "train.steps=100",
    )
    assert metrics["test_span_f1"] > 0.9


def _qa_example(rng, i, length):
    # first, middle and last characters come from their own sets: a token's role follows from the
    # character, so the test checks windows and span decoding, not the tiny model's capacity
    middle = "".join(rng.choice("丙丁") for _ in range(rng.randint(0, 2)))
    answer = rng.choice("甲乙") + middle + rng.choice("戊己")
    context = [rng.choice(FILLER) for _ in range(length)]
    at = rng.randrange(length)
    context = "".join(context[:at]) + "【" + answer + "】" + "".join(context[at:])
    return {
        "id": f"q{i}",
        "question": "括号里是什么？",
        "answers": [{"text": answer, "answer_start": at + 1}],
        "context": context,
    }


def _squad(examples):
    return {
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": e["context"],
                        "qas": [
                            {"id": e["id"], "question": e["question"], "answers": e["answers"]}
                        ],
                    }
                    for e in examples
                ],
            }
        ]
    }


def test_qa_beats_chance_across_windows_and_ask_answers(tmp_path, capsys):
    rng = random.Random(3)
    train = [_qa_example(rng, i, rng.randint(5, 60)) for i in range(400)]
    test = [_qa_example(rng, 1000 + i, 80) for i in range(40)]  # longer than one window
    (tmp_path / "train.json").write_text(
        json.dumps(_squad(train), ensure_ascii=False), encoding="utf-8"
    )
    (tmp_path / "test.json").write_text(
        json.dumps(_squad(test), ensure_ascii=False), encoding="utf-8"
    )
    metrics, run = _finetune(
        tmp_path,
        capsys,
        "--task.kind",
        "qa",
        "--task.train_file",
        str(tmp_path / "train.json"),
        "--task.test_file",
        str(tmp_path / "test.json"),
        "task.max_seq_len=48",
        "task.max_question_len=10",
        "task.stride=16",
        "train.steps=200",
        "--task.lang",
        "zh",
    )
    assert metrics["test_exact_match"] > 90  # chance: ~0 (any of ~3000 spans)
    predictions = json.loads((run / "predictions.json").read_text())
    assert set(predictions) == {e["id"] for e in test}
    for e in test:  # answers are always copied from the passage
        assert predictions[e["id"]] in e["context"]

    assert (
        main(
            [
                "score-qa",
                "--gold",
                str(tmp_path / "test.json"),
                "--predictions",
                str(run / "predictions.json"),
                "--lang",
                "zh",
            ]
        )
        == 0
    )
    scored = json.loads(capsys.readouterr().out)
    assert scored["exact_match"] == pytest.approx(metrics["test_exact_match"])

    passage = tmp_path / "passage.txt"
    passage.write_text(test[0]["context"], encoding="utf-8")
    assert main(
        ["ask", str(run), "--context", str(passage), "--question", test[0]["question"]]
    ) in (0, 1)
    out = capsys.readouterr().out.strip()
    assert out in test[0]["context"] or out == "(no answer found)"


def test_bad_record_exit_2_names_file_and_line(tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "好", "label": "pos"}\n{"text": "坏"}\n', encoding="utf-8")
    code = main(
        [
            "finetune",
            *COMMON,
            "--out",
            str(tmp_path / "run"),
            "--task.kind",
            "classification",
            "--task.train_file",
            str(train),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "train.jsonl" in err and ":2" in err, err


def test_skip_bad_counts_instead_of_stopping(tmp_path, capsys):
    rng = random.Random(4)
    records = [{"text": rng.choice(FILLER) + "好", "label": "pos"} for _ in range(30)]
    records += [{"text": rng.choice(FILLER) + "坏", "label": "neg"} for _ in range(30)]
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + ['{"text": "坏"}', "not json"]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = main(
        [
            "finetune",
            *COMMON,
            "--out",
            str(tmp_path / "run"),
            "--task.kind",
            "classification",
            "--task.train_file",
            str(train),
            "--skip-bad",
            "train.steps=2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "dropped 2 examples" in err and "realigned" not in err  # a QA word


def test_test_split_that_is_the_dev_split_is_scored_once(tmp_path, capsys, monkeypatch):
    from selfsup.recipes import finetune as recipe

    calls, predict_logits = [], recipe.predict_logits

    def counting(*args, **kwargs):
        calls.append(len(args[1]))
        return predict_logits(*args, **kwargs)

    monkeypatch.setattr(recipe, "predict_logits", counting)
    rng = random.Random(4)
    records = [
        {"text": "".join(rng.choice(FILLER) for _ in range(6)) + mark, "label": mark}
        for mark in rng.choices("好坏", k=200)
    ]
    train = _write_jsonl(tmp_path / "train.jsonl", records)
    metrics, _ = _finetune(
        tmp_path,
        capsys,
        "--task.kind",
        "classification",
        "--task.train_file",
        train,
        "train.steps=5",
    )
    assert metrics["test_accuracy"] == metrics["dev_accuracy"]  # no test file: test is dev
    assert len(calls) == 1  # the last step's dev predictions are the test predictions


def test_task_config_keys_are_the_data_fields_then_the_model_fields():
    # config.json keeps the very keys, in the same order, since TaskConfig extends the data config
    from dataclasses import asdict

    from selfsup.data.catalog import LabelledDataConfig
    from selfsup.recipes.finetune import TaskConfig

    data_keys = list(asdict(LabelledDataConfig()))
    assert list(asdict(TaskConfig())) == data_keys + [
        "max_seq_len",
        "pooling",
        "sequence_mapping",
        "mapping_seed",
        "max_question_len",
        "stride",
        "max_answer_len",
        "n_best",
        "no_answer_window",
        "random_offset",
        "qa_loss_over",
        "max_context_rule",
        "lang",
    ]
    assert data_keys == [
        "name",
        "kind",
        "train_file",
        "dev_file",
        "test_file",
        "text_field",
        "text_b_field",
        "label_field",
        "skip_bad",
        "max_train_examples",
        "max_eval_examples",
    ]
