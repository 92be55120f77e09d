"""Import of pretrained backbone weights from a local Keras `.h5` file, by layer name.

Nothing is downloaded: the user passes the file, e.g. the ImageNet weights of
`keras.applications.MobileNetV2` (`mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5`),
whose layer names our MobileNetV2 keeps.
"""

from __future__ import annotations

import os

import h5py
import tf_keras as keras


def _h5_layer_names(path: str) -> list[str]:
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        names = group.attrs.get("layer_names")
        if names is None:
            raise ValueError(f"{path} is not a Keras weights file (no 'layer_names' attribute)")
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def load_backbone_weights(model: keras.Model, path: str) -> int:
    """Loads weights from the `.h5` file at `path` into the layers of `model` with the same names.

    Returns the number of layers that received weights, and prints it. Raises
    FileNotFoundError for a missing file and ValueError for a file that is not a
    Keras weights file, shares no layer name with the model, or holds a weight of
    another shape than the model's layer of that name.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"backbone weights file not found: {path} (nothing is downloaded; pass a local Keras .h5 file, "
            "e.g. mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5)"
        )
    try:
        file_layers = _h5_layer_names(path)
    except OSError as error:
        raise ValueError(f"cannot read {path} as HDF5: {error}") from None
    model_layers = {layer.name for layer in model.layers if layer.weights}
    matched = [name for name in file_layers if name in model_layers]
    if not matched:
        raise ValueError(f"no layer of {path} matches a layer of model {model.name!r} by name")
    try:
        model.load_weights(path, by_name=True)
    except ValueError as error:
        raise ValueError(f"weights in {path} do not fit model {model.name!r}: {error}") from None
    print(f"loaded backbone weights from {path}: {len(matched)} of {len(model_layers)} layers matched by name")
    return len(matched)
