"""Atomic file writes: a reader (or a resumed run) never sees a half-written file.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target; rename is atomic on POSIX, so a kill -9 at any moment leaves either the old or the new file.
The file gets the mode a plain `open(path, "w")` would give it (the old file's, or 0o666 less the
umask), not the 0600 of the temporary file. A full disk or a folder the user cannot write to is a
`UserError` naming the file (the temporary file removed, the old file left as it was).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from selfsup.errors import UserError

# write failures the user can fix (space, permissions, a file where a folder should be)
_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST)


def _raise_if_user_error(path: Path, error: OSError) -> None:
    """Raise a UserError for a write that failed in a way the user can fix; return otherwise (a
    bug or an I/O fault keeps its traceback)."""
    if error.errno in _FULL:
        raise UserError(f"{path}: cannot write it, the disk is full ({error.strerror})") from None
    if error.errno in (errno.EEXIST, errno.ENOTDIR):  # a file where a folder should be
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise UserError(f"{path}: cannot write it: {blocker} is a file, not a folder") from None
    if error.errno in _NOT_WRITABLE:
        where = f": {error.filename}" if error.filename else ""
        raise UserError(f"{path}: cannot write it ({error.strerror}{where})") from None


def _umask() -> int:
    try:  # Linux shows the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_mode(path: Path) -> int:
    """The mode open(path, "w") gives: the existing file's, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def check_writable_folder(path: str | Path) -> None:
    """Refuse, as a UserError naming `path`, a folder that cannot be created or written: a file
    where a folder should be, a read-only file system, no permission. Tried with an unnamed
    temporary file in the nearest existing folder, so nothing is created or left behind."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{path}: cannot create a folder there: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UserError(f"{path}: cannot write there ({error.strerror}: {existing})") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        _raise_if_user_error(path, error)
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _plain_mode(path))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError):
            _raise_if_user_error(path, error)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_save_safetensors(
    path: str | Path, tensors: dict, metadata: dict[str, str] | None = None
) -> str:
    """Write a safetensors file atomically (tensors are made contiguous and detached first);
    return the sha256 of the bytes written (selfsup/checkpoint.py records it)."""
    # safetensors.torch imports torch: the JSON and text writers above must stay light, since
    # config.py and the CLI's parser use them before any tensor exists
    from safetensors.torch import save

    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = save(clean, metadata=metadata)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()
