"""Backbones: name -> builder `(inputs, output_stride, width) -> Backbone`."""

from zoo.backbones.common import Backbone, StrideTracker, VALID_OUTPUT_STRIDES
from zoo.backbones.mobilenet_v2 import mobilenet_v2
from zoo.backbones.xception import xception65

BACKBONES = {
    "mobilenetv2": mobilenet_v2,
    "xception65": xception65,
}

__all__ = ["BACKBONES", "Backbone", "StrideTracker", "VALID_OUTPUT_STRIDES", "mobilenet_v2", "xception65"]
