"""Training works on a CPU without oneDNN (AVX2-only x86, macOS arm64): the dilated-conv gradient.

TensorFlow's own CPU kernels have no gradient for a native dilated Conv2D; only
oneDNN's do (tensorflow/tensorflow#28264). `zoo.atrous` falls back to the
space-to-batch form there. These tests run in subprocesses because
`TF_ENABLE_ONEDNN_OPTS` is read once, when TensorFlow loads.

Tolerances (measured on a 2-core AMD EPYC, AVX2, TF 2.21, MobileNetV2 at width
0.35, KSAC and ASPP, OS 16 and 8):
- Without oneDNN (space-to-batch, TensorFlow's own kernels) vs with oneDNN (native
  dilated conv, oneDNN kernels), BatchNorm on its moving statistics: the largest
  difference of each variable's gradient relative to that variable's largest
  gradient was at most 4.5e-6 (KSAC's shared kernel 1.3e-6); asserted: 1e-4.
- The same in a real training step (BatchNorm on batch statistics): differences up
  to 1.0e-2 (KSAC) and 1.6e-2 (ASPP) of the model's largest gradient. ASPP's
  dilated convs take the same form on both paths, so this is the two kernel
  libraries' rounding, amplified by the batch-statistics gradient (a difference of
  nearly equal terms), not the form; asserted: 5e-2.
- Space-to-batch vs the dense reference (each rate's dilated kernel written out
  with zeros, an undilated convolution): asserted 1e-4 relative.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (model, output stride, rates); input 97 gives 7x7 features at OS 16 and 13x13 at OS 8,
# large enough that every tap of the pyramid reads real pixels at these rates.
CASES = [
    ("mobilenetv2_ksac", 16, (1, 2, 3)),
    ("mobilenetv2_aspp", 16, (1, 2, 3)),
    ("mobilenetv2_ksac", 8, (2, 4, 6)),
    ("mobilenetv2_aspp", 8, (2, 4, 6)),
    # MobileNetV3 at OS 16: its last stage's dilated 5x5 depthwise kernels, hard swish, squeeze-and-excitation.
    ("mobilenetv3_large_ksac_separable", 16, (1, 2, 3)),
]
INFERENCE_BN_TOLERANCE = 1e-4
TRAIN_TOLERANCE = 5e-2
CASE_PREFIXES = [f"{name}/os{output_stride}/" for name, output_stride, _ in CASES]

# One SGD training step per case; writes every variable's gradient and the form used.
TRAINING_STEP = """
import json, sys
import numpy as np
import tensorflow as tf
import tf_keras as keras
from training.losses import masked_cross_entropy_sum
from zoo import build_model
from zoo.atrous import dilated_conv_form

out, cases = sys.argv[1], json.loads(sys.argv[2])
grads = {}
for name, output_stride, rates in cases:
    keras.utils.set_random_seed(0)
    model = build_model(name, num_classes=3, input_size=97, output_stride=output_stride, rates=rates,
                        width=0.35, head_filters=16, dropout=0.0)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (2, 97, 97, 3)), tf.float32)
    labels = tf.constant(rng.integers(0, 3, (2, 97, 97)), tf.int32)
    optimizer = keras.optimizers.SGD(0.01)

    @tf.function
    def gradients(batch_statistics):
        with tf.GradientTape() as tape:
            ce_sum, count = masked_cross_entropy_sum(labels, model(images, training=batch_statistics))
            loss = ce_sum / count
        return tape.gradient(loss, model.trainable_variables)

    # BatchNorm on moving statistics first (a well-conditioned gradient), then a real training step.
    for mode, batch_statistics in (("inference_bn", False), ("train", True)):
        g = gradients(batch_statistics)
        for variable, gradient in zip(model.trainable_variables, g):
            grads[f"{mode}/{name}/os{output_stride}/{variable.name}"] = gradient.numpy()
    optimizer.apply_gradients(zip(g, model.trainable_variables))
np.savez(out, **grads)
print(json.dumps({"form": dilated_conv_form()}))
"""

# The KSAC layer's kernel gradient (training mode) against the dense reference: each
# rate's dilated kernel written out with zeros between the taps, applied as an
# undilated convolution, followed by the same batch-statistics BatchNorm and ReLU.
LAYER_REFERENCE = """
import json
import numpy as np
import tensorflow as tf
from zoo import SharedAtrousConv2D
from zoo.atrous import dilated_conv_form

rates = (1, 2, 5)
rng = np.random.default_rng(0)
x = tf.constant(rng.normal(size=(2, 15, 13, 5)), tf.float32)
weights = tf.constant(rng.normal(size=(2, 15, 13, 4)), tf.float32)
layer = SharedAtrousConv2D(filters=4, rates=rates)
layer(x)
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(layer(x, training=True) * weights)
ours = tape.gradient(loss, layer.kernel).numpy()

kernel = tf.Variable(layer.kernel.numpy())
with tf.GradientTape() as tape:
    total = 0.0
    for rate, bn in zip(rates, layer.batch_norms):
        taps = [[i * rate, j * rate] for i in range(3) for j in range(3)]
        dense = tf.scatter_nd(taps, tf.reshape(kernel, [9, 5, 4]), [2 * rate + 1, 2 * rate + 1, 5, 4])
        conv = tf.nn.conv2d(x, dense, strides=1, padding="SAME")
        mean, variance = tf.nn.moments(conv, axes=[0, 1, 2])
        total += tf.nn.relu((conv - mean) / tf.sqrt(variance + bn.epsilon) * bn.gamma + bn.beta)
    loss = tf.reduce_sum(total * weights)
reference = tape.gradient(loss, kernel).numpy()
error = float(np.abs(ours - reference).max() / np.abs(reference).max())
print(json.dumps({"form": dilated_conv_form(), "relative_error": error}))
"""


def run_python(code: str, *args: str, onednn: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    env.pop("KSAC_DILATED_CONV", None)
    result = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_without_onednn_the_ksac_kernel_gradient_equals_the_dense_reference():
    result = json.loads(run_python(LAYER_REFERENCE, onednn="0").stdout.strip().splitlines()[-1])
    assert result["form"] == "space_to_batch"
    assert result["relative_error"] < 1e-4, result


@pytest.mark.slow
def test_a_training_step_without_onednn_matches_the_onednn_native_one(tmp_path):
    cases = json.dumps(CASES)
    forms, grads = {}, {}
    for onednn in ("0", "1"):
        path = str(tmp_path / f"grads_onednn{onednn}.npz")
        forms[onednn] = json.loads(run_python(TRAINING_STEP, path, cases, onednn=onednn).stdout.strip().splitlines()[-1])["form"]
        grads[onednn] = dict(np.load(path))
    assert forms["0"] == "space_to_batch"  # the failure of #28264 would have stopped the subprocess
    assert all(np.isfinite(g).all() for g in grads["0"].values())
    if forms["1"] != "native":
        pytest.skip("this TensorFlow build has no oneDNN: the native gradient cannot run here (the dense reference test still checks the fallback)")
    assert sorted(grads["0"]) == sorted(grads["1"])
    for mode, tolerance in (("inference_bn", INFERENCE_BN_TOLERANCE), ("train", TRAIN_TOLERANCE)):
        for prefix in CASE_PREFIXES:
            keys = [key for key in grads["0"] if key.startswith(f"{mode}/{prefix}")]
            assert len(keys) > 50, f"{len(keys)} gradients of {mode}/{prefix}"
            if "ksac" in prefix:  # the shared kernel(s): kernel, or depthwise_kernel and pointwise_kernel
                assert any(key.startswith(f"{mode}/{prefix}head_ksac/") and key.endswith("kernel:0") for key in keys)
            largest = max(float(np.abs(grads["1"][key]).max()) for key in keys)
            for key in keys:
                fast, slow = grads["1"][key], grads["0"][key]
                scale = max(float(np.abs(fast).max()), 1e-6 * largest) if mode == "inference_bn" else largest
                error = float(np.abs(slow - fast).max()) / scale
                assert error < tolerance, (key, error)


# The KSAC layer's kernel gradient in float32 and float64: oneDNN has the native dilated-conv gradient
# for float32 only, so the form must be chosen per dtype (float64 once failed with oneDNN on).
PER_DTYPE = """
import json
import numpy as np
import tensorflow as tf
from zoo import SharedAtrousConv2D
from zoo.atrous import dilated_conv_form

result = {}
for dtype in ("float32", "float64"):
    layer = SharedAtrousConv2D(filters=4, rates=(1, 2, 3), dtype=dtype)
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 9, 9, 3)), dtype)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) ** 2)
    gradient = tape.gradient(loss, layer.kernel)
    result[dtype] = {"form": dilated_conv_form(dtype), "finite": bool(np.isfinite(gradient.numpy()).all()),
                     "gradient_dtype": gradient.dtype.name}
print(json.dumps(result))
"""


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_the_dilated_form_is_chosen_per_dtype_and_both_dtypes_train(onednn):
    result = json.loads(run_python(PER_DTYPE, onednn=onednn).stdout.strip().splitlines()[-1])
    assert result["float64"]["form"] == "space_to_batch"  # no CPU kernel library has the float64 gradient
    if onednn == "0":
        assert result["float32"]["form"] == "space_to_batch"
    for dtype in ("float32", "float64"):
        assert result[dtype]["finite"] and result[dtype]["gradient_dtype"] == dtype, result
