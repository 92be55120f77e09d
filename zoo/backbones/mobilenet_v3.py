"""MobileNetV3-Large and -Small for segmentation, as DeepLab builds them (`mobilenet_v3_{large,small}_seg`).

The architecture is TF-slim's (research/slim/nets/mobilenet/mobilenet_v3.py: `V3_LARGE`, `V3_SMALL`) with
DeepLab's segmentation changes (research/deeplab/core/feature_extractor.py, `mobilenet_v3_large_seg` /
`mobilenet_v3_small_seg`): the last stage's outputs halved (large: layers 13-16 of slim's spec, expansions
336, 480, 480; small: layers 9-12, expansions 144, 288, 288), features taken after the last 1x1 conv
(`layer_17` / `layer_13`; slim's pooling and 1280/1024 classifier conv are dropped), channel counts rounded
to multiples of 8 (slim's `depth_multiplier`, divisible_by 8, min_depth 8). One table per variant
(`MOBILENET_V3_LARGE_SEG`, `MOBILENET_V3_SMALL_SEG`); one loop turns its rows into blocks:
expand 1x1 -> BN -> act, depthwise k x k -> BN -> act, squeeze-and-excitation (where the row says so),
project 1x1 -> BN, residual add where stride 1 and channels match. Strides past the output stride become
dilation of the depthwise kernels (DeepLab's rule, `StrideTracker`).

Layer names are keras.applications.MobileNetV3's (which are slim's scopes) with "/" written "_" and
"BatchNorm" written "BN" (`expanded_conv_3_squeeze_excite_Conv_1`), so that both weight sources map by
rule: `zoo.tf1_checkpoint` (DeepLab's and slim's `MobilenetV3/...`) and `zoo.weights` (the Keras `.h5`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import tf_keras as keras

from zoo.atrous import depthwise_layer
from zoo.backbones.common import Backbone, StrideTracker
from zoo.backbones.mobilenet_v2 import make_divisible
from zoo.layers import HardSigmoid, HardSwish, batch_norm


class Bneck(NamedTuple):
    """One row of a MobileNetV3 table: one inverted-residual ("bneck") block."""

    expansion: float  # expanded channels = make_divisible(input channels x expansion); no expand conv if not wider
    filters: int
    kernel: int
    stride: int
    hard_swish: bool  # activation of the expand and depthwise convs: hard swish, else ReLU
    squeeze_excite: bool


class MobileNetV3Spec(NamedTuple):
    """A MobileNetV3 variant: its first conv, blocks, last 1x1 conv and DeepLab's decoder end points."""

    stem: int  # channels of the first 3x3 stride-2 conv (hard swish)
    blocks: tuple[Bneck, ...]
    last_conv: int  # channels of the final 1x1 conv (hard swish): the features
    # DeepLab's DECODER_END_POINTS, as block indices (0-based; slim's layer_N is block N - 2): the
    # block whose depthwise output is the stride-4 / stride-8 decoder input.
    stride4_block: int
    stride8_block: int


# V3_LARGE of slim, then mobilenet_v3_large_seg: blocks 12-14 and the last conv halved (160 -> 80, 960 -> 480),
# with expansions 336 = 3 x 112, 480 = 6 x 80, 480. End points: layer_4 and layer_7 depthwise outputs.
MOBILENET_V3_LARGE_SEG = MobileNetV3Spec(
    stem=16,
    blocks=(
        Bneck(1, 16, 3, 1, False, False),
        Bneck(4, 24, 3, 2, False, False),
        Bneck(3, 24, 3, 1, False, False),
        Bneck(3, 40, 5, 2, False, True),
        Bneck(3, 40, 5, 1, False, True),
        Bneck(3, 40, 5, 1, False, True),
        Bneck(6, 80, 3, 2, True, False),
        Bneck(2.5, 80, 3, 1, True, False),
        Bneck(184 / 80, 80, 3, 1, True, False),
        Bneck(184 / 80, 80, 3, 1, True, False),
        Bneck(6, 112, 3, 1, True, True),
        Bneck(6, 112, 3, 1, True, True),
        Bneck(3, 80, 5, 2, True, True),
        Bneck(6, 80, 5, 1, True, True),
        Bneck(6, 80, 5, 1, True, True),
    ),
    last_conv=480,
    stride4_block=2,
    stride8_block=5,
)

# V3_SMALL of slim, then mobilenet_v3_small_seg: blocks 8-10 and the last conv halved (96 -> 48, 576 -> 288),
# with expansions 144 = 3 x 48, 288 = 6 x 48, 288. End points: layer_2 and layer_4 depthwise outputs.
MOBILENET_V3_SMALL_SEG = MobileNetV3Spec(
    stem=16,
    blocks=(
        Bneck(1, 16, 3, 2, False, True),
        Bneck(72 / 16, 24, 3, 2, False, False),
        Bneck(88 / 24, 24, 3, 1, False, False),
        Bneck(4, 40, 5, 2, True, True),
        Bneck(6, 40, 5, 1, True, True),
        Bneck(6, 40, 5, 1, True, True),
        Bneck(3, 48, 5, 1, True, True),
        Bneck(3, 48, 5, 1, True, True),
        Bneck(3, 48, 5, 2, True, True),
        Bneck(6, 48, 5, 1, True, True),
        Bneck(6, 48, 5, 1, True, True),
    ),
    last_conv=288,
    stride4_block=0,
    stride8_block=2,
)

# slim's BatchNorm in these models: epsilon 1e-3 (slim's default); keras.applications' momentum.
_BN = dict(momentum=0.999, epsilon=1e-3)
SQUEEZE_FACTOR = 4  # slim's squeeze_excite(squeeze_factor=4), channels rounded to multiples of 8


def _activation(x, hard_swish: bool, name: str):
    return HardSwish(name=name)(x) if hard_swish else keras.layers.ReLU(name=name)(x)


def _conv_bn_act(x, filters: int, kernel: int, stride: int, hard_swish: bool, name: str):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = batch_norm(name + "_BN", **_BN)(x)
    return _activation(x, hard_swish, name + "_activation")


def _squeeze_excite(x, name: str):
    """slim's `squeeze_excite`: global mean -> 1x1 (biased) + ReLU -> 1x1 (biased) + hard sigmoid -> scale x."""
    channels = int(x.shape[-1])
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name=name + "_pool")(x)
    gate = keras.layers.Conv2D(make_divisible(channels / SQUEEZE_FACTOR), 1, name=name + "_Conv")(gate)
    gate = keras.layers.ReLU(name=name + "_relu")(gate)
    gate = keras.layers.Conv2D(channels, 1, name=name + "_Conv_1")(gate)
    gate = HardSigmoid(name=name + "_gate")(gate)
    return keras.layers.Multiply(name=name + "_mul")([x, gate])


def _bneck(x, block_id: int, spec: Bneck, stride: int, rate: int, channels: Callable[[int], int]):
    prefix = f"expanded_conv_{block_id}_" if block_id else "expanded_conv_"
    in_channels = int(x.shape[-1])
    out_channels = channels(spec.filters)
    expanded = make_divisible(in_channels * spec.expansion)
    shortcut = x
    if expanded > in_channels:  # slim's expanded_conv expands only to more channels
        x = _conv_bn_act(x, expanded, 1, 1, spec.hard_swish, prefix + "expand")
    x = depthwise_layer(spec.kernel, rate=rate, strides=stride, padding="same", use_bias=False, name=prefix + "depthwise")(x)
    x = batch_norm(prefix + "depthwise_BN", **_BN)(x)
    x = depthwise_out = _activation(x, spec.hard_swish, prefix + "depthwise_activation")
    if spec.squeeze_excite:
        x = _squeeze_excite(x, prefix + "squeeze_excite")
    x = keras.layers.Conv2D(out_channels, 1, use_bias=False, name=prefix + "project")(x)
    x = batch_norm(prefix + "project_BN", **_BN)(x)
    if stride == 1 and in_channels == out_channels:
        x = keras.layers.Add(name=prefix + "add")([shortcut, x])
    return x, depthwise_out


def mobilenet_v3(inputs, spec: MobileNetV3Spec, output_stride: int = 32, width: float = 1.0) -> Backbone:
    """Builds MobileNetV3 features (`spec`: `MOBILENET_V3_LARGE_SEG` or `MOBILENET_V3_SMALL_SEG`) on `inputs`.

    Args:
        inputs: a 4-D image tensor (NHWC), already normalised to [-1, 1].
        spec: the variant's table.
        output_stride: 8, 16 or 32 (DeepLab's releases: 32); later strides become dilation.
        width: slim's depth multiplier: every layer's channels x width, rounded to a multiple of 8 (at least 8).

    Returns:
        A `Backbone` with the last 1x1 conv's features and the stride-4 and stride-8 decoder end points
        (depthwise outputs, as DeepLab's `DECODER_END_POINTS`).
    """

    def channels(count: int) -> int:
        return make_divisible(count * width)

    tracker = StrideTracker(output_stride)
    x = _conv_bn_act(inputs, channels(spec.stem), 3, tracker.step(2).stride, True, "Conv")
    end_points = {}
    for block_id, block in enumerate(spec.blocks):
        step = tracker.step(block.stride)
        x, depthwise_out = _bneck(x, block_id, block, step.stride, step.rate, channels)
        end_points[block_id] = depthwise_out
    x = _conv_bn_act(x, channels(spec.last_conv), 1, 1, True, "Conv_1")
    return Backbone(features=x, low_level=end_points[spec.stride4_block], stride8=end_points[spec.stride8_block])


def mobilenet_v3_large(inputs, output_stride: int = 32, width: float = 1.0) -> Backbone:
    """DeepLab's `mobilenet_v3_large_seg` (480-channel features); see `mobilenet_v3`."""
    return mobilenet_v3(inputs, MOBILENET_V3_LARGE_SEG, output_stride, width)


def mobilenet_v3_small(inputs, output_stride: int = 32, width: float = 1.0) -> Backbone:
    """DeepLab's `mobilenet_v3_small_seg` (288-channel features); see `mobilenet_v3`."""
    return mobilenet_v3(inputs, MOBILENET_V3_SMALL_SEG, output_stride, width)
