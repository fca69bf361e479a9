"""SimCLR and BYOL: NT-Xent against a direct implementation, micro-batches against one big batch,
the EMA schedule, augmentations, image data sets, probes, exact resume, the CLI."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_resume_is_exact
from safetensors.torch import load_file

from selfsup.cli import main
from selfsup.data import views
from selfsup.data.images import ImageDataConfig, load_image_folder, load_images
from selfsup.data.views import ViewBatches, ViewConfig, two_views
from selfsup.errors import UserError
from selfsup.evaluation.probe import few_label_indices, knn_accuracy, linear_probe_accuracy
from selfsup.evaluation.probe_run import probe_run
from selfsup.models.vision import VisionModelConfig
from selfsup.objectives.byol import BYOL, BYOLConfig, target_decay
from selfsup.objectives.simclr import SimCLR, SimCLRConfig, nt_xent
from selfsup.recipes import RECIPES, initialised_model, pretrain
from selfsup.recipes.vision import preset_tiny
from selfsup.trainer import TrainConfig, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY_MODEL = VisionModelConfig(width=4, proj_hidden=16, proj_dim=8, in_channels=3, image_size=8)


# ---------------------------------------------------------------- NT-Xent
def _nt_xent_direct(z1, z2, tau):
    """The SimCLR paper's l(i, j), written out anchor by anchor."""
    z = torch.cat([z1, z2])
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        sims = [F.cosine_similarity(z[i], z[k], dim=0) / tau for k in range(n2)]
        denominator = sum(torch.exp(sims[k]) for k in range(n2) if k != i)
        total += -torch.log(torch.exp(sims[j]) / denominator)
    return total


def test_nt_xent_equals_direct_formula_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    loss, _ = nt_xent(z1, z2, 0.3)
    torch.testing.assert_close(loss, _nt_xent_direct(z1, z2, 0.3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nt_xent(z2, z1, 0.3)[0], loss)  # the views' order does not matter
    perm = torch.randperm(5, generator=g)  # nor the images' order
    torch.testing.assert_close(nt_xent(z1[perm], z2[perm], 0.3)[0], loss, rtol=1e-6, atol=1e-5)


def test_nt_xent_is_lowest_for_identical_views_far_from_the_others():
    n, tau = 4, 0.5
    apart = torch.eye(n)  # identical views, orthogonal to every other image
    best, correct = nt_xent(apart, apart, tau)
    # each anchor: positive at similarity 1, 2n-2 negatives at 0
    expected = 2 * n * math.log(1 + (2 * n - 2) * math.exp(-1 / tau))
    assert best.item() == pytest.approx(expected, rel=1e-6) and int(correct) == 2 * n
    collapsed = torch.ones(n, n)  # every image the same: the positive is not findable
    assert nt_xent(collapsed, collapsed, tau)[0].item() == pytest.approx(
        2 * n * math.log(2 * n - 1)
    )
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        z1 = apart + 0.3 * torch.randn(n, n, generator=g)
        assert nt_xent(z1, apart + 0.3 * torch.randn(n, n, generator=g), tau)[0] > best
    # the loss is tau-scaled: lower temperature sharpens it further below log(2n - 1)
    assert nt_xent(apart, apart, 0.1)[0] < best


def _views(n=12, seed=0):
    return torch.randn(2, n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def _loss_and_grads(model, views):
    model.zero_grad()
    out = model({"views": views})
    loss = out.total_loss({"simclr": 2 * views.shape[1]})
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


def test_micro_batches_give_the_loss_and_gradients_of_one_big_batch():
    """Group norm: images are independent, so 3 micro-batches of 4 = one batch of 12 exactly,
    negatives included."""
    cfg = VisionModelConfig(**{**TINY_MODEL.__dict__, "norm": "group"})
    torch.manual_seed(0)
    model = SimCLR(cfg, SimCLRConfig(temperature=0.5), chunk_size=12)
    big_loss, big_grads = _loss_and_grads(model, _views())
    model.chunk_size = 4
    small_loss, small_grads = _loss_and_grads(model, _views())
    torch.testing.assert_close(small_loss, big_loss, rtol=1e-6, atol=1e-6)
    for k in big_grads:
        torch.testing.assert_close(small_grads[k], big_grads[k], rtol=1e-4, atol=1e-6)
    # a loss that ignored the other micro-batches' negatives would differ
    with torch.no_grad():
        per_chunk = sum(
            model({"views": _views()[:, i : i + 4]}).terms["simclr"].loss_sum
            for i in range(0, 12, 4)
        )
    assert abs(float(per_chunk) / 24 - float(big_loss)) > 0.1


def test_micro_batches_with_batch_norm_normalise_each_micro_batch_and_count_stats_once():
    torch.manual_seed(0)
    model = SimCLR(TINY_MODEL, SimCLRConfig(temperature=0.5), chunk_size=4)
    views_ = _views()
    loss, grads = _loss_and_grads(model, views_)
    stats = {k: b.clone() for k, b in model.named_buffers()}
    torch.manual_seed(0)
    reference = SimCLR(TINY_MODEL, SimCLRConfig(temperature=0.5), chunk_size=12)
    z = torch.cat(
        [
            reference.embed(views_[:, i : i + 4].flatten(0, 1)).view(2, 4, -1)
            for i in range(0, 12, 4)
        ],
        dim=1,
    )  # per-micro-batch statistics, no checkpointing, one loss over all 24 views
    ref_loss = nt_xent(z[0], z[1], 0.5)[0] / 24
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-6, atol=1e-6)
    for k, p in reference.named_parameters():
        torch.testing.assert_close(grads[k], p.grad, rtol=1e-4, atol=1e-6)
    for k, b in reference.named_buffers():  # running statistics updated once per micro-batch
        assert torch.equal(stats[k], b), k


# ---------------------------------------------------------------- BYOL
def test_target_decay_follows_the_cosine_schedule():
    assert target_decay(0, 100, 0.99) == pytest.approx(0.99)
    assert target_decay(50, 100, 0.99) == pytest.approx(0.995)
    assert target_decay(100, 100, 0.99) == pytest.approx(1.0)
    assert target_decay(25, 100, 0.9) == pytest.approx(1 - 0.1 * (math.cos(math.pi / 4) + 1) / 2)


def test_ema_update_is_exact():
    torch.manual_seed(0)
    model = BYOL(TINY_MODEL, BYOLConfig(tau_base=0.9), chunk_size=8, total_steps=10)
    for p in model.target.parameters():
        assert not p.requires_grad
    with torch.no_grad():  # online weights move away from the target
        for p in list(model.backbone.parameters()) + list(model.projector.parameters()):
            p.add_(torch.randn_like(p))
    before = {k: v.clone() for k, v in model.target.state_dict().items()}
    online = {
        **{f"backbone.{k}": v for k, v in model.backbone.state_dict().items()},
        **{f"projector.{k}": v for k, v in model.projector.state_dict().items()},
    }
    tau = model.update_target(4)  # after the 4th optimizer step: k = 3
    assert tau == target_decay(3, 10, 0.9)
    for name, p in model.target.named_parameters():
        expected = torch.add(before[name] * tau, online[name], alpha=1 - tau)
        assert torch.equal(p, expected), name  # bit for bit
    assert model.update_target(11) == pytest.approx(1.0, abs=0.01)


def test_byol_loss_is_symmetric_and_zero_for_a_perfect_prediction():
    torch.manual_seed(0)
    model = BYOL(TINY_MODEL, BYOLConfig(), chunk_size=8, total_steps=10).eval()
    v = _views(6)
    swapped = model({"views": v.flip(0)}).terms["byol"].loss_sum
    torch.testing.assert_close(model({"views": v}).terms["byol"].loss_sum, swapped)
    from selfsup.objectives.byol import regression_loss

    z = torch.randn(5, 8)
    assert regression_loss(3 * z, z).abs().max() < 1e-6 and regression_loss(-z, z).min() > 3.99


# ---------------------------------------------------------------- augmentations
def _images(n=6, c=3, size=16, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("channels", [1, 3])
def test_views_keep_shape_and_range_and_repeat_with_the_seed(channels):
    x = _images(c=channels)
    cfg = ViewConfig(blur_prob=[1.0, 0.5], solarize_prob=[0.0, 0.5])
    a1, a2 = two_views(x, cfg, torch.Generator().manual_seed(3))
    b1, _ = two_views(x, cfg, torch.Generator().manual_seed(3))
    c1, _ = two_views(x, cfg, torch.Generator().manual_seed(4))
    for v in (a1, a2):
        assert v.shape == x.shape and v.dtype == x.dtype
        assert v.min() >= 0 and v.max() <= 1
    assert torch.equal(a1, b1) and not torch.equal(a1, c1) and not torch.equal(a1, a2)


def test_each_augmentation_at_its_neutral_setting_is_the_identity():
    x, g = _images(), torch.Generator().manual_seed(0)
    torch.testing.assert_close(views.random_resized_crop(x, (1.0, 1.0), g, (1.0, 1.0)), x)
    assert torch.equal(views.horizontal_flip(x, 1.0, g), x.flip(-1))
    assert torch.equal(views.horizontal_flip(x, 0.0, g), x)
    still = ViewConfig(brightness=0, contrast=0, saturation=0, hue=0, jitter_prob=1.0)
    torch.testing.assert_close(views.color_jitter(x, still, g), x, atol=1e-5, rtol=0)
    gray = views.random_grayscale(x, 1.0, g)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    flat = torch.full((2, 3, 16, 16), 0.3)
    torch.testing.assert_close(views.gaussian_blur(flat, 1.0, (2.0, 2.0), g), flat)
    blurred = views.gaussian_blur(x, 1.0, (2.0, 2.0), g)
    assert blurred.std() < x.std()  # blur smooths
    assert torch.equal(views.solarize(x, 1.0, g), torch.where(x >= 0.5, 1 - x, x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (views on the device)")
def test_views_on_the_gpu_match_the_cpu_views():
    x = _images(n=32)
    cfg = ViewConfig(blur_prob=[1.0, 0.5], solarize_prob=[0.0, 0.5])
    cpu = two_views(x, cfg, torch.Generator().manual_seed(3))
    gpu = two_views(x.cuda(), cfg, torch.Generator().manual_seed(3))
    for a, b in zip(cpu, gpu):
        assert b.is_cuda
        torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=0)


def test_crop_zooms_in():
    """A crop of a quarter of the area, resized back, shows a smaller part of a gradient."""
    ramp = torch.linspace(0, 1, 32).expand(1, 1, 32, 32).contiguous()
    crop = views.random_resized_crop(ramp, (0.25, 0.25), torch.Generator().manual_seed(0), (1, 1))
    span = crop[0, 0, 0, -1] - crop[0, 0, 0, 0]
    assert 0.4 < span < 0.55  # half the width of the image


def test_view_batches_are_a_pure_function_of_the_index_and_keep_labels():
    images = (torch.arange(40 * 64) % 256).to(torch.uint8).view(40, 1, 8, 8)
    labels = torch.arange(40) % 4
    src = ViewBatches(
        images,
        labels,
        (images[:8], labels[:8]),
        torch.zeros(1, 1, 1, 1),
        torch.ones(1, 1, 1, 1),
        ViewConfig(flip=False),
        16,
        0,
    )
    a, b = src.batch(5), src.batch(5)
    assert torch.equal(a["views"], b["views"]) and torch.equal(a["labels"], b["labels"])
    assert a["views"].shape == (2, 16, 1, 8, 8) and a["num_tokens"] == 16
    assert not torch.equal(src.batch(6)["views"], a["views"])
    # an epoch (2 batches of 16 from 40 images) visits different images, each with its label
    seen = torch.cat([src.batch(i)["labels"] for i in range(2)])
    assert len(seen) == 32 and set(seen.tolist()) <= {0, 1, 2, 3}
    evals = src.eval_batches(3)
    assert [len(e["labels"]) for e in evals] == [8] and torch.equal(evals[0]["labels"], labels[:8])


# ---------------------------------------------------------------- data sets
def test_digits_split_and_limits():
    data = load_images(ImageDataConfig(dataset="digits"))
    assert data.shape == (1, 8, 8) and len(data.train) == 1347 and len(data.test) == 450
    assert data.train.images.dtype == torch.uint8 and data.train.images.max() == 255
    assert np.bincount(data.test.labels.numpy()).min() >= 44  # stratified
    small = load_images(ImageDataConfig(dataset="digits", limit=100, test_limit=50))
    assert len(small.train) == 100 and len(small.test) == 50


def _write_image(path: Path, color, size=(10, 12), mode="RGB"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_with_and_without_classes(tmp_path):
    for k, color in enumerate([(255, 0, 0), (0, 0, 255)]):
        for i in range(5):
            _write_image(tmp_path / "labelled" / f"class{k}" / f"{i}.png", color)
    train, test = load_image_folder(tmp_path / "labelled", 16)
    assert train.images.shape == (8, 3, 16, 16) and len(test) == 2
    assert train.classes == ["class0", "class1"] and sorted(test.labels.tolist()) == [0, 1]
    red = train.images[train.labels == 0]
    assert (red[:, 0] == 255).all() and (red[:, 2] == 0).all()
    for i in range(10):
        _write_image(tmp_path / "loose" / f"{i}.jpg", (i * 20, 0, 0), mode="RGB")
    train, test = load_image_folder(tmp_path / "loose", 8)
    assert len(train) + len(test) == 10 and not train.labelled and (train.labels == -1).all()


def test_pretraining_on_unlabelled_images(tmp_path):
    g = np.random.default_rng(0)
    for i in range(12):
        _write_image(tmp_path / "photos" / f"{i}.png", tuple(int(v) for v in g.integers(0, 255, 3)))
    cfg = _tiny("simclr", steps=2)
    cfg.data.dataset, cfg.data.image_size = str(tmp_path / "photos"), 8
    metrics = pretrain(cfg, tmp_path / "run")
    assert "eval_simclr_loss" in metrics and "eval_knn_accuracy" not in metrics  # no labels
    with pytest.raises(UserError, match="probing needs labels"):
        probe_run(tmp_path / "run")


def test_image_folder_errors_name_the_path(tmp_path):
    with pytest.raises(UserError, match="missing"):
        load_image_folder(tmp_path / "missing", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty: no images"):
        load_image_folder(tmp_path / "empty", 8)
    bad = tmp_path / "bad" / "cats" / "x.jpg"
    bad.parent.mkdir(parents=True)
    bad.write_text("not a jpeg")
    with pytest.raises(UserError, match="x.jpg: not a readable image"):
        load_image_folder(tmp_path / "bad", 8)


@pytest.mark.skipif(not (SHARED / "mnist-5k").exists(), reason="../shared/data/mnist-5k is absent")
def test_mnist_5k():
    data = load_images(ImageDataConfig(dataset="mnist-5k", root=str(SHARED)))
    assert data.shape == (1, 28, 28) and len(data.train) == 4000 and len(data.test) == 1000
    assert np.bincount(data.test.labels.numpy()).tolist() == [100] * 10


@pytest.mark.skipif(
    not (SHARED / "cifar10-jpg").exists(), reason="../shared/data/cifar10-jpg is absent"
)
def test_cifar10_read_in_place_from_the_zip():
    data = load_images(
        ImageDataConfig(dataset="cifar10", root=str(SHARED), limit=20, test_limit=10)
    )
    assert data.shape == (3, 32, 32) and len(data.train) == 20 and len(data.test) == 10
    assert data.train.classes[:2] == ["airplane", "automobile"]
    assert sorted(set(data.train.labels.tolist())) == list(range(10))
    assert data.train.images.float().std() > 20  # real pictures, not blank


# ---------------------------------------------------------------- probes
def test_probes_on_separable_features():
    g = np.random.default_rng(0)
    centers = g.normal(size=(3, 10)) * 5
    labels = np.repeat(np.arange(3), 30)
    x = centers[labels] + g.normal(size=(90, 10))
    chosen = few_label_indices(labels, 2, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [2, 2, 2]
    assert np.array_equal(chosen, few_label_indices(labels, 2, seed=0))
    assert not np.array_equal(chosen, few_label_indices(labels, 2, seed=1))
    assert len(few_label_indices(labels, None, 0)) == 90
    assert linear_probe_accuracy(x[chosen], labels[chosen], x, labels, x) == 1.0
    assert knn_accuracy(x[chosen], labels[chosen], x, labels) == 1.0
    assert knn_accuracy(x[chosen], labels[chosen], x, (labels + 1) % 3) == 0.0


# ---------------------------------------------------------------- training
def _tiny(arch, **train):
    cfg = preset_tiny(arch)
    cfg.train.progress = False
    cfg.data.knn_monitor = 100
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_tiny_simclr_run_lowers_the_loss(tmp_path):
    cfg = _tiny("simclr", steps=30, log_every=5, checkpoint_every=30, lr=5e-3)
    metrics = pretrain(cfg, tmp_path / "run")
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["simclr_loss"] for r in logged if "simclr_loss" in r]
    assert losses[-1] < losses[0] - 0.2, losses
    assert metrics["eval_knn_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert (tmp_path / "run" / "loss_curve.png").exists()
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["arch"] == "simclr"


def _train_byol(run_dir, resume=False, on_checkpoint=None):
    cfg = _tiny("byol")
    cfg.model.in_channels, cfg.model.image_size = 1, 8
    cfg.train = TrainConfig(
        steps=6,
        batch_size=8,
        lr=3e-3,
        warmup_steps=1,
        checkpoint_every=3,
        log_every=1,
        eval_batches=1,
        progress=False,
    )
    model = initialised_model(RECIPES[cfg.arch], cfg)
    data = load_images(cfg.data)
    mean, std = data.channel_stats()
    src = ViewBatches(
        data.train.images[:64],
        data.train.labels[:64],
        (data.test.images, data.test.labels),
        mean,
        std,
        cfg.views,
        16,
        0,
    )  # 16 images a step in micro-batches of 8: gradient caching is on
    train(
        model,
        src,
        cfg.train,
        run_dir,
        resume=resume,
        after_step=lambda m, s: m.update_target(s),
        on_checkpoint=on_checkpoint,
    )
    return load_file(run_dir / "model.safetensors")


def test_byol_resume_reproduces_the_uninterrupted_run_target_included(tmp_path):
    full = assert_resume_is_exact(_train_byol, tmp_path, kill_at=3)
    assert any(k.startswith("target.") for k in full)
    initial = initialised_model(RECIPES["byol"], _tiny("byol"))
    # the target moved, and not onto the online network
    assert not torch.equal(
        full["target.backbone.layers.0.weight"], initial.backbone.layers[0].weight
    )
    assert not torch.equal(
        full["target.backbone.layers.0.weight"], full["backbone.layers.0.weight"]
    )


# ---------------------------------------------------------------- CLI
def _cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_pretrain_resume_and_probe(tmp_path, capsys):
    run = tmp_path / "run"
    base = ["pretrain", "--arch", "byol", "--preset", "tiny", "--out", str(run)]
    code, out, err = _cli([*base, "--train.steps", "4", "train.progress=false"], capsys)
    assert code == 0, err
    assert "eval_byol_loss" in out
    config = json.loads((run / "config.json").read_text())
    assert config["arch"] == "byol" and config["views"]["solarize_prob"] == [0.0, 0.2]
    # a finished run resumes without --arch: the run's config says it is BYOL
    code, out, err = _cli(["pretrain", "--out", str(run), "--resume"], capsys)
    assert code == 0 and "eval_byol_loss" in out, err
    code, out, err = _cli(
        ["probe", str(run), "--labels-per-class", "1,all", "--seeds", "2"], capsys
    )
    assert code == 0, err
    assert "| byol | linear |" in out and "| raw pixels | knn |" in out and "all / class" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (lambda t: ["--dataset", str(t / "nowhere")], "nowhere: no such image folder"),
        (lambda t: ["views.crop_scale_min=0"], "crop_scale_min"),
        (lambda t: ["model.widht=3"], "unknown config key 'model.widht'"),
        (lambda t: ["--simclr.temperature", "0"], "temperature"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    code, _, err = _cli(
        ["pretrain", "--arch", "simclr", "--out", str(tmp_path / "r"), *args(tmp_path)], capsys
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("selfsup: error:"), err
    assert message in lines[0]


def test_probe_needs_an_image_run(tmp_path, capsys):
    from selfsup.runs import RunFolder

    RunFolder(tmp_path).write_marker("pretraining", "bert")
    code, _, err = _cli(["probe", str(tmp_path)], capsys)
    assert code == 2 and "needs a SimCLR or BYOL run" in err


def test_help_documents_every_image_config_key(capsys):
    from selfsup.config import iter_fields
    from selfsup.recipes.vision import VisionPretrainConfig

    with pytest.raises(SystemExit):
        main(["pretrain", "--arch", "simclr", "--help"])
    text = capsys.readouterr().out
    assert "SimCLR on images" in text and "selfsup probe" in text
    for key, _, _ in iter_fields(VisionPretrainConfig):
        assert key in text, key


@pytest.mark.parametrize("arch", ["simclr", "byol"])
def test_item_counts_are_the_loss_terms_counts(arch):
    """The trainer normalises by item_counts before any backward pass: they must be the counts
    the loss terms then report (2N anchors for SimCLR, N images for BYOL)."""
    model = initialised_model(RECIPES[arch], _tiny(arch))
    views = torch.rand(2, 6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = model({"views": views})
    counts = model.item_counts({"views": views})
    assert counts == {arch: out.terms[arch].count} == {arch: 12 if arch == "simclr" else 6}


@pytest.mark.parametrize("arch", ["simclr", "byol"])
def test_step_time_estimate_runs_a_real_step(arch):
    from selfsup.experiments.ssl_step_time import time_steps

    out = time_steps("tiny", arch, 1, ["train.batch_size=8", "train.grad_accum=2"])
    assert out["images_per_step"] == 16 and out["step_s"] > 0
    assert out["run_epochs"] == pytest.approx(20 * 16 / 1347)  # tiny: 20 steps over 1,347 digits
