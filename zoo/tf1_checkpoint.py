"""Import (and export) of TF1 name-based checkpoints: DeepLab's and TF-slim's Xception65, MobileNetV2 and MobileNetV3.

The weights users have for the paper's backbones are TF1 checkpoints: DeepLab's
model zoo (`xception_65` ImageNet, and DeepLab models trained on COCO/VOC/Cityscapes, with
their head and decoder, among them its MobileNetV3 LR-ASPP releases) and TF-slim's ImageNet
MobileNetV2 (`mobilenet_v2_1.0_224`). This module maps our layer names to their variable
names, read with `tf.train.load_checkpoint`. The mapping was derived from the source of
tensorflow/models: `research/deeplab/core/xception.py` (scopes `xception_65/
{entry,middle,exit}_flow/blockN/unit_M/xception_module/separable_convK_{depthwise,
pointwise}`, `shortcut`, root `entry_flow/conv1_{1,2}`),
`research/deeplab/core/feature_extractor.py` (scope names `xception_65`,
`MobilenetV2`, `MobilenetV3`; MobileNetV2 stops at `layer_18` = `expanded_conv_16`,
`mobilenet_v3_large_seg` at `layer_17` and `mobilenet_v3_small_seg` at `layer_13`, the last
1x1 conv `Conv_1`),
`research/slim/nets/mobilenet/{mobilenet_v2,mobilenet_v3,mobilenet,conv_blocks}.py` (`Conv`,
`expanded_conv[_N]/{expand,depthwise,project}`, MobileNetV3's `expanded_conv[_N]/squeeze_excite/
{Conv,Conv_1}` (biased, no BatchNorm) and `Conv_1`; no `expand` where the expansion is not wider
than the input, e.g. block 0) and `research/deeplab/model.py` (`image_pooling`, `aspp0`,
`aspp{i}`, `concat_projection`, `decoder/feature_projection0`, `decoder/decoder_conv0/
decoder_conv0_{1,2}`, `logits/semantic`; with the MobileNetV3 releases' flags
`aspp_with_squeeze_and_excitation` and `decoder_output_is_logits`: `image_pooling/{weights,biases}`
without BatchNorm, and the logits decoder's biased 1x1 convs `decoder/feature_projection0` on the
stride-8 end point and `decoder/decoder_conv0` on the head, no `logits` scope). Every slim conv is
`weights` (and `biases` without BatchNorm), every slim BatchNorm `BatchNorm/{gamma,beta,
moving_mean,moving_variance}`.

The table is `LAYER_RULES`: a regular expression over our layer names and the TF1
scope it maps to. Weight names within a scope are `WEIGHT_NAMES`. Our MobileNetV2 keeps
keras.applications' names (`Conv1`, `block_N_...`), our MobileNetV3 slim's (`Conv`,
`expanded_conv_N_...`); their block 0 has the same names in both (`expanded_conv_depthwise`),
so those rules map to `{mobilenet}`, the scope of the model's backbone (`mobilenet_scope`).

Layouts: slim's `weights` are [kh, kw, in, out] like Keras' Conv2D kernel, and slim's
`depthwise_weights` are [kh, kw, in_channels, multiplier], exactly the layout of
Keras' DepthwiseConv2D `depthwise_kernel` (both feed `tf.nn.depthwise_conv2d`), so
no tensor is transposed. Two values are transformed:

- `concat_projection/weights`: DeepLab concatenates [image pooling, aspp0, aspp1..n],
  our heads [1x1, pyramid..., image pooling]; the input-channel blocks are reordered
  (exactly invertible).
- `moving_variance` where DeepLab's BatchNorm epsilon differs from ours: its Xception65
  backbone normalises by `sqrt(variance + 1e-3)`, our Xception65 by `sqrt(variance + 1e-5)`
  (DeepLab's 1e-5 elsewhere; our MobileNetV2 keeps keras.applications' 1e-3, as TF-slim's,
  so it needs nothing, nor does our MobileNetV3, slim's 1e-3 too). The import stores
  `variance + (1e-3 - 1e-5)`, so that our layer computes exactly DeepLab's normalisation;
  it is exact for every checkpoint. The export
  subtracts the difference again (in float64, rounded once, so that export then import
  gives back every variance bit for bit). Where it cannot: a variance of ours below
  1e-3 - 1e-5 = 9.9e-4 (a channel that barely varies, e.g. one a ReLU keeps at 0) would
  need a negative variance in DeepLab's file, which no BatchNorm reader should be given.
  Such channels are written with variance 0 and their `gamma` scaled by
  `sqrt(1e-3 / (variance + 1e-5))`: DeepLab's inference (and ours after importing the
  file) computes the same outputs, but the parameters are not ours (importing gives
  variance 9.9e-4 and the scaled gamma, and training from them starts elsewhere). The
  export report (`TF1ExportReport`, printed) lists those BatchNorms as a warning.

Our layers without a counterpart (they stay at their initialisation and are listed
in the report):

- KSAC's shared kernel and its per-rate BatchNorms (`head_ksac`): no TF1 model has them.
  Our own exports name them `ksac/weights` and `ksac/rate{r}/BatchNorm/...` so that
  they round-trip; DeepLab's checkpoints have no such tensors.
- Our ASPP's rate branches (`head_aspp_rate*`) are regular 3x3 convolutions; DeepLab's
  Xception ASPP is separable (`aspp{i}_depthwise`, `aspp{i}_pointwise`), so those
  stay unused. A checkpoint with regular `aspp{i}/weights` does load into them.
- `head_projection` (`concat_projection`) loads only where the branch count matches:
  KSAC concatenates 3 branches; DeepLab's Xception ASPP concatenates 5 and its
  MobileNetV2 model 2 (no atrous branches), so for KSAC it stays at initialisation.
- The decoder's 3x3 convolutions (`decoder_conv1`, `decoder_conv2`) are regular;
  DeepLab's released Xception models use separable ones (`decoder_conv0_depthwise`,
  ...), which stay unused. The regular form (`decoder/decoder_conv0/decoder_conv0_{1,2}`)
  loads.
- `logits` (and the logits decoder's `decoder_logits`, `decoder_low_level_logits`) loads only
  when the checkpoint's class count is the model's; otherwise it is skipped with a message.

Checkpoint tensors with no counterpart here: TF-slim's `MobilenetV2/Conv_1` (the
1280-channel conv that DeepLab drops) and `MobilenetV2/Logits`, Xception's ImageNet
`logits`, optimizer slots (`.../Momentum`), `ExponentialMovingAverage` shadows and
`global_step`: all reported as unused.

Rules for errors: a backbone tensor of another shape than ours is a
`ShapeMismatchError` naming the tensor; a head/decoder tensor of another shape is
skipped with a message ("where shapes allow"); a checkpoint none of whose tensors
matches our backbone is an `ArchitectureMismatchError`.

Padding: DeepLab's Xception pads explicitly and symmetrically before every stride-2
convolution (`fixed_padding`); TF-slim's MobileNetV2 and V3 use TF "SAME" padding like our
Keras layers. At odd input sizes (e.g. 513) both are the same; at even sizes Keras
"same" pads one pixel at the end only, which shifted every stride-2 feature map of
our Xception65 by one pixel against DeepLab's. Our Xception65 therefore pads like
DeepLab (`zoo/backbones/xception.py`, `_fixed_padding`): tests/test_zoo_tf1_checkpoint.py
compares it with a `tf.nn` recomputation of DeepLab's at odd and even sizes.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras as keras

from zoo.layers import DescriptionLayer, SharedSeparableAtrousConv2D
from zoo.weights import (
    _SHOWN,
    TF1_CHECKPOINT,
    ArchitectureMismatchError,
    ImportReport,
    ShapeMismatchError,
    WeightsImportError,
    tf1_checkpoint_prefix,
    weight_id,
)

XCEPTION65_SCOPE = "xception_65"
MOBILENET_V2_SCOPE = "MobilenetV2"
MOBILENET_V3_SCOPE = "MobilenetV3"
BACKBONE_SCOPES = (XCEPTION65_SCOPE, MOBILENET_V2_SCOPE, MOBILENET_V3_SCOPE)

# Keras weight name -> slim variable name within the layer's scope.
WEIGHT_NAMES = {
    "kernel": "weights",
    "depthwise_kernel": "depthwise_weights",
    "pointwise_kernel": "pointwise_weights",  # slim.separable_conv2d's name (our separable KSAC's shared 1x1)
    "bias": "biases",
    "gamma": "gamma",
    "beta": "beta",
    "moving_mean": "moving_mean",
    "moving_variance": "moving_variance",
}

_FLOW = r"(?P<flow>entry|middle|exit)_flow_block(?P<block>\d+)_unit(?P<unit>\d+)"
_XMODULE = XCEPTION65_SCOPE + "/{flow}_flow/block{block}/unit_{unit}/xception_module"

# (regular expression over our layer name, TF1 scope, part). Parts: "backbone" (a shape
# mismatch is an error), "head" (a shape mismatch skips the layer), "logits" (another
# class count skips it). A BatchNorm's scope ends in /BatchNorm. `{aspp_index}` is the
# 1-based position of the rate among the model's ASPP rates.
LAYER_RULES: tuple[tuple[str, str, str], ...] = (
    # Xception65, DeepLab's research/deeplab/core/xception.py
    (r"entry_flow_conv1_(?P<n>[12])", XCEPTION65_SCOPE + "/entry_flow/conv1_{n}", "backbone"),
    (r"entry_flow_conv1_(?P<n>[12])_bn", XCEPTION65_SCOPE + "/entry_flow/conv1_{n}/BatchNorm", "backbone"),
    (_FLOW + r"_sepconv(?P<k>[123])_(?P<kind>depthwise|pointwise)", _XMODULE + "/separable_conv{k}_{kind}", "backbone"),
    (_FLOW + r"_sepconv(?P<k>[123])_(?P<kind>depthwise|pointwise)_bn", _XMODULE + "/separable_conv{k}_{kind}/BatchNorm", "backbone"),
    (_FLOW + r"_shortcut", _XMODULE + "/shortcut", "backbone"),
    (_FLOW + r"_shortcut_bn", _XMODULE + "/shortcut/BatchNorm", "backbone"),
    # MobileNetV2, TF-slim's research/slim/nets/mobilenet (our names are keras.applications')
    (r"Conv1", MOBILENET_V2_SCOPE + "/Conv", "backbone"),
    (r"bn_Conv1", MOBILENET_V2_SCOPE + "/Conv/BatchNorm", "backbone"),
    (r"block_(?P<n>\d+)_(?P<op>expand|depthwise|project)", MOBILENET_V2_SCOPE + "/expanded_conv_{n}/{op}", "backbone"),
    (r"block_(?P<n>\d+)_(?P<op>expand|depthwise|project)_BN", MOBILENET_V2_SCOPE + "/expanded_conv_{n}/{op}/BatchNorm", "backbone"),
    # MobileNetV3 (DeepLab's _seg variants of TF-slim's), and MobileNetV2's block 0, whose keras.applications
    # names are the same (`expanded_conv_depthwise`): `{mobilenet}` is the model's scope (`mobilenet_scope`).
    (r"Conv", "{mobilenet}/Conv", "backbone"),
    (r"Conv_BN", "{mobilenet}/Conv/BatchNorm", "backbone"),
    (r"(?P<block>expanded_conv(_\d+)?)_(?P<op>expand|depthwise|project)", "{mobilenet}/{block}/{op}", "backbone"),
    (r"(?P<block>expanded_conv(_\d+)?)_(?P<op>expand|depthwise|project)_BN", "{mobilenet}/{block}/{op}/BatchNorm", "backbone"),
    (r"(?P<block>expanded_conv(_\d+)?)_squeeze_excite_(?P<conv>Conv|Conv_1)", "{mobilenet}/{block}/squeeze_excite/{conv}", "backbone"),
    (r"Conv_1", "{mobilenet}/Conv_1", "backbone"),
    (r"Conv_1_BN", "{mobilenet}/Conv_1/BatchNorm", "backbone"),
    # Head and decoder, DeepLab's research/deeplab/model.py
    (r"head_pool_conv", "image_pooling", "head"),
    (r"head_pool_conv_bn", "image_pooling/BatchNorm", "head"),
    (r"head_conv1x1", "aspp0", "head"),
    (r"head_conv1x1_bn", "aspp0/BatchNorm", "head"),
    (r"head_aspp_rate(?P<rate>\d+)", "aspp{aspp_index}", "head"),
    (r"head_aspp_rate(?P<rate>\d+)_bn", "aspp{aspp_index}/BatchNorm", "head"),
    (r"head_aspp_rate(?P<rate>\d+)_(?P<kind>depthwise|pointwise)", "aspp{aspp_index}_{kind}", "head"),  # separable ASPP
    (r"head_aspp_rate(?P<rate>\d+)_(?P<kind>depthwise|pointwise)_bn", "aspp{aspp_index}_{kind}/BatchNorm", "head"),
    (r"head_projection", "concat_projection", "head"),
    (r"head_projection_bn", "concat_projection/BatchNorm", "head"),
    # DeepLab's sum-merge logits decoder (its MobileNetV3 releases): two biased 1x1 convs to the classes.
    (r"decoder_logits", "decoder/decoder_conv0", "logits"),
    (r"decoder_low_level_logits", "decoder/feature_projection0", "logits"),
    (r"decoder_low_level", "decoder/feature_projection0", "head"),
    (r"decoder_low_level_bn", "decoder/feature_projection0/BatchNorm", "head"),
    (r"decoder_conv(?P<n>[12])", "decoder/decoder_conv0/decoder_conv0_{n}", "head"),
    (r"decoder_conv(?P<n>[12])_bn", "decoder/decoder_conv0/decoder_conv0_{n}/BatchNorm", "head"),
    (r"decoder_conv(?P<n>[01])_(?P<kind>depthwise|pointwise)", "decoder/decoder_conv{n}_{kind}", "head"),  # separable
    (r"decoder_conv(?P<n>[01])_(?P<kind>depthwise|pointwise)_bn", "decoder/decoder_conv{n}_{kind}/BatchNorm", "head"),
    (r"logits", "logits/semantic", "logits"),
    # Ours only (no TF1 model has a KSAC head): names for our own exports, so that they round-trip.
    # ksac/weights, ksac/rate{r}/BatchNorm/...; separable: ksac/{depthwise,pointwise}_weights, ksac/rate{r}_{depthwise,pointwise}/BatchNorm/...
    (r"head_ksac", "ksac", "head"),
)

# BatchNorm epsilon of the TF1 models, by scope prefix (DeepLab's feature_extractor gives
# Xception 1e-3; slim's MobileNetV2 keeps slim's default 1e-3, and so does MobileNetV3 under DeepLab's
# `mobilenet_v2_arg_scope` (bn_epsilon None); DeepLab's head/decoder 1e-5).
SOURCE_BN_EPSILON = {XCEPTION65_SCOPE + "/": 1e-3, MOBILENET_V2_SCOPE + "/": 1e-3, MOBILENET_V3_SCOPE + "/": 1e-3, "": 1e-5}


def mobilenet_scope(model: keras.Model) -> str:
    """The TF1 scope of `model`'s MobileNet (`{mobilenet}` in `LAYER_RULES`): MobilenetV3 for our MobileNetV3
    backbones, else MobilenetV2. By the model's description (`zoo.describe(model).backbone`); a model without
    one (a bare backbone) by its layers: only our MobileNetV3 has slim's own first-conv name, `Conv`."""
    description = next((layer.description for layer in model.layers if isinstance(layer, DescriptionLayer)), None)
    if description is not None:
        return MOBILENET_V3_SCOPE if description.backbone.startswith("mobilenetv3") else MOBILENET_V2_SCOPE
    return MOBILENET_V3_SCOPE if any(layer.name == "Conv" for layer in model.layers) else MOBILENET_V2_SCOPE


@dataclasses.dataclass(frozen=True, eq=False)  # compared by identity (a tf.Variable has no scalar ==)
class Mapping:
    """One of our weights and the TF1 tensor it maps to."""

    weight: tf.Variable
    tf1_name: str
    part: str  # "backbone", "head" or "logits"
    to_ours: Callable[[np.ndarray], np.ndarray] | None = None  # transform on import
    to_tf1: Callable[[np.ndarray], np.ndarray] | None = None  # its inverse, on export
    epsilons: tuple[float, float] | None = None  # a moving_variance's BatchNorm epsilon, (ours, the file's), where they differ
    # Where the file lacks `tf1_name` (or holds it in another shape): other tensors that give this weight by
    # `derive` (in our layout, `to_ours` included; see `_deeplab_separable_aspp_into_ksac`), and the rule in words.
    derived_from: tuple[str, ...] = ()
    derive: Callable[[list[np.ndarray]], np.ndarray] | None = None
    rule: str = ""

    @property
    def ours(self) -> str:
        return weight_id(self.weight)


def _source_epsilon(tf1_name: str) -> float:
    return next(eps for prefix, eps in SOURCE_BN_EPSILON.items() if tf1_name.startswith(prefix))


def _concat_transforms(pool_filters: int):
    """DeepLab's [pool, aspp0, ...] input blocks <-> ours [aspp0, ..., pool]."""

    def to_ours(value: np.ndarray) -> np.ndarray:
        return np.concatenate([value[:, :, pool_filters:], value[:, :, :pool_filters]], axis=2)

    def to_tf1(value: np.ndarray) -> np.ndarray:
        return np.concatenate([value[:, :, -pool_filters:], value[:, :, :-pool_filters]], axis=2)

    return to_ours, to_tf1


def _variance_transforms(ours_epsilon: float, source_epsilon: float):
    """The file's moving variance <-> ours, so that both normalise by the same `sqrt(variance + epsilon)`.

    In float64, rounded once to the tensor's type: export then import gives every variance back bit
    for bit; import then export gives the file's back to the rounding of `variance + shift` (a
    relative 6e-8 of the normaliser; a file's 0 comes back as 0). The export's value is negative
    for a variance of ours below the epsilons' difference (`export_tf1_checkpoint` writes those
    channels another way; see the module docstring).
    """
    shift = source_epsilon - ours_epsilon

    def to_ours(value: np.ndarray) -> np.ndarray:
        return (np.asarray(value, np.float64) + shift).astype(value.dtype)

    def to_tf1(value: np.ndarray) -> np.ndarray:
        exported = (np.asarray(value, np.float64) - shift).astype(value.dtype)
        # What the import made of the file's 0 (a dead channel) is a hair below `shift` after
        # rounding: it goes back to 0, not to a tiny negative value.
        return np.where((exported < 0) & (to_ours(np.zeros_like(exported)) == value), 0, exported).astype(value.dtype)

    return to_ours, to_tf1


def tf1_mapping(model: keras.Model) -> list[Mapping]:
    """Every weight of `model` that has a TF1 name, with that name (see `LAYER_RULES`).

    Raises AssertionError if two weights map to the same name (the table is wrong).
    """
    # Rates in the model's order, from regular (`head_aspp_rate6`) or separable (`head_aspp_rate6_depthwise`) branches.
    aspp_rates = list(dict.fromkeys(
        m.group(1) for layer in model.layers if (m := re.fullmatch(r"head_aspp_rate(\d+)(_depthwise)?", layer.name))
    ))  # fmt: skip
    rules = [(re.compile(pattern), scope, part) for pattern, scope, part in LAYER_RULES]
    mobilenet = mobilenet_scope(model)
    mappings = []
    for layer in model.layers:
        for pattern, scope_template, part in rules:
            match = pattern.fullmatch(layer.name)
            if match is None:
                continue
            fields = match.groupdict()
            if "rate" in fields:
                fields["aspp_index"] = aspp_rates.index(fields["rate"]) + 1
            scope = scope_template.format(mobilenet=mobilenet, **fields)
            for weight in layer.weights:
                parts = weight_id(weight).split("/")
                short = parts[-1]
                if len(parts) > 2 and parts[-2].startswith("bn_"):  # a BatchNorm inside a layer: KSAC's per-rate ones
                    name = f"{scope}/{parts[-2][len('bn_'):]}/BatchNorm/{WEIGHT_NAMES[short]}"
                else:
                    name = f"{scope}/{WEIGHT_NAMES[short]}"
                to_ours = to_tf1 = epsilons = None
                if short == "moving_variance":
                    inner = {bn.name: bn for bn in getattr(layer, "batch_norms", [])}  # KSAC's per-rate BatchNorms
                    ours_eps, source_eps = inner.get(parts[-2], layer).epsilon, _source_epsilon(name)
                    if source_eps != ours_eps:
                        to_ours, to_tf1 = _variance_transforms(ours_eps, source_eps)
                        epsilons = (ours_eps, source_eps)
                elif layer.name == "head_projection":
                    to_ours, to_tf1 = _concat_transforms(int(model.get_layer("head_pool_conv").filters))
                mappings.append(Mapping(weight, name, part, to_ours, to_tf1, epsilons))
            break
    mappings = _deeplab_projection(model, _deeplab_separable_aspp_into_ksac(model, mappings))
    names = [m.tf1_name for m in mappings]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"two weights map to the same TF1 names: {sorted(duplicates)}"
    return mappings


def _mean(values: list[np.ndarray]) -> np.ndarray:
    """The elementwise mean of `values`, in float64, rounded once to their type."""
    return np.mean(np.stack([np.asarray(v, np.float64) for v in values]), axis=0).astype(values[0].dtype)


def _deeplab_separable_aspp_into_ksac(model: keras.Model, mappings: list[Mapping]) -> list[Mapping]:
    """Adds to a separable KSAC model's mappings how DeepLab's separable ASPP initialises it.

    DeepLab has no shared kernels; its rate branches `aspp{i}_depthwise` / `aspp{i}_pointwise` are the same
    computation with a kernel per rate. The rule (stated in the import report, `derived`):
    - the shared depthwise and pointwise kernels are the MEAN of the branches' kernels;
    - rate i's two BatchNorms are `aspp{i}_depthwise/BatchNorm` and `aspp{i}_pointwise/BatchNorm` as they are;
    - the projection's KSAC input block is the mean of DeepLab's n rate blocks (`_deeplab_projection`).
    Only where the file lacks our own names (`ksac/...`, written by `export_tf1_checkpoint`).
    """
    layer = next((l for l in model.layers if isinstance(l, SharedSeparableAtrousConv2D)), None)
    if layer is None:
        return mappings
    n = len(layer.rates)
    rate_index = {rate: i for i, rate in enumerate(layer.rates, 1)}
    out = []
    for m in mappings:
        parts = m.ours.split("/")
        if m.ours.startswith(f"{layer.name}/") and parts[-1] in ("depthwise_kernel", "pointwise_kernel"):
            kind = parts[-1].split("_")[0]
            leaf = "depthwise_weights" if kind == "depthwise" else "weights"
            sources = tuple(f"aspp{i}_{kind}/{leaf}" for i in range(1, n + 1))
            m = dataclasses.replace(m, derived_from=sources, derive=_mean,
                                    rule=f"mean of aspp1..{n}_{kind}/{leaf} (DeepLab's rate branches)")  # fmt: skip
        elif m.ours.startswith(f"{layer.name}/bn_rate"):
            rate, kind = re.fullmatch(r"bn_rate(\d+)_(depthwise|pointwise)", parts[-2]).groups()
            source = f"aspp{rate_index[int(rate)]}_{kind}/BatchNorm/{WEIGHT_NAMES[parts[-1]]}"
            to_ours = m.to_ours or (lambda value: value)  # a moving variance's epsilon shift, where there is one
            m = dataclasses.replace(m, derived_from=(source,), derive=lambda values, f=to_ours: f(values[0]), rule=source)
        out.append(m)
    return out


def _deeplab_projection(model: keras.Model, mappings: list[Mapping]) -> list[Mapping]:
    """Adds how DeepLab's `concat_projection` fills ours where their input blocks differ in number.

    DeepLab's projection reads [pool, aspp0, aspp1..m] (m = 0 in its MobileNetV2 releases, which have no
    rate branches); ours reads [aspp0, pyramid blocks..., pool], one block of `head_pool_conv.filters`
    channels each (n rate blocks for ASPP, one summed block for KSAC, none for the pyramid-less head). The
    1x1 and image-pooling blocks are DeepLab's; the separable KSAC's block is the mean of DeepLab's rate
    blocks where it has as many as our rates (see `_deeplab_separable_aspp_into_ksac`); every other block
    of ours keeps its initial values, and the report says so. A file whose projection is not made of
    whole blocks of our width is skipped with that reason.
    """
    names = {layer.name for layer in model.layers}
    if not {"head_projection", "head_pool_conv"} <= names:
        return mappings
    projection_layer = model.get_layer("head_projection")
    block = int(model.get_layer("head_pool_conv").filters)
    ours_blocks = int(projection_layer.kernel.shape[2]) // block
    ksac = next((l for l in model.layers if isinstance(l, SharedSeparableAtrousConv2D)), None)

    def projection(values: list[np.ndarray]) -> np.ndarray:
        (value,) = values
        theirs_blocks, rest = divmod(int(value.shape[2]), block)
        if rest or theirs_blocks < 2 or value.shape[3] != projection_layer.kernel.shape[3]:
            raise ValueError(f"its shape {list(value.shape)} is not [1, 1, k x {block}, {projection_layer.kernel.shape[3]}] "
                             f"with k >= 2 blocks [pool, aspp0, ...] of our width")  # fmt: skip
        theirs = np.split(value, theirs_blocks, axis=2)  # [pool, aspp0, aspp1..m]
        pyramid = np.split(projection_layer.kernel.numpy(), ours_blocks, axis=2)[1:-1]  # ours, as initialised
        if ksac is not None and theirs_blocks - 2 == len(ksac.rates):
            pyramid = [_mean(theirs[2:])]
        return np.concatenate([theirs[1], *pyramid, theirs[0]], axis=2)

    rule = "concat_projection/weights: its aspp0 and image_pooling blocks"
    if ksac is not None:
        rule += f"; the KSAC block = the mean of its rate blocks where it has {len(ksac.rates)}, else left at initialisation"
    elif ours_blocks > 2:
        rule += f"; our {ours_blocks - 2} pyramid block(s) left at initialisation unless the file has as many"
    return [dataclasses.replace(m, derived_from=("concat_projection/weights",), derive=projection, rule=rule)
            if m.ours == "head_projection/kernel" else m for m in mappings]  # fmt: skip


def _resolve(path: str) -> str:
    prefix = tf1_checkpoint_prefix(path)
    if prefix is None:
        raise FileNotFoundError(
            f"TF1 checkpoint not found: {path} (expected {path}.index and {path}.data-* beside it, "
            "or a directory with a 'checkpoint' file; nothing is downloaded)"
        )
    return prefix


def read_checkpoint(prefix: str) -> tf.train.CheckpointReader:
    """A reader of the TF1 checkpoint at `prefix`; WeightsImportError naming it when its .index is not one."""
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as error:
        raise WeightsImportError(f"cannot read the TF1 checkpoint {prefix}: {_reason(error)}") from None


def _read(reader: tf.train.CheckpointReader, prefix: str, name: str) -> np.ndarray:
    try:
        return reader.get_tensor(name)
    except tf.errors.OpError as error:  # e.g. a .data file missing or cut short
        raise WeightsImportError(f"cannot read tensor {name} of the TF1 checkpoint {prefix}: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    """TensorFlow's own words for a failed read (an OpError's message without its C++ context)."""
    return (error.message if isinstance(error, tf.errors.OpError) else str(error)).split("\n")[0]


def load_tf1_checkpoint(model: keras.Model, path: str) -> ImportReport:
    """Copies the tensors of the TF1 checkpoint at `path` into `model` by the mapping of this module.

    Args:
        model: a model of `zoo.build_model` (any width; names do not depend on it).
        path: a checkpoint prefix, its `.index` file, or a directory with a `checkpoint` file.

    Returns:
        The `ImportReport` (also printed).

    Raises:
        FileNotFoundError: no checkpoint at `path` (names the path).
        ShapeMismatchError: a backbone tensor has another shape than ours (names it).
        ArchitectureMismatchError: no backbone tensor of the checkpoint matches the model.
    """
    prefix = _resolve(path)
    reader = read_checkpoint(prefix)
    shapes = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}
    mappings = tf1_mapping(model)
    report = ImportReport(prefix, TF1_CHECKPOINT)
    values: list[tuple[Mapping, np.ndarray]] = []
    skipped_scopes = set()  # TF1 scopes of head convolutions skipped for their shape
    derived_sources: set[str] = set()
    for m in mappings:
        theirs, ours = shapes.get(m.tf1_name), tuple(m.weight.shape)
        if theirs != ours and m.derive is not None and all(name in shapes for name in m.derived_from):
            try:
                value = m.derive([_read(reader, prefix, name) for name in m.derived_from])
            except ValueError as error:  # the file's tensors are of another layout than the rule reads
                report.skipped.append(f"{m.ours} <- {m.rule}: {error}; left at initialisation")
                skipped_scopes.add(m.tf1_name.rsplit("/", 1)[0])
                continue
            if tuple(value.shape) == ours:
                values.append((m, value))  # `derive` gives our layout itself
                derived_sources.update(m.derived_from)
                report.derived.append(f"{m.ours} <- {m.rule}")
                continue
        if theirs is None:
            continue
        if theirs != ours:
            if m.part == "backbone":
                raise ShapeMismatchError(
                    f"{prefix}: tensor {m.tf1_name} has shape {list(theirs)} but our {m.ours} has {list(ours)} "
                    f"(model {model.name!r}: another width or variant of the backbone?)"
                )
            if m.part == "logits" and theirs[:-1] == ours[:-1]:
                reason = f"{theirs[-1]} classes in the checkpoint, {ours[-1]} in the model; logits left at initialisation"
            else:
                reason = f"shape {list(theirs)}, ours {list(ours)}; left at initialisation"
            report.skipped.append(f"{m.tf1_name} -> {m.ours}: {reason}")
            skipped_scopes.add(m.tf1_name.rsplit("/", 1)[0])
            continue
        value = _read(reader, prefix, m.tf1_name)
        values.append((m, m.to_ours(value) if m.to_ours else value))
    # The BatchNorm of a skipped head convolution is skipped too: statistics of another kernel are no use.
    for scope in sorted(skipped_scopes):
        orphans = [m for m, _ in values if m.tf1_name.startswith(scope + "/BatchNorm/")]
        if orphans:
            layer = orphans[0].ours.split("/")[0]
            report.skipped.append(f"{scope}/BatchNorm -> {layer}: its convolution was skipped; left at initialisation")
    values = [(m, v) for m, v in values if m.part == "backbone" or m.tf1_name.split("/BatchNorm/")[0] not in skipped_scopes]
    if not any(m.part == "backbone" for m, _ in values):
        expected = next((m.tf1_name for m in mappings if m.part == "backbone"), "?")
        scopes = sorted({name.split("/")[0] for name in shapes})
        raise ArchitectureMismatchError(
            f"no tensor of {prefix} matches the backbone of model {model.name!r}: expected e.g. tensor "
            f"{expected!r}; the checkpoint's top-level scopes are {scopes[:30]} (a checkpoint of another architecture?)"
        )
    for m, value in values:
        m.weight.assign(value.astype(m.weight.dtype.as_numpy_dtype))
    report.matched = [(m.ours, m.tf1_name) for m, _ in values]
    used = {m.tf1_name for m, _ in values if not m.derived_from or m.tf1_name in shapes} | derived_sources
    report.unused = sorted(name for name in shapes if name not in used)
    return report.finish(model)


@dataclasses.dataclass
class TF1ExportReport:
    """What `export_tf1_checkpoint` wrote.

    Attributes:
        prefix: the checkpoint written.
        tensors: how many tensors it holds.
        rescaled: one line per BatchNorm with channels whose variance the file's epsilon cannot hold
            (written with variance 0 and a scaled gamma, see the module docstring); empty when
            importing the file gives back every mapped weight of the model exactly.
    """

    prefix: str
    tensors: int
    rescaled: list[str] = dataclasses.field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Whether importing the file gives back every mapped weight bit for bit."""
        return not self.rescaled

    def summary(self) -> str:
        """The report as printed: one line, then a warning naming the BatchNorms that are not exact."""
        lines = [f"wrote {self.tensors} tensors to {self.prefix} (TF1 checkpoint)"]
        if self.rescaled:
            lines.append(
                f"  warning: {len(self.rescaled)} BatchNorm(s) have channels with a moving variance below DeepLab's "
                "epsilon difference (1e-3 - 1e-5), which its BatchNorm cannot hold: written with variance 0 and gamma "
                "scaled by sqrt(1e-3 / (variance + 1e-5)). Inference outputs are the same; importing the file gives "
                "those parameters back changed (variance 9.9e-4, the scaled gamma):"
            )
            lines += [f"    {line}" for line in self.rescaled[:_SHOWN]]
            if len(self.rescaled) > _SHOWN:
                lines.append(f"    ... and {len(self.rescaled) - _SHOWN} more (TF1ExportReport.rescaled lists them all)")
        return "\n".join(lines)


def export_tf1_checkpoint(model: keras.Model, prefix: str) -> TF1ExportReport:
    """Writes every mapped weight of `model` under its TF1 name, as a TF1 name-based checkpoint.

    The inverse of `load_tf1_checkpoint` for the weights it maps: the same files a v1
    `Saver` writes (`prefix.index`, `prefix.data-00000-of-00001`, and a `checkpoint`
    file naming it in its directory), so `tf.train.load_checkpoint`, DeepLab's
    `--tf_initial_checkpoint` and `load_weights` read it. Importing the file gives back
    every mapped weight bit for bit, except in BatchNorm channels whose variance the file's
    epsilon cannot hold (Xception65 variances below 9.9e-4; see the module docstring):
    those keep the outputs, not the parameters, and the returned report (also printed)
    lists them as a warning.
    """
    mappings = tf1_mapping(model)
    tensors = {m.tf1_name: (m.to_tf1(m.weight.numpy()) if m.to_tf1 else m.weight.numpy()) for m in mappings}
    report = TF1ExportReport(prefix, len(tensors))
    for m in mappings:
        if m.epsilons is None or not (tensors[m.tf1_name] < 0).any():
            continue
        # variance + file_eps would have to equal ours + ours_eps with a negative variance: write 0
        # and put the rest of the normalisation into gamma (every BatchNorm of the zoo has one).
        ours_eps, file_eps = m.epsilons
        below = tensors[m.tf1_name] < 0
        variance = np.asarray(m.weight.numpy(), np.float64)
        scope = m.tf1_name.rsplit("/", 1)[0]
        gamma = tensors[f"{scope}/gamma"]
        scaled = np.asarray(gamma, np.float64) * np.sqrt(file_eps / (variance + ours_eps))
        tensors[f"{scope}/gamma"] = np.where(below, scaled, gamma).astype(gamma.dtype)
        tensors[m.tf1_name] = np.where(below, 0.0, tensors[m.tf1_name]).astype(gamma.dtype)
        report.rescaled.append(f"{scope}: {int(below.sum())} of {below.size} channels (smallest variance {variance.min():.2g})")
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[name]) for name in names],
    )
    leaf = os.path.basename(prefix)
    with open(os.path.join(folder, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{leaf}"\nall_model_checkpoint_paths: "{leaf}"\n')
    print(report.summary())
    return report
