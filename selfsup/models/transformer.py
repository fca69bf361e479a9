"""Transformer blocks shared by the encoder (BERT) and the decoder (GPT).

Shape legend: B batch, T tokens, C width (hidden_size), H heads, D = C / H head width.

Attention goes through `torch.nn.functional.scaled_dot_product_attention`, which picks a fused
kernel where one exists (flash / memory-efficient on CUDA, a fused C++ kernel on CPU). The block
supports both layer-norm placements: post-LN as in the original BERT ("we apply layer
normalization after the residual", Vaswani et al. 2017; Devlin et al. 2019) and pre-LN (Xiong et
al. 2020), which trains more stably at high learning rates and is what GPT-2 uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.errors import UserError
from selfsup.models.transformer_config import TransformerConfig


def rotary_tables(
    length: int, head_width: int, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles p * base^(-2i/D), (length, D/2), for positions 0..length-1
    (computed once per layer, not at every call: recomputing them was 18% of a forward pass)."""
    inverse_frequency = base ** (-torch.arange(0, head_width, 2, dtype=torch.float64) / head_width)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inverse_frequency[None]
    return angles.cos().float(), angles.sin().float()


def rotate(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, first_position: int = 0
) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021, RoFormer): each pair of channels (i, i + D/2) of
    the vector at position p is rotated by the angle p * base^(-2i/D). The dot product of a query
    at p and a key at p' then depends on p - p' only: attention learns "the next character" once
    for every position, where a learned table must learn it position by position.

    x (B, H, T, D) -> (B, H, T, D), positions first_position .. first_position + T - 1;
    cos and sin from `rotary_tables`.
    """
    T, D = x.shape[-2], x.shape[-1]
    cos = cos[first_position : first_position + T].to(x.dtype)
    sin = sin[first_position : first_position + T].to(x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.rotary = cfg.position_encoding == "rotary"
        if self.rotary:  # buffers: they follow .to(device), and are not saved with the weights
            cos, sin = rotary_tables(cfg.max_position, cfg.hidden_size // cfg.num_heads)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.attention_dropout = cfg.attention_dropout

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        # (B, T, C) -> (B, H, T, D)
        q, k, v = (
            t.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2) for t in (q, k, v)
        )
        if self.rotary:  # new tokens continue the cached ones
            past = kv_cache.length if kv_cache is not None else 0
            if past + T > self.rotary_cos.shape[0]:
                raise UserError(
                    f"sequence of {past + T} tokens is longer than the model reads "
                    f"(model.max_position={self.rotary_cos.shape[0]})"
                )
            q = rotate(q, self.rotary_cos, self.rotary_sin, past)
            k = rotate(k, self.rotary_cos, self.rotary_sin, past)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)
            # new queries sit at the end: a causal mask offset by the cached length
            is_causal = is_causal and T > 1
            if is_causal:
                attention_mask = _offset_causal_mask(T, k.shape[2], x.device)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attention_mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
            is_causal=is_causal and attention_mask is None,
        )
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, H, T, D) -> (B, T, C)
        return self.out(y)


def _offset_causal_mask(num_new: int, num_total: int, device: torch.device) -> torch.Tensor:
    """(num_new, num_total) bool mask: new query i may see keys up to num_total - num_new + i."""
    past = num_total - num_new
    rows = torch.arange(num_new, device=device)[:, None] + past
    return torch.arange(num_total, device=device)[None, :] <= rows


class KVCache:
    """Keys and values of the tokens seen so far, for one layer: each new token then costs O(T).

    With `capacity` (generation: the model's window), the first append allocates (B, H, capacity,
    D) once and later tokens are written in place, so a token costs no copy of the whole cache;
    without it, appends concatenate (a cache that is expanded or edited by its user, as the
    in-context scorer does with a shared prefix)."""

    def __init__(self, capacity: int = 0) -> None:
        self.capacity = capacity
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self._filled = 0  # with capacity: positions of the buffers in use
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.capacity:
            self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
            self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
            return self.k, self.v
        end = self._filled + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"key-value cache of {self.capacity} positions cannot take {end}")
        if self._buffers is None:
            B, H, _, D = k.shape
            self._buffers = (
                k.new_empty(B, H, self.capacity, D),
                v.new_empty(B, H, self.capacity, D),
            )
        keys, values = self._buffers
        keys[:, :, self._filled : end] = k
        values[:, :, self._filled : end] = v
        self._filled = end
        self.k, self.v = keys[:, :, :end], values[:, :, :end]
        return self.k, self.v

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]


class FeedForward(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.hidden_size, cfg.ffn_size)
        self.down = nn.Linear(cfg.ffn_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))  # exact (erf) GELU, as BERT


class Block(nn.Module):
    """One transformer block: attention then feed-forward, each with a residual connection."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.pre_norm = cfg.norm_position == "pre"
        self.attention = SelfAttention(cfg)
        self.attention_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.feed_forward = FeedForward(cfg)
        self.feed_forward_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.dropout(
                self.attention(self.attention_norm(x), attention_mask, is_causal, kv_cache)
            )
            return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        x = self.attention_norm(
            x + self.dropout(self.attention(x, attention_mask, is_causal, kv_cache))
        )
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: normal(0, std) weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
