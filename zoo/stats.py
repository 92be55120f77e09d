"""Model statistics: multiply-accumulates and head parameters, for `python -m zoo summary`."""

from __future__ import annotations

import numpy as np
import tf_keras as keras

from zoo.layers import SharedAtrousConv2D, SharedSeparableAtrousConv2D

HEAD_PREFIX = "head_"

# Layers that hold weights but multiply nothing per pixel worth counting (per-channel scale and shift).
_NO_MACS = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)


def _positions(layer: keras.layers.Layer) -> int:
    """Output positions (height x width, or every axis but the batch and channel ones) of one call."""
    return int(np.prod(layer.output_shape[1:-1]))


def _size(weight) -> int:
    return int(np.prod(weight.shape))


def layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-accumulates of one call of `layer` at its (static) output shape.

    A kernel of k taps producing one output value costs k MACs; a dilated kernel costs what an undilated
    one does (the zeros it skips are not multiplied). In tf_keras DepthwiseConv2D and SeparableConv2D
    are NOT Conv2D subclasses (each derives from its own base), so every kind is listed. A layer with
    weights that is not listed raises: a new layer kind must be counted, not silently skipped.
    """
    if isinstance(layer, SharedAtrousConv2D):  # the shared kernel, once per rate
        return len(layer.rates) * _positions(layer) * _size(layer.kernel)
    if isinstance(layer, SharedSeparableAtrousConv2D):  # shared depthwise + shared pointwise, once per rate
        return len(layer.rates) * _positions(layer) * (_size(layer.depthwise_kernel) + _size(layer.pointwise_kernel))
    if isinstance(layer, keras.layers.SeparableConv2D):
        return _positions(layer) * _size(layer.depthwise_kernel) + _positions(layer) * _size(layer.pointwise_kernel)
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # [kh, kw, C, multiplier]: one output per (C, m)
        return _positions(layer) * _size(layer.depthwise_kernel)
    if isinstance(layer, keras.layers.Conv2DTranspose):  # every input position scatters the whole kernel
        return int(np.prod(layer.input_shape[1:-1])) * _size(layer.kernel)
    if isinstance(layer, keras.layers.Conv2D):  # [kh, kw, C_in / groups, C_out]
        return _positions(layer) * _size(layer.kernel)
    if isinstance(layer, keras.layers.Dense):  # applied at every position of a >2-D input
        return _positions(layer) * _size(layer.kernel)
    if isinstance(layer, keras.Model):
        return sum(layer_macs(inner) for inner in layer.layers)
    if layer.weights and not isinstance(layer, _NO_MACS):
        raise TypeError(f"count_macs: no rule for layer {layer.name!r} of kind {type(layer).__name__}")
    return 0


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass at the model's (static) input size.

    Counts every layer that multiplies: regular, depthwise, separable and transposed convolutions, the
    shared pyramids once per rate, dense layers (`layer_macs`); elementwise ops, BatchNorm, pooling and
    resizing are left out, as is usual. Checked against TensorFlow's own per-op FLOP statistics of the
    traced graph in tests/test_zoo_stats.py.
    """
    if None in model.input_shape[1:3]:
        raise ValueError("count_macs needs a model with a static input size")
    return int(sum(layer_macs(layer) for layer in model.layers))


def head_params(model: keras.Model) -> int:
    """Parameters of the ASPP/KSAC head (every layer named `head_*`), BatchNorm statistics included."""
    return int(sum(layer.count_params() for layer in model.layers if layer.name.startswith(HEAD_PREFIX)))
