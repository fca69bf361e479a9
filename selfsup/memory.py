"""Will a model fit? The memory its training needs, estimated before any weight is allocated; and
the shapes that keep a CPU run's resident memory flat while it trains (`pad_prediction_rows`).

The model is built on PyTorch's "meta" device (shapes, no storage), so the count is exact for any
recipe without a formula per architecture. Training in fp32 with AdamW holds for each trainable
parameter its weight, its gradient and AdamW's two moment estimates (4 x 4 = 16 bytes); a frozen
parameter or a buffer (BYOL's EMA target, BatchNorm statistics) holds only itself (4 bytes).
Activations come on top and depend on the batch, so they are left out: what is refused can never
fit, whatever the batch size.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from selfsup.batch import IGNORE_INDEX
from selfsup.errors import UserError

BYTES_TRAINABLE = 16  # fp32 weight + gradient + AdamW exp_avg + exp_avg_sq
BYTES_FROZEN = 4  # fp32 weight or buffer only


def training_bytes(model: nn.Module) -> int:
    """Bytes of weights, gradients and AdamW state that training `model` holds."""
    total = sum(b.numel() for b in model.buffers()) * BYTES_FROZEN
    for p in model.parameters():
        total += p.numel() * (BYTES_TRAINABLE if p.requires_grad else BYTES_FROZEN)
    return total


def _cgroup_limit() -> int | None:
    """The container's memory cap (cgroup v2, then v1), when there is one."""
    for name in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def device_memory(device: torch.device) -> tuple[int, str]:
    """(total bytes, a name for them) of the memory a model on `device` lives in."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return props.total_memory, f"the memory of {props.name}"
    total = 0
    try:  # Linux; os.sysconf elsewhere
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if not total:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    cap = _cgroup_limit()
    if cap is not None and cap < total:
        return cap, "this container's memory limit"
    return total, "this machine's RAM"


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _count(n: int) -> str:
    return f"{n / 1e9:.1f} billion" if n >= 1e9 else f"{n / 1e6:.1f} million"


class _ShapesOnly(TorchFunctionMode):
    """Skips in-place initialisers: on the meta device only shapes matter, and the first random
    fill of a meta tensor costs PyTorch about 5 s of one-off set-up (measured), paid per run."""

    SKIPPED = frozenset(
        {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.zero_, torch.Tensor.fill_}
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SKIPPED or getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]  # the tensor, left as it is
        return func(*args, **kwargs)


def check_model_fits(build: Callable[[], nn.Module], device: torch.device) -> None:
    """Refuse, with one line, a model whose training state alone exceeds the device's memory.
    `build` makes the model (called on the meta device, the random state left as it was)."""
    # loading weights into a meta model (fine-tuning's init run) is a no-op that warns per tensor
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]), torch.device("meta"):
        warnings.simplefilter("ignore")
        with _ShapesOnly():
            model = build()
    need = training_bytes(model)
    have, where = device_memory(device)
    if need > have:
        params = sum(p.numel() for p in model.parameters())
        raise UserError(
            f"the model has {_count(params)} parameters: training it needs about {_gb(need)} "
            f"for weights, gradients and AdamW state alone, more than the {_gb(have)} of {where}; "
            "choose smaller model sizes (e.g. model.hidden_size, model.num_layers)"
        )


# ---------------------------------------------------------------- resident memory while training
PREDICTION_ROWS_MULTIPLE = 64  # rows of a sparse prediction are padded to a multiple of this


def pad_prediction_rows(
    hidden: torch.Tensor, targets: torch.Tensor, multiple: int = PREDICTION_ROWS_MULTIPLE
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, C) hidden states and (M,) targets of the predicted positions, padded with zero rows
    whose target is IGNORE_INDEX to a multiple of `multiple` rows. The loss summed by
    cross_entropy skips the padding rows, and no gradient flows back from them.

    Why: a sparse prediction (BERT's MLM head at the masked positions only) has M rows, the
    number of masked tokens, which changes from batch to batch (153 to 295 at 15% of 16 x 128
    tokens: 112 sizes in 1,000 steps), and so do its (M, V) logits, log-probabilities and their
    gradients, a few MB each. On CPU these buffers live in glibc's heap, where a block of a new
    size splits the free block of another size: the heap grew by ~1 MB a step and the peak
    resident memory of a 1,000-step run by 16% after warm-up, though the live tensors stayed the
    same. Rounded up to a multiple of 64, M takes 3 sizes there: the heap reuses its blocks and
    the peak stays within 3.4% (docs/PERFORMANCE.md, "Memory"). The cost is 32 more rows of the
    head on average (~0.5% of a step's FLOPs there; no slower step measured). Calling
    malloc_trim (selfsup.trainer) does not do this: the next steps touch the released pages
    again, one page fault per 4 KB."""
    pad = -targets.numel() % multiple
    if pad == 0:
        return hidden, targets
    return F.pad(hidden, (0, 0, 0, pad)), F.pad(targets, (0, pad), value=IGNORE_INDEX)
