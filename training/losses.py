"""The training loss: softmax cross-entropy that ignores label 255, plus L2 weight decay."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

IGNORE_LABEL = 255


def masked_cross_entropy_sum(labels: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(sum of per-pixel cross-entropy over non-ignored pixels, number of those pixels).

    float32, or float64 for a float64 model (`train.py --float64`); float16 logits are upcast.
    """
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, IGNORE_LABEL)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    dtype = tf.float64 if logits.dtype == tf.float64 else tf.float32
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=tf.cast(logits, dtype))
    valid = tf.cast(valid, dtype)
    return tf.reduce_sum(ce * valid), tf.reduce_sum(valid)


# DeepLab's weight-decay rule (slim's conv2d regulariser with regularize_depthwise=False):
# L2 on the kernels of regular and pointwise convolutions (the KSAC shared kernel and
# the logits layer included); never on depthwise kernels, BatchNorm parameters or biases.
# Keras names those variables ".../kernel", ".../depthwise_kernel", ".../gamma", ".../bias".
DECAYED_VARIABLE_NAMES = ("kernel",)


def decayed_variables(model: keras.Model) -> list[tf.Variable]:
    """The trainable variables that weight decay applies to (see `DECAYED_VARIABLE_NAMES`)."""
    return [v for v in model.trainable_variables if v.name.split("/")[-1].split(":")[0] in DECAYED_VARIABLE_NAMES]


def weight_decay_loss(model: keras.Model, weight_decay: float) -> tf.Tensor:
    """DeepLab's L2 regularisation: weight_decay * sum(w^2) / 2 over `decayed_variables(model)`."""
    kernels = decayed_variables(model)
    if weight_decay <= 0 or not kernels:
        return tf.constant(0.0, kernels[0].dtype if kernels else tf.float32)
    return weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in kernels])
