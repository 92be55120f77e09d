"""The DeepLabV3+ decoder: refine the head's output with stride-4 backbone features."""

from __future__ import annotations

import tf_keras as keras

from zoo.heads import conv_bn_relu, separable_conv_bn_relu
from zoo.layers import ResizeToMatch, batch_norm

LOW_LEVEL_CHANNELS = 48


def deeplabv3plus_decoder(head_output, low_level, filters: int = 256, separable: bool = False):
    """48-channel 1x1 on `low_level`, concat with the upsampled head output, two 3x3 convs.

    Args:
        head_output: the head's features at the output stride.
        low_level: backbone features at stride 4.
        filters: channels of the two 3x3 convolutions (256 in DeepLabV3+).
        separable: DeepLab's own decoder (`decoder_use_separable_conv`): the two 3x3 convolutions
            separable (`decoder_conv{0,1}_{depthwise,pointwise}`, its TF1 names) and the head's output
            upsampled with corner-aligned bilinear resizing, as DeepLab's `_resize_bilinear` does.
    """
    skip = keras.layers.Conv2D(LOW_LEVEL_CHANNELS, 1, use_bias=False, name="decoder_low_level")(low_level)
    skip = batch_norm("decoder_low_level_bn")(skip)
    skip = keras.layers.ReLU(name="decoder_low_level_relu")(skip)
    x = ResizeToMatch(align_corners=separable, name="decoder_upsample")([head_output, skip])
    x = keras.layers.Concatenate(name="decoder_concat")([x, skip])
    if separable:
        x = separable_conv_bn_relu(x, filters, "decoder_conv0")
        return separable_conv_bn_relu(x, filters, "decoder_conv1")
    x = conv_bn_relu(x, filters, 3, "decoder_conv1")
    return conv_bn_relu(x, filters, 3, "decoder_conv2")
