"""The registry of run types: every architecture or run type is one `Recipe` (recipes/recipe.py)
registered here, and one lifecycle (`run_recipe`, recipes/base.py) runs any of them.

    bert       recipes/text.py      BERT encoder: masked LM, NSP, SOP
    gpt        recipes/text.py      GPT decoder: next-token prediction
    simclr     recipes/vision.py    SimCLR on images
    byol       recipes/vision.py    BYOL on images
    tera       recipes/audio.py     TERA on speech: masked log-mel frame reconstruction
    apc        recipes/audio.py     APC on speech: predict a later log-mel frame
    finetune   recipes/finetune.py  an encoder and a fresh task head, trained on labels

Adding a run type is one module that builds a `Recipe` and one line in `RECIPES`; the CLI reads
its `--arch` choices, presets, flags and help from here. Importing the registry imports no torch,
so every `selfsup COMMAND --help` stays fast: a built-in recipe's config, presets and `Recipe` are
in recipes/NAME_config.py, and the functions it names in recipes/NAME.py are imported when a run
starts (`LazyFunction`); `run_recipe` and `initialised_model` are imported on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfsup.errors import UserError
from selfsup.recipes import audio_config, finetune_config, text_config, vision_config
from selfsup.recipes.recipe import LoadedRun, Plan, Recipe

if TYPE_CHECKING:
    from selfsup.runs import RunFolder

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        text_config.BERT,
        text_config.GPT,
        vision_config.SIMCLR,
        vision_config.BYOL_RECIPE,
        audio_config.TERA,
        audio_config.APC,
        finetune_config.FINETUNE,
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


def __getattr__(name: str) -> Any:
    """`run_recipe` and `initialised_model` (recipes/base.py) import torch: loaded when first
    asked for, so importing the registry does not."""
    if name in ("run_recipe", "initialised_model"):
        from selfsup.recipes import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pretraining_archs() -> list[str]:
    """The --arch choices of `selfsup pretrain`: every registered pretraining recipe."""
    return [name for name, recipe in RECIPES.items() if recipe.kind == "pretraining"]


def pretrain(cfg: Any, run_dir: str | Path, resume: bool = False) -> dict[str, float]:
    """Pretrain with the recipe that `cfg.arch` names (any config of a pretraining recipe)."""
    from selfsup.recipes.base import run_recipe

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
    from selfsup.runs import RunFolder

    folder = run if isinstance(run, RunFolder) else RunFolder.open(run)
    return recipe_of(folder).load(folder, device)
