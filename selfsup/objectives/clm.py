"""Causal language modelling (GPT): predict every next token from the tokens before it.

Shape legend: B batch, T tokens, C width, V vocabulary.

Radford et al. 2018, section 3.1: "we use a standard language modeling objective to maximize the
following likelihood: L1(U) = sum_i log P(u_i | u_{i-k}, ..., u_{i-1})". Every position of a
window carries a loss term (labels are the inputs shifted by one, made by the data pipeline in
`selfsup/data/clm.py`); positions labelled -100 (padding of the last held-out window) carry none.

The head projects onto the vocabulary with the token embedding matrix (tied, as GPT-2 does) plus a
per-token bias that starts at zero (the unigram log-frequencies are learnt there first).
`GPT_OBJECTIVES` is the registry of GPT objectives, as `OBJECTIVES` is BERT's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.batch import IGNORE_INDEX, count_labelled
from selfsup.models.gpt import GPTModel
from selfsup.models.transformer import KVCache, TransformerConfig
from selfsup.objectives.base import LossTerm, StepOutput


class CausalLMHead(nn.Module):
    """Hidden states (..., C) -> next-token logits (..., V), the weight tied to the embeddings."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden_states: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """The tied weight is passed in, not stored: safetensors refuses shared tensors."""
        return F.linear(hidden_states, word_embeddings, self.bias)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> LossTerm:
    """Summed cross entropy over labelled positions; logits (B, T, V), labels (B, T)."""
    where = labels != IGNORE_INDEX
    logits, targets = logits[where], labels[where]  # (N, V), (N,)
    loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
    return LossTerm(loss_sum, int(targets.numel()), (logits.argmax(-1) == targets).sum())


class CausalLM(nn.Module):
    """Next-token prediction (labels in batch["labels"])."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.head = CausalLMHead(cfg.vocab_size)

    def item_count(self, batch: dict) -> int:
        return count_labelled(batch["labels"])

    def forward(self, decoder: GPTModel, hidden: torch.Tensor, batch: dict) -> LossTerm:
        return causal_lm_loss(self.head(hidden, decoder.word_embeddings.weight), batch["labels"])


GPT_OBJECTIVES: dict[str, type[nn.Module]] = {"clm": CausalLM}


class GPTPretrainer(nn.Module):
    """Decoder + next-token head; batch -> StepOutput, and ids -> logits for generation."""

    def __init__(self, cfg: TransformerConfig, objectives: list[str]) -> None:
        super().__init__()
        self.decoder = GPTModel(cfg)
        self.objectives = nn.ModuleDict({n: GPT_OBJECTIVES[n](cfg) for n in objectives})

    def item_counts(self, batch: dict) -> dict[str, int]:
        return {n: obj.item_count(batch) for n, obj in self.objectives.items()}

    def forward(self, batch: dict) -> StepOutput:
        hidden = self.decoder(batch["input_ids"])
        return StepOutput(
            {n: obj(self.decoder, hidden, batch) for n, obj in self.objectives.items()}
        )

    def logits(
        self, input_ids: torch.Tensor, kv_caches: list[KVCache] | None = None, last_only=False
    ) -> torch.Tensor:
        """(B, T) ids, continuing what `kv_caches` hold -> (B, T, V) next-token logits, or
        (B, 1, V) for the last position alone (`last_only`: generation reads a prompt for its
        next token only, and the T x V projection of the others would cost more than the rest
        of the step with a large vocabulary)."""
        head = self.objectives["clm"].head
        hidden = self.decoder(input_ids, kv_caches)
        return head(hidden[:, -1:] if last_only else hidden, self.decoder.word_embeddings.weight)
