"""Decoders: DeepLabV3+'s (refine the head's output with stride-4 backbone features) and DeepLab's sum-merge
logits decoder of its MobileNetV3 releases (stride 8)."""

from __future__ import annotations

import tf_keras as keras

from zoo.heads import conv_bn_relu, separable_conv_bn_relu
from zoo.layers import ResizeToMatch, batch_norm

LOW_LEVEL_CHANNELS = 48
DEEPLABV3PLUS = "deeplabv3plus"
SUM_LOGITS = "sum_logits"
DECODERS = (DEEPLABV3PLUS, SUM_LOGITS)


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


def sum_logits_decoder(head_output, stride8, num_classes: int):
    """DeepLab's decoder of its MobileNetV3 releases: class logits of the head plus class logits of the
    stride-8 features (`decoder_use_sum_merge`, `decoder_output_is_logits`, `decoder_filters` = classes,
    `decoder_output_stride=8`).

    Two biased 1x1 convs without BN or activation: `decoder_logits` on the head (DeepLab's
    `decoder/decoder_conv0`) and `decoder_low_level_logits` on the stride-8 end point
    (`decoder/feature_projection0`), summed at stride 8 (`decoder_sum`). DeepLab resizes the head's
    features before its 1x1 conv; this resizes the conv's logits instead, which is the same function
    (a 1x1 conv commutes with bilinear resizing, whose weights sum to 1) at a fraction of the work
    (classes instead of head channels resized, and the conv at stride 32 instead of 8).
    """
    logits = keras.layers.Conv2D(num_classes, 1, name="decoder_logits")(head_output)
    low_level = keras.layers.Conv2D(num_classes, 1, name="decoder_low_level_logits")(stride8)
    logits = ResizeToMatch(align_corners=True, name="decoder_upsample")([logits, low_level])
    return keras.layers.Add(name="decoder_sum")([logits, low_level])
