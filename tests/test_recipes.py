"""The registries, shown by worked examples: a new architecture is one module that builds a
`Recipe` and one registry line, and then `selfsup pretrain --arch NAME` trains it with the same
run folder, checkpoints, resume and loading as every other; a new pretraining objective and a new
built-in data set are likewise one definition and one line."""

import json
import random
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.batch import IGNORE_INDEX
from selfsup.cli import main
from selfsup.config import option
from selfsup.data.catalog import BUILTIN_TASKS
from selfsup.data.labelled import TaskData, TextExample
from selfsup.objectives.base import LossTerm, StepOutput
from selfsup.objectives.bert_pretraining import OBJECTIVES
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
    assert pretraining_archs() == ["bert", "gpt", "simclr", "byol", "tera", "apc"]
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


# ---------------------------------------------------------------- a new objective: one class + one line
class MaskedPositionDetection(nn.Module):
    """Which input tokens were hidden? ELECTRA's replaced-token detection, simplified: the
    corruption is MLM's own masking, so the batch builder needs no change."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.head = nn.Linear(cfg.hidden_size, 2)

    def item_count(self, batch: dict) -> int:
        return int(batch["attention_mask"].sum())

    def forward(self, encoder, hidden: torch.Tensor, batch: dict) -> LossTerm:
        real = batch["attention_mask"].bool()
        labels = (batch["mlm_labels"] != IGNORE_INDEX).long()[real]
        logits = self.head(hidden)[real]
        loss = F.cross_entropy(logits.float(), labels, reduction="sum")
        return LossTerm(loss, int(real.sum()), (logits.argmax(-1) == labels).sum())


def test_a_new_objective_is_one_registry_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(OBJECTIVES, "detect", MaskedPositionDetection)
    out = tmp_path / "run"
    argv = ["pretrain", "--preset", "tiny", "--objectives", "mlm,detect", "--out", str(out)]
    assert main([*argv, "train.steps=80", "train.lr=5e-3", "train.progress=false"]) == 0
    final = json.loads((out / "final_metrics.json").read_text())
    # held-out masks hide 15% of the tokens, 80% of those behind [MASK]: spotting [MASK] alone
    # beats the 0.85 "nothing was hidden" guess
    assert final["eval_detect_accuracy"] > 0.9
    loaded = load_run(out)
    width = loaded.config.model.hidden_size
    assert loaded.model.objectives["detect"].head.weight.shape == (2, width)


# ---------------------------------------------------------------- a new data set: one function + one line
def toy_reviews() -> TaskData:
    """Reviews whose label is the character they end with: learnable from one token."""
    rng = random.Random(0)
    texts = ["".join(rng.choice("天地人你我他山水") for _ in range(6)) for _ in range(300)]
    examples = [
        TextExample(t + mark, label)
        for t, (mark, label) in zip(texts, rng.choices([("好", "pos"), ("差", "neg")], k=300))
    ]
    splits = {"train": examples[:200], "dev": examples[200:250], "test": examples[250:]}
    return TaskData("toy-reviews", "classification", splits, "test", {}, "generated in the test")


def test_a_new_builtin_data_set_is_one_registry_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(BUILTIN_TASKS, "toy-reviews", toy_reviews)
    out = tmp_path / "ft"
    argv = ["finetune", "--task", "toy-reviews", "--preset", "tiny", "--out", str(out)]
    assert main([*argv, "train.steps=60", "train.lr=3e-3", "train.progress=false"]) == 0
    final = json.loads((out / "final_metrics.json").read_text())
    assert final["test_accuracy"] > 0.9  # the last character decides the label
    assert RunFolder.open(out).labels()["source"] == "generated in the test"
