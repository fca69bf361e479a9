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
(`item_counts`) before any forward pass. The functions up to `tera_batch` import nothing from
models or objectives: they can move verbatim to a data module (e.g. `selfsup/data/frames.py`),
which the style's downhill rule (data never imports objectives) asks for once the audio source
calls them.

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

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.config import option
from selfsup.errors import UserError
from selfsup.models.acoustic import AcousticEncoder
from selfsup.models.transformer import TransformerConfig, init_weights
from selfsup.objectives.base import LossTerm, StepOutput
from selfsup.objectives.bert_pretraining import check_objectives

# What happened to a time span (MaskedFrames.span_action at the span's first frame)
NO_SPAN, ZEROED, RANDOM_FRAMES, UNCHANGED = -1, 0, 1, 2


@dataclass
class FrameMaskingConfig:
    """TERA's input alterations. Defaults: TERA's s3prl recipe logMelBase-T-F-M (80 log-mel
    channels), which is also Mockingjay's time masking plus the channel and magnitude parts."""

    time_mask_share: float = option(
        0.15, "share of each utterance's frames to alter in time (TERA, Mockingjay: 0.15)"
    )
    span_length: int = option(7, "consecutive frames per time span (TERA, Mockingjay: 7)")
    replace_with_zero: float = option(0.8, "share of time alterations that zero the frames (0.8)")
    replace_with_random: float = option(
        0.1,
        "share that copies a random segment of the same utterance (0.1); the rest stay unchanged",
    )
    alteration_unit: Literal["utterance", "span"] = option(
        "utterance",
        "roll the zero/random/unchanged die once per utterance (s3prl's TERA) or once per span",
    )
    channel_mask_max_width: int = option(
        16, "widest band of mel channels zeroed (TERA: 20% of the channels, 16 of 80); 0: none"
    )
    channel_mask_count: int = option(1, "channel bands per utterance (TERA: 1)")
    noise_share: float = option(
        0.15, "share of utterances whose input gets Gaussian noise (TERA's magnitude alteration)"
    )
    noise_std: float = option(0.2, "std of that noise, in normalised log-mel units (TERA: 0.2)")

    def validate(self) -> None:
        """Shares in range, sizes non-negative, and something left to reconstruct."""
        if not 0.0 <= self.time_mask_share < 1.0:
            raise UserError(
                f"frame_masking.time_mask_share must be in [0, 1), got {self.time_mask_share}"
            )
        if self.span_length < 1:
            raise UserError(f"frame_masking.span_length must be >= 1, got {self.span_length}")
        if not (self.replace_with_zero >= 0 and self.replace_with_random >= 0):
            raise UserError(
                "frame_masking.replace_with_zero and frame_masking.replace_with_random must be >= 0"
            )
        if self.replace_with_zero + self.replace_with_random > 1.0 + 1e-9:
            raise UserError(
                "frame_masking.replace_with_zero + frame_masking.replace_with_random must be "
                f"<= 1 (got {self.replace_with_zero} + {self.replace_with_random})"
            )
        for name in ("channel_mask_max_width", "channel_mask_count"):
            if getattr(self, name) < 0:
                raise UserError(f"frame_masking.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.noise_share <= 1.0:
            raise UserError(f"frame_masking.noise_share must be in [0, 1], got {self.noise_share}")
        if not 0.0 <= self.noise_std < float("inf"):
            raise UserError(
                f"frame_masking.noise_std must be finite and >= 0, got {self.noise_std}"
            )
        channels = self.channel_mask_max_width > 0 and self.channel_mask_count > 0
        if self.time_mask_share == 0 and not channels:
            raise UserError(
                "frame_masking: nothing to reconstruct; set time_mask_share > 0 or a channel band"
            )


@dataclass
class MaskedFrames:
    """What `mask_frames` did to a batch."""

    features: torch.Tensor  # (B, T, F) the corrupted input
    reconstruction_mask: torch.Tensor  # (B, T, F) bool: the elements the loss covers
    time_mask: torch.Tensor  # (B, T) bool: frames inside a time span
    channel_mask: torch.Tensor  # (B, F) bool: channels zeroed on every real frame of the row
    span_action: torch.Tensor  # (B, T) long: ZEROED/RANDOM_FRAMES/UNCHANGED at each span's
    # first frame, NO_SPAN elsewhere


def _check_right_padded(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 0/1 -> (B,) lengths, or a ValueError when a row is not real frames then padding."""
    real = attention_mask.bool()
    if bool((real[:, 1:] & ~real[:, :-1]).any()):
        raise ValueError("frame masking needs each row's padding at its end (1...1 0...0)")
    return real.sum(1)


def place_spans(
    lengths: torch.Tensor, T: int, share: float, span_length: int, scores: torch.Tensor
) -> torch.Tensor:
    """(B, T) bool span starts: n = round(share * L / W) non-overlapping spans of W frames inside
    each row's first L frames, uniform over all such placements.

    Placing n blocks of W frames without overlap in L frames is choosing n of the
    m = L - n (W - 1) "slots" (each block shrunk to one slot): the k-th chosen slot s_k (k = 0..
    n-1, in order) starts its block at s_k + k (W - 1). The n slots are the n lowest of the
    uniform `scores` (B, T) over the m valid slots, so every placement is equally likely.
    """
    W = span_length
    n = torch.floor(lengths.double() * share / W + 0.5).long()  # round half up
    n = torch.minimum(n, lengths // W)  # (B,)
    slots = lengths - n * (W - 1)  # (B,) >= n
    position = torch.arange(T, device=lengths.device)
    scores = torch.where(position[None] < slots[:, None], scores, torch.full_like(scores, 2.0))
    rank = scores.argsort(1).argsort(1)  # (B, T): rank of each slot's score in its row
    chosen = rank < n[:, None]  # (B, T) chosen slots
    k = chosen.long().cumsum(1) - 1
    start = torch.where(chosen, position[None] + k * (W - 1), torch.full_like(k, T))
    starts = torch.zeros(lengths.shape[0], T + 1, dtype=torch.bool, device=lengths.device)
    return starts.scatter_(1, start, True)[:, :T]  # column T collected the unchosen slots


def _covered(starts: torch.Tensor, span_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames inside a span (B, T) bool, and each frame's latest span start at or before it
    (B, T) long, -1 where none (for a covered frame that is its own span, spans not overlapping).
    """
    T = starts.shape[1]
    opened = starts.long().cumsum(1)
    opened_before = F.pad(opened, (span_length, 0))[:, :T]  # spans started before t - W + 1
    position = torch.arange(T, device=starts.device).expand_as(opened)
    owner = torch.where(starts, position, torch.full_like(position, -1)).cummax(1).values
    return opened - opened_before > 0, owner


def _channel_bands(
    width_draw: torch.Tensor, start_draw: torch.Tensor, num_channels: int, max_width: int
) -> torch.Tensor:
    """(B, K) uniform draws -> (B, F) bool: K bands, width uniform in 0..max_width, start
    uniform over the positions where the band fits."""
    max_width = min(max_width, num_channels)
    width = (width_draw * (max_width + 1)).long().clamp(max=max_width)  # (B, K)
    start = (start_draw * (num_channels - width + 1)).long().clamp(max=num_channels - width)
    channel = torch.arange(num_channels, device=width.device)
    inside = (channel >= start[..., None]) & (channel < (start + width)[..., None])  # (B, K, F)
    return inside.any(1)


def mask_frames(
    features: torch.Tensor,
    attention_mask: torch.Tensor,
    cfg: FrameMaskingConfig,
    generator: torch.Generator,
) -> MaskedFrames:
    """Corrupt a batch of frames for TERA; a pure function of its inputs and the generator.

    features (B, T, F) float; attention_mask (B, T) 1 on real frames, padding at the row ends.
    The generator draws the same tensors in the same order whatever the content, so (seed, batch
    index) fixes the corruption. The generator lives on the CPU: pass CPU tensors (the data side
    builds batches there).
    """
    B, T, num_channels = features.shape
    W = cfg.span_length
    lengths = _check_right_padded(attention_mask)
    real = attention_mask.bool()
    # every draw, in a fixed order and of fixed shapes
    slot_scores = torch.rand((B, T), generator=generator)
    action_draw = torch.rand((B, T), generator=generator)
    source_draw = torch.rand((B, T), generator=generator)
    K = cfg.channel_mask_count
    width_draw = torch.rand((B, K), generator=generator)
    start_draw = torch.rand((B, K), generator=generator)
    noisy_draw = torch.rand((B,), generator=generator)
    noise = torch.randn((B, T, num_channels), generator=generator) if cfg.noise_share > 0 else None

    # time: spans, and what happens to each
    starts = place_spans(lengths, T, cfg.time_mask_share, W, slot_scores)
    time_mask, owner = _covered(starts, W)
    if cfg.alteration_unit == "utterance":
        action_draw = action_draw[:, :1].expand(B, T)
    action = torch.full((B, T), UNCHANGED, dtype=torch.long)
    action[action_draw < cfg.replace_with_zero + cfg.replace_with_random] = RANDOM_FRAMES
    action[action_draw < cfg.replace_with_zero] = ZEROED
    span_action = torch.where(starts, action, torch.full_like(action, NO_SPAN))
    frame_owner = owner.clamp(min=0)
    frame_action = torch.where(
        time_mask, action.gather(1, frame_owner), torch.full_like(action, NO_SPAN)
    )
    # a random segment: the W frames from a uniform start in 0..L-W of the same row
    source_start = (source_draw * (lengths - W + 1).clamp(min=1)[:, None]).long()
    source_start = torch.minimum(source_start, (lengths - W).clamp(min=0)[:, None])
    position = torch.arange(T).expand(B, T)
    source = torch.where(
        frame_action == RANDOM_FRAMES,
        source_start.gather(1, frame_owner) + (position - frame_owner),
        position,
    )
    corrupted = features.gather(1, source[..., None].expand(B, T, num_channels))
    corrupted = corrupted.masked_fill((frame_action == ZEROED)[..., None], 0.0)

    # channel: bands zeroed on every real frame
    channel_mask = _channel_bands(width_draw, start_draw, num_channels, cfg.channel_mask_max_width)
    band = real[:, :, None] & channel_mask[:, None, :]  # (B, T, F)
    corrupted = corrupted.masked_fill(band, 0.0)

    # magnitude: noise on the real frames of some rows, not a target
    if noise is not None:
        noisy = (noisy_draw < cfg.noise_share)[:, None, None] & real[:, :, None]
        corrupted = corrupted + torch.where(noisy, noise * cfg.noise_std, 0.0).to(corrupted.dtype)

    reconstruction_mask = (time_mask[:, :, None] | channel_mask[:, None, :]) & real[:, :, None]
    return MaskedFrames(corrupted, reconstruction_mask, time_mask, channel_mask, span_action)


def tera_batch(
    features: torch.Tensor,
    attention_mask: torch.Tensor,
    cfg: FrameMaskingConfig,
    generator: torch.Generator,
) -> dict[str, torch.Tensor | int]:
    """The batch `AcousticPretrainer("tera")` reads, from clean padded frames.

    Keys: "features" (B, T, F) corrupted input, "targets" (B, T, F) the clean frames,
    "reconstruction_mask" (B, T, F) bool, "attention_mask" (B, T), "num_tokens" (real frames,
    for the throughput display). Seed `generator` from (seed, batch index), and from a fixed
    offset for held-out batches, so evaluation always sees the same corruption.
    """
    masked = mask_frames(features, attention_mask, cfg, generator)
    return {
        "features": masked.features,
        "targets": features,
        "reconstruction_mask": masked.reconstruction_mask,
        "attention_mask": attention_mask,
        "num_tokens": int(attention_mask.sum()),
    }


@dataclass
class AcousticObjectiveConfig:
    """Settings of the objectives themselves (the corruption is `FrameMaskingConfig`)."""

    time_shift: int = option(
        3, "APC: the output at frame t predicts frame t + time_shift (s3prl's APC recipe: 5)"
    )

    def validate(self) -> None:
        if self.time_shift < 1:
            raise UserError(f"objective.time_shift must be >= 1, got {self.time_shift}")


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
