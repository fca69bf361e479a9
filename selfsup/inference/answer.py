"""Using a fine-tuned run: predictions on new examples, and answers to questions.

`load_finetuned` opens a run of `selfsup finetune` (or a Hugging Face `BertForQuestionAnswering`
folder, read with SQuAD's usual windows shrunk to the model); `predict_split` gives labels, tags
or answer spans; `answer_questions` is the QA case that `selfsup ask` uses: passages of any
length are cut into windows and the best span over all of them wins (tasks/qa_windows.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selfsup.errors import UserError
from selfsup.inference.precision import check_inference_dtype, use_inference_dtype
from selfsup.interop.huggingface import load_hf_bert
from selfsup.recipes.base import LoadedRun
from selfsup.recipes.finetune import FINETUNE, FinetuneConfig
from selfsup.runs import RunFolder, is_hf_checkpoint
from selfsup.tasks import build_task
from selfsup.tasks.base import PREDICT_BATCH, predict_logits
from selfsup.tasks.qa_windows import SQUAD_WINDOWS


def _load_hf_question_answering(directory: Path, device: str) -> LoadedRun:
    """A Hugging Face BertForQuestionAnswering folder, ready for `answer_questions`."""
    checkpoint = load_hf_bert(directory)
    if "qa" not in checkpoint.head_states or checkpoint.tokenizer is None:
        raise UserError(
            f"{directory}: not a question-answering checkpoint with a tokenizer "
            f"(architectures: {', '.join(checkpoint.architectures) or 'unknown'})"
        )
    cfg = FinetuneConfig(init=str(directory), model=checkpoint.config)
    cfg.task.kind = "qa"
    windows = SQUAD_WINDOWS.fit(checkpoint.config.max_position)
    cfg.task.max_seq_len, cfg.task.max_question_len = windows.max_seq_len, windows.max_question_len
    cfg.task.stride = windows.stride
    task = build_task("qa", checkpoint.tokenizer, [], cfg.task, 0)
    model = FINETUNE.build_model(cfg, {"task": task})
    model.encoder.load_state_dict(checkpoint.encoder_state, strict=False)  # QA has no pooler
    model.head.load_state_dict(checkpoint.head_states["qa"])
    return LoadedRun(RunFolder(Path(directory)), cfg, model.to(device).eval(), task.tokenizer, task)


def load_finetuned(run_dir: str | Path, device: str = "cpu", dtype: str = "float32") -> LoadedRun:
    """Config, task (tokenizer, labels, windows) and weights of a fine-tuned run; `dtype`
    bfloat16 runs the encoder's blocks in bfloat16 (fast on AMX CPUs and GPUs, approximate:
    inference/precision.py)."""
    check_inference_dtype(dtype, device)
    if is_hf_checkpoint(run_dir):
        run = _load_hf_question_answering(Path(run_dir), device)
    else:
        folder = RunFolder.open(
            run_dir,
            kinds=("finetune",),
            refusal="{path}: a {kind} run, not a fine-tuned one (selfsup finetune makes those)",
        )
        run = FINETUNE.load(folder, device)
    use_inference_dtype(run.model.encoder, dtype)
    return run


def feature_logits(
    run: LoadedRun, examples: list, batch_size: int = PREDICT_BATCH, longest_first: bool = True
) -> tuple[list, list[np.ndarray]]:
    """The task's features of `examples` (QA: their windows) and the head's logits for each."""
    features = run.task.encode(examples, training=False)
    device = next(run.model.parameters()).device
    outputs = predict_logits(
        run.model, features, run.task.collate, batch_size, device, longest_first
    )
    return features, outputs


def predict_split(
    run: LoadedRun, examples: list, batch_size: int = PREDICT_BATCH, longest_first: bool = True
) -> list:
    """Predictions of a fine-tuned run on examples: labels, per-unit tags, or answer spans
    (`batch_size` inputs, or QA windows, per forward pass: the answers do not depend on it)."""
    features, outputs = feature_logits(run, examples, batch_size, longest_first)
    if run.config.task.kind == "qa":
        return run.task.predict(examples, features, outputs)
    if run.config.task.kind == "tagging":
        return run.task.predict(features, outputs)
    return run.task.predict(outputs)


def answer_questions(run: LoadedRun, examples: list, batch_size: int = PREDICT_BATCH) -> list:
    """SpanPrediction for every QAExample (passages of any length: windows, best span overall)."""
    if run.config.task.kind != "qa":
        raise UserError(
            f"this run was fine-tuned for {run.config.task.kind}, not for question answering"
        )
    return predict_split(run, examples, batch_size)
