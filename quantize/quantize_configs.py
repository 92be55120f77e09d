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

A QuantizeConfig can only swap attributes of the layer it wraps, and the zoo's
`SharedAtrousConv2D.call` applies `tf.nn.relu` inline; so for QAT the layer is
rebuilt as `QuantizableSharedAtrousConv2D`, a subclass with the same weights whose
per-branch activations and partial sums go through replaceable attributes.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from zoo.layers import SharedAtrousConv2D

PACKAGE = "ksac_zoo_quantize"
QuantizeConfig = tfmot.quantization.keras.QuantizeConfig
LastValueQuantizer = tfmot.quantization.keras.quantizers.LastValueQuantizer
MovingAverageQuantizer = tfmot.quantization.keras.quantizers.MovingAverageQuantizer


def _identity(x: tf.Tensor) -> tf.Tensor:
    return x


@keras.utils.register_keras_serializable(package=PACKAGE)
class QuantizableSharedAtrousConv2D(SharedAtrousConv2D):
    """`SharedAtrousConv2D` whose branch ReLUs and partial sums are replaceable attributes.

    Same weights, same config, same output as the parent; `branch_activations[i]`
    is applied to rate i's BatchNorm output and `sum_activations[j]` to the sum of
    the first j + 2 branches (all but the last sum). tfmot's wrapper replaces them
    with quantize-aware activations (see `SharedKernelQuantizeConfig`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Kept out of Keras' attribute tracking: tfmot swaps these for objects it owns.
        self._branch_activations: list[Callable] = [keras.activations.relu] * len(self.rates)
        self._sum_activations: list[Callable] = [keras.activations.linear] * max(0, len(self.rates) - 2)

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

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        outputs = None
        last = len(self.rates) - 1
        for i, (rate, bn) in enumerate(zip(self.rates, self.batch_norms)):
            branch = self._branch_activations[i](bn(self.branch_conv(inputs, rate), training=training))
            if outputs is None:
                outputs = branch
            else:
                outputs = outputs + branch
                if i < last:
                    outputs = self._sum_activations[i - 1](outputs)
        return outputs

    @classmethod
    def from_layer(cls, layer: SharedAtrousConv2D) -> "QuantizableSharedAtrousConv2D":
        """An unbuilt quantizable copy of `layer`'s configuration (weights are copied after building)."""
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
class SharedKernelQuantizeConfig(QuantizeConfig):
    """QuantizeConfig of `QuantizableSharedAtrousConv2D` (see the module docstring).

    Example:
    >>> layer = QuantizableSharedAtrousConv2D(8, rates=(1, 2, 3))
    >>> annotated = tfmot.quantization.keras.quantize_annotate_layer(layer, SharedKernelQuantizeConfig())
    """

    def get_weights_and_quantizers(self, layer: QuantizableSharedAtrousConv2D) -> list[tuple[Any, Any]]:
        return [(layer.kernel, shared_kernel_quantizer())]

    def get_activations_and_quantizers(self, layer: QuantizableSharedAtrousConv2D) -> list[tuple[Any, Any]]:
        pairs = [
            (activation, NamedMovingAverageQuantizer(f"rate{rate}_relu"))
            for rate, activation in zip(layer.rates, layer.branch_activations)
        ]
        pairs += [
            (activation, NamedMovingAverageQuantizer(f"partial_sum{j + 2}"))
            for j, activation in enumerate(layer.sum_activations)
        ]
        return pairs

    def set_quantize_weights(self, layer: QuantizableSharedAtrousConv2D, quantize_weights: list[tf.Tensor]) -> None:
        (layer.kernel,) = quantize_weights

    def set_quantize_activations(self, layer: QuantizableSharedAtrousConv2D, quantize_activations: list[Any]) -> None:
        count = len(layer.rates)
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
