"""Quantization-aware training: the KSAC QuantizeConfig, QAT model building, fine-tune + int8 export, resume."""

import json
import os

import numpy as np
import pytest
import tf_keras as keras

import zoo
from convert.graph import snap_to_int8_grid
from quantize.annotate import QuantizeLayer, copy_trained_weights, quantize_model
from convert.export import export_tflite
from quantize.calibrate import calibrate_ranges, qat_activation_ranges, range_variables
from quantize.checks import int8_rules
from quantize.finetune import QATError, resolve_qat_config, run_qat
from quantize.quantize_configs import (
    DepthwiseChannelQuantizer,
    QuantizableSharedAtrousConv2D,
    QuantizableSharedSeparableAtrousConv2D,
    SharedKernelQuantizeConfig,
)
from quantize import qat as qat_cli
from configs import merge, read_file

# `--dist loadgroup` runs this module on one worker: the QAT run fixture (75 s) is built once.
pytestmark = [pytest.mark.trains, pytest.mark.xdist_group("qat_run")]

SIZE = 65  # the input size of conftest's tiny models


@pytest.mark.slow
# xception65_aspp is left out to keep the suite within its time budget (about 60 s here): its parts
# are covered, the Xception65 backbone and decoder by xception65_ksac, the ASPP head by mobilenetv2_aspp.
@pytest.mark.parametrize("name", ["mobilenetv2_ksac", "mobilenetv2_aspp", "xception65_ksac", "mobilenetv2_deeplab"])
def test_qat_model_builds_and_starts_from_the_float_weights(make_tiny_model, make_tiny_export_model, name):
    model = make_tiny_export_model(name)
    qat = quantize_model(model)
    x = np.random.default_rng(0).normal(size=(1, SIZE, SIZE, 3)).astype(np.float32)
    float_out = model(x, training=False).numpy()
    assert calibrate_ranges(qat, [x]) == 1
    qat_out = qat(x, training=False).numpy()
    assert qat_out.shape == float_out.shape and np.isfinite(qat_out).all()
    # The fake-quantized network is the float one up to int8 rounding: no reordered
    # Concatenate inputs (tfmot's ConcatTransform does that, see quantize/annotate.py).
    error = np.abs(qat_out - float_out).max() / np.abs(float_out).max()
    assert error < 0.15, error
    # The input quantizer's range is the batch's, not tfmot's initial [-6, 6].
    (input_quantizer,) = [layer for layer in qat.layers if isinstance(layer, QuantizeLayer)]
    low, high = (v.numpy() for v in input_quantizer.weights if v.name.endswith(("_min:0", "_max:0")))
    np.testing.assert_allclose([low, high], [x.min(), x.max()], rtol=1e-5)
    activation_ranges = [v for v in range_variables(qat) if "post_activation" in v.name]
    assert len(activation_ranges) >= 2  # at least the logits' (ASPP's layers carry theirs on the wrappers)
    assert all(abs(float(np.max(v.numpy()))) != 6.0 for v in activation_ranges)
    wrappers = [layer for layer in qat.layers if layer.name == "quant_head_ksac"]
    assert len(wrappers) == (1 if name.endswith("ksac") else 0)
    # The float weights go back into a plain model of the same architecture unchanged.
    fresh = make_tiny_model(name)
    assert copy_trained_weights(qat, fresh) > 0
    np.testing.assert_allclose(fresh(x, training=False).numpy(), float_out, atol=1e-5)


@pytest.mark.slow
def test_shared_kernel_is_quantized_once_per_channel_on_the_export_grid(make_tiny_export_model):
    model = make_tiny_export_model("mobilenetv2_ksac")
    qat = quantize_model(model)
    wrapper = qat.get_layer("quant_head_ksac")
    assert isinstance(wrapper.layer, QuantizableSharedAtrousConv2D)
    assert isinstance(wrapper.quantize_config, SharedKernelQuantizeConfig)
    (weight, quantizer, ranges), = wrapper._weight_vars  # ONE weight quantizer: the shared kernel
    assert weight is wrapper.layer.weights[0] or weight.shape == (3, 3, 112, 16)
    assert quantizer.per_axis and quantizer.symmetric and quantizer.narrow_range and quantizer.num_bits == 8
    assert ranges["min_var"].shape == (16,) and ranges["max_var"].shape == (16,)
    # One activation quantizer per rate's ReLU and per inner partial sum (3 rates: 3 + 1).
    names = sorted(v.name.split("/")[-1] for v in wrapper.weights if "post_activation" in v.name)
    assert len(names) == 2 * 4 and any(n.startswith("partial_sum2") for n in names)
    # Every rate convolves with the same fake-quantized kernel: the exporter's per-channel int8 grid.
    x = np.random.default_rng(0).normal(size=(1, SIZE, SIZE, 3)).astype(np.float32)
    calibrate_ranges(qat, [x])  # a training-mode pass sets the kernel's range (tfmot starts it at +-6)
    qat(x, training=False)
    used = np.asarray(wrapper.layer.kernel)
    np.testing.assert_allclose(used, snap_to_int8_grid(weight.numpy()), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_separable_ksac_qat_quantizes_each_shared_kernel_once_and_exports_with_its_ranges(make_tiny_export_model,
                                                                                          assert_int8_parity):  # fmt: skip
    model = make_tiny_export_model("mobilenetv2_ksac_separable")
    qat = quantize_model(model)
    wrapper = qat.get_layer("quant_head_ksac")
    assert isinstance(wrapper.layer, QuantizableSharedSeparableAtrousConv2D)
    (depthwise, dw_quantizer, dw_ranges), (pointwise, _, pw_ranges) = wrapper._weight_vars  # one quantizer per shared kernel
    assert isinstance(dw_quantizer, DepthwiseChannelQuantizer)
    channels = depthwise.shape[2]
    assert dw_ranges["min_var"].shape == (channels,) and pw_ranges["min_var"].shape == (16,)  # per channel, both
    names = sorted(v.name.split("/")[-1] for v in wrapper.weights if "post_activation" in v.name)
    assert len(names) == 2 * (2 * 3 + 1) and any(n.startswith("rate12_depthwise_relu") for n in names)
    x = np.random.default_rng(0).normal(size=(1, SIZE, SIZE, 3)).astype(np.float32)
    calibrate_ranges(qat, [x])
    float_out = model(x, training=False).numpy()
    qat_out = qat(x, training=False).numpy()
    assert np.abs(qat_out - float_out).max() / np.abs(float_out).max() < 0.1
    # Every rate uses the same fake-quantized kernels: the exporter's per-channel int8 grids (depthwise along C).
    np.testing.assert_allclose(np.asarray(wrapper.layer.depthwise_kernel), snap_to_int8_grid(depthwise.numpy(), 2), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(wrapper.layer.pointwise_kernel), snap_to_int8_grid(pointwise.numpy()), rtol=0, atol=1e-6)
    ranges = qat_activation_ranges(qat)
    pyramid_keys = {k for k in ranges if k.startswith("head_ksac/")}
    assert pyramid_keys == {f"head_ksac/rate{r}_{p}" for r in (6, 12, 18) for p in ("depthwise_relu", "relu")} | {"head_ksac/partial_sum2"}
    report = export_tflite(model, "int8", activation_ranges=ranges, calibration_steps=4, parity_images=2).report
    assert report["shared_kernel_buffers"] == 1 and report["shared_kernel_buffers_per_kernel"] == {"depthwise": 1, "pointwise": 1}
    assert report["given_activation_ranges"] >= len(pyramid_keys) + 1  # the pyramid's, the input, the layers'
    assert_int8_parity(report, 0.98, 0.02)


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory, run_tiny_qat):
    return run_tiny_qat(tmp_path_factory.mktemp("qat"))


@pytest.mark.slow
def test_qat_then_export_meets_the_int8_rules(qat_run, assert_int8_parity):
    config, report, lines = qat_run
    out = config.training.out
    assert report["shared_kernel_buffers"] == 1
    # Against the fine-tuned float model, 8 images: measured agreement 0.9926 and max |diff| 0.0115
    # (0.9959 and 0.0115 with TF_ENABLE_ONEDNN_OPTS=0); bounds as test_convert.py's tiny models.
    assert_int8_parity(report, 0.98, 0.02)
    assert report["ops"].get("SPACE_TO_BATCH_ND", 0) == 0
    rules = int8_rules(os.path.join(out, "model_int8.tflite"))
    assert rules["ok"], rules
    assert rules["non_int8_conv_filters"] == [] and rules["inner_quantize_ops"] == 0 and rules["pyramid_buffers"] == 1
    assert rules["quantize_ops"] == 2  # one QUANTIZE at the input, one DEQUANTIZE at the output
    # The file runs with the QAT quantizers' activation ranges: the input, all 68 layer outputs
    # QAT quantizes, and inside the pyramid 3 rate ReLUs + 1 partial sum.
    assert report["given_activation_ranges"] == 73
    assert any(line.startswith("step 2/2") for line in lines)
    with open(os.path.join(out, "export_report.json")) as f:
        assert json.load(f)["int8_rules"]["ok"]
    # The shared trainer's outputs: the resolved config, the CSV log and TensorBoard events.
    assert read_file(os.path.join(out, "config.yaml"))["schedule"]["steps"] == 2
    assert os.listdir(os.path.join(out, "tensorboard")) and os.path.isfile(os.path.join(out, "qat_log.csv"))


@pytest.mark.slow
def test_saved_qat_model_reloads_with_its_description_and_trained_weights(qat_run):
    config, _, _ = qat_run
    saved = keras.models.load_model(os.path.join(config.training.out, "model_qat.keras"), compile=False)
    description = zoo.describe(saved)
    assert description.qat is True and description.qat_training["steps"] == 2
    assert description.name == "mobilenetv2_ksac" and description.input_size == (SIZE, SIZE)
    source = keras.models.load_model(config.qat.model, compile=False)
    changed = not np.allclose(saved.get_layer("head_ksac").kernel.numpy(), source.get_layer("head_ksac").kernel.numpy())
    assert changed  # the fine-tuned weights were written back


@pytest.mark.slow
def test_resume_reads_the_run_config_and_continues_with_the_same_settings(qat_run, tmp_path, capsys):
    # As train.py --resume: OUT/config.yaml gives every setting, so only --out, --resume and the steps are given.
    config, _, _ = qat_run
    out = config.training.out
    saved = read_file(os.path.join(out, "config.yaml"))
    no_export = tmp_path / "no_export.yaml"  # (export is not a locked field; skipping it keeps the test short)
    no_export.write_text("qat: {export: false}\n")
    assert qat_cli.main(["--out", out, "--resume", "--steps", "3", "--config", str(no_export)]) == 0
    printed = capsys.readouterr().out
    assert "at step 2" in printed and "step 3/3" in printed and "batch 2, crop 65" in printed
    resumed = read_file(os.path.join(out, "config.yaml"))
    assert resumed == merge(saved, {"schedule": {"steps": 3}, "qat": {"export": False}})
    # A locked field that differs is refused, naming the flag and the run's value; nothing is trained.
    assert qat_cli.main(["--out", out, "--resume", "--steps", "4", "--batch-size", "4"]) == 2
    err = capsys.readouterr().err
    assert "--resume: --batch-size (data.batch_size) 4 differs from the run's 2" in err and "Traceback" not in err
    assert read_file(os.path.join(out, "config.yaml")) == resumed
    # run_qat applies the same rule to a config resolved without --resume.
    with pytest.raises(QATError, match="data.batch_size"):
        run_qat(*resolve_qat_config(merge(saved, {"data": {"batch_size": 4}})), resume=True)


def test_resume_without_a_run_config_is_a_clear_error(tmp_path, capsys):
    assert qat_cli.main(["--out", str(tmp_path / "none"), "--resume", "--steps", "3"]) == 2
    assert f"{tmp_path / 'none' / 'config.yaml'} not found; is {tmp_path / 'none'} a run folder of quantize/qat.py?" in capsys.readouterr().err


def test_a_multi_worker_cluster_is_refused_before_anything_is_written(qat_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "mw"
    cluster = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    assert qat_cli.main(["--model", qat_run[0].qat.model, "--strategy", "multiworker", "--out", str(out)]) == 2
    assert "multi-worker training is for training/train.py" in capsys.readouterr().err
    assert not out.exists()


def test_cli_errors_name_the_file(tmp_path, capsys):
    missing = str(tmp_path / "nope.keras")
    assert qat_cli.main(["--model", missing, "--steps", "1", "--out", str(tmp_path / "q")]) == 2  # docs/cli.md
    assert missing in capsys.readouterr().err
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1)])
    path = str(tmp_path / "plain.keras")
    plain.save(path)
    assert qat_cli.main(["--model", path, "--steps", "1", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert path in err and "description" in err
    assert not os.path.exists(tmp_path / "q")
    with pytest.raises(SystemExit):
        qat_cli.parse_args(["--steps", "0"])
