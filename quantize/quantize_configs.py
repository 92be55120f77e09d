"""Quantization-aware training of the KSAC pyramid: what is trained is what the int8 file runs.

The int8 export (`convert/graph.py`) runs, for each rate r,
    y_r = ReLU(|s_r| * K_q (*) x + b_r)      (one int8 CONV_2D, fused ReLU, int8 output)
and sums the branches with int8 ADDs, ((y_1 + y_2) + y_3) + ..., where K_q is the ONE
shared kernel on its per-channel symmetric int8 grid. Folding the positive scale
|s_r| into the kernel moves it into that rate's per-channel scales and leaves the
int8 values of K_q unchanged, so fake-quantizing K once, per channel, before the
BatchNorms is exactly the arithmetic of every exported branch.

`SharedKernelQuantizeConfig` therefore quantizes:
- the shared kernel once: per-axis (output channel), symmetric, narrow range [-127, 127];
- each rate's ReLU output (one moving-average quantizer per rate);
- every partial sum of the branches but the last (one per int8 ADD);
- the layer's output, the last sum. It stays on when the pyramid feeds a Concatenate:
  `quantize/annotate.py` (`OrderKeepingLayoutTransform`) drops tfmot's Concatenate
  transforms, which would turn it off but reorder the concat's inputs; the
  Concatenate then quantizes its own output too, and since the converter gives a
  concat's inputs the concat's scale, the file differs by one extra, finer rounding.

The separable pyramid (`SharedSeparableAtrousConv2D`) exports as, per rate,
    a_r = ReLU(|s1_r| * D_q (*)dw x + b1_r),   y_r = ReLU(|s2_r| * P_q a_r + b2_r)
(an int8 DEPTHWISE_CONV_2D and an int8 CONV_2D), so the same holds per kernel: D once per
channel along its axis 2 (`DepthwiseChannelQuantizer`), P once per output channel, and both
ReLU outputs of every rate quantized.

A QuantizeConfig can only swap attributes of the layer it wraps, and the zoo's
`SharedAtrousConv2D.call` applies `tf.nn.relu` inline; so for QAT the layer is
rebuilt as `QuantizableSharedAtrousConv2D`, a subclass with the same weights whose
per-branch activations and partial sums go through replaceable attributes.

Also here: `NoOpQuantizeConfig` (layers that pass int8 values through) and `OutputQuantizeConfig`
(MobileNetV3's HardSwish, HardSigmoid and Multiply: only the output, as the int8 file's one op).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from zoo.layers import SharedAtrousConv2D, SharedSeparableAtrousConv2D

PACKAGE = "ksac_zoo_quantize"
QuantizeConfig = tfmot.quantization.keras.QuantizeConfig
LastValueQuantizer = tfmot.quantization.keras.quantizers.LastValueQuantizer
MovingAverageQuantizer = tfmot.quantization.keras.quantizers.MovingAverageQuantizer


def _identity(x: tf.Tensor) -> tf.Tensor:
    return x


class _ReplaceableActivations:
    """The branch activations and partial-sum activations of a quantizable KSAC pyramid, as attributes
    tfmot's wrapper can replace (kept out of Keras' attribute tracking: tfmot swaps in objects it owns)."""

    def _init_activations(self, branch_count: int, sum_count: int) -> None:
        self._branch_activations: list[Callable] = [keras.activations.relu] * branch_count
        self._sum_activations: list[Callable] = [keras.activations.linear] * max(0, sum_count)

    @property
    def branch_activations(self) -> list[Callable]:
        return self._branch_activations

    @branch_activations.setter
    def branch_activations(self, value: Sequence[Callable]) -> None:
        self._branch_activations = list(value)

    @property
    def sum_activations(self) -> list[Callable]:
        return self._sum_activations

    @sum_activations.setter
    def sum_activations(self, value: Sequence[Callable]) -> None:
        self._sum_activations = list(value)

    def _summed(self, branches: Iterator[tf.Tensor]) -> tf.Tensor:
        """((b1 + b2) + b3) + ..., every partial sum but the last through its sum activation."""
        outputs = None
        last = len(self.rates) - 1
        for i, branch in enumerate(branches):
            if outputs is None:
                outputs = branch
            else:
                outputs = outputs + branch
                if i < last:
                    outputs = self._sum_activations[i - 1](outputs)
        return outputs


@keras.utils.register_keras_serializable(package=PACKAGE)
class QuantizableSharedAtrousConv2D(_ReplaceableActivations, SharedAtrousConv2D):
    """`SharedAtrousConv2D` whose branch ReLUs and partial sums are replaceable attributes.

    Same weights, same config, same output as the parent; `branch_activations[i]`
    is applied to rate i's BatchNorm output and `sum_activations[j]` to the sum of
    the first j + 2 branches (all but the last sum). tfmot's wrapper replaces them
    with quantize-aware activations (see `SharedKernelQuantizeConfig`).
    """

    KERNELS = ("kernel",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_activations(len(self.rates), len(self.rates) - 2)

    def branch_activation_names(self) -> list[str]:
        """The range-key part of each branch activation, in order (`convert.activation_ranges`)."""
        return [f"rate{rate}_relu" for rate in self.rates]

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return self._summed(
            self._branch_activations[i](bn(self.branch_conv(inputs, rate), training=training))
            for i, (rate, bn) in enumerate(zip(self.rates, self.batch_norms))
        )

    @classmethod
    def from_layer(cls, layer: SharedAtrousConv2D) -> "QuantizableSharedAtrousConv2D":
        """An unbuilt quantizable copy of `layer`'s configuration (weights are copied after building)."""
        return cls.from_config(layer.get_config())


@keras.utils.register_keras_serializable(package=PACKAGE)
class QuantizableSharedSeparableAtrousConv2D(_ReplaceableActivations, SharedSeparableAtrousConv2D):
    """`SharedSeparableAtrousConv2D` with replaceable activations, as `QuantizableSharedAtrousConv2D`:
    per rate, `branch_activations[2i]` after the depthwise BatchNorm and `[2i + 1]` after the pointwise one
    (the int8 file's DEPTHWISE_CONV_2D and CONV_2D outputs), then the partial sums."""

    KERNELS = ("depthwise_kernel", "pointwise_kernel")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_activations(2 * len(self.rates), len(self.rates) - 2)

    def branch_activation_names(self) -> list[str]:
        return [name for rate in self.rates for name in (f"rate{rate}_depthwise_relu", f"rate{rate}_relu")]

    def _branch(self, inputs: tf.Tensor, i: int, training: bool | None) -> tf.Tensor:
        rate, bn1, bn2 = self.rates[i], self.depthwise_batch_norms[i], self.pointwise_batch_norms[i]
        x = self._branch_activations[2 * i](bn1(self.branch_depthwise(inputs, rate), training=training))
        x = tf.nn.conv2d(x, self.pointwise_kernel, strides=1, padding="SAME")
        return self._branch_activations[2 * i + 1](bn2(x, training=training))

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return self._summed(self._branch(inputs, i, training) for i in range(len(self.rates)))

    @classmethod
    def from_layer(cls, layer: SharedSeparableAtrousConv2D) -> "QuantizableSharedSeparableAtrousConv2D":
        return cls.from_config(layer.get_config())


@keras.utils.register_keras_serializable(package=PACKAGE)
class NamedMovingAverageQuantizer(MovingAverageQuantizer):
    """tfmot's moving-average activation quantizer with a name prefix on its range variables.

    Several activations of one wrapped layer would otherwise all create variables
    called `post_activation_min/max`, which a checkpoint cannot tell apart.
    """

    def __init__(self, prefix: str, num_bits: int = 8, per_axis: bool = False,
                 symmetric: bool = False, narrow_range: bool = False) -> None:  # fmt: skip
        super().__init__(num_bits=num_bits, per_axis=per_axis, symmetric=symmetric, narrow_range=narrow_range)
        self.prefix = prefix

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, tf.Variable]:
        return super().build(tensor_shape, f"{self.prefix}_{name}", layer)

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), prefix=self.prefix)


def shared_kernel_quantizer() -> LastValueQuantizer:
    """Per-output-channel symmetric narrow-range int8: the grid `snap_to_int8_grid` uses on export."""
    return LastValueQuantizer(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)


@keras.utils.register_keras_serializable(package=PACKAGE)
class DepthwiseChannelQuantizer(LastValueQuantizer):
    """`shared_kernel_quantizer` for a depthwise kernel [h, w, C, 1]: per channel C (its axis 2), the axis
    DEPTHWISE_CONV_2D's int8 scales run along and `snap_to_int8_grid(kernel, 2)` snaps on export.
    (tfmot's per-axis quantizers take the last axis, the depth multiplier here.)"""

    def __init__(self, **kwargs: Any) -> None:
        kwargs = dict(dict(num_bits=8, per_axis=True, symmetric=True, narrow_range=True), **kwargs)
        super().__init__(**kwargs)

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, tf.Variable]:
        shape = tf.TensorShape(tensor_shape).as_list()
        return super().build(tf.TensorShape(shape[:2] + [shape[3], shape[2]]), name, layer)

    def __call__(self, inputs: tf.Tensor, training: bool, weights: dict[str, tf.Variable], **kwargs: Any) -> tf.Tensor:
        swapped = tf.transpose(inputs, [0, 1, 3, 2])
        return tf.transpose(super().__call__(swapped, training, weights, **kwargs), [0, 1, 3, 2])

    def get_config(self) -> dict[str, Any]:
        return {}


@keras.utils.register_keras_serializable(package=PACKAGE)
class SharedKernelQuantizeConfig(QuantizeConfig):
    """QuantizeConfig of `QuantizableSharedAtrousConv2D` and `QuantizableSharedSeparableAtrousConv2D`
    (see the module docstring): each shared kernel once, on the export's per-channel grid; one
    activation quantizer per branch activation and per inner partial sum; the output.

    Example:
    >>> layer = QuantizableSharedAtrousConv2D(8, rates=(1, 2, 3))
    >>> annotated = tfmot.quantization.keras.quantize_annotate_layer(layer, SharedKernelQuantizeConfig())
    """

    def get_weights_and_quantizers(self, layer: QuantizableSharedAtrousConv2D) -> list[tuple[Any, Any]]:
        quantizers = {"depthwise_kernel": DepthwiseChannelQuantizer}
        return [(getattr(layer, name), quantizers.get(name, shared_kernel_quantizer)()) for name in layer.KERNELS]

    def get_activations_and_quantizers(self, layer: QuantizableSharedAtrousConv2D) -> list[tuple[Any, Any]]:
        pairs = [
            (activation, NamedMovingAverageQuantizer(name))
            for name, activation in zip(layer.branch_activation_names(), layer.branch_activations)
        ]
        pairs += [
            (activation, NamedMovingAverageQuantizer(f"partial_sum{j + 2}"))
            for j, activation in enumerate(layer.sum_activations)
        ]
        return pairs

    def set_quantize_weights(self, layer: QuantizableSharedAtrousConv2D, quantize_weights: list[tf.Tensor]) -> None:
        for name, value in zip(layer.KERNELS, quantize_weights, strict=True):
            setattr(layer, name, value)

    def set_quantize_activations(self, layer: QuantizableSharedAtrousConv2D, quantize_activations: list[Any]) -> None:
        count = len(layer.branch_activations)
        layer.branch_activations = quantize_activations[:count]
        layer.sum_activations = quantize_activations[count:]

    def get_output_quantizers(self, layer: QuantizableSharedAtrousConv2D) -> list[Any]:
        return [MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self) -> dict[str, Any]:
        return {}


@keras.utils.register_keras_serializable(package=PACKAGE)
class NoOpQuantizeConfig(QuantizeConfig):
    """Quantizes nothing: for layers that pass int8 values through unchanged.

    Used for `ResizeToMatch` (TFLite's int8 RESIZE_BILINEAR keeps its input's scale)
    and `DescriptionLayer` (an identity that vanishes in the converted graph).
    """

    def get_weights_and_quantizers(self, layer: keras.layers.Layer) -> list:
        return []

    def get_activations_and_quantizers(self, layer: keras.layers.Layer) -> list:
        return []

    def set_quantize_weights(self, layer: keras.layers.Layer, quantize_weights: list) -> None:
        pass

    def set_quantize_activations(self, layer: keras.layers.Layer, quantize_activations: list) -> None:
        pass

    def get_output_quantizers(self, layer: keras.layers.Layer) -> list:
        return []

    def get_config(self) -> dict[str, Any]:
        return {}


@keras.utils.register_keras_serializable(package=PACKAGE)
class OutputQuantizeConfig(NoOpQuantizeConfig):
    """Quantizes only a layer's output (8 bits, per tensor, asymmetric, moving-average range), as the int8
    file quantizes the output of what the layer becomes; the layer has no weights.

    Used for MobileNetV3's layers, which tfmot's default registry does not know:
    - `HardSwish`: in the int8 file ADD (fused RELU6), MUL, MUL (`convert.graph.Int8HardSwish`);
    - `HardSigmoid`: `relu6(x + 3) * scale` becomes the preceding conv's fused RELU6 (its bias takes the + 3;
      `quantize.annotate` leaves that conv's output unquantized, as tfmot does before a ReLU) and an int8 MUL
      by the constant, whose output scale is the RELU6 output's times `scale`: one rounding, here;
    - `keras.layers.Multiply` (the squeeze-and-excitation and LR-ASPP gates): one int8 MUL. Its inputs are
      quantized by the layers that make them (the gate's through the `NoOpQuantizeConfig` of a resize);
    - `zoo.layers.CropWindowPooling2D` (the LR-ASPP gate's pooling): one AVERAGE_POOL_2D.

    Example:
    >>> from zoo.layers import HardSwish
    >>> annotated = tfmot.quantization.keras.quantize_annotate_layer(HardSwish(), OutputQuantizeConfig())
    """

    def get_output_quantizers(self, layer: keras.layers.Layer) -> list[Any]:
        return [MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]
