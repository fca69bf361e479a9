"""SimCLR's loss setting (`SimCLRConfig`, the `simclr.*` keys), torch-free so that building a
command's flags imports no torch; the objective itself is selfsup/objectives/simclr.py, which
re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.config import option


@dataclass
class SimCLRConfig:
    temperature: float = option(
        0.5, "NT-Xent temperature tau (SimCLR's CIFAR-10 runs: 0.5; solo-learn: 0.2)"
    )
