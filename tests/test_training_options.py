"""train.py options found wrong in review: --resume with --rates, --weights files, the weight-decay rule."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import tf_keras as keras

from training import train as train_cli
from training.losses import decayed_variables, weight_roles
from zoo import SharedAtrousConv2D, SharedSeparableAtrousConv2D, list_models
from configs import write as write_config

TINY = ["--backbone", "mobilenetv2", "--head", "ksac", "--width", "0.35", "--head-filters", "16", "--crop-size", "65"]


def saved_run(tmp_path, *flags: str) -> str:
    """A run folder whose config.yaml is what train.py writes for `flags`."""
    out = str(tmp_path / "run")
    os.makedirs(out)
    write_config(train_cli.resolve_config(train_cli.parse_args(TINY + ["--out", out, *flags])), out)
    return out


def test_resume_accepts_the_same_rates_and_refuses_others(tmp_path):
    out = saved_run(tmp_path, "--rates", "6,12,18")
    config = train_cli.resolve_config(train_cli.parse_args(["--resume", "--out", out, "--rates", "6,12,18"]))
    assert config.model.rates == [6, 12, 18]
    with pytest.raises(train_cli.UsageError, match="--rates"):
        train_cli.resolve_config(train_cli.parse_args(["--resume", "--out", out, "--rates", "6,12,24"]))


def test_weights_load_from_an_hdf5_file_of_any_name(make_tiny_model, tmp_path, capsys):
    source = make_tiny_model("mobilenetv2_ksac", seed=1, num_classes=3)
    path = str(tmp_path / "model.hdf5")
    source.save_weights(path)
    model = make_tiny_model("mobilenetv2_ksac", seed=2, num_classes=3, backbone_weights=path)
    assert "layers matched" in capsys.readouterr().out
    for ours, theirs in zip(model.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_weights_load_from_a_keras_model_and_report_the_layers(make_tiny_model, tmp_path, capsys):
    source = make_tiny_model("mobilenetv2_aspp", seed=1, num_classes=3)
    path = str(tmp_path / "trained.keras")
    source.save(path)
    model = make_tiny_model("mobilenetv2_ksac", seed=2, num_classes=3, backbone_weights=path)
    printed = capsys.readouterr().out
    assert "layers matched by name and shape" in printed
    np.testing.assert_array_equal(model.get_layer("Conv1").get_weights()[0], source.get_layer("Conv1").get_weights()[0])


@pytest.mark.parametrize("name, content", [("weights.bin", b"not weights"), ("model.keras", b"PK\x03\x04 broken"),
                                           ("model.hdf5", b"\x89HDF\r\n\x1a\n truncated")])  # fmt: skip
def test_weights_that_cannot_load_are_a_clear_error_before_anything_is_written(tmp_path, capsys, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out"
    assert train_cli.main(TINY + ["--steps", "1", "--weights", str(path), "--out", str(out)]) != 0
    assert str(path) in capsys.readouterr().err
    assert not out.exists()


def test_weights_sharing_no_layer_are_an_error(make_tiny_model, tmp_path):
    path = str(tmp_path / "other.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="unrelated")]).save(path)
    with pytest.raises(ValueError, match="no layer of"):
        make_tiny_model("mobilenetv2_ksac", num_classes=3, backbone_weights=path)


@pytest.mark.parametrize("name", list_models())
def test_weight_decay_covers_regular_and_pointwise_kernels_only_in_every_model(make_tiny_model, name):
    """DeepLab's rule by what a weight is: regular and pointwise kernels decayed; depthwise, BN, biases not."""
    model = make_tiny_model(name, num_classes=3)
    expected, excluded = set(), set()
    for layer in model.submodules:
        if isinstance(layer, (keras.layers.SeparableConv2D, SharedSeparableAtrousConv2D)):
            expected.add(id(layer.pointwise_kernel))
            excluded.add(id(layer.depthwise_kernel))
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            excluded.add(id(layer.depthwise_kernel))
        elif isinstance(layer, (keras.layers.Conv2D, SharedAtrousConv2D)):
            expected.add(id(layer.kernel))
        elif isinstance(layer, keras.layers.BatchNormalization):
            excluded.update({id(layer.gamma), id(layer.beta)})
        if getattr(layer, "bias", None) is not None:
            excluded.add(id(layer.bias))
    # Every trainable variable is one or the other, and the rule agrees with this independent walk.
    assert {id(v) for v in model.trainable_variables} == expected | excluded and not expected & excluded
    roles = weight_roles(model)
    assert len(roles) == len(model.trainable_variables)
    assert {id(v) for v in decayed_variables(model)} == expected
    if name.endswith("ksac_separable"):  # the shared pointwise kernel, named `pointwise_kernel`, is decayed
        pyramid = model.get_layer("head_ksac")
        assert id(pyramid.pointwise_kernel) in expected and id(pyramid.depthwise_kernel) in excluded


@pytest.mark.parametrize("name", ["mobilenetv2_ksac_separable", "mobilenetv2_ksac"])
def test_weight_decay_rule_holds_inside_qat_wrappers(make_tiny_model, name):
    from quantize.annotate import quantize_model

    model = make_tiny_model(name, num_classes=3)
    float_decayed = len(decayed_variables(model))
    qat_model = quantize_model(model)
    decayed = decayed_variables(qat_model)  # every trainable variable classified, the quantizers' included
    assert len(decayed) == float_decayed
    assert any(v.name.endswith(("pointwise_kernel:0" if name.endswith("separable") else "head_ksac/kernel:0")) for v in decayed)


def test_weight_decay_refuses_a_trainable_weight_no_rule_covers():
    class Gain(keras.layers.Layer):
        def build(self, input_shape):
            self.gain = self.add_weight(name="gain", shape=())

        def call(self, x):
            return x * self.gain

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, Gain(name="gain_layer")(inputs))
    with pytest.raises(TypeError, match="gain"):
        decayed_variables(model)


def test_models_saved_with_a_kernel_regularizer_field_still_load(make_tiny_model, tmp_path):
    # Models saved before weight decay moved to the trainer carry `kernel_regularizer: None`
    # in the KSAC layer's config (checked by hand against a file saved by that version).
    model = make_tiny_model("mobilenetv2_ksac", num_classes=3)
    path = tmp_path / "m.keras"
    model.save(str(path))
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                (layer,) = [layer for layer in config["config"]["layers"] if layer["name"] == "head_ksac"]
                layer["config"]["kernel_regularizer"] = None
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    loaded = keras.models.load_model(str(old))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 65, 65, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)
    with pytest.raises(ValueError, match="kernel_regularizer"):
        SharedAtrousConv2D(8, kernel_regularizer="l2")
