"""Activation ranges of an int8 export taken from quantization-aware training instead of calibration.

The int8 converter quantizes every activation tensor with the min/max it measured
on the calibration images. After QAT the network has been trained against the
ranges of its fake-quantizers, so the file should use those. No maintained tool
joins the two (tfmot's own path converts the fake-quant graph, which cannot carry
the KSAC-aware unrolled pyramid), so this is written by hand: the converter's
calibration step is wrapped (`ranges_replaced_after_calibration`) and the
measured min/max of each tensor that a QAT quantizer covers is replaced by that
quantizer's range before the converter quantizes the model. Tensors no QAT
quantizer covers (e.g. a resize output) keep their calibrated range.

Range keys, shared with `quantize.calibrate.qat_activation_ranges`:

- `"input"`: the model input;
- `"<layer>"`: the output of a Keras layer (the converter names a fused
  CONV_2D + BatchNorm + ReLU tensor after its last layer, e.g. `block_1_expand_relu`);
- `"<ksac layer>/rate<r>_relu"` and `"<ksac layer>/partial_sum<k>"`: one rate's ReLU
  output and the sum of the first k rates inside the unrolled KSAC pyramid
  (`convert.graph`); the sum of all rates is `"<ksac layer>"`; a separable pyramid
  also has `"<ksac layer>/rate<r>_depthwise_relu"` (the depthwise step's output).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Collection, Iterator, Mapping, Sequence

import numpy as np
from tensorflow.lite.tools import flatbuffer_utils

Ranges = Mapping[str, tuple[float, float]]


def range_key(tensor_name: str, ksac_rates: Mapping[str, Sequence[int]], separable: Collection[str] = ()) -> str | None:
    """The range key of a converter tensor name like `model/block_1_expand_relu/Relu6;...`, or None.

    Args:
        tensor_name: the flatbuffer tensor name (the first `;`-separated part names the last fused op).
        ksac_rates: the rates of each KSAC layer, by layer name.
        separable: the KSAC layers among them that are separable: two ReLUs per rate, in order
            `rate<r>_depthwise_relu`, `rate<r>_relu`.
    """
    parts = tensor_name.split(";")[0].split("/")
    if len(parts) < 3:
        return None
    layer, op = parts[1], parts[-1]
    if layer not in ksac_rates:
        return layer
    rates = list(ksac_rates[layer])
    # Inside the unrolled pyramid: Relu, Relu_1, ... per rate; add, add_1, ... per partial sum.
    base, _, index = op.partition("_")
    number = int(index) if index.isdigit() else 0 if not index else None
    if number is None or len(parts) != 3:
        return None
    if base == "Relu" and layer in separable and number < 2 * len(rates):
        return f"{layer}/rate{rates[number // 2]}_{'depthwise_relu' if number % 2 == 0 else 'relu'}"
    if base == "Relu" and layer not in separable and number < len(rates):
        return f"{layer}/rate{rates[number]}_relu"
    if base == "add" and number < len(rates) - 1:
        return layer if number == len(rates) - 2 else f"{layer}/partial_sum{number + 2}"
    return None


def apply_ranges(calibrated: bytes, ranges: Ranges, ksac_rates: Mapping[str, Sequence[int]],
                 separable: Collection[str] = ()) -> tuple[bytes, list[str]]:  # fmt: skip
    """Replaces the calibrated min/max of every tensor with a key in `ranges`.

    Returns:
        (the calibrated model with the ranges replaced, the keys used).
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    used = []
    for subgraph in model.subgraphs:
        inputs = set(int(i) for i in subgraph.inputs)
        for index, tensor in enumerate(subgraph.tensors):
            quantization = tensor.quantization
            if quantization is None or quantization.min is None or len(quantization.min) != 1:
                continue  # not a calibrated activation (weights, integer tensors)
            key = "input" if index in inputs else range_key(tensor.name.decode(), ksac_rates, separable)
            if key not in ranges:
                continue
            low, high = ranges[key]
            quantization.min = np.array([min(float(low), 0.0)], np.float32)  # int8 ranges always hold 0
            quantization.max = np.array([max(float(high), 0.0)], np.float32)
            used.append(key)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), used


@contextlib.contextmanager
def ranges_replaced_after_calibration(replace: Callable[[bytes], bytes]) -> Iterator[list[int]]:
    """Within this context, the TFLite converter quantizes `replace(calibrated model)`.

    Wraps `Calibrator.calibrate`, the step whose result the converter hands to its
    quantizer; yields a list that counts the calls, so a caller can check that the
    hook ran (a converter that stopped calling it would otherwise go unnoticed).
    """
    from tensorflow.lite.python.optimize import calibrator

    original = calibrator.Calibrator.calibrate
    calls: list[int] = []

    def calibrate(self, dataset_gen):  # noqa: ANN001 - the converter's own signature
        calls.append(1)
        return replace(original(self, dataset_gen))

    calibrator.Calibrator.calibrate = calibrate
    try:
        yield calls
    finally:
        calibrator.Calibrator.calibrate = original

