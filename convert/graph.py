"""Keras graph preparation for the TFLite converter: the model as the converter should see it.

`prepare_for_export` clones a zoo model at batch 1 with static shapes (so that the converter emits
native dilated CONV_2D instead of SPACE_TO_BATCH_ND / CONV_2D / BATCH_TO_SPACE_ND, and folds
BatchNorm into ordinary convs), swaps each KSAC pyramid for its unrolled export form below, and
adds the arg-max label map of `--output labels`.

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

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from zoo.atrous import plain_layer
from zoo.layers import SharedAtrousConv2D
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


def snap_to_int8_grid(kernel: np.ndarray) -> np.ndarray:
    """Rounds each output channel of an HWIO kernel to its symmetric per-channel int8 grid.

    The result is exactly representable by int8 values times one scale per output
    channel (max |value| = 127 steps), which is what makes the folded per-rate
    kernels quantize to identical int8 bytes.
    """
    kernel = kernel.astype(np.float64)
    step = np.abs(kernel).reshape(-1, kernel.shape[-1]).max(axis=0) / 127.0
    step = np.where(step > 0, step, 1.0)
    return np.round(kernel / step) * step


class UnrolledSharedAtrousConv2D(keras.layers.Layer):
    """Export-only replacement of `SharedAtrousConv2D` (see the module docstring).

    Holds the folded constants as numpy arrays; it has no weights and is never saved.
    """

    def __init__(self, source: SharedAtrousConv2D, form: str, **kwargs: Any) -> None:
        super().__init__(name=source.name, **kwargs)
        if form not in (FLOAT_FORM, INT8_FORM):
            raise ValueError(f"unknown export form {form!r}")
        self.form = form
        self.rates = source.rates
        kernel = source.kernel.numpy().astype(np.float64)
        self.branches = []
        self.negative_channels = 0
        snapped = snap_to_int8_grid(kernel)
        for rate, bn in zip(source.rates, source.batch_norms):
            scale, shift = fold_batchnorm(bn)
            negative = scale < 0
            self.negative_channels += int(negative.sum())
            magnitude = np.maximum(np.abs(scale), MIN_ABS_SCALE)
            # For s < 0 the identity needs z = |s|*conv - b, hence the sign flip of the bias;
            # the float form divides by |s| because it applies |s| after the ReLU.
            if form == FLOAT_FORM:
                branch = dict(
                    bias=np.where(negative, -shift, shift) / magnitude,
                    scale=magnitude,
                )
            else:
                branch = dict(kernel=snapped * magnitude, bias=np.where(negative, -shift, shift))
            branch.update(rate=rate, negative_mask=negative.astype(np.float64) if negative.any() else None)
            self.branches.append(branch)
        self.kernel = kernel

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        shared = tf.constant(self.kernel, tf.float32) if self.form == FLOAT_FORM else None
        outputs = None
        for branch in self.branches:
            kernel = shared if shared is not None else tf.constant(branch["kernel"], tf.float32)
            z = tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME", dilations=branch["rate"])
            z = tf.nn.bias_add(z, tf.constant(branch["bias"], tf.float32))
            y = tf.nn.relu(z)
            if branch["negative_mask"] is not None:
                y = y - z * tf.constant(branch["negative_mask"], tf.float32)
            if self.form == FLOAT_FORM:
                y = y * tf.constant(branch["scale"], tf.float32)
            outputs = y if outputs is None else outputs + y
        return outputs


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
        if isinstance(layer, SharedAtrousConv2D):
            return UnrolledSharedAtrousConv2D(layer, form)
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
        if isinstance(layer, SharedAtrousConv2D):
            for bn in layer.batch_norms:
                total += int(np.sum(bn.gamma.numpy() < 0))
    return total
