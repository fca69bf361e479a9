"""GPT decoder (Radford et al. 2018, 2019): token + position embeddings, causal blocks, final norm.

Shape legend: B batch, T new tokens, P tokens already in the key-value cache, C width.

The decoder returns hidden states and knows nothing of objectives: the next-token head (tied to
the token embeddings) lives in `selfsup.objectives.clm`. Blocks are the encoder's
(`models/transformer.py`) with `is_causal=True`, so attention goes through
`scaled_dot_product_attention` with its causal kernel. `CausalDecoder` takes vectors rather than
token ids, so the in-context regression experiment (`experiments/icl_linear.py`, Garg et al.
2022) reads real-valued inputs into the very same stack.

Deviations from GPT-2: BERT's exact GELU and LayerNorm epsilon come from the shared config, and the
block's layer-norm placement follows `norm_position` (the GPT presets choose "pre", as GPT-2 does).
GPT-2's scaled initialisation is kept: "We scale the weights of residual layers at initialization
by a factor of 1/sqrt(N) where N is the number of residual layers."
"""

from __future__ import annotations

import math

import torch
from torch import nn

from selfsup.errors import UserError
from selfsup.models.transformer import Block, KVCache, TransformerConfig, init_weights


def new_caches(cfg: TransformerConfig, preallocate: bool = False) -> list[KVCache]:
    """One empty key-value cache per layer (`preallocate`: buffers of the model's whole window,
    written in place, for generation)."""
    return [KVCache(cfg.max_position if preallocate else 0) for _ in range(cfg.num_layers)]


class CausalDecoder(nn.Module):
    """Vectors (B, T, C) -> hidden states (B, T, C): learned positions, causal blocks, final norm.

    With `kv_caches`, the T inputs continue the P tokens already cached: they get positions
    P .. P+T-1, attend to the cached keys, and append their own keys and values.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.positions = (  # rotary positions are applied inside attention: no table
            nn.Embedding(cfg.max_position, cfg.hidden_size)
            if cfg.position_encoding == "learned"
            else None
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.final_norm = (
            nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
            if cfg.norm_position == "pre"
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, kv_caches: list[KVCache] | None = None) -> torch.Tensor:
        past = kv_caches[0].length if kv_caches else 0
        T = x.shape[1]
        if past + T > self.config.max_position:
            raise UserError(
                f"sequence of {past + T} tokens is longer than the model reads "
                f"(model.max_position={self.config.max_position})"
            )
        if self.positions is not None:
            x = x + self.positions(torch.arange(past, past + T, device=x.device))[None]
        x = self.dropout(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, is_causal=True, kv_cache=kv_caches[i] if kv_caches else None)
        return self.final_norm(x)  # (B, T, C)


def scale_residual_init(decoder: CausalDecoder, std: float) -> None:
    """GPT-2: the projections that write into the residual stream start at std / sqrt(2 L)."""
    scaled = std / math.sqrt(2 * len(decoder.layers))
    for layer in decoder.layers:
        for linear in (layer.attention.out, layer.feed_forward.down):
            nn.init.normal_(linear.weight, mean=0.0, std=scaled)


class GPTModel(nn.Module):
    """The decoder: input ids (B, T) -> hidden states (B, T, C)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.decoder = CausalDecoder(cfg)
        init_weights(self, cfg.initializer_range)
        scale_residual_init(self.decoder, cfg.initializer_range)

    def forward(
        self, input_ids: torch.Tensor, kv_caches: list[KVCache] | None = None
    ) -> torch.Tensor:
        return self.decoder(self.tokens(input_ids), kv_caches)  # (B, T) -> (B, T, C)

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.tokens
