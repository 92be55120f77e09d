"""Import of initial weights from local files, with a report of what was imported.

Three kinds of source load, told apart by their content (not their extension):

- a Keras HDF5 weights or model file (`.h5`, `.hdf5`, any name), e.g. the ImageNet
  weights of `keras.applications.MobileNetV2`
  (`mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5`), whose
  layer names our MobileNetV2 keeps; loaded by layer name. The ImageNet weights of
  `keras.applications.MobileNetV3Large` / `MobileNetV3Small`
  (`weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5`, ...), told apart by their
  layer names (`Conv/BatchNorm`, `expanded_conv/squeeze_excite/Conv`), load into our
  MobileNetV3 models through an explicit name map (`keras_mobilenet_v3_layer_map`:
  Keras' `expanded_conv_3/squeeze_excite/Conv_1` is our `expanded_conv_3_squeeze_excite_Conv_1`,
  `.../BatchNorm` our `..._BN`). DeepLab's `mobilenet_v3_{large,small}_seg` halves the
  last stage, so those layers (and `Conv_1`) have other shapes than ImageNet's: they
  are skipped with that reason and stay at initialisation. A MobileNetV3 file into a
  model that is not a MobileNetV3 (or a MobileNetV2 file into one that is) is an
  `ArchitectureMismatchError` naming the file;
- a `.keras` model saved by this project (a zip archive), whose layers with the
  same name and weight shapes are copied;
- a TF1 name-based checkpoint: DeepLab's (`xception_65/...`, `MobilenetV2/...`, `MobilenetV3/...`, its
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
from typing import NamedTuple

import h5py
import numpy as np
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
        name_map: for an HDF5 import through a name map rather than by equal layer names, what map
            (e.g. "the keras.applications.MobileNetV3Large name map"); None when names are equal.
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
    name_map: str | None = None

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
            how = f"through {self.name_map}" if self.name_map else "by name"
            head += f"{self.layers_matched} of {self.layers_total} layers matched {how}; "
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


def _h5_weights(path: str, values: bool = False) -> dict[str, list[tuple[str, np.ndarray | None]]]:
    """Layer name -> (weight name without `:0`, its value if `values`, else None) per weight, as stored in a
    Keras HDF5 file."""
    out = {}
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        for layer in _h5_layer_names(path):
            stored = group[layer].attrs.get("weight_names", []) if layer in group else []
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in stored]
            out[layer] = [(n.split(":")[0], np.asarray(group[layer][n]) if values else None) for n in names]
    return out


def _h5_weight_names(path: str) -> dict[str, list[str]]:
    """Layer name -> the names of its weights, as stored in a Keras HDF5 file."""
    return {layer: [name for name, _ in weights] for layer, weights in _h5_weights(path).items()}


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


# ------------------------------------------------ keras.applications MobileNetV3 (.h5) -> our MobileNetV3

KERAS_MOBILENET_V3 = {"large": "MobileNetV3Large", "small": "MobileNetV3Small"}
_V3_LAST_BLOCK = {14: "large", 10: "small"}  # index of the last bneck block in both layouts
_V3_LAST_BLOCK_OF = {variant: block for block, variant in _V3_LAST_BLOCK.items()}
# First block of the stage that DeepLab's mobilenet_v3_{large,small}_seg halves (with the last 1x1 conv
# `Conv_1`): large blocks 12-14 (160 -> 80 channels, expansions 336/480/480), small blocks 8-10 (96 -> 48,
# expansions 144/288/288); `Conv_1` 960 -> 480 / 576 -> 288. See zoo/backbones/mobilenet_v3.py.
V3_HALVED_FROM = {"large": 12, "small": 8}

_KERAS_V3_BLOCK = re.compile(r"^expanded_conv(?:_(\d+))?/project$")
_ZOO_V3_BLOCK = re.compile(r"^expanded_conv(?:_(\d+))?_project$")


class LayerPair(NamedTuple):
    """One row of the Keras MobileNetV3 name map."""

    keras: str  # the layer name in keras.applications.MobileNetV3 (= TF-slim's scope)
    ours: str  # the layer name in zoo/backbones/mobilenet_v3.py
    halved: bool  # in the stage DeepLab's _seg variant halves: ImageNet's shapes do not fit


def keras_mobilenet_v3_layer_map(variant: str) -> list[LayerPair]:
    """The explicit name map from `keras.applications.MobileNetV3{Large,Small}` to our backbone (`variant`:
    "large" or "small"), one row per layer with weights, in the Keras model's order.

    Keras' layout (tf_keras/applications/mobilenet_v3.py): `Conv` (+ `Conv/BatchNorm`); per block
    `expanded_conv[_i]/` with `expand` (every block but the first) and `depthwise`, each with its
    `/BatchNorm`, `squeeze_excite/Conv` and `squeeze_excite/Conv_1` where the block has squeeze-and-
    excitation (our tables' flag, the same blocks as Keras'), `project` + `/BatchNorm`; then `Conv_1` (+
    `/BatchNorm`). Ours writes "/BatchNorm" as "_BN" and "/" as "_". Not mapped: the classifier's
    `Conv_2` and `Logits` (include_top), which our segmentation backbone has no counterpart for.

    >>> keras_mobilenet_v3_layer_map("small")[4]
    LayerPair(keras='expanded_conv/squeeze_excite/Conv', ours='expanded_conv_squeeze_excite_Conv', halved=False)
    """
    from zoo.backbones.mobilenet_v3 import MOBILENET_V3_LARGE_SEG, MOBILENET_V3_SMALL_SEG

    spec = {"large": MOBILENET_V3_LARGE_SEG, "small": MOBILENET_V3_SMALL_SEG}[variant]
    rows: list[tuple[str, bool]] = [("Conv", False), ("Conv/BatchNorm", False)]
    for block_id, block in enumerate(spec.blocks):
        prefix = f"expanded_conv_{block_id}/" if block_id else "expanded_conv/"
        halved = block_id >= V3_HALVED_FROM[variant]
        names = (["expand", "expand/BatchNorm"] if block_id else []) + ["depthwise", "depthwise/BatchNorm"]
        names += ["squeeze_excite/Conv", "squeeze_excite/Conv_1"] if block.squeeze_excite else []
        names += ["project", "project/BatchNorm"]
        rows += [(prefix + name, halved) for name in names]
    rows += [("Conv_1", True), ("Conv_1/BatchNorm", True)]
    return [LayerPair(name, name.replace("/BatchNorm", "_BN").replace("/", "_"), halved) for name, halved in rows]


def _last_block(names, pattern: re.Pattern) -> int | None:
    blocks = [int(m.group(1) or 0) for m in map(pattern.match, names) if m]
    return max(blocks) if blocks else None


def keras_mobilenet_v3_variant(layer_names) -> str | None:
    """"large" / "small" for the layer names of a keras.applications MobileNetV3 file, "unknown" for a
    Keras MobileNetV3 of neither layout, None for a file that is no Keras MobileNetV3 (told by its
    `Conv/BatchNorm` or `.../squeeze_excite/Conv` layers)."""
    names = set(layer_names)
    if "Conv/BatchNorm" not in names and not any(n.endswith("/squeeze_excite/Conv") for n in names):
        return None
    return _V3_LAST_BLOCK.get(_last_block(names, _KERAS_V3_BLOCK), "unknown")


def zoo_mobilenet_v3_variant(layer_names) -> str | None:
    """"large" / "small" for layer names of our MobileNetV3 backbone (`Conv_BN` and `..._squeeze_excite_Conv`
    layers), "unknown" for another block count, None for any other model."""
    names = set(layer_names)
    if "Conv_BN" not in names or not any(re.match(r"^expanded_conv(_\d+)?_squeeze_excite_Conv$", n) for n in names):
        return None
    return _V3_LAST_BLOCK.get(_last_block(names, _ZOO_V3_BLOCK), "unknown")


def _is_mobilenet_v2(layer_names) -> bool:
    """Layer names of keras.applications.MobileNetV2 (which ours keeps): `bn_Conv1`, `block_1_expand`."""
    names = set(layer_names)
    return "bn_Conv1" in names and "block_1_expand" in names


def _model_kind(variant: str | None) -> str:
    return f"MobileNetV3-{variant.capitalize()}" if variant in KERAS_MOBILENET_V3 else "MobileNetV3"


def _check_architecture(model: keras.Model, path: str, file_layers: list[str]) -> str | None:
    """Refuses an HDF5 file of another MobileNet than `model`'s (ArchitectureMismatchError naming the file);
    returns the Keras MobileNetV3 variant to map by name, or None for a file to load by equal names."""
    ours = zoo_mobilenet_v3_variant(layer.name for layer in model.layers)
    theirs = keras_mobilenet_v3_variant(file_layers)
    models = "mobilenetv3_large_* or mobilenetv3_small_* models"
    if theirs is not None:
        if ours is None:
            raise ArchitectureMismatchError(
                f"{path} holds keras.applications MobileNetV3 weights (layers 'Conv/BatchNorm', "
                f"'expanded_conv/.../squeeze_excite/Conv'); they load only into our {models}, and model "
                f"{model.name!r} is not a MobileNetV3"
            )
        if theirs == "unknown" or not any(n.endswith("/squeeze_excite/Conv") for n in file_layers):
            raise ArchitectureMismatchError(
                f"{path} holds a keras.applications MobileNetV3 of neither the Large nor the Small layout "
                "(or a minimalistic one, without squeeze-and-excitation); model "
                f"{model.name!r} is DeepLab's {_model_kind(ours)}"
            )
        if theirs != ours:
            raise ArchitectureMismatchError(
                f"{path} holds keras.applications.{KERAS_MOBILENET_V3[theirs]} weights, but model {model.name!r} "
                f"is a {_model_kind(ours)}; pass the {_model_kind(ours)} weights"
            )
        return theirs
    if ours is not None and _is_mobilenet_v2(file_layers):
        raise ArchitectureMismatchError(
            f"{path} holds MobileNetV2 weights (layers 'bn_Conv1', 'block_1_expand', ...), but model "
            f"{model.name!r} is a {_model_kind(ours)}: pass keras.applications.MobileNetV3Large/Small weights "
            "(e.g. weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5) or a checkpoint of this model"
        )
    if ours is None and zoo_mobilenet_v3_variant(file_layers) is not None:
        raise ArchitectureMismatchError(
            f"{path} holds the weights of one of our MobileNetV3 models (layers 'Conv_BN', "
            f"'expanded_conv_..._squeeze_excite_Conv'), but model {model.name!r} is not a MobileNetV3"
        )
    return None


def load_keras_mobilenet_v3_weights(model: keras.Model, path: str, variant: str) -> ImportReport:
    """Loads keras.applications.MobileNetV3{Large,Small} weights from the HDF5 file at `path` into our
    MobileNetV3 `model` through `keras_mobilenet_v3_layer_map(variant)`.

    Layers of the stage DeepLab's _seg variant halves whose shapes differ from the file's are skipped with
    that reason (left at initialisation; their tensors are listed unused). Any other shape difference is a
    ShapeMismatchError naming both tensors, raised before anything is assigned. The Keras model's
    `Conv_2` / `Logits` (include_top) are unused; its Rescaling layer (include_preprocessing: [0, 255] ->
    [-1, 1]) has no weights and no counterpart, which the report notes: our models take normalised input.

    Numerically, the imported layers compute Keras' functions but for the squeeze-and-excitation gate:
    Keras' hard sigmoid is relu6(x + 3) / 6, ours TF-slim's relu6(x + 3) * 0.16667 (2e-5 larger, relative).
    Keras' stride-2 depthwise pads with ZeroPadding2D(correct_pad) then "valid", which is TF's "same".
    """
    rows = keras_mobilenet_v3_layer_map(variant)
    by_keras = {row.keras: row for row in rows}
    layers = {layer.name: layer for layer in _layers_with_weights(model)}
    stored = _h5_weights(path, values=True)
    first, last = V3_HALVED_FROM[variant], _V3_LAST_BLOCK_OF[variant]
    why = (
        f"DeepLab's mobilenet_v3_{variant}_seg halves the last stage (blocks {first}-{last} and Conv_1), "
        "so ImageNet's shapes do not fit; left at initialisation"
    )
    report = ImportReport(
        path, HDF5, layers_total=len(layers), name_map=f"the keras.applications.{KERAS_MOBILENET_V3[variant]} name map"
    )
    assignments = []
    halved: dict[str, list] = {}  # Keras scope (block or Conv_1) -> its skipped layers
    for keras_name, tensors in stored.items():
        row = by_keras.get(keras_name)
        if not tensors or row is None:
            continue
        layer = layers.get(row.ours)
        if layer is None:
            report.skipped.append(f"{keras_name} -> {row.ours}: model {model.name!r} has no such layer")
            continue
        ours = layer.weights
        if len(ours) != len(tensors):
            raise ShapeMismatchError(
                f"{path}: layer {keras_name} holds {len(tensors)} tensors ({[n for n, _ in tensors]}) but our "
                f"{row.ours} has {len(ours)} ({[weight_id(w) for w in ours]})"
            )
        differing = [(n, v, w) for (n, v), w in zip(tensors, ours) if tuple(v.shape) != tuple(w.shape)]
        if differing:
            name, value, weight = differing[0]
            if row.halved:  # reported per block (and for Conv_1), below
                halved.setdefault(keras_name.split("/")[0], []).append((keras_name, name, value, weight))
                continue
            raise ShapeMismatchError(
                f"{path}: tensor {name} has shape {list(value.shape)} but our {weight_id(weight)} has "
                f"{list(weight.shape)} (model {model.name!r}: keras.applications.{KERAS_MOBILENET_V3[variant]} "
                "of another alpha, or our model of another width?)"
            )
        assignments.append((layer, [v for _, v in tensors]))
        report.matched += [(weight_id(w), n) for (n, _), w in zip(tensors, ours)]
    if not assignments:
        raise ArchitectureMismatchError(
            f"no layer of {path} maps to a layer of model {model.name!r} through the "
            f"keras.applications.{KERAS_MOBILENET_V3[variant]} name map"
        )
    for layer, values in assignments:
        layer.set_weights(values)
    for scope, skips in halved.items():
        _, name, value, weight = skips[0]
        block = scope.startswith("expanded_conv")
        parts = ", ".join(k[len(scope) + 1 :] if block else k for k, *_ in skips)
        ours = f"{scope}_*" if block else ", ".join(by_keras[k].ours for k, *_ in skips)
        report.skipped.append(
            f"{scope} -> {ours}: {len(skips)} layers ({parts}) of other shapes, e.g. {name} {list(value.shape)} vs "
            f"our {weight_id(weight)} {list(weight.shape)}: {why}"
        )
    report.layers_matched = len(assignments)
    used = {name for _, name in report.matched}
    report.unused = [n for tensors in stored.values() for n, _ in tensors if n not in used]
    for name in stored:
        if name.split("/")[0].startswith("rescaling"):
            report.skipped.append(
                f"{name}: Keras' include_preprocessing Rescaling ([0, 255] -> [-1, 1]) has no counterpart; "
                "our model takes images already normalised to [-1, 1] (describe(model).normalization)"
            )
    return report.finish(model)


def load_hdf5_weights(model: keras.Model, path: str) -> ImportReport:
    """Loads weights from the Keras HDF5 file at `path` into the layers of `model` with the same names.

    Returns the report, and prints it. Raises ValueError for a file that is not a
    Keras weights file, shares no layer name with the model, or holds a weight of
    another shape than the model's layer of that name (call `load_weights` for the
    missing-file check). A keras.applications MobileNetV3 file goes through the
    name map instead (`load_keras_mobilenet_v3_weights`); a file of another
    MobileNet than the model's is an ArchitectureMismatchError.
    """
    variant = _check_architecture(model, path, _h5_layer_names(path))
    if variant is not None:
        return load_keras_mobilenet_v3_weights(model, path, variant)
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
