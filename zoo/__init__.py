"""The KSAC edge model zoo: backbones, ASPP and KSAC heads (regular and separable), the DeepLabV3+ decoder, a registry.

>>> from zoo import build_model, list_models
>>> model = build_model("mobilenetv2_ksac", input_size=257)
"""

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) buries our own output: import it quietly,
# before anything else does (see zoo/quiet_startup.py).
from zoo.quiet_startup import import_tensorflow

import_tensorflow()

from zoo.layers import DescriptionLayer, ResizeToMatch, SharedAtrousConv2D, SharedSeparableAtrousConv2D
from zoo.registry import (
    MODELS,
    PAPER_MODELS,
    build_model,
    default_output_stride,
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
    "PAPER_MODELS",
    "DescriptionLayer",
    "ResizeToMatch",
    "SharedAtrousConv2D",
    "SharedSeparableAtrousConv2D",
    "build_model",
    "count_macs",
    "default_output_stride",
    "default_rates",
    "describe",
    "head_params",
    "list_backbones",
    "list_heads",
    "list_models",
    "model_name",
    "update_description",
]
