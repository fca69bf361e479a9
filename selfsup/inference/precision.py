"""The number format inference runs in: float32 (the default, exact) or bfloat16 (fast, approximate).

float32 gives the answers training measured. bfloat16 keeps float32's range with an 8-bit
mantissa; on hardware with bf16 matrix units (Intel AMX on Xeon Sapphire Rapids and later, CUDA
GPUs from Ampere on) its matrix products run several times faster. The encoder's embeddings
and blocks run in bfloat16 (weights and activations: no cast per call; autocast, which keeps
LayerNorm in float32 and casts around every op, measured slower on CPU); its last hidden states are
returned in float32 and the task head stays float32, so span and label scores are not rounded to
8 bits (with the head in bfloat16 too, near-equal QA spans tie and flip more often).
Answers can still differ from float32's where two candidates score within bfloat16's rounding:
benchmarks/squad_vs_transformers.py prints how many do.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from selfsup.errors import UserError

if TYPE_CHECKING:  # torch is imported by the functions: the command line reads the names alone
    import torch
    from torch import nn

INFERENCE_DTYPES = ("float32", "bfloat16")


def has_fast_bfloat16(device: torch.device | str) -> bool:
    """Whether bfloat16 matrix products run faster than float32 on `device`: a CUDA GPU that
    supports bf16, or a CPU with AMX tiles or AVX512-BF16 instructions (without them PyTorch
    emulates bf16, slower than float32). CPUs are asked through Linux's /proc/cpuinfo flags;
    elsewhere the answer is no (a warning, not a refusal)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    return "amx_bf16" in flags or "avx512_bf16" in flags


def check_inference_dtype(dtype: str, device: torch.device | str) -> str:
    """`dtype` validated; a warning when bfloat16 would be slower than float32 here."""
    if dtype not in INFERENCE_DTYPES:
        raise UserError(f"dtype must be one of {', '.join(INFERENCE_DTYPES)}, got {dtype!r}")
    if dtype == "bfloat16" and not has_fast_bfloat16(device):
        warnings.warn(
            f"{device} has no bf16 matrix units (AMX, AVX512-BF16 or a bf16 GPU): "
            "bfloat16 inference will be slower than float32 here",
            stacklevel=2,
        )
    return dtype


def use_inference_dtype(encoder: nn.Module, dtype: str) -> None:
    """Run `encoder`'s embeddings and blocks in `dtype` (in place); its output layers (pooler,
    final norm) and the task head stay float32, so the hidden states handed to the head, and the
    scores it gives, are float32 (a BertModel returns hidden states in its pooler's dtype)."""
    if dtype == "float32":
        return
    import torch

    encoder.embeddings.to(torch.bfloat16)
    encoder.layers.to(torch.bfloat16)
