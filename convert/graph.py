"""Keras graph preparation for the TFLite converter: the model as the converter should see it.

`prepare_for_export` clones a zoo model at batch 1 with static shapes (so that the converter emits
native dilated CONV_2D instead of SPACE_TO_BATCH_ND / CONV_2D / BATCH_TO_SPACE_ND, and folds
BatchNorm into ordinary convs), swaps each KSAC pyramid for its unrolled export form below (and, in
int8, MobileNetV3's hard swish for the form XNNPACK runs, `Int8HardSwish`), and adds the arg-max label
map of `--output labels`.

The KSAC pyramid's export form (`UnrolledSharedAtrousConv2D`):

Written by hand because no maintained library does it: the stock converter, at a
static batch of 1, folds each rate's BatchNorm into the shared 3x3 kernel and so
stores the kernel once per rate (the KSAC file becomes as large as ASPP's). Here
the `SharedAtrousConv2D` layer is replaced, for export only, by an unrolled form
that the converter maps to ordinary dilated CONV_2D ops reading ONE kernel:

Per rate r, the branch is y_r = ReLU(s_r * conv(x, K, r) + b_r), with s_r, b_r the
rate's BatchNorm folded to a per-channel scale and shift.

- Float form (fp32, fp16). The kernel is NOT scaled, so it stays one constant:
      z_r = conv(x, K, r) + b_r / s_r            (CONV_2D, bias, fused ReLU)
      y_r = |s_r| * ReLU(z_r)                    (MUL)
  The converter cannot fold the MUL back into the kernel because a fused
  activation sits between them. Cost: one elementwise MUL per rate.

- Integer form (int8). The scale is folded: W_r = K_q * |s_r|, where K_q is K
  snapped to its own int8 grid (per output channel). Per-channel int8
  quantization of W_r then yields exactly the int8 values of K_q for every rate
  (the |s_r| factor moves into that rate's per-channel scale), so every branch's
  weights are the same int8 bytes; `share_pyramid_buffers` then points all of
  them at one buffer. Each branch keeps its own scales and bias: no run-time cost.

Negative BatchNorm scales. The layer constrains gamma >= 0 during training, so
trained models have none; a model whose weights were set otherwise can. For a
channel with s < 0, ReLU(s*x + b) = ReLU(z) - z with z = |s|*x - b, so the branch
becomes z = conv(...) (no fused activation), y = ReLU(z) - m * z with m = 1 on
the negative channels. z then has two consumers, which also stops the converter
from folding anything into the kernel, and the kernel stays shared. Cost: a
RELU, MUL and SUB on the affected branches only. The export report counts those
channels (`negative_scale_channels`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from zoo.atrous import plain_layer
from zoo.layers import SLIM_HARD_SIGMOID_SCALE, HardSwish, SharedAtrousConv2D, SharedSeparableAtrousConv2D
from zoo.registry import describe

FLOAT_FORM = "float"
INT8_FORM = "int8"

# |s| below this is treated as this value: a zero BatchNorm scale would make b/s infinite.
MIN_ABS_SCALE = 1e-6


def fold_batchnorm(bn: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNorm as y = s * x + b; returns (s, b) per channel."""
    gamma = bn.gamma.numpy() if bn.gamma is not None else 1.0
    beta = bn.beta.numpy() if bn.beta is not None else 0.0
    mean, variance = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return scale.astype(np.float64), (beta - mean * scale).astype(np.float64)


def snap_to_int8_grid(kernel: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """Rounds each channel (along `channel_axis`: the output channel of an HWIO kernel, the input channel
    of a depthwise [h, w, C, 1] one) of a kernel to its symmetric per-channel int8 grid.

    The result is exactly representable by int8 values times one scale per channel (max |value| =
    127 steps), which is what makes the folded per-rate kernels quantize to identical int8 bytes.
    """
    moved = np.moveaxis(kernel.astype(np.float64), channel_axis, -1)
    step = np.abs(moved).reshape(-1, moved.shape[-1]).max(axis=0) / 127.0
    step = np.where(step > 0, step, 1.0)
    return np.moveaxis(np.round(moved / step) * step, -1, channel_axis)


class _SharedKernel(NamedTuple):
    """One kernel a pyramid shares across rates, and how a branch applies it."""

    value: np.ndarray
    channel_axis: int  # the axis its BatchNorm's channels run along (its TFLite per-channel axis)
    dilated: bool
    depthwise: bool


def _shared_kernels(source: SharedAtrousConv2D | SharedSeparableAtrousConv2D) -> tuple[list[_SharedKernel], list[list]]:
    """The source's shared kernels and, per rate, the BatchNorm that follows each of them."""
    if isinstance(source, SharedSeparableAtrousConv2D):
        kernels = [
            _SharedKernel(source.depthwise_kernel.numpy().astype(np.float64), 2, dilated=True, depthwise=True),
            _SharedKernel(source.pointwise_kernel.numpy().astype(np.float64), 3, dilated=False, depthwise=False),
        ]
        return kernels, [list(pair) for pair in zip(source.depthwise_batch_norms, source.pointwise_batch_norms)]
    kernels = [_SharedKernel(source.kernel.numpy().astype(np.float64), 3, dilated=True, depthwise=False)]
    return kernels, [[bn] for bn in source.batch_norms]


class UnrolledSharedAtrousConv2D(keras.layers.Layer):
    """Export-only replacement of a KSAC pyramid, `SharedAtrousConv2D` or `SharedSeparableAtrousConv2D`
    (see the module docstring): every shared kernel stays one constant (float) or one int8 buffer.

    Holds the folded constants as numpy arrays; it has no weights and is never saved.
    """

    def __init__(self, source: SharedAtrousConv2D | SharedSeparableAtrousConv2D, form: str, **kwargs: Any) -> None:
        super().__init__(name=source.name, **kwargs)
        if form not in (FLOAT_FORM, INT8_FORM):
            raise ValueError(f"unknown export form {form!r}")
        self.form = form
        self.rates = source.rates
        self.kernels, norms = _shared_kernels(source)
        self.negative_channels = 0
        self.branches = []  # per rate: one stage per shared kernel
        for rate, batch_norms in zip(source.rates, norms):
            stages = []
            for kernel, bn in zip(self.kernels, batch_norms):
                scale, shift = fold_batchnorm(bn)
                negative = scale < 0
                self.negative_channels += int(negative.sum())
                magnitude = np.maximum(np.abs(scale), MIN_ABS_SCALE)
                # For s < 0 the identity needs z = |s|*conv - b, hence the sign flip of the bias;
                # the float form divides by |s| because it applies |s| after the ReLU.
                bias = np.where(negative, -shift, shift)
                if form == FLOAT_FORM:
                    stage = dict(bias=bias / magnitude, scale=magnitude)
                else:
                    along_channels = [-1 if axis == kernel.channel_axis else 1 for axis in range(4)]
                    snapped = snap_to_int8_grid(kernel.value, kernel.channel_axis)
                    stage = dict(kernel=snapped * magnitude.reshape(along_channels), bias=bias)
                stage.update(negative_mask=negative.astype(np.float64) if negative.any() else None)
                stages.append(stage)
            self.branches.append(dict(rate=rate, stages=stages))

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        shared = [tf.constant(k.value, tf.float32) for k in self.kernels] if self.form == FLOAT_FORM else None
        outputs = None
        for branch in self.branches:
            y = inputs
            for i, (kernel, stage) in enumerate(zip(self.kernels, branch["stages"])):
                weights = shared[i] if shared is not None else tf.constant(stage["kernel"], tf.float32)
                rate = branch["rate"] if kernel.dilated else 1
                if kernel.depthwise:
                    z = tf.nn.depthwise_conv2d(y, weights, strides=[1, 1, 1, 1], padding="SAME", dilations=[rate, rate])
                else:
                    z = tf.nn.conv2d(y, weights, strides=1, padding="SAME", dilations=rate)
                z = tf.nn.bias_add(z, tf.constant(stage["bias"], tf.float32))
                y = tf.nn.relu(z)
                if stage["negative_mask"] is not None:
                    y = y - z * tf.constant(stage["negative_mask"], tf.float32)
                if self.form == FLOAT_FORM:
                    y = y * tf.constant(stage["scale"], tf.float32)
            outputs = y if outputs is None else outputs + y
        return outputs


@keras.utils.register_keras_serializable(package="ksac_zoo_export")
class Int8HardSwish(keras.layers.Layer):
    """MobileNetV3's hard swish as the int8 file should compute it: `x * (relu6(x + 3) * 0.16667)`.

    Written as `zoo.layers.HardSwish` is (x * relu6(x + 3) / 6), the converter fuses it into one HARD_SWISH op,
    and XNNPACK (LiteRT's CPU delegate) has no int8 HARD_SWISH: every one falls back to LiteRT's own kernel
    and splits the delegated graph. Measured on this project's 2-core EPYC, MobileNetV3-Large's backbone
    at 513, int8, 1 thread: 28.5 ms fused, 7.2 ms in this form (ADD with fused RELU6, MUL, MUL, all
    delegated). Slim's hard-sigmoid constant 0.16667 (not 1/6) keeps the converter's pattern from matching;
    it differs from 1/6 by 2e-5 relative, far below int8's step. Float files keep the fused op (XNNPACK and
    the GPU delegate run float HARD_SWISH natively).
    """

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs * (tf.nn.relu6(inputs + 3.0) * SLIM_HARD_SIGMOID_SCALE)


@keras.utils.register_keras_serializable(package="ksac_zoo_export")
class LabelMap(keras.layers.Layer):
    """Arg-max over classes as a uint8 label map (`--output labels`), for apps."""

    def call(self, logits: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.uint8)


def input_shape(model: keras.Model, input_size: int | tuple[int, int] | None) -> tuple[int, int]:
    if input_size is None:
        return describe(model).input_size
    if isinstance(input_size, int):
        return (input_size, input_size)
    return tuple(input_size)


def prepare_for_export(
    model: keras.Model,
    precision: str,
    input_size: int | tuple[int, int] | None = None,
    output: str = "logits",
) -> keras.Model:
    """A batch-1, static-shape clone of `model` with the KSAC pyramid in its export form."""
    height, width = input_shape(model, input_size)
    form = INT8_FORM if precision == "int8" else FLOAT_FORM

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, (SharedAtrousConv2D, SharedSeparableAtrousConv2D)):
            return UnrolledSharedAtrousConv2D(layer, form)
        if isinstance(layer, HardSwish) and form == INT8_FORM:
            return Int8HardSwish(name=layer.name)
        # A model built for training (zoo.atrous' layers) converts as the saved one does: Keras' own layers.
        plain = plain_layer(layer)
        return plain if plain is not None else layer.__class__.from_config(layer.get_config())

    inputs = keras.Input((height, width, 3), batch_size=1, name="image")
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone_layer)
    for layer in clone.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    if output == "labels":
        clone = keras.Model(clone.inputs, LabelMap(name="labels")(clone.outputs[0]), name=clone.name)
    return clone


def negative_scale_channels(model: keras.Model) -> int:
    """Channels of KSAC pyramids whose folded BatchNorm scale is negative (see the module docstring)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, (SharedAtrousConv2D, SharedSeparableAtrousConv2D)):
            for bn in layer.batch_norms:
                total += int(np.sum(bn.gamma.numpy() < 0))
    return total
