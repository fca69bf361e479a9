"""How BERT's masked language modelling chooses and replaces tokens (`MaskingConfig`, the
`masking.*` keys), torch-free so that building a command's flags imports no torch; the masking
itself is selfsup/data/masking.py, which re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.config import option
from selfsup.errors import UserError


@dataclass
class MaskingConfig:
    rate: float = option(0.15, "fraction of tokens chosen for prediction (BERT: 0.15)")
    replace_with_mask: float = option(0.8, "share of chosen tokens replaced by [MASK] (BERT: 0.8)")
    replace_with_random: float = option(
        0.1, "share replaced by a random token (BERT: 0.1); the rest stay unchanged"
    )
    whole_word: bool = option(
        False, "choose whole words (corpus or jieba segmentation), not single tokens"
    )

    def validate(self) -> None:
        if not 0.0 < self.rate < 1.0:
            raise UserError(f"masking.rate must be in (0, 1), got {self.rate}")
        if self.replace_with_mask < 0 or self.replace_with_random < 0:
            raise UserError(
                "masking.replace_with_mask and masking.replace_with_random must be >= 0"
            )
        if self.replace_with_mask + self.replace_with_random > 1.0 + 1e-9:
            raise UserError(
                "masking.replace_with_mask + masking.replace_with_random must be <= 1 "
                f"(got {self.replace_with_mask} + {self.replace_with_random})"
            )
