"""Model zoo: parameter parity with the paper, shapes, the KSAC pyramid, save/load, weight import."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from configs import ExperimentConfig, build_model_from_config, read_file, resolve
from zoo import PAPER_MODELS, SharedAtrousConv2D, SharedSeparableAtrousConv2D, build_model, count_macs, describe, head_params

SMALL = dict(width=0.35, head_filters=16)


PAPER_RECIPES = Path(__file__).resolve().parents[1] / "configs" / "paper"


@pytest.fixture(scope="module")
def paper_models():
    """The four Table 1 models, each built from its recipe in configs/paper/ (VOC: 21 classes)."""
    models = {}
    for path in sorted(PAPER_RECIPES.glob("*.yaml")):
        config = resolve(ExperimentConfig, read_file(str(path)), where=str(path))
        models[config.model.name] = build_model_from_config(config.model, num_classes=21)
    return models


def test_every_paper_recipe_is_a_table_1_model_at_the_papers_settings(paper_models):
    assert sorted(paper_models) == sorted(PAPER_MODELS)
    for path in PAPER_RECIPES.glob("*.yaml"):
        config = resolve(ExperimentConfig, read_file(str(path)))
        assert config.data.train.startswith("trainaug:") and config.data.crop_size == 513
        assert config.model.output_stride == 16 and config.model.rates == [6, 12, 18]
        assert config.data.batch_size == (32 if config.model.name.startswith("mobilenetv2") else 16)
        assert config.optimizer.name == "sgd" and describe(paper_models[config.model.name]).input_size == (513, 513)


@pytest.mark.parametrize(
    "name, paper_params",
    [
        ("mobilenetv2_aspp", 4.5e6),
        ("mobilenetv2_ksac", 3.0e6),
        ("xception65_aspp", 54.3e6),
        ("xception65_ksac", 44.8e6),
    ],
)
def test_params_match_paper_table_1(paper_models, name, paper_params):
    params = paper_models[name].count_params()
    assert abs(params - paper_params) / paper_params < 0.03, params


@pytest.mark.parametrize("backbone, in_channels", [("mobilenetv2", 320), ("xception65", 2048)])
def test_sharing_saves_exactly_two_kernels_and_two_projection_slices(paper_models, backbone, in_channels):
    aspp = paper_models[f"{backbone}_aspp"].count_params()
    ksac = paper_models[f"{backbone}_ksac"].count_params()
    assert aspp - ksac == 2 * 9 * in_channels * 256 + 2 * 256 * 256


def test_mobilenetv2_counts_are_the_measured_ones(paper_models):
    assert paper_models["mobilenetv2_aspp"].count_params() == 4_558_165
    assert paper_models["mobilenetv2_ksac"].count_params() == 2_952_533


def test_extra_rates_add_only_batchnorm():
    base = build_model("mobilenetv2_ksac", input_size=129)
    wide = build_model("mobilenetv2_ksac", input_size=129, rates=(1, 6, 12, 18, 24))
    assert wide.count_params() - base.count_params() == 2 * 4 * 256
    pyramid = wide.get_layer("head_ksac")
    assert [w.name.split("/")[-1] for w in pyramid.weights].count("kernel:0") == 1


def test_head_params_and_macs_are_reported(paper_models):
    ksac, aspp = paper_models["mobilenetv2_ksac"], paper_models["mobilenetv2_aspp"]
    assert head_params(aspp) - head_params(ksac) == 2 * 9 * 320 * 256 + 2 * 256 * 256
    # Same pyramid work (one kernel, three rates); the KSAC projection reads fewer channels.
    assert count_macs(aspp) - count_macs(ksac) == 33 * 33 * 2 * 256 * 256


@pytest.mark.parametrize("name", ["mobilenetv2_ksac", "xception65_aspp"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("input_size", [513, 257, (97, 161)])
def test_output_shapes(name, output_stride, input_size):
    model = build_model(name, num_classes=5, input_size=input_size, output_stride=output_stride, **SMALL)
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    assert model.output_shape == (None, height, width, 5)
    head_input = model.get_layer("head_conv1x1").input_shape
    assert head_input[1] == -(-height // output_stride) and head_input[2] == -(-width // output_stride)


def test_forward_pass_non_square_with_decoder():
    model = build_model("mobilenetv2_ksac", num_classes=4, input_size=(65, 97), decoder=True, **SMALL)
    out = model(np.zeros((2, 65, 97, 3), np.float32), training=False)
    assert out.shape == (2, 65, 97, 4)


def test_default_rates_follow_output_stride():
    assert describe(build_model("mobilenetv2_ksac", input_size=65, output_stride=8, **SMALL)).rates == (12, 24, 36)
    assert describe(build_model("mobilenetv2_ksac", input_size=65, **SMALL)).rates == (6, 12, 18)


def _randomize_batchnorms(layer, rng):
    for bn in layer.batch_norms:
        shape = bn.gamma.shape
        bn.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.5, shape),
                        rng.normal(0, 0.5, shape), rng.uniform(0.5, 2.0, shape)])  # fmt: skip


def test_ksac_pyramid_equals_reference_convolutions():
    rng = np.random.default_rng(0)
    layer = SharedAtrousConv2D(filters=6, rates=(1, 2, 4))
    x = tf.constant(rng.normal(size=(2, 15, 13, 5)), tf.float32)
    layer(x)
    _randomize_batchnorms(layer, rng)
    kernel = layer.kernel.numpy()
    expected = 0
    for rate, bn in zip((1, 2, 4), layer.batch_norms):
        gamma, beta, mean, var = (w.numpy() for w in bn.weights)
        conv = tf.nn.conv2d(x, kernel, strides=1, padding="SAME", dilations=rate)
        expected += tf.nn.relu((conv - mean) / np.sqrt(var + bn.epsilon) * gamma + beta)
    np.testing.assert_allclose(layer(x, training=False), expected, atol=1e-5)


@pytest.mark.trains
def test_gradients_from_every_rate_reach_the_single_kernel():
    rng = np.random.default_rng(1)
    rates = (1, 3, 6)
    layer = SharedAtrousConv2D(filters=4, rates=rates)
    x = tf.constant(rng.normal(size=(1, 16, 16, 3)), tf.float32)
    layer(x)
    assert len(layer.trainable_weights) == 1 + 2 * len(rates)  # one kernel, gamma and beta per rate
    grads = []
    for keep in range(len(rates)):
        for i, bn in enumerate(layer.batch_norms):  # silence every branch but `keep`
            scale = 1.0 if i == keep else 0.0
            bn.gamma.assign(np.full(4, scale, np.float32))
            bn.beta.assign(np.zeros(4, np.float32))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x, training=False))
        grads.append(tape.gradient(loss, layer.kernel).numpy())
    for grad in grads:
        assert np.abs(grad).sum() > 0
    assert not np.allclose(grads[0], grads[2])


# ---------------------------------------------------------------- separable pyramids


def test_separable_ksac_equals_deeplabs_separable_branches_with_tied_kernels():
    rng = np.random.default_rng(0)
    rates = (1, 2, 4)
    layer = SharedSeparableAtrousConv2D(filters=6, rates=rates)
    x = tf.constant(rng.normal(size=(2, 15, 13, 5)), tf.float32)
    layer(x)
    _randomize_batchnorms(layer, rng)
    assert [w.name.split("/")[-1] for w in layer.trainable_weights].count("depthwise_kernel:0") == 1

    def bn(value, norm):
        gamma, beta, mean, var = (w.numpy() for w in norm.weights)
        return tf.nn.relu((value - mean) / np.sqrt(var + norm.epsilon) * gamma + beta)

    expected = 0
    for rate, bn1, bn2 in zip(rates, layer.depthwise_batch_norms, layer.pointwise_batch_norms):
        y = tf.nn.depthwise_conv2d(x, layer.depthwise_kernel, [1, 1, 1, 1], "SAME", dilations=[rate, rate])
        expected += bn(tf.nn.conv2d(bn(y, bn1), layer.pointwise_kernel, 1, "SAME"), bn2)
    np.testing.assert_allclose(layer(x, training=False), expected, atol=1e-5)


def test_separable_pyramid_counts_follow_the_docstrings_arithmetic():
    # MobileNetV2 at 513: C = 320 features, F = 256 filters, 3 rates, a 33 x 33 map (zoo.layers.SharedSeparableAtrousConv2D).
    c, f, n, hw = 320, 256, 3, 33 * 33
    models = {name: build_model(name) for name in ("mobilenetv2_ksac", "mobilenetv2_ksac_separable", "mobilenetv2_aspp_separable")}
    pyramid = models["mobilenetv2_ksac_separable"].get_layer("head_ksac")
    assert pyramid.count_params() == 9 * c + c * f + n * 4 * (c + f)
    # Against the regular KSAC: the kernel 9CF becomes 9C + CF, and n BatchNorms over C more.
    assert models["mobilenetv2_ksac"].count_params() - models["mobilenetv2_ksac_separable"].count_params() == (
        9 * c * f - (9 * c + c * f) - n * 4 * c)
    # Separable ASPP keeps a depthwise and a pointwise kernel per rate; the projection reads n - 1 more blocks.
    assert models["mobilenetv2_aspp_separable"].count_params() - models["mobilenetv2_ksac_separable"].count_params() == (
        (n - 1) * (9 * c + c * f) + (n - 1) * f * f)
    # The pyramid's work: n (9C + CF) per pixel instead of n 9CF. With every depthwise layer counted
    # (tests/test_zoo_stats.py) the whole model is 3.09 GMACs: the backbone's 2.6 dominate.
    macs = {name: count_macs(model) for name, model in models.items()}
    assert macs["mobilenetv2_ksac"] - macs["mobilenetv2_ksac_separable"] == n * hw * (9 * c * f - 9 * c - c * f)
    assert macs["mobilenetv2_ksac_separable"] < macs["mobilenetv2_aspp_separable"] < macs["mobilenetv2_ksac"] / 1.6


@pytest.mark.trains
def test_separable_ksac_trains_every_shared_kernel_and_reloads(tmp_path):
    model = build_model("mobilenetv2_ksac_separable", num_classes=3, input_size=65, training_forms=True, **SMALL)
    x = np.random.default_rng(2).normal(size=(2, 65, 65, 3)).astype(np.float32)
    pyramid = model.get_layer("head_ksac")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True))
    grads = tape.gradient(loss, [pyramid.depthwise_kernel, pyramid.pointwise_kernel])
    assert all(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(model(x, training=False), loaded(x, training=False), atol=1e-5)
    assert describe(loaded).head == "ksac_separable" and isinstance(loaded.get_layer("head_ksac"), SharedSeparableAtrousConv2D)


def test_separable_models_use_deeplabs_decoder():
    model = build_model("xception65_aspp_separable", num_classes=3, input_size=65, width=0.25, head_filters=16)
    names = {layer.name for layer in model.layers}
    assert {"head_aspp_rate12_depthwise", "head_aspp_rate12_pointwise_bn", "decoder_conv0_depthwise", "decoder_conv1_pointwise"} <= names
    assert not {"decoder_conv1", "decoder_conv2", "head_aspp_rate12"} & names
    # DeepLab's resizes, the final one included (predict_labels): corner-aligned; the paper's models keep half-pixel.
    assert model.get_layer("decoder_upsample").align_corners and model.get_layer("upsample_logits").align_corners
    paper = build_model("xception65_aspp", num_classes=3, input_size=65, width=0.25, head_filters=16)
    assert not paper.get_layer("decoder_upsample").align_corners and not paper.get_layer("upsample_logits").align_corners


def test_deeplab_mobile_head_has_no_pyramid_and_takes_no_rates():
    model = build_model("mobilenetv2_deeplab", num_classes=3, input_size=65, width=0.5)
    names = {layer.name for layer in model.layers}
    assert {"head_conv1x1", "head_pool_conv", "head_projection"} <= names
    assert not [n for n in names if n.startswith(("head_aspp", "head_ksac"))]
    assert model.get_layer("head_projection").kernel.shape[2] == 2 * 256  # [1x1, pool], DeepLab's concat_projection
    assert describe(model).rates == () and model.get_layer("upsample_logits").align_corners
    # width 0.5 rounds channels as DeepLab's MobileNetV2 (slim, divisible_by=1): 24 x 0.5 = 12, not keras' 16
    assert model.get_layer("block_1_project").filters == 12
    assert build_model("mobilenetv2_ksac", num_classes=3, input_size=65, width=0.5).get_layer("block_1_project").filters == 16
    with pytest.raises(ValueError, match="takes no rates"):
        build_model("mobilenetv2_deeplab", num_classes=3, input_size=65, rates=(6, 12))
    decoded = build_model("mobilenetv2_deeplab", num_classes=3, input_size=65, decoder=True)  # the ADE20K release
    assert {"decoder_conv0_depthwise", "decoder_conv1_pointwise"} <= {layer.name for layer in decoded.layers}


@pytest.mark.slow  # saving and reloading Xception-65 takes ~30 s on a busy 2-core CPU
def test_save_load_round_trip(tmp_path):
    model = build_model("xception65_ksac", num_classes=3, input_size=65, **SMALL)
    x = np.random.default_rng(2).normal(size=(1, 65, 65, 3)).astype(np.float32)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(model(x, training=False), loaded(x, training=False), atol=1e-6)
    assert describe(loaded) == describe(model)
    assert describe(loaded).head == "ksac" and describe(loaded).rates == (6, 12, 18)


def test_backbone_weights_load_by_name_from_keras_applications_h5(tmp_path, capsys):
    reference = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None)
    for weight in reference.weights:
        weight.assign(np.random.default_rng(3).normal(size=weight.shape).astype(np.float32))
    path = str(tmp_path / "mobilenet_v2_0.35_no_top.h5")
    reference.save_weights(path)
    model = build_model("mobilenetv2_ksac", input_size=65, width=0.35, head_filters=16, backbone_weights=path)
    assert "layers matched by name" in capsys.readouterr().out
    for name in ("Conv1", "block_5_expand_BN", "block_16_project"):
        for ours, theirs in zip(model.get_layer(name).weights, reference.get_layer(name).weights):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_backbone_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        build_model("mobilenetv2_ksac", input_size=65, backbone_weights=str(tmp_path / "missing.h5"), **SMALL)
    other = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=1.0, include_top=False, weights=None)
    path = str(tmp_path / "alpha1.h5")
    other.save_weights(path)
    with pytest.raises(ValueError, match="alpha1.h5"):
        build_model("mobilenetv2_ksac", input_size=65, backbone_weights=path, **SMALL)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="mobilenetv2_ksac.*xception65_aspp|valid models"):
        build_model("resnet_ksac")


@pytest.mark.parametrize("rates", [(), (0, 6), (6, -1), (6, 6), ("a",), (1.5, 2)])
def test_bad_rates_are_rejected(rates):
    with pytest.raises(ValueError, match="rates"):
        build_model("mobilenetv2_ksac", input_size=65, rates=rates, **SMALL)


def test_bad_output_stride_is_rejected():
    with pytest.raises(ValueError, match="output_stride"):
        build_model("mobilenetv2_ksac", input_size=65, output_stride=4, **SMALL)
