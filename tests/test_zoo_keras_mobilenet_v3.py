"""keras.applications' MobileNetV3Large/Small .h5 into our MobileNetV3 (DeepLab's _seg variants), by the explicit
name map of `zoo.weights`: what loads, what is skipped and why, numeric agreement, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras

from zoo import build_model
from zoo.layers import HardSigmoid
from zoo.weights import (
    HDF5,
    ArchitectureMismatchError,
    ShapeMismatchError,
    V3_HALVED_FROM,
    keras_mobilenet_v3_layer_map,
    load_weights,
)

SIZE = 96
KERAS = {"large": keras.applications.MobileNetV3Large, "small": keras.applications.MobileNetV3Small}
LAST_BLOCK = {"large": 14, "small": 10}
# Blocks with squeeze-and-excitation before the halved stage (Keras' tables = slim's = ours).
GATES_BEFORE = {"large": (3, 4, 5, 10, 11), "small": (0, 3, 4, 5, 6, 7)}


def keras_v3(variant: str, seed: int = 0, **kwargs) -> keras.Model:
    """keras.applications' MobileNetV3 with random weights, BatchNorm statistics included, scaled so that
    activations stay O(1)-O(100) through the blocks (He-like kernels, gamma and variance in [0.5, 1.5])."""
    kwargs = {"include_top": False, "include_preprocessing": False, **kwargs}
    model = KERAS[variant](input_shape=(SIZE, SIZE, 3), weights=None, **kwargs)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        name, shape = weight.name, tuple(weight.shape)
        if "depthwise_kernel" in name:
            value = rng.normal(0, np.sqrt(2 / (shape[0] * shape[1])), shape)
        elif "kernel" in name:
            value = rng.normal(0, np.sqrt(2 / np.prod(shape[:3])), shape)
        elif "gamma" in name or "moving_variance" in name:
            value = rng.uniform(0.5, 1.5, shape)
        else:  # beta, moving_mean, biases
            value = rng.normal(0, 0.2, shape)
        weight.assign(value.astype(np.float32))
    return model


def saved(model: keras.Model, tmp_path, name: str) -> str:
    path = str(tmp_path / name)
    model.save_weights(path)
    return path


def layer_names(weight_names) -> set[str]:
    return {name.split("/")[0] for name in weight_names}


@pytest.mark.parametrize("variant", ["large", "small"])
def test_imagenet_layout_loads_up_to_the_halved_stage_and_reports_the_rest(variant, tmp_path, capsys):
    reference = keras_v3(variant, include_top=True, include_preprocessing=True, classes=10)
    path = saved(reference, tmp_path, f"weights_mobilenet_v3_{variant}_224_1.0_float_v2.h5")
    model = build_model(f"mobilenetv3_{variant}_lraspp", input_size=SIZE, backbone_weights=path)
    printed = capsys.readouterr().out
    rows = keras_mobilenet_v3_layer_map(variant)
    loaded = [row for row in rows if not row.halved]
    halved = [row for row in rows if row.halved]
    first = V3_HALVED_FROM[variant]
    assert {row.keras.split("/")[0] for row in halved} == {f"expanded_conv_{i}" for i in range(first, LAST_BLOCK[variant] + 1)} | {"Conv_1"}

    report = load_weights(model, path)  # again, to read the report (the build printed the same)
    assert report.format == HDF5 and f"keras.applications.{KERAS[variant].__name__} name map" in printed
    # matched: every layer before the halved stage, each of its tensors to ours, values equal
    assert report.layers_matched == len(loaded)
    assert layer_names(ours for ours, _ in report.matched) == {row.ours for row in loaded}
    assert layer_names(theirs for _, theirs in report.matched) == {row.keras.split("/")[0] for row in loaded}
    assert all(theirs.replace("/BatchNorm", "_BN").replace("/", "_") == ours.replace("/", "_")
               for ours, theirs in report.matched)  # fmt: skip
    for row in loaded:
        for ours, theirs in zip(model.get_layer(row.ours).weights, reference.get_layer(row.keras).weights):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    # left at initialisation: the halved stage and the head / decoder
    left = layer_names(report.left_at_init)
    assert {row.ours for row in halved} <= left
    assert all(name.startswith(("head_", "decoder_")) or name == "logits" for name in left - {row.ours for row in halved})
    assert len(report.matched) + len(report.left_at_init) == len(model.weights)
    # skipped, with the reason: one line per halved block and Conv_1, then the Rescaling layer
    halved_scopes = [f"expanded_conv_{i}" for i in range(first, LAST_BLOCK[variant] + 1)] + ["Conv_1"]
    assert [line.split(" ->")[0] for line in report.skipped[:-1]] == halved_scopes
    assert report.skipped[-1].startswith("rescaling")  # Keras names it rescaling, rescaling_1, ...
    assert all(f"DeepLab's mobilenet_v3_{variant}_seg halves the last stage" in line for line in report.skipped[:-1])
    assert "[0, 255] -> [-1, 1]" in report.skipped[-1]
    for line in report.skipped:
        assert f"  skipped: {line}" in printed
    # unused: the halved stage's tensors and the classifier's Conv_2 / Logits
    assert layer_names(report.unused) == {row.keras.split("/")[0] for row in halved} | {"Conv_2", "Logits"}
    assert {"Conv_2/kernel", "Conv_2/bias", "Logits/kernel", "Logits/bias"} <= set(report.unused)
    assert len(report.unused) == sum(len(reference.get_layer(row.keras).weights) for row in halved) + 4


@pytest.mark.parametrize("variant", ["large", "small"])
def test_features_before_the_halved_stage_equal_keras_but_for_the_gate_constant(variant, tmp_path):
    """The last block before the halved stage (large 11, small 7; both residual) against Keras.

    Ours is TF-slim's: hard sigmoid relu6(x + 3) * 0.16667, Keras' relu6(x + 3) / 6, relatively
    0.16667 * 6 - 1 = 2.0e-5 larger wherever a gate is not saturated. Each squeeze-and-excitation block
    scales its features by that much at most; later blocks carry it on (the batch norms' and hard swish's
    gains, measured: 7e-5 of max|output| for large's 5 gates, 1.1e-4 for small's 6). Bound: 2 x gates x
    2e-5 of max|output|. With our gates set to 1/6 the rest is float32 rounding (measured <= 3e-6 of
    max|output| over 12 blocks of up to 672 channels): bound 1e-5, well under the gate bound, so the
    first check is not passing on a loose tolerance.
    """
    reference = keras_v3(variant, seed=1)
    path = saved(reference, tmp_path, f"keras_mobilenet_v3_{variant}.h5")
    model = build_model(f"mobilenetv3_{variant}_lraspp", input_size=SIZE, backbone_weights=path)
    block = V3_HALVED_FROM[variant] - 1
    pairs = [(f"expanded_conv_{block}/Add", f"expanded_conv_{block}_add"),
             (f"expanded_conv_{block}/project/BatchNorm", f"expanded_conv_{block}_project_BN")]  # fmt: skip
    theirs_model = keras.Model(reference.input, [reference.get_layer(t).output for t, _ in pairs])
    ours_model = keras.Model(model.input, [model.get_layer(o).output for _, o in pairs])
    images = np.random.default_rng(2).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)  # normalised input
    theirs = [t.numpy() for t in theirs_model(images, training=False)]

    gates = len(GATES_BEFORE[variant])
    ours = [o.numpy() for o in ours_model(images, training=False)]
    for t, o in zip(theirs, ours):
        scale = np.abs(t).max()
        assert 1 < scale < 1e4
        np.testing.assert_allclose(o, t, rtol=0, atol=2 * gates * 2e-5 * scale)

    gate_layers = [layer for layer in model.layers if isinstance(layer, HardSigmoid)]
    assert gate_layers and all(layer.scale == 0.16667 for layer in gate_layers)
    for layer in gate_layers:
        layer.scale = 1 / 6  # Keras' constant: what remains is rounding
    ours = [o.numpy() for o in ours_model(images, training=False)]
    for t, o in zip(theirs, ours):
        np.testing.assert_allclose(o, t, rtol=0, atol=1e-5 * np.abs(t).max())


# ---------------------------------------------------------------- errors


def test_mobilenet_v3_h5_into_mobilenet_v2_is_an_architecture_error(tmp_path):
    path = saved(keras_v3("large"), tmp_path, "weights_mobilenet_v3_large.h5")
    with pytest.raises(ArchitectureMismatchError, match=r"weights_mobilenet_v3_large\.h5 holds keras\.applications MobileNetV3"):
        build_model("mobilenetv2_ksac", input_size=65, width=0.35, head_filters=16, backbone_weights=path)


def test_mobilenet_v2_h5_into_mobilenet_v3_is_an_architecture_error(tmp_path):
    v2 = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=None)
    path = saved(v2, tmp_path, "mobilenet_v2_no_top.h5")
    with pytest.raises(ArchitectureMismatchError, match=r"mobilenet_v2_no_top\.h5 holds MobileNetV2 weights.*MobileNetV3-Large"):
        build_model("mobilenetv3_large_lraspp", input_size=SIZE, backbone_weights=path)


def test_large_h5_into_small_model_is_an_architecture_error(tmp_path):
    path = saved(keras_v3("large"), tmp_path, "large.h5")
    with pytest.raises(ArchitectureMismatchError, match=r"large\.h5 holds keras\.applications\.MobileNetV3Large.*MobileNetV3-Small"):
        build_model("mobilenetv3_small_lraspp", input_size=SIZE, backbone_weights=path)


def test_other_alpha_is_a_shape_error_naming_the_tensor_and_nothing_is_loaded(tmp_path):
    path = saved(keras_v3("small", alpha=0.75), tmp_path, "small_0.75.h5")
    model = build_model("mobilenetv3_small_lraspp", input_size=SIZE)
    before = model.get_layer("Conv").kernel.numpy()
    with pytest.raises(ShapeMismatchError, match=r"small_0\.75\.h5: tensor expanded_conv_\d+/\S+ has shape \[.*\] but our expanded_conv_"):
        load_weights(model, path)
    np.testing.assert_array_equal(model.get_layer("Conv").kernel.numpy(), before)


def test_our_own_mobilenet_v3_h5_still_loads_by_name_and_not_into_v2(tmp_path, capsys):
    source = build_model("mobilenetv3_small_lraspp", input_size=SIZE)
    path = saved(source, tmp_path, "ours.h5")
    model = build_model("mobilenetv3_small_lraspp", input_size=SIZE, backbone_weights=path)
    assert "layers matched by name" in capsys.readouterr().out
    for ours, theirs in zip(model.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(ArchitectureMismatchError, match=r"ours\.h5 .*not a MobileNetV3"):
        build_model("mobilenetv2_ksac", input_size=65, width=0.35, head_filters=16, backbone_weights=path)
