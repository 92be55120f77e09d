"""A stride-1 dilated ("atrous") convolution that trains on every CPU.

TensorFlow's own CPU kernels have no gradient for a Conv2D with dilation > 1
(tensorflow/tensorflow#28264): only the oneDNN kernels have one, and TensorFlow
turns oneDNN on by default only on AVX-512-class x86 (AVX2-only x86 and macOS
arm64 builds train without it). The space-to-batch form (`tf.nn.atrous_conv2d`,
what DeepLab trained with, and what Keras' own Conv2D does with a dilation rate)
computes the same convolution from undilated ones, whose gradients exist
everywhere.

`dilated_conv2d` takes the native op wherever its gradient runs (oneDNN, GPUs)
and the space-to-batch form elsewhere; the choice is made once per process and
dtype by trying the gradient of a tiny dilated convolution. It must be per dtype:
oneDNN has the gradient for float32 but not float64, which falls back to
TensorFlow's own kernels (so `train.py --float64` needs space-to-batch even where
float32 runs natively). `KSAC_DILATED_CONV=native` or
`=space_to_batch` forces one form (for benchmarks and tests).

Only training and Keras inference go through here: the TFLite export emits
native dilated CONV_2D ops itself (`convert/ksac_export.py`).
"""

from __future__ import annotations

import functools
import os

import tensorflow as tf

FORM_ENV = "KSAC_DILATED_CONV"
NATIVE = "native"
SPACE_TO_BATCH = "space_to_batch"
FORMS = ("auto", NATIVE, SPACE_TO_BATCH)


@functools.cache
def native_gradient_works(dtype: str = "float32") -> bool:
    """Whether this process's TensorFlow has the kernels of a dilated Conv2D's gradient in `dtype` (tried once per dtype)."""
    options = dict(strides=[1, 1, 1, 1], padding="SAME", dilations=[1, 2, 2, 1])
    with tf.init_scope():  # runs eagerly even while a model or tf.function is being traced
        x = dy = tf.ones([1, 5, 5, 1], dtype=dtype)
        try:
            tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=[3, 3, 1, 1], out_backprop=dy, **options)
            tf.raw_ops.Conv2DBackpropInput(
                input_sizes=[1, 5, 5, 1], filter=tf.ones([3, 3, 1, 1], dtype=dtype), out_backprop=dy, **options
            )
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError):
            return False
    return True


def dilated_conv_form(dtype: str = "float32") -> str:
    """The form `dilated_conv2d` uses for `dtype`: "native" or "space_to_batch" (see the module docstring)."""
    requested = os.environ.get(FORM_ENV, "auto")
    if requested not in FORMS:
        raise ValueError(f"{FORM_ENV}={requested!r}; valid values: {', '.join(FORMS)}")
    if requested != "auto":
        return requested
    return NATIVE if native_gradient_works(tf.as_dtype(dtype).name) else SPACE_TO_BATCH


def check_trainable(dtype: str = "float32") -> None:
    """ValueError naming `KSAC_DILATED_CONV` when it forces the native form where this process has no
    gradient for it in `dtype` (training would otherwise fail at its first step)."""
    if dilated_conv_form(dtype) == NATIVE and not native_gradient_works(tf.as_dtype(dtype).name):
        raise ValueError(
            f"{FORM_ENV}={NATIVE}, but this TensorFlow has no {tf.as_dtype(dtype).name} gradient for a native dilated "
            f"convolution (only oneDNN has one, in float32); unset {FORM_ENV} to train with the space-to-batch form"
        )


def dilated_conv2d(inputs: tf.Tensor, kernel: tf.Tensor, rate: int) -> tf.Tensor:
    """`conv(inputs, kernel, dilation=rate)`, stride 1, SAME padding, differentiable on every CPU and dtype."""
    if rate == 1 or dilated_conv_form(inputs.dtype) == NATIVE:
        return tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME", dilations=rate)
    return tf.nn.atrous_conv2d(inputs, kernel, rate, padding="SAME")
