"""Using a pretrained run: load it (BERT or GPT), and fill in [MASK] tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from selfsup.errors import UserError
from selfsup.objectives.bert_pretraining import MaskedLM
from selfsup.recipes import LoadedRun, load_run
from selfsup.runs import RunFolder

TEXT_ARCHS = ("bert", "gpt")


def load_pretrained(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """Config, tokenizer and the final weights (or the latest checkpoint's) of a text run."""
    run = RunFolder.open(run_dir)
    if run.kind != "pretraining":
        raise UserError(
            f"{run.path}: a {run.kind} run; fill-mask needs a run from selfsup pretrain"
        )
    if run.arch not in TEXT_ARCHS:
        raise UserError(
            f"{run.path}: an image run ({run.arch}); this command needs a text run "
            "(selfsup pretrain --arch bert|gpt); image runs are judged with selfsup probe"
        )
    return load_run(run, device)


@dataclass
class MaskPrediction:
    position: int  # character offset of the [MASK] in the text
    candidates: list[tuple[str, float]]  # (token, probability), most likely first


@torch.no_grad()
def fill_mask(run: LoadedRun, text: str, top_k: int = 5) -> list[MaskPrediction]:
    """Top-k tokens with probabilities for every [MASK] in `text`."""
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
