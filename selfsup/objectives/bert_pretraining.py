"""BERT pretraining: one encoder, any combination of the MLM, NSP and SOP objectives.

Each objective is a small module holding its head and computing its loss from the encoder's
hidden states; `OBJECTIVES` is the one registry of them. `BertPretrainer` runs the encoder once per
batch and asks every enabled objective for its loss term.
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.batch import count_labelled
from selfsup.errors import UserError
from selfsup.models.bert import BertModel
from selfsup.models.transformer import TransformerConfig, init_weights
from selfsup.objectives.base import LossTerm, StepOutput
from selfsup.objectives.mlm import MaskedLMHead, masked_lm_loss
from selfsup.objectives.sentence_pairs import SentencePairHead, pair_loss


class MaskedLM(nn.Module):
    """Predict the hidden tokens (labels in batch["mlm_labels"])."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.head = MaskedLMHead(cfg.hidden_size, cfg.vocab_size, cfg.layer_norm_eps)

    def item_count(self, batch: dict) -> int:
        return count_labelled(batch["mlm_labels"])

    def forward(self, encoder: BertModel, hidden: torch.Tensor, batch: dict) -> LossTerm:
        r = masked_lm_loss(self.head, hidden, encoder.word_embeddings.weight, batch["mlm_labels"])
        return LossTerm(r.loss_sum, r.num_masked, r.num_correct, r.num_top5)


class _PairObjective(nn.Module):
    label_key = ""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.head = SentencePairHead(cfg.hidden_size)

    def item_count(self, batch: dict) -> int:
        return count_labelled(batch[self.label_key])

    def forward(self, encoder: BertModel, hidden: torch.Tensor, batch: dict) -> LossTerm:
        loss_sum, count, correct = pair_loss(self.head(encoder.pool(hidden)), batch[self.label_key])
        return LossTerm(loss_sum, count, correct)


class NextSentence(_PairObjective):
    """Does B follow A? (labels in batch["nsp_labels"])"""

    label_key = "nsp_labels"


class SentenceOrder(_PairObjective):
    """Are A and B in their original order? (labels in batch["sop_labels"])"""

    label_key = "sop_labels"


OBJECTIVES: dict[str, type[nn.Module]] = {
    "mlm": MaskedLM,
    "nsp": NextSentence,
    "sop": SentenceOrder,
}


def check_objectives(
    names: list[str], registry: dict[str, type[nn.Module]] = OBJECTIVES, arch: str = "bert"
) -> list[str]:
    """The names without repeats, or a UserError naming the unknown ones and the choices."""
    unknown = [n for n in names if n not in registry]
    if unknown or not names:
        example = " (e.g. mlm,sop)" if arch == "bert" else ""
        raise UserError(
            f"objectives: unknown {', '.join(unknown) or '(none given)'} for arch {arch}; "
            f"choose any of {', '.join(registry)}{example}"
        )
    return list(dict.fromkeys(names))


class BertPretrainer(nn.Module):
    """Encoder + the heads of the enabled objectives; batch -> StepOutput."""

    def __init__(self, cfg: TransformerConfig, objectives: list[str]) -> None:
        super().__init__()
        self.encoder = BertModel(cfg)
        self.objectives = nn.ModuleDict(
            {n: OBJECTIVES[n](cfg) for n in check_objectives(objectives)}
        )
        init_weights(self.objectives, cfg.initializer_range)
        for objective in self.objectives.values():  # BERT starts the MLM output bias at zero
            if isinstance(objective, MaskedLM):
                nn.init.zeros_(objective.head.bias)

    def item_counts(self, batch: dict) -> dict[str, int]:
        return {n: obj.item_count(batch) for n, obj in self.objectives.items()}

    def forward(self, batch: dict) -> StepOutput:
        hidden = self.encoder(
            batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        )
        return StepOutput(
            {n: obj(self.encoder, hidden, batch) for n, obj in self.objectives.items()}
        )
