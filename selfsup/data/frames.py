"""Speech frames into batches: TERA's corruption of log-mel frames, utterance splits, and the
batch source of speech pretraining (`AcousticBatches`).

Shape legend: B batch, T frames, F features per frame (mel channels), K channel bands.

The corruption (`FrameMaskingConfig`, `mask_frames`, `tera_batch`) is TERA's (Liu, Li & Lee 2021;
selfsup/objectives/acoustic.py describes the three alterations, the loss and every deviation from
s3prl). It lives here, not beside the objective, because it is a data transform, as BERT's
masking is (selfsup/data/masking.py): a pure function of the frames and a `torch.Generator`, so a
batch source seeds the generator from (seed, batch index) and a resumed run redraws exactly the
same corruption. `selfsup.objectives.acoustic` re-exports these names.

The batch source (`AcousticBatches`) reads a memory-mapped `FeatureStore` (selfsup/data/audio.py):
- a row is a crop of one utterance: a random window of `max_frames` frames of a longer utterance
  (its start uniform over the possible starts), a shorter utterance whole, padded at its END
  (the causal APC encoder and `mask_frames` both need real frames first); a batch is as long as
  its longest row, so short utterances cost no padding to `max_frames`;
- training batch i is a pure function of (seed, i): epoch e = i // batches_per_epoch visits the
  utterances in a permutation seeded by (seed, e), and the crops and TERA's corruption of batch
  position p come from one generator seeded by (seed, e, p), so resuming is exact;
- `eval_batches(n)`: the utterances in store order, crops and corruption from generators seeded
  by (seed + EVAL_SEED, b), the same batches at every evaluation;
- `num_tokens` counts real frames (the progress bar shows frames per second).

Utterance splits (`split_utterances`) keep whole utterances on one side: a fixed held-out list
(FSDD's test takes 0-4) or a seeded share, and speakers left out of both sides (a speaker held out
of pretraining, to probe later on a voice the encoder never heard).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.data.audio import FeatureStore, NormStats
from selfsup.data.frames_config import FrameMaskingConfig
from selfsup.data.order import EpochOrder
from selfsup.data.views import seed_of
from selfsup.errors import UserError

# ---------------------------------------------------------------------------------------------
# TERA's corruption (moved verbatim from selfsup/objectives/acoustic.py)
# ---------------------------------------------------------------------------------------------

# What happened to a time span (MaskedFrames.span_action at the span's first frame)
NO_SPAN, ZEROED, RANDOM_FRAMES, UNCHANGED = -1, 0, 1, 2


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


# ---------------------------------------------------------------------------------------------
# Splits by utterance
# ---------------------------------------------------------------------------------------------

SPLIT_SEED = 20_260_415  # the held-out share of a folder: the same utterances for every run seed


@dataclass(frozen=True)
class UtteranceSplit:
    """Store indices (sorted) of the training and held-out utterances, and of the utterances of
    excluded speakers, which are in neither."""

    train: list[int]
    heldout: list[int]
    excluded: list[int]


def split_utterances(
    num_utterances: int,
    heldout_share: float,
    speakers: Sequence[str | None] | None = None,
    exclude_speakers: Collection[str] = (),
    heldout: Sequence[bool] | None = None,
    seed: int = SPLIT_SEED,
) -> UtteranceSplit:
    """Whole utterances to training or held-out, after removing `exclude_speakers` from both.

    `heldout` (one bool per utterance) fixes the held-out side, e.g. FSDD's test takes; without
    it a share `heldout_share` of the remaining utterances (at least one, and at least one left
    for training) is drawn by `seed`, which by default is fixed, not the run's seed: held-out
    losses of runs with different seeds are then measured on the same utterances.
    """
    if exclude_speakers and speakers is None:
        raise UserError("data.exclude_speakers needs each utterance's speaker; none is known")
    excluded_names = set(exclude_speakers)
    excluded = [
        i for i in range(num_utterances) if speakers is not None and speakers[i] in excluded_names
    ]
    dropped = set(excluded)
    pool = [i for i in range(num_utterances) if i not in dropped]
    if heldout is not None:
        held = [i for i in pool if heldout[i]]
    else:
        count = min(max(round(heldout_share * len(pool)), 1), len(pool) - 1)
        order = np.random.default_rng(seed).permutation(len(pool))
        held = sorted(pool[j] for j in order[: max(count, 0)])
    chosen = set(held)
    train = [i for i in pool if i not in chosen]
    if not train or not held:
        raise UserError(
            f"{num_utterances} utterances, {len(excluded)} of excluded speakers: {len(train)} "
            f"left for training and {len(held)} held out; expected at least one of each"
        )
    return UtteranceSplit(train, held, excluded)


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------

EVAL_SEED = 1_000_003  # held-out crops and corruption draw their own fixed randomness
ACOUSTIC_BATCH_OBJECTIVES = ("tera", "apc")


class AcousticBatches:
    """Crops of stored utterances, batched and (for TERA) corrupted; a pure function of (seed,
    batch index), so resuming is exact (module docstring: crops, order, seeds).

    `indices` are the store's utterances this source reads (a split's side). A TERA batch is
    `tera_batch`'s dict; an APC batch is {"features", "attention_mask", "num_tokens"} of clean
    frames. Both carry "utterances" (B,), the store index of each row. `stats` standardises the
    frames (features.normalize=global); None reads them as stored.
    """

    def __init__(
        self,
        store: FeatureStore,
        indices: Sequence[int],
        max_frames: int,
        batch_size: int,
        seed: int,
        objective: Literal["tera", "apc"],
        masking_cfg: FrameMaskingConfig | None = None,
        stats: NormStats | None = None,
    ) -> None:
        if objective not in ACOUSTIC_BATCH_OBJECTIVES:
            raise UserError(f"objective {objective!r}: expected one of tera, apc")
        if len(indices) == 0:
            raise UserError("no utterances to make batches of; expected at least one")
        if max_frames < 1 or batch_size < 1:
            raise UserError(f"max_frames={max_frames}, batch_size={batch_size}: expected >= 1")
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.lengths = np.asarray(store.lengths(), dtype=np.int64)[self.indices]
        self.max_frames = max_frames
        self.batch_size = min(batch_size, len(self.indices))  # a tiny split: one whole batch
        self.seed = seed
        self._order = EpochOrder(len(self.indices), self.batch_size, seed)
        self.objective = objective
        self.masking_cfg = masking_cfg if masking_cfg is not None else FrameMaskingConfig()
        self.stats = stats

    @property
    def num_features(self) -> int:
        return int(self.store.meta["n_mels"])

    @property
    def batches_per_epoch(self) -> int:
        return self._order.batches_per_epoch  # a last partial batch waits for the next epoch

    def _frames(self, utterance: int, start: int, count: int) -> torch.Tensor:
        """(count, F) float32 frames of one utterance from `start`, standardised when asked."""
        frames = self.store.utterance(utterance)[start : start + count]  # a view of the map
        if self.stats is not None:
            return self.stats.apply(frames)
        return torch.from_numpy(np.array(frames, dtype=np.float32))

    def _assemble(self, rows: np.ndarray, generator: torch.Generator) -> dict:
        """The batch of the positions `rows` of `indices`: crops, padding, corruption."""
        lengths = self.lengths[rows]
        kept = np.minimum(lengths, self.max_frames)  # (B,)
        draw = torch.rand(len(rows), generator=generator).numpy()  # (B,) crop starts
        spare = lengths - kept
        starts = np.minimum((draw * (spare + 1)).astype(np.int64), spare)
        B, T = len(rows), int(kept.max())
        features = torch.zeros(B, T, self.num_features)  # (B, T, F)
        attention_mask = torch.zeros(B, T, dtype=torch.long)  # (B, T)
        utterances = self.indices[rows]
        for b in range(B):
            n = int(kept[b])
            features[b, :n] = self._frames(int(utterances[b]), int(starts[b]), n)
            attention_mask[b, :n] = 1
        if self.objective == "tera":
            batch = tera_batch(features, attention_mask, self.masking_cfg, generator)
        else:
            batch = {
                "features": features,
                "attention_mask": attention_mask,
                "num_tokens": int(kept.sum()),
            }
        batch["utterances"] = torch.from_numpy(utterances.copy())
        return batch

    def batch(self, index: int) -> dict:
        """Training batch `index` (any index: epochs repeat in fresh orders)."""
        rows, epoch, position = self._order.rows(index)
        generator = torch.Generator().manual_seed(seed_of(self.seed, epoch, position))
        return self._assemble(rows, generator)

    def eval_batches(self, max_batches: int) -> list[dict]:
        """Up to `max_batches` fixed batches of the utterances in order (the last one may be
        smaller), crops and corruption from a fixed seed: every evaluation sees the same."""
        out = []
        for b, first in enumerate(range(0, len(self.indices), self.batch_size)):
            if b >= max_batches:
                break
            rows = np.arange(first, min(first + self.batch_size, len(self.indices)))
            generator = torch.Generator().manual_seed(seed_of(self.seed + EVAL_SEED, b))
            out.append(self._assemble(rows, generator))
        return out
