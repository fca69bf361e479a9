"""BYOL's target-network setting (`BYOLConfig`, the `byol.*` keys), torch-free so that building a
command's flags imports no torch; the objective itself is selfsup/objectives/byol.py, which
re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

from selfsup.config import option


@dataclass
class BYOLConfig:
    tau_base: float = option(
        0.99, "target EMA rate at the start, raised to 1 by a cosine (BYOL: 0.996; CIFAR: 0.99)"
    )
