"""The registry of run types: every architecture or run type is one `Recipe` (recipes/base.py)
registered here, and one lifecycle (`run_recipe`) runs any of them.

    bert       recipes/text.py      BERT encoder: masked LM, NSP, SOP
    gpt        recipes/text.py      GPT decoder: next-token prediction
    simclr     recipes/vision.py    SimCLR on images
    byol       recipes/vision.py    BYOL on images
    tera       recipes/audio.py     TERA on speech: masked log-mel frame reconstruction
    apc        recipes/audio.py     APC on speech: predict a later log-mel frame
    finetune   recipes/finetune.py  an encoder and a fresh task head, trained on labels

Adding a run type is one module that builds a `Recipe` and one line in `RECIPES`; the CLI reads
its `--arch` choices, presets, flags and help from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfsup.errors import UserError
from selfsup.recipes import audio, finetune, text, vision
from selfsup.recipes.base import LoadedRun, Plan, Recipe, initialised_model, run_recipe
from selfsup.runs import RunFolder

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        text.BERT,
        text.GPT,
        vision.SIMCLR,
        vision.BYOL_RECIPE,
        audio.TERA,
        audio.APC,
        finetune.FINETUNE,
    )
}

__all__ = [
    "RECIPES",
    "LoadedRun",
    "Plan",
    "Recipe",
    "initialised_model",
    "load_run",
    "pretrain",
    "pretraining_archs",
    "recipe_of",
    "run_recipe",
]


def pretraining_archs() -> list[str]:
    """The --arch choices of `selfsup pretrain`: every registered pretraining recipe."""
    return [name for name, recipe in RECIPES.items() if recipe.kind == "pretraining"]


def pretrain(cfg: Any, run_dir: str | Path, resume: bool = False) -> dict[str, float]:
    """Pretrain with the recipe that `cfg.arch` names (any config of a pretraining recipe)."""
    return run_recipe(RECIPES[cfg.arch], cfg, run_dir, resume)


def recipe_of(run: RunFolder) -> Recipe:
    """The recipe that wrote a run folder (from run.json's kind and arch)."""
    if run.kind == "finetune":
        return RECIPES["finetune"]
    if run.kind == "pretraining" and run.arch in pretraining_archs():
        return RECIPES[run.arch]
    raise UserError(f"{run.path}: a {run.arch} {run.kind} run, which this version cannot read")


def load_run(run: str | Path | RunFolder, device: str = "cpu") -> LoadedRun:
    """Any run, reopened by its own recipe: config, model in eval mode, tokenizer or task."""
    folder = run if isinstance(run, RunFolder) else RunFolder.open(run)
    return recipe_of(folder).load(folder, device)
