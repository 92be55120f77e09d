"""Saving and loading zoo models as `.keras` files: atomic saves and one clear error on load."""

from __future__ import annotations

import os
import tempfile
import zipfile
from typing import Any


def atomic_save_keras(model: Any, path: str) -> None:
    """`keras.models.save_model(model, path)` through a temporary `.keras` file and a rename."""
    import tf_keras as keras

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # Keras picks the format by the suffix, so the temporary file ends in .keras too.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".keras")
    os.close(fd)
    try:
        keras.models.save_model(model, tmp)
        umask = os.umask(0)  # mkstemp makes the file private (0600); give it the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_keras_model(path: str, *, compile: bool = False) -> Any:
    """`keras.models.load_model(path)` with the zoo's layers registered, and one clear error naming `path`.

    Raises:
        FileNotFoundError: `path` is not a file.
        ValueError: the file is empty, not a Keras model, or a model Keras cannot load.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path} is empty, not a Keras model")
    import h5py
    import tf_keras as keras

    import zoo  # noqa: F401  (registers the custom layers the saved model uses)

    if not zipfile.is_zipfile(path) and not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not a Keras model: neither a .keras archive (zip) nor a Keras HDF5 file")
    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as error:  # a damaged archive fails in many ways inside Keras (OSError, KeyError, ValueError...)
        raise ValueError(f"cannot load {path} as a Keras model: {type(error).__name__}: {error}") from None
