"""Using a pretrained run: load it (BERT or GPT), and fill in [MASK] tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from selfsup.errors import UserError


@dataclass
class PretrainedRun:
    config: object  # PretrainConfig
    tokenizer: object  # selfsup.data.tokenizer.Tokenizer
    model: torch.nn.Module  # BertPretrainer or GPTPretrainer, in eval mode


def load_pretrained(run_dir: str | Path, device: str = "cpu") -> PretrainedRun:
    """Load config, tokenizer and the final weights (or the latest checkpoint's) of a run."""
    from safetensors.torch import load_file

    from selfsup.checkpoint import latest_checkpoint
    from selfsup.data.tokenizer import Tokenizer
    from selfsup.pretrain import build_model, load_pretrain_config, read_run_marker

    run_dir = Path(run_dir)
    marker = read_run_marker(run_dir)
    kind, arch = marker.get("kind"), marker.get("arch")
    if kind != "pretraining":
        raise UserError(f"{run_dir}: a {kind} run; fill-mask needs a run from selfsup pretrain")
    if arch in ("simclr", "byol"):
        raise UserError(
            f"{run_dir}: an image run ({arch}); this command needs a text run "
            "(selfsup pretrain --arch bert|gpt); image runs are judged with selfsup probe"
        )
    cfg = load_pretrain_config(run_dir / "config.json")
    weights = run_dir / "model.safetensors"
    if not weights.exists():
        ckpt = latest_checkpoint(run_dir / "checkpoints")
        if ckpt is None:
            raise UserError(f"{run_dir}: no model.safetensors and no checkpoint yet")
        weights = ckpt / "model.safetensors"
    model = build_model(cfg)
    model.load_state_dict(load_file(weights))
    return PretrainedRun(cfg, Tokenizer.load(run_dir / "tokenizer"), model.to(device).eval())


@dataclass
class MaskPrediction:
    position: int  # character offset of the [MASK] in the text
    candidates: list[tuple[str, float]]  # (token, probability), most likely first


@torch.no_grad()
def fill_mask(run: PretrainedRun, text: str, top_k: int = 5) -> list[MaskPrediction]:
    """Top-k tokens with probabilities for every [MASK] in `text`."""
    from selfsup.objectives.bert_pretraining import MaskedLM

    mlm = run.model.objectives["mlm"] if "mlm" in run.model.objectives else None
    if not isinstance(mlm, MaskedLM):
        raise UserError("this run was not pretrained with mlm: it has no head to fill [MASK] with")
    tok = run.tokenizer
    enc = tok.encode(text)
    ids = [tok.cls_id, *enc.ids, tok.sep_id]
    max_len = run.model.encoder.config.max_position
    if len(ids) > max_len:
        raise UserError(f"text is {len(ids)} tokens long; this model reads at most {max_len}")
    where = [i + 1 for i, t in enumerate(enc.ids) if t == tok.mask_id]
    if not where:
        raise UserError("the text has no [MASK] token to fill")
    device = next(run.model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    hidden = run.model.encoder(input_ids)  # (1, T, C)
    logits = mlm.head(hidden[0, where], run.model.encoder.word_embeddings.weight)  # (M, V)
    logits[:, sorted(tok.special_ids)] = float("-inf")  # a special token is never an answer
    probs = logits.float().softmax(-1)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [
        MaskPrediction(
            enc.offsets[pos - 1][0],
            [(tok.id_to_token(int(i)), float(p)) for p, i in zip(top.values[m], top.indices[m])],
        )
        for m, pos in enumerate(where)
    ]
