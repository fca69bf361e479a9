"""The sizes of every transformer of selfsup (`TransformerConfig`: BERT, GPT and the speech encoder),
torch-free so that building a command's flags imports no torch; the blocks themselves are
selfsup/models/transformer.py, which re-exports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from selfsup.config import option
from selfsup.errors import UserError


@dataclass
class TransformerConfig:
    """Sizes of a transformer; shared by BERT and GPT. Defaults are the tiny test size."""

    vocab_size: int = option(99, "vocabulary size (set from the tokenizer when a run is built)")
    hidden_size: int = option(32, "width C of every token vector")
    num_layers: int = option(2, "number of transformer blocks")
    num_heads: int = option(4, "attention heads per block (hidden_size must divide by it)")
    intermediate_size: int = option(0, "width of the feed-forward layer; 0 means 4 * hidden_size")
    max_position: int = option(128, "the longest sequence (size of the learned position table)")
    position_encoding: Literal["learned", "rotary"] = option(
        "learned",
        "learned: a table of absolute position vectors (BERT, GPT-2); rotary: queries and keys "
        "rotated by their position (RoFormer), so attention sees relative offsets from the start",
    )
    type_vocab_size: int = option(2, "number of segment ids (2: sentence A and B)")
    dropout: float = option(0.1, "dropout on embeddings, attention output and feed-forward")
    attention_dropout: float = option(0.1, "dropout on attention probabilities")
    norm_position: Literal["post", "pre"] = option(
        "post", "layer norm after each residual (BERT) or before each sublayer (GPT-2, stabler)"
    )
    layer_norm_eps: float = option(1e-12, "epsilon of every LayerNorm (BERT uses 1e-12)")
    initializer_range: float = option(0.02, "std of the normal init of weights (BERT: 0.02)")

    @property
    def ffn_size(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size

    def validate(self) -> None:
        """Sizes positive, probabilities in [0, 1) (NaN fails too), heads dividing the width."""
        sizes = ("vocab_size", "hidden_size", "num_layers", "num_heads", "max_position")
        for name in (*sizes, "type_vocab_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.position_encoding == "rotary" and (self.hidden_size // self.num_heads) % 2:
            raise UserError(
                "model.position_encoding=rotary needs an even head width "
                f"(hidden_size / num_heads = {self.hidden_size // self.num_heads})"
            )
        if self.intermediate_size < 0:
            raise UserError(
                f"model.intermediate_size must be >= 0 (0: 4 * hidden_size), "
                f"got {self.intermediate_size}"
            )
        if self.hidden_size % self.num_heads:
            raise UserError(
                f"model.hidden_size={self.hidden_size} must be divisible by "
                f"model.num_heads={self.num_heads}"
            )
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.layer_norm_eps < 1.0:
            raise UserError(f"model.layer_norm_eps must be in (0, 1), got {self.layer_norm_eps}")
        if not 0.0 <= self.initializer_range < float("inf"):
            raise UserError(
                f"model.initializer_range must be a finite number >= 0, "
                f"got {self.initializer_range}"
            )
