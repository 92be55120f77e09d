"""Quantization-aware training of the MobileNetV3 models: HardSwish, HardSigmoid and Multiply configs,
the conv rules before a ReLU / hard sigmoid, saving the QAT model, and qat.py's fine-tune + int8 export."""

import os

import numpy as np
import pytest
import tf_keras as keras

from quantize.annotate import layer_variables, quantize_model
from quantize.calibrate import calibrate_ranges, inference_layers, qat_activation_ranges
from quantize.checks import int8_rules
from quantize.quantize_configs import OutputQuantizeConfig
from zoo.layers import HardSwish

pytestmark = [pytest.mark.trains, pytest.mark.xdist_group("qat_mobilenet_v3")]

SIZE = 65  # conftest's tiny models: width 0.35, 16 head filters; at output stride 32 the features are 3 x 3


def _inputs(count: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, SIZE, SIZE, 3)).astype(np.float32)


def _variable_names(wrapper) -> list[str]:
    return [v.name.split(":")[0].rsplit("/", 1)[-1] for v in wrapper.weights]


@pytest.mark.slow
def test_small_lraspp_qat_quantizes_the_new_layers_and_trains_a_step(make_tiny_export_model):
    model = make_tiny_export_model("mobilenetv3_small_lraspp")
    qat = quantize_model(model)
    configs = {type(layer.layer).__name__: type(layer.quantize_config) for layer in qat.layers if hasattr(layer, "quantize_config")}
    assert configs["HardSwish"] is configs["HardSigmoid"] is configs["Multiply"] is OutputQuantizeConfig
    # The int8 file fuses a conv with the ReLU / hard sigmoid after it: the conv's kernel is quantized
    # (tfmot alone leaves a conv before a ReLU in float), its output is not.
    for name in ("expanded_conv_squeeze_excite_Conv", "expanded_conv_squeeze_excite_Conv_1", "head_pool_conv"):
        names = _variable_names(qat.get_layer("quant_" + name))
        assert "kernel_min" in names and not any("post_activation" in n for n in names), (name, names)
    for name in ("expanded_conv_squeeze_excite_gate", "expanded_conv_squeeze_excite_mul", "Conv_activation", "head_gate"):
        assert "output_min" in _variable_names(qat.get_layer("quant_" + name)), name
    x = _inputs()
    assert calibrate_ranges(qat, [x]) == 1
    float_out = model(x, training=False).numpy()
    qat_out = qat(x, training=False).numpy()
    assert np.abs(qat_out - float_out).max() / np.abs(float_out).max() < 0.1
    ranges = qat_activation_ranges(qat)
    assert {"expanded_conv_squeeze_excite_mul", "head_gate"} <= set(ranges)
    # A hard sigmoid's or hard swish's key would also name the RELU6 tensor before its MULs in the file: left out.
    assert not any(key.endswith("_gate") and key != "head_gate" for key in ranges) and "head_pool_gate" not in ranges
    hard_swish = {layer.name for layer in model.layers if isinstance(layer, HardSwish)}
    assert "Conv_activation" in hard_swish and not hard_swish & set(ranges)

    # One training step, with the BatchNorms in inference mode as qat.py's default (frozen).
    se_kernel = layer_variables(qat.get_layer("quant_expanded_conv_squeeze_excite_Conv_1"))["kernel:0"]  # the float one
    kernel = se_kernel.numpy().copy()
    qat.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    labels = np.random.default_rng(1).integers(0, 21, size=(2, SIZE, SIZE))
    with inference_layers(qat):
        loss = qat.train_on_batch(x, labels)
    assert np.isfinite(loss)
    assert not np.allclose(se_kernel.numpy(), kernel)


@pytest.fixture(scope="module")
def large_ksac_qat_run(tmp_path_factory, run_tiny_qat):
    """qat.py's path (`run_qat`): a tiny mobilenetv3_large_ksac_separable, 2 fine-tuning steps, int8 export."""
    return run_tiny_qat(tmp_path_factory.mktemp("qat_v3"), "mobilenetv3_large_ksac_separable", checkpoint_every=2)


@pytest.mark.slow
def test_large_ksac_separable_qat_exports_one_buffer_per_shared_kernel_with_xnnpacks_hard_swish(large_ksac_qat_run, assert_int8_parity):
    config, report, lines = large_ksac_qat_run
    assert any(line.startswith("step 2/2") for line in lines)
    assert report["shared_kernel_buffers_per_kernel"] == {"depthwise": 1, "pointwise": 1}
    # int8 hard swish as ADD(relu6) + MUL + MUL, which XNNPACK runs (convert.graph.Int8HardSwish)
    assert report["ops"].get("HARD_SWISH", 0) == 0 and report["ops"].get("SPACE_TO_BATCH_ND", 0) == 0
    rules = int8_rules(os.path.join(config.training.out, "model_int8.tflite"))
    assert rules["ok"], rules
    assert rules["non_int8_conv_filters"] == [] and rules["inner_quantize_ops"] == 0
    # The QAT ranges the file took: the input, the pyramid's inner ones and the layers' (HardSwish, SE).
    assert report["given_activation_ranges"] > 50
    # Against the fine-tuned float model, 8 synthetic images: measured agreement 1.0 and max |diff| 0.0065;
    # bounds as test_quantize_qat.py's tiny models.
    assert_int8_parity(report, 0.98, 0.02)


@pytest.mark.slow
def test_large_ksac_separable_saved_after_qat_reloads_with_trained_weights(large_ksac_qat_run):
    config, _, _ = large_ksac_qat_run
    saved = keras.models.load_model(os.path.join(config.training.out, "model_qat.keras"), compile=False)
    source = keras.models.load_model(config.qat.model, compile=False)
    name = "expanded_conv_3_squeeze_excite_Conv"  # an SE conv, quantized and trained
    assert saved.get_layer(name).kernel.shape == source.get_layer(name).kernel.shape
    assert not np.allclose(saved.get_layer("head_ksac").pointwise_kernel.numpy(), source.get_layer("head_ksac").pointwise_kernel.numpy())
