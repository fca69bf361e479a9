"""Speech pretraining: TERA's frame masking (statistics, reproducibility), the masked L1 loss,
APC's causality and target pairing, learning on a synthetic signal, and gradient flow."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_config

from selfsup.errors import UserError
from selfsup.models.acoustic import AcousticEncoder, WeightedLayerSum
from selfsup.objectives.acoustic import (
    NO_SPAN,
    RANDOM_FRAMES,
    UNCHANGED,
    ZEROED,
    AcousticObjectiveConfig,
    AcousticPretrainer,
    FrameMaskingConfig,
    MaskedAcousticModel,
    apc_l1,
    mask_frames,
    masked_l1,
    tera_batch,
)

F = 8  # features per frame in the model tests


def padded_mask(lengths: list[int], T: int) -> torch.Tensor:
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return mask


def random_lengths(B: int, low: int, high: int, generator: torch.Generator) -> list[int]:
    return torch.randint(low, high + 1, (B,), generator=generator).tolist()


def runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """Maximal runs of True in a 1-D bool tensor, as (start, length)."""
    found, start = [], None
    for i, on in enumerate(row.tolist() + [False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            found.append((start, i - start))
            start = None
    return found


def sinusoids(B: int, T: int, lengths: list[int], generator: torch.Generator) -> torch.Tensor:
    """Smooth synthetic 'log-mel' frames: per utterance a period of 8-16 frames and a phase, each
    channel a shifted copy; zero at padding. (B, T, F)"""
    period = 8 + 8 * torch.rand((B, 1, 1), generator=generator)
    phase = 2 * math.pi * torch.rand((B, 1, 1), generator=generator)
    t = torch.arange(T, dtype=torch.float32)[None, :, None]
    channel = torch.arange(F, dtype=torch.float32)[None, None, :]
    x = torch.sin(2 * math.pi * t / period + phase + 0.4 * channel)
    return x * padded_mask(lengths, T)[..., None]


# --- masking -------------------------------------------------------------------------------


def test_time_spans_cover_the_configured_share_in_contiguous_spans():
    """Each utterance of L real frames gets n = round(0.15 L / 7) non-overlapping 7-frame spans,
    so its masked share n * 7 / L is within W / (2L) of 0.15 by construction (a rounding bound,
    not a sampling one: the count is exact), and the share over all frames within
    W / (2 * mean L). Runs of masked frames are whole spans (adjacent spans merge into a
    multiple of 7); padding is never touched."""
    cfg = FrameMaskingConfig(channel_mask_max_width=0, noise_share=0.0)
    W, T, B = cfg.span_length, 120, 64
    g = torch.Generator().manual_seed(1)
    masked_frames = real_frames = 0
    centres = []
    for draw in range(10):
        lengths = random_lengths(B, 20, T, g)
        mask = padded_mask(lengths, T)
        features = torch.randn(B, T, F, generator=g)
        out = mask_frames(features, mask, cfg, torch.Generator().manual_seed(draw))
        assert not (out.time_mask & ~mask.bool()).any()
        assert not (out.reconstruction_mask & ~mask.bool()[..., None]).any()
        torch.testing.assert_close(out.features[mask == 0], features[mask == 0], rtol=0, atol=0)
        for row, L in enumerate(lengths):
            n = min(math.floor(0.15 * L / W + 0.5), L // W)
            starts = torch.nonzero(out.span_action[row] != NO_SPAN).flatten().tolist()
            assert len(starts) == n and int(out.time_mask[row].sum()) == n * W
            assert abs(n * W / L - 0.15) <= W / (2 * L) + 1e-12
            assert all(b - a >= W for a, b in zip(starts, starts[1:]))  # no overlap
            for s in starts:
                assert out.time_mask[row, s : s + W].all() and s + W <= L
            for _, length in runs(out.time_mask[row]):
                assert length % W == 0
            centres += [(s + W / 2) / L for s in starts]
        masked_frames += int(out.time_mask.sum())
        real_frames += int(mask.sum())
    mean_length = real_frames / (10 * B)
    assert abs(masked_frames / real_frames - 0.15) <= W / (2 * mean_length)
    # placement is symmetric in time: span centres average the middle (std ~0.007 here)
    assert abs(sum(centres) / len(centres) - 0.5) < 0.03


@pytest.mark.parametrize("count", [1, 2])
def test_channel_bands_are_contiguous_within_the_width_limit(count):
    """Band width is uniform on 0..6 (mean 3, std 2 per band; 1,280 bands give a std of the
    mean of 0.06): bands are contiguous, at most 6 wide, zeroed on every real frame only."""
    cfg = FrameMaskingConfig(
        time_mask_share=0.0, channel_mask_max_width=6, channel_mask_count=count, noise_share=0.0
    )
    num_channels, T, B = 20, 30, 128
    g = torch.Generator().manual_seed(2)
    widths = []
    for draw in range(10):
        lengths = random_lengths(B, 5, T, g)
        mask = padded_mask(lengths, T)
        features = torch.randn(B, T, num_channels, generator=g) + 5.0  # never zero by chance
        out = mask_frames(features, mask, cfg, torch.Generator().manual_seed(draw))
        expected = mask.bool()[:, :, None] & out.channel_mask[:, None, :]
        assert torch.equal(out.reconstruction_mask, expected)
        assert (out.features[expected] == 0).all()
        assert (out.features[~expected] == features[~expected]).all()
        for row in range(B):
            bands = runs(out.channel_mask[row])
            assert len(bands) <= count
            assert all(width <= 6 for _, width in bands) or count > 1
            assert int(out.channel_mask[row].sum()) <= 6 * count
            if count == 1:
                widths.append(int(out.channel_mask[row].sum()))
    if count == 1:
        assert abs(sum(widths) / len(widths) - 3.0) < 4 * 2.0 / math.sqrt(len(widths))
        assert max(widths) == 6 and min(widths) == 0


def test_channel_width_is_capped_by_the_channels():
    cfg = FrameMaskingConfig(time_mask_share=0.0, channel_mask_max_width=50, noise_share=0.0)
    out = mask_frames(torch.randn(64, 10, 4), torch.ones(64, 10), cfg, torch.Generator())
    assert int(out.channel_mask.sum(1).max()) <= 4


def _check_span_content(out, features, lengths, W) -> list[int]:
    """Every span's frames are zero, the original, or W consecutive original frames of the same
    row, as its action says; frames outside spans are untouched. Returns the span actions."""
    actions = []
    assert torch.equal(out.features[~out.time_mask], features[~out.time_mask])
    for row, L in enumerate(lengths):
        windows = features[row, :L].unfold(0, W, 1)  # (L - W + 1, F, W)
        for s in torch.nonzero(out.span_action[row] != NO_SPAN).flatten().tolist():
            action = int(out.span_action[row, s])
            got = out.features[row, s : s + W]
            if action == ZEROED:
                assert (got == 0).all()
            elif action == UNCHANGED:
                assert torch.equal(got, features[row, s : s + W])
            else:
                assert action == RANDOM_FRAMES
                assert (windows == got.T[None]).all(-1).all(-1).any()
            actions.append(action)
    return actions


@pytest.mark.parametrize("unit", ["utterance", "span"])
def test_alteration_split_is_80_10_10(unit):
    """Zeroed / random segment / unchanged near 0.8 / 0.1 / 0.1: with N independent dice (one
    per utterance, or per span) each share is within 4 sqrt(p (1 - p) / N) of p. Per utterance,
    all spans of a row share the die, as in s3prl's TERA."""
    cfg = FrameMaskingConfig(channel_mask_max_width=0, noise_share=0.0, alteration_unit=unit)
    W, T, B = cfg.span_length, 80, 200
    g = torch.Generator().manual_seed(3)
    dice = []
    for draw in range(5):
        lengths = random_lengths(B, 50, T, g)  # >= 1 span each
        features = torch.randn(B, T, F, generator=g)
        out = mask_frames(
            features, padded_mask(lengths, T), cfg, torch.Generator().manual_seed(draw)
        )
        actions = _check_span_content(out, features, lengths, W)
        if unit == "utterance":
            for row in range(B):
                row_actions = out.span_action[row][out.span_action[row] != NO_SPAN]
                assert (row_actions == row_actions[0]).all()
                dice.append(int(row_actions[0]))
        else:
            dice += actions
    N = len(dice)
    for action, p in ((ZEROED, 0.8), (RANDOM_FRAMES, 0.1), (UNCHANGED, 0.1)):
        share = sum(d == action for d in dice) / N
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / N), (action, share, N)


def test_noise_is_on_real_frames_only_and_not_a_target():
    cfg = FrameMaskingConfig(time_mask_share=0.0, channel_mask_max_width=0, noise_share=1.0)
    with pytest.raises(UserError, match="nothing to reconstruct"):
        cfg.validate()
    cfg.channel_mask_max_width = 3
    mask = padded_mask([10, 4], 12)
    features = torch.randn(2, 12, F) + 5.0
    out = mask_frames(features, mask, cfg, torch.Generator().manual_seed(0))
    untouched = ~out.reconstruction_mask & mask.bool()[..., None]
    assert (out.features[untouched] != features[untouched]).all()  # noise everywhere real
    assert torch.equal(out.features[mask == 0], features[mask == 0])
    assert not out.time_mask.any()


def test_masking_is_reproducible_from_the_seed():
    cfg = FrameMaskingConfig()
    features = torch.randn(6, 50, F)
    mask = padded_mask([50, 40, 30, 20, 10, 3], 50)
    a, b, c = (
        mask_frames(features, mask, cfg, torch.Generator().manual_seed(s)) for s in (7, 7, 8)
    )
    for name in ("features", "reconstruction_mask", "time_mask", "channel_mask", "span_action"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.reconstruction_mask, c.reconstruction_mask)
    batch = tera_batch(features, mask, cfg, torch.Generator().manual_seed(7))
    assert torch.equal(batch["features"], a.features) and batch["targets"] is features
    assert batch["num_tokens"] == int(mask.sum())


def test_masking_config_is_checked():
    for bad in (
        dict(time_mask_share=1.0),
        dict(span_length=0),
        dict(replace_with_zero=0.9, replace_with_random=0.2),
        dict(replace_with_random=-0.1),
        dict(channel_mask_count=-1),
        dict(noise_share=1.5),
    ):
        with pytest.raises(UserError, match="frame_masking"):
            FrameMaskingConfig(**bad).validate()
    FrameMaskingConfig().validate()
    with pytest.raises(ValueError, match="padding at its end"):
        mask_frames(
            torch.randn(1, 5, F),
            torch.tensor([[0, 1, 1, 1, 1]]),
            FrameMaskingConfig(),
            torch.Generator(),
        )


# --- TERA loss -----------------------------------------------------------------------------


def test_masked_l1_reads_only_the_hidden_elements():
    g = torch.Generator().manual_seed(4)
    predictions, targets = torch.randn(3, 10, F, generator=g), torch.randn(3, 10, F, generator=g)
    mask = torch.rand(3, 10, F, generator=g) < 0.3
    loss, count = masked_l1(predictions, targets, mask)
    assert count == int(mask.sum())
    torch.testing.assert_close(loss, (predictions - targets).abs()[mask].sum())
    p2 = predictions.clone()
    p2[~mask] = float("nan")  # even NaN outside the mask changes nothing
    t2 = targets.clone()
    t2[~mask] = 1e6
    assert torch.equal(masked_l1(p2, targets, mask)[0], loss)
    assert torch.equal(masked_l1(predictions, t2, mask)[0], loss)
    p3 = predictions.clone()
    p3[mask.nonzero()[0].unbind()] += 1.0
    assert not torch.equal(masked_l1(p3, targets, mask)[0], loss)
    t3 = targets.clone()
    t3[mask.nonzero()[-1].unbind()] -= 1.0
    assert not torch.equal(masked_l1(predictions, t3, mask)[0], loss)
    leaf = predictions.clone().requires_grad_()
    masked_l1(leaf, targets, mask)[0].backward()
    assert (leaf.grad[~mask] == 0).all() and (leaf.grad[mask].abs() == 1).all()


def test_tera_objective_counts_the_masked_elements_and_ignores_the_rest():
    """Through the objective module (its head replaced by the identity, so the hidden states are
    the predictions): unmasked predictions or targets do not matter; the count is the mask's."""
    cfg = tiny_config(hidden_size=F, num_heads=2)
    objective = MaskedAcousticModel(cfg, F, AcousticObjectiveConfig())
    objective.head = torch.nn.Identity()
    features = torch.randn(2, 30, F)
    batch = tera_batch(features, padded_mask([30, 22], 30), FrameMaskingConfig(), torch.Generator())
    predictions = torch.randn(2, 30, F)
    term = objective(predictions, batch)
    hidden = batch["reconstruction_mask"]
    assert term.count == int(hidden.sum()) == objective.item_count(batch) > 0
    changed = predictions.clone()
    changed[~hidden] += 3.0
    assert torch.equal(objective(changed, batch).loss_sum, term.loss_sum)
    other_targets = dict(batch, targets=batch["targets"].masked_fill(~hidden, 9.0))
    assert torch.equal(objective(predictions, other_targets).loss_sum, term.loss_sum)
    changed[hidden.nonzero()[0].unbind()] += 1.0
    assert not torch.equal(objective(changed, batch).loss_sum, term.loss_sum)


# --- encoder and APC -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "norm, positions", [("post", "learned"), ("pre", "learned"), ("pre", "rotary")]
)
def test_causal_encoder_does_not_peek(norm, positions):
    encoder = AcousticEncoder(
        tiny_config(norm_position=norm, position_encoding=positions), F, causal=True
    ).eval()
    x = torch.randn(2, 16, F)
    t = 9
    later = x.clone()
    later[:, t + 1 :] = torch.randn(2, 16 - t - 1, F) * 10
    with torch.no_grad():
        before, after = encoder.layer_outputs(x), encoder.layer_outputs(later)
    assert len(before) == encoder.num_layers + 1
    for a, b in zip(before, after):
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(before[-1][:, t + 1 :], after[-1][:, t + 1 :])
    earlier = x.clone()
    earlier[:, t] += 1.0  # frame t itself does reach output t
    with torch.no_grad():
        assert not torch.allclose(encoder(earlier)[:, t], encoder(x)[:, t])
        # trailing padding: real frames read as without it
        mask = padded_mask([16, 11], 16)
        torch.testing.assert_close(
            encoder(x, mask)[1, :11], encoder(x[1:, :11])[0], atol=1e-6, rtol=0
        )
    with pytest.raises(ValueError, match="padding at the end"):
        encoder(x, torch.tensor([[1] * 16, [0] + [1] * 15]))


def test_bidirectional_encoder_reads_the_future_and_ignores_padding():
    encoder = AcousticEncoder(tiny_config(), F).eval()
    x = torch.randn(2, 12, F)
    mask = padded_mask([12, 7], 12)
    with torch.no_grad():
        out = encoder(x, mask)
        changed = x.clone()
        changed[1, 7:] = 100.0  # padding content
        torch.testing.assert_close(encoder(changed, mask)[1, :7], out[1, :7], atol=1e-6, rtol=0)
        torch.testing.assert_close(encoder(x[1:, :7])[0], out[1, :7], atol=1e-5, rtol=1e-5)
        changed = x.clone()
        changed[0, -1] += 1.0
        assert not torch.allclose(encoder(changed, mask)[0, 0], out[0, 0])
        layers = encoder.layer_outputs(x, mask)
        assert torch.equal(layers[-1], out)
        mixed = WeightedLayerSum(len(layers))(layers)  # equal weights at the start
        torch.testing.assert_close(mixed, torch.stack(layers).mean(0))
    with pytest.raises(UserError, match="max_position"):
        encoder(torch.randn(1, 65, F))


def test_apc_loss_pairs_output_t_with_frame_t_plus_n_by_hand():
    """T = 5 frames, the last one padding, n = 2: outputs 0 and 1 have real targets (frames 2
    and 3); output 2 would need frame 4 (padding), outputs 3 and 4 have no frame at all."""
    features = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]]
    )  # (1, 5, 2)
    predictions = torch.tensor([[[4.0, 6.5], [7.5, 8.0], [0.0, 0.0], [100.0, 100.0], [-50.0, 3.0]]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    loss, count = apc_l1(predictions, features, mask, shift=2)
    # t = 0 vs frame 2 (5, 6): |4 - 5| + |6.5 - 6| = 1.5; t = 1 vs frame 3 (7, 8): 0.5 + 0 = 0.5
    assert count == 4
    assert loss.item() == pytest.approx(2.0)
    model = AcousticPretrainer(tiny_config(), 2, "apc", AcousticObjectiveConfig(time_shift=2))
    batch = {"features": features, "attention_mask": mask, "num_tokens": 4}
    assert model.item_counts(batch) == {"apc": 4}
    assert model(batch).terms["apc"].count == 4
    assert apc_l1(predictions[:, :2], features[:, :2], mask[:, :2], shift=2)[1] == 0


def test_apc_prediction_at_t_ignores_later_frames():
    """End to end: APC's predictions (head included) at t <= 9 do not move when frames > 9 do."""
    model = AcousticPretrainer(tiny_config(), F, "apc").eval()
    head = model.objectives["apc"].head
    x = torch.randn(1, 16, F)
    later = x.clone()
    later[:, 10:] = -x[:, 10:]
    with torch.no_grad():
        a, b = head(model.encoder(x)), head(model.encoder(later))
    torch.testing.assert_close(a[:, :10], b[:, :10], atol=1e-6, rtol=0)


# --- learning and gradients ----------------------------------------------------------------


def _sinusoid_batch(arch: str, seed: int, B: int = 16, T: int = 48) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = random_lengths(B, 32, T, g)
    features = sinusoids(B, T, lengths, g)
    mask = padded_mask(lengths, T)
    if arch == "tera":
        return tera_batch(features, mask, FrameMaskingConfig(channel_mask_max_width=2), g)
    return {"features": features, "attention_mask": mask, "num_tokens": int(mask.sum())}


def _mean_loss(model: AcousticPretrainer, batch: dict) -> torch.Tensor:
    out = model(batch)
    return out.total_loss(model.item_counts(batch))


@pytest.mark.parametrize("arch, steps", [("tera", 120), ("apc", 40)])
def test_a_few_steps_on_sinusoids_lower_the_loss(arch, steps):
    """Adam steps on fresh synthetic batches lower the held-out mean L1 to under 60% of both its
    start (the untrained head predicts ~0 against |sin| ~ 0.64) and the simplest guess of each
    task: the row's mean for TERA (beating it needs the frames around a gap) and, for APC, the
    frame's own value (a sinusoid of period 8 to 16 frames moves a lot in 3 frames). Rotary
    positions: with a learned table this tiny TERA model needs many more steps to interpolate
    across 7-frame gaps (0.49 after 300 steps, against 0.15 with rotary)."""
    torch.manual_seed(0)
    model = AcousticPretrainer(tiny_config(position_encoding="rotary"), F, arch)
    held_out = _sinusoid_batch(arch, seed=10_000)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.eval()
    with torch.no_grad():
        start = _mean_loss(model, held_out).item()
    model.train()
    for step in range(steps):
        optimizer.zero_grad()
        _mean_loss(model, _sinusoid_batch(arch, seed=step)).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        end = _mean_loss(model, held_out).item()
    features, mask = held_out.get("targets", held_out["features"]), held_out["attention_mask"]
    if arch == "apc":
        baseline = apc_l1(features, features, mask, 3)
    else:
        row_mean = features.sum(1, keepdim=True) / mask.sum(1)[:, None, None]
        baseline = masked_l1(
            row_mean.expand_as(features), features, held_out["reconstruction_mask"]
        )
    baseline_mean = baseline[0].item() / baseline[1]
    assert end < 0.6 * start, (start, end)
    assert end < 0.6 * baseline_mean, (end, baseline_mean)


@pytest.mark.parametrize("arch", ["tera", "apc"])
def test_gradients_reach_every_encoder_weight(arch):
    model = AcousticPretrainer(tiny_config(), F, arch)
    batch = _sinusoid_batch(arch, seed=1, B=4, T=40)
    assert model.encoder.causal == (arch == "apc")
    _mean_loss(model, batch).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_unknown_objective_is_a_clear_error():
    with pytest.raises(UserError, match="tera, apc"):
        AcousticPretrainer(tiny_config(), F, "mlm")
    with pytest.raises(UserError, match="time_shift"):
        AcousticPretrainer(tiny_config(), F, "apc", AcousticObjectiveConfig(time_shift=0))


class _SinusoidSource:
    """A BatchSource for selfsup.trainer.train: batch i is a pure function of i."""

    def __init__(self, arch: str) -> None:
        self.arch = arch

    def batch(self, index: int) -> dict:
        return _sinusoid_batch(self.arch, seed=index, B=4, T=32)

    def eval_batches(self, max_batches: int) -> list[dict]:
        return [_sinusoid_batch(self.arch, seed=10_000 + i, B=4, T=32) for i in range(max_batches)]


@pytest.mark.parametrize("arch", ["tera", "apc"])
def test_the_training_loop_runs_both_objectives(arch, tmp_path):
    """The trainer's contract: model(batch) -> StepOutput, item_counts before any backward,
    gradient accumulation over micro-batches with different numbers of masked elements."""
    from selfsup.trainer import TrainConfig, train

    torch.manual_seed(0)
    model = AcousticPretrainer(tiny_config(position_encoding="rotary"), F, arch)
    cfg = TrainConfig(
        steps=4, batch_size=4, grad_accum=2, lr=2e-3, warmup_steps=1, eval_every=4,
        eval_batches=1, checkpoint_every=100, progress=False, device="cpu",
    )  # fmt: skip
    metrics = train(model, _SinusoidSource(arch), cfg, tmp_path)
    assert math.isfinite(metrics[f"eval_{arch}_loss"])
