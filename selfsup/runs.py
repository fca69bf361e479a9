"""The run folder: one module owns its layout, its marker and the reading of what is in it.

Every command that writes a run (`selfsup pretrain`, `finetune`, `convert` from Hugging Face) and
every command or library function that reads one (fill-mask, generate, ask, probe, icl, export)
goes through `RunFolder`, so the format is written down here and nowhere else.

Layout (a file is absent where the run type has no such thing):

    run.json            the marker: {"format": "selfsup-run", "version": 1, "kind", "arch"};
                        kind is "pretraining" or "finetune", arch names the recipe
                        (bert, gpt, simclr, byol; a fine-tuned run's arch is "bert")
    config.json         the resolved config: `--config RUN/config.json` repeats the run
    tokenizer/          tokenizer.json and vocab.txt (text runs)
    data/               memory-mapped token stores, train/ and valid/ (text pretraining)
    labels.json         {"kind", "labels", "source"} of a fine-tuned run
    checkpoints/        step-NNNNNNN/ folders and a `latest` pointer (selfsup/checkpoint.py)
    metrics.jsonl       one JSON object per log or evaluation line
    loss_curve.png      the metrics drawn
    model.safetensors   the final weights
    final_metrics.json  the last evaluation (and test metrics of a fine-tuned run)
    predictions.json    {question id: answer} on the test split (fine-tuned QA)

Weight keys in model.safetensors, by run type (the prefix is the submodule that holds them):

    bert pretraining    encoder.*  objectives.mlm.*  objectives.nsp.*  objectives.sop.*
    gpt pretraining     decoder.*  objectives.clm.*
    simclr              backbone.*  projector.*
    byol                backbone.*  projector.*  predictor.*  target.* (the EMA network)
    finetune            encoder.*  head.*

`encoder.*` keys are the same BertModel in a pretraining run and a fine-tuned one, which is how
`finetune --init RUN` takes a pretrained encoder: `RunFolder.weights(prefix="encoder.")`.

A folder becomes a run when its marker is written, which the lifecycle does only once the run's
inputs have been read and its config validated; `create` refuses a folder that already holds a
run unless the caller resumes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from selfsup.checkpoint import latest_checkpoint as newest_checkpoint
from selfsup.config import load_config
from selfsup.data.tokenizer import Tokenizer
from selfsup.errors import UserError
from selfsup.io import atomic_write_json

RUN_FORMAT = "selfsup-run"
RUN_FORMAT_VERSION = 1
MARKER = "run.json"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
LABELS = "labels.json"


def config_arch(path: Path) -> str | None:
    """The arch a saved config.json names (None when unreadable): lets the CLI pick the config
    class of `--config FILE` or of a resumed `--out` before it parses the other flags."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("arch")
    except (OSError, ValueError, AttributeError):
        return None


def is_hf_checkpoint(path: str | Path) -> bool:
    """A Hugging Face model folder (config.json, no selfsup run.json)."""
    path = Path(path)
    return (path / CONFIG).is_file() and not (path / MARKER).exists()


@dataclass
class RunFolder:
    path: Path
    kind: str | None = None  # from run.json once it exists
    arch: str | None = None

    # ------------------------------------------------------------ creating and opening
    @classmethod
    def create(cls, path: str | Path, resume: bool = False) -> RunFolder:
        """A folder to resume must hold a run; a new one must not (nothing is overwritten)."""
        path = Path(path)
        if resume:
            return cls.open(path)
        if (path / MARKER).exists():
            raise UserError(
                f"{path} already holds a run: add --resume to continue it, or choose another --out"
            )
        return cls(path)

    @classmethod
    def open(
        cls,
        path: str | Path,
        kinds: Iterable[str] | None = None,
        archs: Iterable[str] | None = None,
        refusal: str | None = None,
    ) -> RunFolder:
        """An existing run; with `kinds` / `archs`, one of those or a UserError (`refusal`, when
        given, is the message, formatted with {path}, {kind} and {arch})."""
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: no such run folder")
        marker = path / MARKER
        try:
            info = json.loads(marker.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            raise UserError(f"{path}: not a selfsup run (no valid run.json)") from None
        if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
            raise UserError(f"{marker}: not a selfsup run marker")
        run = cls(path, info.get("kind"), info.get("arch", "bert"))
        if (kinds is not None and run.kind not in kinds) or (
            archs is not None and run.arch not in archs
        ):
            expected = " or ".join(sorted(set(archs or []) | set(kinds or [])))
            message = refusal or "{path}: a {arch} {kind} run; expected " + expected
            raise UserError(message.format(path=path, kind=run.kind, arch=run.arch))
        return run

    def write_marker(self, kind: str, arch: str) -> None:
        """Make the folder a run (called once its inputs have been read and checked)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            self.path / MARKER,
            {"format": RUN_FORMAT, "version": RUN_FORMAT_VERSION, "kind": kind, "arch": arch},
        )
        self.kind, self.arch = kind, arch

    # ------------------------------------------------------------ what a run holds
    def config(self, config_class: type) -> Any:
        return load_config(config_class, self.path / CONFIG)

    def tokenizer(self):
        return Tokenizer.load(self.path / "tokenizer")

    def labels(self) -> dict[str, Any]:
        path = self.path / LABELS
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(f"{path}: cannot read ({error})") from None

    def write_labels(self, kind: str, labels: list[str], source: str) -> None:
        atomic_write_json(self.path / LABELS, {"kind": kind, "labels": labels, "source": source})

    def weights_file(self, latest_checkpoint: bool = False, missing: str | None = None) -> Path:
        """model.safetensors, or (with `latest_checkpoint`) the newest checkpoint's weights while
        the run is unfinished; a UserError (`missing`, formatted with {path}) when there are none."""
        path = self.path / WEIGHTS
        if path.exists():
            return path
        if latest_checkpoint:
            ckpt = newest_checkpoint(self.path / "checkpoints")
            if ckpt is not None:
                return ckpt / WEIGHTS
            missing = missing or "{path}: no model.safetensors and no checkpoint yet"
        raise UserError(
            (missing or "{path}: no model.safetensors yet (is the run finished?)").format(
                path=self.path
            )
        )

    def weights(
        self, prefix: str | None = None, latest_checkpoint: bool = False, missing: str | None = None
    ) -> dict[str, torch.Tensor]:
        """The final weights; with `prefix` only the keys under it, prefix removed."""
        path = self.weights_file(latest_checkpoint, missing)
        state = load_file(path)
        if prefix is None:
            return state
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise UserError(f"{path}: holds no {prefix.rstrip('.')} weights")
        return state
