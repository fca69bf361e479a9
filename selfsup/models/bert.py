"""BERT encoder (Devlin et al. 2019): embeddings, a stack of bidirectional blocks, a [CLS] pooler.

Shape legend: B batch, T tokens, C width.

The encoder returns hidden states and knows nothing of objectives or tasks: masked-LM, next
sentence / sentence order prediction and every fine-tuning head live in `selfsup.objectives` and
`selfsup.tasks` and read these hidden states. The pooler (dense + tanh on the [CLS] vector) is part
of the encoder because BERT's pretrained checkpoints keep it there and every sentence-level head
reads it.
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.errors import UserError
from selfsup.models.transformer import Block, TransformerConfig, init_weights


class BertEmbeddings(nn.Module):
    """token + position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        # rotary positions are applied inside attention: no table
        self.max_position = cfg.max_position
        self.positions = (
            nn.Embedding(cfg.max_position, cfg.hidden_size)
            if cfg.position_encoding == "learned"
            else None
        )
        self.segments = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        T = input_ids.shape[1]
        if T > self.max_position:
            raise UserError(
                f"sequence of {T} tokens is longer than the model reads "
                f"(model.max_position={self.max_position})"
            )
        x = self.tokens(input_ids)
        if self.positions is not None:
            x = x + self.positions(torch.arange(T, device=input_ids.device))[None]
        if token_type_ids is not None:
            x = x + self.segments(token_type_ids)
        else:
            x = x + self.segments.weight[0]
        return self.dropout(self.norm(x))  # (B, T, C)


class BertModel(nn.Module):
    """The encoder: input ids (B, T) -> hidden states (B, T, C)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        # pre-LN blocks leave the residual stream un-normalised: one LayerNorm at the end
        self.final_norm = (
            nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
            if cfg.norm_position == "pre"
            else nn.Identity()
        )
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        init_weights(self, cfg.initializer_range)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """attention_mask (B, T): 1 for real tokens, 0 for padding (keys to ignore)."""
        x = self.embeddings(input_ids, token_type_ids)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): True = may attend
        for layer in self.layers:
            x = layer(x, mask)
        # in the pooler's dtype: float32 when the blocks alone run in bfloat16 (inference/precision)
        return self.final_norm(x.to(self.pooler.weight.dtype))  # (B, T, C)

    def pool(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The [CLS] summary used by sentence-level heads: tanh(W h_[CLS] + b), (B, C)."""
        return torch.tanh(self.pooler(hidden_states[:, 0]))

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.embeddings.tokens
