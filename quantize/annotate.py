"""Turns a zoo model into a tfmot quantization-aware model, and its trained weights back.

`quantize_model(model)` clones a float zoo model with every layer annotated:
standard Keras layers (Conv2D, DepthwiseConv2D, BatchNormalization, ReLU, Add,
Concatenate, pooling, Dropout) get tfmot's default 8-bit configs (and its
Conv/BN/ReLU transforms, which place no quantizer between a conv and its
BatchNorm, as the converter folds them); the KSAC pyramid becomes
`QuantizableSharedAtrousConv2D` (separable: `QuantizableSharedSeparableAtrousConv2D`) with `SharedKernelQuantizeConfig`; `ResizeToMatch`
and `DescriptionLayer` get `NoOpQuantizeConfig`; MobileNetV3's `HardSwish`, `HardSigmoid` and
`keras.layers.Multiply` (squeeze-and-excitation, LR-ASPP gate; tfmot's registry has no Multiply) and the
LR-ASPP's `CropWindowPooling2D`
get `OutputQuantizeConfig`. Then `quantize_apply` inserts
the fake-quantization, inside `quantize_scope` so the custom classes clone, with
tfmot's default scheme minus its Concatenate transform, which reorders inputs, and with two
conv rules of the int8 file added (`OrderKeepingLayoutTransform`); `check_input_order` verifies the result.

`copy_trained_weights(qat_model, model)` writes the float (latent) weights of the
fine-tuned QAT model back into a plain zoo model of the same architecture, so
that the KSAC-aware exporter can convert it.
"""

from __future__ import annotations

from typing import Any, Iterator

import tf_keras as keras
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import default_8bit_transforms
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_registry import (
    Default8BitConvQuantizeConfig,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_layout_transform import (
    Default8BitQuantizeLayoutTransform,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_scheme import (
    Default8BitQuantizeScheme,
)
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import model_transformer
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations.transforms import LayerPattern
from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer

from quantize.quantize_configs import (
    DepthwiseChannelQuantizer,
    NamedMovingAverageQuantizer,
    NoOpQuantizeConfig,
    OutputQuantizeConfig,
    QuantizableSharedAtrousConv2D,
    QuantizableSharedSeparableAtrousConv2D,
    SharedKernelQuantizeConfig,
)
from zoo.atrous import plain_layer
from zoo.layers import (
    CropWindowPooling2D,
    DescriptionLayer,
    HardSigmoid,
    HardSwish,
    ResizeToMatch,
    SharedAtrousConv2D,
    SharedSeparableAtrousConv2D,
)

quantize_annotate_layer = tfmot.quantization.keras.quantize_annotate_layer
QuantizeWrapper = tfmot.quantization.keras.QuantizeWrapper

CUSTOM_OBJECTS: dict[str, Any] = {
    "SharedAtrousConv2D": SharedAtrousConv2D,
    "QuantizableSharedAtrousConv2D": QuantizableSharedAtrousConv2D,
    "SharedSeparableAtrousConv2D": SharedSeparableAtrousConv2D,
    "QuantizableSharedSeparableAtrousConv2D": QuantizableSharedSeparableAtrousConv2D,
    "DepthwiseChannelQuantizer": DepthwiseChannelQuantizer,
    "SharedKernelQuantizeConfig": SharedKernelQuantizeConfig,
    "NamedMovingAverageQuantizer": NamedMovingAverageQuantizer,
    "NoOpQuantizeConfig": NoOpQuantizeConfig,
    "OutputQuantizeConfig": OutputQuantizeConfig,
    "ResizeToMatch": ResizeToMatch,
    "HardSwish": HardSwish,
    "HardSigmoid": HardSigmoid,
    "CropWindowPooling2D": CropWindowPooling2D,
    # Saved configs name the layer by its registered name (ModelDescription) or its class name.
    "ModelDescription": DescriptionLayer,
    "DescriptionLayer": DescriptionLayer,
}


def _kernel_only_config(conv_class_name: str) -> Default8BitConvQuantizeConfig:
    """tfmot's Conv2D / DepthwiseConv2D config without its output quantizer: the kernel per channel on the
    int8 grid, the output left to the activation fused after it."""
    kernel = "depthwise_kernel" if conv_class_name == "DepthwiseConv2D" else "kernel"
    return Default8BitConvQuantizeConfig([kernel], [], False)


class LayerReLUKernelQuantize(default_8bit_transforms.LayerReLUQuantize):
    """tfmot's `LayerReLUQuantize` (no quantizer between a layer and the ReLU after it), keeping the kernel
    quantizer of a conv without BatchNorm.

    tfmot gives the layer before a ReLU `NoOpQuantizeConfig`, which for a biased conv (MobileNetV3's
    squeeze-and-excitation `..._Conv`) also leaves its kernel in float, while the int8 file runs it as an
    int8 CONV_2D with per-channel weights and fused ReLU. The conv keeps tfmot's per-channel kernel
    quantizer here, without an output quantizer; an Add before a ReLU still gets NoOp. (The zoo's older
    models have no conv feeding a ReLU without BatchNorm: their QAT graph is unchanged.)
    """

    def replacement(self, match_layer: Any) -> Any:
        producer = match_layer.input_layers[0]
        if producer.layer["class_name"] in ("Conv2D", "DepthwiseConv2D"):
            producer.metadata["quantize_config"] = _kernel_only_config(producer.layer["class_name"])
            return match_layer
        return super().replacement(match_layer)

    def custom_objects(self) -> dict[str, Any]:
        return dict(super().custom_objects(), Default8BitConvQuantizeConfig=Default8BitConvQuantizeConfig)


class ConvHardSigmoidQuantize(LayerReLUKernelQuantize):
    """No quantizer between a conv and the `HardSigmoid` after it (MobileNetV3's gates).

    The int8 file folds the hard sigmoid's + 3 into the conv's bias and its ReLU6 into the conv (one
    CONV_2D), then multiplies by the constant: the conv's own output is no tensor of the file. So the conv
    keeps only its kernel quantizer and the `HardSigmoid` quantizes its output (`OutputQuantizeConfig`).
    """

    def pattern(self) -> LayerPattern:
        # tfmot matches the legacy config, which names a registered class "<package>>HardSigmoid".
        return LayerPattern("(?:.*>)?HardSigmoid", inputs=[LayerPattern("Conv2D", config={"activation": "linear"})])


class OrderKeepingLayoutTransform(Default8BitQuantizeLayoutTransform):
    """tfmot's default 8-bit layout transforms without its Concatenate transforms.

    tfmot's ConcatTransform (quantize only after a Concatenate) reorders the
    Concatenate's inputs when it rewrites the layers feeding it
    (tensorflow/model-optimization#1061, open): the QAT MobileNetV2 heads
    concatenated e.g. [KSAC, pooling, 1x1] instead of [1x1, KSAC, pooling], so
    fine-tuning trained another network than the one exported. Without it, each
    input keeps its own output quantizer and the Concatenate quantizes its output;
    the int8 converter gives a concatenation's inputs the output's scale, so the
    only difference to the file is one extra, finer rounding per input.
    Same list and order as `Default8BitQuantizeLayoutTransform.apply` otherwise, except that
    `LayerReLUQuantize` is `LayerReLUKernelQuantize` and `ConvHardSigmoidQuantize` is added (MobileNetV3).
    """

    def apply(self, model: keras.Model, layer_quantize_map: dict[str, Any]) -> tuple[keras.Model, dict[str, Any]]:
        transforms = [
            default_8bit_transforms.InputLayerQuantize(),
            default_8bit_transforms.SeparableConv1DQuantize(),
            default_8bit_transforms.SeparableConvQuantize(),
            default_8bit_transforms.Conv2DReshapeBatchNormReLUQuantize(),
            default_8bit_transforms.Conv2DReshapeBatchNormActivationQuantize(),
            default_8bit_transforms.Conv2DBatchNormReLUQuantize(),
            default_8bit_transforms.Conv2DBatchNormActivationQuantize(),
            default_8bit_transforms.Conv2DReshapeBatchNormQuantize(),
            default_8bit_transforms.Conv2DBatchNormQuantize(),
            default_8bit_transforms.DenseBatchNormQuantize(),
            default_8bit_transforms.DenseBatchNormReLUQuantize(),
            default_8bit_transforms.DenseBatchNormActivationQuantize(),
            LayerReLUKernelQuantize(),
            default_8bit_transforms.LayerReluActivationQuantize(),
            ConvHardSigmoidQuantize(),
        ]
        return model_transformer.ModelTransformer(
            model, transforms, set(layer_quantize_map.keys()), layer_quantize_map
        ).transform()


class OrderKeepingQuantizeScheme(Default8BitQuantizeScheme):
    """tfmot's default 8-bit scheme with `OrderKeepingLayoutTransform`."""

    def get_layout_transformer(self) -> OrderKeepingLayoutTransform:
        return OrderKeepingLayoutTransform()


class QuantizeError(ValueError):
    """A model that cannot be made quantization-aware (the message names the layer)."""


def quantize_scope():
    """tfmot's `quantize_scope` with the zoo's layers and this package's configs registered."""
    return tfmot.quantization.keras.quantize_scope(CUSTOM_OBJECTS)


def _annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
    if isinstance(layer, keras.layers.InputLayer):
        return layer.__class__.from_config(layer.get_config())
    if isinstance(layer, SharedAtrousConv2D):
        return quantize_annotate_layer(QuantizableSharedAtrousConv2D.from_layer(layer), SharedKernelQuantizeConfig())
    if isinstance(layer, SharedSeparableAtrousConv2D):
        return quantize_annotate_layer(QuantizableSharedSeparableAtrousConv2D.from_layer(layer), SharedKernelQuantizeConfig())
    if isinstance(layer, (ResizeToMatch, DescriptionLayer)):
        return quantize_annotate_layer(layer.__class__.from_config(layer.get_config()), NoOpQuantizeConfig())
    if isinstance(layer, (HardSwish, HardSigmoid, CropWindowPooling2D, keras.layers.Multiply)):
        return quantize_annotate_layer(layer.__class__.from_config(layer.get_config()), OutputQuantizeConfig())
    plain = plain_layer(layer)  # zoo.atrous' training forms: tfmot's patterns know Keras' own layers
    if plain is not None:
        return quantize_annotate_layer(plain)
    if type(layer).__module__.startswith("tf_keras."):
        return quantize_annotate_layer(layer.__class__.from_config(layer.get_config()))
    raise QuantizeError(
        f"layer {layer.name!r} ({type(layer).__name__}) has no QuantizeConfig; "
        "add one in quantize/annotate.py (see NoOpQuantizeConfig)"
    )


def quantize_model(model: keras.Model, input_size: int | tuple[int, int] | None = None) -> keras.Model:
    """The quantization-aware clone of a zoo `model`, with its float weights.

    Args:
        model: a float zoo model (from `zoo.build_model` or a saved `.keras`).
        input_size: train at this (height, width) instead of the model's own input
            size (the architecture is fully convolutional; weights do not depend on it).

    Returns:
        A tfmot model whose layers are `QuantizeWrapperV2`s named `quant_<layer name>`
        (plus the input `QuantizeLayer`), initialised with `model`'s weights.
    """
    if input_size is None:
        inputs = None
    else:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        inputs = keras.Input((*size, model.input_shape[-1]), name=model.inputs[0].name.split(":")[0])
    with quantize_scope():
        annotated = keras.models.clone_model(model, input_tensors=inputs, clone_function=_annotate)
        qat_model = tfmot.quantization.keras.quantize_apply(annotated, scheme=OrderKeepingQuantizeScheme())
    check_input_order(qat_model, model)
    copy_trained_weights(model, qat_model)
    return qat_model


def _inbound_names(layer_config: dict[str, Any]) -> list[str] | None:
    """Names of the layers feeding a layer called once, in order; None otherwise."""
    nodes = layer_config.get("inbound_nodes") or []
    if len(nodes) != 1 or not nodes[0] or not isinstance(nodes[0][0], list):
        return None
    return [item[0] for item in nodes[0]]


def check_input_order(qat_model: keras.Model, float_model: keras.Model) -> None:
    """Raises QuantizeError if a multi-input layer of `qat_model` is fed in another order than in `float_model`.

    A reordered Concatenate still builds and trains, but it is another network
    than the float one (see `OrderKeepingLayoutTransform`): catch it here.
    """
    wanted = {}
    for entry in float_model.get_config()["layers"]:
        inbound = _inbound_names(entry)
        if inbound and len(inbound) > 1:
            wanted[entry["name"]] = inbound
    config = qat_model.get_config()
    inner = {layer.name: _inner(layer).name for layer in qat_model.layers}
    for entry in config["layers"]:  # tfmot's input QuantizeLayer stands for the input it quantizes
        inbound = _inbound_names(entry)
        if entry["class_name"] == "QuantizeLayer" and inbound:
            inner[entry["name"]] = inner.get(inbound[0], inbound[0])
    for entry in config["layers"]:
        name = inner.get(entry["name"], entry["name"])
        inbound = _inbound_names(entry)
        if name in wanted and inbound is not None:
            got = [inner.get(item, item) for item in inbound]
            if got != wanted[name]:
                raise QuantizeError(f"layer {name!r}: the QAT model feeds it {got}, the float model {wanted[name]}")


def _inner(layer: keras.layers.Layer) -> keras.layers.Layer:
    return layer.layer if isinstance(layer, QuantizeWrapper) else layer


def float_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """The model's own layers, unwrapped from tfmot's QuantizeWrapper where wrapped.

    tfmot's input `QuantizeLayer` (only quantizer ranges, no model weights) is left out.
    """
    for layer in model.layers:
        if not isinstance(layer, QuantizeLayer):
            yield _inner(layer)


def layer_variables(layer: keras.layers.Layer) -> dict[str, Any]:
    """A layer's float variables by name below the layer ("kernel:0", "bn_rate6/gamma:0").

    For a tfmot wrapper these are the wrapped layer's variables, which the wrapper
    holds (tfmot swaps a quantized kernel into the wrapped layer, which then no
    longer lists the variable itself); its quantizer ranges are left out.
    """
    inner = _inner(layer)
    prefix = inner.name + "/"
    if layer is inner:
        variables = layer.weights
    else:
        # The wrapped layer's own, plus the weights tfmot swapped out of it; the wrapper's quantizer ranges and
        # step counter are left out by identity (a wrapper rebuilt from its config names them "<layer>/...").
        held = {id(v) for v in inner.weights} | {id(weight) for weight, _, _ in getattr(layer, "_weight_vars", [])}
        variables = [v for v in layer.weights if id(v) in held]
    found = {}
    for variable in variables:
        name = variable.name
        # A layer built in this process names its variables "<layer>/kernel:0"; a reloaded one "kernel:0".
        found[name[len(prefix):] if name.startswith(prefix) else name] = variable
    return found


def copy_trained_weights(source: keras.Model, target: keras.Model) -> int:
    """Copies each layer's float weights from `source` to the same-named layer of `target`.

    Either model may be a QAT model (layers wrapped by tfmot) or a plain zoo model;
    quantizer ranges and step counters are not copied. Returns the layers copied;
    raises QuantizeError if a weight of `target` has no counterpart of equal shape.
    """
    theirs = {_inner(layer).name: layer for layer in source.layers if not isinstance(layer, QuantizeLayer)}
    copied = 0
    for layer in target.layers:
        if isinstance(layer, QuantizeLayer):
            continue
        ours = layer_variables(layer)
        if not ours:
            continue
        name = _inner(layer).name
        values = layer_variables(theirs[name]) if name in theirs else {}
        for key, variable in ours.items():
            value = values.get(key)
            if value is None or value.shape != variable.shape:
                raise QuantizeError(f"weight {name}/{key} {variable.shape}: no counterpart in model {source.name!r}")
            variable.assign(value)
        copied += 1
    return copied
