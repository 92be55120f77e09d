"""Xception65, the "aligned" Xception of DeepLabV3+.

The architecture is the table `XCEPTION65_BLOCKS`; one loop turns its rows into
Xception modules (three separable convolutions and a shortcut). As in DeepLab,
every separable convolution has a BatchNorm after the depthwise and after the
pointwise step; the entry and middle flows apply ReLU before each separable
convolution, the last exit-flow block applies it inside. Once the requested
output stride is reached, later strides become dilation.
"""

from __future__ import annotations

from typing import NamedTuple

import tf_keras as keras

from zoo.atrous import depthwise_layer
from zoo.backbones.common import Backbone, StrideTracker
from zoo.backbones.mobilenet_v2 import make_divisible
from zoo.layers import batch_norm


class XceptionBlock(NamedTuple):
    """One row of the Xception65 table: `repeats` modules of one kind."""

    name: str
    depths: tuple[int, int, int]  # output channels of the three separable convs
    skip: str  # "conv" (1x1 conv shortcut), "sum" (identity) or "none"
    stride: int  # stride of the third separable conv and of the shortcut
    activation_inside: bool  # ReLU inside the separable convs instead of before them
    repeats: int = 1


XCEPTION65_BLOCKS: tuple[XceptionBlock, ...] = (
    XceptionBlock("entry_flow_block1", (128, 128, 128), "conv", 2, False),
    XceptionBlock("entry_flow_block2", (256, 256, 256), "conv", 2, False),
    XceptionBlock("entry_flow_block3", (728, 728, 728), "conv", 2, False),
    XceptionBlock("middle_flow_block1", (728, 728, 728), "sum", 1, False, repeats=16),
    XceptionBlock("exit_flow_block1", (728, 1024, 1024), "conv", 2, False),
    XceptionBlock("exit_flow_block2", (1536, 1536, 2048), "none", 1, True),
)

# DeepLab's decoder reads entry_flow/block2's second separable conv (stride 4, 256 channels).
LOW_LEVEL_BLOCK = "entry_flow_block2_unit1"
LOW_LEVEL_CONV = 2


def _fixed_padding(x, stride: int, name: str):
    """DeepLab's `fixed_padding`: before a stride-2 3x3 convolution, pad one pixel on every side and use "valid".

    Keras "same" pads (0, 1) at even sizes, which shifts the output by one pixel against DeepLab's
    (and against the stride-2 1x1 shortcut); at odd sizes both pad (1, 1). Stride-2 layers never dilate.
    """
    if stride == 1:
        return x, "same"
    return keras.layers.ZeroPadding2D(1, name=name + "_pad")(x), "valid"


def _conv_bn_relu(x, filters: int, stride: int, name: str):
    x, padding = _fixed_padding(x, stride, name)
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding=padding, use_bias=False, name=name)(x)
    x = batch_norm(name + "_bn")(x)
    return keras.layers.ReLU(name=name + "_relu")(x)


def _separable_conv(x, filters: int, stride: int, rate: int, activation_inside: bool, name: str):
    if not activation_inside:
        x = keras.layers.ReLU(name=name + "_pre_relu")(x)
    x, padding = _fixed_padding(x, stride, name + "_depthwise")
    x = depthwise_layer(3, rate=rate, strides=stride, padding=padding, use_bias=False, name=name + "_depthwise")(x)
    x = batch_norm(name + "_depthwise_bn")(x)
    if activation_inside:
        x = keras.layers.ReLU(name=name + "_depthwise_relu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=name + "_pointwise")(x)
    x = batch_norm(name + "_pointwise_bn")(x)
    if activation_inside:
        x = keras.layers.ReLU(name=name + "_pointwise_relu")(x)
    return x


def _xception_module(x, block: XceptionBlock, depths, stride: int, rate: int, name: str):
    residual = x
    separable_outputs = []
    for i, depth in enumerate(depths):
        residual = _separable_conv(
            residual,
            depth,
            stride=stride if i == 2 else 1,
            rate=rate,
            activation_inside=block.activation_inside,
            name=f"{name}_sepconv{i + 1}",
        )
        separable_outputs.append(residual)
    if block.skip == "conv":
        shortcut = keras.layers.Conv2D(depths[-1], 1, strides=stride, use_bias=False, name=name + "_shortcut")(x)
        shortcut = batch_norm(name + "_shortcut_bn")(shortcut)
        residual = keras.layers.Add(name=name + "_add")([residual, shortcut])
    elif block.skip == "sum":
        residual = keras.layers.Add(name=name + "_add")([residual, x])
    return residual, separable_outputs


def xception65(inputs, output_stride: int = 16, width: float = 1.0) -> Backbone:
    """Builds the aligned Xception65 features on `inputs`.

    Args:
        inputs: a 4-D image tensor (NHWC), already normalised to [-1, 1].
        output_stride: 8, 16 or 32; later strides become dilation.
        width: multiplies every channel count (1.0 is the paper's model; small
            values make fast test models).

    Returns:
        A `Backbone` with stride-`output_stride` features (2048 x width channels)
        and stride-4 low-level features (256 x width channels) for the decoder.
    """

    def channels(n: int) -> int:
        return n if width == 1.0 else make_divisible(n * width)

    tracker = StrideTracker(output_stride)
    x = _conv_bn_relu(inputs, channels(32), tracker.step(2).stride, "entry_flow_conv1_1")
    x = _conv_bn_relu(x, channels(64), tracker.step(1).stride, "entry_flow_conv1_2")

    low_level = None
    for block in XCEPTION65_BLOCKS:
        depths = tuple(channels(d) for d in block.depths)
        for unit in range(1, block.repeats + 1):
            step = tracker.step(block.stride)
            name = f"{block.name}_unit{unit}"
            x, separable_outputs = _xception_module(x, block, depths, step.stride, step.rate, name)
            if name == LOW_LEVEL_BLOCK:
                low_level = separable_outputs[LOW_LEVEL_CONV - 1]
    return Backbone(features=x, low_level=low_level)
