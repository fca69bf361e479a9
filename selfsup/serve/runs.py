"""The runs a playground serves: each loaded once at start-up, named, and described by its mode
(what the page and the API offer for it).

    mode             run                                   page and API
    bert             selfsup pretrain (--arch bert)        fill-mask, contextual embeddings
    gpt              selfsup pretrain --arch gpt           streamed generation, ICL builder
    classification   selfsup finetune, kind classification label distribution
    pair             selfsup finetune, kind pair           label distribution of a text pair
    tagging          selfsup finetune, kind tagging        a tag over every character
    qa               selfsup finetune, kind qa (or a       the answer in the passage, n-best
                     Hugging Face QA folder)
    images           selfsup pretrain --arch simclr|byol   nearest neighbours in --images DIR

A run is named by its folder's name (`runs/pd-small` -> "pd-small"; "pd-small-2" for a second
folder of the same name). Model calls on one run hold its lock: a run's requests take turns (on a
CPU, two at once would only share the same cores), while different runs answer side by side.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfsup.errors import UserError
from selfsup.recipes import LoadedRun
from selfsup.runs import RunFolder, is_hf_checkpoint
from selfsup.serve.images import ImageIndex, build_index

MODES = ("bert", "gpt", "classification", "pair", "tagging", "qa", "images")


@dataclass
class ServedRun:
    name: str
    path: Path
    mode: str  # one of MODES
    run: LoadedRun
    images: ImageIndex | None = None  # mode "images": the --images folder's features
    lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> dict[str, Any]:
        """What the page needs to build this run's panel (GET /api/runs)."""
        info: dict[str, Any] = {"name": self.name, "mode": self.mode, "path": str(self.path)}
        info["arch"] = self.run.folder.arch or "bert"
        if self.mode in ("classification", "pair", "tagging"):
            info["labels"] = list(self.run.task.labels)
        if self.mode == "images" and self.images is not None:
            info["images"] = {"folder": str(self.images.folder), "count": len(self.images.files)}
        return info


def _load(path: Path, device: str, dtype: str = "float32") -> tuple[str, LoadedRun]:
    """(mode, loaded run) of one run folder, with the loader each run type already has
    (`dtype`: fine-tuned runs only)."""
    from selfsup.inference.answer import load_finetuned  # imports torch and the recipes

    folder = None if is_hf_checkpoint(path) else RunFolder.open(path)
    if folder is None or folder.kind == "finetune":
        run = load_finetuned(path, device, dtype)
        return run.config.task.kind, run
    arch = folder.arch
    if arch == "bert":
        from selfsup.inference.fill_mask import load_pretrained

        return "bert", load_pretrained(path, device)
    if arch == "gpt":
        from selfsup.inference.generate import load_gpt

        return "gpt", load_gpt(path, device)
    if arch in ("simclr", "byol"):
        from selfsup.evaluation.probe_run import load_vision_run

        run = load_vision_run(path)
        run.model.to(device)
        return "images", run
    raise UserError(
        f"{path}: a {arch} run; selfsup serve shows BERT, GPT, fine-tuned and SimCLR/BYOL runs"
    )


def run_names(paths: Sequence[Path]) -> list[str]:
    """Folder names, made distinct with -2, -3, ... in the order given."""
    names: list[str] = []
    for path in paths:
        base = Path(os.path.abspath(path)).name or "run"  # a symlink keeps its own name
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def load_served_runs(
    paths: Sequence[str | Path],
    images: str | Path | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict[str, ServedRun]:
    """Every run loaded once, by name; image runs index the `images` folder, which they need."""
    if not paths:
        raise UserError("name at least one run folder to serve")
    paths = [Path(p) for p in paths]
    served: dict[str, ServedRun] = {}
    for name, path in zip(run_names(paths), paths):
        mode, run = _load(path, device, dtype)
        entry = ServedRun(name, path, mode, run)
        if mode == "images":
            if images is None:
                raise UserError(
                    f"{path} is a {run.folder.arch} run: name a folder of images to search "
                    "with --images DIR"
                )
            entry.images = build_index(run, images)
        served[name] = entry
    if images is not None and not any(s.mode == "images" for s in served.values()):
        raise UserError("--images is for SimCLR/BYOL runs, and none of the runs given is one")
    return served
