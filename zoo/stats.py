"""Model statistics: multiply-accumulates and head parameters, for `python -m zoo summary`."""

from __future__ import annotations

import numpy as np
import tf_keras as keras

from zoo.layers import SharedAtrousConv2D, SharedSeparableAtrousConv2D

HEAD_PREFIX = "head_"


def _conv_macs(layer: keras.layers.Layer) -> int:
    out_h, out_w = layer.output_shape[1:3]
    kernel_h, kernel_w, in_channels, out_channels = layer.kernel.shape
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return out_h * out_w * kernel_h * kernel_w * in_channels * out_channels
    groups = getattr(layer, "groups", 1)
    return out_h * out_w * kernel_h * kernel_w * in_channels * out_channels // groups


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass at the model's (static) input size.

    Counts convolutions (regular, depthwise, the shared pyramid once per rate)
    the separable shared pyramid's two kernels once per rate) and dense layers; elementwise ops, pooling and resizing are left out, as is usual.
    """
    if None in model.input_shape[1:3]:
        raise ValueError("count_macs needs a model with a static input size")
    total = 0
    for layer in model.layers:
        if isinstance(layer, SharedAtrousConv2D):
            out_h, out_w = layer.output_shape[1:3]
            total += len(layer.rates) * out_h * out_w * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, SharedSeparableAtrousConv2D):
            out_h, out_w = layer.output_shape[1:3]
            per_rate = int(np.prod(layer.depthwise_kernel.shape)) + int(np.prod(layer.pointwise_kernel.shape))
            total += len(layer.rates) * out_h * out_w * per_rate
        elif isinstance(layer, keras.layers.Conv2D):  # DepthwiseConv2D is a Conv2D too
            total += _conv_macs(layer)
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return int(total)


def head_params(model: keras.Model) -> int:
    """Parameters of the ASPP/KSAC head (every layer named `head_*`), BatchNorm statistics included."""
    return int(sum(layer.count_params() for layer in model.layers if layer.name.startswith(HEAD_PREFIX)))
