"""Hugging Face BERT checkpoints read into selfsup tensors: name mapping, configs, heads.

Users hold BERT checkpoints in the Hugging Face layout (config.json, model.safetensors or
pytorch_model.bin, vocab.txt / tokenizer.json) and want what they train here to load there. This
module translates both ways, from three pure pieces:
- the name mapping between selfsup's `BertModel` and Hugging Face's `BertModel` state dicts
  (selfsup fuses query, key and value into one `attention.qkv` layer: the three (C, C) blocks are
  stacked along dim 0 in q, k, v order), and between the pretraining / task heads of both;
- the config mapping (`config_from_hf`, `config_to_hf`);
- the architectures: which heads each Hugging Face class holds, and whether it keeps a pooler.

On top of them: `load_hf_bert` (a Hugging Face folder -> selfsup tensors), which `finetune --init`
and `ask` use directly. Writing either format (`export_run`, `import_hf`, `convert`) is in
interop/convert.py, which knows selfsup's run folders; this module knows none.

Deviations and limits, each reported in the returned notes rather than silently:
- Hugging Face's BERT is post-LN only: a pre-LN selfsup model cannot be exported.
- BertForMaskedLM, BertForTokenClassification and BertForQuestionAnswering have no pooler, so an
  export to them drops selfsup's pooler (those heads never read it).
- The sentence-order (SOP) head has no Hugging Face counterpart and is not exported.
- selfsup ties the MLM output projection to the word embeddings; a checkpoint whose
  `cls.predictions.decoder.weight` differs from them is reported (the embeddings are used).
- The decoder weight and bias are not written on export: they are tied, and Hugging Face
  transformers (4.x and 5.x) restores them from the word embeddings and `cls.predictions.bias`.

transformers itself is never imported here: it is an optional extra, only the tests use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from selfsup.data.tokenizer import Tokenizer
from selfsup.errors import UserError
from selfsup.models.bert import BertModel
from selfsup.models.transformer import TransformerConfig
from selfsup.objectives.mlm import MaskedLMHead
from selfsup.objectives.sentence_pairs import SentencePairHead
from selfsup.tasks.classification import SequenceClassificationHead
from selfsup.tasks.qa import QuestionAnsweringHead
from selfsup.tasks.tagging import TokenClassificationHead

Tensors = dict[str, torch.Tensor]

# ---------------------------------------------------------------- names
_QKV = ("query", "key", "value")  # order of the three (C, C) blocks in selfsup's fused qkv rows

_EMBEDDING_NAMES = (  # (selfsup name, Hugging Face name)
    ("embeddings.tokens.weight", "embeddings.word_embeddings.weight"),
    ("embeddings.positions.weight", "embeddings.position_embeddings.weight"),
    ("embeddings.segments.weight", "embeddings.token_type_embeddings.weight"),
    ("embeddings.norm.weight", "embeddings.LayerNorm.weight"),
    ("embeddings.norm.bias", "embeddings.LayerNorm.bias"),
)
_POOLER_NAMES = (("pooler.weight", "pooler.dense.weight"), ("pooler.bias", "pooler.dense.bias"))
_LAYER_MODULES = (  # under layers.{i}. / encoder.layer.{i}.; each has a weight and a bias
    ("attention.out", "attention.output.dense"),
    ("attention_norm", "attention.output.LayerNorm"),
    ("feed_forward.up", "intermediate.dense"),
    ("feed_forward.down", "output.dense"),
    ("feed_forward_norm", "output.LayerNorm"),
)

# Each head's tensors: (name inside the selfsup head module, Hugging Face name).
HEAD_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "mlm": (
        ("transform.weight", "cls.predictions.transform.dense.weight"),
        ("transform.bias", "cls.predictions.transform.dense.bias"),
        ("norm.weight", "cls.predictions.transform.LayerNorm.weight"),
        ("norm.bias", "cls.predictions.transform.LayerNorm.bias"),
        ("bias", "cls.predictions.bias"),
    ),
    "nsp": (
        ("classifier.weight", "cls.seq_relationship.weight"),
        ("classifier.bias", "cls.seq_relationship.bias"),
    ),
    "classification": (
        ("classifier.weight", "classifier.weight"),
        ("classifier.bias", "classifier.bias"),
    ),
    "tagging": (("classifier.weight", "classifier.weight"), ("classifier.bias", "classifier.bias")),
    "qa": (("span.weight", "qa_outputs.weight"), ("span.bias", "qa_outputs.bias")),
}

# Tied copies of other tensors: read only to check them, never written.
_DECODER_WEIGHT = "cls.predictions.decoder.weight"
_DECODER_BIAS = "cls.predictions.decoder.bias"
# Buffers some checkpoints carry (persistent in transformers < 4.31); they hold no weights.
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


@dataclass(frozen=True)
class Architecture:
    heads: tuple[str, ...]  # names in HEAD_NAMES, in the order their keys are written
    pooler: bool  # whether the class builds BertModel with its pooler


ARCHITECTURES: dict[str, Architecture] = {
    "BertModel": Architecture((), True),
    "BertForPreTraining": Architecture(("mlm", "nsp"), True),
    "BertForMaskedLM": Architecture(("mlm",), False),
    "BertForNextSentencePrediction": Architecture(("nsp",), True),
    "BertForSequenceClassification": Architecture(("classification",), True),
    "BertForTokenClassification": Architecture(("tagging",), False),
    "BertForQuestionAnswering": Architecture(("qa",), False),
}
BASE_PREFIX = "bert."  # where the head classes keep their BertModel (base_model_prefix)

# Fine-tuning task kind (labels.json) -> the head it trains.
TASK_HEADS = {
    "classification": "classification",
    "pair": "classification",
    "tagging": "tagging",
    "qa": "qa",
}


def _layer_pairs(i: int) -> list[tuple[str, str]]:
    return [
        (f"layers.{i}.{ours}.{p}", f"encoder.layer.{i}.{theirs}.{p}")
        for ours, theirs in _LAYER_MODULES
        for p in ("weight", "bias")
    ]


def encoder_name_pairs(num_layers: int, pooler: bool = True) -> list[tuple[str, str]]:
    """(selfsup name, Hugging Face name) of every encoder tensor except the fused q/k/v."""
    pairs = list(_EMBEDDING_NAMES)
    for i in range(num_layers):
        pairs += _layer_pairs(i)
    return pairs + (list(_POOLER_NAMES) if pooler else [])


def _qkv_names(i: int, p: str) -> tuple[str, list[str]]:
    return f"layers.{i}.attention.qkv.{p}", [
        f"encoder.layer.{i}.attention.self.{n}.{p}" for n in _QKV
    ]


def encoder_to_hf(
    state: Mapping[str, torch.Tensor], num_layers: int, pooler: bool = True
) -> Tensors:
    """selfsup BertModel state dict -> Hugging Face BertModel names (no `bert.` prefix)."""
    out = {theirs: state[ours] for ours, theirs in encoder_name_pairs(num_layers, pooler)}
    for i in range(num_layers):
        for p in ("weight", "bias"):
            fused, split = _qkv_names(i, p)
            # (3C, C) -> three (C, C) blocks: q, k, v
            out |= dict(zip(split, state[fused].chunk(3, dim=0), strict=True))
    return out


def encoder_from_hf(
    state: Mapping[str, torch.Tensor], num_layers: int
) -> tuple[Tensors, list[str]]:
    """Hugging Face BertModel tensors (prefix stripped) -> selfsup names, and the Hugging Face
    names that were absent. The caller decides which absences are fatal."""
    out, missing = {}, []
    for ours, theirs in encoder_name_pairs(num_layers):
        if theirs in state:
            out[ours] = state[theirs]
        else:
            missing.append(theirs)
    for i in range(num_layers):
        for p in ("weight", "bias"):
            fused, split = _qkv_names(i, p)
            absent = [n for n in split if n not in state]
            if absent:
                missing += absent
            else:
                out[fused] = torch.cat([state[n] for n in split], dim=0)  # 3 x (C, C) -> (3C, C)
    return out, missing


def head_to_hf(state: Mapping[str, torch.Tensor], head: str) -> Tensors:
    """One selfsup head's state dict (names inside the head module) -> Hugging Face names."""
    return {theirs: state[ours] for ours, theirs in HEAD_NAMES[head]}


def head_from_hf(state: Mapping[str, torch.Tensor], head: str) -> Tensors | None:
    """The head's tensors under selfsup names; None when the checkpoint has none of them."""
    pairs = HEAD_NAMES[head]
    present = [theirs for _, theirs in pairs if theirs in state]
    if not present:
        return None
    absent = [theirs for _, theirs in pairs if theirs not in state]
    if absent:
        raise UserError(f"the {head} head is incomplete: {', '.join(absent)} missing")
    return {ours: state[theirs] for ours, theirs in pairs}


def normalise_hf_key(key: str) -> str:
    """Accept keys with or without the `bert.` prefix, and TF-era LayerNorm gamma/beta names."""
    key = key.removeprefix(BASE_PREFIX)
    if ".LayerNorm." in key:
        key = key.replace(".LayerNorm.gamma", ".LayerNorm.weight")
        key = key.replace(".LayerNorm.beta", ".LayerNorm.bias")
    return key


def architecture_for(heads: tuple[str, ...]) -> str:
    """The Hugging Face class holding exactly these heads."""
    for name, arch in ARCHITECTURES.items():
        if set(arch.heads) == set(heads):
            return name
    raise UserError(f"no Hugging Face BERT class holds the heads {', '.join(heads)}")


# ---------------------------------------------------------------- configs
_REQUIRED_HF_KEYS = {  # Hugging Face config key -> TransformerConfig field
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_position",
}
_OPTIONAL_HF_KEYS = {  # with BertConfig's defaults when absent
    "type_vocab_size": ("type_vocab_size", 2),
    "hidden_dropout_prob": ("dropout", 0.1),
    "attention_probs_dropout_prob": ("attention_dropout", 0.1),
    "layer_norm_eps": ("layer_norm_eps", 1e-12),
    "initializer_range": ("initializer_range", 0.02),
}


def config_from_hf(hf_config: Mapping[str, Any], source: str = "config.json") -> TransformerConfig:
    """A Hugging Face BertConfig dict -> TransformerConfig; UserError naming the key otherwise."""
    model_type = hf_config.get("model_type", "bert")
    if model_type != "bert":
        raise UserError(f"{source}: model_type is {model_type!r}; only 'bert' is supported")
    activation = hf_config.get("hidden_act", "gelu")
    if activation != "gelu":
        # selfsup's feed-forward is exact (erf) GELU, which is what "gelu" means there
        raise UserError(f"{source}: hidden_act is {activation!r}; selfsup's BERT uses 'gelu' only")
    position = hf_config.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise UserError(
            f"{source}: position_embedding_type is {position!r}; only 'absolute' is supported"
        )
    if hf_config.get("is_decoder") or hf_config.get("add_cross_attention"):
        raise UserError(
            f"{source}: a decoder BERT (is_decoder / add_cross_attention) is not supported"
        )
    values: dict[str, Any] = {}
    for key, name in _REQUIRED_HF_KEYS.items():
        value = hf_config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise UserError(f"{source}: {key} must be a positive integer, got {value!r}")
        values[name] = value
    for key, (name, default) in _OPTIONAL_HF_KEYS.items():
        value = hf_config.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UserError(f"{source}: {key} must be a number, got {value!r}")
        values[name] = type(default)(value)
    cfg = TransformerConfig(**values, norm_position="post")
    try:
        cfg.validate()
    except UserError as error:
        raise UserError(f"{source}: {error}") from None
    return cfg


def config_to_hf(
    cfg: TransformerConfig,
    architectures: list[str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """TransformerConfig -> a Hugging Face BertConfig dict (config.json); `extra` adds or
    overrides keys (id2label, pad_token_id, classifier_dropout...)."""
    if cfg.norm_position != "post":
        raise UserError(
            f"model.norm_position={cfg.norm_position!r}: Hugging Face's BERT applies layer norm "
            "after each residual (post-LN) only, so a pre-LN model cannot be exported to it"
        )
    if cfg.position_encoding != "learned":
        raise UserError(
            f"model.position_encoding={cfg.position_encoding!r}: Hugging Face's BERT has a table "
            "of absolute positions only, so a rotary model cannot be exported to it"
        )
    out = {
        "architectures": list(architectures),
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.ffn_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "max_position_embeddings": cfg.max_position,
        "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": cfg.initializer_range,
        "layer_norm_eps": cfg.layer_norm_eps,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,  # the MLM decoder is the word embedding matrix
    }
    return out | dict(extra or {})


# ---------------------------------------------------------------- reading a Hugging Face folder
@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)  # selfsup parts freshly initialised
    missing_heads: list[str] = field(default_factory=list)  # declared by the architecture, absent
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys nothing read
    notes: list[str] = field(default_factory=list)


@dataclass
class HFCheckpoint:
    config: TransformerConfig
    hf_config: dict[str, Any]
    architectures: list[str]
    tokenizer: Any  # selfsup.data.tokenizer.Tokenizer, or None when the folder has none
    encoder_state: Tensors  # selfsup BertModel names
    head_states: dict[str, Tensors]  # head name (HEAD_NAMES) -> names inside the selfsup head
    num_labels: int | None
    id2label: dict[int, str] | None
    report: LoadReport


def read_hf_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise UserError(f"{path}: not found (a Hugging Face model folder has a config.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def read_hf_weights(directory: Path) -> tuple[Tensors, Path]:
    """The tensors of model.safetensors, else of pytorch_model.bin (read without pickle code)."""
    safetensors_path = directory / "model.safetensors"
    bin_path = directory / "pytorch_model.bin"
    if safetensors_path.is_file():
        try:
            return load_file(safetensors_path), safetensors_path
        except (SafetensorError, OSError) as error:
            raise UserError(f"{safetensors_path}: cannot read ({error})") from None
    if bin_path.is_file():
        try:
            state = torch.load(bin_path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError...
            raise UserError(
                f"{bin_path}: cannot read as a weights-only state dict ({error})"
            ) from None
        if not isinstance(state, dict):
            raise UserError(f"{bin_path}: expected a state dict")
        return state, bin_path
    if (directory / "model.safetensors.index.json").is_file():
        raise UserError(
            f"{directory / 'model.safetensors.index.json'}: sharded checkpoints are not supported"
        )
    raise UserError(f"{safetensors_path}: not found (nor {bin_path.name}): no weights to load")


def _heads_to_read(
    hf_config: Mapping[str, Any], state: Mapping[str, torch.Tensor]
) -> tuple[tuple[str, ...], list[str]]:
    """Which heads to look for: from config.json's architectures, else from the weight names.
    `classifier` means sequence or token classification; without architectures, a checkpoint
    with a pooler is taken for sequence classification (BertForTokenClassification has none)."""
    names = hf_config.get("architectures") or []
    known = [ARCHITECTURES[n] for n in names if n in ARCHITECTURES]
    if known:
        return tuple(dict.fromkeys(h for arch in known for h in arch.heads)), []
    notes = [f"architectures {names} unknown: heads guessed from the weight names"] if names else []
    heads = [h for h in ("mlm", "nsp", "qa") if HEAD_NAMES[h][0][1] in state]
    if "classifier.weight" in state:
        heads.append("classification" if "pooler.dense.weight" in state else "tagging")
        notes.append(f"'classifier' read as a {heads[-1]} head (no architectures in config.json)")
    return tuple(heads), notes


def _expected_shapes(cfg: TransformerConfig, heads: Mapping[str, int]) -> dict[str, tuple]:
    """Hugging Face name -> shape for this config: the mapping applied to a meta-device model,
    so shapes follow from the same code that moves the tensors. heads: name -> output size."""
    with torch.device("meta"):
        encoder = BertModel(cfg)
        modules = {name: _HEAD_MODULES[name](cfg, size) for name, size in heads.items()}
    out = encoder_to_hf(encoder.state_dict(), cfg.num_layers)
    for name, module in modules.items():
        out |= head_to_hf(module.state_dict(), name)
    return {k: tuple(v.shape) for k, v in out.items()}


def _mlm_head(cfg: TransformerConfig, _size: int) -> nn.Module:
    return MaskedLMHead(cfg.hidden_size, cfg.vocab_size, cfg.layer_norm_eps)


def _pair_head(cfg: TransformerConfig, _size: int) -> nn.Module:
    return SentencePairHead(cfg.hidden_size)


def _sequence_head(cfg: TransformerConfig, size: int) -> nn.Module:
    return SequenceClassificationHead(cfg.hidden_size, size, 0.0)


def _token_head(cfg: TransformerConfig, size: int) -> nn.Module:
    return TokenClassificationHead(cfg.hidden_size, size, 0.0)


def _span_head(cfg: TransformerConfig, _size: int) -> nn.Module:
    return QuestionAnsweringHead(cfg.hidden_size)


_HEAD_MODULES: dict[str, Callable[[TransformerConfig, int], nn.Module]] = {
    "mlm": _mlm_head,
    "nsp": _pair_head,
    "classification": _sequence_head,
    "tagging": _token_head,
    "qa": _span_head,
}


def _check_shapes(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple], source: Path
) -> None:
    for key, shape in expected.items():
        if key in state and tuple(state[key].shape) != shape:
            raise UserError(
                f"{source}: {key} has shape {list(state[key].shape)} but config.json implies "
                f"{list(shape)}"
            )


def _tied_decoder_notes(state: Mapping[str, torch.Tensor]) -> list[str]:
    """selfsup ties the MLM decoder; say so when the checkpoint's own copy differs."""
    notes = []
    decoder = state.get(_DECODER_WEIGHT)
    embeddings = state.get("embeddings.word_embeddings.weight")
    if decoder is not None and embeddings is not None and not torch.equal(decoder, embeddings):
        notes.append(
            f"{_DECODER_WEIGHT} differs from the word embeddings; selfsup ties them and uses "
            "the embeddings"
        )
    bias = state.get("cls.predictions.bias")
    decoder_bias = state.get(_DECODER_BIAS)
    if decoder_bias is not None and bias is not None and not torch.equal(decoder_bias, bias):
        notes.append(f"{_DECODER_BIAS} differs from cls.predictions.bias; the latter is used")
    return notes


def _labels_from(hf_config: Mapping[str, Any]) -> dict[int, str] | None:
    id2label = hf_config.get("id2label")
    if not isinstance(id2label, dict):
        return None
    try:
        return {int(i): str(label) for i, label in id2label.items()}
    except ValueError:
        raise UserError("config.json: id2label keys must be integers") from None


def _head_sizes(heads: tuple[str, ...], state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Output size of each head present; classifier heads take theirs from the checkpoint."""
    sizes = {}
    for head in heads:
        weight = state.get(HEAD_NAMES[head][0][1])
        if weight is not None:
            sizes[head] = int(weight.shape[0]) if weight.ndim == 2 else 0
    return sizes


def split_hf_state(
    state: Mapping[str, torch.Tensor],
    cfg: TransformerConfig,
    heads: tuple[str, ...],
    source: Path,
) -> tuple[Tensors, dict[str, Tensors], LoadReport]:
    """Hugging Face tensors (keys normalised) -> selfsup encoder state, head states, report."""
    report = LoadReport()
    _check_shapes(state, _expected_shapes(cfg, _head_sizes(heads, state)), source)
    encoder, absent = encoder_from_hf(state, cfg.num_layers)
    pooler = {theirs for _, theirs in _POOLER_NAMES}
    fatal = [k for k in absent if k not in pooler]
    if fatal:
        more = f" and {len(fatal) - 3} more" if len(fatal) > 3 else ""
        raise UserError(f"{source}: encoder weights missing: {', '.join(fatal[:3])}{more}")
    if absent:
        report.missing.append("pooler")
        report.notes.append("the checkpoint has no pooler weights: the pooler starts from scratch")
    used = {theirs for _, theirs in encoder_name_pairs(cfg.num_layers)}
    used |= {
        n for i in range(cfg.num_layers) for p in ("weight", "bias") for n in _qkv_names(i, p)[1]
    }
    head_states = {}
    for head in heads:
        try:
            found = head_from_hf(state, head)
        except UserError as error:
            raise UserError(f"{source}: {error}") from None
        if found is None:
            report.missing_heads.append(head)
            report.notes.append(f"config.json's architectures name a {head} head; no weights")
        else:
            head_states[head] = found
            used |= {theirs for _, theirs in HEAD_NAMES[head]}
    if "mlm" in head_states:  # the decoder's tied copies are checked, not loaded
        report.notes += _tied_decoder_notes(state)
        used |= {_DECODER_WEIGHT, _DECODER_BIAS}
    report.unexpected = sorted(k for k in state if k not in used and k not in _BUFFERS)
    return encoder, head_states, report


def _with_decoder_bias(state: Tensors) -> Tensors:
    """Older checkpoints may keep the MLM output bias only as the decoder's bias."""
    if "cls.predictions.bias" not in state and _DECODER_BIAS in state:
        return state | {"cls.predictions.bias": state[_DECODER_BIAS]}
    return state


def _read_tokenizer(directory: Path):
    if (directory / "tokenizer.json").is_file() or (directory / "vocab.txt").is_file():
        return Tokenizer.load(directory)  # do_lower_case from tokenizer_config.json for vocab.txt
    return None


def load_hf_bert(directory: str | Path) -> HFCheckpoint:
    """Read a Hugging Face BERT folder into selfsup's names and config."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: no such folder")
    hf_config = read_hf_config(directory)
    cfg = config_from_hf(hf_config, str(directory / "config.json"))
    raw, source = read_hf_weights(directory)
    state = _with_decoder_bias({normalise_hf_key(k): v for k, v in raw.items()})
    heads, notes = _heads_to_read(hf_config, state)
    encoder, head_states, report = split_hf_state(state, cfg, heads, source)
    report.notes = notes + report.notes
    id2label = _labels_from(hf_config)
    num_labels = None
    for head in ("classification", "tagging"):
        if head in head_states:
            num_labels = int(head_states[head]["classifier.weight"].shape[0])
            if id2label is not None and len(id2label) != num_labels:
                raise UserError(
                    f"{directory / 'config.json'}: id2label has {len(id2label)} labels but "
                    f"classifier.weight has {num_labels} rows"
                )
    tokenizer = _read_tokenizer(directory)
    if tokenizer is None:
        report.notes.append("no tokenizer.json or vocab.txt: tokenizer not loaded")
    return HFCheckpoint(
        config=cfg,
        hf_config=hf_config,
        architectures=list(hf_config.get("architectures") or []),
        tokenizer=tokenizer,
        encoder_state=encoder,
        head_states=head_states,
        num_labels=num_labels,
        id2label=id2label,
        report=report,
    )
