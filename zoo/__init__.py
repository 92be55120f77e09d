"""The KSAC edge model zoo: backbones, ASPP and KSAC heads, the DeepLabV3+ decoder, a registry.

>>> from zoo import build_model, list_models
>>> model = build_model("mobilenetv2_ksac", input_size=257)
"""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) buries our own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from zoo.layers import ModelDescription, ResizeToMatch, SharedAtrousConv2D
from zoo.registry import (
    MODELS,
    build_model,
    default_rates,
    describe,
    list_backbones,
    list_heads,
    list_models,
    model_name,
    update_description,
)
from zoo.stats import count_macs, head_params

__all__ = [
    "MODELS",
    "ModelDescription",
    "ResizeToMatch",
    "SharedAtrousConv2D",
    "build_model",
    "count_macs",
    "default_rates",
    "describe",
    "head_params",
    "list_backbones",
    "list_heads",
    "list_models",
    "model_name",
    "update_description",
]
