"""Import of initial weights from local files, with a report of what was imported.

Three kinds of source load, told apart by their content (not their extension):

- a Keras HDF5 weights or model file (`.h5`, `.hdf5`, any name), e.g. the ImageNet
  weights of `keras.applications.MobileNetV2`
  (`mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5`), whose
  layer names our MobileNetV2 keeps; loaded by layer name;
- a `.keras` model saved by this project (a zip archive), whose layers with the
  same name and weight shapes are copied;
- a TF1 name-based checkpoint: DeepLab's (`xception_65/...`, `MobilenetV2/...`, its
  head and decoder) or TF-slim's ImageNet MobileNetV2 (`MobilenetV2/...`). Pass the
  prefix (`model.ckpt` with `model.ckpt.index` and `model.ckpt.data-*` beside it),
  the `.index` file, or a directory holding a `checkpoint` file (its latest
  checkpoint is taken). The name mapping is `zoo.tf1_checkpoint`.

Every import returns and prints an `ImportReport`: the tensors matched, which of the
model's weights stayed at their initialisation, which of the source's tensors were
not used, and what was skipped and why. Nothing is downloaded: the user passes the
file. A file that is none of these, or that does not fit the model, is an error
that names the file (and the tensor, for a shape mismatch).
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile

import h5py
import tf_keras as keras

HDF5 = "hdf5"
KERAS_ARCHIVE = "keras"
TF1_CHECKPOINT = "tf1"

FORMAT_TITLES = {HDF5: "Keras HDF5", KERAS_ARCHIVE: ".keras model", TF1_CHECKPOINT: "TF1 checkpoint"}

_SHOWN = 10  # names listed per category in the printed report; the returned report has all


class WeightsImportError(ValueError):
    """A weights file that does not fit the model."""


class ShapeMismatchError(WeightsImportError):
    """A source tensor has another shape than the model weight it maps to (the message names both)."""


class ArchitectureMismatchError(WeightsImportError):
    """The source shares no (backbone) tensor with the model: a file of another architecture."""


@dataclasses.dataclass
class ImportReport:
    """What one weights import did.

    Attributes:
        source: the file (or TF1 checkpoint prefix) read.
        format: `HDF5`, `KERAS_ARCHIVE` or `TF1_CHECKPOINT`.
        matched: (our weight, source tensor) pairs whose values were copied.
        left_at_init: our weights that kept their initial values.
        unused: source tensors that were not copied anywhere.
        skipped: one line per deliberate skip, with its reason (e.g. another class count).
        derived: one line per weight of ours computed from other tensors by a stated rule (DeepLab's
            separable ASPP into separable KSAC: the shared kernels are the mean of the rate branches').
        layers_matched: layers that received weights (HDF5 and .keras imports).
        layers_total: layers of the model that have weights.
    """

    source: str
    format: str
    matched: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    left_at_init: list[str] = dataclasses.field(default_factory=list)
    unused: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    derived: list[str] = dataclasses.field(default_factory=list)
    layers_matched: int = 0
    layers_total: int = 0

    def finish(self, model: keras.Model) -> "ImportReport":
        """Lists the model's weights that no matched pair reached (`left_at_init`), prints the report, returns it."""
        used = {ours for ours, _ in self.matched}
        self.left_at_init = [weight_id(w) for w in model.weights if weight_id(w) not in used]
        print(self.summary())
        return self

    def summary(self) -> str:
        """The report as printed: counts on the first line, then the names (the first few of each kind)."""
        title = FORMAT_TITLES.get(self.format, self.format)
        head = f"loaded weights from {self.source} ({title}): "
        if self.format == HDF5:
            head += f"{self.layers_matched} of {self.layers_total} layers matched by name; "
        elif self.format == KERAS_ARCHIVE:
            head += f"{self.layers_matched} of {self.layers_total} layers matched by name and shape; "
        head += (
            f"{len(self.matched)} tensors matched, {len(self.left_at_init)} of ours left at initialisation, "
            f"{len(self.unused)} of the file's unused"
        )
        lines = [head]
        for label, names in (("left at initialisation", self.left_at_init), ("unused", self.unused)):
            if names:
                shown = ", ".join(names[:_SHOWN])
                more = f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
                lines.append(f"  {label}: {shown}{more}")
        lines += [f"  skipped: {line}" for line in self.skipped]
        lines += [f"  derived: {line}" for line in self.derived[:_SHOWN]]
        if len(self.derived) > _SHOWN:
            lines.append(f"  derived: ... and {len(self.derived) - _SHOWN} more (ImportReport.derived lists them all)")
        return "\n".join(lines)


def weight_id(weight) -> str:
    """A model weight's name in reports: its variable name without the `:0`."""
    return weight.name.split(":")[0]


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


def _h5_weight_names(path: str) -> dict[str, list[str]]:
    """Layer name -> the names of its weights, as stored in a Keras HDF5 file."""
    out = {}
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        for layer in _h5_layer_names(path):
            names = group[layer].attrs.get("weight_names", []) if layer in group else []
            out[layer] = [(n.decode() if isinstance(n, bytes) else str(n)).split(":")[0] for n in names]
    return out


_DATA_SHARD = re.compile(r"\.data-\d{5}-of-\d{5}$")


def tf1_checkpoint_prefix(path: str) -> str | None:
    """The TF1 checkpoint prefix `path` names, or None if it names none.

    Accepts the prefix itself (`model.ckpt`, with `model.ckpt.index` beside it), its
    `.index`, `.meta` or `.data-*` file, or a directory with a `checkpoint` file (its
    latest checkpoint). A directory without one is a FileNotFoundError naming it.
    """
    if os.path.isdir(path):
        import tensorflow as tf

        prefix = tf.train.latest_checkpoint(path)
        if prefix is None or not os.path.isfile(prefix + ".index"):
            raise FileNotFoundError(
                f"{path} is a directory without a TF1 'checkpoint' file naming a checkpoint there; pass a "
                "checkpoint prefix (e.g. model.ckpt, with model.ckpt.index beside it) or a weights file"
            )
        return prefix
    stripped = _DATA_SHARD.sub("", re.sub(r"\.(index|meta)$", "", path))
    return stripped if os.path.isfile(stripped + ".index") else None


def weights_format(path: str) -> str:
    """`HDF5`, `KERAS_ARCHIVE` or `TF1_CHECKPOINT` for a loadable source; FileNotFoundError / ValueError otherwise."""
    prefix = tf1_checkpoint_prefix(path)
    if prefix is not None:
        from zoo.tf1_checkpoint import read_checkpoint

        read_checkpoint(prefix)  # its .index is read now: a damaged one is refused before any model is built
        return TF1_CHECKPOINT
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights file not found: {path} (nothing is downloaded; pass a local file, e.g. "
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5, or a TF1 checkpoint "
            "prefix such as model.ckpt with model.ckpt.index beside it)"
        )
    if h5py.is_hdf5(path):
        _h5_layer_names(path)  # readable, and a Keras weights file
        return HDF5
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "config.json" in archive.namelist():
                return KERAS_ARCHIVE
    raise ValueError(
        f"{path} is neither a Keras HDF5 weights file (.h5/.hdf5), a .keras model nor a TF1 checkpoint "
        "(prefix with a .index file beside it); pass one of those"
    )


def _layers_with_weights(model: keras.Model) -> list:
    return [layer for layer in model.layers if layer.weights]


def load_hdf5_weights(model: keras.Model, path: str) -> ImportReport:
    """Loads weights from the Keras HDF5 file at `path` into the layers of `model` with the same names.

    Returns the report, and prints it. Raises ValueError for a file that is not a
    Keras weights file, shares no layer name with the model, or holds a weight of
    another shape than the model's layer of that name (call `load_weights` for the
    missing-file check).
    """
    layers = {layer.name: layer for layer in _layers_with_weights(model)}
    stored = _h5_weight_names(path)
    matched_layers = [name for name in stored if name in layers]
    if not matched_layers:
        raise ArchitectureMismatchError(f"no layer of {path} matches a layer of model {model.name!r} by name")
    try:
        model.load_weights(path, by_name=True)
    except ValueError as error:
        raise ShapeMismatchError(f"weights in {path} do not fit model {model.name!r}: {error}") from None
    report = ImportReport(path, HDF5, layers_matched=len(matched_layers), layers_total=len(layers))
    for name in matched_layers:
        report.matched += [(weight_id(w), s) for w, s in zip(layers[name].weights, stored[name])]
    report.unused = [s for name, names in stored.items() if name not in layers for s in names]
    return report.finish(model)


def load_keras_model_weights(model: keras.Model, path: str) -> ImportReport:
    """Copies the weights of layers with the same name and shapes from the `.keras` model at `path`.

    Returns the report, and prints it; ValueError if no layer matches.
    """
    from zoo.saving import load_keras_model

    source = load_keras_model(path)
    with_weights = _layers_with_weights(model)
    report = ImportReport(path, KERAS_ARCHIVE, layers_total=len(with_weights))
    used_source = set()
    for layer in with_weights:
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            continue
        ours, theirs = layer.weights, other.weights
        if len(ours) == len(theirs) and all(a.shape == b.shape for a, b in zip(ours, theirs)):
            layer.set_weights([w.numpy() for w in theirs])
            report.layers_matched += 1
            report.matched += [(weight_id(a), weight_id(b)) for a, b in zip(ours, theirs)]
            used_source.update(id(b) for b in theirs)
        else:
            report.skipped.append(f"layer {layer.name}: weight shapes differ from the file's layer of that name")
    if not report.layers_matched:
        raise ArchitectureMismatchError(
            f"no layer of {path} matches a layer of model {model.name!r} by name and weight shapes"
        )
    report.unused = [weight_id(w) for w in source.weights if id(w) not in used_source]
    return report.finish(model)


def load_weights(model: keras.Model, path: str) -> ImportReport:
    """Loads initial weights from `path` into `model` (see the module docstring); returns the report."""
    kind = weights_format(path)
    if kind == TF1_CHECKPOINT:
        from zoo.tf1_checkpoint import load_tf1_checkpoint

        return load_tf1_checkpoint(model, path)
    if kind == HDF5:
        return load_hdf5_weights(model, path)
    return load_keras_model_weights(model, path)
