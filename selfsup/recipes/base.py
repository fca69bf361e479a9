"""The one lifecycle that runs any recipe (what a recipe is: selfsup/recipes/recipe.py).

A recipe names its config class and presets and supplies four functions; `run_recipe` does
everything else, the same way for all of them:

    run folder   create (or reopen with --resume), locked for this process until the run ends:
                 a second process on it is refused (selfsup/runs.py)
    marker       run.json, then config.json as given, before any long work: a run stopped at any
                 moment resumes with its own config; on --resume the saved config must match
                 (selfsup.config.run_config_changes)
    config       deep-copied, checked by recipe.setup, which also reads the run's inputs and
                 completes the config from them (vocabulary size, image shape, task kind), then
                 saved again complete; a run whose setup fails is removed again, so it leaves
                 no half-made run behind (a stopped one stays, to be resumed or started over)
    memory       a model whose weights, gradients and AdamW state alone exceed the device's
                 memory is refused before any long work (selfsup/memory.py)
    data         recipe.data: the batch source, evaluation extras and hooks (a Plan)
    model        torch.manual_seed(train.seed), then recipe.build_model: the same weights for
                 the same seed, whatever ran before
    training     selfsup.trainer.train: checkpoints, resume, metrics.jsonl
    results      loss_curve.png, recipe.finish (perplexity, test predictions, ...),
                 final_metrics.json

Under torchrun every rank runs this lifecycle (selfsup/distributed.py): rank 0 claims the folder
and prepares the inputs first, the other ranks then set up and read the data rank 0 left (their
setup finds the tokenizer, token stores and features built); all train; rank 0 alone writes.
"""

from __future__ import annotations

import copy
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup import distributed
from selfsup.config import run_config_changes, save_config, save_run_config
from selfsup.io import atomic_write_json
from selfsup.memory import check_model_fits
from selfsup.recipes.recipe import LoadedRun, Plan, Recipe  # noqa: F401 (re-export)
from selfsup.reporting import plot_loss_curve
from selfsup.runs import CONFIG, RunFolder
from selfsup.trainer import resolve_device, train


def initialised_model(recipe: Recipe, cfg: Any, state: dict[str, Any] | None = None) -> nn.Module:
    """The recipe's model as training starts it: seeded from train.seed, so the same config gives
    the same initial weights (also the "random init" arm of a comparison)."""
    torch.manual_seed(cfg.train.seed)
    return recipe.build_model(cfg, state or {})


def run_recipe(
    recipe: Recipe, cfg: Any, run_dir: str | Path, resume: bool = False
) -> dict[str, float]:
    """Create (or reopen) the run folder, train, and return the final metrics."""
    cfg = copy.deepcopy(cfg)
    device = resolve_device(cfg.train.device)
    with distributed.session(device, cfg.train.batch_size, cfg.train.dist_timeout_s):
        with ExitStack() as held:
            started = time.perf_counter()  # the run's wall time includes preparing its data
            with distributed.main_first():
                if distributed.is_main():  # locked for this process until the run ends
                    run = held.enter_context(RunFolder.claim(run_dir, resume))
                    state = _set_up(recipe, cfg, run, resume)
                else:  # rank 0 made the folder: complete the config the same way, write nothing
                    run = RunFolder(Path(run_dir))
                    state = recipe.setup(cfg, run)
                plan = recipe.data(cfg, run, state)
            return _train(recipe, cfg, run, plan, resume, started)


def _set_up(recipe: Recipe, cfg: Any, run: RunFolder, resume: bool) -> dict[str, Any]:
    """Marker and config first, then recipe.setup; the completed config saved last."""
    config, changes_before_setup = run.path / CONFIG, []
    if resume:
        # the saved config is the complete one, or the one written before a stopped setup
        # completed it: the config asked for may equal either
        changes_before_setup = run_config_changes(cfg, config)
    else:
        run.begin(recipe.kind, recipe.arch)
        save_config(cfg, config)  # before any long work: --resume finds the run's own config
    try:
        state = recipe.setup(cfg, run)
        # the config is complete (vocabulary, image shape): refuse a model that can never fit
        # before the long work (tokenizing the corpus, encoding the task); under FSDP each
        # device holds a shard only
        if not (cfg.train.parallel == "fsdp" and distributed.world_size() > 1):
            check_model_fits(
                lambda: recipe.build_model(cfg, state), resolve_device(cfg.train.device)
            )
    except Exception:
        if not resume:
            run.discard()  # a run that fails on its inputs leaves no half-made run behind
        raise
    save_run_config(cfg, config, resume=bool(changes_before_setup))
    return state


def _train(
    recipe: Recipe, cfg: Any, run: RunFolder, plan: Plan, resume: bool, started: float
) -> dict[str, float]:
    model = initialised_model(recipe, cfg, plan.state)

    def plot(_step: int) -> None:
        if distributed.is_main():
            plot_loss_curve(run.path / "metrics.jsonl", run.path / "loss_curve.png", plan.title)

    metrics = train(
        model,
        plan.data,
        cfg.train,
        run.path,
        resume=resume,
        after_step=plan.after_step,
        eval_extra=plan.eval_extra,
        on_checkpoint=plot,
        started=started,
    )
    plot(cfg.train.steps)
    with distributed.unsharded(model):  # test predictions call more than forward
        metrics = recipe.finish(cfg, run, model, plan, metrics)
    if distributed.is_main():
        atomic_write_json(run.path / "final_metrics.json", metrics)
    return metrics
