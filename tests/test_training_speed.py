"""Training throughput (issue 25): every dilated layer in zoo.atrous' form, mixed precision, XLA.

The speed itself is measured by `benchmarks/training_speed.py`, not here; these tests check that the
fast paths compute what the slow ones do and leave saved and exported models as they were. Marked
`trains`: `make test-onednn-other` runs them again with oneDNN the other way round, so both forms
(native and space-to-batch) are exercised on either CPU kind.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import zoo  # noqa: F401  (TensorFlow without its start-up lines)
from configs import ConfigError, QATExperimentConfig, resolve
from training import train as train_cli
from zoo import atrous, build_model

pytestmark = [pytest.mark.trains, pytest.mark.xdist_group("training_speed")]

TINY = ["--backbone", "mobilenetv2", "--head", "aspp", "--width", "0.35", "--head-filters", "16",
        "--crop-size", "33", "--batch-size", "2", "--steps", "2", "--seed", "1", "--log-every", "1",
        "--no-data-check"]  # fmt: skip


def _twins():
    """The same tiny MobileNetV2 ASPP at output stride 8 (dilated depthwise layers in the backbone too),
    built with and without zoo.atrous' training forms, with the same weights."""
    kwargs = dict(num_classes=3, input_size=49, output_stride=8, width=0.35, head_filters=16, dropout=0.0)
    fast = build_model("mobilenetv2_aspp", training_forms=True, **kwargs)
    plain = build_model("mobilenetv2_aspp", **kwargs)
    plain.set_weights(fast.get_weights())
    return fast, plain


def test_training_forms_replace_exactly_the_dilated_layers():
    fast, plain = _twins()
    ours = {layer.name: type(layer).__name__ for layer in fast.layers if atrous.plain_layer(layer) is not None}
    dilated = {layer.name for layer in plain.layers if max(getattr(layer, "dilation_rate", (1,))) > 1}
    assert set(ours) == dilated and dilated, (ours, dilated)
    assert {"AtrousConv2D", "AtrousDepthwiseConv2D"} == set(ours.values())
    assert not any(type(layer).__module__ == atrous.__name__ for layer in plain.layers)


def test_training_forms_compute_the_same_outputs_and_gradients():
    import tensorflow as tf

    fast, plain = _twins()
    images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (2, 49, 49, 3)), tf.float32)
    results = []
    for model in (fast, plain):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_sum(tf.square(logits))
        results.append([logits.numpy(), *[g.numpy() for g in tape.gradient(loss, model.trainable_variables)]])
    # One scale for all gradients: some are rounding noise around an exact 0 (a BatchNorm shift feeding
    # another BatchNorm in training mode), which no relative tolerance per array can compare.
    scale = max(float(np.max(np.abs(array))) for array in results[1][1:])
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4, atol=1e-5)  # the logits
    for ours, keras_ones in zip(results[0][1:], results[1][1:]):
        assert np.max(np.abs(ours - keras_ones)) <= 1e-4 * scale


def test_the_probe_compares_values_not_only_whether_a_kernel_runs(monkeypatch):
    """A native kernel that runs but ignores the dilation (TensorFlow's depthwise gradient kernels do,
    measured with oneDNN) must not be chosen."""
    import tensorflow as tf

    def ignores_dilation(kind, inputs, kernel, rate):
        return tf.nn.depthwise_conv2d(inputs, kernel, strides=[1, 1, 1, 1], padding="SAME")

    atrous.native_gradient_works.cache_clear()
    monkeypatch.setattr(atrous, "_native", ignores_dilation)
    try:
        assert atrous.native_gradient_works("float32", atrous.DEPTHWISE) is False
    finally:
        atrous.native_gradient_works.cache_clear()


@pytest.mark.parametrize("kind", [atrous.CONV2D, atrous.DEPTHWISE])
@pytest.mark.parametrize("size, rate", [(9, 9), (9, 18), (7, 12)])
def test_a_rate_past_the_feature_size_is_the_centre_tap_exactly(kind, size, rate):
    """Every off-centre tap reads padding: the 1x1 shortcut gives the space-to-batch form's values and gradients."""
    import tensorflow as tf

    rng = np.random.default_rng(size + rate)
    x = tf.constant(rng.normal(size=(2, size, size, 4)), tf.float32)
    k = tf.constant(rng.normal(size=(3, 3, 4, 5 if kind == atrous.CONV2D else 1)), tf.float32)
    ours = atrous.dilated_conv2d if kind == atrous.CONV2D else atrous.dilated_depthwise_conv2d
    results = []
    for form in (ours, lambda a, b, r: atrous._space_to_batch(kind, a, b, r)):
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            y = form(x, k, rate)
            loss = tf.reduce_sum(y * y)
        results.append([y.numpy(), *[g.numpy() for g in tape.gradient(loss, [x, k])]])
    assert atrous._only_centre_tap(x, k, rate)
    for shortcut, reference in zip(*results):
        np.testing.assert_allclose(shortcut, reference, rtol=1e-5, atol=1e-5 * np.max(np.abs(reference)))


def test_a_training_forms_model_exports_the_same_file():
    from convert.export import export_tflite

    fast, plain = _twins()
    files = [export_tflite(model, "fp32", check_parity=False).tflite for model in (fast, plain)]
    assert files[0] == files[1]


def _saved_config(run_dir) -> dict:
    with zipfile.ZipFile(run_dir / "model.keras") as archive:
        return json.loads(archive.read("config.json"))


def _structure(tflite: bytes) -> tuple:
    from convert.tflite_file import load_model, op_histogram

    model = load_model(tflite)
    graph = model.subgraphs[0]
    # Names are left out: the converter names fused constants after what it folded, which varies with values.
    tensors = sorted((tuple(int(d) for d in t.shape), int(t.type)) for t in graph.tensors)
    return op_histogram(model), tensors, len(model.buffers)


@pytest.mark.slow
def test_mixed_precision_trains_and_saves_what_float32_training_saves(tmp_path):
    """bfloat16 and float16 (loss-scaled) runs finish with finite losses; their model.keras has the
    float32 run's config (classes, dtypes) and their fp32 and int8 exports the same ops and tensors."""
    from convert.export import export_tflite
    from zoo.saving import load_keras_model

    runs = {}
    for policy in ("none", "bfloat16", "float16"):
        out = tmp_path / policy
        assert train_cli.main(TINY + ["--mixed-precision", policy, "--out", str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert np.isfinite(summary["final_loss"]), policy
        runs[policy] = out
    reference = _saved_config(runs["none"])
    for policy in ("bfloat16", "float16"):
        assert _saved_config(runs[policy]) == reference, policy
    for precision in ("fp32", "int8"):
        structures = {
            policy: _structure(export_tflite(load_keras_model(str(out / "model.keras")), precision, check_parity=False,
                                             calibration_steps=2).tflite)
            for policy, out in runs.items()
        }  # fmt: skip
        assert structures["bfloat16"] == structures["none"] == structures["float16"], precision


def test_xla_compiled_steps_train(tmp_path):
    out = tmp_path / "jit"
    assert train_cli.main(TINY + ["--jit-compile", "--out", str(out)]) == 0
    assert np.isfinite(json.loads((out / "summary.json").read_text())["final_loss"])


def test_bad_mixed_precision_settings_are_refused_before_training(tmp_path, capsys):
    assert train_cli.main(TINY + ["--float64", "--mixed-precision", "bfloat16", "--out", str(tmp_path / "x")]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="QAT trains in float32"):
        resolve(QATExperimentConfig, {"qat": {"model": "m.keras"}, "training": {"mixed_precision": "bfloat16"}})
    with pytest.raises(SystemExit):
        train_cli.parse_args(TINY + ["--mixed-precision", "half"])
