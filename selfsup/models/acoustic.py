"""Acoustic encoder for speech self-supervised learning: log-mel frames in, hidden states out.

Shape legend: B batch, T frames, F features per frame (mel channels), C width, L layers.

One encoder serves both speech objectives of `selfsup.objectives.acoustic`: bidirectional for
TERA / Mockingjay masked acoustic modelling (Liu et al. 2020, 2021) and causal for autoregressive
predictive coding (APC; Chung et al. 2019, and its Transformer form in Chung & Glass 2020). It is
the text encoders' stack (`models/transformer.py`: the same `Block`, attention through
`scaled_dot_product_attention`, learned or rotary positions as `TransformerConfig` says); only the
input differs. Frames are real vectors, not ids, so the token embedding is replaced by TERA's
input representation (s3prl's `TransformerInputRepresentations`): a linear projection of each
frame to the width, plus a position encoding, then LayerNorm and dropout. TERA adds fixed
sinusoids; here positions are the text encoders' options (a learned table as in BERT/GPT, or
rotary inside attention), so one `TransformerConfig` describes every encoder of the project.

The encoder knows nothing of objectives (no prediction head here) and returns every layer's
hidden states on request: SUPERB (Yang et al. 2021) probes a frozen encoder through a
softmax-weighted sum of the hidden states of all its layers, the weights learned with the probe
(`WeightedLayerSum`), or through one chosen layer.

`TransformerConfig.vocab_size` and `type_vocab_size` are unused here (frames have no vocabulary).
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.errors import UserError
from selfsup.models.transformer import Block, TransformerConfig, init_weights


def _is_right_padded(attention_mask: torch.Tensor) -> bool:
    """True when every row is some real frames followed only by padding (1...1 0...0)."""
    return bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())


class AcousticEncoder(nn.Module):
    """Frames (B, T, F) -> hidden states (B, T, C).

    `causal=True` lets frame t attend to frames <= t only (APC: the output at t must not see the
    future frames it is asked to predict). A causal encoder needs its padding at the end of each
    row (1...1 0...0), which is how padded batches are built: real frames then never attend to
    padding, so no padding mask is needed and the fused causal kernel runs. A bidirectional
    encoder masks padding keys as BERT does.

    `input_dropout` is the dropout after the input representation; None means `cfg.dropout`
    (TERA uses one dropout rate, 0.1 in Mockingjay and 0.3 in TERA's s3prl configs, everywhere).
    """

    def __init__(
        self,
        cfg: TransformerConfig,
        num_features: int,
        causal: bool = False,
        input_dropout: float | None = None,
    ) -> None:
        super().__init__()
        cfg.validate()
        if num_features <= 0:
            raise UserError(f"the acoustic encoder needs num_features > 0, got {num_features}")
        dropout = cfg.dropout if input_dropout is None else input_dropout
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"input_dropout must be in [0, 1), got {dropout}")
        self.config = cfg
        self.num_features = num_features
        self.causal = causal
        self.input_projection = nn.Linear(num_features, cfg.hidden_size)
        self.positions = (  # rotary positions are applied inside attention: no table
            nn.Embedding(cfg.max_position, cfg.hidden_size)
            if cfg.position_encoding == "learned"
            else None
        )
        self.input_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.input_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        # pre-LN blocks leave the residual stream un-normalised: one LayerNorm at the end;
        # post-LN blocks already end in one (as BertModel and CausalDecoder do)
        self.final_norm = (
            nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
            if cfg.norm_position == "pre"
            else nn.Identity()
        )
        init_weights(self, cfg.initializer_range)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def _input(self, features: torch.Tensor) -> torch.Tensor:
        B, T, F = features.shape
        if F != self.num_features:
            raise ValueError(f"expected {self.num_features} features per frame, got {F}")
        if T > self.config.max_position:
            raise UserError(
                f"sequence of {T} frames is longer than the model reads "
                f"(model.max_position={self.config.max_position}); cut utterances into chunks"
            )
        x = self.input_projection(features)  # (B, T, F) -> (B, T, C)
        if self.positions is not None:
            x = x + self.positions(torch.arange(T, device=features.device))[None]
        return self.input_dropout(self.input_norm(x))

    def _attention_mask(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        if attention_mask is None or bool(attention_mask.all()):
            return None
        if self.causal:
            if not _is_right_padded(attention_mask):
                raise ValueError("a causal acoustic encoder needs padding at the end of each row")
            return None  # causal attention never reaches trailing padding from a real frame
        return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): True = may attend

    def _run(
        self, features: torch.Tensor, attention_mask: torch.Tensor | None, keep_all: bool
    ) -> list[torch.Tensor]:
        mask = self._attention_mask(attention_mask)
        x = self._input(features)
        outputs = [x] if keep_all else []
        for layer in self.layers:
            x = layer(x, mask, is_causal=self.causal)
            if keep_all:
                outputs.append(x)
        x = self.final_norm(x)
        if keep_all:
            outputs[-1] = x
            return outputs
        return [x]

    def forward(
        self, features: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """features (B, T, F), attention_mask (B, T) 1 on real frames -> hidden (B, T, C).

        Outputs at padded frames are computed but meaningless; objectives and probes skip them.
        """
        return self._run(features, attention_mask, keep_all=False)[0]

    def layer_outputs(
        self, features: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Every layer's hidden states: L + 1 tensors (B, T, C), the input representation first
        and the encoder's output (`forward`, final norm included) last, as SUPERB's upstreams
        give them."""
        return self._run(features, attention_mask, keep_all=True)


class WeightedLayerSum(nn.Module):
    """SUPERB's featurizer: softmax(w)-weighted sum of the L + 1 layer outputs, w learned and
    starting equal (all zeros), so a frozen encoder's probe chooses its own layer mix."""

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_outputs))

    def forward(self, layer_outputs: list[torch.Tensor]) -> torch.Tensor:
        if len(layer_outputs) != len(self.weights):
            raise ValueError(
                f"expected {len(self.weights)} layer outputs, got {len(layer_outputs)}"
            )
        stacked = torch.stack(layer_outputs)  # (L + 1, B, T, C)
        weights = self.weights.softmax(0).to(stacked.dtype)
        return torch.einsum("l,lbtc->btc", weights, stacked)  # (B, T, C)
