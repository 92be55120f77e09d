"""The training loss: softmax cross-entropy that ignores label 255, plus L2 weight decay."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from zoo.layers import SharedAtrousConv2D, SharedSeparableAtrousConv2D

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


# DeepLab's weight-decay rule (slim's conv2d regulariser with regularize_depthwise=False): L2 on the
# kernels of regular and pointwise convolutions (the KSAC shared kernels and the logits layer included);
# never on depthwise kernels, BatchNorm parameters or biases. The rule goes by what a weight IS (the
# layer that owns it and its role there), not by its variable's name: the separable KSAC's shared
# pointwise kernel is called `pointwise_kernel` and is decayed like every other pointwise kernel.
DECAYED_ROLES = frozenset({"kernel", "pointwise"})


# Per layer kind: which of the layer's own weights (by its attribute name) plays which role.
_ROLES_BY_KIND: tuple[tuple[tuple[type, ...], dict[str, str]], ...] = (
    # The shared pyramids' per-rate BatchNorms are their own layers, but a QAT wrapper of a pyramid owns them.
    ((SharedSeparableAtrousConv2D,),
     {"depthwise_kernel": "depthwise", "pointwise_kernel": "pointwise", "gamma": "batchnorm", "beta": "batchnorm"}),
    ((SharedAtrousConv2D,), {"kernel": "kernel", "gamma": "batchnorm", "beta": "batchnorm"}),
    ((keras.layers.SeparableConv2D,), {"depthwise_kernel": "depthwise", "pointwise_kernel": "pointwise", "bias": "bias"}),
    ((keras.layers.DepthwiseConv2D,), {"depthwise_kernel": "depthwise", "bias": "bias"}),
    ((keras.layers.Conv2D, keras.layers.Dense), {"kernel": "kernel", "bias": "bias"}),
    ((keras.layers.BatchNormalization,), {"gamma": "batchnorm", "beta": "batchnorm"}),
)  # fmt: skip


def _own_weight_roles(layer: keras.layers.Layer) -> dict[Any, str]:
    """{variable ref: role} for the trainable weights `layer` itself creates (not its nested layers').

    Matched by the layer's kind and the weight's own name in it. A wrapper (QAT's tfmot
    QuantizeWrapper) owns its wrapped layer's weights and has its kind; it replaces the wrapped layer's
    `kernel` attribute with the quantized tensor, so the attribute itself cannot be read.
    """
    nested = {v.ref() for sub in layer.submodules if isinstance(sub, keras.layers.Layer) for v in sub.trainable_weights}
    own = [v for v in layer.trainable_weights if v.ref() not in nested]
    kind = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer
    for kinds, roles in _ROLES_BY_KIND:
        if isinstance(kind, kinds):
            leaves = {v.ref(): v.name.split("/")[-1].split(":")[0] for v in own}
            return {ref: roles[leaf] for ref, leaf in leaves.items() if leaf in roles}
    return {}


# Plain Python over the model's variables, called inside the traced training step: not for AutoGraph.
@tf.autograph.experimental.do_not_convert
def weight_roles(model: keras.Model) -> list[tuple[tf.Variable, str]]:
    """Every trainable variable of `model` with its role: kernel, pointwise, depthwise, bias or batchnorm.

    Walks every layer, nested ones included (the shared pyramids' per-rate BatchNorms, the float layers
    inside QAT's tfmot wrappers). A trainable variable that no known layer kind owns raises TypeError:
    a new layer must say how its weights are regularised rather than escape weight decay silently.
    """
    role_of: dict[Any, str] = {}
    for layer in [model, *model.submodules]:
        if isinstance(layer, keras.layers.Layer):
            role_of.update(_own_weight_roles(layer))
    unknown = [v.name for v in model.trainable_variables if v.ref() not in role_of]
    if unknown:
        raise TypeError(f"weight decay: no rule for trainable variable(s) {', '.join(unknown)} (training/losses.py)")
    return [(v, role_of[v.ref()]) for v in model.trainable_variables]


def decayed_variables(model: keras.Model) -> list[tf.Variable]:
    """The trainable variables that weight decay applies to: regular and pointwise kernels (`DECAYED_ROLES`)."""
    return [v for v, role in weight_roles(model) if role in DECAYED_ROLES]


def weight_decay_loss(model: keras.Model, weight_decay: float) -> tf.Tensor:
    """DeepLab's L2 regularisation: weight_decay * sum(w^2) / 2 over `decayed_variables(model)`."""
    kernels = decayed_variables(model)
    if weight_decay <= 0 or not kernels:
        return tf.constant(0.0, kernels[0].dtype if kernels else tf.float32)
    return weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in kernels])
