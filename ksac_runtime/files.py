"""Output files of every command: atomic writes (a reader, or a crash, never sees a half-written
output file) and output paths checked before any work is done.

`.keras` models are saved and loaded by `zoo.saving` (it needs TensorFlow; this module does not)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        # mkstemp creates the file private (0600); give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def check_output_path(path: str, *, folder: bool = False) -> None:
    """Refuses, before any work is done, an output path that cannot be written; ValueError naming it.

    A file output must not be an existing directory, a folder output not an existing file; missing
    folders on the way are created when the output is written (as `atomic_write_bytes` does), so the
    nearest existing one must be a writable directory (not a file).

    Args:
        path: the output file (or, with `folder`, the output folder).
        folder: `path` is a folder that the command creates or writes into.
    """
    full = os.path.abspath(path)
    if folder and os.path.exists(full) and not os.path.isdir(full):
        raise ValueError(f"{path} exists and is not a directory; give a folder for this output")
    if not folder and os.path.isdir(full):
        raise ValueError(f"{path} is a directory; give a file name for this output")
    existing = full if folder and os.path.isdir(full) else os.path.dirname(full)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"cannot write {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: {existing} is not writable")
