"""Atomic file writes: a reader (or a resumed run) never sees a half-written file.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target; rename is atomic on POSIX, so a kill -9 at any moment leaves either the old or the new file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_save_safetensors(
    path: str | Path, tensors: dict, metadata: dict[str, str] | None = None
) -> None:
    """Write a safetensors file atomically (tensors are made contiguous and detached first)."""
    # safetensors.torch imports torch: the JSON and text writers above must stay light, since
    # config.py and the CLI's parser use them before any tensor exists
    from safetensors.torch import save

    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, save(clean, metadata=metadata))
