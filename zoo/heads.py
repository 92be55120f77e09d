"""Segmentation heads: DeepLab's ASPP and the paper's KSAC, each regular or separable.

Every head has a 1x1 branch, a 3x3 atrous pyramid, an image-pooling branch, a
concat, a 1x1 projection and dropout. They differ only in the pyramid:

- "aspp": one regular 3x3 convolution (own kernel) + BN + ReLU per rate; the
  projection reads every rate's output (concat of 2 + len(rates) tensors).
- "ksac": `SharedAtrousConv2D`, ONE kernel at every rate, per-rate BN + ReLU,
  summed; the projection reads 3 tensors whatever the number of rates.
  These two are the paper's: regular (not separable) 3x3 convolutions with 256
  filters is what its parameter counts (4.5M vs 3.0M on MobileNetV2) imply.
- "aspp_separable": DeepLab's own ASPP (`split_separable_conv2d` in
  research/deeplab/model.py): per rate, depthwise 3x3 at the rate -> BN -> ReLU
  -> pointwise 1x1 -> BN -> ReLU, each rate its own kernels; DeepLab's BatchNorm
  (epsilon 1e-5, decay 0.9997) and "SAME" padding. Its released checkpoints load whole.
- "ksac_separable": `SharedSeparableAtrousConv2D`, the same branches with the
  depthwise kernel and the pointwise kernel each shared by every rate (the design and
  its arithmetic are in that layer's docstring and docs/models.md).
- "deeplab": no pyramid at all, DeepLab's head for its mobile releases (research/deeplab/model.py's
  `extract_features` without `atrous_rates`): image pooling and the 1x1 branch, concat, projection,
  dropout. It is what DeepLab's MobileNetV2 checkpoints hold and what ships on phones today.
- "lraspp": no pyramid either, DeepLab's head for its MobileNetV3 releases (LR-ASPP, "Searching for
  MobileNetV3"): `extract_features` with `aspp_with_squeeze_and_excitation`, `image_se_uses_qsigmoid`,
  `aspp_with_concat_projection=0`, `aspp_convs_filters=128`, `image_pooling_crop_size=769,769`,
  `image_pooling_stride=4,5` (`lraspp_head`).
"""

from __future__ import annotations

from typing import Sequence

import tf_keras as keras

from zoo.atrous import conv2d_layer, depthwise_layer
from zoo.layers import CropWindowPooling2D, HardSigmoid, ResizeToMatch, SharedAtrousConv2D, SharedSeparableAtrousConv2D, batch_norm

HEADS = ("aspp", "ksac", "aspp_separable", "ksac_separable", "deeplab", "lraspp")
SEPARABLE_SUFFIX = "_separable"
PYRAMIDLESS = ("deeplab", "lraspp")
LRASPP = "lraspp"
# DeepLab's flags for its MobileNetV3 releases (research/deeplab/g3doc/model_zoo.md): the image-level gate
# averages windows of the 769 x 769 training crop's feature size with strides (4, 5) (`image_pooling_crop_size`,
# `image_pooling_stride`).
LRASPP_POOL_CROP = (769, 769)
LRASPP_POOL_STRIDE = (4, 5)


def is_separable(head: str) -> bool:
    """Whether `head` is one of the separable heads (their models also use DeepLab's separable decoder)."""
    return head.endswith(SEPARABLE_SUFFIX)


def has_pyramid(head: str) -> bool:
    """Whether `head` has an atrous pyramid (and so takes rates): every head but DeepLab's mobile ones."""
    return head not in PYRAMIDLESS


def is_deeplab_graph(head: str) -> bool:
    """Whether a model with `head` is DeepLab's graph around it: DeepLab's separable decoder and its
    corner-aligned resizes (TF1's `align_corners=True`), as in the checkpoints DeepLab released for it.
    The separable heads and the pyramid-less one; the paper's regular heads keep half-pixel resizes."""
    return is_separable(head) or head in PYRAMIDLESS


def is_ksac(head: str) -> bool:
    """Whether `head` shares its pyramid kernel(s) across rates (a KSAC head, regular or separable)."""
    return head.removesuffix(SEPARABLE_SUFFIX) == "ksac"


def conv_bn_relu(x, filters: int, kernel_size: int, name: str, rate: int = 1):
    """Conv2D (no bias) + BatchNorm + ReLU, named `name`, `name_bn`, `name_relu`."""
    x = conv2d_layer(filters, kernel_size, rate=rate, padding="same", use_bias=False, name=name)(x)
    x = batch_norm(name + "_bn")(x)
    return keras.layers.ReLU(name=name + "_relu")(x)


def separable_conv_bn_relu(x, filters: int, name: str, rate: int = 1):
    """DeepLab's `split_separable_conv2d`: depthwise 3x3 (dilation `rate`) + BN + ReLU, then pointwise 1x1 +
    BN + ReLU; layers `name_depthwise[_bn|_relu]` and `name_pointwise[_bn|_relu]` (its TF1 scopes' names)."""
    x = depthwise_layer(3, rate=rate, padding="same", use_bias=False, name=name + "_depthwise")(x)
    x = batch_norm(name + "_depthwise_bn")(x)
    x = keras.layers.ReLU(name=name + "_depthwise_relu")(x)
    return conv_bn_relu(x, filters, 1, name + "_pointwise")


def image_pooling(x, filters: int):
    """Global average pooling, 1x1 conv + BN + ReLU, broadcast back to the feature size."""
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="head_pool")(x)
    pooled = conv_bn_relu(pooled, filters, 1, "head_pool_conv")
    return ResizeToMatch(name="head_pool_resize")([pooled, x])


def lraspp_head(x, filters: int = 128, output_stride: int = 32):
    """DeepLab's LR-ASPP head: a 1x1 branch (conv + BN + ReLU) scaled by an image-level gate.

    The gate averages windows of the features (the size of a 769 x 769 crop's features, strides (4, 5);
    the whole map where the features are smaller, which is global pooling), a biased 1x1 conv + hard sigmoid
    (DeepLab's `q_sigmoid`), resized corner-aligned back to the features. No concat, projection or dropout.
    Layers `head_conv1x1[_bn|_relu]` (DeepLab's `aspp0`), `head_pool`, `head_pool_conv` (`image_pooling`),
    `head_pool_gate`, `head_pool_resize`, `head_gate`.
    """
    branch = conv_bn_relu(x, filters, 1, "head_conv1x1")
    pooled = CropWindowPooling2D(LRASPP_POOL_CROP, output_stride, LRASPP_POOL_STRIDE, name="head_pool")(x)
    gate = keras.layers.Conv2D(filters, 1, name="head_pool_conv")(pooled)
    gate = HardSigmoid(name="head_pool_gate")(gate)
    gate = ResizeToMatch(align_corners=True, name="head_pool_resize")([gate, branch])
    return keras.layers.Multiply(name="head_gate")([branch, gate])


def atrous_head(
    x,
    kind: str,
    rates: Sequence[int],
    filters: int = 256,
    dropout: float = 0.1,
    output_stride: int = 16,
):
    """Builds an ASPP or KSAC head (regular or separable) on backbone features `x`.

    Args:
        x: backbone features at the output stride.
        kind: one of `HEADS`.
        rates: atrous rates of the 3x3 pyramid (empty for the pyramid-less "deeplab" head).
        filters: channels of every branch and of the projection (256 in the paper).
        dropout: dropout rate after the projection (DeepLab keeps 0.9).
        output_stride: the features' stride (the LR-ASPP head's pooling window depends on it).
    """
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; valid heads: {', '.join(HEADS)}")
    if not has_pyramid(kind) and rates:
        raise ValueError(f"the {kind} head has no atrous pyramid: it takes no rates, got {tuple(rates)}")
    if kind == LRASPP:
        return lraspp_head(x, filters, output_stride)
    branches = [conv_bn_relu(x, filters, 1, "head_conv1x1")]
    if kind == "deeplab":
        pass
    elif kind == "aspp":
        branches += [conv_bn_relu(x, filters, 3, f"head_aspp_rate{r}", rate=r) for r in rates]
    elif kind == "aspp_separable":
        branches += [separable_conv_bn_relu(x, filters, f"head_aspp_rate{r}", rate=r) for r in rates]
    elif kind == "ksac":
        branches.append(SharedAtrousConv2D(filters, rates, name="head_ksac")(x))
    else:
        branches.append(SharedSeparableAtrousConv2D(filters, rates, name="head_ksac")(x))
    branches.append(image_pooling(x, filters))
    x = keras.layers.Concatenate(name="head_concat")(branches)
    x = conv_bn_relu(x, filters, 1, "head_projection")
    return keras.layers.Dropout(dropout, name="head_dropout")(x)
