"""Import of TF1 checkpoints (DeepLab's Xception65 and head, TF-slim's MobileNetV2), name by name.

The fixture checkpoints are written the way DeepLab and TF-slim write theirs: variables
created with `tf.compat.v1.get_variable` inside the same nested `variable_scope`s as
research/deeplab/core/xception.py, research/deeplab/model.py and
research/slim/nets/mobilenet/{mobilenet,conv_blocks}.py, saved by a v1 `Saver`. The
reference forward passes below recompute DeepLab's backbones from those tensors with
`tf.nn` (DeepLab's explicit symmetric padding before stride-2 convolutions in
Xception, TF "SAME" padding in MobileNetV2) and compare them with ours after import.

Models are small (width 0.25 / 0.35, 16 head filters): TF1 names do not depend on width.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from zoo import build_model, describe
from zoo.backbones import BACKBONES
from zoo.backbones.mobilenet_v2 import make_divisible
from zoo.tf1_checkpoint import export_tf1_checkpoint, load_tf1_checkpoint, tf1_mapping
from zoo.weights import (
    HDF5,
    TF1_CHECKPOINT,
    ArchitectureMismatchError,
    ShapeMismatchError,
    load_weights,
    weights_format,
)

pytestmark = pytest.mark.xdist_group("tf1_checkpoint")  # the module's models are built once, on one worker

XCEPTION_WIDTH = 0.25
MOBILENET_WIDTH = 0.35
HEAD = 16  # head_filters
scope = tf.compat.v1.variable_scope


# ---------------------------------------------------------------- TF1 fixture checkpoints


class TF1Writer:
    """Creates variables as slim does (get_variable inside variable scopes) and saves them with a v1 Saver."""

    def __init__(self, seed: int = 0) -> None:
        self.graph = tf.Graph()
        self.rng = np.random.default_rng(seed)

    def var(self, leaf: str, shape: list[int]) -> None:
        if leaf == "moving_variance":
            value = self.rng.uniform(0.5, 1.5, shape)
        elif leaf == "gamma":
            value = self.rng.uniform(0.5, 1.0, shape)
        elif leaf in ("beta", "moving_mean", "biases"):
            value = self.rng.normal(0.0, 0.1, shape)
        else:  # weights, depthwise_weights: fan-in scaled
            value = self.rng.normal(0.0, 1.0, shape) / np.sqrt(np.prod(shape[:-1]) if "depthwise" not in leaf else 9)
        tf.compat.v1.get_variable(leaf, initializer=value.astype(np.float32), use_resource=False)

    def batch_norm(self, channels: int) -> None:
        with scope("BatchNorm"):
            for leaf in ("gamma", "beta", "moving_mean", "moving_variance"):
                self.var(leaf, [channels])

    def conv(self, name: str, kernel: int, cin: int, cout: int, batch_norm: bool = True) -> None:
        """slim.conv2d: `weights`, then `BatchNorm/...` (normalizer) or `biases`."""
        with scope(name):
            self.var("weights", [kernel, kernel, cin, cout])
            self.batch_norm(cout) if batch_norm else self.var("biases", [cout])

    def depthwise(self, name: str, channels: int) -> None:
        """slim.separable_conv2d(num_outputs=None): `depthwise_weights` [3, 3, in, 1] and `BatchNorm/...`."""
        with scope(name):
            self.var("depthwise_weights", [3, 3, channels, 1])
            self.batch_norm(channels)

    def save(self, prefix: str) -> str:
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        with tf.compat.v1.Session(graph=self.graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return tf.compat.v1.train.Saver().save(session, prefix)


def write_checkpoint(prefix: str, *builders, seed: int = 0) -> str:
    """A TF1 checkpoint at `prefix` with the variables each `builder(writer)` creates."""
    writer = TF1Writer(seed)
    with writer.graph.as_default():
        for builder in builders:
            builder(writer)
    return writer.save(prefix)


# research/deeplab/core/xception.py, xception_65: (scope, depth_list, skip_connection_type, num_units, stride)
DEEPLAB_XCEPTION65 = (
    ("entry_flow/block1", (128, 128, 128), "conv", 1, 2),
    ("entry_flow/block2", (256, 256, 256), "conv", 1, 2),
    ("entry_flow/block3", (728, 728, 728), "conv", 1, 2),
    ("middle_flow/block1", (728, 728, 728), "sum", 16, 1),
    ("exit_flow/block1", (728, 1024, 1024), "conv", 1, 2),
    ("exit_flow/block2", (1536, 1536, 2048), "none", 1, 1),
)
# research/slim/nets/mobilenet/mobilenet_v2.py, V2_DEF: (expansion, num_outputs, stride) per expanded_conv
SLIM_MOBILENET_V2 = (
    ((1, 16, 1),) + ((6, 24, 2), (6, 24, 1)) + ((6, 32, 2),) + ((6, 32, 1),) * 2 + ((6, 64, 2),) + ((6, 64, 1),) * 3
    + ((6, 96, 1),) * 3 + ((6, 160, 2),) + ((6, 160, 1),) * 2 + ((6, 320, 1),)
)  # fmt: skip


def xception_channels(n: int) -> int:
    return make_divisible(n * XCEPTION_WIDTH)  # zoo.backbones.xception's width rule (DeepLab has none)


def slim_depth(n: float) -> int:
    return make_divisible(n * MOBILENET_WIDTH)  # slim's depth_multiplier with divisible_by=8


def deeplab_xception65(writer: TF1Writer, imagenet_logits: bool = False) -> None:
    """The variables of DeepLab's xception_65 (scope `xception_65`), as its ImageNet checkpoint holds them."""
    c = xception_channels
    with scope("xception_65"):
        writer.conv("entry_flow/conv1_1", 3, 3, c(32))
        writer.conv("entry_flow/conv1_2", 3, c(32), c(64))
        cin = c(64)
        for block, depths, skip, units, _ in DEEPLAB_XCEPTION65:
            with scope(block):
                for unit in range(1, units + 1):
                    with scope(f"unit_{unit}"), scope("xception_module"):
                        x = cin
                        for i, depth in enumerate(depths, 1):
                            writer.depthwise(f"separable_conv{i}_depthwise", x)
                            writer.conv(f"separable_conv{i}_pointwise", 1, x, c(depth))
                            x = c(depth)
                        if skip == "conv":
                            writer.conv("shortcut", 1, cin, x)
                        cin = x
        if imagenet_logits:
            writer.conv("logits", 1, cin, 1001, batch_norm=False)


def slim_make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """research/slim/nets/mobilenet/mobilenet.py's `_make_divisible` (restated here, independent of ours)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return int(new_v + divisor if new_v < 0.9 * v else new_v)


def deeplab_depth(multiplier: float):
    """DeepLab's MobileNetV2 channel rule (core/feature_extractor.py `_mobilenet_v2`): slim's depth multiplier
    with divisible_by = 8 if multiplier == 1.0 else 1, min_depth likewise."""
    divisor = 8 if multiplier == 1.0 else 1
    return lambda n: slim_make_divisible(n * multiplier, divisor, divisor)


def slim_mobilenet_v2(writer: TF1Writer, imagenet_top: bool = False, depth=None) -> None:
    """The variables of TF-slim's MobilenetV2 up to `expanded_conv_16` (DeepLab's `layer_18`), channels by
    `depth` (default `slim_depth`); with `imagenet_top`, also `Conv_1` and `Logits` as in TF-slim's ImageNet
    checkpoints."""
    depth = depth or slim_depth
    with scope("MobilenetV2"):
        writer.conv("Conv", 3, 3, depth(32))
        cin = depth(32)
        for k, (expansion, outputs, _) in enumerate(SLIM_MOBILENET_V2):
            with scope("expanded_conv" if k == 0 else f"expanded_conv_{k}"):
                # expand_input_by_factor: _make_divisible(num_inputs * expansion, 8), whatever the multiplier
                inner = slim_make_divisible(cin * expansion, 8) if expansion > 1 else cin
                if inner > cin:  # conv_blocks.expanded_conv expands only when inner_size > input depth
                    writer.conv("expand", 1, cin, inner)
                writer.depthwise("depthwise", inner)
                writer.conv("project", 1, inner, depth(outputs))
                cin = depth(outputs)
        if imagenet_top:
            writer.conv("Conv_1", 1, cin, 1280)
            with scope("Logits"):
                writer.conv("Conv2d_1c_1x1", 1, 1280, 1001, batch_norm=False)


def deeplab_head(features: int, low_level: int | None, atrous_rates: int, num_classes: int = 21, filters: int = HEAD):
    """research/deeplab/model.py's head (separable ASPP, none with 0 rates), decoder (separable) and logits, plus
    global_step; `filters` channels in the head and decoder (DeepLab's releases: 256)."""
    HEAD = filters  # noqa: N806  (the module's default width, shadowed for this head)

    def build(writer: TF1Writer) -> None:
        writer.conv("image_pooling", 1, features, HEAD)
        writer.conv("aspp0", 1, features, HEAD)
        for i in range(1, atrous_rates + 1):
            writer.depthwise(f"aspp{i}_depthwise", features)
            writer.conv(f"aspp{i}_pointwise", 1, features, HEAD)
        writer.conv("concat_projection", 1, HEAD * (2 + atrous_rates), HEAD)
        if low_level is not None:
            with scope("decoder"):
                writer.conv("feature_projection0", 1, low_level, 48)
                writer.depthwise("decoder_conv0_depthwise", HEAD + 48)
                writer.conv("decoder_conv0_pointwise", 1, HEAD + 48, HEAD)
                writer.depthwise("decoder_conv1_depthwise", HEAD)
                writer.conv("decoder_conv1_pointwise", 1, HEAD, HEAD)
        with scope("logits"):
            writer.conv("semantic", 1, HEAD, num_classes, batch_norm=False)
        tf.compat.v1.train.get_or_create_global_step()

    return build


# ---------------------------------------------------------------- shared models and checkpoints


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tf1")


@pytest.fixture(scope="module")
def deeplab_xception_ckpt(ckpt_dir):
    """DeepLab's xception65_coco_voc_trainaug layout: backbone, separable ASPP (3 rates) and decoder, 21 classes."""
    c = xception_channels
    return write_checkpoint(str(ckpt_dir / "xception" / "model.ckpt"), deeplab_xception65, deeplab_head(c(2048), c(256), 3))


@pytest.fixture(scope="module")
def deeplab_mobilenet_ckpt(ckpt_dir):
    """DeepLab's mobilenetv2_coco_voc_trainaug layout: backbone to layer_18, image pooling + aspp0, no decoder."""
    return write_checkpoint(str(ckpt_dir / "mobilenet" / "model.ckpt"), slim_mobilenet_v2, deeplab_head(slim_depth(320), None, 0))


@pytest.fixture(scope="module")
def xception_ksac():
    keras.utils.set_random_seed(0)
    return build_model("xception65_ksac", input_size=65, width=XCEPTION_WIDTH, head_filters=HEAD)


@pytest.fixture(scope="module")
def mobilenet_ksac(make_tiny_model):
    """A tiny mobilenetv2_ksac (3 classes) shared by the tests that only read reports and errors."""
    return make_tiny_model("mobilenetv2_ksac", num_classes=3)


def backbone_weights(model) -> set[str]:
    """Our backbone weights (by the mapping table), e.g. `Conv1/kernel`."""
    return {m.ours for m in tf1_mapping(model) if m.part == "backbone"}


def tensor_scopes(names) -> set[str]:
    """The slim layer scopes of TF1 tensor names (without the variable and `BatchNorm`)."""
    return {name.rsplit("/", 1)[0].removesuffix("/BatchNorm") if "/" in name else name for name in names}


def left_layers(report) -> set[str]:
    return {name.split("/")[0] for name in report.left_at_init}


# ---------------------------------------------------------------- name-by-name mapping


def test_deeplab_xception65_checkpoint_maps_one_to_one(xception_ksac, deeplab_xception_ckpt, capsys):
    report = load_tf1_checkpoint(xception_ksac, deeplab_xception_ckpt)
    print(capsys.readouterr().out)  # the figures of the note: `pytest -s -k maps_one_to_one`
    ours = {w: t for w, t in report.matched}
    assert backbone_weights(xception_ksac) <= set(ours)  # every backbone weight of ours has its tensor
    assert not [t for t in report.unused if t.startswith("xception_65/")]  # and every backbone tensor is ours
    assert len(set(ours.values())) == len(ours)  # one to one
    # No counterpart: KSAC's shared kernel, the regular decoder convs. The 3-block projection takes DeepLab's
    # 1x1 and pooling blocks (its KSAC block stays at initialisation) and DeepLab's BatchNorm.
    assert left_layers(report) == {"head_ksac", "decoder_conv1", "decoder_conv1_bn", "decoder_conv2", "decoder_conv2_bn"}
    assert tensor_scopes(report.unused) == {
        "aspp1_depthwise", "aspp1_pointwise", "aspp2_depthwise", "aspp2_pointwise", "aspp3_depthwise", "aspp3_pointwise",
        "decoder/decoder_conv0_depthwise", "decoder/decoder_conv0_pointwise",
        "decoder/decoder_conv1_depthwise", "decoder/decoder_conv1_pointwise", "global_step"}  # fmt: skip
    assert [line for line in report.derived if line.startswith("head_projection/kernel <- concat_projection")]
    assert not report.skipped
    reader = tf.train.load_checkpoint(deeplab_xception_ckpt)
    depthwise = "xception_65/middle_flow/block1/unit_16/xception_module/separable_conv2_depthwise"
    np.testing.assert_array_equal(
        xception_ksac.get_layer("middle_flow_block1_unit16_sepconv2_depthwise").depthwise_kernel.numpy(),
        reader.get_tensor(depthwise + "/depthwise_weights"),
    )  # same layout, no transpose
    np.testing.assert_allclose(  # DeepLab's Xception BatchNorm epsilon is 1e-3, ours 1e-5: folded into the variance
        xception_ksac.get_layer("middle_flow_block1_unit16_sepconv2_depthwise_bn").moving_variance.numpy() + 1e-5,
        reader.get_tensor(depthwise + "/BatchNorm/moving_variance") + 1e-3,
        rtol=1e-6,
    )
    np.testing.assert_array_equal(xception_ksac.get_layer("logits").bias.numpy(), reader.get_tensor("logits/semantic/biases"))


def test_deeplab_and_tfslim_mobilenet_v2_checkpoints_map_one_to_one(make_tiny_model, mobilenet_ksac, deeplab_mobilenet_ckpt,
                                                                    ckpt_dir, capsys):  # fmt: skip
    model = make_tiny_model("mobilenetv2_ksac", num_classes=21)
    report = load_tf1_checkpoint(model, deeplab_mobilenet_ckpt)
    print(capsys.readouterr().out)
    assert backbone_weights(model) <= {w for w, _ in report.matched}
    assert not [t for t in report.unused if t.startswith("MobilenetV2/")]
    assert left_layers(report) == {"head_ksac"}  # the projection takes DeepLab's 1x1 and pooling blocks
    assert tensor_scopes(report.unused) == {"global_step"}

    # TF-slim's ImageNet checkpoint: the backbone plus Conv_1 and Logits, which DeepLab drops; 3 classes here.
    slim = write_checkpoint(str(ckpt_dir / "slim" / "mobilenet_v2.ckpt"), lambda w: slim_mobilenet_v2(w, imagenet_top=True))
    model = mobilenet_ksac
    report = load_tf1_checkpoint(model, slim)
    assert backbone_weights(model) == {w for w, _ in report.matched}
    assert tensor_scopes(report.unused) == {"MobilenetV2/Conv_1", "MobilenetV2/Logits/Conv2d_1c_1x1"}


@pytest.mark.parametrize("rates", [0, 4])
def test_a_deeplab_projection_of_another_block_count_fills_the_blocks_it_has(make_tiny_model, ckpt_dir, rates, capsys):
    """DeepLab's MobileNetV2 release (no rate branches: [pool, aspp0], 2 blocks) or a head with 4 rates, into a
    3-rate separable KSAC (once a numpy "array split" error): the 1x1 and pooling blocks come from the file, the
    KSAC block keeps its initial values, and the report says so."""
    path = ckpt_dir / f"mobilenet_rates{rates}" / "model.ckpt"
    ckpt = write_checkpoint(str(path), slim_mobilenet_v2, deeplab_head(slim_depth(320), None, rates))
    model = make_tiny_model("mobilenetv2_ksac_separable", num_classes=21, head_filters=HEAD)
    initial = np.split(model.get_layer("head_projection").kernel.numpy(), 3, axis=2)  # [aspp0, ksac, pool]
    report = load_tf1_checkpoint(model, ckpt)
    printed = capsys.readouterr().out
    assert not report.skipped and "head_projection/kernel" not in report.left_at_init
    assert [line for line in report.derived if line.startswith("head_projection/kernel <- concat_projection/weights")]
    theirs = np.split(tf.train.load_checkpoint(ckpt).get_tensor("concat_projection/weights"), 2 + rates, axis=2)
    ours = np.split(model.get_layer("head_projection").kernel.numpy(), 3, axis=2)
    np.testing.assert_array_equal(ours[0], theirs[1])
    np.testing.assert_array_equal(ours[2], theirs[0])
    np.testing.assert_array_equal(ours[1], initial[1])  # 0 or 4 rate blocks for our 3 rates: no mean taken
    assert backbone_weights(model) <= {w for w, _ in report.matched}
    assert "1 of the file's unused" in printed  # global_step only


def test_a_deeplab_projection_not_made_of_whole_blocks_is_skipped_with_a_message(make_tiny_model, ckpt_dir):
    def head(writer: TF1Writer) -> None:
        deeplab_head(slim_depth(320), None, 0)(writer)  # then a projection 8 channels wider than 2 blocks
        with scope("odd"):
            writer.conv("concat_projection", 1, 2 * HEAD + 8, HEAD)

    ckpt = write_checkpoint(str(ckpt_dir / "odd" / "model.ckpt"), slim_mobilenet_v2, head)
    reader = tf.train.load_checkpoint(ckpt)
    renamed = {name.replace("odd/", "") if name.startswith("odd/") else name: name
               for name in reader.get_variable_to_shape_map() if not name.startswith("concat_projection/")}  # fmt: skip
    prefix = str(ckpt_dir / "odd_renamed" / "model.ckpt")
    os.makedirs(os.path.dirname(prefix))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        variables = [tf.compat.v1.Variable(reader.get_tensor(old), name=new) for new, old in renamed.items()]
        session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver(variables).save(session, prefix)
    model = make_tiny_model("mobilenetv2_ksac_separable", num_classes=21, head_filters=HEAD)
    report = load_tf1_checkpoint(model, prefix)
    (line,) = [line for line in report.skipped if line.startswith("head_projection/kernel")]
    assert f"is not [1, 1, k x {HEAD}, {HEAD}] with k >= 2 blocks" in line and "left at initialisation" in line
    assert "head_projection/kernel" in report.left_at_init


def test_deeplab_logits_of_another_class_count_are_skipped_with_a_message(mobilenet_ksac, deeplab_mobilenet_ckpt, capsys):
    model = mobilenet_ksac
    initial = model.get_layer("logits").kernel.numpy()
    report = load_weights(model, deeplab_mobilenet_ckpt)
    assert "21 classes in the checkpoint, 3 in the model" in capsys.readouterr().out
    assert {"logits/kernel", "logits/bias"} <= set(report.left_at_init)
    np.testing.assert_array_equal(model.get_layer("logits").kernel.numpy(), initial)


# ---------------------------------------------------------------- DeepLab's forward pass (and its padding)


def _reference_xception65(reader, images: np.ndarray, output_stride: int = 16, low_level: list | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """DeepLab's xception_65 (inference) recomputed from the checkpoint's tensors with tf.nn: the output of the
    first (stride-2) convolution `entry_flow/conv1_1`, and the features; with a `low_level` list, appends the
    decoder's input to it (`entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise`, DeepLab's
    feature_extractor end point for the decoder)."""
    t = reader.get_tensor

    def bn(x, name, relu=False):
        x = tf.nn.batch_normalization(x, t(name + "/BatchNorm/moving_mean"), t(name + "/BatchNorm/moving_variance"),
                                      t(name + "/BatchNorm/beta"), t(name + "/BatchNorm/gamma"), 1e-3)  # fmt: skip
        return tf.nn.relu(x) if relu else x

    def fixed_padding(x, rate=1):  # xception.py's fixed_padding, 3x3 kernel: symmetric
        total = 2 * rate
        return tf.pad(x, [[0, 0], [total // 2, total - total // 2], [total // 2, total - total // 2], [0, 0]])

    def conv2d_same(x, name, stride):  # resnet_utils.conv2d_same
        if stride == 1:
            return bn(tf.nn.conv2d(x, t(name + "/weights"), 1, "SAME"), name, relu=True)
        return bn(tf.nn.conv2d(fixed_padding(x), t(name + "/weights"), stride, "VALID"), name, relu=True)

    def separable(x, name, stride, rate, inside):
        x = x if inside else tf.nn.relu(x)
        kernel = t(name + "_depthwise/depthwise_weights")
        if stride == 1:
            x = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME", dilations=[rate, rate])
        else:
            x = tf.nn.depthwise_conv2d(fixed_padding(x, rate), kernel, [1, stride, stride, 1], "VALID")
        x = bn(x, name + "_depthwise", relu=inside)
        return bn(tf.nn.conv2d(x, t(name + "_pointwise/weights"), 1, "SAME"), name + "_pointwise", relu=inside)

    x = first = conv2d_same(tf.constant(images), "xception_65/entry_flow/conv1_1", 2)
    x = conv2d_same(x, "xception_65/entry_flow/conv1_2", 1)
    target, current, rate = output_stride // 2, 1, 1  # xception() halves output_stride for the root conv
    for block, _, skip, units, block_stride in DEEPLAB_XCEPTION65:
        for unit in range(1, units + 1):
            if current == target:  # stack_blocks_dense: atrous instead of striding
                stride, unit_rate, rate = 1, rate, rate * block_stride
            else:
                stride, unit_rate, current = block_stride, 1, current * block_stride
            name = f"xception_65/{block}/unit_{unit}/xception_module"
            inside = block == "exit_flow/block2"
            residual = x
            for i in (1, 2, 3):
                residual = separable(residual, f"{name}/separable_conv{i}", stride if i == 3 else 1, unit_rate, inside)
                if low_level is not None and block == "entry_flow/block2" and i == 2:
                    low_level.append(residual.numpy())
            if skip == "conv":
                shortcut = tf.nn.conv2d(x, t(name + "/shortcut/weights"), stride, "SAME")
                x = residual + bn(shortcut, name + "/shortcut")
            else:
                x = residual + x if skip == "sum" else residual
    return first.numpy(), x.numpy()


def _reference_mobilenet_v2(reader, images: np.ndarray, output_stride: int = 16, low_level: list | None = None) -> np.ndarray:
    """TF-slim's MobilenetV2 to expanded_conv_16 (inference, "SAME" padding), recomputed with tf.nn; appends
    DeepLab's decoder end point `layer_4/depthwise_output` (expanded_conv_2's depthwise output) to `low_level`."""
    t = reader.get_tensor
    names = set(reader.get_variable_to_shape_map())

    def bn(x, name, relu6=True):
        x = tf.nn.batch_normalization(x, t(name + "/BatchNorm/moving_mean"), t(name + "/BatchNorm/moving_variance"),
                                      t(name + "/BatchNorm/beta"), t(name + "/BatchNorm/gamma"), 1e-3)  # fmt: skip
        return tf.nn.relu6(x) if relu6 else x

    x = bn(tf.nn.conv2d(tf.constant(images), t("MobilenetV2/Conv/weights"), 2, "SAME"), "MobilenetV2/Conv")
    current, rate = 2, 1
    for k, (_, _, layer_stride) in enumerate(SLIM_MOBILENET_V2):
        if current == output_stride:  # mobilenet_base: atrous instead of striding
            stride, layer_rate, rate = 1, rate, rate * layer_stride
        else:
            stride, layer_rate, current = layer_stride, 1, current * layer_stride
        name = "MobilenetV2/expanded_conv" + (f"_{k}" if k else "")
        inputs = x
        if name + "/expand/weights" in names:
            x = bn(tf.nn.conv2d(x, t(name + "/expand/weights"), 1, "SAME"), name + "/expand")
        kernel = t(name + "/depthwise/depthwise_weights")
        x = tf.nn.depthwise_conv2d(x, kernel, [1, stride, stride, 1], "SAME", dilations=[layer_rate, layer_rate])
        x = bn(x, name + "/depthwise")
        if low_level is not None and k == 2:
            low_level.append(x.numpy())
        x = bn(tf.nn.conv2d(x, t(name + "/project/weights"), 1, "SAME"), name + "/project", relu6=False)
        if stride == 1 and x.shape[-1] == inputs.shape[-1]:
            x = x + inputs
    return x.numpy()


def _backbone(name: str, width: float, path: str, first: str | None = None):
    """Our backbone alone (any input size), with the checkpoint at `path` imported; outputs the features, or
    (the output of layer `first`, the features)."""
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, BACKBONES[name](inputs, output_stride=16, width=width).features)
    if first is not None:
        model = keras.Model(inputs, [model.get_layer(first).output, model.output])
    load_tf1_checkpoint(model, path)
    return model


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """The largest difference, relative to the range of the reference's values."""
    return float(np.abs(ours - reference).max() / np.ptp(reference))


def test_xception65_reproduces_deeplab_at_odd_sizes_and_at_even_sizes_only_with_symmetric_padding(deeplab_xception_ckpt):
    """DeepLab pads explicitly and symmetrically before stride-2 convolutions; Keras "same" pads (0, 1) at even
    sizes. So our Xception65 reproduces DeepLab's features at odd sizes (65, 513, ...) whatever its padding, and
    at even sizes (64, 512, ...) only if it pads explicitly (ZeroPadding2D + "valid") before its stride-2 layers."""
    model = _backbone("xception65", XCEPTION_WIDTH, deeplab_xception_ckpt, first="entry_flow_conv1_1_relu")
    reader = tf.train.load_checkpoint(deeplab_xception_ckpt)
    explicit_padding = any(isinstance(layer, keras.layers.ZeroPadding2D) for layer in model.layers)
    for size in (65, 64):
        images = np.random.default_rng(size).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        ours = model(images, training=False)
        errors = [_relative_error(a.numpy(), b) for a, b in zip(ours, _reference_xception65(reader, images))]
        print(f"xception65 at {size}x{size}, largest difference to DeepLab's forward pass relative to its range: "
              f"{errors[0]:.1e} after entry_flow/conv1_1, {errors[1]:.1e} in the features")  # fmt: skip
        if size % 2 or explicit_padding:
            assert max(errors) < 1e-4, size
        else:  # every stride-2 layer reads its input one pixel off DeepLab's (deep random features vary little)
            assert errors[0] > 0.1 and errors[1] > 1e-3, size


def test_mobilenet_v2_reproduces_tfslim_at_odd_and_even_sizes(deeplab_mobilenet_ckpt):
    model = _backbone("mobilenetv2", MOBILENET_WIDTH, deeplab_mobilenet_ckpt)
    reader = tf.train.load_checkpoint(deeplab_mobilenet_ckpt)
    for size in (65, 64):  # slim's MobileNetV2 uses "SAME" padding like ours: equal at every size
        images = np.random.default_rng(size).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        assert _relative_error(model(images, training=False).numpy(), _reference_mobilenet_v2(reader, images)) < 1e-4


# ---------------------------------------------------------------- DeepLab's separable head and decoder


def _reference_deeplab_head(reader, features: np.ndarray, low_level: np.ndarray | None, rates) -> tuple[np.ndarray, np.ndarray]:
    """research/deeplab/model.py at inference from the checkpoint's tensors with tf.nn: the separable ASPP
    (`_extract_features`, `split_separable_conv2d`, BatchNorm epsilon 1e-5; no rate branch for `rates` ()),
    the separable decoder where `low_level` is given (`refine_by_decoder`, corner-aligned `_resize_bilinear`)
    and `logits/semantic`. Returns (head, logits)."""
    t = reader.get_tensor

    def bn_relu(x, name):
        x = tf.nn.batch_normalization(x, t(name + "/BatchNorm/moving_mean"), t(name + "/BatchNorm/moving_variance"),
                                      t(name + "/BatchNorm/beta"), t(name + "/BatchNorm/gamma"), 1e-5)  # fmt: skip
        return tf.nn.relu(x)

    def conv(x, name):
        return bn_relu(tf.nn.conv2d(x, t(name + "/weights"), 1, "SAME"), name)

    def split_separable(x, name, rate=1):
        x = tf.nn.depthwise_conv2d(x, t(name + "_depthwise/depthwise_weights"), [1, 1, 1, 1], "SAME", dilations=[rate, rate])
        return conv(bn_relu(x, name + "_depthwise"), name + "_pointwise")

    def resize(x, like):  # DeepLab's _resize_bilinear: align_corners=True
        return tf.compat.v1.image.resize_bilinear(x, like.shape[1:3], align_corners=True)

    features = tf.constant(features)
    pool = conv(tf.reduce_mean(features, [1, 2], keepdims=True), "image_pooling")
    branches = [resize(pool, features), conv(features, "aspp0")]
    branches += [split_separable(features, f"aspp{i}", rate) for i, rate in enumerate(rates, 1)]
    head = x = conv(tf.concat(branches, 3), "concat_projection")
    if low_level is not None:
        skip = conv(tf.constant(low_level), "decoder/feature_projection0")
        x = tf.concat([resize(head, skip), skip], 3)
        x = split_separable(split_separable(x, "decoder/decoder_conv0"), "decoder/decoder_conv1")
    logits = tf.nn.conv2d(x, t("logits/semantic/weights"), 1, "SAME") + t("logits/semantic/biases")
    return head.numpy(), logits.numpy()


def _features_head_logits(model: keras.Model) -> keras.Model:
    """`model` with the backbone's features, the head's output (dropout off), the logits before upsampling and the
    model's output (the logits upsampled to the input size) as outputs."""
    outputs = [model.get_layer("head_pool").input, model.get_layer("head_projection_relu").output,
               model.get_layer("logits").output, model.output]  # fmt: skip
    return keras.Model(model.inputs, outputs)


def test_deeplab_xception65_checkpoint_loads_whole_into_separable_aspp_and_computes_deeplabs_graph(deeplab_xception_ckpt,
                                                                                                   capsys):  # fmt: skip
    keras.utils.set_random_seed(0)
    model = build_model("xception65_aspp_separable", input_size=65, width=XCEPTION_WIDTH, head_filters=HEAD,
                        backbone_weights=deeplab_xception_ckpt)  # fmt: skip
    printed = capsys.readouterr().out
    print(printed)  # the figures of the note: `pytest -s -k loads_whole`
    report = load_tf1_checkpoint(model, deeplab_xception_ckpt)
    assert report.left_at_init == [] and report.unused == ["global_step"] and not report.skipped and not report.derived
    assert f"{len(model.weights)} tensors matched, 0 of ours left at initialisation, 1 of the file's unused" in printed
    reader = tf.train.load_checkpoint(deeplab_xception_ckpt)
    for size in (65, 64):
        images = np.random.default_rng(size).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        low_level: list = []
        _, features = _reference_xception65(reader, images, low_level=low_level)
        head, logits = _reference_deeplab_head(reader, features, low_level[0], (6, 12, 18))
        # predict_labels: the logits resized to the image, corner-aligned
        upsampled = tf.compat.v1.image.resize_bilinear(logits, images.shape[1:3], align_corners=True).numpy()
        ours = _features_head_logits(model if size == 65 else _rebuilt(model, size))(images, training=False)
        errors = [_relative_error(a.numpy(), b) for a, b in zip(ours, (features, head, logits, upsampled))]
        print(f"xception65_aspp_separable at {size}x{size}, largest difference to DeepLab's graph relative to its range: "
              f"features {errors[0]:.1e}, head {errors[1]:.1e}, logits {errors[2]:.1e}, upsampled logits {errors[3]:.1e}")  # fmt: skip
        assert max(errors) < 1e-5, (size, errors)


def _rebuilt(model: keras.Model, size: int) -> keras.Model:
    """`model` at another input size, with its weights."""
    d = describe(model)
    other = build_model(d.name, num_classes=d.num_classes, input_size=size, output_stride=d.output_stride, rates=d.rates,
                        decoder=d.decoder, width=d.width, head_filters=d.head_filters)  # fmt: skip
    other.set_weights(model.get_weights())
    return other


# ---------------------------------------------------------------- DeepLab's mobile releases, whole

# research/deeplab/g3doc/model_zoo.md: MobileNetV2 without atrous branches; (depth multiplier, classes, decoder).
MOBILE_RELEASES = {
    "mobilenetv2_coco_voc_trainaug": (1.0, 21, False),  # and _trainval: the same variables
    "mobilenetv2_dm05_coco_voc_trainaug": (0.5, 21, False),
    "mobilenetv2_coco_cityscapes_trainfine": (1.0, 19, False),
    "mobilenetv2_ade20k_train": (1.0, 151, True),  # DeepLab's separable decoder on layer_4/depthwise_output
}
RELEASE_HEAD = 256  # DeepLab's aspp_convs_filters and decoder width


@pytest.fixture(scope="module")
def release_ckpt(ckpt_dir):
    """`release_ckpt(name)`: a checkpoint with the variables (names and shapes) of DeepLab's mobile release `name`."""
    written = {}

    def get(name: str) -> str:
        if name not in written:
            multiplier, classes, decoder = MOBILE_RELEASES[name]
            depth = deeplab_depth(multiplier)
            # the decoder reads expanded_conv_2's depthwise output: expanded_conv_1's output, expanded 6x
            low_level = slim_make_divisible(depth(24) * 6, 8) if decoder else None
            written[name] = write_checkpoint(str(ckpt_dir / name / "model.ckpt"), lambda w: slim_mobilenet_v2(w, depth=depth),
                                             deeplab_head(depth(320), low_level, 0, classes, filters=RELEASE_HEAD))  # fmt: skip
        return written[name]

    return get


def _release_model(name: str, ckpt: str, input_size: int = 65, model: str = "mobilenetv2_deeplab") -> keras.Model:
    multiplier, classes, decoder = MOBILE_RELEASES[name]
    return build_model(model, num_classes=classes, input_size=input_size, width=multiplier, decoder=decoder,
                       backbone_weights=ckpt)  # fmt: skip


@pytest.mark.parametrize("release", list(MOBILE_RELEASES))
def test_deeplab_mobile_release_loads_whole_and_computes_deeplabs_graph(release, release_ckpt, capsys):
    ckpt = release_ckpt(release)
    model = _release_model(release, ckpt)
    print(capsys.readouterr().out)  # the import report: `pytest -s -k mobile_release`
    report = load_tf1_checkpoint(model, ckpt)
    capsys.readouterr()
    assert report.left_at_init == [] and report.unused == ["global_step"], (report.left_at_init, report.unused)
    assert not report.skipped and not report.derived and len(report.matched) == len(model.weights)
    reader = tf.train.load_checkpoint(ckpt)
    decoder = MOBILE_RELEASES[release][2]
    for size in (65, 64):
        images = np.random.default_rng(size).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        low_level: list = []
        features = _reference_mobilenet_v2(reader, images, low_level=low_level)
        head, logits = _reference_deeplab_head(reader, features, low_level[0] if decoder else None, ())
        upsampled = tf.compat.v1.image.resize_bilinear(logits, images.shape[1:3], align_corners=True).numpy()
        ours = _features_head_logits(model if size == 65 else _rebuilt(model, size))(images, training=False)
        errors = [_relative_error(a.numpy(), b) for a, b in zip(ours, (features, head, logits, upsampled))]
        with capsys.disabled():
            print(f"\n{release} at {size}x{size}: {len(report.matched)} tensors matched, 0 left at initialisation, "
                  f"unused {report.unused}; largest difference to DeepLab's graph relative to its range: features "
                  f"{errors[0]:.1e}, head {errors[1]:.1e}, logits {errors[2]:.1e}, upsampled logits {errors[3]:.1e}")  # fmt: skip
        assert max(errors) < 1e-5, (size, errors)


@pytest.mark.parametrize("name, pyramid", [("mobilenetv2_aspp", "head_aspp_rate"), ("mobilenetv2_ksac", "head_ksac"),
                                           ("mobilenetv2_aspp_separable", "head_aspp_rate"),
                                           ("mobilenetv2_ksac_separable", "head_ksac")])  # fmt: skip
def test_every_mobilenet_v2_head_starts_from_deeplabs_mobile_release(name, pyramid, release_ckpt, capsys):
    """The backbone whole, and the head wherever DeepLab's has a counterpart (image pooling, 1x1, the projection's
    1x1 and pooling blocks and its BatchNorm, the logits); only the pyramid, which DeepLab's release lacks, is left."""
    release = "mobilenetv2_coco_voc_trainaug"
    ckpt = release_ckpt(release)
    model = _release_model(release, ckpt, model=name)
    report = load_tf1_checkpoint(model, ckpt)
    with capsys.disabled():
        print(f"\n{name} from {release}: {len(report.matched)} matched, {len(report.left_at_init)} left at init "
              f"(layers {sorted(left_layers(report))}), unused {report.unused}, derived {len(report.derived)}")  # fmt: skip
    assert report.left_at_init and all(w.startswith(pyramid) for w in report.left_at_init), report.left_at_init
    assert report.unused == ["global_step"] and not report.skipped
    assert [line for line in report.derived if line.startswith("head_projection/kernel <- concat_projection/weights")]


def test_deeplab_separable_aspp_initialises_separable_ksac_by_the_mean_of_its_branches(deeplab_xception_ckpt, capsys):
    keras.utils.set_random_seed(0)
    model = build_model("xception65_ksac_separable", input_size=65, width=XCEPTION_WIDTH, head_filters=HEAD)
    report = load_tf1_checkpoint(model, deeplab_xception_ckpt)
    print(capsys.readouterr().out)
    assert report.left_at_init == [] and report.unused == ["global_step"] and not report.skipped
    assert len(report.derived) == 2 + 3 * 2 * 4 + 1  # two kernels, 3 rates x 2 BatchNorms x 4 tensors, the projection
    reader = tf.train.load_checkpoint(deeplab_xception_ckpt)
    pyramid = model.get_layer("head_ksac")

    def mean(tensors):  # in float64, rounded once
        return np.mean([reader.get_tensor(name).astype(np.float64) for name in tensors], axis=0).astype(np.float32)

    np.testing.assert_array_equal(pyramid.depthwise_kernel.numpy(), mean(f"aspp{i}_depthwise/depthwise_weights" for i in (1, 2, 3)))
    np.testing.assert_array_equal(pyramid.pointwise_kernel.numpy(), mean(f"aspp{i}_pointwise/weights" for i in (1, 2, 3)))
    for i, bn in enumerate(pyramid.pointwise_batch_norms, 1):  # rate i's BatchNorms are branch i's
        np.testing.assert_array_equal(bn.gamma.numpy(), reader.get_tensor(f"aspp{i}_pointwise/BatchNorm/gamma"))
    theirs = np.split(reader.get_tensor("concat_projection/weights"), 5, axis=2)  # [pool, aspp0, aspp1..3]
    ours = np.split(model.get_layer("head_projection").kernel.numpy(), 3, axis=2)  # [aspp0, ksac, pool]
    np.testing.assert_array_equal(ours[0], theirs[1])
    np.testing.assert_array_equal(ours[1], np.mean(np.float64(theirs[2:]), axis=0).astype(np.float32))
    np.testing.assert_array_equal(ours[2], theirs[0])


def test_separable_models_round_trip_through_our_tf1_names(make_tiny_model, tmp_path):
    for name in ("mobilenetv2_ksac_separable", "mobilenetv2_aspp_separable"):
        source = make_tiny_model(name, seed=1, num_classes=5)
        _randomize(source, 7)
        report = _assert_round_trip(source, make_tiny_model(name, seed=2, num_classes=5), str(tmp_path / name))
        assert report.exact


# ---------------------------------------------------------------- round trip, partial checkpoints, formats


def _randomize(model, seed: int, small_variances: bool = False) -> None:
    """Every weight away from its initial value (KSAC's included); variances positive, with `small_variances`
    a fifth of them between 1e-7 and 1e-2 (around DeepLab's Xception epsilon difference, 9.9e-4)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "variance" in w.name:
            value = rng.uniform(0.5, 1.5, w.shape)
            if small_variances:
                value = np.where(rng.uniform(size=w.shape) < 0.2, 10 ** rng.uniform(-7, -2, w.shape), value)
        else:
            value = w.numpy() + rng.normal(0, 0.05, w.shape)
        w.assign(value.astype(np.float32))


def _assert_round_trip(source, fresh, folder: str) -> None:
    """Export then import: every weight back bit for bit, except the BatchNorms the export report names
    (variances DeepLab's epsilon cannot hold), which keep the outputs."""
    report = export_tf1_checkpoint(source, os.path.join(folder, "model.ckpt"))
    imported = load_weights(fresh, folder)  # a directory with a `checkpoint` file: its latest checkpoint
    assert not imported.left_at_init and not imported.unused and not imported.skipped
    rescaled = {line.split(":")[0] for line in report.rescaled}
    by_name = {m.ours: m.tf1_name for m in tf1_mapping(source)}
    for ours, theirs in zip(source.weights, fresh.weights):
        if by_name[ours.name.split(":")[0]].rsplit("/", 1)[0] not in rescaled:
            np.testing.assert_array_equal(theirs.numpy(), ours.numpy(), err_msg=ours.name)
    images = np.random.default_rng(3).uniform(-1, 1, (1, 65, 65, 3)).astype(np.float32)
    np.testing.assert_allclose(fresh(images, training=False), source(images, training=False), rtol=1e-5, atol=1e-5)
    return report


def test_export_then_import_gives_identical_outputs(make_tiny_model, tmp_path):
    source = make_tiny_model("mobilenetv2_ksac", seed=1, num_classes=5)
    _randomize(source, 7, small_variances=True)  # MobileNetV2's epsilon is TF-slim's: nothing to transform
    report = _assert_round_trip(source, make_tiny_model("mobilenetv2_ksac", seed=2, num_classes=5), str(tmp_path / "export"))
    assert report.exact


@pytest.mark.slow  # a second Xception65 (~7 s on a busy 2-core CPU); also checks the inverse of the epsilon fold
def test_export_then_import_gives_identical_outputs_xception65(xception_ksac, tmp_path):
    _randomize(xception_ksac, 7, small_variances=True)
    keras.utils.set_random_seed(2)
    fresh = build_model("xception65_ksac", input_size=65, width=XCEPTION_WIDTH, head_filters=HEAD)
    report = _assert_round_trip(xception_ksac, fresh, str(tmp_path / "export"))
    assert not report.exact and all(line.startswith("xception_65/") for line in report.rescaled)


def _xception_stem(epsilon_variances: np.ndarray):
    """DeepLab Xception65's first layer alone (our names: conv + BatchNorm with our epsilon 1e-5)."""
    from zoo.layers import batch_norm

    inputs = keras.Input((5, 5, 3))
    x = keras.layers.Conv2D(len(epsilon_variances), 1, use_bias=False, name="entry_flow_conv1_1")(inputs)
    model = keras.Model(inputs, batch_norm("entry_flow_conv1_1_bn")(x))
    rng = np.random.default_rng(0)
    bn = model.get_layer("entry_flow_conv1_1_bn")
    bn.set_weights([rng.uniform(0.5, 1.5, len(epsilon_variances)), rng.normal(0, 0.1, len(epsilon_variances)),
                    rng.normal(0, 0.1, len(epsilon_variances)), epsilon_variances])  # fmt: skip
    return model


def test_small_xception_variances_keep_the_outputs_and_are_reported(tmp_path, capsys):
    # DeepLab's Xception BatchNorm has epsilon 1e-3, ours 1e-5: a variance of ours below 9.9e-4 would need a
    # negative one in DeepLab's file. The export writes 0 and scales gamma instead, and says so.
    variances = np.float32([0.0, 1e-7, 5e-4, 9.8e-4, 9.9e-4, 1e-3, 2e-3, 0.5, 1.25])
    below = variances < np.float32(1e-3 - 1e-5)  # (float32's 9.9e-4 is what the import makes of a file's 0: exact)
    source = _xception_stem(variances)
    report = export_tf1_checkpoint(source, str(tmp_path / "export" / "model.ckpt"))
    printed = capsys.readouterr().out
    assert not report.exact and report.rescaled == [f"xception_65/entry_flow/conv1_1/BatchNorm: {below.sum()} of 9 channels "
                                                    f"(smallest variance 0)"]  # fmt: skip
    assert "warning: 1 BatchNorm(s)" in printed and report.rescaled[0] in printed and below.sum() == 4
    reader = tf.train.load_checkpoint(str(tmp_path / "export" / "model.ckpt"))
    scope = "xception_65/entry_flow/conv1_1/BatchNorm/"
    variance, gamma = reader.get_tensor(scope + "moving_variance"), reader.get_tensor(scope + "gamma")
    assert (variance >= 0).all() and (variance[below] == 0).all()
    # DeepLab's inference from the file (epsilon 1e-3) computes ours.
    x = np.random.default_rng(1).normal(0, 0.05, (1, 5, 5, 3)).astype(np.float32)
    deeplab = tf.nn.batch_normalization(tf.nn.conv2d(x, reader.get_tensor("xception_65/entry_flow/conv1_1/weights"), 1, "SAME"),
                                        reader.get_tensor(scope + "moving_mean"), variance,
                                        reader.get_tensor(scope + "beta"), gamma, 1e-3)  # fmt: skip
    np.testing.assert_allclose(deeplab, source(x, training=False), rtol=1e-5, atol=1e-6)
    # Importing it back: the same outputs; every variance above 9.9e-4 (and its gamma) bit for bit.
    fresh = _xception_stem(np.ones(9, np.float32))
    load_weights(fresh, str(tmp_path / "export"))
    np.testing.assert_allclose(fresh(x, training=False), source(x, training=False), rtol=1e-5, atol=1e-6)
    ours, back = source.get_layer("entry_flow_conv1_1_bn"), fresh.get_layer("entry_flow_conv1_1_bn")
    np.testing.assert_array_equal(back.moving_variance.numpy()[~below], variances[~below])
    np.testing.assert_array_equal(back.gamma.numpy()[~below], ours.gamma.numpy()[~below])
    scale = np.sqrt(1e-3 / (variances[below].astype(np.float64) + 1e-5))
    np.testing.assert_allclose(back.gamma.numpy()[below], ours.gamma.numpy()[below] * scale, rtol=1e-6)


def test_import_adds_the_epsilon_difference_exactly(tmp_path):
    # A DeepLab variance v is normalised by sqrt(v + 1e-3); ours after import by sqrt(v' + 1e-5): v' is
    # v + 9.9e-4 rounded once (the nearest float32). Exporting it again writes v up to that rounding, which is
    # float32's own on v + 1e-3 (0 comes back as 0, not as a hair below it).
    file_variances = np.float32([0.0, 1e-9, 1e-3, 0.123456, 1.0, 37.5])

    def stem(writer):
        with scope("xception_65/entry_flow/conv1_1"):
            writer.var("weights", [1, 1, 3, 6])
            with scope("BatchNorm"):
                for leaf in ("gamma", "beta", "moving_mean"):
                    writer.var(leaf, [6])
                tf.compat.v1.get_variable("moving_variance", initializer=file_variances, use_resource=False)

    prefix = write_checkpoint(str(tmp_path / "deeplab" / "model.ckpt"), stem)
    model = _xception_stem(np.ones(6, np.float32))
    load_weights(model, prefix)
    imported = model.get_layer("entry_flow_conv1_1_bn").moving_variance.numpy()
    np.testing.assert_array_equal(imported, (file_variances.astype(np.float64) + (1e-3 - 1e-5)).astype(np.float32))
    assert export_tf1_checkpoint(model, str(tmp_path / "again" / "model.ckpt")).exact
    again = tf.train.load_checkpoint(str(tmp_path / "again" / "model.ckpt"))
    written = again.get_tensor("xception_65/entry_flow/conv1_1/BatchNorm/moving_variance")
    assert written[0] == 0 and (np.abs(written - file_variances) <= 2 * 2.0**-24 * (file_variances + 1e-3)).all()


def test_partial_checkpoint_is_reported(mobilenet_ksac, tmp_path, capsys):
    def partial(writer):  # MobilenetV2's stem and first block only, and a tensor of no layer of ours
        with scope("MobilenetV2"):
            writer.conv("Conv", 3, 3, slim_depth(32))
            with scope("expanded_conv"):
                writer.depthwise("depthwise", slim_depth(32))
                writer.conv("project", 1, slim_depth(32), slim_depth(16))
        tf.compat.v1.train.get_or_create_global_step()

    prefix = write_checkpoint(str(tmp_path / "partial" / "model.ckpt"), partial)
    model = mobilenet_ksac
    report = build_and_load(model, prefix + ".index")  # the .index file names the checkpoint too
    printed = capsys.readouterr().out
    assert len(report.matched) == 3 * 5  # Conv, expanded_conv/depthwise, expanded_conv/project: weights + 4 BatchNorm
    assert report.unused == ["global_step"]
    assert len(report.left_at_init) == len(model.weights) - 15 and "block_1_expand/kernel" in report.left_at_init
    assert f"15 tensors matched, {len(model.weights) - 15} of ours left at initialisation, 1 of the file's unused" in printed
    np.testing.assert_array_equal(
        model.get_layer("expanded_conv_project").kernel.numpy(),
        tf.train.load_checkpoint(prefix).get_tensor("MobilenetV2/expanded_conv/project/weights"),
    )


def build_and_load(model, path):
    assert weights_format(path) == TF1_CHECKPOINT
    return load_weights(model, path)


def test_build_model_takes_a_tf1_checkpoint(deeplab_mobilenet_ckpt, capsys):
    model = build_model("mobilenetv2_ksac", input_size=65, width=MOBILENET_WIDTH, head_filters=HEAD,
                        backbone_weights=deeplab_mobilenet_ckpt)  # fmt: skip
    assert "(TF1 checkpoint)" in capsys.readouterr().out
    reader = tf.train.load_checkpoint(deeplab_mobilenet_ckpt)
    np.testing.assert_array_equal(model.get_layer("Conv1").kernel.numpy(), reader.get_tensor("MobilenetV2/Conv/weights"))


def test_hdf5_import_reports_in_the_same_format(mobilenet_ksac, tmp_path, capsys):
    reference = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=MOBILENET_WIDTH, include_top=False, weights=None)
    path = str(tmp_path / "mobilenet_v2_no_top.h5")
    reference.save_weights(path)
    model = mobilenet_ksac
    report = load_weights(model, path)
    printed = capsys.readouterr().out
    assert report.format == HDF5 and "layers matched by name; " in printed and " tensors matched, " in printed
    assert left_layers(report) == {"head_pool_conv", "head_pool_conv_bn", "head_conv1x1", "head_conv1x1_bn", "head_ksac",
                                   "head_projection", "head_projection_bn", "logits"}  # fmt: skip
    assert {name.split("/")[0] for name in report.unused} == {"Conv_1", "Conv_1_bn"}  # the 1280-channel conv we drop
    assert len(report.matched) == len(model.weights) - len(report.left_at_init)


# ---------------------------------------------------------------- errors


def test_shape_mismatch_names_the_tensor(mobilenet_ksac, tmp_path):
    def wrong_stem(writer):
        with scope("MobilenetV2"):
            writer.conv("Conv", 3, 3, 24)  # ours has 16 channels at width 0.35

    prefix = write_checkpoint(str(tmp_path / "wrong" / "model.ckpt"), wrong_stem)
    with pytest.raises(ShapeMismatchError, match=r"MobilenetV2/Conv/weights has shape \[3, 3, 3, 24\] but our Conv1/kernel"):
        load_weights(mobilenet_ksac, prefix)


def test_checkpoint_of_another_architecture_is_an_error(mobilenet_ksac, tmp_path):
    def resnet(writer):
        with scope("resnet_v1_101"):
            writer.conv("conv1", 7, 3, 64)

    prefix = write_checkpoint(str(tmp_path / "resnet" / "model.ckpt"), resnet)
    with pytest.raises(ArchitectureMismatchError, match="MobilenetV2/Conv/weights.*resnet_v1_101"):
        load_weights(mobilenet_ksac, prefix)


def test_xception_checkpoint_into_mobilenet_is_an_error(mobilenet_ksac, deeplab_xception_ckpt):
    with pytest.raises(ArchitectureMismatchError, match="xception_65"):
        load_weights(mobilenet_ksac, deeplab_xception_ckpt)


def test_missing_checkpoint_files_name_the_path(mobilenet_ksac, tmp_path):
    model = mobilenet_ksac
    missing = str(tmp_path / "nothing" / "model.ckpt")
    with pytest.raises(FileNotFoundError, match="nothing/model.ckpt"):
        load_weights(model, missing)
    with pytest.raises(FileNotFoundError, match="nothing/model.ckpt"):
        load_tf1_checkpoint(model, missing)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="empty.*'checkpoint' file"):
        load_weights(model, str(tmp_path / "empty"))


# ---------------------------------------------------------------- from DeepLab's checkpoint to a phone file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_release_goes_from_its_checkpoint_to_an_int8_file_mediapipe_reads(release_ckpt, tmp_path):
    """`python -m zoo release` (the Cityscapes release: 19 labels), then `to_tflite.py --int8` with standard metadata;
    MediaPipe's segmenter reads the labels and agrees with LiteRT's arg-max."""
    from benchmarks import mediapipe_check
    from convert.tflite_metadata import read_standard_metadata
    from zoo.labels import CITYSCAPES_LABELS

    release = "mobilenetv2_coco_cityscapes_trainfine"
    made = _run("-m", "zoo", "release", release, "--weights", release_ckpt(release), "--input-size", "65",
                "--out", str(tmp_path / "city.keras"), cwd=ROOT)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "0 of ours left at initialisation" in made.stdout and "saved" in made.stdout
    assert describe(keras.models.load_model(str(tmp_path / "city.keras"))).label_names == CITYSCAPES_LABELS
    exported = _run(os.path.join(ROOT, "convert", "to_tflite.py"), "--model", str(tmp_path / "city.keras"), "--int8",
                    "--calibration-steps", "4", "--parity-images", "2", "--check-arm", "--json", str(tmp_path / "r.json"),
                    "--out", str(tmp_path / "city.tflite"), cwd=tmp_path)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["argmax_agreement"] >= 0.9, report  # int8 of an untrained full-width release, against Keras
    assert report["arm_argmax_agreement"] == 100.0 and report["arm_max_abs_diff"] == 0.0, report["arm_by_cpu"]  # bit-exact
    standard = read_standard_metadata((tmp_path / "city.tflite").read_bytes())
    assert standard["labels"] == list(CITYSCAPES_LABELS)
    seen = mediapipe_check.check(str(tmp_path / "city.tflite"), count=2, non_square=False)
    assert seen["mediapipe_labels"] == list(CITYSCAPES_LABELS) and seen["agreement_input_size"] >= 0.999, seen


def test_a_release_refuses_a_checkpoint_that_is_not_it(release_ckpt, tmp_path):
    # the VOC checkpoint (21 classes) as the ADE20K release (151 classes, a decoder): logits and decoder missing
    made = _run("-m", "zoo", "release", "mobilenetv2_ade20k_train", "--weights", release_ckpt("mobilenetv2_coco_voc_trainaug"),
                "--input-size", "65", "--out", str(tmp_path / "ade.keras"), cwd=ROOT)  # fmt: skip
    assert made.returncode == 2 and "is not DeepLab's mobilenetv2_ade20k_train" in made.stderr, made.stderr
    assert not (tmp_path / "ade.keras").exists()
    made = _run("-m", "zoo", "release", "mobilenetv2_coco_voc_trainaug", "--weights", release_ckpt("mobilenetv2_dm05_coco_voc_trainaug"),
                "--input-size", "65", "--out", str(tmp_path / "voc.keras"), cwd=ROOT)  # fmt: skip
    assert made.returncode == 2 and "has shape" in made.stderr and "Traceback" not in made.stderr, made.stderr
