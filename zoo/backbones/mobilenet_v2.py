"""MobileNetV2 backbone for segmentation, built the DeepLab way.

The architecture is the table `MOBILENET_V2_BLOCKS`; one loop turns its rows into
inverted-residual blocks. Once the requested output stride is reached, later
strides become dilation (DeepLab's "atrous" trick). Features stop at the
320-channel layer: DeepLab drops the 1280-channel conv, and so does the paper's
parameter count. Layer names follow `keras.applications.MobileNetV2`, so its
ImageNet `.h5` weights load by name (`zoo.weights.load_backbone_weights`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import tf_keras as keras

from zoo.atrous import depthwise_layer
from zoo.backbones.common import Backbone, StrideTracker
from zoo.layers import batch_norm


class InvertedResidual(NamedTuple):
    """One row of the MobileNetV2 table: `repeats` blocks of one kind."""

    expansion: int
    filters: int
    repeats: int
    stride: int


# (expansion t, output channels c, repeats n, first stride s) from the MobileNetV2 paper.
MOBILENET_V2_BLOCKS: tuple[InvertedResidual, ...] = (
    InvertedResidual(1, 16, 1, 1),
    InvertedResidual(6, 24, 2, 2),
    InvertedResidual(6, 32, 3, 2),
    InvertedResidual(6, 64, 4, 2),
    InvertedResidual(6, 96, 3, 1),
    InvertedResidual(6, 160, 3, 2),
    InvertedResidual(6, 320, 1, 1),
)

# keras.applications' BatchNorm settings, kept so that ImageNet weights behave as trained.
_BN = dict(momentum=0.999, epsilon=1e-3)

# DeepLab's decoder reads the expanded depthwise output of the last stride-4 block
# ("layer_4/depthwise_output", named block_2_depthwise_relu here).
LOW_LEVEL_BLOCK = 2


def make_divisible(value: float, divisor: int = 8) -> int:
    """Rounds channel counts as keras.applications.MobileNetV2 does."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def channel_rule(width: float, slim_widths: bool = False) -> Callable[[int], int]:
    """The channels a layer of `c` channels at width 1 gets at `width`: keras.applications' rule
    (`make_divisible(int(c * width))`, multiples of 8), or with `slim_widths` DeepLab's (slim's depth
    multiplier: `c * width` rounded to the nearest integer, at least 1, when `width` is not 1)."""
    if slim_widths and width != 1.0:
        return lambda channels: make_divisible(channels * width, 1)
    return lambda channels: make_divisible(int(channels * width))


def _inverted_residual(x, block_id: int, expansion: int, filters: int, stride: int, rate: int, channels: Callable[[int], int]):
    in_channels = int(x.shape[-1])
    out_channels = channels(filters)
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    shortcut = x
    if block_id:
        x = keras.layers.Conv2D(in_channels * expansion, 1, use_bias=False, name=prefix + "expand")(x)
        x = batch_norm(prefix + "expand_BN", **_BN)(x)
        x = keras.layers.ReLU(6.0, name=prefix + "expand_relu")(x)
    x = depthwise_layer(3, rate=rate, strides=stride, padding="same", use_bias=False, name=prefix + "depthwise")(x)
    x = batch_norm(prefix + "depthwise_BN", **_BN)(x)
    x = depthwise_out = keras.layers.ReLU(6.0, name=prefix + "depthwise_relu")(x)
    x = keras.layers.Conv2D(out_channels, 1, use_bias=False, name=prefix + "project")(x)
    x = batch_norm(prefix + "project_BN", **_BN)(x)
    if stride == 1 and in_channels == out_channels:
        x = keras.layers.Add(name=prefix + "add")([shortcut, x])
    return x, depthwise_out


def mobilenet_v2(inputs, output_stride: int = 16, width: float = 1.0, slim_widths: bool = False) -> Backbone:
    """Builds MobileNetV2 features on `inputs`.

    Args:
        inputs: a 4-D image tensor (NHWC), already normalised to [-1, 1].
        output_stride: 8, 16 or 32; later strides become dilation.
        width: the width multiplier (alpha) of MobileNetV2.
        slim_widths: at a width other than 1, round channel counts as DeepLab's MobileNetV2 does (slim's
            depth multiplier with divisible_by=1, min_depth=1: 24 x 0.5 = 12), not to multiples of 8 as
            keras.applications does (16). DeepLab's depth-multiplier-0.5 release needs it.

    Returns:
        A `Backbone` with the stride-`output_stride` features (320 x width channels)
        and the stride-4 low-level features for the decoder.
    """
    channels = channel_rule(width, slim_widths)
    tracker = StrideTracker(output_stride)
    stride = tracker.step(2)
    x = keras.layers.Conv2D(
        channels(32), 3, strides=stride.stride, padding="same", use_bias=False, name="Conv1"
    )(inputs)
    x = batch_norm("bn_Conv1", **_BN)(x)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)

    block_id = 0
    for spec in MOBILENET_V2_BLOCKS:
        for repeat in range(spec.repeats):
            step = tracker.step(spec.stride if repeat == 0 else 1)
            x, depthwise_out = _inverted_residual(
                x, block_id, spec.expansion, spec.filters, step.stride, step.rate, channels
            )
            if block_id == LOW_LEVEL_BLOCK:
                low_level = depthwise_out
            block_id += 1
    return Backbone(features=x, low_level=low_level)
