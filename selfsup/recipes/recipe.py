"""What a recipe is: one run type, its config and presets, its command-line help, its functions.

A recipe is one run type: BERT or GPT pretraining on text, SimCLR or BYOL on images, fine-tuning
an encoder on labels (and any added later). It names its config class and presets and supplies
four functions; `run_recipe` (selfsup/recipes/base.py) does everything else, the same way for all
of them (torchtitan's TrainSpec and solo-learn's method registry play this part in those
projects).

This module imports no torch, and neither do the built-in recipes' configs and presets
(selfsup/recipes/*_config.py): the registry (`selfsup.recipes.RECIPES`) and every `selfsup
COMMAND --help` built from it load in a fraction of a second. Their functions live in the torch
modules (text.py, vision.py, audio.py, finetune.py) and are named with `LazyFunction`, which
imports the module at the first call, when a run starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from selfsup.runs import RunFolder
    from selfsup.trainer import BatchSource


@dataclass
class Plan:
    """What recipe.data hands to the training loop, and what recipe.finish needs afterwards."""

    data: BatchSource
    title: str  # the loss curve's title
    eval_extra: Callable[[nn.Module], dict[str, float]] | None = None  # metrics beside eval loss
    after_step: Callable[[nn.Module, int], None] | None = None  # e.g. BYOL's EMA target update
    state: dict[str, Any] = field(default_factory=dict)  # recipe-private, for build_model / finish


@dataclass
class LoadedRun:
    """A finished (or checkpointed) run reopened for use: what `Recipe.load` returns."""

    folder: RunFolder
    config: Any
    model: nn.Module  # in eval mode, on the device asked for
    tokenizer: Any = None  # text runs
    task: Any = None  # fine-tuned runs: the task (tokenizer, labels, QA windows)


@dataclass(frozen=True)
class Recipe:
    """One run type. `setup(cfg, run) -> state` checks the config, reads the inputs and completes
    the config (nothing in the folder marks it a run yet); `data(cfg, run, state) -> Plan`;
    `build_model(cfg, state) -> nn.Module` (called under the seed); `finish(cfg, run, model, plan,
    metrics) -> metrics`; `load(run, device)` reopens a finished run for use."""

    name: str  # the registry key: --arch of `selfsup pretrain`, or "finetune"
    kind: str  # run.json's kind: "pretraining" or "finetune"
    arch: str  # run.json's arch
    summary: str  # one line for --help
    config_class: type
    presets: Mapping[str, Callable[[], Any]]  # the first is the default
    setup: Callable[[Any, RunFolder], dict[str, Any]]
    data: Callable[[Any, RunFolder, dict[str, Any]], Plan]
    build_model: Callable[[Any, dict[str, Any]], nn.Module]
    load: Callable[[RunFolder, str], LoadedRun]
    finish: Callable[[Any, RunFolder, nn.Module, Plan, dict[str, float]], dict[str, float]] = (
        lambda cfg, run, model, plan, metrics: metrics
    )
    # CLI shortcuts: flag -> config key (e.g. --corpus -> data.corpus), and the --help epilog
    shortcuts: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    epilog: str = ""

    @property
    def default_preset(self) -> str:
        return next(iter(self.presets))


@dataclass(frozen=True)
class LazyFunction:
    """The function `name` of `module`, which is imported at the first call (and the function
    looked up at each one): a recipe names the functions of its torch module without importing
    torch itself. Plain data, so a recipe still pickles and prints what it calls."""

    module: str
    name: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)


def lazy_recipe(
    module: str, data: str = "data", finish: str | None = None, **fields: Any
) -> Recipe:
    """A Recipe whose setup, data, build_model, load (and finish, when named) are the functions of
    those names in `module`, imported at their first call; `fields` are the Recipe's others."""
    functions = {name: name for name in ("setup", "build_model", "load")} | {"data": data}
    if finish is not None:
        functions["finish"] = finish
    return Recipe(**{key: LazyFunction(module, name) for key, name in functions.items()}, **fields)
