"""Dilated ("atrous") convolutions, stride 1, in the fastest form that trains on this machine.

TensorFlow's own CPU kernels have no dilated Conv2D gradient (tensorflow/tensorflow#28264) and no
dilated depthwise forward pass: only the oneDNN kernels have them, and TensorFlow turns oneDNN on by
default only on AVX-512-class x86 (AVX2-only x86 and macOS arm64 builds train without it). The
space-to-batch form (`tf.nn.atrous_conv2d`, what DeepLab trained with, and what Keras' own Conv2D
and DepthwiseConv2D do with a dilation rate in graph mode) computes the same convolution from
undilated ones, whose kernels exist everywhere, but it costs a SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND
pair per convolution and pass: on an AVX-512 Xeon with oneDNN, ASPP (Keras' dilated Conv2D) trained
2.9x slower than KSAC (native form) at the same MACs.

So every dilated layer of the zoo takes its form from here, one choice per op kind ("conv2d":
regular and shared-kernel; "depthwise") and dtype: native wherever this process runs it and its
gradients correctly, space-to-batch elsewhere. The choice is made once per process, kind and dtype by
computing a tiny dilated convolution and its two gradients both ways and comparing them (a kernel
that is missing raises; one that silently ignored the dilation would disagree). It must be per dtype:
oneDNN has the dilated kernels for float32 and bfloat16, not float64 or float16.
`KSAC_DILATED_CONV=native` or `=space_to_batch` forces one form for every kind (benchmarks, tests).

Only training and Keras inference go through here: the TFLite export emits native dilated CONV_2D
and DEPTHWISE_CONV_2D ops itself (`convert/graph.py`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import os
from typing import Any, Iterator

import numpy as np
import tensorflow as tf
import tf_keras as keras

FORM_ENV = "KSAC_DILATED_CONV"
NATIVE = "native"
SPACE_TO_BATCH = "space_to_batch"
FORMS = ("auto", NATIVE, SPACE_TO_BATCH)
CONV2D = "conv2d"  # regular and shared-kernel (KSAC) convolutions
DEPTHWISE = "depthwise"
KINDS = (CONV2D, DEPTHWISE)


def _native(kind: str, inputs: tf.Tensor, kernel: tf.Tensor, rate: int) -> tf.Tensor:
    if kind == DEPTHWISE:
        return tf.raw_ops.DepthwiseConv2dNative(
            input=inputs, filter=kernel, strides=[1, 1, 1, 1], padding="SAME", dilations=[1, rate, rate, 1]
        )
    return tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME", dilations=rate)


def _space_to_batch(kind: str, inputs: tf.Tensor, kernel: tf.Tensor, rate: int) -> tf.Tensor:
    if kind == DEPTHWISE:  # tf.nn.depthwise_conv2d wraps a dilated depthwise conv in space-to-batch
        return tf.nn.depthwise_conv2d(inputs, kernel, strides=[1, 1, 1, 1], padding="SAME", dilations=[rate, rate])
    return tf.nn.atrous_conv2d(inputs, kernel, rate, padding="SAME")


@functools.cache
def native_gradient_works(dtype: str = "float32", kind: str = CONV2D) -> bool:
    """Whether this process's TensorFlow computes a dilated `kind` convolution and both its gradients
    natively in `dtype`, equal to the space-to-batch form (tried once per kind and dtype)."""
    if kind not in KINDS:
        raise ValueError(f"unknown convolution kind {kind!r}; valid: {', '.join(KINDS)}")
    # A thread of its own runs eagerly with a gradient tape of its own, even while the caller traces a
    # model or a tf.function (tf.init_scope would run eagerly too, but it pauses every tape).
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(_native_agrees, tf.as_dtype(dtype).name, kind).result()


def _native_agrees(dtype: str, kind: str) -> bool:
    rng = np.random.default_rng(0)
    channels = 3
    kernel_shape = (3, 3, channels, 1) if kind == DEPTHWISE else (3, 3, channels, 2)
    x = tf.constant(rng.uniform(-1, 1, (1, 7, 7, channels)), dtype=dtype)
    k = tf.constant(rng.uniform(-1, 1, kernel_shape), dtype=dtype)
    results = []
    for form in (_native, _space_to_batch):
        try:
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                y = form(kind, x, k, 2)
                loss = tf.reduce_sum(y * y)
            results.append([t.numpy().astype(np.float64) for t in (y, *tape.gradient(loss, [x, k]))])
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError):
            return False
    tolerance = 1e-5 if tf.as_dtype(dtype).size >= 4 else 5e-2  # 16-bit types: a few units in the last place
    return all(np.allclose(a, b, rtol=tolerance, atol=tolerance * np.max(np.abs(b))) for a, b in zip(*results))


def dilated_conv_form(dtype: str = "float32", kind: str = CONV2D) -> str:
    """The form the dilated `kind` convolutions use for `dtype`: "native" or "space_to_batch"."""
    requested = os.environ.get(FORM_ENV, "auto")
    if requested not in FORMS:
        raise ValueError(f"{FORM_ENV}={requested!r}; valid values: {', '.join(FORMS)}")
    if requested != "auto":
        return requested
    return NATIVE if native_gradient_works(tf.as_dtype(dtype).name, kind) else SPACE_TO_BATCH


def chosen_forms(dtype: str = "float32") -> dict[str, str]:
    """{kind: form} for `dtype` on this machine, as training reports it."""
    return {kind: dilated_conv_form(dtype, kind) for kind in KINDS}


def check_trainable(dtype: str = "float32") -> None:
    """ValueError naming `KSAC_DILATED_CONV` when it forces the native form where this process cannot
    train it in `dtype` (training would otherwise fail at its first step)."""
    name = tf.as_dtype(dtype).name
    missing = [kind for kind in KINDS if dilated_conv_form(name, kind) == NATIVE and not native_gradient_works(name, kind)]
    if missing:
        raise ValueError(
            f"{FORM_ENV}={NATIVE}, but this TensorFlow has no native {name} dilated {' or '.join(missing)} convolution "
            f"with gradients (only oneDNN has them, in float32 and bfloat16); unset {FORM_ENV} to train with the "
            "space-to-batch form"
        )


def dilated_conv2d(inputs: tf.Tensor, kernel: tf.Tensor, rate: int) -> tf.Tensor:
    """`conv(inputs, kernel, dilation=rate)`, stride 1, SAME padding, differentiable on every CPU and dtype."""
    if rate == 1:
        return tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME")
    if _only_centre_tap(inputs, kernel, rate):
        return tf.nn.conv2d(inputs, _centre(kernel), strides=1, padding="SAME")
    form = _native if dilated_conv_form(inputs.dtype, CONV2D) == NATIVE else _space_to_batch
    return form(CONV2D, inputs, kernel, rate)


def dilated_depthwise_conv2d(inputs: tf.Tensor, kernel: tf.Tensor, rate: int) -> tf.Tensor:
    """Depthwise `conv(inputs, kernel [h, w, C, 1], dilation=rate)`, stride 1, SAME padding, as `dilated_conv2d`."""
    if rate == 1:
        return tf.nn.depthwise_conv2d(inputs, kernel, strides=[1, 1, 1, 1], padding="SAME")
    if _only_centre_tap(inputs, kernel, rate):
        return tf.nn.depthwise_conv2d(inputs, _centre(kernel), strides=[1, 1, 1, 1], padding="SAME")
    form = _native if dilated_conv_form(inputs.dtype, DEPTHWISE) == NATIVE else _space_to_batch
    return form(DEPTHWISE, inputs, kernel, rate)


_CENTRE_TAP_RULE: contextvars.ContextVar[bool] = contextvars.ContextVar("atrous_centre_tap_rule", default=True)


@contextlib.contextmanager
def as_written() -> Iterator[None]:
    """Within it, dilated convolutions are traced as written, without the centre-tap rule: the naive
    export baseline converts the model as Keras alone computes it (convert/export.py)."""
    token = _CENTRE_TAP_RULE.set(False)
    try:
        yield
    finally:
        _CENTRE_TAP_RULE.reset(token)


def _only_centre_tap(inputs: tf.Tensor, kernel: tf.Tensor, rate: int) -> bool:
    """Whether every tap but the centre one reads SAME padding: a rate at least the (static) feature size.

    DeepLab's large rates on small crops (rates 12 and 18 on the 9x9 map of a 129 crop at OS 16) are such
    convolutions: exactly a 1x1 convolution with the centre tap, values and gradients (the other taps
    only ever multiply zeros), at a ninth of the work and without space-to-batch, which TensorFlow's
    own CPU kernels run slowest at large rates.
    """
    height, width = inputs.shape[1], inputs.shape[2]
    k_h, k_w = kernel.shape[0], kernel.shape[1]
    return (_CENTRE_TAP_RULE.get() and height is not None and width is not None and k_h == k_w and k_h % 2 == 1
            and rate >= height and rate >= width)  # fmt: skip


def _centre(kernel: tf.Tensor) -> tf.Tensor:
    c = kernel.shape[0] // 2
    return kernel[c : c + 1, c : c + 1]


# ---- Keras layers -------------------------------------------------------------------------------------
# Keras' own Conv2D and DepthwiseConv2D take the space-to-batch form for every dilation in graph mode.
# The models that train (`build_model(..., training_forms=True)`, as train.py builds them) use these
# subclasses instead, with the same config, weights and names; saved and exported models hold Keras'
# own layers (train.py saves a model built without training forms; `plain_layer` maps back).

_TRAINING_FORMS: contextvars.ContextVar[bool] = contextvars.ContextVar("atrous_training_forms", default=False)


@contextlib.contextmanager
def training_forms(enabled: bool = True) -> Iterator[None]:
    """Within it, `conv2d_layer` and `depthwise_layer` build this module's layers for dilated convolutions."""
    token = _TRAINING_FORMS.set(enabled)
    try:
        yield
    finally:
        _TRAINING_FORMS.reset(token)


def _takes_our_form(layer: keras.layers.Layer) -> bool:
    return (
        max(layer.dilation_rate) > 1 and layer.dilation_rate[0] == layer.dilation_rate[1]
        and tuple(layer.strides) == (1, 1) and layer.padding == "same" and layer.data_format == "channels_last"
    )  # fmt: skip


@keras.utils.register_keras_serializable(package="ksac_zoo")
class AtrousConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose dilated convolution (stride 1, SAME) takes `dilated_conv2d`'s form.

    Same arguments, config, weights and result as Conv2D; only the op that computes a dilated
    convolution differs (native where it trains here, see the module docstring).
    """

    def convolution_op(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        if not _takes_our_form(self):
            return super().convolution_op(inputs, kernel)
        return dilated_conv2d(inputs, kernel, self.dilation_rate[0])


@keras.utils.register_keras_serializable(package="ksac_zoo")
class AtrousDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` whose dilated convolution (stride 1, SAME) takes
    `dilated_depthwise_conv2d`'s form; otherwise the same layer."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        if not _takes_our_form(self):
            return super().call(inputs)
        outputs = dilated_depthwise_conv2d(inputs, self.depthwise_kernel, self.dilation_rate[0])
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs


def conv2d_layer(filters: int, kernel_size: int, *, rate: int = 1, **kwargs: Any) -> keras.layers.Conv2D:
    """A Conv2D with dilation `rate`: `AtrousConv2D` within `training_forms()` when dilated, else Keras' own."""
    layer = AtrousConv2D if rate > 1 and _TRAINING_FORMS.get() else keras.layers.Conv2D
    return layer(filters, kernel_size, dilation_rate=rate, **kwargs)


def depthwise_layer(kernel_size: int, *, rate: int = 1, **kwargs: Any) -> keras.layers.DepthwiseConv2D:
    """A DepthwiseConv2D with dilation `rate`, chosen as `conv2d_layer` chooses."""
    layer = AtrousDepthwiseConv2D if rate > 1 and _TRAINING_FORMS.get() else keras.layers.DepthwiseConv2D
    return layer(kernel_size, dilation_rate=rate, **kwargs)


def plain_layer(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    """Keras' own layer for one of this module's (same config, unbuilt), or None for any other layer."""
    for ours, keras_layer in ((AtrousConv2D, keras.layers.Conv2D), (AtrousDepthwiseConv2D, keras.layers.DepthwiseConv2D)):
        if type(layer) is ours:
            return keras_layer.from_config(layer.get_config())
    return None
