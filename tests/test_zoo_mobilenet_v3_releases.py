"""DeepLab's MobileNetV3 Cityscapes releases (`mobilenetv3_{large,small}_cityscapes_trainfine`), name by name.

The fixture checkpoints hold the variables DeepLab's graph for these releases creates, written from this file's
own reading of the sources (not from zoo code): TF-slim's `V3_LARGE` / `V3_SMALL` tables
(research/slim/nets/mobilenet/mobilenet_v3.py), DeepLab's `mobilenet_v3_{large,small}_seg` halving of the last
stage (research/deeplab/core/feature_extractor.py), the scopes of slim's `expanded_conv` and `squeeze_excite`
(conv_blocks.py) and of DeepLab's LR-ASPP head and sum-merge logits decoder (research/deeplab/model.py, with
the release flags `--image_pooling_crop_size=769,769 --image_pooling_stride=4,5 --aspp_convs_filters=128
--aspp_with_concat_projection=0 --aspp_with_squeeze_and_excitation=1 --image_se_uses_qsigmoid=1
--decoder_use_sum_merge=1 --decoder_filters=19 --decoder_output_is_logits=1 --decoder_output_stride=8
--output_stride=32`), with random values, plus `global_step` and a `Momentum` slot per variable.

`_reference_deeplab` recomputes DeepLab's whole graph from the checkpoint's tensors with `tf.nn` and is compared
with our model after import, before and after the final upsampling.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from test_zoo_tf1_checkpoint import TF1Writer, _assert_round_trip, _randomize, slim_make_divisible, write_checkpoint

from zoo import build_model, describe
from zoo.labels import CITYSCAPES_LABELS
from zoo.releases import release as release_spec
from zoo.tf1_checkpoint import load_tf1_checkpoint

pytestmark = pytest.mark.xdist_group("tf1_checkpoint")
scope = tf.compat.v1.variable_scope
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------- DeepLab's variables, from its sources

RELU, HSWISH = "relu", "hard_swish"
# research/slim/nets/mobilenet/mobilenet_v3.py: conv_defs['spec'] of V3_LARGE / V3_SMALL. Index 0 is the first
# conv (slim.conv2d 3x3 stride 2, 16 outputs, hard swish), the last the 1x1 conv; between them one
# mbv3_op / mbv3_op_se per row: (ef, n, k, s, act, se). (The pooling and 1280/1024 conv after it are past
# DeepLab's final end point.)
SLIM_V3_LARGE = [
    dict(n=16),
    dict(ef=1, n=16, k=3, s=1, act=RELU, se=False),
    dict(ef=4, n=24, k=3, s=2, act=RELU, se=False),
    dict(ef=3, n=24, k=3, s=1, act=RELU, se=False),
    dict(ef=3, n=40, k=5, s=2, act=RELU, se=True),
    dict(ef=3, n=40, k=5, s=1, act=RELU, se=True),
    dict(ef=3, n=40, k=5, s=1, act=RELU, se=True),
    dict(ef=6, n=80, k=3, s=2, act=HSWISH, se=False),
    dict(ef=2.5, n=80, k=3, s=1, act=HSWISH, se=False),
    dict(ef=184 / 80.0, n=80, k=3, s=1, act=HSWISH, se=False),
    dict(ef=184 / 80.0, n=80, k=3, s=1, act=HSWISH, se=False),
    dict(ef=6, n=112, k=3, s=1, act=HSWISH, se=True),
    dict(ef=6, n=112, k=3, s=1, act=HSWISH, se=True),
    dict(ef=6, n=160, k=5, s=2, act=HSWISH, se=True),
    dict(ef=6, n=160, k=5, s=1, act=HSWISH, se=True),
    dict(ef=6, n=160, k=5, s=1, act=HSWISH, se=True),
    dict(n=960),
]
SLIM_V3_SMALL = [
    dict(n=16),
    dict(ef=1, n=16, k=3, s=2, act=RELU, se=True),
    dict(ef=72.0 / 16, n=24, k=3, s=2, act=RELU, se=False),
    dict(ef=88.0 / 24, n=24, k=3, s=1, act=RELU, se=False),
    dict(ef=4, n=40, k=5, s=2, act=HSWISH, se=True),
    dict(ef=6, n=40, k=5, s=1, act=HSWISH, se=True),
    dict(ef=6, n=40, k=5, s=1, act=HSWISH, se=True),
    dict(ef=3, n=48, k=5, s=1, act=HSWISH, se=True),
    dict(ef=3, n=48, k=5, s=1, act=HSWISH, se=True),
    dict(ef=6, n=96, k=5, s=2, act=HSWISH, se=True),
    dict(ef=6, n=96, k=5, s=1, act=HSWISH, se=True),
    dict(ef=6, n=96, k=5, s=1, act=HSWISH, se=True),
    dict(n=576),
]
# research/deeplab/core/feature_extractor.py, mobilenet_v3_{large,small}_seg: (spec index, expansion size) of the
# layers whose num_outputs are halved; the expansion factor becomes expansion / the previous layer's outputs.
# DECODER_END_POINTS[8]: `layer_7` / `layer_4` depthwise_output (slim's layer_N is spec index N - 1).
DEEPLAB_SEG = {
    "large": dict(slim=SLIM_V3_LARGE, halve=((13, 336), (14, 480), (15, 480), (16, None)), stride8_layer=7),
    "small": dict(slim=SLIM_V3_SMALL, halve=((9, 144), (10, 288), (11, 288), (12, None)), stride8_layer=4),
}
RELEASE_VARIANT = {"mobilenetv3_large_cityscapes_trainfine": "large", "mobilenetv3_small_cityscapes_trainfine": "small"}
CLASSES = 19  # decoder_filters = the Cityscapes classes
ASPP_FILTERS = 128  # aspp_convs_filters
OUTPUT_STRIDE = 32
IMAGE_POOLING_CROP, IMAGE_POOLING_STRIDE = (769, 769), (4, 5)


def seg_spec(variant: str) -> list[dict]:
    """DeepLab's `_seg` conv_defs: slim's table with DeepLab's halving, then channel counts as slim computes them
    at depth multiplier 1 (num_outputs: `_make_divisible(n, 8, min 8)`; expanded_conv's inner size:
    `expand_input_by_factor`: `_make_divisible(inputs * ef, 8)`, no expand conv unless wider than the input;
    squeeze_excite: `_make_divisible(inner / 4, 8)`)."""
    spec = [dict(row) for row in DEEPLAB_SEG[variant]["slim"]]
    for layer, expansion in DEEPLAB_SEG[variant]["halve"]:
        spec[layer]["n"] /= 2
        if expansion is not None:
            spec[layer]["ef"] = expansion / spec[layer - 1]["n"]
    cin = slim_make_divisible(spec[0]["n"], 8, 8)
    spec[0]["out"] = cin
    for k, row in enumerate(spec[1:-1]):
        row["name"] = "MobilenetV3/expanded_conv" + (f"_{k}" if k else "")
        row["in"], row["inner"] = cin, slim_make_divisible(cin * row["ef"], 8)
        row["out"] = slim_make_divisible(row["n"], 8, 8)
        row["squeeze"] = slim_make_divisible(row["inner"] / 4, 8)
        cin = row["out"]
    spec[-1]["in"], spec[-1]["out"] = cin, slim_make_divisible(spec[-1]["n"], 8, 8)
    return spec


def deeplab_mobilenet_v3_release(variant: str, momentum: bool = True):
    """The variables of DeepLab's mobilenetv3_{variant}_cityscapes_trainfine: `MobilenetV3/...` (slim's scopes:
    `Conv`, `expanded_conv[_N]/{expand,depthwise,squeeze_excite/{Conv,Conv_1},project}`, `Conv_1`), LR-ASPP
    (`image_pooling` biased, `aspp0` with BatchNorm), the logits decoder (`decoder/feature_projection0`,
    `decoder/decoder_conv0`, biased), `global_step` and, with `momentum`, a `Momentum` slot per variable."""
    spec = seg_spec(variant)
    stride8 = spec[DEEPLAB_SEG[variant]["stride8_layer"] - 1]

    def build(writer: TF1Writer) -> None:
        with scope("MobilenetV3"):
            writer.conv("Conv", 3, 3, spec[0]["out"])
            for row in spec[1:-1]:
                with scope(row["name"].split("/")[1]):
                    if row["inner"] > row["in"]:
                        writer.conv("expand", 1, row["in"], row["inner"])
                    with scope("depthwise"):  # slim.separable_conv2d(num_outputs=None), k x k
                        writer.var("depthwise_weights", [row["k"], row["k"], row["inner"], 1])
                        writer.batch_norm(row["inner"])
                    if row["se"]:
                        with scope("squeeze_excite"):
                            writer.conv("Conv", 1, row["inner"], row["squeeze"], batch_norm=False)
                            writer.conv("Conv_1", 1, row["squeeze"], row["inner"], batch_norm=False)
                    writer.conv("project", 1, row["inner"], row["out"])
            writer.conv("Conv_1", 1, spec[-1]["in"], spec[-1]["out"])
        with scope("image_pooling"):  # biased (q_sigmoid, no BatchNorm); weights 20x the usual scale, so that the
            # gate differs from window to window and the comparison tells strided from global pooling
            shape = [1, 1, spec[-1]["out"], ASPP_FILTERS]
            weights = writer.rng.normal(0.0, 20.0 / np.sqrt(spec[-1]["out"]), shape).astype(np.float32)
            tf.compat.v1.get_variable("weights", initializer=weights, use_resource=False)
            writer.var("biases", [ASPP_FILTERS])
        writer.conv("aspp0", 1, spec[-1]["out"], ASPP_FILTERS)
        with scope("decoder"):
            writer.conv("feature_projection0", 1, stride8["inner"], CLASSES, batch_norm=False)
            writer.conv("decoder_conv0", 1, ASPP_FILTERS, CLASSES, batch_norm=False)
        if momentum:  # the optimizer's slots, as a training checkpoint holds them
            for variable in tf.compat.v1.global_variables():
                tf.compat.v1.get_variable(variable.op.name + "/Momentum", shape=variable.shape,
                                          initializer=tf.zeros_initializer(), use_resource=False)  # fmt: skip
        tf.compat.v1.train.get_or_create_global_step()

    return build


@pytest.fixture(scope="module")
def release_ckpt(tmp_path_factory):
    """`release_ckpt(name)`: the fixture checkpoint of release `name` (written once)."""
    folder, written = tmp_path_factory.mktemp("mobilenet_v3_releases"), {}

    def get(name: str) -> str:
        if name not in written:
            variant = RELEASE_VARIANT[name]
            written[name] = write_checkpoint(str(folder / name / "model.ckpt"), deeplab_mobilenet_v3_release(variant),
                                             seed=1 if variant == "large" else 2)  # fmt: skip
        return written[name]

    return get


@pytest.fixture(scope="module")
def release_model(release_ckpt):
    """`release_model(name, size)`: (the release's registry model at input `size` with its checkpoint imported,
    the import report); built once per (name, size)."""
    built = {}

    def get(name: str, size) -> tuple[keras.Model, object]:
        if (name, size) not in built:
            spec = release_spec(name)
            model = build_model(spec.model, num_classes=len(spec.label_names), input_size=size, width=spec.width,
                                decoder=spec.decoder, label_names=list(spec.label_names))  # fmt: skip
            built[(name, size)] = model, load_tf1_checkpoint(model, release_ckpt(name))
        return built[(name, size)]

    return get


# ---------------------------------------------------------------- (a) every tensor, name by name


@pytest.mark.parametrize("name", list(RELEASE_VARIANT))
def test_release_checkpoint_loads_whole_into_its_registry_model(name, release_model, release_ckpt, capsys):
    spec = release_spec(name)
    assert (spec.model, spec.width, spec.label_names, spec.decoder, spec.input_size, spec.dataset) == (
        f"mobilenetv3_{RELEASE_VARIANT[name]}_lraspp", 1.0, CITYSCAPES_LABELS, True, 769, "cityscapes")
    model, report = release_model(name, 129)
    capsys.readouterr()
    tensors = tf.train.load_checkpoint(release_ckpt(name)).get_variable_to_shape_map()
    slots = sorted(t for t in tensors if t.endswith("/Momentum"))
    assert report.left_at_init == [] and not report.skipped and not report.derived, (report.left_at_init, report.skipped)
    assert report.unused == sorted(["global_step", *slots]) and len(report.matched) == len(model.weights)
    assert {theirs for _, theirs in report.matched} == set(tensors) - set(report.unused)  # every model tensor used
    matched = dict(report.matched)
    expected = {
        "Conv/kernel": "MobilenetV3/Conv/weights",
        "Conv_BN/moving_variance": "MobilenetV3/Conv/BatchNorm/moving_variance",
        "expanded_conv_depthwise/depthwise_kernel": "MobilenetV3/expanded_conv/depthwise/depthwise_weights",
        "expanded_conv_project_BN/gamma": "MobilenetV3/expanded_conv/project/BatchNorm/gamma",
        "expanded_conv_3_squeeze_excite_Conv/bias": "MobilenetV3/expanded_conv_3/squeeze_excite/Conv/biases",
        "expanded_conv_3_squeeze_excite_Conv_1/kernel": "MobilenetV3/expanded_conv_3/squeeze_excite/Conv_1/weights",
        "Conv_1/kernel": "MobilenetV3/Conv_1/weights",
        "head_conv1x1/kernel": "aspp0/weights",
        "head_conv1x1_bn/beta": "aspp0/BatchNorm/beta",
        "head_pool_conv/kernel": "image_pooling/weights",
        "head_pool_conv/bias": "image_pooling/biases",
        "decoder_low_level_logits/kernel": "decoder/feature_projection0/weights",
        "decoder_low_level_logits/bias": "decoder/feature_projection0/biases",
        "decoder_logits/kernel": "decoder/decoder_conv0/weights",
        "decoder_logits/bias": "decoder/decoder_conv0/biases",
    }
    assert {ours: matched.get(ours) for ours in expected} == expected
    with capsys.disabled():  # the import table: `pytest -s -k loads_whole`
        print(f"\n{name}: {len(report.matched)} tensors matched, 0 of ours left at initialisation, unused: global_step "
              f"and {len(slots)} Momentum slots. Import table (ours <- DeepLab's):")  # fmt: skip
        for ours, theirs in report.matched:
            print(f"  {ours:<52} <- {theirs} {list(tensors[theirs])}")


# ---------------------------------------------------------------- (b) DeepLab's graph, recomputed with tf.nn


def scale_dimension(dim: int, scale: float) -> int:
    """research/deeplab/model.py's scale_dimension."""
    return int((float(dim) - 1.0) * scale + 1.0)


def _reference_deeplab(reader, variant: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """DeepLab's inference graph of the release (crop_size = the image's size) from the checkpoint's tensors:
    the backbone's features, the LR-ASPP output, the logits at decoder stride 8 and the upsampled logits."""
    t = reader.get_tensor
    names = set(reader.get_variable_to_shape_map())
    spec = seg_spec(variant)
    crop = images.shape[1:3]

    def hard_swish(x):  # mobilenet_v3.hard_swish
        return x * tf.nn.relu6(x + np.float32(3)) * np.float32(1.0 / 6.0)

    def q_sigmoid(x):  # mobilenet_v3's SE gating_fn and deeplab/core/utils.q_sigmoid
        return tf.nn.relu6(x + 3) * 0.16667

    def conv(x, name, stride=1, biased=False):
        y = tf.nn.conv2d(x, t(name + "/weights"), stride, "SAME")
        return y + t(name + "/biases") if biased else y

    def bn(x, name, epsilon=1e-3):  # slim's batch_norm: epsilon 1e-3 in the backbone, DeepLab's 1e-5 in the head
        return tf.nn.batch_normalization(x, t(name + "/BatchNorm/moving_mean"), t(name + "/BatchNorm/moving_variance"),
                                         t(name + "/BatchNorm/beta"), t(name + "/BatchNorm/gamma"), epsilon)  # fmt: skip

    def resize(x, size):  # model.py's _resize_bilinear
        return tf.compat.v1.image.resize_bilinear(x, size, align_corners=True)

    x = hard_swish(bn(conv(tf.constant(images), "MobilenetV3/Conv", 2), "MobilenetV3/Conv"))
    current, rate, end_points = 2, 1, {}
    for layer, row in enumerate(spec[1:-1], 2):  # slim's layer_N
        if current == OUTPUT_STRIDE:  # mobilenet_base: atrous instead of striding (never reached at OS 32)
            stride, layer_rate, rate = 1, rate, rate * row["s"]
        else:
            stride, layer_rate, current = row["s"], 1, current * row["s"]
        act = hard_swish if row["act"] == HSWISH else tf.nn.relu
        name, inputs = row["name"], x
        if name + "/expand/weights" in names:
            x = act(bn(conv(x, name + "/expand"), name + "/expand"))
        kernel = t(name + "/depthwise/depthwise_weights")
        x = act(bn(tf.nn.depthwise_conv2d(x, kernel, [1, stride, stride, 1], "SAME", dilations=[layer_rate] * 2),
                   name + "/depthwise"))  # fmt: skip
        end_points[f"layer_{layer}/depthwise_output"] = x
        if row["se"]:  # squeeze_excite on the expansion: avg_pool over the whole map, relu, gate
            pooled = tf.nn.avg_pool(x, (1, *x.shape[1:3], 1), strides=1, padding="VALID")
            squeeze = tf.nn.relu(conv(pooled, name + "/squeeze_excite/Conv", biased=True))
            x = x * q_sigmoid(conv(squeeze, name + "/squeeze_excite/Conv_1", biased=True))
        x = bn(conv(x, name + "/project"), name + "/project")
        if stride == 1 and x.shape[-1] == inputs.shape[-1]:
            x = x + inputs
    features = hard_swish(bn(conv(x, "MobilenetV3/Conv_1"), "MobilenetV3/Conv_1"))

    # extract_features: image pooling with image_pooling_crop_size 769 (DeepLab needs the features at least that
    # window; smaller inputs are run with image_pooling_crop_size None, i.e. the crop: the whole map).
    window = [scale_dimension(c, 1.0 / OUTPUT_STRIDE) for c in IMAGE_POOLING_CROP]
    if any(w > f for w, f in zip(window, features.shape[1:3])):
        window = [scale_dimension(c, 1.0 / OUTPUT_STRIDE) for c in crop]
    pooled = tf.nn.avg_pool(features, [1, *window, 1], [1, *IMAGE_POOLING_STRIDE, 1], "VALID")
    gate = q_sigmoid(conv(pooled, "image_pooling", biased=True))  # aspp_with_squeeze_and_excitation: no BatchNorm
    gate = resize(gate, [scale_dimension(c, 1.0 / OUTPUT_STRIDE) for c in crop])
    head = tf.nn.relu(bn(conv(features, "aspp0"), "aspp0", epsilon=1e-5)) * gate  # no concat projection

    # refine_by_decoder, sum merge, decoder_output_is_logits: biased 1x1 convs, no BatchNorm, no activation
    decoder_size = [scale_dimension(c, 1.0 / 8) for c in crop]
    projection = conv(end_points[f"layer_{DEEPLAB_SEG[variant]['stride8_layer']}/depthwise_output"],
                      "decoder/feature_projection0", biased=True)  # fmt: skip
    logits = conv(resize(head, decoder_size), "decoder/decoder_conv0", biased=True) + resize(projection, decoder_size)
    return {"features": features.numpy(), "pooled": pooled.numpy(), "head": head.numpy(), "logits": logits.numpy(),
            "upsampled": resize(logits, list(crop)).numpy()}  # fmt: skip


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """The largest difference, relative to the range of the reference's values."""
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float(np.abs(ours - reference).max() / np.ptp(reference))


def _check_against_deeplab(name: str, size, release_model, release_ckpt, capsys, pooled_size) -> None:
    model, _ = release_model(name, size)
    capsys.readouterr()
    images = np.random.default_rng(sum(size)).uniform(-1, 1, (1, *size, 3)).astype(np.float32)
    reference = _reference_deeplab(tf.train.load_checkpoint(release_ckpt(name)), RELEASE_VARIANT[name], images)
    layers = {"features": "Conv_1_activation", "pooled": "head_pool", "head": "head_gate", "logits": "decoder_sum"}
    probe = keras.Model(model.inputs, [model.get_layer(layer).output for layer in layers.values()] + [model.output])
    ours = dict(zip([*layers, "upsampled"], (o.numpy() for o in probe(images, training=False))))
    assert ours["pooled"].shape[1:3] == reference["pooled"].shape[1:3] == pooled_size
    errors = {key: _relative_error(ours[key], reference[key]) for key in ours}
    with capsys.disabled():
        print(f"\n{name} at {size[0]}x{size[1]}: image-pooling gate {pooled_size[0]}x{pooled_size[1]}; largest "
              "difference to DeepLab's graph relative to its range: "
              + ", ".join(f"{key} {error:.1e}" for key, error in errors.items()))  # fmt: skip
    assert max(errors.values()) < 1e-5, errors


@pytest.mark.parametrize("size", [(129, 129), (128, 128)])
def test_large_release_computes_deeplabs_graph_with_global_image_pooling(size, release_model, release_ckpt, capsys):
    """Features 5x5 / 4x4, smaller than the 769-crop window (25x25): the gate pools the whole map."""
    _check_against_deeplab("mobilenetv3_large_cityscapes_trainfine", size, release_model, release_ckpt, capsys, (1, 1))


@pytest.mark.parametrize("size, pooled", [((1025, 2049), (3, 9)), ((1024, 2048), (2, 8))])
def test_small_release_computes_deeplabs_graph_with_strided_image_pooling_at_cityscapes_size(
        size, pooled, release_model, release_ckpt, capsys):  # fmt: skip
    """DeepLab's evaluation size: features 33x65 (32x64), 25x25 windows at strides (4, 5): 3x9 (2x8) gates."""
    _check_against_deeplab("mobilenetv3_small_cityscapes_trainfine", size, release_model, release_ckpt, capsys, pooled)


@pytest.mark.slow  # the large model at 1025x2049 and 1024x2048 (~16 GMACs each, twice: ours and the reference)
@pytest.mark.parametrize("size, pooled", [((1025, 2049), (3, 9)), ((1024, 2048), (2, 8))])
def test_large_release_computes_deeplabs_graph_at_cityscapes_size(size, pooled, release_model, release_ckpt, capsys):
    _check_against_deeplab("mobilenetv3_large_cityscapes_trainfine", size, release_model, release_ckpt, capsys, pooled)


# ---------------------------------------------------------------- (c) the release command, (d) our export


def test_release_command_saves_the_release_from_its_checkpoint(release_ckpt, tmp_path):
    name = "mobilenetv3_small_cityscapes_trainfine"
    out = tmp_path / "small.keras"
    made = subprocess.run([sys.executable, "-m", "zoo", "release", name, "--weights", release_ckpt(name), "--input-size",
                           "129", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "0 of ours left at initialisation" in made.stdout and f"saved {out}" in made.stdout, made.stdout
    saved = keras.models.load_model(str(out))
    description = describe(saved)
    assert (description.name, description.label_names, description.input_size) == ("mobilenetv3_small_lraspp",
                                                                                     CITYSCAPES_LABELS, (129, 129))
    reference = tf.train.load_checkpoint(release_ckpt(name)).get_tensor("decoder/decoder_conv0/weights")
    np.testing.assert_array_equal(saved.get_layer("decoder_logits").kernel.numpy(), reference)


def test_mobilenet_v3_ksac_exports_to_tf1_and_imports_identically(make_tiny_model, tmp_path):
    name = "mobilenetv3_small_ksac_separable"
    source = make_tiny_model(name, seed=1, num_classes=5)
    _randomize(source, 7, small_variances=True)  # slim's epsilon is ours: nothing to transform
    report = _assert_round_trip(source, make_tiny_model(name, seed=2, num_classes=5), str(tmp_path / "export"))
    assert report.exact
