"""MobileNetV3's KSAC through the deployment checks: fp32/int8 export with one buffer per shared kernel,
parity with Keras, the int8 hard swish in the form XNNPACK runs, the GPU accelerator (llvmpipe in CI) and
MediaPipe's segmenter (ARM64 kernels: tests/test_inference_arm.py's KINDS)."""

import numpy as np
import pytest

from benchmarks import mediapipe_check
from convert.export import export_tflite
from convert.tflite_file import load_model, op_name

pytestmark = pytest.mark.xdist_group("mobilenet_v3_export")

MODEL = "mobilenetv3_large_ksac_separable"
# Tiny and fast, with rates the 4 x 4 features at 97 px (output stride 32) really dilate.
TINY = dict(input_size=97, rates=(1, 2, 3))
FAST = dict(calibration_steps=4, parity_images=2)
# int8 against Keras, measured on a 2-core AMD EPYC (AVX-512): agreement 1.0, max |logit diff| 0.0081 (randomized
# BatchNorm, 16-channel head: one class nearly everywhere); about 2x the difference as the bound.
INT8_PARITY = (0.99, 0.02)


def _ops(tflite: bytes) -> dict[str, int]:
    model = load_model(tflite)
    counts: dict[str, int] = {}
    for op in model.subgraphs[0].operators:
        counts[op_name(model, op)] = counts.get(op_name(model, op), 0) + 1
    return counts


@pytest.mark.slow
def test_mobilenet_v3_ksac_exports_with_shared_kernels_on_gpu_and_mediapipe(
        make_tiny_export_model, make_image_sensitive_model, assert_runs_on_gpu, assert_int8_parity, tmp_path):  # fmt: skip
    model = make_tiny_export_model(MODEL, **TINY)
    for precision in ("fp32", "int8"):  # fp16 is fp32's graph with fp16 weights (tests/test_convert.py covers it)
        result = export_tflite(model, precision, check_gpu=True, **FAST)
        report, ops = result.report, _ops(result.tflite)
        assert_runs_on_gpu(report)
        assert report["shared_kernel_buffers_per_kernel"] == {"depthwise": 1, "pointwise": 1}, report
        assert "SPACE_TO_BATCH_ND" not in ops
        if precision == "int8":
            assert_int8_parity(report, *INT8_PARITY)
            # XNNPACK has no int8 HARD_SWISH: the exporter writes it as ADD(relu6) + MUL + MUL (convert/graph.py).
            assert "HARD_SWISH" not in ops and ops["MUL"] > 20, ops
        else:
            assert ops["HARD_SWISH"] >= 10, ops  # fused: float XNNPACK and the GPU run it natively
            assert report["argmax_agreement"] >= 0.999 and report["max_abs_diff"] < 1e-3
    # MediaPipe's ImageSegmenter reads the int8 file's metadata and computes our arg-max.
    names = ["bg", "a", "b", "c", "d"]
    sensitive = make_image_sensitive_model(MODEL, num_classes=5, label_names=names, **TINY)
    path = tmp_path / "v3_int8.tflite"
    path.write_bytes(export_tflite(sensitive, "int8", **FAST).tflite)
    seen = mediapipe_check.check(str(path), count=4, non_square=False)
    assert seen["mediapipe_labels"] == names and seen["classes_in_masks"] >= 2, seen
    assert seen["agreement_input_size"] >= 0.999, seen


def test_the_lraspp_gate_pools_as_deeplab_at_every_export_size(make_tiny_export_model):
    """The LR-ASPP head's image pooling window follows the input size (DeepLab's crop-size rule), so a model built
    at one size and exported at another pools as DeepLab would there: here 25 x 25 windows, strides (4, 5), on
    the 33 x 65 features of 1025 x 2049, a 3 x 9 gate; global at the built 97 px."""
    from convert.graph import prepare_for_export

    model = make_tiny_export_model("mobilenetv3_small_lraspp", input_size=97)
    assert model.get_layer("head_pool").output_shape[1:3] == (1, 1)
    export_model = prepare_for_export(model, "fp32", (1025, 2049))
    assert export_model.get_layer("head_pool").output_shape[1:3] == (3, 9)
    image = np.random.default_rng(0).uniform(-1, 1, (1, 1025, 2049, 3)).astype(np.float32)
    assert np.isfinite(export_model(image)).all()
