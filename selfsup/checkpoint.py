"""Checkpoints that survive kill -9, and hold no pickles.

A checkpoint is a folder `checkpoints/step-000123/` with the model and optimizer tensors in
safetensors files and everything else (step, RNG states as tensors, data position, metrics) in
JSON. Nested state (an optimizer's state dict) is flattened: each tensor is stored under its path and
replaced by a `{"__tensor__": path}` placeholder in the JSON. Nothing is unpickled on load.

Atomicity: the folder is written under a temporary name, then renamed; then the one-line file
`checkpoints/latest` is replaced atomically to point at it. A kill at any moment leaves `latest`
naming a complete checkpoint (or no `latest` at all before the first one).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from selfsup.errors import UserError
from selfsup.io import atomic_save_safetensors, atomic_write_json, atomic_write_text

TENSOR_KEY = "__tensor__"


def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """Replace every tensor in a nested dict/list by a placeholder; collect the tensors."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj
        return {TENSOR_KEY: path}
    if isinstance(obj, dict):
        return {
            str(k): flatten_state(v, tensors, f"{path}.{k}" if path else str(k))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [flatten_state(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    return obj


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {TENSOR_KEY}:
            return tensors[obj[TENSOR_KEY]]
        return {k: unflatten_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def optimizer_state_to_files(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], Any]:
    tensors: dict[str, torch.Tensor] = {}
    return tensors, flatten_state(optimizer.state_dict(), tensors)


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], layout: Any
) -> None:
    state = unflatten_state(layout, tensors)
    # JSON turned the integer parameter ids of "state" into strings
    state["state"] = {int(k): v for k, v in state["state"].items()}
    optimizer.load_state_dict(state)


def save_checkpoint(
    checkpoints_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    keep: int = 2,
) -> Path:
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoints_dir / f"step-{step:07d}"
    tmp = checkpoints_dir / f".tmp-step-{step:07d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    atomic_save_safetensors(tmp / "model.safetensors", model.state_dict())
    opt_tensors, opt_layout = optimizer_state_to_files(optimizer)
    atomic_save_safetensors(tmp / "optimizer.safetensors", opt_tensors)
    state_tensors: dict[str, torch.Tensor] = {}
    state_layout = flatten_state(trainer_state, state_tensors)
    atomic_save_safetensors(tmp / "state.safetensors", state_tensors)
    atomic_write_json(
        tmp / "state.json", {"step": step, "optimizer": opt_layout, "trainer": state_layout}
    )
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(checkpoints_dir / "latest", final.name + "\n")
    _prune(checkpoints_dir, keep)
    return final


def _prune(checkpoints_dir: Path, keep: int) -> None:
    done = sorted(p for p in checkpoints_dir.glob("step-*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in checkpoints_dir.glob(".tmp-step-*"):  # left by a killed writer
        shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    pointer = checkpoints_dir / "latest"
    if not pointer.exists():
        return None
    path = checkpoints_dir / pointer.read_text().strip()
    if not (path / "state.json").exists():
        raise UserError(f"{pointer}: names {path.name}, which is missing or incomplete")
    return path


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore model and optimizer in place; return the trainer state (step, RNG, metrics...)."""
    meta = json.loads((path / "state.json").read_text())
    model.load_state_dict(load_file(path / "model.safetensors"))
    load_optimizer_state(optimizer, load_file(path / "optimizer.safetensors"), meta["optimizer"])
    return unflatten_state(meta["trainer"], load_file(path / "state.safetensors"))
