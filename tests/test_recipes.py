"""The recipe registry, shown by a worked example: a new architecture is one module that builds a
`Recipe` and one registry line, and then `selfsup pretrain --arch NAME` trains it with the same
run folder, checkpoints, resume and loading as every other."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from selfsup.cli import main
from selfsup.config import option
from selfsup.objectives.base import LossTerm, StepOutput
from selfsup.recipes import (
    RECIPES,
    LoadedRun,
    Plan,
    Recipe,
    initialised_model,
    load_run,
    pretraining_archs,
    recipe_of,
)
from selfsup.runs import RunFolder
from selfsup.trainer import TrainConfig


# ---------------------------------------------------------------- the worked example: one file
@dataclass
class ToyConfig:
    arch: str = option("toy", "the recipe")
    dim: int = option(6, "width of the random vectors")
    code: int = option(2, "width of the bottleneck")
    train: TrainConfig = option(
        TrainConfig(steps=30, batch_size=16, lr=3e-2, checkpoint_every=10, progress=False), ""
    )


class ToyBatches:
    """Random vectors with a 2-dimensional structure; batch i is a pure function of (seed, i)."""

    def __init__(self, cfg: ToyConfig) -> None:
        self.cfg = cfg
        self.mixing = torch.randn(2, cfg.dim, generator=torch.Generator().manual_seed(7))

    def batch(self, index: int) -> dict:
        g = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + index)
        x = torch.randn(self.cfg.train.batch_size, 2, generator=g) @ self.mixing
        return {"x": x, "num_tokens": len(x)}

    def eval_batches(self, n: int) -> list[dict]:
        return [self.batch(10**9 + k) for k in range(n)]  # never a training index


class ToyAutoencoder(nn.Module):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.encode, self.decode = nn.Linear(cfg.dim, cfg.code), nn.Linear(cfg.code, cfg.dim)

    def item_counts(self, batch: dict) -> dict[str, int]:
        return {"recon": batch["x"].numel()}

    def forward(self, batch: dict) -> StepOutput:
        error = (self.decode(self.encode(batch["x"])) - batch["x"]) ** 2
        return StepOutput({"recon": LossTerm(error.sum(), error.numel())})


def load_toy(run: RunFolder, device: str = "cpu") -> LoadedRun:
    cfg = run.config(ToyConfig)
    model = ToyAutoencoder(cfg)
    model.load_state_dict(run.weights())
    return LoadedRun(run, cfg, model.to(device).eval())


TOY = Recipe(
    name="toy",
    kind="pretraining",
    arch="toy",
    summary="a linear autoencoder on random vectors (the worked example)",
    config_class=ToyConfig,
    presets={"tiny": ToyConfig},
    setup=lambda cfg, run: {},
    data=lambda cfg, run, state: Plan(ToyBatches(cfg), "toy autoencoder"),
    build_model=lambda cfg, state: ToyAutoencoder(cfg),
    load=load_toy,
)


# ---------------------------------------------------------------- ... and one registry line
@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(RECIPES, "toy", TOY)


def test_every_architecture_is_in_the_registry():
    assert pretraining_archs() == ["bert", "gpt", "simclr", "byol"]
    assert RECIPES["finetune"].kind == "finetune"


def test_pretrain_help_lists_every_architecture(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = capsys.readouterr().out
    for arch in pretraining_archs():
        assert f"  {arch} " in out and RECIPES[arch].summary[:30] in " ".join(out.split())


def test_unknown_arch_names_the_choices(capsys):
    assert main(["pretrain", "--arch", "nope", "--out", "x"]) == 2
    assert "--arch nope: expected one of bert, gpt, simclr, byol" in capsys.readouterr().err


def test_a_new_recipe_trains_resumes_and_loads_through_the_cli(tmp_path, toy_registered, capsys):
    run_dir = tmp_path / "toy"
    with pytest.raises(SystemExit):
        main(["pretrain", "--arch", "toy", "--help"])
    assert "--dim" in capsys.readouterr().out  # the recipe's config became flags
    assert main(["pretrain", "--arch", "toy", "--out", str(run_dir), "train.steps=20"]) == 0
    folder = RunFolder.open(run_dir)
    assert (folder.kind, folder.arch) == ("pretraining", "toy")
    assert recipe_of(folder) is TOY
    # --resume reads the arch from the saved config and continues from the step-20 checkpoint
    assert main(["pretrain", "--out", str(run_dir), "--resume", "train.steps=30"]) == 0
    loaded = load_run(run_dir)
    assert isinstance(loaded.model, ToyAutoencoder) and not loaded.model.training
    cfg = loaded.config
    held_out = ToyBatches(cfg).eval_batches(4)
    start = initialised_model(TOY, cfg)
    with torch.no_grad():
        before = sum(float(start(b).terms["recon"].loss_sum) for b in held_out)
        after = sum(float(loaded.model(b).terms["recon"].loss_sum) for b in held_out)
    assert after < 0.5 * before  # it learned the 2-dimensional structure


def test_a_run_that_fails_in_setup_leaves_no_marker(tmp_path, toy_registered):
    def failing_setup(cfg, run):
        raise FileNotFoundError("no data")

    broken = Recipe(**{**TOY.__dict__, "setup": failing_setup})
    RECIPES["toy"] = broken
    with pytest.raises(FileNotFoundError):
        main(["pretrain", "--arch", "toy", "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r" / "run.json").exists()
