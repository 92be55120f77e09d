"""`inference.runtime` (the one LiteRT runtime) and `inference.description` on tiny hand-made models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from inference.runtime import InvalidModel, TensorInfo, TFLiteModel, dequantize, quantize

SHAPE = (1, 6, 6, 3)


def _tiny(int8: bool) -> bytes:
    """A 1x1 convolution plus bias: float I/O, or full-integer int8 with int8 I/O."""
    import tensorflow as tf

    kernel = tf.constant(np.linspace(-1.0, 1.0, 3 * 4, dtype=np.float32).reshape(1, 1, 3, 4))

    @tf.function(input_signature=[tf.TensorSpec(SHAPE, tf.float32)])
    def conv(x):
        return tf.nn.conv2d(x, kernel, 1, "SAME") + 0.25

    converter = tf.lite.TFLiteConverter.from_concrete_functions([conv.get_concrete_function()], conv)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [np.random.default_rng(i).uniform(-1, 1, SHAPE).astype(np.float32)] for i in range(16)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def float_tflite() -> bytes:
    return _tiny(int8=False)


@pytest.fixture(scope="module")
def int8_tflite() -> bytes:
    return _tiny(int8=True)


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, SHAPE).astype(np.float32)


def test_quantize_and_dequantize_by_hand():
    int8 = TensorInfo("x", 0, (4,), np.dtype(np.int8), scale=0.5, zero_point=-3)
    # round(x / 0.5 - 3), clipped to [-128, 127]
    assert quantize(np.array([1.0, -0.26, 100.0, -100.0]), int8).tolist() == [-1, -4, 127, -128]
    uint8 = TensorInfo("x", 0, (3,), np.dtype(np.uint8), scale=0.1, zero_point=10)
    assert quantize(np.array([0.0, -5.0, 30.0]), uint8).tolist() == [10, 0, 255]
    out = dequantize(np.array([-3, 7, 127], np.int8), int8)
    assert out.dtype == np.float32 and out.tolist() == [0.0, 5.0, 65.0]
    assert dequantize(np.array([600], np.int16), TensorInfo("y", 0, (1,), np.dtype(np.int16), 0.01, 100)).tolist() == [
        pytest.approx(5.0)
    ]
    labels = TensorInfo("labels", 0, (2,), np.dtype(np.uint8))  # no scale: a label map, returned as is
    raw = np.array([3, 7], np.uint8)
    assert dequantize(raw, labels) is raw
    assert quantize(np.array([0.5]), TensorInfo("f", 0, (1,), np.dtype(np.float32))).dtype == np.float32


def test_float_model_on_cpu(float_tflite, tmp_path):
    model = TFLiteModel(float_tflite, threads=1)
    assert model.input.dtype == np.float32 and not model.input.quantized and model.input.shape == SHAPE
    assert model.output.shape == SHAPE[:3] + (4,) and model.fully_accelerated
    x = _x()
    kernel = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(model.run(x), x @ kernel + 0.25, rtol=1e-5, atol=1e-6)
    path = tmp_path / "float.tflite"
    path.write_bytes(float_tflite)
    np.testing.assert_array_equal(TFLiteModel(path).run(x), model.run(x))  # a path loads like bytes


def test_int8_model_quantizes_and_dequantizes_at_the_edges(float_tflite, int8_tflite):
    model = TFLiteModel(int8_tflite)
    source, target = model.input, model.output
    assert source.dtype == np.int8 and source.quantized and target.dtype == np.int8 and target.quantized
    x = _x(1)
    by_hand = np.clip(np.round(x / source.scale + source.zero_point), -128, 127).astype(np.int8)
    raw = model.run_raw(by_hand)
    assert raw.dtype == np.int8
    expected = (raw.astype(np.float32) - target.zero_point) * np.float32(target.scale)
    out = model.run(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    # And the whole int8 model stays within a few quantisation steps of the float one.
    reference = TFLiteModel(float_tflite).run(x)
    assert np.abs(out - reference).max() < 4 * target.scale + 2 * source.scale


def test_threads_are_validated_and_do_not_change_results(int8_tflite):
    x = _x(2)
    one, two = TFLiteModel(int8_tflite, threads=1), TFLiteModel(int8_tflite, threads=2)
    assert two.threads == 2
    np.testing.assert_array_equal(two.run(x), one.run(x))
    with pytest.raises(ValueError, match="threads"):
        TFLiteModel(int8_tflite, threads=0)
    with pytest.raises(ValueError, match="device"):
        TFLiteModel(int8_tflite, device="tpu")
    with pytest.raises(FileNotFoundError):
        TFLiteModel("/nonexistent/model.tflite")


def test_random_inputs_and_invoke_for_timing(int8_tflite):
    model = TFLiteModel(int8_tflite)
    model.set_random_inputs(seed=3)
    model.invoke()
    first = model.get_output_raw()
    model.set_random_inputs(seed=3)
    model.invoke()
    assert first.dtype == np.int8 and np.array_equal(first, model.get_output_raw())


# Wrong inputs for a model whose input is `shape` and `dtype`: (method, array).
def _wrong_inputs(shape: tuple[int, ...], dtype: np.dtype) -> list[tuple[str, np.ndarray]]:
    good = np.zeros(shape, np.float32)
    return [
        ("run", np.zeros((1, 5, 5, 3), np.float32)),  # another model's size
        ("run", good[..., :2]),  # too few channels
        ("run", good[0]),  # no batch dimension
        ("run", good.astype(np.complex64)),  # not real numbers
        ("run_raw", good.astype(np.float64)),  # raw, but not the tensor's dtype
        ("run_raw", np.zeros((1, 5, 5, 3), dtype)),  # raw, the tensor's dtype, the wrong shape
    ]


def test_wrong_inputs_are_refused_on_the_cpu(float_tflite, int8_tflite):
    for tflite, dtype in ((float_tflite, "float32"), (int8_tflite, "int8")):
        model = TFLiteModel(tflite)
        for method, x in _wrong_inputs(SHAPE, np.dtype(dtype)):
            wanted = dtype if method == "run_raw" else "real numbers"
            expected = f"input 'x' takes shape [1, 6, 6, 3] of {wanted}; got shape {list(x.shape)} of {x.dtype.name}"
            with pytest.raises(ValueError) as error:
                getattr(model, method)(x)
            assert str(error.value) == expected


# Feeds `_wrong_inputs` to a model on one device in a child process (the GPU accelerator and
# TensorFlow do not share a process) and prints what each did, then whether a good input still
# gives the first result (the GPU used to answer a wrong input with the previous run's output).
_FEED_WRONG_INPUTS = """
import json, sys
import numpy as np
from inference.runtime import TFLiteModel
model = TFLiteModel(sys.argv[1], device=sys.argv[2])
good = np.random.default_rng(0).uniform(-1, 1, model.input.shape).astype(np.float32)
first = model.run(good)
answers = []
for method, shape, dtype in json.loads(sys.argv[3]):
    try:
        getattr(model, method)(np.zeros(shape, dtype))
        answers.append("accepted")
    except ValueError as error:
        answers.append(str(error))
print(json.dumps({"answers": answers, "good_input_unchanged": bool(np.array_equal(model.run(good), first))}))
"""


def test_wrong_inputs_get_the_same_error_on_cpu_and_gpu(float_tflite, int8_tflite, tmp_path, gpu_adapter):
    for name, tflite in (("float", float_tflite), ("int8", int8_tflite)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(tflite)
        dtype = TFLiteModel(tflite).input.dtype
        wrong = [(method, list(x.shape), x.dtype.name) for method, x in _wrong_inputs(SHAPE, dtype)]
        answers = {}
        for device in ("cpu", "gpu"):
            done = subprocess.run([sys.executable, "-c", _FEED_WRONG_INPUTS, str(path), device, json.dumps(wrong)],
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, done.stderr[-2000:]
            answers[device] = json.loads(done.stdout.splitlines()[-1])
        assert answers["gpu"] == answers["cpu"], (name, answers)
        assert answers["cpu"]["good_input_unchanged"] is True
        for (_, shape, given), answer in zip(wrong, answers["cpu"]["answers"]):
            assert answer.startswith("input 'x' takes shape [1, 6, 6, 3] of ") and answer.endswith(f"got shape {shape} of {given}")


def _not_models(folder, valid: bytes) -> list:
    """Files a user may take for a model: text, empty, random bytes, the TFL3 identifier then garbage, a cut-off model."""
    rng = np.random.default_rng(0)
    contents = {
        "text.tflite": b"this is not a model\n",
        "empty.tflite": b"",
        "random.tflite": rng.bytes(4096),
        "tfl3_garbage.tflite": b"\x1c\x00\x00\x00TFL3" + rng.bytes(2000),
        "truncated.tflite": valid[: len(valid) // 2],
    }
    paths = []
    for name, data in contents.items():
        paths.append(folder / name)
        paths[-1].write_bytes(data)
    return paths


def test_a_file_that_is_no_model_is_invalid_on_cpu_and_gpu_alike(float_tflite, tmp_path):
    """Not "no GPU": the GPU path says the same as the CPU, with or without an adapter."""
    paths = _not_models(tmp_path, float_tflite)
    messages = []
    for path in paths:
        with pytest.raises(InvalidModel) as error:
            TFLiteModel(path)
        messages.append(str(error.value))
        assert messages[-1].startswith(f"{path} is ") and "TFLite model" in messages[-1], messages[-1]
    with pytest.raises(InvalidModel, match="0-byte buffer is empty"):
        TFLiteModel(b"")
    code = ("import sys\nfrom inference.runtime import InvalidModel, TFLiteModel\nfor path in sys.argv[1:]:\n"
            "    try:\n        TFLiteModel(path, device='gpu')\n        print('loaded')\n"
            "    except InvalidModel as error:\n        print(error)")  # fmt: skip
    # LiteRT's log quotes the garbage it read: decode it leniently.
    done = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True,
                          errors="replace", timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == messages


def test_gpu_runs_in_a_child_process_and_matches_cpu(int8_tflite, float_tflite, tmp_path, gpu_adapter):
    # The GPU accelerator cannot share a process with TensorFlow (this one has it, and loading
    # it here crashed): `inference.gpu.gpu_report` runs `TFLiteModel(device="gpu")` in a child.
    from inference.gpu import gpu_report

    for name, tflite in (("float", float_tflite), ("int8", int8_tflite)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(tflite)
        report = gpu_report(str(path))
        assert report["fully_accelerated"] is True, report
        output = TFLiteModel(tflite).output
        step = output.scale if output.quantized else 0.0
        assert report["max_abs_diff"] <= 2 * step + 1e-2, report  # fp16 on the GPU; int8 edges quantised alike


def test_the_gpu_reason_is_the_accelerators_own_words():
    from inference.runtime import accelerator_reason

    log = """WARNING: [npu_registry.cc:34] NPU accelerator could not be loaded and registered: kLiteRtStatusErrorNotFound.
I0000 00:00:1.0 1 environment.cc:532] Selected adapter: llvmpipe (LLVM 15.0.6, 256 bits), arch=software
ERROR: Following operations are not supported by GPU delegate:
SPACE_TO_BATCH_ND: Operation is not supported.
52 operations will run on the GPU, and the remaining 48 operations will run on the CPU."""
    reason = accelerator_reason(log, "fallback")
    assert "SPACE_TO_BATCH_ND: Operation is not supported" in reason and "NPU" not in reason
    no_adapter = "E0000 00:00:1.0 1 delegate_webgpu.cc:359] Failed to initialize WebGPU environment: INTERNAL: No adapters found"
    assert accelerator_reason(no_adapter, "fallback").endswith("No adapters found")
    assert accelerator_reason("", "RuntimeError: boom") == "RuntimeError: boom"


def test_gpu_reads_io_quantization_from_the_flatbuffer(int8_tflite, tmp_path):
    # The GPU path's details have no quantization; it reads it from the file (checked on the CPU here).
    from ksac_runtime.runtime import _io_quantization

    cpu = TFLiteModel(int8_tflite)
    path = tmp_path / "int8.tflite"
    path.write_bytes(int8_tflite)
    for source in (int8_tflite, str(path)):
        found = _io_quantization(source)
        assert found == {t.index: t.quantization for t in cpu.inputs + cpu.outputs}


def test_description_round_trip_without_tensorflow(float_tflite, make_description, tmp_path):
    from convert.tflite_file import add_metadata
    from inference.description import METADATA_NAME, read_description, read_metadata

    expected = make_description(name="tiny", num_classes=4)
    described = add_metadata(float_tflite, expected)
    path = tmp_path / "described.tflite"
    path.write_bytes(described)
    assert read_description(described) == read_description(str(path)) == read_description(path) == expected
    assert read_metadata(path) == expected.to_dict()  # the raw JSON object, as stored
    with pytest.raises(ValueError, match=METADATA_NAME):
        read_description(float_tflite)
    with pytest.raises(ValueError, match="TFL3"):
        read_metadata(b"not a flatbuffer at all")
    with pytest.raises(FileNotFoundError):
        read_metadata(str(tmp_path / "missing.tflite"))
    # The runtime and the reader import no TensorFlow: the GPU child runs where there is none.
    code = (
        "import sys, inference.runtime, inference.description; "
        "sys.exit(any(m.split('.')[0] in ('tensorflow', 'tf_keras') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_the_gpu_is_refused_beside_tensorflow_instead_of_crashing(float_tflite):
    import tensorflow  # noqa: F401  (this process has it, as every test process does)

    with pytest.raises(RuntimeError, match="child process"):
        TFLiteModel(float_tflite, device="gpu")
