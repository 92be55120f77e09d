"""What every backbone returns, and DeepLab's rule for turning strides into dilation."""

from __future__ import annotations

from typing import Any, NamedTuple

# Defined with the model description, which records the stride (and refuses any other).
from inference.description import OUTPUT_STRIDES as VALID_OUTPUT_STRIDES


class Backbone(NamedTuple):
    """Backbone outputs: deep features at the output stride, low-level features at stride 4 (and, where the
    backbone has DeepLab's stride-8 decoder end point, those at stride 8: MobileNetV3's LR-ASPP decoder)."""

    features: Any
    low_level: Any
    stride8: Any = None


class LayerStep(NamedTuple):
    stride: int
    rate: int


class StrideTracker:
    """Keeps the running stride and, once it reaches `output_stride`, turns strides into rates.

    This is DeepLab's `stack_blocks_dense` rule: a layer that would make the
    features coarser than the output stride runs with stride 1 instead, and every
    later layer is dilated by the stride that was skipped.
    """

    def __init__(self, output_stride: int) -> None:
        if output_stride not in VALID_OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {VALID_OUTPUT_STRIDES}, got {output_stride!r}")
        self.output_stride = output_stride
        self.current_stride = 1
        self.rate = 1

    def step(self, stride: int) -> LayerStep:
        if self.current_stride == self.output_stride:
            step = LayerStep(1, self.rate)
            self.rate *= stride
            return step
        self.current_stride *= stride
        return LayerStep(stride, 1)
