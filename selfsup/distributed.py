"""More than one process: the process group, its two parallel modes, and what ranks share.

Launched by `torchrun` (which sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT),
`session` joins the process group: gloo on CPUs, NCCL on CUDA GPUs, each process on the GPU of
its LOCAL_RANK. Without those variables (or with WORLD_SIZE=1) every function here is the identity
of one process, so single-process training runs exactly the code it ran before this module.

What the ranks share and who does what (docs/DISTRIBUTED.md has the whole picture):

- data: every rank builds the step's whole batch (`data.batch(i)` is a pure function of i) and
  keeps its own rows (`selfsup.batch.shard_batch`), so the global batch, the masks and the order
  are those of one process, whatever the number of ranks;
- files: rank 0 alone writes (run folder, tokenizer and token stores, logs, plots, checkpoints);
  `main_first` runs the preparation of inputs on rank 0, then on the others, which find it done;
- gradients: `parallelize` wraps the model in DDP (replicated weights, all-reduced gradients) or
  shards it with FSDP2's `fully_shard` (each rank holds 1/N of weights, gradients and AdamW
  state; checkpoints go through torch.distributed.checkpoint, selfsup/checkpoint.py);
- faults: every collective of training waits at most `train.dist_timeout_s`; a peer that died
  (its sockets close) or stopped answering (the timeout) becomes `PeerLost`, a UserError: the CLI
  prints one line and exits non-zero, and the run continues from its newest checkpoint with
  `--resume`, on any number of ranks.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from selfsup.errors import UserError

Parallel = Literal["ddp", "fsdp"]

# How long the other ranks wait while rank 0 prepares the inputs (training a tokenizer and
# tokenizing a large corpus can take hours). A rank 0 that dies is noticed at once, as its
# sockets close; this bound only ends the wait for one that hangs.
PREPARE_TIMEOUT = timedelta(hours=24)

_control: Any = None  # a gloo group for Python objects (main_first), whatever the device


class PeerLost(UserError):
    """Another process of the run died or stopped answering: this one stops too."""


# ---------------------------------------------------------------- who am I
def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return rank() == 0


def launched_ranks() -> int:
    """How many processes the launcher started (torchrun's WORLD_SIZE; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_device(device: torch.device) -> torch.device:
    """`cuda` means this rank's GPU (LOCAL_RANK) once there are several ranks."""
    if device.type == "cuda" and device.index is None and launched_ranks() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of `rank`'s dropout stream from optimizer step `step` on: the run's seed for rank
    0 at the start (one process trains as it always did), another number for any other rank or
    step, so no two ranks draw the same dropout masks for their different rows."""
    if rank == 0 and step == 0:
        return seed
    digest = hashlib.sha256(f"{seed}/{rank}/{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# ---------------------------------------------------------------- the process group
def _peer_lost(error: BaseException) -> PeerLost:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    reason = re.sub(r"^\[[^\]]*\]\s*", "", reason)[:160]  # gloo's "[source.cc:553] " prefix
    return PeerLost(
        f"rank {rank()} of {world_size()}: another process of this run died or stopped "
        f"answering ({reason}); start all of them again with --resume to continue from the "
        "newest checkpoint"
    )


def _is_collective_failure(error: BaseException) -> bool:
    """A failed or timed-out collective: c10d's own errors, and the RuntimeErrors that autograd
    raises for one that failed inside backward (DDP's gradient all-reduce)."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        mark in text
        for mark in (
            "gloo",
            "nccl",
            "c10d",
            "connection closed",
            "timed out",
            "timeout",
            "pair closure",
        )
    )


@contextmanager
def session(device: torch.device, batch_size: int, timeout_s: float) -> Iterator[None]:
    """Join the process group torchrun set up (a no-op for one process, or when the caller has
    joined one already); leave it at the end. `batch_size` items of every micro-batch are split
    evenly over the ranks, so it must be a multiple of their number."""
    if launched_ranks() == 1 or dist.is_initialized():
        yield
        return
    global _control
    if device.type == "cuda":
        torch.cuda.set_device(rank_device(device))
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        _control = dist.new_group(backend="gloo", timeout=PREPARE_TIMEOUT)
    except (dist.DistError, RuntimeError, ValueError) as error:
        raise UserError(f"cannot join the other processes ({error})") from None
    try:
        if batch_size % world_size():
            raise UserError(
                f"train.batch_size={batch_size} cannot be split evenly over {world_size()} "
                "processes; make it a multiple of their number"
            )
        yield
    except UserError:
        raise
    except Exception as error:
        if _is_collective_failure(error):
            raise _peer_lost(error) from None
        raise
    finally:
        _control = None
        try:
            dist.destroy_process_group()
        except Exception:  # a group a dead peer broke: nothing left to tidy
            pass


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0, then on the other ranks: rank 0 creates the run folder and
    prepares the inputs (tokenizer, token stores, features), the others find them ready and only
    read. A failure on rank 0 is raised on every rank, with rank 0's message."""
    if world_size() == 1:
        yield
        return
    outcome: list[Any] = [None]
    if not is_main():
        dist.broadcast_object_list(outcome, src=0, group=_control)
        if outcome[0] is not None:
            raise UserError(f"rank 0 stopped: {outcome[0]}")
        yield
        return
    try:
        yield
    except BaseException as error:
        outcome[0] = str(error) if isinstance(error, UserError) else repr(error)
        dist.broadcast_object_list(outcome, src=0, group=_control)
        raise
    dist.broadcast_object_list(outcome, src=0, group=_control)


# ---------------------------------------------------------------- collectives the loop needs
def _collective_device() -> torch.device:
    """Where a collective's tensors must be: NCCL reduces CUDA tensors only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(values: list[float]) -> list[float]:
    """Each value summed over the ranks (float64: exact for counts)."""
    if world_size() == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return total.tolist()


def all_true(flag: bool) -> bool:
    """Whether `flag` holds on every rank."""
    return flag if world_size() == 1 else all_sum([float(not flag)])[0] == 0


def main_says(flag: bool) -> bool:
    """Rank 0's `flag`, on every rank: for a decision that ranks would not make alike (one read
    from a clock) and that leads to collectives (a checkpoint)."""
    if world_size() == 1:
        return flag
    value = torch.tensor([float(flag)], device=_collective_device())
    dist.broadcast(value, src=0)
    return bool(value.item())


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


class _GatherRows(torch.autograd.Function):
    """All-gather with a gradient: forward concatenates every rank's rows; backward gives each
    rank the gradient of the sum of all ranks' losses with respect to its own rows (every rank's
    loss reads every row, so the gradients are summed over ranks: an all-reduce)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.dim = dim
        return torch.cat(parts, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(world_size(), ctx.dim)[rank()], None


def gather_rows(x: torch.Tensor, batch: dict, dim: int = 0) -> tuple[torch.Tensor, int]:
    """(every rank's rows of `x` along `dim`, where this rank's start) for a batch cut by
    `shard_batch`; (x, 0) for a whole batch. The gradient flows back to each rank's rows."""
    if "shard" not in batch:
        return x, 0
    return _GatherRows.apply(x, dim), rank() * x.shape[dim]


# ---------------------------------------------------------------- the parallel modes
def _fully_shard(model: nn.Module, device: torch.device) -> nn.Module:
    """FSDP2: each block of every ModuleList (the transformer layers) is one unit, gathered for
    its own forward and backward only; the root holds the rest (embeddings, heads, a small CNN).
    Weights tied across units would break, which is why the embeddings stay in the root."""
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        raise UserError("train.parallel=fsdp needs torch >= 2.6 (FSDP2's fully_shard)") from None
    mesh = init_device_mesh(device.type, (world_size(),))
    blocks = [b for m in model.modules() if isinstance(m, nn.ModuleList) for b in m]
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def parallelize(model: nn.Module, parallel: Parallel, device: torch.device) -> nn.Module:
    """The module the loop calls forward on: `model` itself for one process, a DDP wrapper of it
    (hooks, checkpoints and evaluation keep using `model`), or `model` sharded in place."""
    if world_size() == 1:
        return model
    if device.type != "cuda" and any(isinstance(m, nn.SyncBatchNorm) for m in model.modules()):
        raise UserError(
            "model.norm=syncbatch needs CUDA GPUs (torch's SyncBatchNorm has no CPU kernel); "
            "use batch (each process normalises its own images) or group"
        )
    if parallel == "fsdp":
        return _fully_shard(model, device)
    # some parameters may take part in no loss (BERT's pooler under MLM alone): DDP finds them
    # by walking the autograd graph after each forward (a fraction of a millisecond at these
    # sizes) and leaves their gradients None, as one process does. static_graph=True would skip
    # the walk, but gave wrong gradients for these models (torch 2.13, measured).
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True,
    )


def is_sharded(model: nn.Module) -> bool:
    """Whether `model` was sharded by `fully_shard` (its weights are DTensors)."""
    if not dist.is_initialized():  # one process never shards: skip importing DTensor
        return False
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a sharded tensor (DTensor); any other tensor as it is."""
    return t.to_local() if hasattr(t, "to_local") else t


def whole(t: torch.Tensor) -> torch.Tensor:
    """The full value of a DTensor (e.g. the gradient norm of a sharded model); else `t`."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def gradient_sync(wrapped: nn.Module, sync: bool):
    """Context for one micro-batch's forward and backward: gradients are averaged over the ranks
    only on the step's last micro-batch (`sync`), the others accumulate locally."""
    if isinstance(wrapped, nn.parallel.DistributedDataParallel):
        return nullcontext() if sync else wrapped.no_sync()
    if hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2
        wrapped.set_requires_gradient_sync(sync)
    return nullcontext()


@contextmanager
def unsharded(model: nn.Module) -> Iterator[None]:
    """The root's weights gathered for the block, so that code calling a submodule or a method
    other than forward (evaluation extras, a k-NN monitor, test predictions) sees whole weights;
    the blocks of a sharded model gather themselves in their forward. A no-op unless sharded."""
    if not hasattr(model, "unshard"):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()
