"""Backbones: name -> builder `(inputs, output_stride, width) -> Backbone`."""

from zoo.backbones.common import Backbone, StrideTracker, VALID_OUTPUT_STRIDES
from zoo.backbones.mobilenet_v2 import mobilenet_v2
from zoo.backbones.mobilenet_v3 import mobilenet_v3_large, mobilenet_v3_small
from zoo.backbones.xception import xception65

BACKBONES = {
    "mobilenetv2": mobilenet_v2,
    "xception65": xception65,
    "mobilenetv3_large": mobilenet_v3_large,
    "mobilenetv3_small": mobilenet_v3_small,
}

__all__ = ["BACKBONES", "Backbone", "StrideTracker", "VALID_OUTPUT_STRIDES", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "xception65"]
