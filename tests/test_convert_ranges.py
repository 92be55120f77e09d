"""Activation ranges given to the int8 export (QAT's) replace the calibrated ones of the tensors they name."""

import pytest
from tensorflow.lite.tools import flatbuffer_utils

from convert.activation_ranges import range_key
from convert.export import ExportError, export_tflite

RATES = {"head_ksac": [6, 12, 18]}


@pytest.mark.parametrize(
    "tensor, key",
    [
        ("m/block_1_expand_relu/Relu6;m/block_1_expand_BN/FusedBatchNormV3;m/block_1_expand/Conv2D1", "block_1_expand_relu"),
        ("m/block_2_add/add", "block_2_add"),
        ("m/head_ksac/Relu;m/head_ksac/BiasAdd;m/head_ksac/Conv2D", "head_ksac/rate6_relu"),
        ("m/head_ksac/Relu_2;m/head_ksac/BiasAdd_2", "head_ksac/rate18_relu"),
        ("m/head_ksac/add", "head_ksac/partial_sum2"),
        ("m/head_ksac/add_1", "head_ksac"),  # the sum of all three rates is the layer's output
        ("m/head_ksac/mul_1", None),  # negative-scale rewrite: not a QAT quantizer's tensor
        ("StatefulPartitionedCall:0", None),
    ],
)
def test_range_keys_of_converter_tensor_names(tensor, key):
    assert range_key(tensor, RATES) == key


@pytest.mark.parametrize(
    "tensor, key",
    [  # the separable pyramid: two ReLUs per rate, depthwise first
        ("m/head_ksac/Relu;m/head_ksac/BiasAdd;m/head_ksac/depthwise", "head_ksac/rate6_depthwise_relu"),
        ("m/head_ksac/Relu_1;m/head_ksac/BiasAdd_1;m/head_ksac/Conv2D", "head_ksac/rate6_relu"),
        ("m/head_ksac/Relu_4", "head_ksac/rate18_depthwise_relu"),
        ("m/head_ksac/Relu_5", "head_ksac/rate18_relu"),
        ("m/head_ksac/Relu_6", None),
        ("m/head_ksac/add", "head_ksac/partial_sum2"),
        ("m/head_ksac/add_1", "head_ksac"),
    ],
)
def test_range_keys_of_the_separable_pyramid(tensor, key):
    assert range_key(tensor, RATES, separable={"head_ksac"}) == key


def activation_scales(tflite):
    """{tensor name: (scale, zero point)} of the per-tensor quantized activations."""
    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite)).subgraphs[0]
    scales = {}
    for tensor in graph.tensors:
        q = tensor.quantization
        if q is not None and q.scale is not None and len(q.scale) == 1 and tensor.buffer is not None:
            scales[tensor.name.decode()] = (float(q.scale[0]), int(q.zeroPoint[0]))
    return scales


def find(scales, prefix):
    (hit,) = [value for name, value in scales.items() if name.split(";")[0].endswith(prefix)]
    return hit


@pytest.mark.slow
def test_given_ranges_replace_the_calibrated_ones(make_tiny_export_model, assert_int8_parity):
    model = make_tiny_export_model("mobilenetv2_ksac")
    common = dict(calibration="synthetic", calibration_steps=4, parity_images=2)
    calibrated = export_tflite(model, "int8", **common)
    given = {"Conv1_relu": (0.0, 6.0), "head_ksac/rate12_relu": (0.0, 2.55), "head_ksac/partial_sum2": (0.0, 5.1)}
    result = export_tflite(model, "int8", activation_ranges=given, **common)
    assert calibrated.report["given_activation_ranges"] == 0
    assert result.report["given_activation_ranges"] == 3
    scales, before = activation_scales(result.tflite), activation_scales(calibrated.tflite)
    for prefix, (low, high) in [("Conv1_relu/Relu6", given["Conv1_relu"]), ("head_ksac/Relu_1", given["head_ksac/rate12_relu"]),
                                ("head_ksac/add", given["head_ksac/partial_sum2"])]:  # fmt: skip
        scale, zero_point = find(scales, prefix)
        assert scale == pytest.approx((high - low) / 255, rel=1e-5) and zero_point == -128
        assert find(before, prefix)[0] != pytest.approx(scale, rel=1e-3)  # calibration had measured another range
    # A tensor not named keeps its calibrated range; the kernel is still stored once.
    assert find(scales, "block_1_expand_relu/Relu6") == find(before, "block_1_expand_relu/Relu6")
    assert result.report["shared_kernel_buffers"] == 1
    # Against Keras, as test_convert.py's INT8_PARITY["mobilenetv2_ksac"] (2x the measured max |diff|):
    # measured agreement 1.0 both, max |diff| 0.0109 calibrated, 0.0114 with the given ranges.
    assert_int8_parity(calibrated.report, 0.99, 0.02)
    assert_int8_parity(result.report, 0.99, 0.02)


def test_ranges_are_for_int8_only(tiny_ksac):
    with pytest.raises(ExportError, match="int8"):
        export_tflite(tiny_ksac, "fp32", activation_ranges={"input": (-1.0, 1.0)}, check_parity=False)
