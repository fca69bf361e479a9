"""Checkpoints that survive kill -9, and hold no pickles.

A checkpoint is a folder `checkpoints/step-000123/` with the model and optimizer tensors in
safetensors files and everything else (step, RNG states as tensors, data position, metrics) in
JSON. Nested state (an optimizer's state dict) is flattened: each tensor is stored under its path and
replaced by a `{"__tensor__": path}` placeholder in the JSON. Nothing is unpickled on load.

Atomicity: the folder is written under a temporary name, then renamed; then the one-line file
`checkpoints/latest` is replaced atomically to point at it. A kill at any moment leaves every
`step-*` folder complete (and `latest` naming one of them, or no `latest` before the first one).

Integrity: `checksums.json`, written last into the folder, holds the sha256 of each other file;
loading checks them before any tensor reaches the model. A resumed run starts from the newest
checkpoint that passes (a warning names any newer one that failed: flipped bytes, a truncated
file). The final weights get the same check: `save_checked_safetensors` records their sha256 in
the `checksums.json` beside them, `load_checked_safetensors` verifies it. A folder without
`checksums.json` (written before checksums existed) is read unchecked.

Several processes (selfsup/distributed.py): a replicated model (one process, or DDP) is written by
rank 0 alone, in the layout above, and every rank reads it. A model sharded by FSDP is written by
every rank at once through torch.distributed.checkpoint (DCP): the folder then holds DCP's
`.metadata` and one `__R_0.distcp` file per rank in place of model.safetensors and
optimizer.safetensors, with the optimizer state keyed by parameter name; rank 0 adds state.json,
state.safetensors and the checksums of every file, and renames the folder as above. DCP reshards
on load, so either layout resumes on any number of ranks, sharded or not: a sharded model takes a
full checkpoint by sharding it, a replicated one takes a sharded checkpoint whole.
`consolidate_checkpoint` writes a sharded checkpoint's full weights as the usual
model.safetensors; `checkpoint_weights` reads them from either layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from selfsup import distributed
from selfsup.errors import UserError
from selfsup.io import (
    atomic_save_safetensors,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)

TENSOR_KEY = "__tensor__"
CHECKSUMS = "checksums.json"
SHARDED_MARK = ".metadata"  # written by DCP: the folder holds a sharded model and optimizer
_STEP_FOLDER = re.compile(r"step-(\d+)")


# ---------------------------------------------------------------- checksums
class CorruptFile(UserError):
    """A file whose bytes differ from the sha256 recorded for it, or that cannot be parsed."""


def _read_checksums(folder: Path) -> dict[str, str]:
    """{file name: sha256} of a folder; empty when it has no checksums.json (an older run)."""
    path = folder / CHECKSUMS
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptFile(f"{path}: unreadable ({error})") from None
    if not isinstance(recorded, dict):
        raise CorruptFile(f"{path}: unreadable (not a JSON object)")
    return recorded


def _checksums_or_empty(folder: Path) -> dict[str, str]:
    try:
        return _read_checksums(folder)
    except CorruptFile:  # about to be rewritten
        return {}


def _sha256(path: Path) -> str:
    """A file's sha256, read in 1 MiB blocks (a file of any size); a CorruptFile if unreadable."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as error:
        raise CorruptFile(f"{path}: cannot read ({error.strerror})") from None
    return digest.hexdigest()


def check_file(path: Path) -> None:
    """A CorruptFile unless `path` can be read and matches the sha256 that the checksums.json
    beside it records."""
    expected = _read_checksums(path.parent).get(path.name)
    actual = _sha256(path)  # read even when unrecorded: a file that cannot be read fails
    if expected is not None and actual != expected:
        raise CorruptFile(
            f"{path}: corrupt (its sha256 differs from the one recorded in {CHECKSUMS} when it "
            "was written)"
        )


def load_checked_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, checked (a truncated file fails even unrecorded)."""
    check_file(path)
    try:
        return load_file(path)
    except Exception as error:  # safetensors raises its own error types for a damaged header
        raise CorruptFile(f"{path}: not a readable safetensors file ({error})") from None


def save_checked_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write a safetensors file and record its sha256 in the checksums.json beside it. The old
    record goes first, so a kill between the two writes leaves the file unchecked, not refused."""
    path = Path(path)
    recorded = {k: v for k, v in _checksums_or_empty(path.parent).items() if k != path.name}
    if (path.parent / CHECKSUMS).exists():
        atomic_write_json(path.parent / CHECKSUMS, recorded)
    recorded[path.name] = atomic_save_safetensors(path, tensors)
    atomic_write_json(path.parent / CHECKSUMS, recorded)


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


def _dcp_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Model and optimizer state as DCP saves and loads it: keyed by parameter name, each rank's
    shards as DTensors (whole tensors for a replicated model)."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    return {
        "model": get_model_state_dict(model),
        "optimizer": get_optimizer_state_dict(model, optimizer),
    }


def save_checkpoint(
    checkpoints_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` (atomically, checksummed) and keep the `keep` newest. Call it on
    every rank: a replicated model is written by rank 0 alone, a sharded one by all (DCP)."""
    sharded = distributed.is_sharded(model)
    final = checkpoints_dir / f"step-{step:07d}"
    if not (sharded or distributed.is_main()):
        return final
    # every rank of a sharded save writes into the same folder, so its name cannot hold a pid
    tmp = checkpoints_dir / f".tmp-step-{step:07d}-{'sharded' if sharded else os.getpid()}"
    if distributed.is_main():
        checkpoints_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    checksums: dict[str, str] = {}
    opt_layout = None  # a sharded optimizer is in DCP's files
    if sharded:
        distributed.barrier()  # the folder exists, emptied, before any rank writes into it
        import torch.distributed.checkpoint as dcp

        # returns on rank 0 once every rank's shards and DCP's .metadata are written
        dcp.save(_dcp_state(model, optimizer), checkpoint_id=tmp)
        if not distributed.is_main():
            return final
        checksums = {f.name: _sha256(f) for f in sorted(tmp.iterdir())}
    else:
        checksums["model.safetensors"] = atomic_save_safetensors(
            tmp / "model.safetensors", model.state_dict()
        )
        opt_tensors, opt_layout = optimizer_state_to_files(optimizer)
        checksums["optimizer.safetensors"] = atomic_save_safetensors(
            tmp / "optimizer.safetensors", opt_tensors
        )
    state_tensors: dict[str, torch.Tensor] = {}
    state_layout = flatten_state(trainer_state, state_tensors)
    checksums["state.safetensors"] = atomic_save_safetensors(
        tmp / "state.safetensors", state_tensors
    )
    meta = {"step": step, "optimizer": opt_layout, "trainer": state_layout}
    meta_bytes = (json.dumps(meta, indent=2) + "\n").encode("utf-8")
    atomic_write_bytes(tmp / "state.json", meta_bytes)
    checksums["state.json"] = hashlib.sha256(meta_bytes).hexdigest()
    atomic_write_json(tmp / CHECKSUMS, checksums)  # last: the folder is complete
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


def checkpoint_folders(checkpoints_dir: Path) -> list[Path]:
    """The step-* folders, newest first."""
    if not checkpoints_dir.is_dir():
        return []
    found = [
        (int(match.group(1)), path)
        for path in checkpoints_dir.iterdir()
        if path.is_dir() and (match := _STEP_FOLDER.fullmatch(path.name))
    ]
    return [path for _, path in sorted(found, reverse=True)]


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest checkpoint folder (unchecked; `load_newest_intact` checks), or None."""
    folders = checkpoint_folders(checkpoints_dir)
    return folders[0] if folders else None


def _read_meta(path: Path) -> dict[str, Any]:
    """A checkpoint's state.json, checked and parsed."""
    check_file(path / "state.json")
    try:
        meta = json.loads((path / "state.json").read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptFile(f"{path / 'state.json'}: unreadable ({error})") from None
    if not isinstance(meta, dict) or not {"optimizer", "trainer"} <= set(meta):
        raise CorruptFile(f"{path / 'state.json'}: not a checkpoint's state")
    return meta


def is_sharded_checkpoint(path: Path) -> bool:
    return (path / SHARDED_MARK).exists()


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict, dict]:
    """Every file of a checkpoint, checked: (state.json, model, optimizer and state tensors);
    a CorruptFile for the first that fails."""
    meta = _read_meta(path)
    tensors = [
        load_checked_safetensors(path / name)
        for name in ("model.safetensors", "optimizer.safetensors", "state.safetensors")
    ]
    return meta, *tensors


def _check_sharded(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(state.json, state tensors) of a sharded checkpoint, once every file its checksums.json
    lists (every rank's shards) has been read and matched; a CorruptFile otherwise."""
    for name in _read_checksums(path):
        check_file(path / name)
    return _read_meta(path), load_checked_safetensors(path / "state.safetensors")


def _by_name(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> dict:
    """An optimizer state dict keyed by parameter position (torch's own, as saved by rank 0)
    re-keyed by parameter name, as torch.distributed.checkpoint.state_dict loads it."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    return {
        "state": {order[int(i)]: v for i, v in state["state"].items()},
        "param_groups": [
            {**group, "params": [order[i] for i in group["params"]]}
            for group in state["param_groups"]
        ],
    }


def _load_shards(state: dict, path: Path, partial: bool = False, alone: bool = False) -> None:
    """Fill `state` in place from a sharded checkpoint, resharded to this run's ranks (a
    collective), or read by this process alone (`alone`, or one process). `partial`: entries the
    checkpoint lacks keep their values."""
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():  # DCP warns that one process reads alone: it is meant to
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(
            state,
            checkpoint_id=path,
            planner=dcp.DefaultLoadPlanner(allow_partial_load=partial),
            no_dist=alone or distributed.world_size() == 1,
        )


def _restore(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Check every file of a checkpoint, then restore model and optimizer in place, whichever
    layout the folder and the model have; return the trainer state."""
    if is_sharded_checkpoint(path):
        meta, state_tensors = _check_sharded(path)
        from torch.distributed.checkpoint.state_dict import (
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        state = _dcp_state(model, optimizer)
        _load_shards({"model": state["model"]}, path)
        # AdamW keeps no state for a parameter that never had a gradient (BERT's pooler under
        # MLM alone), where the state to load into has one: those keep their empty start
        _load_shards({"optimizer": state["optimizer"]}, path, partial=True)
        set_model_state_dict(model, state["model"])
        set_optimizer_state_dict(model, optimizer, state["optimizer"])
    else:
        meta, model_state, opt_tensors, state_tensors = read_checkpoint(path)
        if distributed.is_sharded(model):  # a whole checkpoint, cut into this rank's shards
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            optimizer_state = unflatten_state(meta["optimizer"], opt_tensors)
            set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True))
            set_optimizer_state_dict(  # not strict: no state for a parameter without gradients
                model,
                optimizer,
                _by_name(model, optimizer, optimizer_state),
                options=StateDictOptions(full_state_dict=True, strict=False),
            )
        else:
            model.load_state_dict(model_state)
            load_optimizer_state(optimizer, opt_tensors, meta["optimizer"])
    return unflatten_state(meta["trainer"], state_tensors)


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore model and optimizer in place; return the trainer state (step, RNG, metrics...).
    Every file is checked before anything is restored (a CorruptFile otherwise)."""
    return _restore(path, model, optimizer)


def load_newest_intact(
    checkpoints_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any] | None:
    """Restore the newest checkpoint whose files pass their checks, warning on stderr about each
    newer one that does not; None when there is no checkpoint, a UserError when none is intact."""
    failures = []
    for path in checkpoint_folders(checkpoints_dir):
        try:
            state = _restore(path, model, optimizer)
        except CorruptFile as error:
            failures.append(str(error))
            continue
        for failure in failures:
            print(f"warning: {failure}; resuming from {path.name} instead", file=sys.stderr)
        return state
    if failures:
        raise UserError(
            f"{checkpoints_dir}: no intact checkpoint to resume from ({failures[0]}); start the "
            "run again in a new folder"
        )
    return None


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's whole state dict on rank 0 (gathered from the shards of a sharded model: call
    it on every rank then; the others get an empty dict)."""
    if not distributed.is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    whole = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=whole)


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """The whole model weights of a checkpoint folder, checked: its model.safetensors, or, for a
    sharded checkpoint without one, its shards joined in this process (no process group)."""
    if (path / "model.safetensors").exists() or not is_sharded_checkpoint(path):
        return load_checked_safetensors(path / "model.safetensors")
    _check_sharded(path)
    from torch.distributed.checkpoint import FileSystemReader

    stored = FileSystemReader(str(path)).read_metadata().state_dict_metadata
    weights = {
        key.removeprefix("model."): torch.empty(entry.size, dtype=entry.properties.dtype)
        for key, entry in stored.items()
        if key.startswith("model.") and hasattr(entry, "size")
    }
    _load_shards({"model": weights}, path, alone=True)
    return weights


def consolidate_checkpoint(path: Path) -> Path:
    """Write a sharded checkpoint's whole weights beside its shards as model.safetensors (what
    fill-mask, probe and `finetune --init` read), checksummed; return that file."""
    target = Path(path) / "model.safetensors"
    save_checked_safetensors(target, checkpoint_weights(Path(path)))
    return target
