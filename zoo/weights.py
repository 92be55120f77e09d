"""Import of initial weights from local files, by layer name.

Two kinds of file load, told apart by their content (not their extension):

- a Keras HDF5 weights or model file (`.h5`, `.hdf5`, any name), e.g. the ImageNet
  weights of `keras.applications.MobileNetV2`
  (`mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5`), whose
  layer names our MobileNetV2 keeps;
- a `.keras` model saved by this project (a zip archive), whose layers with the
  same name and weight shapes are copied.

Nothing is downloaded: the user passes the file. Anything else is an error that
names the file.
"""

from __future__ import annotations

import os
import zipfile

import h5py
import tf_keras as keras

HDF5 = "hdf5"
KERAS_ARCHIVE = "keras"


def _h5_layer_names(path: str) -> list[str]:
    """The layer names a Keras HDF5 weights or model file holds; ValueError for any other file."""
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            names = group.attrs.get("layer_names")
    except OSError as error:
        raise ValueError(f"cannot read {path} as HDF5: {error}") from None
    if names is None:
        raise ValueError(f"{path} is not a Keras weights file (no 'layer_names' attribute)")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def weights_format(path: str) -> str:
    """`HDF5` or `KERAS_ARCHIVE` for a loadable weights file; FileNotFoundError / ValueError otherwise."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights file not found: {path} (nothing is downloaded; pass a local file, e.g. "
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5)"
        )
    if h5py.is_hdf5(path):
        _h5_layer_names(path)  # readable, and a Keras weights file
        return HDF5
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "config.json" in archive.namelist():
                return KERAS_ARCHIVE
    raise ValueError(
        f"{path} is neither a Keras HDF5 weights file (.h5/.hdf5) nor a .keras model; "
        "pass one of those (TF1 checkpoints are not supported yet)"
    )


def load_hdf5_weights(model: keras.Model, path: str) -> int:
    """Loads weights from the Keras HDF5 file at `path` into the layers of `model` with the same names.

    Returns the number of layers that received weights, and prints it. Raises
    ValueError for a file that is not a Keras weights file, shares no layer name
    with the model, or holds a weight of another shape than the model's layer of
    that name (call `load_weights` for the missing-file check).
    """
    model_layers = {layer.name for layer in model.layers if layer.weights}
    matched = [name for name in _h5_layer_names(path) if name in model_layers]
    if not matched:
        raise ValueError(f"no layer of {path} matches a layer of model {model.name!r} by name")
    try:
        model.load_weights(path, by_name=True)
    except ValueError as error:
        raise ValueError(f"weights in {path} do not fit model {model.name!r}: {error}") from None
    print(f"loaded backbone weights from {path}: {len(matched)} of {len(model_layers)} layers matched by name")
    return len(matched)


def load_keras_model_weights(model: keras.Model, path: str) -> int:
    """Copies the weights of layers with the same name and shapes from the `.keras` model at `path`.

    Returns the number of layers copied, and prints it; ValueError if none matches.
    """
    import zoo.layers  # noqa: F401  (registers the custom layers the saved model uses)

    try:
        source = keras.models.load_model(path, compile=False)
    except Exception as error:  # a corrupt archive fails in many ways inside Keras
        raise ValueError(f"cannot load {path} as a .keras model: {error}") from None
    with_weights = [layer for layer in model.layers if layer.get_weights()]
    copied = 0
    for layer in with_weights:
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            continue
        ours, theirs = layer.get_weights(), other.get_weights()
        if len(ours) == len(theirs) and all(a.shape == b.shape for a, b in zip(ours, theirs)):
            layer.set_weights(theirs)
            copied += 1
    if not copied:
        raise ValueError(f"no layer of {path} matches a layer of model {model.name!r} by name and weight shapes")
    print(f"loaded weights from {path}: {copied} of {len(with_weights)} layers matched by name and shape")
    return copied


def load_weights(model: keras.Model, path: str) -> int:
    """Loads initial weights from `path` into `model` (see the module docstring); returns the layers matched."""
    if weights_format(path) == HDF5:
        return load_hdf5_weights(model, path)
    return load_keras_model_weights(model, path)
