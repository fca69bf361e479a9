"""The run folder: one module owns its layout, its marker and the reading of what is in it.

Every command that writes a run (`selfsup pretrain`, `finetune`, `convert` from Hugging Face) and
every command or library function that reads one (fill-mask, generate, ask, probe, icl, export)
goes through `RunFolder`, so the format is written down here and nowhere else.

Layout (a file is absent where the run type has no such thing):

    run.json            the marker: {"format": "selfsup-run", "version": 1, "kind", "arch"};
                        kind is "pretraining" or "finetune", arch names the recipe
                        (bert, gpt, simclr, byol, tera, apc; a fine-tuned run's arch is "bert")
    config.json         the resolved config: `--config RUN/config.json` repeats the run
    tokenizer/          tokenizer.json and vocab.txt (text runs)
    data/               memory-mapped token stores, train/ and valid/ (text pretraining), and
                        corpus.json: the corpus files they were built from (path, size, mtime);
                        features/ (speech: log-mel frames of every file, with the files' path,
                        size and mtime) and norm_stats.json (global normalisation)
    labels.json         {"kind", "labels", "source"} of a fine-tuned run
    checkpoints/        step-NNNNNNN/ folders and a `latest` pointer (selfsup/checkpoint.py);
                        an FSDP run's hold each rank's shards (DCP) instead of model.safetensors
    metrics.jsonl       one JSON object per log or evaluation line
    loss_curve.png      the metrics drawn
    model.safetensors   the final weights
    checksums.json      {"model.safetensors": sha256}, checked whenever the weights are read
    final_metrics.json  the last evaluation (and test metrics of a fine-tuned run)
    predictions.json    {question id: answer} on the test split (fine-tuned QA)
    .lock               flock-ed by the process that trains in the folder (its pid inside)

Weight keys in model.safetensors, by run type (the prefix is the submodule that holds them):

    bert pretraining    encoder.*  objectives.mlm.*  objectives.nsp.*  objectives.sop.*
    gpt pretraining     decoder.*  objectives.clm.*
    simclr              backbone.*  projector.*
    byol                backbone.*  projector.*  predictor.*  target.* (the EMA network)
    tera, apc           encoder.*  objectives.tera.* or objectives.apc.* (the frame head)
    finetune            encoder.*  head.*

`encoder.*` keys are the same BertModel in a pretraining run and a fine-tuned one, which is how
`finetune --init RUN` takes a pretrained encoder: `RunFolder.weights(prefix="encoder.")`.

A folder becomes a run when its marker is written, which the lifecycle does first, then
config.json, before any long work (training a tokenizer, tokenizing a corpus), so a run stopped at
any moment resumes with its own config. `create` takes a missing or empty folder, or a run that
never reached a checkpoint (a failed or stopped start: it starts over); it refuses a folder of
anything else (nothing of the user's is overwritten), and a run with checkpoints or final weights
unless the caller resumes it. `claim` also locks the folder for the process that trains in it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from selfsup.checkpoint import CHECKSUMS, checkpoint_weights, load_checked_safetensors
from selfsup.checkpoint import latest_checkpoint as newest_checkpoint
from selfsup.config import config_arch, load_config  # noqa: F401 (config_arch: re-export)
from selfsup.data.tokenizer import Tokenizer
from selfsup.errors import UserError
from selfsup.io import atomic_write_json, check_writable_folder

RUN_FORMAT = "selfsup-run"
RUN_FORMAT_VERSION = 1
MARKER = "run.json"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
LOCK = ".lock"
LABELS = "labels.json"
# everything the lifecycle writes: what starting over in a folder removes (.lock stays)
WRITTEN = (
    MARKER,
    CONFIG,
    "tokenizer",
    "data",
    LABELS,
    "checkpoints",
    "metrics.jsonl",
    "loss_curve.png",
    WEIGHTS,
    CHECKSUMS,
    "final_metrics.json",
    "predictions.json",
)


def is_run(path: str | Path) -> bool:
    """Whether a folder holds a run (its marker exists): experiments resume the runs they find."""
    return (Path(path) / MARKER).exists()


def saved_config(path: str | Path) -> dict[str, Any]:
    """A run's config.json as plain JSON, for what every config class shares (e.g. the
    transformer sizes under "model") when the class itself does not matter."""
    path = Path(path) / CONFIG
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read ({error})") from None


def _read_marker(path: Path) -> dict[str, Any] | None:
    """run.json's content when it is a selfsup run marker, else None."""
    try:
        info = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) and info.get("format") == RUN_FORMAT else None


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
        """A folder to resume must hold a run and its config; a new run goes into a missing or
        empty folder, or over a run that never reached a checkpoint (nothing else is
        overwritten). Checks only: `claim` locks, `begin` writes."""
        path = Path(path)
        check_writable_folder(path)  # before any work: a read-only --out fails now, in one line
        if resume:
            run = cls.open(path)
            if not (path / CONFIG).is_file():
                what_now = (
                    "start it again without --resume"
                    if run.restartable
                    else "put the run's config.json back, or start again in a new folder"
                )
                raise UserError(
                    f"{path}: no {CONFIG} to resume with (deleted, or the run was stopped "
                    f"before writing it); {what_now}"
                )
            return run
        if _read_marker(path) is not None:
            if not cls(path).restartable:
                raise UserError(
                    f"{path} already holds a run: add --resume to continue it, or choose "
                    "another --out"
                )
        elif path.is_dir() and any(entry.name != LOCK for entry in path.iterdir()):
            raise UserError(
                f"{path}: not empty and not a selfsup run; choose a new or empty folder for "
                "--out (nothing in it is overwritten)"
            )
        return cls(path)

    @classmethod
    @contextmanager
    def claim(cls, path: str | Path, resume: bool = False) -> Iterator[RunFolder]:
        """`create`, with the folder locked for this process until the block ends: a second
        process on a run gets a UserError naming the first (with or without --resume). A folder
        that holds no run is checked before locking too, so no .lock goes into one refused."""
        path = Path(path)
        if _read_marker(path) is None:
            cls.create(path, resume)
        with cls(path).lock():
            yield cls.create(path, resume)  # checked once locked: no other process changes it

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive flock on RUN/.lock, with this pid in it. The kernel drops the lock
        when the process ends, however it ends (kill -9 included), so it is never left stale."""
        import fcntl  # POSIX only, as the rest of the atomic-write scheme

        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise UserError(f"{self.path}: cannot write there ({error.strerror})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise UserError(
                    f"{self.path} is in use by another process (pid {holder}); wait until it "
                    "ends, or stop it"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    @property
    def restartable(self) -> bool:
        """A run that never reached a checkpoint: starting it over loses no training."""
        return not (self.path / WEIGHTS).exists() and not newest_checkpoint(
            self.path / "checkpoints"
        )

    def begin(self, kind: str, arch: str) -> None:
        """Start a new run in a folder `create` accepted: remove what an earlier attempt left
        (it never reached a checkpoint), then write the marker."""
        self.discard()
        self.write_marker(kind, arch)

    def discard(self) -> None:
        """Remove everything the lifecycle writes (WRITTEN); other files are left alone."""
        for name in WRITTEN:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)

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
        """The final weights; with `prefix` only the keys under it, prefix removed. Checked
        against their recorded sha256 (selfsup/checkpoint.py): corrupt weights are a UserError.
        A checkpoint's are read from either of its layouts (an FSDP run's shards joined)."""
        path = self.weights_file(latest_checkpoint, missing)
        in_checkpoint = path.parent != self.path
        state = checkpoint_weights(path.parent) if in_checkpoint else load_checked_safetensors(path)
        if prefix is None:
            return state
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise UserError(f"{path}: holds no {prefix.rstrip('.')} weights")
        return state
