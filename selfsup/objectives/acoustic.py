"""Speech pretraining on log-mel frames: TERA / Mockingjay masked acoustic modelling, and APC.

Shape legend: B batch, T frames, F features per frame (mel channels), C width, K channel bands,
n the APC time shift.

Two objectives, one encoder each (`selfsup.models.acoustic.AcousticEncoder`):

- **TERA / Mockingjay** (Liu et al. 2020, "Mockingjay"; Liu, Li & Lee 2021, "TERA"): corrupt the
  input frames, reconstruct the original ones with a bidirectional encoder, L1 loss on the
  corrupted positions only. Three alterations, as TERA's s3prl recipe (`logMelBase-T-F-M`)
  applies them, in this order:
  - time: spans of `span_length` (7) consecutive frames, together ~`time_mask_share` (15%) of an
    utterance's frames, as `round(0.15 * frames / 7)` spans. As in BERT's 80/10/10, altered
    frames are zeroed 80% of the time, replaced by a random segment of frames of the same
    utterance 10%, and left unchanged 10% (the model must then reconstruct frames it can see, so
    it cannot learn that only zeros need repairing). s3prl rolls that die once per utterance (all
    its spans share the choice); `alteration_unit="span"` rolls it per span instead.
  - channel (frequency): one band of consecutive mel channels, width uniform in
    0..`channel_mask_max_width`, zeroed on every frame of the utterance (SpecAugment-like).
  - magnitude: with probability `noise_share` (s3prl: 0.15), Gaussian noise of std 0.2 is added
    to the whole input. It is not a reconstruction target (s3prl does not mark it).
  The loss covers every time-altered frame and every channel-altered bin, in all three time
  cases (zeroed, random, unchanged), and nothing else; padding is never altered nor counted.
- **APC** (Chung et al. 2019, "An unsupervised autoregressive model for speech representation
  learning"; the Transformer form in Chung & Glass 2020): a causal encoder reads frames
  x_1..x_t and a linear layer predicts x_{t+n}; the loss is sum_i |x_{i+n} - y_i|_1 over the
  frames i that have a real target. No corruption: the targets are the input shifted by n.

Where the corruption happens: TERA's masking is a data transform (`tera_batch`), as BERT's masking
is (`selfsup/data/masking.py`, called by `selfsup/data/pretraining.py`): a pure function of the
frames and a `torch.Generator`, so the batch source seeds the generator from (seed, batch index)
and a resumed run redraws exactly the same corruption; the batch carries the corrupted input,
the clean targets and the reconstruction mask, and the trainer can count the loss items
(`item_counts`) before any forward pass. It lives in `selfsup/data/frames.py` beside the batch
source that calls it (the style's downhill rule: data never imports objectives); this module
re-exports its names (`FrameMaskingConfig`, `mask_frames`, `tera_batch`, ...).

Deviations, all deliberate:
- Spans never overlap (s3prl's default, `mask_allow_overlap: True`, draws span starts without
  replacement but lets spans overlap, so its masked share falls below 15%). Here an utterance of
  L frames gets exactly n = round(share * L / W) spans (capped at L // W), placed uniformly among
  the non-overlapping placements, so the masked share is n * W / L, within W / (2L) of `share`.
- The random-segment source is drawn per span (s3prl draws one set of source starts per
  utterance, which is the same distribution per span).
- The magnitude die is rolled per utterance (s3prl rolls once per batch).
- No frame stacking (TERA's `downsample_rate`): that is the audio front end's business.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.frames import (
    NO_SPAN,
    RANDOM_FRAMES,
    UNCHANGED,
    ZEROED,
    FrameMaskingConfig,
    MaskedFrames,
    mask_frames,
    place_spans,
    tera_batch,
)
from selfsup.models.acoustic import AcousticEncoder
from selfsup.models.transformer import TransformerConfig, init_weights
from selfsup.objectives.acoustic_config import AcousticObjectiveConfig
from selfsup.objectives.base import LossTerm, StepOutput
from selfsup.objectives.bert_pretraining import check_objectives

__all__ = [  # the corruption's names stay importable from here, where they were first
    "ACOUSTIC_OBJECTIVES",
    "NO_SPAN",
    "RANDOM_FRAMES",
    "UNCHANGED",
    "ZEROED",
    "AcousticObjectiveConfig",
    "AcousticPretrainer",
    "AutoregressivePredictiveCoding",
    "FrameMaskingConfig",
    "FramePredictionHead",
    "MaskedAcousticModel",
    "MaskedFrames",
    "apc_l1",
    "apc_valid",
    "mask_frames",
    "masked_l1",
    "place_spans",
    "tera_batch",
]


class FramePredictionHead(nn.Module):
    """TERA's prediction head (s3prl's TransformerSpecPredictionHead): dense, GELU, LayerNorm,
    then a projection to the F features of a frame; (B, T, C) -> (B, T, F)."""

    def __init__(self, hidden_size: int, num_features: int, layer_norm_eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.output = nn.Linear(hidden_size, num_features)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.output(self.norm(F.gelu(self.dense(hidden_states))))


def masked_l1(
    predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """(sum of |prediction - target| over the elements where mask is True, how many there are).

    predictions, targets (B, T, F); mask (B, T, F) bool. Elements outside the mask are never read
    into the sum (selected, not multiplied by zero), so whatever sits there, even inf or NaN,
    changes neither the loss nor its gradient.
    """
    difference = predictions.float()[mask] - targets.float()[mask]  # (N,)
    return difference.abs().sum(), int(mask.sum())


def apc_valid(attention_mask: torch.Tensor, shift: int) -> torch.Tensor:
    """(B, T) 0/1 -> (B, T - shift) bool: output t has a target when frames t and t + shift are
    both real."""
    real = attention_mask.bool()
    return real[:, :-shift] & real[:, shift:]


def apc_l1(
    predictions: torch.Tensor, features: torch.Tensor, attention_mask: torch.Tensor, shift: int
) -> tuple[torch.Tensor, int]:
    """APC's loss: sum over valid t and every feature of |predictions[t] - features[t + shift]|,
    and the number of elements summed. predictions, features (B, T, F)."""
    B, T, num_channels = features.shape
    if T <= shift:
        return predictions.float().sum() * 0.0, 0
    valid = apc_valid(attention_mask, shift)[..., None].expand(B, T - shift, num_channels)
    return masked_l1(predictions[:, :-shift], features[:, shift:], valid)


class MaskedAcousticModel(nn.Module):
    """TERA / Mockingjay: reconstruct the clean frames ("targets") where "reconstruction_mask"
    is True, from the encoder's reading of the corrupted "features"."""

    causal: ClassVar[bool] = False

    def __init__(
        self, cfg: TransformerConfig, num_features: int, settings: AcousticObjectiveConfig
    ) -> None:
        super().__init__()
        self.head = FramePredictionHead(cfg.hidden_size, num_features, cfg.layer_norm_eps)

    def item_count(self, batch: dict) -> int:
        return int(batch["reconstruction_mask"].sum())

    def forward(self, hidden: torch.Tensor, batch: dict) -> LossTerm:
        loss_sum, count = masked_l1(
            self.head(hidden), batch["targets"], batch["reconstruction_mask"]
        )
        return LossTerm(loss_sum, count)


class AutoregressivePredictiveCoding(nn.Module):
    """APC: from the causal encoder's output at t, predict input frame t + time_shift with a
    linear layer (APC's postnet)."""

    causal: ClassVar[bool] = True

    def __init__(
        self, cfg: TransformerConfig, num_features: int, settings: AcousticObjectiveConfig
    ) -> None:
        super().__init__()
        settings.validate()
        self.time_shift = settings.time_shift
        self.head = nn.Linear(cfg.hidden_size, num_features)

    def item_count(self, batch: dict) -> int:
        T, num_channels = batch["features"].shape[1:]
        if T <= self.time_shift:
            return 0
        return int(apc_valid(batch["attention_mask"], self.time_shift).sum()) * num_channels

    def forward(self, hidden: torch.Tensor, batch: dict) -> LossTerm:
        loss_sum, count = apc_l1(
            self.head(hidden), batch["features"], batch["attention_mask"], self.time_shift
        )
        return LossTerm(loss_sum, count)


ACOUSTIC_OBJECTIVES: dict[str, type[nn.Module]] = {
    "tera": MaskedAcousticModel,
    "apc": AutoregressivePredictiveCoding,
}


class AcousticPretrainer(nn.Module):
    """Acoustic encoder (causal for APC) + one objective; batch -> StepOutput.

    A TERA batch comes from `tera_batch`; an APC batch is just {"features", "attention_mask",
    "num_tokens"} of clean frames. The loss term is named after the objective ("tera" or "apc")
    and counts feature elements (frames x channels), so its mean is the papers' mean L1.
    """

    def __init__(
        self,
        cfg: TransformerConfig,
        num_features: int,
        objective: str,
        settings: AcousticObjectiveConfig | None = None,
    ) -> None:
        super().__init__()
        (name,) = check_objectives([objective], ACOUSTIC_OBJECTIVES, arch="acoustic")
        kind = ACOUSTIC_OBJECTIVES[name]
        settings = settings if settings is not None else AcousticObjectiveConfig()
        self.encoder = AcousticEncoder(cfg, num_features, causal=kind.causal)
        self.objectives = nn.ModuleDict({name: kind(cfg, num_features, settings)})
        init_weights(self.objectives, cfg.initializer_range)

    def item_counts(self, batch: dict) -> dict[str, int]:
        return {n: obj.item_count(batch) for n, obj in self.objectives.items()}

    def forward(self, batch: dict) -> StepOutput:
        hidden = self.encoder(batch["features"], batch.get("attention_mask"))
        return StepOutput({n: obj(hidden, batch) for n, obj in self.objectives.items()})
