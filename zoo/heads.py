"""Segmentation heads: DeepLab's ASPP and the paper's KSAC.

Both heads have a 1x1 branch, a 3x3 atrous pyramid, an image-pooling branch, a
concat, a 1x1 projection and dropout. They differ only in the pyramid:

- ASPP: one regular 3x3 convolution (own kernel) + BN + ReLU per rate; the
  projection reads every rate's output (concat of 2 + len(rates) tensors).
- KSAC: `SharedAtrousConv2D`, ONE kernel at every rate, per-rate BN + ReLU,
  summed; the projection reads 3 tensors whatever the number of rates.

The pyramid convolutions are regular (not separable) 3x3 with 256 filters: that
is what the paper's parameter counts (4.5M vs 3.0M on MobileNetV2) imply.
"""

from __future__ import annotations

from typing import Sequence

import tf_keras as keras

from zoo.atrous import conv2d_layer
from zoo.layers import ResizeToMatch, SharedAtrousConv2D, batch_norm

HEADS = ("aspp", "ksac")


def conv_bn_relu(x, filters: int, kernel_size: int, name: str, rate: int = 1):
    """Conv2D (no bias) + BatchNorm + ReLU, named `name`, `name_bn`, `name_relu`."""
    x = conv2d_layer(filters, kernel_size, rate=rate, padding="same", use_bias=False, name=name)(x)
    x = batch_norm(name + "_bn")(x)
    return keras.layers.ReLU(name=name + "_relu")(x)


def image_pooling(x, filters: int):
    """Global average pooling, 1x1 conv + BN + ReLU, broadcast back to the feature size."""
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="head_pool")(x)
    pooled = conv_bn_relu(pooled, filters, 1, "head_pool_conv")
    return ResizeToMatch(name="head_pool_resize")([pooled, x])


def atrous_head(
    x,
    kind: str,
    rates: Sequence[int],
    filters: int = 256,
    dropout: float = 0.1,
):
    """Builds an ASPP or KSAC head on backbone features `x`.

    Args:
        x: backbone features at the output stride.
        kind: "aspp" or "ksac".
        rates: atrous rates of the 3x3 pyramid.
        filters: channels of every branch and of the projection (256 in the paper).
        dropout: dropout rate after the projection (DeepLab keeps 0.9).
    """
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; valid heads: {', '.join(HEADS)}")
    branches = [conv_bn_relu(x, filters, 1, "head_conv1x1")]
    if kind == "aspp":
        branches += [conv_bn_relu(x, filters, 3, f"head_aspp_rate{r}", rate=r) for r in rates]
    else:
        branches.append(SharedAtrousConv2D(filters, rates, name="head_ksac")(x))
    branches.append(image_pooling(x, filters))
    x = keras.layers.Concatenate(name="head_concat")(branches)
    x = conv_bn_relu(x, filters, 1, "head_projection")
    return keras.layers.Dropout(dropout, name="head_dropout")(x)
